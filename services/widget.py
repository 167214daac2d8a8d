"""The website widget's visitors: messages, their tickets, identity, restore links and emails.

Who may see a ticket (PostHog's model, see posthog-js `conversations`):
- an anonymous visitor is the random `widget_session_id` their browser keeps; a ticket they
  open carries that session id and only that session reads it;
- a verified visitor is `identity_distinct_id` + `identity_hash` (hex HMAC-SHA256 of the
  distinct id with the project's identity secret). Their own tickets carry the pseudo session
  `v:<sha256(distinct id)>`, which no browser can present (anonymous ids never contain ":");
  they also see every anonymous session linked to them (`WidgetSessionLink`):
  - proved in one request (a valid identity hash together with the session id), or
  - reported by posthog-js itself: `posthog.setIdentity()` aliases the anonymous distinct id
    to the verified one and captures `$create_alias` (`$identify` likewise), which the capture
    stub hands to `record_identity_events`. This is how the unchanged SDK keeps an anonymous
    session's tickets after the switch (PostHog merges the two persons the same way); a
    project can turn it off with the widget setting `link_anonymous_on_identify`.
- `distinct_id` alone never grants access (it is often an email address).

Every ticket a visitor cannot see answers 403, whether it belongs to another session or
project, was deleted or never existed, so ids cannot be probed.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from channels.errors import ChannelNotConfiguredError, InvalidSignatureError
from channels.widget.adapter import WidgetConfig, origin_matches, verify_identity
from core.cache import get_cache
from core.clock import as_utc, now
from core.crypto import decrypt_json, encrypt_json
from models import Integration, Message, Project, Ticket
from models.ticket import TICKET_STATUSES
from models.widget import WidgetNotification, WidgetRestoreToken, WidgetSessionLink
from services import tickets as ticket_service
from services.errors import PermissionDeniedError, ServiceError, ValidationError
from services.ingest import add_customer_message
from services.persons import upsert_person

MAX_MESSAGE_LENGTH = 10_000
MAX_TRAITS = 50
MAX_SESSION_CONTEXT = 20
MAX_TRAIT_KEY, MAX_TRAIT_VALUE = 200, 500
MAX_CONTEXT_KEY, MAX_CONTEXT_VALUE = 100, 2000
MESSAGES_PAGE_DEFAULT, MESSAGES_PAGE_MAX = 50, 500
TICKETS_PAGE_DEFAULT, TICKETS_PAGE_MAX = 20, 100
RESTORE_TOKEN_TTL = timedelta(minutes=60)
DEFAULT_UNREAD_NOTIFICATION_DELAY = timedelta(minutes=30)
PROJECT_CACHE_TTL = 10
# The SDK's session id is a UUIDv7; server callers may use any long random id. A short or
# exotic id is refused so sessions cannot be guessed, and ":" stays reserved for `v:` ids.
SESSION_ID_RE = re.compile(r"^[A-Za-z0-9_-]{16,200}$")
EMAIL_RE = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+$")
VERIFIED_PREFIX = "v:"


class NotAllowedError(PermissionDeniedError):
    """403 for every ticket the visitor may not see (exists or not)."""


# -- projects and settings -----------------------------------------------------------------

@dataclass(frozen=True)
class WidgetProject:
    project_id: int
    token: str
    config: WidgetConfig


def _project_cache_key(token: str) -> str:
    return "widget-project:" + hashlib.sha256(token.encode()).hexdigest()[:32]


def project_for_token(*, session: Session, token: str | None) -> WidgetProject | None:
    """The project whose public widget token this is (cached 10 s), or None."""
    if not token or len(token) > 64:
        return None
    cache = get_cache()
    key = _project_cache_key(token)
    cached = cache.get(key)
    if cached is None:
        project = session.scalar(select(Project).where(Project.widget_token == token))
        if project is None:
            return None
        integration = session.scalar(
            select(Integration).where(Integration.project_id == project.id, Integration.channel == "widget")
        )
        cached = {
            "project_id": project.id,
            "settings": integration.settings if integration else {},
            "secrets_enc": integration.secrets_enc if integration else None,
        }
        cache.set(key, cached, PROJECT_CACHE_TTL)
    return WidgetProject(
        project_id=int(cached["project_id"]),
        token=token,
        config=_config_from(cached["settings"], cached["secrets_enc"]),
    )


def _config_from(settings: dict[str, Any] | None, secrets_enc: str | None) -> WidgetConfig:
    secrets = decrypt_json(secrets_enc) if secrets_enc else {}
    try:
        return WidgetConfig.from_settings(settings or {}, secrets)
    except (ChannelNotConfiguredError, TypeError, ValueError):
        # Stored settings that no longer validate must not take the widget down: defaults,
        # keeping the identity secret when it still passes.
        try:
            return WidgetConfig(identity_secret=str(secrets.get("identity_secret") or ""))
        except ChannelNotConfiguredError:
            return WidgetConfig()


def load_config(*, session: Session, project_id: int) -> WidgetConfig:
    integration = session.scalar(
        select(Integration).where(Integration.project_id == project_id, Integration.channel == "widget")
    )
    return _config_from(integration.settings if integration else {}, integration.secrets_enc if integration else None)


def invalidate_project_cache(*, session: Session, project_id: int) -> None:
    """Forget the cached settings of a project. services/integrations calls this after a PUT
    or DELETE of the widget integration; otherwise a change shows within 10 s."""
    token = session.scalar(select(Project.widget_token).where(Project.id == project_id))
    if token:
        get_cache().delete(_project_cache_key(token))


# -- visitors --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Visitor:
    """Who is asking: an anonymous widget session, a verified identity, or both."""

    widget_session_id: str | None = None
    identity_distinct_id: str | None = None

    @property
    def verified(self) -> bool:
        return self.identity_distinct_id is not None

    @property
    def own_session(self) -> str:
        """The session id new tickets get: the verified pseudo session or the browser's."""
        if self.identity_distinct_id is not None:
            return verified_session_id(self.identity_distinct_id)
        assert self.widget_session_id is not None
        return self.widget_session_id

    @property
    def rate_key(self) -> str:
        return "id:" + hashlib.sha256(self.identity_distinct_id.encode()).hexdigest()[:32] if self.verified else (
            "s:" + (self.widget_session_id or "")
        )


