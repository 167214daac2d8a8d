"""ticket_tags carries each ticket's updated_at, ticket_number and deleted_at for tag filters in
list order (migration 0007_tag_order_index); triggers keep the copies equal to the ticket."""

from __future__ import annotations

import random
import uuid
from datetime import timedelta

from sqlalchemy import select, text

from core.clock import now
from core.db import get_engine, session_scope
from models import Ticket, TicketTag
from models.ticket import TAG_SET_MAX
from services import accounts
from services import tickets as ticket_service
from tests.factories import make_ticket


def _assert_copies_match() -> None:
    with session_scope(read_only=True) as session:
        rows = session.execute(
            select(TicketTag.updated_at, TicketTag.ticket_number, TicketTag.deleted_at,
                   Ticket.updated_at, Ticket.ticket_number, Ticket.deleted_at, TicketTag.ticket_id, TicketTag.tag_set)
            .join(Ticket, Ticket.id == TicketTag.ticket_id)
        ).all()
        tags_of: dict[uuid.UUID, set[uuid.UUID]] = {}
        for ticket_id, tag_id in session.execute(select(TicketTag.ticket_id, TicketTag.tag_id)):
            tags_of.setdefault(ticket_id, set()).add(tag_id)
    assert rows
    for row in rows:
        assert tuple(row[:3]) == tuple(row[3:6])
        expected = tags_of[row.ticket_id]
        if len(expected) > TAG_SET_MAX:
            assert row.tag_set is None
        else:
            assert {uuid.UUID(t) for t in row.tag_set.split(",")} == expected


def test_links_take_the_order_of_their_ticket_and_follow_its_changes(db):
    with session_scope() as session:
        project, _ = accounts.get_or_create_project(session=session, name="Ordered")
        project_id = project.id
    ids = [make_ticket(project_id, tags=["a", "b"] if i % 2 else ["a"])["id"] for i in range(6)]
    _assert_copies_match()
    with session_scope() as session:  # tags set later, through the services
        ticket = session.get_one(Ticket, uuid.UUID(ids[0]))
        ticket_service.update_ticket(session=session, ticket=ticket, changes={"tags": ["b", "c"]})
    _assert_copies_match()
    with session_scope() as session:  # soft delete and restore
        session.get_one(Ticket, uuid.UUID(ids[1])).deleted_at = now()
    _assert_copies_match()
    with session_scope() as session:  # more tags than tag_set lists, then fewer again
        ticket = session.get_one(Ticket, uuid.UUID(ids[2]))
        many = [f"t{i}" for i in range(TAG_SET_MAX + 1)]
        ticket_service.update_ticket(session=session, ticket=ticket, changes={"tags": many})
    _assert_copies_match()
    with session_scope() as session:
        ticket = session.get_one(Ticket, uuid.UUID(ids[2]))
        ticket_service.update_ticket(session=session, ticket=ticket, changes={"tags": ["a", "t3"]})
    _assert_copies_match()
    with session_scope() as session:  # a tag deleted: its links go (ON DELETE CASCADE on PostgreSQL)
        session.execute(text("DELETE FROM ticket_tags WHERE tag_id IN (SELECT id FROM tags WHERE name = 'b')"))
    _assert_copies_match()
    engine = get_engine()
    rng = random.Random(7)
    for _ in range(30):  # raw SQL too
        key = ids[rng.randrange(len(ids))]
        key = key if engine.dialect.name == "postgresql" else uuid.UUID(key).hex
        change = rng.choice(["updated_at = :at", "deleted_at = :at", "deleted_at = NULL", "priority = 'low'"])
        at = now() - timedelta(minutes=rng.randrange(10_000))
        with engine.begin() as conn:
            conn.execute(text(f"UPDATE tickets SET {change} WHERE id = :id"), {"at": at, "id": key})
    _assert_copies_match()
