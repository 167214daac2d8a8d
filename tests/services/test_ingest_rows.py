"""Ingest writes a new ticket and its first message without the unit of work (core/rows.py):
the rows are what the ORM objects say, the objects stay usable, and two ingests opening the
same thread, or two threads of the same new customer, at once both land."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest
from sqlalchemy import func, inspect, select, text

from channels.base import Author, InboundMessage
from core.db import get_engine, new_session, session_scope
from core.rows import insert_row
from models import Message, Person, PersonDistinctId, Ticket
from services.ingest import Applied, apply_inbound
from tests.factories import make_ticket


def _slack_message(n: int, *, thread: str, user: str = "U1", email: str | None = None) -> InboundMessage:
    return InboundMessage(
        channel="slack", external_id=f"C1:17000000{n}.0001", thread_key=f"C1:{thread}",
        author=Author(external_id=user, name="Ada Lovelace", email=email, distinct_id=f"slack:{user}"),
        text=f"message {n}", creates_ticket=True, channel_detail="slack_message",
        ticket_fields={"slack_channel_id": "C1", "slack_thread_ts": thread, "slack_team_id": "T1"},
        metadata={"is_bot": False},
    )


def _columns(obj: Any) -> dict[str, Any]:
    return {attr.key: getattr(obj, attr.key) for attr in inspect(obj).mapper.column_attrs}


def test_the_rows_written_are_the_objects_and_the_objects_stay_in_the_session(db, tenant):
    with new_session() as session:
        applied = apply_inbound(session=session, project_id=tenant.project_id,
                                messages=[_slack_message(1, thread="1700000001.0001", email="ADA@example.com")])
        ticket = session.scalar(select(Ticket).where(Ticket.thread_key == "C1:1700000001.0001"))
        message = session.scalar(select(Message).where(Message.ticket_id == ticket.id))
        assert inspect(ticket).persistent and inspect(message).persistent
        seen = _columns(ticket), _columns(message)
        session.commit()
        # A change after the INSERT is flushed as an UPDATE of the row, as for a loaded object.
        ticket.priority = "high"
        session.commit()
    assert applied == Applied(changed=1, orphans=0)
    with new_session() as fresh:
        ticket_row = _columns(fresh.get(Ticket, seen[0]["id"]))
        message_row = _columns(fresh.get(Message, seen[1]["id"]))
    assert ticket_row == {**seen[0], "priority": "high", "updated_at": ticket_row["updated_at"]}
    assert message_row == seen[1]
    assert ticket_row["status"] == "new" and ticket_row["message_count"] == 1
    assert ticket_row["unread_team_count"] == 1 and ticket_row["ai_resolved"] is False
    assert ticket_row["customer_email"] == "ada@example.com" and ticket_row["slack_channel_id"] == "C1"
    assert message_row["external_id"] == "slack:C1:170000001.0001" and message_row["version"] == 1
    assert message_row["channel_metadata"] == {"is_bot": False}


def _wait_for_a_lock_wait() -> None:
    deadline = time.monotonic() + 10
    with get_engine().connect() as watcher:
        while time.monotonic() < deadline:
            waiting = watcher.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'")).scalar_one()
            watcher.commit()
            if waiting:
                return
            time.sleep(0.01)
    raise AssertionError("the second ingest never waited for the first")


def _ingest_while_another_is_open(project_id: int, first: InboundMessage, second: InboundMessage) -> Applied:
    """`first` is applied and left uncommitted; `second` is applied in another thread, which
    waits on `first`'s rows; then `first` commits and `second` finishes and commits."""
    outcome: dict[str, Any] = {}

    def apply_second() -> None:
        try:
            with session_scope() as session:
                outcome["applied"] = apply_inbound(session=session, project_id=project_id, messages=[second])
        except Exception as exc:  # reported below, with the assertion that failed
            outcome["error"] = exc

    with new_session() as session:
        assert apply_inbound(session=session, project_id=project_id, messages=[first]).changed == 1
        other = threading.Thread(target=apply_second)
        other.start()
        _wait_for_a_lock_wait()
        session.commit()
    other.join(10)
    assert "error" not in outcome, outcome.get("error")
    return outcome["applied"]


@pytest.mark.parametrize("db", ["postgres"], indirect=True)  # SQLite has one writer
def test_two_ingests_opening_one_thread_at_once_make_one_ticket_with_both_messages(db, tenant):
    thread = "1700000002.0001"
    second = _ingest_while_another_is_open(tenant.project_id, _slack_message(2, thread=thread),
                                           _slack_message(3, thread=thread))
    assert second == Applied(changed=1, orphans=0)
    with session_scope() as session:
        tickets = session.scalars(select(Ticket).where(Ticket.thread_key == f"C1:{thread}")).all()
        assert len(tickets) == 1 and tickets[0].message_count == 2
        contents = session.scalars(select(Message.content).where(Message.ticket_id == tickets[0].id)).all()
    assert sorted(contents) == ["message 2", "message 3"]


@pytest.mark.parametrize("db", ["postgres"], indirect=True)
def test_a_new_customers_first_two_threads_at_once_make_two_tickets_and_one_person(db, tenant):
    second = _ingest_while_another_is_open(tenant.project_id, _slack_message(4, thread="1700000004.0001", user="U9"),
                                           _slack_message(5, thread="1700000005.0001", user="U9"))
    assert second == Applied(changed=1, orphans=0)
    with session_scope() as session:
        tickets = session.scalars(select(Ticket.distinct_id).where(Ticket.project_id == tenant.project_id)).all()
        persons = session.scalar(select(func.count()).select_from(Person).where(Person.project_id == tenant.project_id))
        keys = session.scalars(select(PersonDistinctId.distinct_id)).all()
    assert tickets == ["slack:U9", "slack:U9"]
    assert persons == 1 and keys == ["slack:U9"]


def test_insert_row_refuses_an_object_that_is_already_a_row(db, tenant):
    ticket_id = make_ticket(tenant.project_id)["id"]
    with new_session() as session:
        ticket = session.get(Ticket, uuid.UUID(str(ticket_id)))
        with pytest.raises(ValueError, match="not a Ticket already in the database"):
            insert_row(session, ticket)
