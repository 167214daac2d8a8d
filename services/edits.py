"""Carrying a team member's edit of a delivered reply to the channel's copy of it.

`services.message_edits` stores the edit; this module keeps the pending channel edit durable
and runs its life cycle for the worker (`workers.edits`). No column of its own: a delivery
that is `sent` no longer uses its retry columns, so they hold the edit's state:

| `last_error_code` | meaning | timing columns |
|---|---|---|
| `edit_pending` | the channel still shows an older text | `next_attempt_at` = when to try |
| `edit_sending` | a worker is calling the vendor | `lease_expires_at`, `leased_by` |
| `edit_failed` | the edit cannot be applied (a system note says why) | `last_error` = the reason |
| anything else | nothing to do (a code left by an earlier delivery attempt) | |

The marker is written in the same transaction as the edit (`mark_pending`), so a lost
broker message or a killed worker loses nothing: `due_edits` finds it and the sweeper
dispatches it again. The claim is one conditional UPDATE, like a delivery's, so two workers
never edit the same message at once.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, case, or_, select, update
from sqlalchemy.orm import Session

from channels.base import DeliveryResult, DeliveryStatus, OutboundReply
from core.clock import as_utc, now
from models import Delivery, Message, Ticket
from services.attachments import links_for as attachment_links
from services.deliveries import THREAD_FIELDS, backoff_seconds

EDIT_PENDING = "edit_pending"
EDIT_SENDING = "edit_sending"
EDIT_FAILED = "edit_failed"

LEASE = timedelta(seconds=float(os.environ.get("TICKETWIRE_DELIVERY_LEASE_SECONDS", "60")))
# While the original post is still in flight (`sending`) the edit waits this long and looks again.
SENDING_RECHECK_SECONDS = 2.0
# 15 s doubling, capped at 15 min (deliveries' backoff): twelve attempts span about two hours.
MAX_EDIT_ATTEMPTS = 12
# Channels whose posted replies the worker can edit (`edit_delivered` on their adapters).
EDITABLE_CHANNELS = frozenset({"slack", "github", "teams"})


@dataclass(frozen=True)
class EditClaim:
    """One attempt at editing the channel's copy of a reply, leased to `lease_token`."""

    delivery_id: uuid.UUID
    message_id: uuid.UUID
    project_id: int
    channel: str
    external_id: str | None
    lease_token: str
    reply: OutboundReply


@dataclass(frozen=True)
class Wait:
    """Not now: look again after `seconds` (the reply itself is still being posted)."""

    seconds: float
    reason: str


@dataclass(frozen=True)
class Skip:
    """Nothing to edit at the channel (and nothing will be, for this dispatch)."""

    reason: str


