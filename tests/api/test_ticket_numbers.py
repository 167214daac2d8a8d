"""Ticket numbers under concurrent creation: unique, gap-free and strictly increasing per
project, through the services and through a real HTTP server, on both databases."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from core.db import session_scope
from models import Ticket
from services import tickets as ticket_service
from tests.services import free_port

THREADS = 8
PER_THREAD = 25


def _run_in_threads(work: Callable[[], int]) -> list[int]:
    """Each thread creates PER_THREAD tickets; returns every number, in per-thread order."""
    numbers: list[list[int]] = [[] for _ in range(THREADS)]
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def run(slot: int) -> None:
        try:
            start.wait()
            for _ in range(PER_THREAD):
                numbers[slot].append(work())
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    for own in numbers:
        assert own == sorted(own) and len(set(own)) == len(own)  # increasing as seen by each caller
    return [n for own in numbers for n in own]


def _assert_gap_free(project_id: int, numbers: list[int]) -> None:
    total = THREADS * PER_THREAD
    assert sorted(numbers) == list(range(1, total + 1))
    with session_scope() as session:
        rows = session.execute(
            select(Ticket.ticket_number, Ticket.created_at).where(Ticket.project_id == project_id)
            .order_by(Ticket.ticket_number)
        ).all()
    assert [r.ticket_number for r in rows] == list(range(1, total + 1))
    # Numbers follow commit order: a later number was never created before an earlier one.
    created = [r.created_at for r in rows]
    assert created == sorted(created)


def test_concurrent_creates_through_the_services_get_unique_gap_free_numbers(db, tenant, other_tenant):
    def create() -> int:
        with session_scope() as session:
            ticket = ticket_service.create_ticket(session=session, project_id=tenant.project_id,
                                                  channel_source="widget", channel_detail="widget_api")
            return ticket.ticket_number

    numbers = _run_in_threads(create)
    _assert_gap_free(tenant.project_id, numbers)
    # Another project's numbering is its own.
    with session_scope() as session:
        other = ticket_service.create_ticket(session=session, project_id=other_tenant.project_id)
        assert other.ticket_number == 1


@pytest.fixture
def live_server(app: Any) -> Iterator[str]:
    """The app served by a real uvicorn in a thread, for truly concurrent HTTP clients."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(15)


def test_concurrent_creates_over_http_get_unique_gap_free_numbers(tenant, live_server):
    local = threading.local()

    def create() -> int:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=live_server, headers=tenant.headers, timeout=60)
        response = local.client.post(tenant.url("tickets/"), json={"message": "hello"})
        assert response.status_code == 201, response.text
        return int(response.json()["ticket_number"])

    numbers = _run_in_threads(create)
    _assert_gap_free(tenant.project_id, numbers)
