"""Edits of team messages: version counting, and carrying an edit to the channel where it can go.

A public reply that already reached the channel is edited there by a worker (Slack
`chat.update`, GitHub's "Update an issue comment", the Bot Connector's "Update activity");
email cannot take back a sent message, so the team is told with a system note instead.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.clock import now
from models import Delivery, Message, Ticket, User
from services import edits, replies
from services.dispatch import after_commit
from services.errors import NotFoundError, PermissionDeniedError, ValidationError

# Channels whose posted messages a worker can edit in place after delivery.
EDITABLE_CHANNELS = frozenset({"slack", "github", "teams"})
# The widget reads the thread from our own store, so the edit is what the customer sees next.
STORE_READ_CHANNELS = frozenset({"widget"})

PENDING_CHANNEL_EDIT = "pending_channel_edit"
NOT_SUPPORTED_BY_CHANNEL = "not_supported_by_channel"
NOT_DELIVERED_YET = "not_delivered_yet"
APPLIED = "applied"

UNSET: Any = object()


class MessageEditError(ValidationError):
    """Answers with `error_type` besides `code`, as PostHog's clients read either."""

    def __init__(self, detail: str, *, code: str, attr: str | None = None) -> None:
        super().__init__(detail, attr=attr, code=code)
        self.error_type = code


class MessageNotFoundError(NotFoundError):
    def __init__(self, detail: str, *, code: str) -> None:
        super().__init__(detail, attr=None, code=code)
        self.error_type = code


class NotMessageAuthorError(PermissionDeniedError):
    def __init__(self, detail: str, *, code: str) -> None:
        super().__init__(detail, attr=None, code=code)
        self.error_type = code


def load_message(
    *, session: Session, ticket: Ticket, message_id: str | uuid.UUID, not_found_code: str = "message_not_found"
) -> Message:
    """A live (not deleted) message of this ticket, locked for the edit on PostgreSQL."""
    try:
        mid = message_id if isinstance(message_id, uuid.UUID) else uuid.UUID(str(message_id))
    except ValueError:
        raise MessageNotFoundError("Not found.", code=not_found_code) from None
    query = select(Message).where(Message.id == mid, Message.ticket_id == ticket.id, Message.deleted_at.is_(None))
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    message = session.scalar(query)
    if message is None:
        raise MessageNotFoundError("Not found.", code=not_found_code)
    return message


def validate_rich_content(value: Any) -> Any:
    if value is not None and not isinstance(value, dict | list):
        raise ValidationError("rich_content must be an object, a list or null.", attr="rich_content")
    return value


def apply_edit(*, message: Message, content: Any = UNSET, rich_content: Any = UNSET) -> Message:
    """Change content and/or rich_content, bump `version` and `updated_at`.

    New text without rich_content clears the old rich_content, so the thread never shows a
    stale rich body beside the new plain one (PostHog's notes PATCH behaves the same way)."""
    if content is UNSET and rich_content is UNSET:
        raise ValidationError("Send message and/or rich_content.", attr="message")
    if content is not UNSET:
        message.content = replies._validate_message(content)
        message.rich_content = None if rich_content is UNSET else validate_rich_content(rich_content)
    else:
        message.rich_content = validate_rich_content(rich_content)
    message.version = (message.version or 1) + 1
    message.updated_at = now()
    return message


@dataclass(frozen=True)
class EditOutcome:
    message: Message
    edit_status: str


def _refresh_last_message_text(*, session: Session, ticket: Ticket, message: Message) -> None:
    latest = session.scalar(
        select(Message.id)
        .where(Message.ticket_id == ticket.id, Message.is_private.is_(False), Message.deleted_at.is_(None))
        .order_by(Message.created_at.desc(), Message.id.desc())
        .limit(1)
    )
    if latest == message.id:
        ticket.last_message_text = (message.content or "")[:500]


def _delivery_edit_status(*, session: Session, ticket: Ticket, message: Message) -> tuple[str, str | None]:
    """(edit_status, delivery status). pending or failed: the next attempt (or a retry) reads
    the message when it runs, so it sends the edited text. `sending`: the attempt in flight
    may already carry the original, so it is treated like `sent` (the edit worker waits for
    the outcome)."""
    delivery = session.scalar(select(Delivery).where(Delivery.message_id == message.id))
    if delivery is None or delivery.status in ("pending", "failed"):
        return NOT_DELIVERED_YET, delivery.status if delivery else None
    channel = delivery.channel or ticket.channel_source
    if channel in STORE_READ_CHANNELS:
        return APPLIED, delivery.status
    if channel in EDITABLE_CHANNELS:
        edits.mark_pending(session=session, delivery_id=delivery.id)  # durable: the sweeper finds it
        after_commit(session, "edit", message.id)
        return PENDING_CHANNEL_EDIT, delivery.status
    return NOT_SUPPORTED_BY_CHANNEL, delivery.status


def edit_team_message(
    *, session: Session, ticket: Ticket, editor: User, message_id: str, content: Any, rich_content: Any = UNSET
) -> EditOutcome:
    """PATCH tickets/{id}/messages/{message_id}: a team member edits their own public reply."""
    message = load_message(session=session, ticket=ticket, message_id=message_id)
    if message.author_type == "customer":
        raise MessageEditError("Customer messages cannot be edited.", code="not_team_message")
    if message.is_private:
        raise MessageEditError("Edit internal notes through tickets/{id}/notes/{message_id}.",
                               code="not_public_reply")
    if message.author_type != "support" or message.author_user_id != editor.id:
        raise NotMessageAuthorError("Only the author of a reply may edit it.", code="not_message_author")
    apply_edit(message=message, content=content, rich_content=rich_content)
    _refresh_last_message_text(session=session, ticket=ticket, message=message)
    status, delivery_status = _delivery_edit_status(session=session, ticket=ticket, message=message)
    if status == NOT_SUPPORTED_BY_CHANNEL:
        has = "already has" if delivery_status == "sent" else "may already have"
        replies.add_team_message(
            session=session, ticket=ticket, author=None, is_private=True, author_type="system",
            message_type="internal_note",
            content=(
                f"{editor.display_name} edited a reply that was already sent by {ticket.channel_source}, "
                f"which cannot change a sent message. The customer {has} the original; "
                "the edit shows here only."
            ),
        )
    session.flush()
    return EditOutcome(message=message, edit_status=status)