def mark_pending(*, session: Session, delivery_id: uuid.UUID) -> bool:
    """Record, in the edit's own transaction, that the channel's copy must be edited.

    Only a `sent` or `sending` delivery takes the marker: a pending or failed one sends the
    edited text on its next attempt anyway. One conditional UPDATE, so a delivery worker that
    records an outcome at the same moment is never overwritten (a retry's `next_attempt_at`
    stays its own). An edit made while an earlier edit is in flight waits for that one's
    lease (its worker brings the due time forward as soon as it finishes); one made while an
    earlier edit waits out a rate limit keeps that wait (the retry reads the newest text).
    """
    moment = now()
    result = session.execute(
        update(Delivery)
        .where(Delivery.id == delivery_id, Delivery.status.in_(("sent", "sending")))
        .values(
            last_error_code=EDIT_PENDING,
            last_error=None,
            next_attempt_at=case(
                (
                    and_(Delivery.last_error_code == EDIT_SENDING, Delivery.lease_expires_at > moment),
                    Delivery.lease_expires_at,
                ),
                (
                    and_(Delivery.last_error_code == EDIT_PENDING, Delivery.next_attempt_at > moment),
                    Delivery.next_attempt_at,
                ),
                else_=moment,
            ),
        )
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def _claimable(moment: Any, *, undated_pending: bool = False) -> Any:
    pending_due = Delivery.next_attempt_at <= moment
    if undated_pending:  # the worker, not the sweeper: cannot happen, but never strand an edit
        pending_due = pending_due | Delivery.next_attempt_at.is_(None)
    return (Delivery.status == "sent") & or_(
        (Delivery.last_error_code == EDIT_PENDING) & pending_due,
        (Delivery.last_error_code == EDIT_SENDING) & (Delivery.lease_expires_at < moment),
    )


def claim_edit(*, session: Session, message_id: uuid.UUID, worker_id: str) -> EditClaim | Wait | Skip:
    """Lease the pending edit of a message's delivery for one attempt, or say why not."""
    message = session.get(Message, message_id)
    if message is None or message.deleted_at is not None:
        return Skip("message_gone")
    delivery = session.scalar(select(Delivery).where(Delivery.message_id == message_id))
    if delivery is None:
        return Skip("no_delivery")
    if delivery.channel not in EDITABLE_CHANNELS:
        # Email cannot take back a sent message; message_edits already told the team.
        return Skip("not_supported_by_channel")
    if delivery.status == "sending":
        return Wait(SENDING_RECHECK_SECONDS, "delivery_in_flight")
    if delivery.status != "sent":
        return Skip("not_delivered_yet")  # the next attempt reads the edited text
    moment = now()
    due = as_utc(delivery.next_attempt_at)
    if delivery.last_error_code == EDIT_PENDING and due is not None and due > moment:
        # Whoever set that time dispatches it then: a retry's delayed message, or the worker
        # whose attempt was in flight (and, if either is lost, the sweeper).
        return Skip("not_due")
    token = f"{worker_id}:{uuid.uuid4().hex[:12]}"[-100:]
    result = session.execute(
        update(Delivery)
        .where(Delivery.id == delivery.id, _claimable(moment, undated_pending=True))
        .values(last_error_code=EDIT_SENDING, lease_expires_at=moment + LEASE, leased_by=token)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        return Skip("no_pending_edit")  # applied already, or another worker holds it
    session.refresh(delivery)
    ticket = session.get_one(Ticket, delivery.ticket_id)
    return EditClaim(
        delivery_id=delivery.id,
        message_id=message.id,
        project_id=ticket.project_id,
        channel=delivery.channel,
        external_id=delivery.external_id,
        lease_token=token,
        reply=build_reply(ticket=ticket, message=message, delivery=delivery),
    )


def build_reply(*, ticket: Ticket, message: Message, delivery: Delivery) -> OutboundReply:
    """The reply as `deliveries.claim` builds it, carrying the message's current text."""
    thread = {name: getattr(ticket, name) for name in THREAD_FIELDS}
    thread["email_config_id"] = str(ticket.email_config_id) if ticket.email_config_id else None
    return OutboundReply(
        delivery_id=str(delivery.id),
        ticket_id=str(ticket.id),
        ticket_number=ticket.ticket_number,
        text=message.content,
        thread=thread,
        author_name=message.author_name,
        rich_content=message.rich_content,
        # The new text keeps the reply's files (Slack, GitHub and Teams show them as links).
        attachments=attachment_links(message),
        attempt=delivery.attempts,
        metadata={"project_id": ticket.project_id, "message_id": str(message.id), "edit_version": message.version},
    )


def release(*, session: Session, claim: EditClaim, seconds: float) -> None:
    """Give a claimed edit back untried (pacing): due again after `seconds`."""
    session.execute(
        update(Delivery)
        .where(Delivery.id == claim.delivery_id, Delivery.leased_by == claim.lease_token)
        .values(last_error_code=EDIT_PENDING, lease_expires_at=None, leased_by=None,
                next_attempt_at=now() + timedelta(seconds=seconds))
        .execution_options(synchronize_session=False)
    )


def record_edit_result(
    *, session: Session, claim: EditClaim, result: DeliveryResult, attempt: int
) -> float | None:
    """Store an attempt's outcome. Returns the delay before the next attempt, if there is one.

    Conditional UPDATEs on our lease, like `claim_edit`: an edit committed meanwhile
    (`mark_pending` turns `edit_sending` back into `edit_pending`) is never overwritten.
    """
    moment = now()
    ours = (Delivery.id == claim.delivery_id) & (Delivery.leased_by == claim.lease_token)
    delay: float | None = None
    reason = _error_text(result)
    if result.status == DeliveryStatus.DELIVERED:
        values: dict[str, Any] = {"last_error_code": None, "last_error": None, "next_attempt_at": None}
    elif result.status == DeliveryStatus.RETRYABLE and attempt < MAX_EDIT_ATTEMPTS:
        delay = max(result.retry_after or 0.0, backoff_seconds(attempt))
        values = {"last_error_code": EDIT_PENDING, "last_error": reason,
                  "next_attempt_at": moment + timedelta(seconds=delay)}
    else:
        values = {"last_error_code": EDIT_FAILED, "last_error": reason, "next_attempt_at": None}
    finished = session.execute(
        update(Delivery)
        .where(ours, Delivery.last_error_code == EDIT_SENDING)
        .values(**values, lease_expires_at=None, leased_by=None)
        .execution_options(synchronize_session=False)
    ).rowcount
    if finished == 1:
        if values["last_error_code"] == EDIT_FAILED:
            _note_failure(session=session, delivery=session.get_one(Delivery, claim.delivery_id), reason=reason)
        return delay
    # Edited again while this attempt was in flight: send the newest text now, whatever became
    # of the older one. (No row at all: our lease expired and another worker took over.)
    superseded = session.execute(
        update(Delivery)
        .where(ours, Delivery.last_error_code == EDIT_PENDING)
        .values(next_attempt_at=moment, lease_expires_at=None, leased_by=None)
        .execution_options(synchronize_session=False)
    ).rowcount
    return 0.0 if superseded == 1 else None


def _note_failure(*, session: Session, delivery: Delivery, reason: str) -> None:
    """A failed edit is never silent: a private system note on the ticket says so."""
    from services.replies import add_team_message

    ticket = session.get_one(Ticket, delivery.ticket_id)
    add_team_message(
        session=session, ticket=ticket, author=None, is_private=True, author_type="system",
        message_type="internal_note",
        content=(
            f"An edited reply could not be updated in {delivery.channel}: {reason}. "
            "The customer still sees the earlier text there."
        ),
    )


def _error_text(result: DeliveryResult) -> str:
    code, detail = result.error_code, result.error_detail
    if code and detail and code not in detail:
        return f"{code}: {detail}"
    return detail or code or "edit failed"


# Edits due a moment ago are probably still in the broker's queue; the sweeper leaves them be.
SWEEP_GRACE_SECONDS = 5.0


def due_edits(*, session: Session, grace: float = SWEEP_GRACE_SECONDS, limit: int = 500) -> list[uuid.UUID]:
    """Messages whose channel edit is due for `grace` seconds but nobody is working on it."""
    moment = now() - timedelta(seconds=grace)
    return list(
        session.scalars(
            select(Delivery.message_id).where(_claimable(moment)).order_by(Delivery.next_attempt_at).limit(limit)
        )
    )


def edit_state(*, session: Session, message_id: uuid.UUID) -> str | None:
    """`edit_pending` / `edit_sending` / `edit_failed`, or None (nothing pending)."""
    code = session.scalar(select(Delivery.last_error_code).where(Delivery.message_id == message_id))
    return code if code in (EDIT_PENDING, EDIT_SENDING, EDIT_FAILED) else None


def redispatch_due_edits(*, session: Session, grace: float = SWEEP_GRACE_SECONDS, limit: int = 500) -> int:
    """The sweeper's part: hand every due edit to the workers again once `session` commits."""
    from services.dispatch import after_commit

    due = due_edits(session=session, grace=grace, limit=limit)
    for message_id in due:
        after_commit(session, "edit", message_id)
    return len(due)
