"""Snooze: the scheduler wakes tickets whose snooze has passed, with a system note, once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.clock import FrozenClock, use_clock
from core.db import session_scope
from services.snooze import WAKE_NOTE, wake_snoozed_tickets
from tests.factories import make_ticket

START = datetime(2025, 4, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> Iterator[FrozenClock]:
    frozen = FrozenClock(START)
    previous = use_clock(frozen)
    yield frozen
    use_clock(previous)


def _snooze(client: Any, tenant: Any, ticket_id: str, until: datetime, **extra: Any) -> dict[str, Any]:
    response = client.patch(tenant.url(f"tickets/{ticket_id}"), json={"snoozed_until": until.isoformat(), **extra},
                            headers=tenant.headers)
    assert response.status_code == 200, response.text
    return response.json()


def _wake(batch: int = 500) -> int:
    with session_scope() as session:
        return wake_snoozed_tickets(session=session, batch=batch)


def _ticket(client: Any, tenant: Any, ticket_id: str) -> dict[str, Any]:
    listed = client.get(tenant.url("tickets/"), headers=tenant.headers, params={"limit": 1000}).json()["results"]
    return next(t for t in listed if t["id"] == ticket_id)


def _notes(client: Any, tenant: Any, ticket_id: str) -> list[dict[str, Any]]:
    messages = client.get(tenant.url(f"tickets/{ticket_id}/messages"), headers=tenant.headers).json()["results"]
    return [m for m in messages if m["content"] == WAKE_NOTE]


def test_a_snoozed_ticket_wakes_up_open_with_a_system_note(client, tenant, clock):
    ticket_id = make_ticket(tenant.project_id)["id"]
    assert _snooze(client, tenant, ticket_id, START + timedelta(hours=2))["status"] == "on_hold"
    clock.advance(hours=1)
    assert _wake() == 0
    assert _ticket(client, tenant, ticket_id)["status"] == "on_hold"
    clock.advance(hours=1)
    assert _wake() == 1
    ticket = _ticket(client, tenant, ticket_id)
    assert ticket["status"] == "open" and ticket["snoozed_until"] is None
    [note] = _notes(client, tenant, ticket_id)
    assert note["author_type"] == "system" and note["is_private"] is True and note["message_type"] == "internal_note"
    assert ticket["message_count"] == 1  # the note is not a public message


def test_a_new_or_open_ticket_keeps_its_status_when_it_wakes(client, tenant, clock):
    new_id = make_ticket(tenant.project_id)["id"]
    _snooze(client, tenant, new_id, START + timedelta(minutes=5), status="new")
    open_id = make_ticket(tenant.project_id)["id"]
    _snooze(client, tenant, open_id, START + timedelta(minutes=5), status="open")
    pending_id = make_ticket(tenant.project_id)["id"]
    _snooze(client, tenant, pending_id, START + timedelta(minutes=5), status="pending")
    clock.advance(minutes=5)
    assert _wake() == 3
    assert _ticket(client, tenant, new_id)["status"] == "new"
    assert _ticket(client, tenant, open_id)["status"] == "open"
    assert _ticket(client, tenant, pending_id)["status"] == "open"


def test_waking_twice_changes_nothing_the_second_time(client, tenant, clock):
    ticket_id = make_ticket(tenant.project_id)["id"]
    _snooze(client, tenant, ticket_id, START + timedelta(minutes=1))
    clock.advance(minutes=2)
    assert _wake() == 1
    assert _wake() == 0
    assert len(_notes(client, tenant, ticket_id)) == 1


def test_tickets_wake_in_batches_oldest_snooze_first(client, tenant, clock):
    ids = [make_ticket(tenant.project_id)["id"] for _ in range(5)]
    for offset, ticket_id in enumerate(ids):
        _snooze(client, tenant, ticket_id, START + timedelta(minutes=10 - offset))
    clock.advance(hours=1)
    assert _wake(batch=2) == 2
    awake = {t for t in ids if _ticket(client, tenant, t)["snoozed_until"] is None}
    assert awake == {ids[4], ids[3]}
    assert _wake(batch=2) == 2
    assert _wake(batch=2) == 1
    assert _wake(batch=2) == 0


def test_deleted_tickets_are_left_to_the_purge(client, tenant, clock):
    ticket_id = make_ticket(tenant.project_id)["id"]
    _snooze(client, tenant, ticket_id, START + timedelta(minutes=1))
    client.delete(tenant.url(f"tickets/{ticket_id}"), headers=tenant.headers)
    clock.advance(hours=1)
    assert _wake() == 0


def test_two_schedulers_waking_at_once_wake_each_ticket_once(client, tenant, clock):
    ids = [make_ticket(tenant.project_id)["id"] for _ in range(12)]
    for ticket_id in ids:
        _snooze(client, tenant, ticket_id, START + timedelta(minutes=1))
    clock.advance(minutes=5)
    counts: list[int] = []
    barrier = threading.Barrier(2)

    def run() -> None:
        barrier.wait()
        counts.append(_wake())

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sum(counts) == 12
    assert all(len(_notes(client, tenant, t)) == 1 for t in ids)
