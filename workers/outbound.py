"""deliver: send one public reply through the ticket's channel, exactly once."""

from __future__ import annotations

import logging
import time
import uuid

import dramatiq

from channels.base import ChannelAdapter, DeliveryResult, DeliveryStatus
from channels.errors import ChannelNotConfiguredError
from channels.registry import get_spec
from core.db import session_scope
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


def _pacing_key(adapter: ChannelAdapter, claim: Claim) -> str:
    keyer = getattr(adapter, "rate_limit_key", None)
    if callable(keyer):
        try:
            return str(keyer(claim.reply))
        except TypeError:
            pass
    return f"{claim.channel}:{claim.reply.metadata['project_id']}:{claim.reply.ticket_id}"


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
            spec = get_spec(claim.channel)
            # Email paces per config (`email:<config id>` at its send_rate_per_minute / 60): the adapter says so.
            rate = getattr(adapter, "rate_per_second", None) if claim.channel == "email" else (
                spec.rate_per_second if spec is not None else None)
            if rate:
                slot = pacing.reserve(_pacing_key(adapter, claim), rate)
                if not slot.granted:
                    with session_scope() as session:
                        deliveries.defer(session=session, delivery_id=delivery_id, seconds=slot.wait)
                    deliver.send_with_options(args=(str(delivery_id),), delay=int(slot.wait * 1000) + 1)
                    return None
                if slot.wait > 0:
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


@dramatiq.actor(queue_name="outbound", max_retries=0)
def deliver(delivery_id: str) -> None:
    run_delivery(uuid.UUID(delivery_id))