def verified_session_id(distinct_id: str) -> str:
    return VERIFIED_PREFIX + hashlib.sha256(distinct_id.encode()).hexdigest()


def _optional_str(value: Any, attr: str, max_length: int) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > max_length:
        raise ValidationError(f"{attr} must be a string of at most {max_length} characters.", attr=attr)
    return value


def resolve_visitor(
    *, project: WidgetProject, widget_session_id: Any, identity_distinct_id: Any, identity_hash: Any
) -> Visitor:
    """Check the visitor's credentials: 400 when none are given, 403 for a wrong hash."""
    session_id = _optional_str(widget_session_id, "widget_session_id", 200)
    if session_id is not None and not SESSION_ID_RE.match(session_id):
        raise ValidationError("widget_session_id must be 16–200 letters, digits, '-' or '_'.", attr="widget_session_id")
    distinct_id = _optional_str(identity_distinct_id, "identity_distinct_id", 400)
    hash_value = _optional_str(identity_hash, "identity_hash", 128)
    if distinct_id is not None or hash_value is not None:
        if distinct_id is None or hash_value is None:
            raise ValidationError("identity_distinct_id and identity_hash go together.", attr="identity_hash")
        try:
            verify_identity(project.config.identity_secret, distinct_id, hash_value)
        except InvalidSignatureError:
            raise NotAllowedError("Identity verification failed.", code="identity_invalid") from None
        return Visitor(widget_session_id=session_id, identity_distinct_id=distinct_id)
    if session_id is None:
        raise ValidationError("widget_session_id, or identity_distinct_id with identity_hash, is required.",
                              attr="widget_session_id")
    return Visitor(widget_session_id=session_id)


