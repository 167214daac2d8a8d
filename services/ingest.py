"""Inbound: customer messages onto tickets (the ingest worker and API-created tickets)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from core.clock import now
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
) -> Message:
    """Store a customer's message and update counters (reopens resolved/pending tickets)."""
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


def _json_metadata(metadata: Any) -> dict[str, Any] | None:
    """The adapter's metadata as stored: plain JSON values only, None when there is none."""
    kept = {str(k): v for k, v in dict(metadata or {}).items() if isinstance(v, str | int | float | bool)}
    return kept or None


def _external_key(channel: str, external_id: str) -> str:
    # Email Message-IDs are global already; other vendors' ids are only unique per vendor.
    return external_id if channel == "email" else f"{channel}:{external_id}"


def find_ticket_by_thread(*, session: Session, project_id: int, channel: str, thread_key: str) -> Ticket | None:
    from sqlalchemy import select

    return session.scalar(
        select(Ticket).where(
            Ticket.project_id == project_id, Ticket.channel_source == channel, Ticket.thread_key == thread_key,
            Ticket.deleted_at.is_(None),
        )
    )


def _find_message(*, session: Session, project_id: int, key: str) -> Message | None:
    from sqlalchemy import select

    return session.scalar(select(Message).where(Message.project_id == project_id, Message.external_id == key))


def _has_message(*, session: Session, project_id: int, key: str) -> bool:
    from sqlalchemy import select

    return session.scalar(select(Message.id).where(Message.project_id == project_id, Message.external_id == key)) is not None


def _find_or_create_ticket(*, session: Session, project_id: int, msg: Any) -> tuple[Ticket | None, bool]:
    """The thread's ticket and whether this call created it."""
    from sqlalchemy.exc import IntegrityError

    from services.persons import upsert_person

    ticket = find_ticket_by_thread(session=session, project_id=project_id, channel=msg.channel, thread_key=msg.thread_key)
    if ticket is not None or not msg.creates_ticket:
        return ticket, False
    author = msg.author
    distinct_id = author.distinct_id or (author.email.lower() if author.email else None)
    fields = {k: v for k, v in dict(msg.ticket_fields).items() if k in TICKET_FIELD_NAMES}
    try:
        # A savepoint: two events opening the same thread at once (Slack's message +
        # app_mention, GitHub's comment before `opened`) meet on the unique thread key.
        with session.begin_nested():
            if distinct_id:
                upsert_person(session=session, project_id=project_id, distinct_id=distinct_id, name=author.name,
                              email=author.email)
            created = ticket_service.create_ticket(
                session=session, project_id=project_id, channel_source=msg.channel,
                channel_detail=msg.channel_detail, thread_key=msg.thread_key, distinct_id=distinct_id,
                customer_name=author.name, customer_email=author.email.lower() if author.email else None,
                email_subject=msg.subject, own_number_transaction=True, **fields,
            )
    except IntegrityError:
        return find_ticket_by_thread(session=session, project_id=project_id, channel=msg.channel,
                                     thread_key=msg.thread_key), False
    return created, True


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
            if _has_message(session=session, project_id=project_id, key=key):
                continue  # de-duplicated by external id
            ticket, created = _find_or_create_ticket(session=session, project_id=project_id, msg=msg)
            if ticket is None:
                orphans += 1  # a reply in a thread we do not track (or not yet)
                continue
            if msg.subject and not ticket.email_subject:
                ticket.email_subject = msg.subject
            attachments = [
                {k: v for k, v in vars(a).items() if k != "content" and v is not None} for a in msg.attachments
            ] or None
            if msg.author.is_team_member:
                _add_team_message_from_channel(session=session, ticket=ticket, msg=msg, key=key, attachments=attachments)
            else:
                message = add_customer_message(
                    session=session, ticket=ticket, content=msg.text, author_name=msg.author.name, external_id=key,
                    rich_content=dict(msg.rich_content) if msg.rich_content else None, attachments=attachments,
                    author_external_id=msg.author.external_id, created_at=msg.sent_at,
                    channel_metadata=_json_metadata(msg.metadata),
                )
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


def _add_team_message_from_channel(*, session: Session, ticket: Ticket, msg: Any, key: str, attachments: Any) -> None:
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
