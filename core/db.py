"""Engine and sessions for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import InvalidatePoolError
from sqlalchemy.orm import Session, sessionmaker

from core.settings import get_settings


def is_sqlite(engine_or_url: Engine | str) -> bool:
    url = engine_or_url if isinstance(engine_or_url, str) else str(engine_or_url.url)
    return url.startswith("sqlite")


def normalise_url(url: str) -> str:
    # Users paste postgres:// or postgresql:// URLs; we speak psycopg 3.
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


# Connections kept open per process; the web server sizes its thread pool to match.
DATABASE_POOL_SIZE = 20


def make_engine(url: str) -> Engine:
    url = normalise_url(url)
    if is_sqlite(url):
        if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
            from pathlib import Path

            Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=DATABASE_POOL_SIZE)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            # WAL lets readers run beside the one writer; busy_timeout makes writers queue
            # instead of failing with "database is locked".
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            # Read the database file through a memory map (up to SQLite's usual 2 GB cap)
            # instead of a read() and a copy per page: 10-45 % less CPU for list pages, text
            # search and tag intersections at 1M tickets (bench/list_tickets.py).
            cur.execute("PRAGMA mmap_size=2147418112")
            cur.close()
            # Take the write lock at BEGIN so two writers never deadlock upgrading a read lock.
            dbapi_conn.isolation_level = None

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):  # type: ignore[no-untyped-def]
            read_only = conn.get_execution_options().get("read_only", False)
            conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

        return engine
    # JIT compilation adds tens of milliseconds to the list's larger plans and never pays off
    # for OLTP queries this short.
    engine = create_engine(url, pool_size=DATABASE_POOL_SIZE, max_overflow=20,
                           connect_args={"options": "-c jit=off"})
    _ping_after_idle(engine)
    return engine


# A pooled PostgreSQL connection is pinged on checkout only when it has sat idle in the pool
# this long. `pool_pre_ping` pinged on every checkout: one more round trip per request, for
# connections that a busy server hands straight back out and that were working moments ago.
# A connection that dies all the same (a server restart within those seconds) fails the
# statement that uses it; SQLAlchemy then sees a disconnect error and invalidates it and every
# other pooled connection of the time (its default handling of disconnects), so the next
# checkout connects afresh. Tests monkeypatch this.
PING_AFTER_IDLE_SECONDS = 5.0
_IDLE_SINCE = "ticketwire_idle_since"


def _ping_after_idle(engine: Engine) -> None:
    """SQLAlchemy's "custom pessimistic ping" on pool checkout, only for idle connections."""

    @event.listens_for(engine, "checkin")
    def _note_idle(_dbapi_conn, record):  # type: ignore[no-untyped-def]
        # `record.info` belongs to the DBAPI connection: it is emptied when that connection is
        # replaced, so a new connection (just made, surely alive) is never pinged.
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_conn, record, _proxy):  # type: ignore[no-untyped-def]
        idle_since = record.info.pop(_IDLE_SINCE, None)
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)  # psycopg: an empty query, in autocommit
        except engine.dialect.loaded_dbapi.Error as exc:
            # A DisconnectionError makes the pool replace this connection and check out again.
            # This one (as pool_pre_ping's) also retires every connection pooled before now: a
            # dead connection usually means the server restarted, and the others died with it.
            raise InvalidatePoolError(f"ping after {PING_AFTER_IDLE_SECONDS}s idle failed: {exc}") from exc


@lru_cache(maxsize=1)
def get_engine() -> Engine:
    return make_engine(get_settings().database_url)


@lru_cache(maxsize=1)
def _session_factory() -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(), expire_on_commit=False)


@lru_cache(maxsize=1)
def _read_session_factory() -> sessionmaker[Session]:
    # On SQLite a read-only unit of work starts with a plain BEGIN, so readers never queue
    # behind the writer; on PostgreSQL the option is ignored.
    return sessionmaker(bind=get_engine().execution_options(read_only=True), expire_on_commit=False)


def reset_engine() -> None:
    """Forget the cached engine (tests switch databases)."""
    if get_engine.cache_info().currsize:
        get_engine().dispose()
    get_engine.cache_clear()
    _session_factory.cache_clear()
    _read_session_factory.cache_clear()


def new_session(*, read_only: bool = False) -> Session:
    return (_read_session_factory() if read_only else _session_factory())()


@contextmanager
def session_scope(*, read_only: bool = False) -> Iterator[Session]:
    """A unit of work: commit on success, roll back on any error."""
    session = new_session(read_only=read_only)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


# -- after the outermost commit --------------------------------------------------------------
#
# SQLAlchemy fires a Session's after_commit when a savepoint (begin_nested) is released and
# after_rollback when one is rolled back, not only when the transaction ends. Work queued for
# "after commit" (sending a job, invalidating a cache) belongs to the whole transaction: run at
# a RELEASE SAVEPOINT it would tell a worker about a row nobody can see yet; dropped at a
# ROLLBACK TO SAVEPOINT it would forget what the rest of the transaction queued. Whatever a
# rolled-back savepoint queued still runs after the outer commit: every job re-reads its row
# and finds nothing to do, and an extra cache invalidation is harmless.

SessionHook = Callable[[Session], None]


def _on_outermost(session_event: str) -> Callable[[SessionHook], SessionHook]:
    """A decorator registering `hook(session)` for a Session event, skipping savepoints."""

    def register(hook: SessionHook) -> SessionHook:
        @event.listens_for(Session, session_event)
        def _listener(session: Session) -> None:
            if not session.in_nested_transaction():
                hook(session)

        return hook

    return register


# Run `hook(session)` after a session's outermost transaction commits / rolls back.
after_outer_commit = _on_outermost("after_commit")
after_outer_rollback = _on_outermost("after_rollback")


def run_after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Call `callback()` once this session's transaction commits (never if it rolls back)."""
    session.info.setdefault("after_commit_callbacks", []).append(callback)


@after_outer_commit
def _run_callbacks(session: Session) -> None:
    for callback in session.info.pop("after_commit_callbacks", ()):
        callback()


@after_outer_rollback
def _drop_callbacks(session: Session) -> None:
    session.info.pop("after_commit_callbacks", None)
