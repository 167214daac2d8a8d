"""The adapter contract shared by every channel.

An adapter knows its vendor and nothing else: no database, no Dramatiq, no web framework.
The web layer hands it a framework-neutral `RawRequest`; the ingest worker hands it a stored
`RawEvent`; the delivery worker hands it an `OutboundReply`. Everything it returns is a frozen
dataclass, so services can store it without knowing which vendor it came from.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from channels.errors import DeliveryError, MalformedPayloadError


def _lower_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    return {k.lower(): v for k, v in (headers or {}).items()}


@dataclass(frozen=True)
class RawRequest:
    """An inbound HTTP request as the vendor sent it: raw body bytes and lower-cased headers."""

    body: bytes
    headers: Mapping[str, str]
    query: Mapping[str, str] = field(default_factory=dict)
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @classmethod
    def build(
        cls,
        body: bytes,
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, str] | None = None,
        received_at: datetime | None = None,
    ) -> RawRequest:
        return cls(
            body=body,
            headers=_lower_headers(headers),
            query=dict(query or {}),
            received_at=received_at or datetime.now(UTC),
        )

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise MalformedPayloadError(f"body is not valid JSON: {exc}") from exc


@dataclass(frozen=True)
class RawResponse:
    """What to answer the vendor directly (url_verification, ping)."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"


@dataclass(frozen=True)
class RawEvent:
    """A stored inbound event, as the ingest worker gives it back to the adapter."""

    event_id: str
    body: bytes
    headers: Mapping[str, str]
    received_at: datetime

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise MalformedPayloadError(f"body is not valid JSON: {exc}") from exc


class MessageKind(enum.StrEnum):
    NEW = "new"
    EDIT = "edit"
    DELETE = "delete"
    STATUS_CHANGE = "status_change"


@dataclass(frozen=True)
class Author:
    """Who wrote an inbound message, as far as the vendor tells."""

    external_id: str | None = None
    name: str | None = None
    email: str | None = None
    distinct_id: str | None = None
    is_team_member: bool = False


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str | None = None
    size: int | None = None
    url: str | None = None
    content: bytes | None = None
    content_id: str | None = None
    external_id: str | None = None


@dataclass(frozen=True)
class InboundMessage:
    """One normalised inbound message (or edit, delete, status change) of a vendor thread.

    `thread_key` identifies the ticket within the project and channel. `creates_ticket` says
    whether this message may open a new ticket (a top-level trigger) or only joins one that
    already exists (a thread reply in a thread we do not track is ignored). `ticket_fields`
    carries the channel's thread coordinates stored on the ticket (for example
    `slack_channel_id`, `github_repo`), which outbound delivery needs later.
    """

    channel: str
    external_id: str
    thread_key: str
    author: Author
    text: str = ""
    channel_detail: str | None = None
    rich_content: Mapping[str, Any] | None = None
    attachments: tuple[Attachment, ...] = ()
    sent_at: datetime | None = None
    kind: MessageKind = MessageKind.NEW
    creates_ticket: bool = False
    subject: str | None = None
    status: str | None = None
    ticket_fields: Mapping[str, Any] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OutboundReply:
    """A public reply to deliver through the ticket's channel.

    `delivery_id` is ours and is embedded as a marker in what the vendor stores (Slack message
    metadata, a hidden comment on GitHub, the email Message-ID) so that `find_delivered` can
    tell whether an attempt whose outcome is unknown actually landed.
    """

    delivery_id: str
    ticket_id: str
    ticket_number: int
    text: str
    thread: Mapping[str, Any]
    author_name: str | None = None
    rich_content: Mapping[str, Any] | None = None
    attachments: tuple[Attachment, ...] = ()
    attempt: int = 1
    metadata: Mapping[str, Any] = field(default_factory=dict)


class DeliveryStatus(enum.StrEnum):
    DELIVERED = "delivered"
    RETRYABLE = "retryable"
    FAILED = "failed"


@dataclass(frozen=True)
class DeliveryResult:
    status: DeliveryStatus
    external_id: str | None = None
    retry_after: float | None = None
    error_code: str | None = None
    error_detail: str | None = None

    @classmethod
    def delivered(cls, external_id: str | None) -> DeliveryResult:
        return cls(DeliveryStatus.DELIVERED, external_id=external_id)

    @classmethod
    def from_error(cls, error: DeliveryError) -> DeliveryResult:
        return cls(
            DeliveryStatus.RETRYABLE if error.retryable else DeliveryStatus.FAILED,
            retry_after=error.retry_after,
            error_code=error.code,
            error_detail=error.detail[:1000] if error.detail else None,
        )


@runtime_checkable
class ChannelAdapter(Protocol):
    """What every channel implements. Built per project from its integration settings."""

    name: str

    def verify(self, request: RawRequest) -> None:
        """Raise InvalidSignatureError unless the vendor signed this request."""

    def handshake(self, request: RawRequest) -> RawResponse | None:
        """Answer a vendor handshake (url_verification, ping) directly, or None."""

    def event_id(self, request: RawRequest) -> str:
        """The vendor's idempotency key for this event."""

    def parse(self, event: RawEvent) -> list[InboundMessage]:
        """Normalise a stored event. [] = known and deliberately ignored; unknown raises."""

    def deliver(self, reply: OutboundReply) -> DeliveryResult:
        """Post a reply; never raises for vendor failures, returns the outcome."""

    def find_delivered(self, reply: OutboundReply) -> DeliveryResult | None:
        """Look for an earlier post of the same delivery; None when not found."""


class KeyValueCache(Protocol):
    """A small TTL cache adapters use for vendor look-ups (users.info, JWKS, tokens).

    The service injects a Redis-backed one in production; `MemoryCache` is the in-process one.
    Values must be JSON-serialisable.
    """

    def get(self, key: str) -> Any | None: ...

    def set(self, key: str, value: Any, ttl: float) -> None: ...


class MemoryCache:
    """An in-process `KeyValueCache` (the embedded default and the tests' default)."""

    def __init__(self, clock: Any = None) -> None:
        import time

        self._now = clock or time.monotonic
        self._data: dict[str, tuple[float, Any]] = {}

    def get(self, key: str) -> Any | None:
        hit = self._data.get(key)
        if hit is None:
            return None
        expires, value = hit
        if expires < self._now():
            self._data.pop(key, None)
            return None
        return value

    def set(self, key: str, value: Any, ttl: float) -> None:
        self._data[key] = (self._now() + ttl, value)
