"""The Slack adapter: configuration and the class tying signature, inbound and outbound together."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from channels.base import (
    DeliveryResult,
    InboundMessage,
    KeyValueCache,
    MemoryCache,
    OutboundReply,
    RawEvent,
    RawRequest,
    RawResponse,
)
from channels.errors import ChannelNotConfiguredError, DeliveryError, MalformedPayloadError
from channels.slack import inbound, outbound
from channels.slack.client import DEFAULT_TIMEOUT, SlackClient, build_web_client
from channels.slack.markup import to_mrkdwn
from channels.slack.signature import SlackSigner

DEFAULT_API_BASE_URL = "https://slack.com/api/"


def _channel_ids(value: str | Iterable[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else value
    return tuple(s for s in (str(i).strip() for i in items) if s)


@dataclass(frozen=True)
class SlackConfig:
    """A project's Slack integration settings (DESIGN.md, "Integrations API")."""

    bot_token: str = field(repr=False)
    signing_secret: str = field(repr=False)
    channel_ids: tuple[str, ...] = ()
    ticket_emoji: str = "ticket"
    api_base_url: str = DEFAULT_API_BASE_URL
    # Optional: when absent the adapter learns it with auth.test (cached).
    bot_user_id: str | None = None

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> SlackConfig:
        """Build from stored integration settings; unknown keys are ignored."""
        missing = [k for k in ("bot_token", "signing_secret") if not settings.get(k)]
        if missing:
            raise ChannelNotConfiguredError(f"Slack integration lacks {', '.join(missing)}")
        return cls(
            bot_token=str(settings["bot_token"]),
            signing_secret=str(settings["signing_secret"]),
            channel_ids=_channel_ids(settings.get("channel_ids")),
            ticket_emoji=str(settings.get("ticket_emoji") or "ticket").strip(),
            api_base_url=str(settings.get("api_base_url") or DEFAULT_API_BASE_URL),
            bot_user_id=settings.get("bot_user_id") or None,
        )


class SlackAdapter:
    """Slack Events API in, Web API out, for one project's workspace."""

    name = "slack"

    def __init__(
        self,
        config: SlackConfig,
        *,
        cache: KeyValueCache | None = None,
        clock: Callable[[], float] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.config = config
        self._clock = clock or time.time
        self._signer = SlackSigner(config.signing_secret, clock=self._clock)
        self._client = SlackClient(
            build_web_client(token=config.bot_token, base_url=config.api_base_url, timeout=timeout)
        )
        directory = inbound.SlackDirectory(
            self._client,
            cache if cache is not None else MemoryCache(),
            token=config.bot_token,
            bot_user_id=config.bot_user_id,
        )
        self._context = inbound.ParseContext(
            channel_ids=frozenset(config.channel_ids),
            # People type ":ticket:"; reaction events name the emoji without colons.
            ticket_emoji=config.ticket_emoji.strip(":"),
            directory=directory,
            client=self._client,
        )

    # -- inbound -------------------------------------------------------------------------
    def verify(self, request: RawRequest) -> None:
        self._signer.verify(request.body, request.headers)

    def handshake(self, request: RawRequest) -> RawResponse | None:
        payload = inbound.load_payload(request.body)
        if payload.get("type") != "url_verification":
            return None
        challenge = payload.get("challenge")
        if not isinstance(challenge, str):
            raise MalformedPayloadError("Slack url_verification without challenge")
        return RawResponse(status=200, body=json.dumps({"challenge": challenge}).encode())

    def event_id(self, request: RawRequest) -> str:
        return inbound.event_id_of(inbound.load_payload(request.body))

    def parse(self, event: RawEvent) -> list[InboundMessage]:
        return inbound.parse_payload(inbound.load_payload(event.body), self._context)

    # -- outbound ------------------------------------------------------------------------
    def deliver(self, reply: OutboundReply) -> DeliveryResult:
        return outbound.post_reply(self._client, reply)

    def find_delivered(self, reply: OutboundReply) -> DeliveryResult | None:
        return outbound.find_delivery(self._client, reply)

    def rate_limit_key(self, reply: OutboundReply) -> str:
        """The pacing key of a reply (one token bucket per workspace channel, see outbound.py)."""
        return outbound.rate_limit_key(reply)

    def edit_message(self, channel: str, ts: str, text: str) -> DeliveryResult:
        """Replace the text of a message the bot posted (used when a team reply is edited)."""
        return outbound.edit_message(self._client, channel, ts, to_mrkdwn(text))

    def edit_delivered(self, reply: OutboundReply, external_id: str) -> DeliveryResult:
        """Replace the text of a delivered reply: chat.update of the post whose ts is `external_id`."""
        try:
            _, channel, _ = outbound.thread_of(reply)
        except DeliveryError as exc:
            return DeliveryResult.from_error(exc)
        return outbound.edit_message(self._client, channel, external_id, outbound.reply_text(reply))
