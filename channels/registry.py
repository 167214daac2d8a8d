"""The channels ticketwire speaks, in one explicit table.

Each entry names the adapter and config classes (imported lazily: Teams pulls in the Graph
SDK, which nobody should pay for on start-up without a Teams integration), which settings
are secrets (encrypted at rest, never returned by GET) and the vendor's outbound pacing.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from channels.base import ChannelAdapter, KeyValueCache


@dataclass(frozen=True)
class ChannelSpec:
    name: str
    adapter_path: str
    config_path: str
    secret_fields: tuple[str, ...]
    # Outbound pacing before the vendor has to say 429: messages per second per pacing key.
    rate_per_second: float | None = None

    def _load(self, path: str) -> Any:
        module, _, attr = path.partition(":")
        return getattr(importlib.import_module(module), attr)

    def build(self, settings: Mapping[str, Any], *, cache: KeyValueCache | None = None) -> ChannelAdapter:
        config = self._load(self.config_path).from_settings(dict(settings))
        adapter_cls = self._load(self.adapter_path)
        try:
            return adapter_cls(config, cache=cache)  # type: ignore[no-any-return]
        except TypeError:
            return adapter_cls(config)  # type: ignore[no-any-return]


CHANNELS: dict[str, ChannelSpec] = {
    "slack": ChannelSpec(
        "slack", "channels.slack.adapter:SlackAdapter", "channels.slack.adapter:SlackConfig",
        secret_fields=("bot_token", "signing_secret"),
        # Slack chat.postMessage: "1 message per second per channel" (Web API rate limits).
        rate_per_second=1.0,
    ),
    "github": ChannelSpec(
        "github", "channels.github.adapter:GitHubAdapter", "channels.github.adapter:GitHubConfig",
        secret_fields=("token", "webhook_secret", "private_key"),
        # GitHub secondary limits: 80 content-creating requests per minute and 500 per hour;
        # the hourly one binds for a steady backlog.
        rate_per_second=500 / 3600,
    ),
    "teams": ChannelSpec(
        "teams", "channels.teams.adapter:TeamsAdapter", "channels.teams.adapter:TeamsConfig",
        secret_fields=("app_password",),
        # Bot Framework per bot per thread: 7/1 s but also 8/2 s and 60/30 s; the steady
        # rate that respects all of them is 2 per second.
        rate_per_second=2.0,
    ),
    "widget": ChannelSpec(
        "widget", "channels.widget.adapter:WidgetAdapter", "channels.widget.adapter:WidgetConfig",
        secret_fields=("identity_secret",),
    ),
}


def get_spec(channel: str) -> ChannelSpec | None:
    return CHANNELS.get(channel)