def visible_sessions(*, session: Session, project_id: int, visitor: Visitor) -> list[str]:
    sessions: list[str] = []
    if visitor.widget_session_id:
        sessions.append(visitor.widget_session_id)
    if visitor.identity_distinct_id is not None:
        sessions.append(verified_session_id(visitor.identity_distinct_id))
        sessions.extend(
            session.scalars(
                select(WidgetSessionLink.widget_session_id).where(
                    WidgetSessionLink.project_id == project_id,
                    WidgetSessionLink.identity_distinct_id == visitor.identity_distinct_id,
                )
            )
        )
    return list(dict.fromkeys(sessions))


def link_session(*, session: Session, project_id: int, widget_session_id: str, identity_distinct_id: str, via: str) -> bool:
    """Let a verified identity see an anonymous session's tickets. A session keeps its first
    identity; returns whether a link was added."""
    if widget_session_id.startswith(VERIFIED_PREFIX):
        return False
    if session.get(WidgetSessionLink, (project_id, widget_session_id)) is not None:
        return False
    try:
        with session.begin_nested():
            session.add(WidgetSessionLink(project_id=project_id, widget_session_id=widget_session_id,
                                          identity_distinct_id=identity_distinct_id, via=via, created_at=now()))
    except IntegrityError:  # linked by a concurrent request
        return False
    return True


def _visible_ticket(*, session: Session, project_id: int, visitor: Visitor, ticket_id: Any, for_update: bool = False) -> Ticket:
    try:
        ticket_uuid = uuid.UUID(str(ticket_id))
    except ValueError:
        raise ValidationError("ticket_id must be a UUID.", attr="ticket_id") from None
    query = select(Ticket).where(
        Ticket.id == ticket_uuid, Ticket.project_id == project_id, Ticket.deleted_at.is_(None),
        Ticket.channel_source == "widget",
    )
    if for_update and session.bind is not None and session.bind.dialect.name == "postgresql":
        query = query.with_for_update()
    ticket = session.scalar(query)
    if ticket is None or ticket.widget_session_id not in visible_sessions(session=session, project_id=project_id,
                                                                            visitor=visitor):
        raise NotAllowedError("You do not have access to this conversation.", code="forbidden")
    return ticket


# -- input -----------------------------------------------------------------------------------

