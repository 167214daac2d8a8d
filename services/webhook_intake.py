"""Accepting one inbound webhook: verify, answer a handshake, store the raw event. Nothing else.

This is the whole acknowledgement path, run as one blocking call in the web server's thread
pool: the vendors time out within seconds (Slack 3 s, GitHub 10 s, Bot Framework 15 s) and
retry, so everything that can wait (parsing, users.info, the ticket itself) happens in the
ingest worker after the raw event is durably stored.

The order of checks follows Sentry's GitHub webhook: unknown project or channel 404, bad
signature 401 (generic body), handshake answered, malformed body 400, duplicate 200.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from channels.base import RawRequest
from channels.errors import ChannelNotConfiguredError, InvalidSignatureError, MalformedPayloadError
from services import inbound, integrations

IGNORED_REPOSITORY = "ignored: the repository is not in the integration's repositories"


@dataclass(frozen=True)
class Acknowledgement:
    """What to answer the vendor, and the outcome label for the webhooks metric."""

    status: int
    outcome: str
    body: dict[str, Any] = field(default_factory=dict)
    # A handshake answers with the vendor's own body instead of JSON.
    raw_body: bytes | None = None
    content_type: str = "application/json"


NOT_FOUND = Acknowledgement(404, "not_configured", {"type": "invalid_request", "code": "not_found",
                                                    "detail": "Not found.", "attr": None})
BAD_SIGNATURE = Acknowledgement(401, "unauthorized", {"type": "authentication_error", "code": "invalid_signature",
                                                      "detail": "Invalid signature.", "attr": None})


def _malformed(exc: MalformedPayloadError) -> Acknowledgement:
    return Acknowledgement(400, "malformed", {"type": "validation_error", "code": "malformed", "detail": str(exc),
                                              "attr": None})


def accept(*, project_id: int, channel: str, raw: RawRequest) -> Acknowledgement:
    try:
        adapter = integrations.adapter_for(project_id=project_id, channel=channel)
    except ChannelNotConfiguredError:
        return NOT_FOUND
    try:
        adapter.verify(raw)
    except InvalidSignatureError:
        return BAD_SIGNATURE
    except MalformedPayloadError as exc:
        return _malformed(exc)
    try:
        handshake = adapter.handshake(raw)
        if handshake is not None:
            return Acknowledgement(handshake.status, "handshake", raw_body=handshake.body,
                                   content_type=handshake.content_type)
        event_id = adapter.event_id(raw)
        # GitHub: an organisation hook reports every repository; events of those outside the
        # integration's list are answered 200 (anything else lists as a failed delivery under
        # the hook's Recent Deliveries) and recorded as ignored with the reason.
        is_ignored = getattr(adapter, "is_ignored_repository", None)
        ignored = IGNORED_REPOSITORY if callable(is_ignored) and is_ignored(raw) else None
    except MalformedPayloadError as exc:
        return _malformed(exc)
    stored = inbound.accept_raw_event(project_id=project_id, channel=channel, event_id=event_id, body=raw.body,
                                      headers=dict(raw.headers), ignored=ignored)
    if ignored:
        return Acknowledgement(200, "ignored", {"ok": True, "duplicate": not stored.created, "ignored": True})
    return Acknowledgement(200, "accepted" if stored.created else "duplicate",
                           {"ok": True, "duplicate": not stored.created})
