"""The in-process worker the end-to-end tests drive: Dramatiq's real Worker on the StubBroker."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def worker(db: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("TICKETWIRE_RETRY_BASE_SECONDS", "0.1")
    import workers.actors
    from services.dispatch import install_dispatcher
    from workers.broker import broker, make_worker

    install_dispatcher(workers.actors.dispatch)
    broker.flush_all()
    running = make_worker(threads=2)
    running.start()
    yield broker
    running.stop()
    broker.flush_all()
