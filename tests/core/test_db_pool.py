"""PostgreSQL pool liveness (core/db.py): a connection that sat idle in the pool for
PING_AFTER_IDLE_SECONDS is pinged on checkout and replaced when dead; one used moments ago is
not pinged (no extra round trip per request); and should it be dead after all, SQLAlchemy's
disconnect handling invalidates it and the pool, so only that statement fails."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import create_engine, exc, text
from sqlalchemy.pool import NullPool

from core import db as db_module
from core.db import get_engine, session_scope

pytestmark = pytest.mark.parametrize("db", ["postgres"], indirect=True)


def _backend_pid() -> int:
    with session_scope(read_only=True) as session:
        return int(session.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _terminate_every_other_backend(url: str) -> int:
    """Kill every connection to the database but this one (as a server restart would), and
    wait (up to 10 s each) until they are gone."""
    admin = create_engine(url, poolclass=NullPool)
    try:
        with admin.begin() as conn:
            return len(conn.execute(text(
                "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity "
                "WHERE pid <> pg_backend_pid() AND datname = current_database()")).all())
    finally:
        admin.dispose()


def _pooled_connections(count: int) -> set[int]:
    """Check `count` connections out at once, so the pool holds that many; their pids."""
    engine = get_engine()
    conns = [engine.connect() for _ in range(count)]
    try:
        return {int(c.execute(text("SELECT pg_backend_pid()")).scalar_one()) for c in conns}
    finally:
        for c in conns:
            c.close()


@pytest.fixture
def pings(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    dialect = get_engine().dialect
    original = dialect.do_ping
    seen: list[int] = []

    def counting(dbapi_connection: Any) -> bool:
        seen.append(1)
        return bool(original(dbapi_connection))

    monkeypatch.setattr(dialect, "do_ping", counting)
    return seen


def test_an_idle_connection_killed_by_the_server_is_replaced_on_checkout(db, monkeypatch):
    before = _pooled_connections(3)
    assert _terminate_every_other_backend(db) >= 3
    monkeypatch.setattr(db_module, "PING_AFTER_IDLE_SECONDS", 0.0)  # every pooled connection is "idle"
    pid = _backend_pid()
    assert pid not in before
    with session_scope() as session:
        assert session.execute(text("SELECT count(*) FROM api_keys")).scalar_one() == 0
    # The failed ping retired the whole pool (a server restart kills every connection).
    assert _pooled_connections(3).isdisjoint(before)


def test_a_request_succeeds_after_the_servers_connections_were_killed(tenant, client, db, monkeypatch):
    for _ in range(2):
        assert client.get(tenant.url("tickets/"), headers=tenant.headers).status_code == 200
    _terminate_every_other_backend(db)
    monkeypatch.setattr(db_module, "PING_AFTER_IDLE_SECONDS", 0.0)
    assert client.get(tenant.url("tickets/"), headers=tenant.headers).status_code == 200
    assert client.get(tenant.url("tickets/"), headers=tenant.headers).status_code == 200


def test_a_connection_used_moments_ago_is_not_pinged(db, pings, monkeypatch):
    monkeypatch.setattr(db_module, "PING_AFTER_IDLE_SECONDS", 3600.0)
    for _ in range(5):
        _backend_pid()
    assert pings == []
    monkeypatch.setattr(db_module, "PING_AFTER_IDLE_SECONDS", 0.0)
    for _ in range(5):
        _backend_pid()
    assert pings == [1] * 5


def test_a_new_connection_is_not_pinged(db, pings, monkeypatch):
    monkeypatch.setattr(db_module, "PING_AFTER_IDLE_SECONDS", 0.0)
    _pooled_connections(3)  # three new connections, checked out at once
    assert pings == []


def test_without_a_ping_a_dead_connection_fails_one_statement_and_the_pool_recovers(db, monkeypatch):
    """The cost of not pinging recently used connections: after a restart within
    PING_AFTER_IDLE_SECONDS one statement fails; SQLAlchemy's default disconnect handling
    (no handle_error listener needed) invalidates the connection and the pool."""
    before = _pooled_connections(3)
    _terminate_every_other_backend(db)
    monkeypatch.setattr(db_module, "PING_AFTER_IDLE_SECONDS", 3600.0)
    with pytest.raises(exc.OperationalError) as failed:
        _backend_pid()
    assert failed.value.connection_invalidated
    # Every connection pooled before the failure is replaced, not just the one that failed:
    # three checked out at once all work.
    assert _pooled_connections(3).isdisjoint(before)
