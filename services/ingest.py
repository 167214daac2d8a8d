"""Inbound: customer messages onto tickets (the ingest worker and API-created tickets)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from core.clock import now
from core.rows import insert_row
from models import Message, Ticket
from services import tickets as ticket_service
from services.unread import mark_unread_dirty


def add_customer_message(
    *,
    session: Session,
    ticket: Ticket,
    content: str,
    author_name: str | None = None,
    external_id: str | None = None,
    rich_content: Any = None,
    attachments: list[Any] | None = None,
    author_external_id: str | None = None,
    created_at: Any = None,
    channel_metadata: dict[str, Any] | None = None,
    flush: bool = True,
) -> Message:
    """Store a customer's message and update counters (reopens resolved/pending tickets).
    `flush=False` leaves the INSERT to the caller's next flush."""
    stamp = created_at or now()
    message = Message(
        id=uuid.uuid4(),
        project_id=ticket.project_id,
        ticket_id=ticket.id,
        message_type="customer_message",
        author_type="customer",
        author_name=author_name,
        author_external_id=author_external_id,
        is_private=False,
        content=content,
        rich_content=rich_content,
        attachments=attachments,
        external_id=external_id,
        channel_metadata=channel_metadata,
        created_at=stamp,
        updated_at=stamp,
        version=1,
    )
    session.add(message)
    ticket_service.record_public_message(ticket=ticket, message=message, from_customer=True)
    mark_unread_dirty(session, ticket.project_id)
    if flush:
        session.flush()
    from services import sla

    sla.apply_on_customer_message(session=session, ticket=ticket, message=message)
    return message


# -- normalised inbound messages → tickets and messages ------------------------------------

TICKET_FIELD_NAMES = {
    "slack_team_id", "slack_channel_id", "slack_thread_ts", "github_repo", "github_issue_number",
    "teams_service_url", "teams_conversation_id", "teams_channel_id", "teams_team_id", "teams_tenant_id",
    "teams_root_activity_id", "email_from", "email_to", "email_config_id", "cc_participants", "session_id",
    "session_context", "widget_session_id",
}


# The unique key of a ticket's thread (models.Ticket's UniqueConstraint).
THREAD_KEY_COLUMNS = ("project_id", "channel_source", "thread_key")


def _json_metadata(metadata: Any) -> dict[str, Any] | None:
    """The adapter's metadata as stored: plain JSON values only, None when there is none."""
    kept = {str(k): v for k, v in dict(metadata or {}).items() if isinstance(v, str | int | float | bool)}
    return kept or None


def _external_key(channel: str, external_id: str) -> str:
    # Email Message-IDs are global already; other vendors' ids are only unique per vendor.
    return external_id if channel == "email" else f"{channel}:{external_id}"


# Built once: ingest runs these for every event, and a statement built per call costs its
# construction and its cache key each time.
_TICKET_BY_THREAD = select(Ticket).where(
    Ticket.project_id == bindparam("project_id"), Ticket.channel_source == bindparam("channel"),
    Ticket.thread_key == bindparam("thread_key"), Ticket.deleted_at.is_(None),
)
_MESSAGE_BY_KEY = select(Message).where(Message.project_id == bindparam("project_id"),
                                        Message.external_id == bindparam("key"))
_MESSAGE_ID_BY_KEY = _MESSAGE_BY_KEY.with_only_columns(Message.id)
# A new message's two questions in one round trip: stored already? which ticket has its thread?
_MESSAGE_AND_THREAD = select(
    _MESSAGE_ID_BY_KEY.scalar_subquery().label("message_id"),
    _TICKET_BY_THREAD.with_only_columns(Ticket.id).scalar_subquery().label("ticket_id"),
)


def find_ticket_by_thread(*, session: Session, project_id: int, channel: str, thread_key: str) -> Ticket | None:
    return session.scalar(_TICKET_BY_THREAD, {"project_id": project_id, "channel": channel, "thread_key": thread_key})


def _find_message(*, session: Session, project_id: int, key: str) -> Message | None:
    return session.scalar(_MESSAGE_BY_KEY, {"project_id": project_id, "key": key})


def _stored_and_thread(*, session: Session, project_id: int, key: str, msg: Any) -> tuple[bool, Ticket | None]:
    """(whether the message is stored already, the ticket of its thread or None)."""
    message_id, ticket_id = session.execute(_MESSAGE_AND_THREAD, {
        "project_id": project_id, "key": key, "channel": msg.channel, "thread_key": msg.thread_key}).one()
    if message_id is not None:
        return True, None
    return False, session.get(Ticket, ticket_id) if ticket_id is not None else None


