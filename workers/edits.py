"""edit_delivered_message: carry a team member's edit of a delivered reply to the channel.

Slack `chat.update`, GitHub "Update an issue comment" (the delivery marker kept), the Bot
Connector's "Update activity"; each adapter offers it as `edit_delivered(reply, external_id)`.
The edit's state lives on the delivery row (`services.edits`), so this actor only wakes the
work: a lost message is found again by the sweeper (`services.edits.redispatch_due_edits`).
"""

from __future__ import annotations

import logging
import time
import uuid

import dramatiq

from channels.base import DeliveryResult, DeliveryStatus
from channels.errors import ChannelNotConfiguredError
from core.db import session_scope
from services import edits, integrations
from workers import broker as _broker  # noqa: F401  (sets the broker before the actor exists)
from workers import metrics
from workers.broker import WORKER_ID
from workers.outbound import come_back_in, reserve_slot

log = logging.getLogger(__name__)


def _attempt_edit(claim: edits.EditClaim) -> DeliveryResult | float:
    """The vendor's answer, or the seconds to wait when pacing says not yet."""
    if not claim.external_id:
        # Teams answers a split post without an id: there is nothing to address the edit to.
        return DeliveryResult(DeliveryStatus.FAILED, error_code="no_channel_message_id",
                              error_detail="the channel did not say which message the reply became")
    try:
        adapter = integrations.adapter_for(project_id=claim.project_id, channel=claim.channel)
    except ChannelNotConfiguredError as exc:
        return DeliveryResult(DeliveryStatus.FAILED, error_code="channel_not_configured", error_detail=str(exc))
    edit = getattr(adapter, "edit_delivered", None)
    if not callable(edit):
        return DeliveryResult(DeliveryStatus.FAILED, error_code="not_supported_by_channel",
                              error_detail=f"{claim.channel} cannot edit a posted message")
    # An edit counts against the same vendor limits as a post (GitHub: content-creating).
    keyer = getattr(adapter, "rate_limit_key", None)
    key = str(keyer(claim.reply)) if callable(keyer) else f"{claim.channel}:{claim.project_id}"
    slot = reserve_slot(adapter, claim.channel, claim.reply, key, booking=f"edit:{claim.message_id}")
    if slot is not None and not slot.granted:
        return come_back_in(slot)
    if slot is not None and slot.wait > 0:
        time.sleep(slot.wait)
    try:
        result: DeliveryResult = edit(claim.reply, claim.external_id)
    except Exception as exc:  # an adapter bug must not leave the edit leased until it expires
        log.exception("adapter %s raised while editing message %s", claim.channel, claim.message_id)
        result = DeliveryResult(DeliveryStatus.RETRYABLE, error_code="unknown", error_detail=type(exc).__name__)
    return result


def run_edit(message_id: uuid.UUID, attempt: int = 1) -> str:
    """One attempt. Returns what happened: edited, retrying, failed, waiting or a skip reason."""
    with session_scope() as session:
        state = edits.claim_edit(session=session, message_id=message_id, worker_id=WORKER_ID)
    if isinstance(state, edits.Skip):
        return state.reason
    if isinstance(state, edits.Wait):
        _send_later(message_id, attempt, state.seconds)
        return "waiting"
    outcome = _attempt_edit(state)
    if isinstance(outcome, float):
        with session_scope() as session:
            edits.release(session=session, claim=state, seconds=outcome)
        _send_later(message_id, attempt, outcome)
        return "waiting"
    with session_scope() as session:
        delay = edits.record_edit_result(session=session, claim=state, result=outcome, attempt=attempt)
    metrics.DELIVERY_ATTEMPTS.labels(f"{state.channel}_edit", outcome.status.value).inc()
    if delay is not None:
        # A superseded attempt (edited again meanwhile) starts the newer edit's count afresh.
        _send_later(message_id, attempt + 1 if delay > 0 else 1, delay)
        return "retrying"
    return "edited" if outcome.status == DeliveryStatus.DELIVERED else "failed"


def _send_later(message_id: uuid.UUID, attempt: int, seconds: float) -> None:
    edit_delivered_message.send_with_options(
        args=(str(message_id),), kwargs={"attempt": attempt}, delay=int(seconds * 1000) + 1
    )


@dramatiq.actor(queue_name="outbound", max_retries=0)
def edit_delivered_message(message_id: str, attempt: int = 1) -> None:
    """Dispatch kind "edit": update the channel's copy of an edited, delivered reply."""
    run_edit(uuid.UUID(message_id), attempt)