def _clean_message(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError("message may not be blank.", attr="message")
    text = value.strip()
    if len(text) > MAX_MESSAGE_LENGTH:
        raise ValidationError(f"message is longer than the limit of {MAX_MESSAGE_LENGTH} characters.", attr="message")
    return text


def _clean_flat_object(value: Any, *, attr: str, max_keys: int, max_key: int, max_value: int) -> dict[str, Any]:
    """A small object of simple values; nulls and nested values are dropped, strings truncated."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationError(f"{attr} must be an object.", attr=attr)
    if len(value) > max_keys:
        raise ValidationError(f"{attr} has {len(value)} keys; the limit is {max_keys}.", attr=attr)
    clean: dict[str, Any] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not key or len(key) > max_key:
            raise ValidationError(f"{attr} keys must be strings of at most {max_key} characters.", attr=attr)
        if item is None:
            continue  # the SDK sends {"name": null, "email": null} for a visitor it does not know
        if isinstance(item, bool | int | float):
            clean[key] = item
        elif isinstance(item, str):
            clean[key] = item[:max_value]
        # Objects and lists are not kept: traits and context are shown as flat key/value pairs.
    return clean


def clean_traits(value: Any) -> dict[str, Any]:
    return _clean_flat_object(value, attr="traits", max_keys=MAX_TRAITS, max_key=MAX_TRAIT_KEY, max_value=MAX_TRAIT_VALUE)


def clean_session_context(value: Any) -> dict[str, Any]:
    return _clean_flat_object(value, attr="session_context", max_keys=MAX_SESSION_CONTEXT, max_key=MAX_CONTEXT_KEY,
                              max_value=MAX_CONTEXT_VALUE)


def _trait_email(traits: dict[str, Any]) -> str | None:
    email = traits.get("email")
    if isinstance(email, str) and EMAIL_RE.match(email.strip()) and len(email.strip()) <= 254:
        return email.strip().lower()
    return None


def _trait_name(traits: dict[str, Any]) -> str | None:
    name = traits.get("name")
    return name.strip()[:300] if isinstance(name, str) and name.strip() else None


def parse_after(value: str | None) -> datetime | None:
    """The `after` cursor. A `+` in the offset arrives as `%2B` (decoded by the framework);
    sent unencoded it arrives as a space, which is put back."""
    if value is None or value == "":
        return None
    text = value.strip().replace(" ", "+")
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError("after must be an ISO 8601 timestamp.", attr="after") from None
    if parsed.tzinfo is None:
        raise ValidationError("after must include a time zone offset.", attr="after")
    return as_utc(parsed)


def parse_limit(value: Any, default: int, maximum: int, attr: str = "limit", minimum: int = 1) -> int:
    if value is None or value == "":
        return default
    try:
        number = int(str(value))
    except ValueError:
        raise ValidationError(f"{attr} must be an integer.", attr=attr) from None
    if not minimum <= number <= maximum:
        raise ValidationError(f"{attr} must be between {minimum} and {maximum}.", attr=attr)
    return number


def iso(value: datetime | None) -> str | None:
    value = as_utc(value)
    return value.isoformat().replace("+00:00", "Z") if value else None


# -- the widget endpoints --------------------------------------------------------------------

@dataclass(frozen=True)
class MessageIn:
    message: Any
    ticket_id: Any = None
    traits: Any = None
    distinct_id: Any = None
    session_id: Any = None
    session_context: Any = None


def post_message(*, session: Session, project: WidgetProject, visitor: Visitor, data: MessageIn,
                 embedded: bool) -> dict[str, Any]:
    """POST message: a customer message on the visitor's ticket, or on a new `new` ticket.

    `embedded` is True for the browser widget (the request carried an Origin header) and
    False for a server call; it decides `channel_detail` (widget_embedded / widget_api).
    """
    content = _clean_message(data.message)
    traits = clean_traits(data.traits)
    context = clean_session_context(data.session_context)
    distinct_id = _optional_str(data.distinct_id, "distinct_id", 400)
    session_id = _optional_str(data.session_id, "session_id", 200)
    if visitor.verified:
        distinct_id = visitor.identity_distinct_id
        if visitor.widget_session_id:
            link_session(session=session, project_id=project.project_id, widget_session_id=visitor.widget_session_id,
                         identity_distinct_id=visitor.identity_distinct_id or "", via="identity_request")
    name, email = _trait_name(traits), _trait_email(traits)
    if data.ticket_id in (None, ""):
        ticket = ticket_service.create_ticket(
            session=session,
            project_id=project.project_id,
            status="new",
            channel_source="widget",
            channel_detail="widget_embedded" if embedded else "widget_api",
            widget_session_id=visitor.own_session,
            distinct_id=distinct_id,
            anonymous_traits=traits or None,
            customer_name=name,
            customer_email=email,
            session_id=session_id,
            session_context=context or None,
        )
    else:
        ticket = _visible_ticket(session=session, project_id=project.project_id, visitor=visitor,
                                 ticket_id=data.ticket_id, for_update=True)
        if traits:
            ticket.anonymous_traits = {**(ticket.anonymous_traits or {}), **traits}
        if name and not ticket.customer_name:
            ticket.customer_name = name
        if email and not ticket.customer_email:
            ticket.customer_email = email
        if session_id:
            ticket.session_id = session_id
        if context:
            merged = {**(ticket.session_context or {}), **context}
            # Keep the newest keys when the merged context outgrows the limit.
            ticket.session_context = dict(list(merged.items())[-MAX_SESSION_CONTEXT:])
        if distinct_id and (visitor.verified or not ticket.distinct_id):
            ticket.distinct_id = distinct_id
    if distinct_id:
        upsert_person(session=session, project_id=project.project_id, distinct_id=distinct_id, name=name, email=email,
                      is_identified=visitor.verified)
    message = add_customer_message(session=session, ticket=ticket, content=content,
                                   author_name=name or ticket.customer_name, author_external_id=distinct_id)
    return {
        "ticket_id": str(ticket.id),
        "message_id": str(message.id),
        "ticket_status": ticket.status,
        "unread_count": ticket.unread_customer_count or 0,
        "created_at": iso(message.created_at),
    }


def list_tickets(*, session: Session, project: WidgetProject, visitor: Visitor, status: str | None, limit: Any,
                 offset: Any) -> dict[str, Any]:
    """GET tickets: the visitor's widget tickets, newest first."""
    limit_n = parse_limit(limit, TICKETS_PAGE_DEFAULT, TICKETS_PAGE_MAX)
    offset_n = parse_limit(offset, 0, 10**9, attr="offset", minimum=0)
    if status not in (None, "") and status not in TICKET_STATUSES:
        raise ValidationError(f"'{status}' is not a valid status (one of: {', '.join(TICKET_STATUSES)}).", attr="status")
    query = select(Ticket).where(
        Ticket.project_id == project.project_id,
        Ticket.channel_source == "widget",
        Ticket.deleted_at.is_(None),
        Ticket.widget_session_id.in_(visible_sessions(session=session, project_id=project.project_id, visitor=visitor)),
    )
    if status:
        query = query.where(Ticket.status == status)
    count = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(Ticket.created_at.desc(), Ticket.id).limit(limit_n).offset(offset_n)).all()
    return {
        "count": int(count),
        "results": [
            {
                "id": str(t.id),
                "ticket_number": t.ticket_number,
                "status": t.status,
                "unread_count": t.unread_customer_count or 0,
                "last_message": t.last_message_text,
                "last_message_at": iso(t.last_message_at),
                "message_count": t.message_count or 0,
                "created_at": iso(t.created_at),
            }
            for t in rows
        ],
    }


