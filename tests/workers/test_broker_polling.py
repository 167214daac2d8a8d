"""How often idle consumers look at Redis (workers.broker): the queues whose wait is the
product's latency (inbound events, outbound replies) are looked at within FAST_QUEUE_POLL_MS;
the others back off to the worker timeout, as Dramatiq does."""

from __future__ import annotations

from workers import broker as broker_module


def test_latency_queues_back_off_less_than_the_others(redis_url):
    broker = broker_module._build()
    try:
        timeout = broker_module.WORKER_TIMEOUT_MS
        polls = {queue: broker.consume(queue, prefetch=1, timeout=timeout).timeout
                 for queue in ("inbound", "outbound", "outbound_paced", "agent")}
    finally:
        broker.close()
    assert polls == {"inbound": broker_module.FAST_QUEUE_POLL_MS, "outbound": broker_module.FAST_QUEUE_POLL_MS,
                     "outbound_paced": timeout, "agent": timeout}
    assert broker_module.FAST_QUEUE_POLL_MS < timeout
