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
    # Outbound pacing before the vendor has to say 429: the adapter's own published limit
    # ("module:CONSTANT", loaded lazily like the classes) and the seconds it counts over.
    rate_limit: tuple[str, float] | None = None

    def _load(self, path: str) -> Any:
        module, _, attr = path.partition(":")
        return getattr(importlib.import_module(module), attr)

    @property
    def rate_per_second(self) -> float | None:
        """Messages per second per pacing key (`adapter.rate_limit_key(reply)`), or None."""
        if self.rate_limit is None:
            return None
        path, period_seconds = self.rate_limit
        return float(self._load(path)) / period_seconds

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
        rate_limit=("channels.slack.outbound:RATE_LIMIT_PER_CHANNEL_PER_SECOND", 1.0),
    ),
    "github": ChannelSpec(
        "github", "channels.github.adapter:GitHubAdapter", "channels.github.adapter:GitHubConfig",
        secret_fields=("token", "webhook_secret", "private_key"),
        # GitHub secondary limits: 80 content-creating requests per minute and 500 per hour;
        # the hourly one binds for a steady backlog.
        rate_limit=("channels.github.outbound:CONTENT_CREATION_LIMIT_PER_HOUR", 3600.0),
    ),
    "teams": ChannelSpec(
        "teams", "channels.teams.adapter:TeamsAdapter", "channels.teams.adapter:TeamsConfig",
        secret_fields=("app_password",),
        # Bot Framework per bot per thread: 7/1 s but also 8/2 s and 60/30 s; the steady
        # rate that respects all of them is 2 per second.
        rate_limit=("channels.teams.outbound:RATE_LIMIT_PER_THREAD_PER_SECOND", 1.0),
    ),
    "widget": ChannelSpec(
        "widget", "channels.widget.adapter:WidgetAdapter", "channels.widget.adapter:WidgetConfig",
        secret_fields=("identity_secret",),
    ),
}


def get_spec(channel: str) -> ChannelSpec | None:
    return CHANNELS.get(channel)