def _author_name(message: Message, ticket: Ticket) -> str:
    if message.author_type == "customer":
        traits = ticket.anonymous_traits or {}
        return message.author_name or traits.get("name") or traits.get("email") or "You"
    if message.author_name:
        return message.author_name
    return {"AI": "Assistant", "system": "System"}.get(message.author_type, "Support")


def list_messages(*, session: Session, project: WidgetProject, visitor: Visitor, ticket_id: Any, after: str | None,
                  limit: Any) -> dict[str, Any]:
    """GET messages/{ticket_id}: public messages strictly after `after`, oldest first."""
    limit_n = parse_limit(limit, MESSAGES_PAGE_DEFAULT, MESSAGES_PAGE_MAX)
    after_at = parse_after(after)
    ticket = _visible_ticket(session=session, project_id=project.project_id, visitor=visitor, ticket_id=ticket_id)
    query = select(Message).where(
        Message.ticket_id == ticket.id,
        Message.deleted_at.is_(None),
        Message.is_private.is_(False),
        Message.message_type != "ai_draft",
    )
    if after_at is not None:
        # Strictly after: the widget echoes its own message's timestamp back as the cursor.
        query = query.where(Message.created_at > after_at)
    rows = session.scalars(query.order_by(Message.created_at, Message.id).limit(limit_n)).all()
    return {
        "ticket_id": str(ticket.id),
        "ticket_status": ticket.status,
        "unread_count": ticket.unread_customer_count or 0,
        "messages": [
            {
                "id": str(m.id),
                "content": m.content,
                "rich_content": m.rich_content,
                "author_type": m.author_type,
                "author_name": _author_name(m, ticket),
                "created_at": iso(m.created_at),
                "is_private": False,
            }
            for m in rows
        ],
        # As PostHog's widget API answers it: a full page means there may be more.
        "has_more": len(rows) == limit_n,
    }


def mark_read(*, session: Session, project: WidgetProject, visitor: Visitor, ticket_id: Any) -> dict[str, Any]:
    """POST messages/{ticket_id}/read: the visitor has read the team's replies."""
    ticket = _visible_ticket(session=session, project_id=project.project_id, visitor=visitor, ticket_id=ticket_id)
    if visitor.verified and visitor.widget_session_id:
        link_session(session=session, project_id=project.project_id, widget_session_id=visitor.widget_session_id,
                     identity_distinct_id=visitor.identity_distinct_id or "", via="identity_request")
    if ticket.unread_customer_count:
        # A counter reset is not an edit: the team's list order (updated_at) stays as it was.
        session.execute(
            update(Ticket).where(Ticket.id == ticket.id).values(unread_customer_count=0, updated_at=ticket.updated_at)
            .execution_options(synchronize_session=False)
        )
    return {"success": True, "unread_count": 0}


