"""The triggers of migrations 0007_unread_counters and 0010_unread_counter_slots keep `unread_counters` equal to the sum of
unread_team_count over each project's live, unresolved tickets, whatever writes the tickets."""

from __future__ import annotations

import random
import uuid
from contextlib import ExitStack
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import delete, func, select, text, update

from core.clock import now
from core.db import get_engine, session_scope
from models import Ticket, UnreadCounter
from services import accounts
from services import tickets as ticket_service
from services.ingest import add_customer_message
from services.unread import invalidate, unread_count
from tests.factories import make_ticket


def _projects() -> tuple[int, int]:
    with session_scope() as session:
        first, _ = accounts.get_or_create_project(session=session, name="Counted")
        second, _ = accounts.get_or_create_project(session=session, name="Counted too")
        return first.id, second.id


def _assert_counters_match_the_tickets(*project_ids: int) -> None:
    with session_scope(read_only=True) as session:
        for project_id in project_ids:
            expected = session.scalar(
                select(func.coalesce(func.sum(Ticket.unread_team_count), 0)).where(
                    Ticket.project_id == project_id, Ticket.deleted_at.is_(None), Ticket.status != "resolved"
                )
            )
            kept = session.scalar(
                select(func.coalesce(func.sum(UnreadCounter.total), 0)).where(UnreadCounter.project_id == project_id)
            )
            assert kept == expected, project_id
            invalidate([project_id])
            assert unread_count(session=session, project_id=project_id) == expected


def test_the_counters_follow_every_kind_of_ticket_write(db):
    first, second = _projects()
    made = [make_ticket(first)["id"] for _ in range(3)] + [make_ticket(second)["id"]]
    _assert_counters_match_the_tickets(first, second)
    ids = [uuid.UUID(m) for m in made]
    with session_scope() as session:  # a customer writes again: 2 unread
        add_customer_message(session=session, ticket=session.get_one(Ticket, ids[0]), content="again")
    _assert_counters_match_the_tickets(first, second)
    with session_scope() as session:  # resolved tickets do not count…
        session.get_one(Ticket, ids[0]).status = "resolved"
    _assert_counters_match_the_tickets(first, second)
    with session_scope() as session:  # …until reopened; and several changes in one transaction
        session.get_one(Ticket, ids[0]).status = "open"
        session.get_one(Ticket, ids[1]).unread_team_count = 7
        session.get_one(Ticket, ids[2]).deleted_at = now()
    _assert_counters_match_the_tickets(first, second)
    with session_scope() as session:  # a bulk statement and a ticket moved to another project
        session.execute(update(Ticket).where(Ticket.id.in_(ids[:2])).values(unread_team_count=Ticket.unread_team_count + 1))
        session.get_one(Ticket, ids[1]).project_id = second
    _assert_counters_match_the_tickets(first, second)
    with session_scope() as session:  # the 14-day purge deletes soft-deleted tickets for good
        session.get_one(Ticket, ids[0]).deleted_at = now() - timedelta(days=30)
    with session_scope() as session:
        assert ticket_service.purge_deleted(session=session, older_than=timedelta(days=14)) == 1
    _assert_counters_match_the_tickets(first, second)
    with session_scope() as session:  # a hard delete of a live ticket
        session.execute(delete(Ticket).where(Ticket.id == ids[3]))
    _assert_counters_match_the_tickets(first, second)


def test_the_counters_follow_raw_sql_and_a_random_mix_of_changes(db):
    first, second = _projects()
    ids = [make_ticket(first if i % 3 else second)["id"] for i in range(12)]
    rng = random.Random(20261127)
    engine = get_engine()
    for _ in range(60):
        ticket = ids[rng.randrange(len(ids))]
        key = ticket if engine.dialect.name == "postgresql" else uuid.UUID(ticket).hex
        change = rng.choice([
            ("unread_team_count = :v", {"v": rng.randint(0, 5)}),
            ("status = :v", {"v": rng.choice(["new", "open", "pending", "on_hold", "resolved"])}),
            ("deleted_at = NULL", {}),
            ("deleted_at = CURRENT_TIMESTAMP", {}),
            ("unread_team_count = unread_team_count + 1, status = 'open'", {}),
        ])
        with engine.begin() as conn:
            conn.execute(text(f"UPDATE tickets SET {change[0]} WHERE id = :id"), {**change[1], "id": key})
    _assert_counters_match_the_tickets(first, second)



@pytest.mark.parametrize("db", ["postgres"], indirect=True)  # SQLite: one writer, one row per project
def test_concurrent_ticket_writers_on_two_backends_do_not_queue_on_one_counter_row(db):
    """A transaction's slot is its backend's (0010_unread_counter_slots): two open transactions
    whose txids fall in the same slot of any txid-based scheme up to 128 slots (the old one was
    `txid % 16`) each add a new unread ticket without waiting for the other."""
    first, _ = _projects()
    engine = get_engine()
    insert = text("INSERT INTO tickets (id, project_id, ticket_number, channel_source, status, priority, "
                  "created_at, updated_at, message_count, unread_team_count, unread_customer_count, ai_resolved) "
                  "VALUES (:id, :project, :number, 'widget', 'open', 'medium', now(), now(), 1, 1, 0, false)")
    with ExitStack() as stack:
        # Two backends in different slots (pool connections held at once are distinct backends).
        slots: dict[int, Any] = {}
        while len(slots) < 2:
            conn = stack.enter_context(engine.connect())
            slots.setdefault(conn.execute(text("SELECT pg_backend_pid() % 128")).scalar_one(), conn)
            conn.commit()
        a, b = slots.values()
        txid_a = a.execute(text("SELECT txid_current()")).scalar_one()  # a's transaction stays open
        while True:  # burn txids until b's next one is a's plus a multiple of 128
            with engine.begin() as burner:
                if (burner.execute(text("SELECT txid_current()")).scalar_one() + 1 - txid_a) % 128 == 0:
                    break
        assert (b.execute(text("SELECT txid_current()")).scalar_one() - txid_a) % 128 == 0
        a.execute(insert, {"id": uuid.uuid4(), "project": first, "number": 900001})
        b.execute(text("SET LOCAL lock_timeout = '2s'"))
        b.execute(insert, {"id": uuid.uuid4(), "project": first, "number": 900002})  # raises if it queued
        b.commit()
        a.commit()
    _assert_counters_match_the_tickets(first)
