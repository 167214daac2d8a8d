"""GET tickets/unread_count: the sum of unread_team_count over live, unresolved tickets, cached
30 s and invalidated by every change that alters it (in-process and on Redis)."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from sqlalchemy.orm import Session

from core.cache import get_cache
from core.db import session_scope
from models import Ticket
from services.ingest import add_customer_message
from services.unread import invalidate, unread_count
from tests.factories import make_ticket


def _count(client: Any, tenant: Any) -> int:
    response = client.get(tenant.url("tickets/unread_count"), headers=tenant.headers)
    assert response.status_code == 200
    return int(response.json()["count"])


def _customer_writes(ticket_id: str, text: str = "again") -> None:
    with session_scope() as session:
        add_customer_message(session=session, ticket=session.get_one(Ticket, uuid.UUID(ticket_id)), content=text)


def _check_every_invalidation(client: Any, tenant: Any, other_tenant: Any) -> None:
    a = make_ticket(tenant.project_id)["id"]            # 1 unread
    b = make_ticket(tenant.project_id)["id"]            # 1 unread
    make_ticket(tenant.project_id, message=None)        # 0 unread
    make_ticket(other_tenant.project_id)                # another project's
    assert _count(client, tenant) == 2
    _customer_writes(a)                                  # a new customer message
    assert _count(client, tenant) == 3
    client.get(tenant.url(f"tickets/{a}"), headers=tenant.headers)  # reading marks it read
    assert _count(client, tenant) == 1
    _customer_writes(a)
    assert _count(client, tenant) == 2
    client.patch(tenant.url(f"tickets/{a}"), json={"status": "resolved"}, headers=tenant.headers)
    assert _count(client, tenant) == 1                  # resolved tickets do not count
    client.post(tenant.url("tickets/bulk_update_status"), json={"ids": [a], "status": "open"},
                headers=tenant.headers)
    assert _count(client, tenant) == 2                  # …until they are reopened
    client.post(tenant.url("tickets/bulk_update_status"), json={"ids": [a, b], "status": "resolved"},
                headers=tenant.headers)
    assert _count(client, tenant) == 0
    _customer_writes(b)                                  # a customer message reopens b (2 unread)
    assert _count(client, tenant) == 2
    client.delete(tenant.url(f"tickets/{b}"), headers=tenant.headers)
    assert _count(client, tenant) == 0                  # deleted tickets do not count
    created = client.post(tenant.url("tickets/"), json={"message": "new one"}, headers=tenant.headers)
    assert created.status_code == 201
    assert _count(client, tenant) == 1
    assert _count(client, other_tenant) == 1


def test_unread_count_follows_every_change_that_alters_it(client, tenant, other_tenant):
    _check_every_invalidation(client, tenant, other_tenant)


def test_unread_count_follows_every_change_that_alters_it_on_redis(tenant, other_tenant, redis_url, client):
    from core.cache import SafeCache

    assert isinstance(get_cache(), SafeCache)
    _check_every_invalidation(client, tenant, other_tenant)
    import redis

    assert redis.Redis.from_url(redis_url).exists(f"tw:unread:{tenant.project_id}")


def _bypass_services(ticket_id: str, unread: int) -> None:
    """Change the counter without the services, so no invalidation follows."""
    with session_scope() as session:
        session.get_one(Ticket, uuid.UUID(ticket_id)).unread_team_count = unread


def test_unread_count_is_served_from_the_cache_between_changes(client, tenant):
    made = make_ticket(tenant.project_id)["id"]
    assert _count(client, tenant) == 1
    _bypass_services(made, 5)
    assert _count(client, tenant) == 1  # cached for up to 30 s
    invalidate([tenant.project_id])
    assert _count(client, tenant) == 5


def test_a_rolled_back_change_does_not_invalidate(client, tenant):
    made = make_ticket(tenant.project_id)["id"]
    assert _count(client, tenant) == 1
    _bypass_services(made, 5)
    with pytest.raises(RuntimeError), session_scope() as session:
        add_customer_message(session=session, ticket=session.get_one(Ticket, uuid.UUID(made)), content="lost")
        raise RuntimeError("abort")
    assert _count(client, tenant) == 1


def test_a_count_computed_before_a_change_is_never_served_after_it(client, tenant):
    """The race a plain delete-on-change cache has: a reader sums, a change commits and
    deletes the key, then the reader stores its stale sum."""
    made = make_ticket(tenant.project_id)["id"]
    stale_reader_started = threading.Event()
    change_committed = threading.Event()
    original_scalar = Session.scalar

    def slow_scalar(self: Session, *args: Any, **kwargs: Any) -> Any:
        result = original_scalar(self, *args, **kwargs)
        if threading.current_thread().name == "stale-reader":
            stale_reader_started.set()
            change_committed.wait(10)
        return result

    def stale_read() -> None:
        with session_scope(read_only=True) as session:
            unread_count(session=session, project_id=tenant.project_id)

    Session.scalar = slow_scalar  # type: ignore[method-assign]
    try:
        reader = threading.Thread(target=stale_read, name="stale-reader")
        reader.start()
        assert stale_reader_started.wait(10)
        _customer_writes(made)  # 2 unread now; invalidates
        change_committed.set()
        reader.join(10)
    finally:
        Session.scalar = original_scalar  # type: ignore[method-assign]
    assert _count(client, tenant) == 2