# -- identity events from the SDK ------------------------------------------------------------

def identity_pairs(events: list[Any]) -> list[tuple[str, str]]:
    """(anonymous distinct id, identified distinct id) pairs in a captured event batch."""
    pairs: list[tuple[str, str]] = []
    for event in events:
        if not isinstance(event, dict):
            continue
        props = event.get("properties") if isinstance(event.get("properties"), dict) else {}
        name = event.get("event")
        if name == "$create_alias":
            anonymous, identified = props.get("distinct_id") or event.get("distinct_id"), props.get("alias")
        elif name == "$identify":
            anonymous = props.get("$anon_distinct_id")
            identified = event.get("distinct_id") or props.get("distinct_id")
        else:
            continue
        if (isinstance(anonymous, str) and isinstance(identified, str) and anonymous and identified
                and anonymous != identified and len(anonymous) <= 400 and len(identified) <= 400):
            pairs.append((anonymous, identified))
    return pairs


def record_identity_events(*, session: Session, project: WidgetProject, events: list[Any]) -> int:
    """Link the anonymous sessions of aliased distinct ids to the verified identity."""
    if not project.config.link_anonymous_on_identify:
        return 0
    linked = 0
    for anonymous, identified in identity_pairs(events):
        session_ids = session.scalars(
            select(Ticket.widget_session_id).where(
                Ticket.project_id == project.project_id,
                Ticket.channel_source == "widget",
                Ticket.distinct_id == anonymous,
                Ticket.widget_session_id.is_not(None),
            ).distinct()
        ).all()
        for session_id in session_ids:
            if session_id and link_session(session=session, project_id=project.project_id, widget_session_id=session_id,
                                           identity_distinct_id=identified, via="alias"):
                linked += 1
    return linked


# -- restore links ---------------------------------------------------------------------------

def _token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def _restore_tickets(*, session: Session, project_id: int, email: str) -> list[Ticket]:
    return list(session.scalars(
        select(Ticket).where(
            Ticket.project_id == project_id,
            Ticket.channel_source == "widget",
            Ticket.deleted_at.is_(None),
            Ticket.customer_email == email,
            # A verified identity's tickets follow the identity, not a browser.
            Ticket.widget_session_id.not_like(VERIFIED_PREFIX + "%"),
        )
    ))


def _restore_url(request_url: str, token: str) -> str:
    parts = urlsplit(request_url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "ph_conv_restore"]
    query.append(("ph_conv_restore", token))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


def request_restore_link(*, session: Session, project: WidgetProject, email: Any, request_url: Any,
                         origin: str | None) -> dict[str, Any]:
    """POST restore/request: queue an email with a one-time link, when the address has tickets.

    The answer is the same whether or not it has any (no address probing). The link points
    at the page the visitor is on, which must be on one of the project's allowed domains and
    the request's own origin: otherwise anyone could embed the widget on their own site and
    have a victim's restore token mailed out pointing there. So restore needs allowed domains.
    """
    if not project.config.allowed_domains:
        raise NotAllowedError("Restore links need the widget's allowed domains to be set.", code="restore_disabled")
    if not isinstance(email, str) or not EMAIL_RE.match(email.strip()) or len(email.strip()) > 254:
        raise ValidationError("Enter a valid email address.", attr="email")
    if not isinstance(request_url, str) or len(request_url) > 2048:
        raise ValidationError("request_url must be the page's URL.", attr="request_url")
    parts = urlsplit(request_url)
    if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc or "\\" in request_url:
        raise ValidationError("request_url must be an http(s) URL.", attr="request_url")
    origin_host = (urlsplit(origin or "").hostname or "").lower()
    if origin_host != parts.hostname.lower():
        raise NotAllowedError("request_url must be on the page's own origin.", code="origin_mismatch")
    if not origin_matches(f"{parts.scheme}://{parts.netloc}", project.config.allowed_domains):
        raise NotAllowedError("request_url is not on an allowed domain.", code="domain_not_allowed")
    address = email.strip().lower()
    if not _restore_tickets(session=session, project_id=project.project_id, email=address):
        return {"ok": True, "status": "success"}
    raw = secrets.token_urlsafe(32)
    stamp = now()
    token = WidgetRestoreToken(project_id=project.project_id, token_hash=_token_hash(raw), recipient_email=address,
                               created_at=stamp, expires_at=stamp + RESTORE_TOKEN_TTL)
    session.add(token)
    session.flush()
    _queue_notification(session=session, project_id=project.project_id, ticket_id=None, kind="restore_link",
                        dedupe_key=str(token.id), email=address,
                        payload={"restore_url": _restore_url(request_url, raw), "expires_at": iso(token.expires_at)})
    return {"ok": True, "status": "success"}


