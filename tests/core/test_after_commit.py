"""Work queued for after a commit runs when the whole transaction commits, not when a
savepoint inside it is released, and survives a savepoint that rolls back (core.db
after_outer_commit; SQLAlchemy fires after_commit/after_rollback for savepoints too)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from core.cache import get_cache
from core.db import run_after_commit, session_scope
from services import accounts, dispatch
from services.dispatch import after_commit, install_dispatcher
from services.unread import _generation_key, mark_unread_dirty


@pytest.fixture
def dispatched() -> Iterator[list[tuple[str, str]]]:
    sent: list[tuple[str, str]] = []
    previous = dispatch._dispatcher
    install_dispatcher(lambda kind, object_id: sent.append((kind, object_id)))
    try:
        yield sent
    finally:
        install_dispatcher(previous)  # the workers' dispatcher, for the tests that follow


def _project(name: str) -> int:
    with session_scope() as session:
        return accounts.get_or_create_project(session=session, name=name)[0].id


def test_a_job_queued_in_a_savepoint_is_sent_after_the_outer_commit(db, dispatched):
    project_id = _project("Savepoints")
    generation = _generation_key(project_id)
    before = int(get_cache().get(generation) or 0)
    callbacks: list[str] = []
    with session_scope() as session:
        with session.begin_nested():
            after_commit(session, "ingest", "event-1")
            mark_unread_dirty(session, project_id)
            run_after_commit(session, lambda: callbacks.append("ran"))
        # The savepoint is released: nothing is committed yet, so nobody may be told.
        assert dispatched == []
        assert callbacks == []
        assert int(get_cache().get(generation) or 0) == before
    assert dispatched == [("ingest", "event-1")]
    assert callbacks == ["ran"]
    assert int(get_cache().get(generation) or 0) == before + 1


def test_a_rolled_back_savepoint_keeps_what_the_transaction_queued_before_it(db, dispatched):
    project_id = _project("Rollback to savepoint")
    generation = _generation_key(project_id)
    before = int(get_cache().get(generation) or 0)
    with session_scope() as session:
        after_commit(session, "deliver", "delivery-1")
        mark_unread_dirty(session, project_id)
        with pytest.raises(RuntimeError), session.begin_nested():
            raise RuntimeError("a unique key met a concurrent insert")
    assert dispatched == [("deliver", "delivery-1")]
    assert int(get_cache().get(generation) or 0) == before + 1


def test_nothing_queued_survives_an_outer_rollback(db, dispatched):
    project_id = _project("Outer rollback")
    generation = _generation_key(project_id)
    before = int(get_cache().get(generation) or 0)
    callbacks: list[str] = []
    with pytest.raises(RuntimeError), session_scope() as session:
        with session.begin_nested():
            after_commit(session, "ingest", "event-2")
            run_after_commit(session, lambda: callbacks.append("ran"))
        mark_unread_dirty(session, project_id)
        raise RuntimeError("abort")
    with session_scope():
        pass  # a later commit of another unit of work runs nothing left over
    assert dispatched == []
    assert callbacks == []
    assert int(get_cache().get(generation) or 0) == before
