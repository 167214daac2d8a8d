"""Shared fixtures: real SQLite and PostgreSQL databases, a real Redis, the app and a project.

Tests that take the `db` fixture run twice, once per database. PostgreSQL and Redis are
started once per session by tests/services.py (see `make test`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from core import cache as cache_module
from core import db as db_module
from core import settings as settings_module
from core.migrate import migrate
from tests.services import test_services

TEST_SECRET = "test-secret-key-not-for-production"
TABLES_IN_DELETE_ORDER = None


@pytest.fixture(scope="session")
def services() -> Iterator[dict[str, Any]]:
    with test_services() as urls:
        yield urls


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    os.environ.setdefault("TICKETWIRE_SECRET_KEY", TEST_SECRET)
    migrate(f"sqlite:///{path}")
    import sqlite3

    with sqlite3.connect(path) as conn:  # fold the WAL into the file we copy per test
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


@pytest.fixture(scope="session")
def postgres_url(services: dict[str, Any]) -> str:
    """A migrated database; each test truncates it (faster than creating one per test)."""
    admin = create_engine(services["postgres"], isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("DROP DATABASE IF EXISTS ticketwire_test"))
        conn.execute(text("CREATE DATABASE ticketwire_test"))
    admin.dispose()
    url = services["postgres"].rsplit("/", 1)[0] + "/ticketwire_test"
    migrate(url)
    return url


def _truncate_postgres(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        tables = [r[0] for r in conn.execute(text(
            "SELECT tablename FROM pg_tables WHERE schemaname='public' AND tablename <> 'alembic_version'"))]
        conn.execute(text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"))
    engine.dispose()


def _reset_process_state() -> None:
    settings_module.get_settings.cache_clear()
    db_module.reset_engine()
    cache_module.reset_cache()
    from services.integrations import clear_adapter_cache

    clear_adapter_cache()


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sqlite_template: Path) -> Iterator[str]:
    """The database under test (both, one after the other). Yields its URL."""
    if request.param == "sqlite":
        path = tmp_path / "ticketwire.db"
        shutil.copy(sqlite_template, path)
        url = f"sqlite:///{path}"
    else:
        url = request.getfixturevalue("postgres_url")
        _truncate_postgres(url)
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("TICKETWIRE_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("TICKETWIRE_SECRET_KEY", TEST_SECRET)
    monkeypatch.delenv("REDIS_URL", raising=False)
    # Tests drive workers themselves (tests/workers, tests/e2e) unless they opt in.
    monkeypatch.setenv("TICKETWIRE_EMBEDDED_WORKERS", "0")
    _reset_process_state()
    yield url
    _reset_process_state()


@pytest.fixture
def redis_url(services: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Switch the process to Redis mode (caches, rate limits) on a flushed database."""
    import redis

    client = redis.Redis.from_url(services["redis"])
    client.flushdb()
    monkeypatch.setenv("REDIS_URL", services["redis"])
    _reset_process_state()
    yield services["redis"]
    client.flushdb()


@pytest.fixture
def redis_round_trips(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Grows by one per write to any Redis connection of this process from now on: one per
    round trip (a pipeline, transaction or not, is one write; see Cache.incr_many)."""
    import redis

    sent: list[int] = []
    original = redis.connection.AbstractConnection.send_packed_command

    def counting(self: Any, command: Any, check_health: bool = True) -> None:
        sent.append(1)
        original(self, command, check_health=check_health)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counting)
    return sent


def redis_commandstats(client: Any) -> dict[str, int]:
    """Calls per command since the Redis server started (INFO commandstats). Use one client
    (already connected) for every measurement, so its connection handshake is not counted."""
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(entry["calls"]) for name, entry in stats.items()}


def commandstats_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """The commands run between two `redis_commandstats`, without the measurement's own INFO."""
    delta = {name: calls - before.get(name, 0) for name, calls in after.items() if calls != before.get(name, 0)}
    delta.pop("info", None)
    return delta


@pytest.fixture
def app(db: str) -> Any:
    from api.app import create_app

    return create_app()


@pytest.fixture
def client(app: Any) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    with TestClient(app) as test_client:
        yield test_client


@dataclass
class Tenant:
    project_id: int
    api_key: str
    user_id: int
    widget_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def url(self, path: str) -> str:
        return f"/api/projects/{self.project_id}/conversations/{path.lstrip('/')}"


@pytest.fixture
def tenant(db: str) -> Tenant:
    from tests.factories import make_tenant

    return make_tenant("Acme")


@pytest.fixture
def other_tenant(db: str) -> Tenant:
    from tests.factories import make_tenant

    return make_tenant("Globex", email="owner@globex.test")