def redeem_restore_token(*, session: Session, project: WidgetProject, restore_token: Any,
                         widget_session_id: Any) -> dict[str, Any]:
    """POST restore: move the tickets of the link's email address to this browser session."""
    if not isinstance(restore_token, str) or not 20 <= len(restore_token.strip()) <= 100:
        return {"status": "invalid", "code": "token_invalid"}
    visitor = resolve_visitor(project=project, widget_session_id=widget_session_id, identity_distinct_id=None,
                              identity_hash=None)
    token = session.scalar(
        select(WidgetRestoreToken).where(
            WidgetRestoreToken.token_hash == _token_hash(restore_token.strip()),
            WidgetRestoreToken.project_id == project.project_id,
        )
    )
    if token is None:
        return {"status": "invalid", "code": "token_invalid"}
    if token.consumed_at is not None:
        return {"status": "used", "code": "token_already_used"}
    stamp = now()
    if as_utc(token.expires_at) <= stamp:  # type: ignore[operator]
        return {"status": "expired", "code": "token_expired"}
    claimed = session.execute(
        update(WidgetRestoreToken)
        .where(WidgetRestoreToken.id == token.id, WidgetRestoreToken.consumed_at.is_(None))
        .values(consumed_at=stamp, consumed_by_widget_session_id=visitor.widget_session_id)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not claimed:
        return {"status": "used", "code": "token_already_used"}
    tickets = _restore_tickets(session=session, project_id=project.project_id, email=token.recipient_email)
    for ticket in tickets:
        ticket.widget_session_id = visitor.widget_session_id
    # Other links mailed to the same address stop working once one is used.
    session.execute(
        update(WidgetRestoreToken)
        .where(WidgetRestoreToken.project_id == project.project_id,
               WidgetRestoreToken.recipient_email == token.recipient_email,
               WidgetRestoreToken.consumed_at.is_(None))
        .values(consumed_at=stamp)
        .execution_options(synchronize_session=False)
    )
    tickets.sort(key=lambda t: as_utc(t.created_at) or stamp, reverse=True)
    return {
        "status": "success",
        "widget_session_id": visitor.widget_session_id,
        "migrated_ticket_ids": [str(t.id) for t in tickets],
    }


# -- emails to visitors ----------------------------------------------------------------------

@dataclass(frozen=True)
class VisitorEmail:
    """An email owed to a widget visitor, for the email channel to send."""

    notification_id: uuid.UUID
    project_id: int
    kind: str  # "unread_reply" | "restore_link"
    recipient_email: str
    ticket_id: uuid.UUID | None
    payload: dict[str, Any] = field(default_factory=dict)


def _queue_notification(*, session: Session, project_id: int, ticket_id: uuid.UUID | None, kind: str, dedupe_key: str,
                        email: str, payload: dict[str, Any]) -> WidgetNotification | None:
    try:
        with session.begin_nested():
            row = WidgetNotification(project_id=project_id, ticket_id=ticket_id, kind=kind, dedupe_key=dedupe_key,
                                     recipient_email=email, payload_enc=encrypt_json(payload), created_at=now())
            session.add(row)
    except IntegrityError:  # a concurrent run queued it first
        return None
    return row


def _email_out(row: WidgetNotification) -> VisitorEmail:
    return VisitorEmail(notification_id=row.id, project_id=row.project_id, kind=row.kind,
                        recipient_email=row.recipient_email, ticket_id=row.ticket_id,
                        payload=decrypt_json(row.payload_enc))


def notify_unread_replies(*, session: Session, older_than: timedelta = DEFAULT_UNREAD_NOTIFICATION_DELAY,
                          limit: int = 500) -> list[VisitorEmail]:
    """Queue an email for each widget visitor who left an address and has not read a team
    reply for `older_than` (or the project's `unread_notification_minutes`).

    One email covers every unread reply not mentioned in an earlier one; a reply is never
    mentioned twice (the newest reply's id is the notification's unique key), so running this
    again, or in two schedulers at once, queues nothing new. Returns what was queued; the
    email channel sends it (`pending_visitor_emails`) and calls `mark_visitor_email_sent`.
    """
    stamp = now()
    candidates = session.scalars(
        select(Ticket)
        .where(
            Ticket.channel_source == "widget",
            Ticket.deleted_at.is_(None),
            Ticket.unread_customer_count > 0,
            Ticket.customer_email.is_not(None),
            Ticket.last_message_at <= stamp - min(older_than, timedelta(minutes=1)),
        )
        .order_by(Ticket.last_message_at)
        .limit(limit)
    ).all()
    configs: dict[int, WidgetConfig] = {}
    queued: list[VisitorEmail] = []
    for ticket in candidates:
        if ticket.project_id not in configs:
            configs[ticket.project_id] = load_config(session=session, project_id=ticket.project_id)
        config = configs[ticket.project_id]
        threshold = timedelta(minutes=config.unread_notification_minutes) if config.unread_notification_minutes else older_than
        unread = list(reversed(session.scalars(
            select(Message)
            .where(Message.ticket_id == ticket.id, Message.deleted_at.is_(None), Message.is_private.is_(False),
                   Message.author_type.in_(("support", "AI")), Message.message_type != "ai_draft")
            .order_by(Message.created_at.desc(), Message.id.desc())
            .limit(ticket.unread_customer_count)
        ).all()))
        last_key = session.scalar(
            select(WidgetNotification.dedupe_key)
            .where(WidgetNotification.ticket_id == ticket.id, WidgetNotification.kind == "unread_reply")
            .order_by(WidgetNotification.created_at.desc())
            .limit(1)
        )
        if last_key is not None:
            covered = session.scalar(select(Message.created_at).where(Message.id == uuid.UUID(last_key)))
            if covered is not None:
                unread = [m for m in unread if as_utc(m.created_at) > as_utc(covered)]  # type: ignore[operator]
        if not unread or as_utc(unread[0].created_at) > stamp - threshold:  # type: ignore[operator]
            continue
        payload = {
            "ticket_number": ticket.ticket_number,
            "customer_name": ticket.customer_name,
            "replies": [
                {"author_name": _author_name(m, ticket), "content": m.content, "created_at": iso(m.created_at)}
                for m in unread
            ],
        }
        row = _queue_notification(session=session, project_id=ticket.project_id, ticket_id=ticket.id,
                                  kind="unread_reply", dedupe_key=str(unread[-1].id), email=ticket.customer_email or "",
                                  payload=payload)
        if row is not None:
            queued.append(_email_out(row))
    return queued


def pending_visitor_emails(*, session: Session, limit: int = 100) -> list[VisitorEmail]:
    """Queued visitor emails not sent yet, oldest first."""
    rows = session.scalars(
        select(WidgetNotification).where(WidgetNotification.sent_at.is_(None))
        .order_by(WidgetNotification.created_at).limit(limit)
    ).all()
    return [_email_out(r) for r in rows]


def mark_visitor_email_sent(*, session: Session, notification_id: uuid.UUID) -> None:
    session.execute(update(WidgetNotification).where(WidgetNotification.id == notification_id)
                    .values(sent_at=now(), last_error=None).execution_options(synchronize_session=False))


def mark_visitor_email_failed(*, session: Session, notification_id: uuid.UUID, error: str) -> None:
    session.execute(update(WidgetNotification).where(WidgetNotification.id == notification_id)
                    .values(last_error=error[:1000]).execution_options(synchronize_session=False))


class RateLimitedError(ServiceError):
    status_code = 429
    type = "throttled"
    code = "throttled"

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"Request was throttled. Expected available in {retry_after} seconds.")
        self.retry_after = retry_after
