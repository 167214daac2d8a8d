"""The Microsoft Teams adapter: configuration and the class that ties auth, parse and replies."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from channels.base import (
    DeliveryResult,
    DeliveryStatus,
    InboundMessage,
    KeyValueCache,
    MemoryCache,
    OutboundReply,
    RawEvent,
    RawRequest,
    RawResponse,
)
from channels.errors import ChannelNotConfiguredError, DeliveryError, RetryableDeliveryError
from channels.teams import inbound, outbound
from channels.teams.auth import DEFAULT_OPENID_METADATA_URL, BotFrameworkTokenVerifier
from channels.teams.client import (
    BOT_CONNECTOR_SCOPE,
    BotConnectorClient,
    ClientCredentialsCredential,
    ClientCredentialsTokens,
    GraphUser,
    GraphUserDirectory,
    build_http_client,
    graph_token_url,
    require_secure_url,
)

log = logging.getLogger(__name__)

DEFAULT_TOKEN_URL = "https://login.microsoftonline.com/botframework.com/oauth2/v2.0/token"
DEFAULT_GRAPH_BASE_URL = "https://graph.microsoft.com/v1.0"
# Retries give up after 24 h (SPEC "Delivery"); the marker only has to outlive them.
DELIVERED_MARKER_TTL = 2 * 24 * 3600.0
OUTCOME_UNKNOWN_DETAIL = (
    "could not check whether the previous attempt reached Teams (the worker stopped mid-call or "
    "Teams did not answer in time, and Teams offers bots no way to read a conversation back): "
    "look in the Teams thread and press Retry on the message if the reply is not there"
)
# httpx timeouts raised before the request left: nothing can have been posted.
_NOT_SENT_TIMEOUTS = frozenset({"ConnectTimeout", "PoolTimeout"})


def _as_tuple(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return tuple(str(part).strip() for part in value if str(part).strip())


@dataclass(frozen=True)
class TeamsConfig:
    """A project's Teams integration settings (DESIGN "Integrations API")."""

    app_id: str
    app_password: str
    tenant_id: str
    channel_ids: tuple[str, ...] = ()
    openid_metadata_url: str = DEFAULT_OPENID_METADATA_URL
    token_url: str = DEFAULT_TOKEN_URL
    graph_base_url: str = DEFAULT_GRAPH_BASE_URL
    bot_id: str | None = None

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> TeamsConfig:
        """Build from stored integration settings; extra keys are ignored."""
        missing = [k for k in ("app_id", "app_password", "tenant_id") if not settings.get(k)]
        if missing:
            raise ChannelNotConfiguredError(f"teams integration lacks {', '.join(missing)}")
        return cls(
            app_id=str(settings["app_id"]),
            app_password=str(settings["app_password"]),
            tenant_id=str(settings["tenant_id"]),
            channel_ids=_as_tuple(settings.get("channel_ids")),
            openid_metadata_url=str(settings.get("openid_metadata_url") or DEFAULT_OPENID_METADATA_URL),
            token_url=str(settings.get("token_url") or DEFAULT_TOKEN_URL),
            graph_base_url=str(settings.get("graph_base_url") or DEFAULT_GRAPH_BASE_URL),
            bot_id=str(settings["bot_id"]) if settings.get("bot_id") else None,
        )

    @property
    def bot_account_id(self) -> str:
        """The bot's Teams account id (`28:<app id>`)."""
        return self.bot_id or f"28:{self.app_id}"