def _open_ticket(*, session: Session, project_id: int, msg: Any, key: str) -> tuple[Ticket | None, Message | None]:
    """A new ticket for the message's thread with the message as its first: (ticket, message).

    The ticket's INSERT already carries the message's counters and SLA clock (no UPDATE of
    the row just inserted), and both rows are written without the unit of work
    (core/rows.py). Two events opening the same thread at once (Slack's message +
    app_mention, GitHub's comment before `opened`) meet on the unique thread key: the
    loser's INSERT does nothing (ON CONFLICT DO NOTHING, so no savepoint is needed) and it
    gets (the winner's ticket, None) to add its message to."""
    from services.persons import upsert_person

    author = msg.author
    distinct_id = author.distinct_id or (author.email.lower() if author.email else None)
    fields = {k: v for k, v in dict(msg.ticket_fields).items() if k in TICKET_FIELD_NAMES}
    if distinct_id:
        upsert_person(session=session, project_id=project_id, distinct_id=distinct_id, name=author.name,
                      email=author.email)
    with session.no_autoflush:  # the SLA policy's query must not write the ticket half-made
        ticket = ticket_service.create_ticket(
            session=session, project_id=project_id, channel_source=msg.channel,
            channel_detail=msg.channel_detail, thread_key=msg.thread_key, distinct_id=distinct_id,
            customer_name=author.name, customer_email=author.email.lower() if author.email else None,
            email_subject=msg.subject, own_number_transaction=True, flush=False, **fields,
        )
        message = _add_message(session=session, ticket=ticket, msg=msg, key=key, flush=False)
    if not insert_row(session, ticket, unless_conflict_on=THREAD_KEY_COLUMNS):
        session.expunge(message)
        return find_ticket_by_thread(session=session, project_id=project_id, channel=msg.channel,
                                     thread_key=msg.thread_key), None
    insert_row(session, message)
    return ticket, message


def _add_message(*, session: Session, ticket: Ticket, msg: Any, key: str, flush: bool = True) -> Message:
    """The message on its ticket: a customer's, or a team member's answer from the vendor's UI."""
    attachments = [
        {k: v for k, v in vars(a).items() if k != "content" and v is not None} for a in msg.attachments
    ] or None
    if msg.author.is_team_member:
        return _add_team_message_from_channel(session=session, ticket=ticket, msg=msg, key=key,
                                              attachments=attachments)
    return add_customer_message(
        session=session, ticket=ticket, content=msg.text, author_name=msg.author.name, external_id=key,
        rich_content=dict(msg.rich_content) if msg.rich_content else None, attachments=attachments,
        author_external_id=msg.author.external_id, created_at=msg.sent_at,
        channel_metadata=_json_metadata(msg.metadata), flush=flush,
    )


@dataclass(frozen=True)
class Applied:
    changed: int
    # Replies to threads we have no ticket for (yet: the root may still be in flight).
    orphans: int


def apply_inbound(*, session: Session, project_id: int, messages: list[Any]) -> Applied:
    """Apply normalised messages; `changed` counts those that changed something."""
    from channels.base import MessageKind

    changed = orphans = 0
    for msg in messages:
        key = _external_key(msg.channel, msg.external_id)
        if msg.kind == MessageKind.NEW:
            stored, ticket = _stored_and_thread(session=session, project_id=project_id, key=key, msg=msg)
            if stored:
                continue  # de-duplicated by external id
            message = None
            if ticket is None and msg.creates_ticket:
                ticket, message = _open_ticket(session=session, project_id=project_id, msg=msg, key=key)
            if ticket is None:
                orphans += 1  # a reply in a thread we do not track (or not yet)
                continue
            created = message is not None
            if not created:
                if msg.subject and not ticket.email_subject:
                    ticket.email_subject = msg.subject
                message = _add_message(session=session, ticket=ticket, msg=msg, key=key)
            if message.author_type == "customer":
                from services import ai_tickets

                ai_tickets.on_customer_message(session=session, ticket=ticket, message=message, new_ticket=created)
            changed += 1
        elif msg.kind == MessageKind.EDIT:
            message = _find_message(session=session, project_id=project_id, key=key)
            if message is not None and message.content != msg.text:
                message.content = msg.text
                message.version = (message.version or 1) + 1
                message.updated_at = now()
                changed += 1
            if msg.subject:
                ticket = find_ticket_by_thread(session=session, project_id=project_id, channel=msg.channel,
                                               thread_key=msg.thread_key)
                if ticket is not None and ticket.email_subject != msg.subject:
                    ticket.email_subject = msg.subject
                    changed += 1
        elif msg.kind == MessageKind.DELETE:
            message = _find_message(session=session, project_id=project_id, key=key)
            if message is not None and message.deleted_at is None:
                message.deleted_at = now()
                ticket = session.get(Ticket, message.ticket_id)
                if ticket is not None and not message.is_private and ticket.message_count:
                    ticket.message_count -= 1
                changed += 1
        elif msg.kind == MessageKind.STATUS_CHANGE:
            ticket = find_ticket_by_thread(session=session, project_id=project_id, channel=msg.channel,
                                           thread_key=msg.thread_key)
            if ticket is not None and msg.status and ticket.status != msg.status:
                ticket.status = msg.status
                ticket.updated_at = now()
                mark_unread_dirty(session, project_id)
                changed += 1
    session.flush()
    return Applied(changed, orphans)


def _add_team_message_from_channel(*, session: Session, ticket: Ticket, msg: Any, key: str,
                                   attachments: Any) -> Message:
    """A team member answered in the vendor's own UI: store it, never send it back."""
    stamp = msg.sent_at or now()
    message = Message(
        id=uuid.uuid4(), project_id=ticket.project_id, ticket_id=ticket.id, message_type="sent_reply",
        author_type="support", author_name=msg.author.name, author_external_id=msg.author.external_id,
        is_private=False, content=msg.text, external_id=key, attachments=attachments, created_at=stamp,
        updated_at=stamp, version=1, channel_metadata=_json_metadata(msg.metadata),
    )
    session.add(message)
    ticket_service.record_public_message(ticket=ticket, message=message, from_customer=False)
    return message
