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

Window = tuple[float, int]  # (period_seconds, max_operations): at most N in any P seconds


def _as_windows(value: Any) -> tuple[Window, ...]:
    """A published limit as windows: a number is a steady rate per second (one operation
    per 1/rate seconds); otherwise a sequence of (period_seconds, max_operations)."""
    if isinstance(value, int | float):
        return ((1.0 / float(value), 1),)
    return tuple((float(period), int(limit)) for period, limit in value)


@dataclass(frozen=True)
class ChannelSpec:
    name: str
    adapter_path: str
    config_path: str
    secret_fields: tuple[str, ...]
    # Outbound pacing before the vendor has to say 429, per `adapter.rate_limit_key(reply)`:
    # "module:CONSTANT" naming the channel's published windows (or a steady rate per
    # second), loaded lazily like the classes. None: the channel is not paced.
    rate_limit: str | None = None

    def _load(self, path: str) -> Any:
        module, _, attr = path.partition(":")
        return getattr(importlib.import_module(module), attr)

    @property
    def rate_windows(self) -> tuple[Window, ...] | None:
        """The windows every reply of one pacing key must keep, or None (unpaced)."""
        if self.rate_limit is None:
            return None
        return _as_windows(self._load(self.rate_limit))

    @property
    def rate_per_second(self) -> float | None:
        """The long-run rate the windows allow (the tightest of them), or None."""
        windows = self.rate_windows
        if not windows:
            return None
        return min(limit / period for period, limit in windows)

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
        rate_limit="channels.slack.outbound:RATE_LIMIT_PER_CHANNEL_PER_SECOND",
    ),
    "github": ChannelSpec(
        "github", "channels.github.adapter:GitHubAdapter", "channels.github.adapter:GitHubConfig",
        secret_fields=("token", "webhook_secret", "private_key"),
        # GitHub secondary limits: 80 content-creating requests per minute and 500 per hour,
        # both kept (a backlog goes out at 80 a minute until the hour's 500 are used). GitHub
        # Enterprise Server admins set their own: the integration's `rate_limits` wins.
        rate_limit="channels.github.outbound:CONTENT_CREATION_LIMITS",
    ),
    "teams": ChannelSpec(
        "teams", "channels.teams.adapter:TeamsAdapter", "channels.teams.adapter:TeamsConfig",
        secret_fields=("app_password",),
        # Bot Framework per bot per thread: 7/1 s, 8/2 s and 60/30 s (2 per second steady);
        # the adapter adds the app's tenant-wide limit (`shared_rate_limits`).
        rate_limit="channels.teams.outbound:PACING_WINDOWS",
    ),
    "widget": ChannelSpec(
        "widget", "channels.widget.adapter:WidgetAdapter", "channels.widget.adapter:WidgetConfig",
        secret_fields=("identity_secret",),
    ),
}


def get_spec(channel: str) -> ChannelSpec | None:
    return CHANNELS.get(channel)
