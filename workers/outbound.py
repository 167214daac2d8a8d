"""deliver: send one public reply through the ticket's channel, exactly once."""

from __future__ import annotations

import importlib
import logging
import time
import uuid
from typing import Any

import dramatiq
from dramatiq.brokers.stub import StubBroker
from sqlalchemy.orm import configure_mappers

from channels.base import ChannelAdapter, DeliveryResult, DeliveryStatus, OutboundReply
from channels.errors import ChannelNotConfiguredError
from channels.registry import CHANNELS, get_spec
from core.db import get_engine, session_scope
from core.heap import freeze_startup_objects
from services import deliveries, integrations, pacing
from services.deliveries import Claim
from workers import broker as _broker  # noqa: F401  (sets the broker before the actor exists)
from workers import metrics
from workers.broker import WORKER_ID

log = logging.getLogger(__name__)


def outbound_adapter(claim: Claim) -> ChannelAdapter:
    project_id = int(claim.reply.metadata["project_id"])
    if claim.channel == "email":
        from services import email_configs

        return email_configs.adapter_for_ticket(thread=claim.ticket)
    return integrations.adapter_for(project_id=project_id, channel=claim.channel)


# A booked slot: come back this long before it and sleep the rest. A delayed broker message
# may arrive late (a busy machine, a worker restarting); a booked slot missed by more than a
# little is given back and the delivery paced anew (services/pacing.py), so the lead is
# generous; the cost is a worker thread asleep for about this long per paced delivery.
BOOKING_LEAD_SECONDS = 1.0


def _pacing_key(adapter: ChannelAdapter, claim: Claim) -> str:
    keyer = getattr(adapter, "rate_limit_key", None)
    if callable(keyer):
        try:
            return str(keyer(claim.reply))
        except TypeError:
            pass
    return f"{claim.channel}:{claim.reply.metadata['project_id']}:{claim.reply.ticket_id}"


def reserve_slot(adapter: ChannelAdapter, channel: str, reply: OutboundReply, key: str, *,
                 booking: str) -> pacing.Slot | None:
    """A pacing slot for one post or edit to the vendor, or None when the channel is unpaced.

    The windows are the adapter's when it has its own (`rate_windows`: GitHub Enterprise
    Server settings; () = unpaced), else the channel's published ones (`ChannelSpec`), plus
    any bucket the reply also counts in (`shared_rate_limits`: Teams' per-tenant limit).
    `booking` (the delivery) holds a slot further out than the pacer's max_wait for the
    caller, so a backlog is handed out in order instead of retrying all at once.
    """
    if channel == "email":
        # Email paces per config (`email:<config id>` at its send_rate_per_minute / 60): the adapter says so.
        rate = getattr(adapter, "rate_per_second", None)
        return pacing.reserve(key, rate) if rate else None
    windows = getattr(adapter, "rate_windows", None)
    if windows is None:
        spec = get_spec(channel)
        windows = spec.rate_windows if spec is not None else None
    if not windows:
        return None
    buckets: list[pacing.Bucket] = [(key, windows)]
    shared = getattr(adapter, "shared_rate_limits", None)
    if callable(shared):
        buckets += list(shared(reply))
    return pacing.reserve_buckets(buckets, booking=booking, margin=pacing.VENDOR_MARGIN_SECONDS)


def come_back_in(slot: pacing.Slot) -> float:
    """Seconds to put a paced delivery aside: until shortly before its booked slot, or until
    the earliest slot when none could be booked (email's single rate)."""
    return max(0.0, slot.wait - BOOKING_LEAD_SECONDS) if slot.booked else slot.wait


