"""Broker setup: Redis in production, Dramatiq's in-process StubBroker in the embedded mode.

Imported before any actor is declared. Dramatiq's own retries are off for every actor: the
database rows (deliveries, raw events) carry attempts and next-attempt times, and the actors
schedule retries themselves, so a lost broker message loses no work (the sweeper re-sends).
"""

from __future__ import annotations

import os
import socket

import dramatiq
from dramatiq.brokers.stub import StubBroker

from core.settings import get_settings

WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"
# Dramatiq's Redis consumer sleeps up to the worker timeout between polls (1 s by default),
# which alone would break our latency targets.
WORKER_TIMEOUT_MS = 100


# The queues whose wait is the product's latency (a customer's message becoming a ticket, a
# reply reaching the customer). A consumer that finds its queue empty sleeps 5 ms, then twice
# as long each time up to the worker timeout: with 100 ms, a reply arriving after a quiet
# spell of ~75 ms waited 50–100 ms for the next look (the p99 of reply-to-delivered at
# 100/s). Capped at 20 ms these two consumers look about 65 times a second each when idle
# (one Redis script call each); the other queues keep the worker timeout.
FAST_QUEUES = ("inbound", "outbound")
FAST_QUEUE_POLL_MS = 20


def _build() -> dramatiq.Broker:
    settings = get_settings()
    if settings.redis_url:
        from dramatiq.brokers.redis import RedisBroker

        class _Broker(RedisBroker):
            def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000):  # type: ignore[no-untyped-def]
                if queue_name in FAST_QUEUES:
                    timeout = min(timeout, FAST_QUEUE_POLL_MS)
                return super().consume(queue_name, prefetch, timeout)

        # A short heartbeat so a killed worker's unacked messages come back sooner; the
        # sweeper does not wait for that anyway.
        return _Broker(url=settings.redis_url, heartbeat_timeout=15_000, maintenance_chance=100)
    broker = StubBroker()
    broker.emit_after("process_boot")
    return broker


broker = _build()
dramatiq.set_broker(broker)


def make_worker(threads: int = 8, queues: list[str] | None = None) -> dramatiq.Worker:
    """A Worker on every queue, or on `queues` only (with their delay queues)."""
    return dramatiq.Worker(broker, worker_threads=threads, worker_timeout=WORKER_TIMEOUT_MS,
                           queues=set(queues) if queues else None)
