"""The sweeper re-sends raw events that nobody is processing, but not the ones waiting in a
backlog of the inbound queue: those it leaves alone until INBOUND_BACKLOG_GRACE_SECONDS."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
import redis
from dramatiq import Message
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import iter_queue
from sqlalchemy import update

import workers.periodic as periodic
from core.clock import now
from core.db import session_scope
from models import RawEvent
from services import accounts, inbound
from workers import broker as broker_module
from workers.inbound import ingest_event


def _raw_event(project_id: int, event_id: str, age_seconds: float) -> str:
    stored = inbound.accept_raw_event(project_id=project_id, channel="slack", event_id=event_id, body=b"{}",
                                      headers={})
    with session_scope() as session:
        session.execute(update(RawEvent).where(RawEvent.id == stored.id)
                        .values(next_attempt_at=now() - timedelta(seconds=age_seconds)))
    return str(stored.id)


@pytest.fixture
def sent(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Callable[[], list[str]]:
    """The raw event ids the sweeper sends, read from the in-process broker the actors use here;
    the broker it asks about queue depth is a Redis broker on the test Redis."""
    actors_broker = ingest_event.broker
    assert isinstance(actors_broker, StubBroker)
    monkeypatch.setattr(broker_module, "broker", broker_module._build())

    def drain() -> list[str]:
        queue = actors_broker.queues[ingest_event.queue_name]
        ids = []
        for data in iter_queue(queue):
            ids.append(Message.decode(data).args[0])
            # Taken off the queue is not done with: without this the broker's join() of the
            # inbound queue, which later tests' workers wait on, would never return.
            queue.task_done()
        return ids

    return drain


def test_events_waiting_in_a_backlog_are_not_sent_twice(db, sent, redis_url):
    with session_scope() as session:
        project_id = accounts.get_or_create_project(session=session, name="Backlog")[0].id
    recent = _raw_event(project_id, "Ev-recent", age_seconds=10)
    stale = _raw_event(project_id, "Ev-stale", age_seconds=periodic.INBOUND_BACKLOG_GRACE_SECONDS + 5)
    sent()  # what storing them enqueued

    client = redis.Redis.from_url(redis_url)
    client.rpush("dramatiq:inbound", "queued-1", "queued-2")
    periodic.sweep()
    assert sent() == [stale]  # the recent one is presumably among the queued messages

    client.delete("dramatiq:inbound")
    periodic.sweep()  # nothing queued: whatever is due and unclaimed was lost, send it again
    assert sorted(sent()) == sorted([recent, stale])