class TeamsAdapter:
    """Microsoft Teams through the Bot Framework: JWT auth, activities in, Bot Connector out."""

    name = "teams"
    rate_limits = outbound.SEND_RATE_LIMITS

    def __init__(
        self,
        config: TeamsConfig,
        *,
        cache: KeyValueCache | None = None,
        clock: Callable[[], float] | None = None,
        http_timeout: float = 10.0,
    ) -> None:
        self.config = config
        self.clock = clock or time.time
        self.cache: KeyValueCache = cache if cache is not None else MemoryCache(clock=self.clock)
        self._http = build_http_client(http_timeout)
        self._verifier = BotFrameworkTokenVerifier(
            app_id=config.app_id,
            openid_metadata_url=config.openid_metadata_url,
            http=self._http,
            cache=self.cache,
            clock=self.clock,
        )
        connector_tokens = ClientCredentialsTokens(
            http=self._http,
            token_url=config.token_url,
            client_id=config.app_id,
            client_secret=config.app_password,
            cache=self.cache,
            clock=self.clock,
        )
        self._connector_tokens = connector_tokens
        self._connector = BotConnectorClient(http=self._http, tokens=connector_tokens, clock=self.clock)
        graph_tokens = ClientCredentialsTokens(
            http=self._http,
            token_url=graph_token_url(config.token_url, config.tenant_id),
            client_id=config.app_id,
            client_secret=config.app_password,
            cache=self.cache,
            clock=self.clock,
        )
        self._directory = GraphUserDirectory(
            base_url=config.graph_base_url,
            tenant_id=config.tenant_id,
            credential=ClientCredentialsCredential(graph_tokens),
            cache=self.cache,
            timeout=http_timeout,
        )

    def close(self) -> None:
        self._http.close()

    # -- inbound -----------------------------------------------------------------------------
    def verify(self, request: RawRequest) -> None:
        """Raise InvalidSignatureError unless the Bot Connector signed this activity."""
        self._verifier.verify(request.header("authorization"), request.body)

    def handshake(self, request: RawRequest) -> RawResponse | None:
        # The Bot Framework has no URL verification handshake: every POST is an activity.
        return None

    def event_id(self, request: RawRequest) -> str:
        return inbound.event_id(request.json())

    def parse(self, event: RawEvent) -> list[InboundMessage]:
        return inbound.parse_activity(event.json(), self._parse_context())

    def lookup_user(self, aad_object_id: str) -> GraphUser | None:
        """The Graph profile of a user of the configured tenant (cached; None on failure)."""
        return self._directory.lookup(aad_object_id)

    def _parse_context(self) -> inbound.ParseContext:
        return inbound.ParseContext(
            bot_ids=frozenset({self.config.bot_account_id, f"28:{self.config.app_id}"}),
            channel_ids=frozenset(self.config.channel_ids),
            tenant_id=self.config.tenant_id,
            lookup_user=self.lookup_user,
        )

    # -- outbound ----------------------------------------------------------------------------
    def deliver(self, reply: OutboundReply) -> DeliveryResult:
        """Post the reply in its thread (or chat); never raises for vendor failures."""
        try:
            target = outbound.reply_target(reply.thread)
            activity = outbound.build_activity(reply, target, bot_id=self.config.bot_account_id)
            require_secure_url(target.service_url)
            # The token first: whatever goes wrong before the post is sent is a known
            # non-delivery, retried as usual, never an unknown outcome.
            self._connector_tokens.get(BOT_CONNECTOR_SCOPE)
        except DeliveryError as exc:
            if exc.code == "timeout":
                exc = RetryableDeliveryError("token_timeout", exc.detail)
            return DeliveryResult.from_error(exc)
        try:
            if target.root_activity_id:
                activity_id = self._connector.reply_to_activity(
                    target.service_url, target.conversation_id, target.root_activity_id, activity
                )
            else:
                activity_id = self._connector.send_to_conversation(
                    target.service_url, target.conversation_id, activity
                )
        except DeliveryError as exc:
            if exc.code == "timeout" and exc.detail in _NOT_SENT_TIMEOUTS:
                # Known not sent, retried like a refused connection; a timeout after sending
                # is an unknown outcome (see find_delivered).
                exc = RetryableDeliveryError("connection_error", exc.detail)
            return DeliveryResult.from_error(exc)
        self.cache.set(
            self._delivered_key(reply.delivery_id), {"activity_id": activity_id}, DELIVERED_MARKER_TTL
        )
        return DeliveryResult.delivered(activity_id)

    def find_delivered(self, reply: OutboundReply) -> DeliveryResult | None:
        """Reconcile a delivery whose previous attempt's outcome is unknown.

        Teams gives bots no way to list what they posted (the Bot Connector has no "get
        activities" for Teams, and Graph's channel-message reads need the protected
        `ChannelMessage.Read.All`); the delivery id rides in the activity's `channelData`,
        but nothing can read it back. So the marker lives in our own cache, written after a
        successful post: DELIVERED when it is there (a worker that posted and died before
        recording the result). Without it the post may still have landed (killed mid-call,
        response lost after sending), so this answers FAILED `outcome_unknown` rather than
        None: the reply is delivered exactly once or fails visibly, and never goes out
        twice unless the team looks and presses Retry. The pipeline only asks after an
        unknown outcome; a 429 or 5xx answer is a known non-delivery and is retried as usual.
        """
        marker = self.cache.get(self._delivered_key(reply.delivery_id))
        if isinstance(marker, Mapping):
            return DeliveryResult.delivered(marker.get("activity_id"))
        return DeliveryResult(DeliveryStatus.FAILED, error_code="outcome_unknown", error_detail=OUTCOME_UNKNOWN_DETAIL)

    def update_activity(self, reply: OutboundReply, activity_id: str) -> DeliveryResult:
        """Edit a message the bot posted earlier (PUT …/activities/{activity_id})."""
        try:
            target = outbound.reply_target(reply.thread)
            activity = outbound.build_activity(reply, target, bot_id=self.config.bot_account_id)
            activity["id"] = activity_id
            updated = self._connector.update_activity(
                target.service_url, target.conversation_id, activity_id, activity
            )
        except DeliveryError as exc:
            return DeliveryResult.from_error(exc)
        return DeliveryResult.delivered(updated)

    def edit_delivered(self, reply: OutboundReply, external_id: str) -> DeliveryResult:
        """Replace the text of a delivered reply: update the activity whose id is `external_id`."""
        return self.update_activity(reply, external_id)

    def rate_limit_key(self, reply: OutboundReply) -> str:
        """The conversation's bucket, paced at `outbound.PACING_WINDOWS` (channels/registry.py)."""
        return outbound.rate_limit_key(reply, app_id=self.config.app_id)

    def shared_rate_limits(self, reply: OutboundReply) -> tuple[tuple[str, tuple[tuple[float, int], ...]], ...]:
        """Buckets a reply counts in besides its conversation's: the app's per-tenant limit."""
        return ((outbound.tenant_rate_limit_key(reply, app_id=self.config.app_id), outbound.TENANT_PACING_WINDOWS),)

    def _delivered_key(self, delivery_id: str) -> str:
        return f"teams:delivered:{self.config.app_id}:{delivery_id}"