def run_delivery(delivery_id: uuid.UUID) -> DeliveryResult | None:
    """One attempt. None when the delivery is not due or another worker holds it."""
    with session_scope() as session:
        claim = deliveries.claim(session=session, delivery_id=delivery_id, worker_id=WORKER_ID)
    if claim is None:
        return None
    result: DeliveryResult | None = None
    try:
        adapter = outbound_adapter(claim)
    except ChannelNotConfiguredError as exc:
        result = DeliveryResult(DeliveryStatus.FAILED, error_code="channel_not_configured", error_detail=str(exc))
    else:
        if claim.reconcile:
            # The last attempt may have landed (worker killed mid-call, timeout): look first.
            try:
                result = adapter.find_delivered(claim.reply)
            except Exception:
                log.warning("find_delivered failed for delivery %s", delivery_id, exc_info=True)
                result = DeliveryResult(DeliveryStatus.RETRYABLE, error_code="unknown",
                                        error_detail="could not check whether the last attempt landed")
        if result is None:
            slot = reserve_slot(adapter, claim.channel, claim.reply, _pacing_key(adapter, claim),
                                booking=str(delivery_id))
            if slot is not None and not slot.granted:
                seconds = come_back_in(slot)
                with session_scope() as session:
                    deliveries.defer(session=session, delivery_id=delivery_id, seconds=seconds)
                _paced_actor().send_with_options(args=(str(delivery_id),), delay=int(seconds * 1000) + 1)
                return None
            if slot is not None and slot.wait > 0:
                time.sleep(slot.wait)
            try:
                result = adapter.deliver(claim.reply)
            except Exception as exc:  # an adapter bug must not leave the delivery in limbo
                log.exception("adapter %s raised while delivering %s", claim.channel, delivery_id)
                result = DeliveryResult(DeliveryStatus.RETRYABLE, error_code="unknown", error_detail=type(exc).__name__)
    with session_scope() as session:
        delay = deliveries.record_result(session=session, delivery_id=delivery_id, result=result)
    metrics.DELIVERY_ATTEMPTS.labels(claim.channel, result.status.value).inc()
    if delay is not None:
        metrics.RETRIES.labels(claim.channel).inc()
        deliver.send_with_options(args=(str(delivery_id),), delay=int(delay * 1000))
    return result


# Ahead of ingest (0) and triage (workers/agent.py) among the messages a worker has already
# prefetched: a team's reply is not held up behind a burst of inbound webhooks.
DELIVERY_PRIORITY = -5


@dramatiq.actor(queue_name="outbound", max_retries=0, priority=DELIVERY_PRIORITY)
def deliver(delivery_id: str) -> None:
    run_delivery(uuid.UUID(delivery_id))


@dramatiq.actor(queue_name="outbound_paced", max_retries=0, priority=-10)
def deliver_paced(delivery_id: str) -> None:
    """A delivery pacing put aside, due again shortly before its booked slot.

    Dramatiq moves a delayed message that falls due to the *tail* of its queue: behind a
    backlog of first attempts in "outbound" it would miss its slot, and the slot would go
    unused. So paced re-sends have their own (short) queue and jump ahead of messages a
    worker has already prefetched (a lower number is a higher priority).
    """
    run_delivery(uuid.UUID(delivery_id))


def _paced_actor() -> dramatiq.Actor[[str], None]:
    # The embedded broker (one process, tests draining "outbound") keeps a single queue.
    return deliver if isinstance(_broker.broker, StubBroker) else deliver_paced


def warm_up() -> None:
    """Pay a worker's one-time costs before its first delivery instead of during it.

    The registry imports each channel's adapter on first use (slack-sdk, PyGithub, httpx and
    jwt for Teams), the first ORM query of a process configures every mapper and the first
    connection imports the database driver: about 25 ms for Slack, 100 ms each for GitHub and
    Teams and 30 ms for the mappers, under the import lock and the GIL, so the first deliveries
    after a worker started queued behind them (p50 375 ms against 20-30 ms warm). Only a
    process that runs a Worker pays this here (_WarmUp): the web server (unless it runs the
    embedded workers) and the scheduler import this module too and keep the lazy imports.
    A failure is left to happen where it did before, on use: the worker starts regardless.
    """
    modules = {"services.email_configs"}  # outbound_adapter's email adapters
    for spec in CHANNELS.values():
        for path in (spec.adapter_path, spec.config_path, spec.rate_limit):
            if path:
                modules.add(path.partition(":")[0])
    for module in sorted(modules):
        try:
            importlib.import_module(module)
        except Exception:
            log.warning("warm-up: importing %s failed", module, exc_info=True)
    try:
        configure_mappers()
        get_engine()  # imports the database driver (connects on first use, as before)
    except Exception:
        log.warning("warm-up: the ORM or the database engine failed to set up", exc_info=True)


class _WarmUp(dramatiq.Middleware):
    """warm_up() as a Worker boots (`ticketwire worker`, `dramatiq workers.actors`, and the
    embedded mode's worker threads), before it takes its first message."""

    def before_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        warm_up()
        freeze_startup_objects()


_broker.broker.add_middleware(_WarmUp())
