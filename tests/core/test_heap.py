"""Long-running processes move their start-up objects out of Python's full collections once
they have started (core.heap): the web app when its lifespan starts, a worker when it boots."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from core import heap


@pytest.fixture
def unfrozen(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A process that has not frozen anything yet (the suite's own process may have)."""
    gc.unfreeze()
    monkeypatch.setattr(heap, "_frozen", False)
    assert gc.get_freeze_count() == 0
    yield
    gc.unfreeze()


def test_a_process_freezes_once(unfrozen):
    heap.freeze_startup_objects()
    frozen = gc.get_freeze_count()
    assert frozen > 10_000
    gc.unfreeze()
    heap.freeze_startup_objects()  # a second start in the same process (embedded mode): no-op
    assert gc.get_freeze_count() == 0


def test_the_web_app_freezes_its_startup_objects(db, unfrozen, monkeypatch):
    from api.app import create_app

    monkeypatch.setenv("TICKETWIRE_EMBEDDED_WORKERS", "0")  # the web process alone, no worker boot

    with TestClient(create_app()):
        # Everything imported to serve (FastAPI, SQLAlchemy, the models and routes): many
        # thousands of objects that a full collection no longer walks.
        assert gc.get_freeze_count() > 10_000


def test_a_worker_freezes_its_startup_objects_when_it_boots(db, unfrozen):
    # The boot hook itself: starting a real Worker here would leave one more set of consumers
    # on the suite's shared StubBroker.
    from workers.broker import broker
    from workers.outbound import _WarmUp

    _WarmUp().before_worker_boot(broker, None)
    assert gc.get_freeze_count() > 10_000
