"""Snooze: wake tickets whose `snoozed_until` has passed (run by the scheduler)."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.clock import now
from models import Ticket
from services.replies import add_team_message
from services.unread import mark_unread_dirty

WAKE_NOTE = "Snooze ended: the ticket is back in the queue."


def wake_snoozed_tickets(*, session: Session, batch: int = 500) -> int:
    """Wake up to `batch` tickets whose snooze has passed; returns how many woke.

    Each one loses its `snoozed_until`, becomes `open` unless it already is `open` or `new`
    (SPEC "SLA and snooze"), and gets an internal `system` note saying so. The scheduler calls
    this until it returns less than `batch`. Safe to run concurrently: on PostgreSQL the rows
    are claimed with FOR UPDATE SKIP LOCKED, on SQLite the single writer serialises runs, and
    the conditional UPDATE only touches tickets that are still snoozed.
    """
    stamp = now()
    query = (
        select(Ticket)
        .where(Ticket.snoozed_until.is_not(None), Ticket.snoozed_until <= stamp, Ticket.deleted_at.is_(None))
        .order_by(Ticket.snoozed_until)
        .limit(batch)
    )
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    woke = 0
    for ticket in session.scalars(query).all():
        claimed = session.execute(
            update(Ticket)
            .where(Ticket.id == ticket.id, Ticket.snoozed_until.is_not(None))
            .values(snoozed_until=None)
            .execution_options(synchronize_session=False)
        ).rowcount
        if not claimed:
            continue
        session.refresh(ticket)
        if ticket.status not in ("open", "new"):
            ticket.status = "open"
        add_team_message(session=session, ticket=ticket, author=None, content=WAKE_NOTE, is_private=True,
                         author_type="system")
        ticket.updated_at = stamp
        mark_unread_dirty(session, ticket.project_id)
        woke += 1
    session.flush()
    return woke
