"""Team replies, internal notes and outbound compose."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from channels.email import addresses
from core.cache import get_cache
from core.clock import now
from models import Delivery, EmailConfig, Message, Ticket, User
from services import attachments as attachment_files
from services import tickets as ticket_service
from services.dispatch import after_commit
from services.errors import ConflictError, ValidationError

REPLAY_WINDOW = timedelta(seconds=120)
MAX_REPLY_LENGTH = 5000


@dataclass(frozen=True)
class ReplyOutcome:
    message: Message
    replayed: bool


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _validate_message(message: Any, *, attr: str = "message") -> str:
    if not isinstance(message, str) or not message.strip():
        raise ValidationError("This field may not be blank.", attr=attr)
    if len(message) > MAX_REPLY_LENGTH:
        raise ValidationError(f"Ensure this field has no more than {MAX_REPLY_LENGTH} characters.", attr=attr)
    return message


def _recent_duplicate(*, session: Session, ticket_id: uuid.UUID, fingerprint: str) -> Message | None:
    return session.scalar(
        select(Message)
        .where(
            Message.ticket_id == ticket_id,
            Message.request_fingerprint == fingerprint,
            Message.created_at >= now() - REPLAY_WINDOW,
        )
        .order_by(Message.created_at.desc())
        .limit(1)
    )


class ReplayGuard:
    """The 120 s replay rule: an identical request replays the stored result; one that arrives
    while the first is still in flight gets 409. The in-flight marker is a short cache lock."""

    def __init__(self, fingerprint: str) -> None:
        self.key = f"reply-lock:{fingerprint}"
        self.held = get_cache().add(self.key, 1, ttl=30)

    def release(self) -> None:
        if self.held:
            get_cache().delete(self.key)
            self.held = False


def create_delivery(*, session: Session, ticket: Ticket, message: Message) -> Delivery:
    """A pending delivery for a public reply, written in the caller's transaction."""
    delivery = Delivery(
        id=uuid.uuid4(),
        project_id=ticket.project_id,
        ticket_id=ticket.id,
        message_id=message.id,
        channel=ticket.channel_source,
        status="pending",
        attempts=0,
        next_attempt_at=now(),
    )
    session.add(delivery)
    message.delivery_status = "pending"
    after_commit(session, "deliver", delivery.id)
    return delivery


def add_team_message(
    *,
    session: Session,
    ticket: Ticket,
    author: User | None,
    content: str,
    is_private: bool,
    rich_content: Any = None,
    author_type: str = "support",
    message_type: str | None = None,
    fingerprint: str | None = None,
) -> Message:
    """Store a team (or AI/system) message; public ones get a delivery in the same transaction."""
    stamp = now()
    message = Message(
        id=uuid.uuid4(),
        project_id=ticket.project_id,
        ticket_id=ticket.id,
        message_type=message_type or ("internal_note" if is_private else "sent_reply"),
        author_type=author_type,
        author_name=author.display_name if author else None,
        author_user_id=author.id if author else None,
        is_private=is_private,
        content=content,
        rich_content=rich_content,
        request_fingerprint=fingerprint,
        created_at=stamp,
        updated_at=stamp,
        version=1,
    )
    session.add(message)
    session.flush()
    if not is_private:
        ticket_service.record_public_message(ticket=ticket, message=message, from_customer=False)
        if author_type in ("support", "AI") and ticket.first_response_at is None:
            ticket.first_response_at = stamp
        create_delivery(session=session, ticket=ticket, message=message)
    else:
        ticket.updated_at = stamp
    from services import sla

    sla.apply_on_team_reply(session=session, ticket=ticket, message=message)
    session.flush()
    return message


def reply(
    *, session: Session, ticket: Ticket, author: User, message: Any, is_private: Any = False, rich_content: Any = None,
    attachments: Sequence[attachment_files.Upload] = (),
) -> ReplyOutcome:
    """POST tickets/{id}/reply. The caller commits, then calls `guard.release()`.

    `attachments` (services.attachments) are kept on public replies and private notes alike,
    as help desks do for internal notes; a public reply sends them through the channel."""
    content = _validate_message(message)
    if not isinstance(is_private, bool):
        raise ValidationError("Must be a valid boolean.", attr="is_private")
    files = attachment_files.check(attachments)
    parts: tuple[Any, ...] = ("reply", author.id, str(ticket.id), content, is_private, rich_content)
    if files:  # the same text with other files is another reply
        parts += (attachment_files.fingerprint(files),)
    fingerprint = _fingerprint(*parts)
    guard = ReplayGuard(fingerprint)
    session.info.setdefault("replay_guards", []).append(guard)
    existing = _recent_duplicate(session=session, ticket_id=ticket.id, fingerprint=fingerprint)
    if existing is not None:
        return ReplyOutcome(existing, replayed=True)
    if not guard.held:
        raise ConflictError("An identical reply is already being processed.", code="duplicate_in_flight")
    created = add_team_message(
        session=session, ticket=ticket, author=author, content=content, is_private=is_private,
        rich_content=rich_content, fingerprint=fingerprint,
    )
    attachment_files.store(session=session, message=created, uploads=files)
    return ReplyOutcome(created, replayed=False)


