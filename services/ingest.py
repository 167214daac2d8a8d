"""Inbound: customer messages onto tickets (the ingest worker and API-created tickets)."""

from __future__ import annotations

import uuid
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
        created_at=stamp,
        updated_at=stamp,
        version=1,
    )
    session.add(message)
    ticket_service.record_public_message(ticket=ticket, message=message, from_customer=True)
    mark_unread_dirty(session, ticket.project_id)
    session.flush()
    return message