def release_guards(session: Session) -> None:
    for guard in session.info.pop("replay_guards", []):
        guard.release()


class ComposeError(ValidationError):
    """Compose answers 400 `{detail, error_type}` (the seed's shape) besides our usual keys."""

    def __init__(self, detail: str, *, attr: str, error_type: str) -> None:
        super().__init__(detail, attr=attr, code=error_type)
        self.error_type = error_type


@dataclass(frozen=True)
class ComposeOutcome:
    ticket: Ticket
    replayed: bool


def compose(
    *,
    session: Session,
    project_id: int,
    author: User,
    recipient_email: Any,
    email_subject: Any,
    email_config_id: Any,
    message: Any,
    recipient_distinct_id: Any = None,
    rich_content: Any = None,
    campaign_id: uuid.UUID | None = None,
) -> ComposeOutcome:
    """A new open email ticket whose first message is a team reply delivered by email."""
    if not isinstance(recipient_email, str):
        raise ComposeError("Enter a valid recipient email address.", attr="recipient_email", error_type="invalid_email")
    try:
        # Internationalised addresses (josé@exämple.com, 用户@例子.广告) are valid (RFC 6531).
        recipient = addresses.normalize(recipient_email)
    except addresses.InvalidAddressError as exc:
        raise ComposeError(f"Enter a valid recipient email address: {exc.reason}.", attr="recipient_email",
                           error_type="invalid_email") from None
    if not isinstance(message, str) or not message.strip():
        raise ComposeError("The message may not be empty.", attr="message", error_type="empty_message")
    if len(message) > MAX_REPLY_LENGTH:
        raise ComposeError(f"The message is longer than {MAX_REPLY_LENGTH} characters.", attr="message",
                           error_type="message_too_long")
    subject = email_subject.strip() if isinstance(email_subject, str) else ""
    if not subject:
        raise ComposeError("An email subject is required.", attr="email_subject", error_type="missing_subject")
    if len(subject) > 998:
        raise ComposeError("The subject is too long.", attr="email_subject", error_type="subject_too_long")
    if recipient_distinct_id is not None and not isinstance(recipient_distinct_id, str):
        raise ComposeError("recipient_distinct_id must be a string.", attr="recipient_distinct_id",
                           error_type="invalid_distinct_id")
    try:
        config_uuid = uuid.UUID(str(email_config_id))
    except ValueError:
        config_uuid = None
    config = session.get(EmailConfig, config_uuid) if config_uuid else None
    if config is None or config.project_id != project_id:
        raise ComposeError("Unknown email config.", attr="email_config_id", error_type="invalid_email_config")

    fingerprint = _fingerprint("compose", author.id, project_id, recipient.lower(), subject, message, str(config.id))
    if campaign_id is None:
        guard = ReplayGuard(fingerprint)
        session.info.setdefault("replay_guards", []).append(guard)
        existing = session.scalar(
            select(Message).where(
                Message.project_id == project_id,
                Message.request_fingerprint == fingerprint,
                Message.created_at >= now() - REPLAY_WINDOW,
            ).limit(1)
        )
        if existing is not None:
            return ComposeOutcome(session.get_one(Ticket, existing.ticket_id), replayed=True)
        if not guard.held:
            raise ConflictError("An identical compose request is already being processed.", code="duplicate_in_flight")

    ticket = ticket_service.create_ticket(
        session=session,
        project_id=project_id,
        status="open",
        channel_source="email",
        channel_detail=None,
        distinct_id=recipient_distinct_id or None,
        email_subject=subject,
        email_from=recipient,
        email_to=recipient,
        customer_email=recipient.lower(),
        email_config_id=config.id,
        cc_participants=[],
    )
    add_team_message(
        session=session, ticket=ticket, author=author, content=message, is_private=False,
        rich_content=rich_content, fingerprint=fingerprint,
    )
    return ComposeOutcome(ticket, replayed=False)
