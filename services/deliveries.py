"""Outbound deliveries: claim with a lease, record the outcome, schedule retries, fail loudly.

The database row is the truth about a delivery; the broker only wakes a worker. A claim is
one conditional UPDATE, so two workers (or a worker and the sweeper) never both send it.
"""

from __future__ import annotations

import os
import random
import uuid
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import bindparam, case, func, or_, select, update
from sqlalchemy.orm import Session

from channels.base import DeliveryResult, DeliveryStatus, OutboundReply
from core.clock import as_utc, now
from models import Delivery, Message, Ticket
from services.attachments import links_of as attachment_links
from services.dispatch import after_commit
from services.errors import NotFoundError, ValidationError
from services.unread import mark_unread_dirty

LEASE = timedelta(seconds=float(os.environ.get("TICKETWIRE_DELIVERY_LEASE_SECONDS", "60")))
FIRST_BACKOFF = 15.0
MAX_BACKOFF = 15 * 60.0
GIVE_UP_AFTER = timedelta(hours=24)


@dataclass(frozen=True)
class Claim:
    delivery_id: uuid.UUID
    channel: str
    attempt: int
    # The previous attempt's outcome is unknown (worker died mid-call, or it timed out):
    # look for an earlier post before sending again.
    reconcile: bool
    reply: OutboundReply
    ticket: dict[str, Any]


def backoff_seconds(attempt: int, *, jitter: float = 0.2) -> float:
    """15 s doubling per attempt, capped at 15 min, ±20 % jitter so retries do not stampede.

    TICKETWIRE_RETRY_BASE_SECONDS scales the first step (tests and benchmarks shorten it)."""
    first = float(os.environ.get("TICKETWIRE_RETRY_BASE_SECONDS", FIRST_BACKOFF))
    base = min(MAX_BACKOFF, first * (2 ** max(0, attempt - 1)))
    return base * random.uniform(1 - jitter, 1 + jitter)


def _claimable(moment: Any) -> Any:
    d = Delivery.__table__.c  # the table's columns: claim's Core UPDATE uses this too
    return or_(
        (d.status == "pending") & (d.next_attempt_at <= moment),
        (d.status == "sending") & (d.lease_expires_at < moment),
    )


THREAD_FIELDS = (
    "slack_team_id", "slack_channel_id", "slack_thread_ts", "github_repo", "github_issue_number",
    "teams_service_url", "teams_conversation_id", "teams_channel_id", "teams_team_id", "teams_tenant_id",
    "teams_root_activity_id", "email_subject", "email_from", "email_to", "cc_participants", "thread_key",
    "widget_session_id", "customer_email", "customer_name", "email_config_id", "channel_source",
)


# The hot path of every reply (claim, then _record_delivered) runs Core statements on the
# tables, each built once and run on the session's connection: the ORM's bulk UPDATE
# machinery, the entity loads (a ticket row is wide) and the flush of the dirty message were
# most of a worker's CPU per Slack delivery (py-spy).
_DELIVERIES = Delivery.__table__
_MESSAGES = Message.__table__
_TICKETS = Ticket.__table__
# What a claim reads of the message: the reply, `attachments` for attachment_links (no query),
# and delivery_status (a re-claim of a message already `sending` writes nothing, as the ORM's
# flush of an unchanged attribute wrote nothing).
_MESSAGE_COLUMNS = ("id", "content", "author_name", "rich_content", "attachments", "delivery_status")
# THREAD_FIELDS holds email_config_id and channel_source (which _email_threading needs).
_TICKET_COLUMNS = ("id", "ticket_number", "project_id", *THREAD_FIELDS)


@lru_cache(maxsize=1)
def _claim_statements() -> tuple[Any, Any, Any, Any]:
    """(outcome unknown?, claim, read the reply, mark the message sending), with bindparams."""
    d, m, t = _DELIVERIES, _MESSAGES, _TICKETS
    delivery_id = bindparam("b_delivery_id", type_=d.c.id.type)
    moment = bindparam("b_moment", type_=d.c.updated_at.type)
    # Whether the last attempt's outcome is unknown, read before the claim sets it.
    unknown = select(d.c.outcome_unknown).where(d.c.id == delivery_id)
    # Everything the reply needs, read after the claim: an edit of the message that held the
    # delivery's row lock has committed by then, and its text is the one sent.
    read = (
        select(
            *(m.c[name].label(f"message_{name}") for name in _MESSAGE_COLUMNS),
            *(t.c[name].label(f"ticket_{name}") for name in _TICKET_COLUMNS),
        )
        .select_from(d.join(m, m.c.id == d.c.message_id).join(t, t.c.id == d.c.ticket_id))
        .where(d.c.id == delivery_id)
    )
    # THE claim: one conditional UPDATE, so two workers never both get the delivery.
    claim = (
        update(d)
        .where(d.c.id == delivery_id, _claimable(moment))
        .values(
            status="sending",
            lease_expires_at=bindparam("b_lease_expires_at", type_=d.c.lease_expires_at.type),
            leased_by=bindparam("b_worker_id", type_=d.c.leased_by.type),
            attempts=d.c.attempts + 1,
            outcome_unknown=True,
            updated_at=moment,
        )
        .returning(d.c.channel, d.c.attempts)
    )
    # updated_at: the column's onupdate, as the ORM's flush of the message set it.
    sending = (
        update(m).where(m.c.id == bindparam("b_message_id", type_=m.c.id.type)).values(delivery_status="sending")
    )
    return unknown, claim, read, sending


def claim(*, session: Session, delivery_id: uuid.UUID, worker_id: str) -> Claim | None:
    """Take the delivery for one attempt, or None if it is not due or someone else has it."""
    moment = now()
    unknown, claim_update, read, sending = _claim_statements()
    conn = session.connection()
    was_unknown = conn.execute(unknown, {"b_delivery_id": delivery_id}).scalar()
    if was_unknown is None:
        return None
    claimed = conn.execute(claim_update, {
        "b_delivery_id": delivery_id, "b_moment": moment, "b_lease_expires_at": moment + LEASE,
        "b_worker_id": worker_id,
    }).one_or_none()
    if claimed is None:
        return None
    channel, attempts = claimed
    row = conn.execute(read, {"b_delivery_id": delivery_id}).one()._mapping
    message_id, ticket_id = row["message_id"], row["ticket_id"]
    if row["message_delivery_status"] != "sending":
        conn.execute(sending, {"b_message_id": message_id})
    thread = {name: row[f"ticket_{name}"] for name in THREAD_FIELDS}
    email_config_id = thread["email_config_id"]
    thread["email_config_id"] = str(email_config_id) if email_config_id else None
    thread.update(_email_threading(session=session, ticket_id=ticket_id, channel_source=thread["channel_source"],
                                   message_id=message_id))
    reply = OutboundReply(
        delivery_id=str(delivery_id),
        ticket_id=str(ticket_id),
        ticket_number=row["ticket_ticket_number"],
        text=row["message_content"],
        thread=thread,
        author_name=row["message_author_name"],
        rich_content=row["message_rich_content"],
        # The team's files as links; the email channel swaps in their bytes (services.attachments).
        attachments=attachment_links(message_id=message_id, listed=row["message_attachments"]),
        attempt=attempts,
        metadata={"project_id": row["ticket_project_id"], "message_id": str(message_id)},
    )
    return Claim(delivery_id, channel, attempts, bool(was_unknown), reply, thread)


def _email_threading(*, session: Session, ticket_id: uuid.UUID, channel_source: str | None,
                     message_id: uuid.UUID) -> dict[str, Any]:
    """Message-IDs the email channel threads with: the ticket's earlier messages, oldest first."""
    if channel_source != "email":
        return {}
    ids = [
        mid
        for mid in session.scalars(
            select(Message.external_id)
            .where(Message.ticket_id == ticket_id, Message.external_id.is_not(None), Message.id != message_id)
            .order_by(Message.created_at)
        )
        if mid and mid.startswith("<")
    ]
    return {"references": ids[-20:], "in_reply_to": ids[-1] if ids else None}


def record_result(*, session: Session, delivery_id: uuid.UUID, result: DeliveryResult) -> float | None:
    """Store an attempt's outcome. Returns the delay in seconds before the next attempt, if any."""
    moment = now()
    if result.status == DeliveryStatus.DELIVERED:
        _record_delivered(session=session, delivery_id=delivery_id, external_id=result.external_id, moment=moment)
        return None
    delivery = session.get_one(Delivery, delivery_id)
    message = session.get_one(Message, delivery.message_id)
    delivery.lease_expires_at = None
    delivery.leased_by = None
    delivery.updated_at = moment
    delivery.last_error_code = result.error_code
    delivery.last_error = result.error_detail
    created = as_utc(delivery.created_at) or moment
    if result.status == DeliveryStatus.RETRYABLE and moment - created < GIVE_UP_AFTER:
        # A timeout may have landed at the vendor: reconcile before the next send.
        delivery.outcome_unknown = result.error_code in ("timeout", "unknown", "smtp_timeout")
        delay = max(result.retry_after or 0.0, backoff_seconds(delivery.attempts))
        delivery.status = "pending"
        delivery.next_attempt_at = moment + timedelta(seconds=delay)
        message.delivery_status = "pending"
        message.delivery_error = _error_text(result)
        return delay
    delivery.outcome_unknown = False
    fail(session=session, delivery=delivery, message=message, reason=_error_text(result) or "delivery failed")
    return None


@lru_cache(maxsize=1)
def _delivered_statements() -> tuple[Any, Any, Any]:
    """(the delivery `sent`, the message `sent`, the message `sent` with the vendor's id)."""
    d, m = _DELIVERIES, _MESSAGES
    moment = bindparam("b_moment", type_=d.c.updated_at.type)
    delivery = (
        update(d).where(d.c.id == bindparam("b_delivery_id", type_=d.c.id.type))
        .values(
            status="sent", outcome_unknown=False, lease_expires_at=None, leased_by=None, updated_at=moment,
            external_id=bindparam("b_external_id", type_=d.c.external_id.type), sent_at=moment,
            # No next attempt: keeps sent rows out of the (status, next_attempt_at) index range
            # that services.edits.due_edits scans, unless an edit made while this attempt was in
            # flight waits for it (services.edits.EDIT_PENDING keeps its due time). Evaluated by
            # the UPDATE itself, so an edit committed since the claim is not lost.
            next_attempt_at=case((d.c.last_error_code == "edit_pending", d.c.next_attempt_at), else_=None),
        )
        .returning(d.c.channel, d.c.message_id)
    )
    # updated_at: the column's onupdate, as before.
    message = update(m).where(m.c.id == bindparam("b_message_id", type_=m.c.id.type))
    sent = message.values(delivery_status="sent", delivery_error=None)
    sent_with_id = message.values(
        delivery_status="sent", delivery_error=None,
        external_id=func.coalesce(m.c.external_id, bindparam("b_ours", type_=m.c.external_id.type)),
    )
    return delivery, sent, sent_with_id


def _record_delivered(*, session: Session, delivery_id: uuid.UUID, external_id: str | None, moment: Any) -> None:
    """`sent`, with the vendor's id: two UPDATEs, no rows loaded (the hot path of every reply)."""
    delivery, sent, sent_with_id = _delivered_statements()
    conn = session.connection()
    channel, message_id = conn.execute(delivery, {
        "b_delivery_id": delivery_id, "b_moment": moment, "b_external_id": external_id,
    }).one()
    if not external_id:
        conn.execute(sent, {"b_message_id": message_id})
        return
    # Email ids are global Message-IDs already; other vendors' ids are per channel.
    ours = external_id if external_id.startswith("<") else f"{channel}:out:{external_id}"
    conn.execute(sent_with_id, {"b_message_id": message_id, "b_ours": ours})


def _error_text(result: DeliveryResult) -> str | None:
    if not result.error_code and not result.error_detail:
        return None
    if result.error_detail and result.error_code and result.error_code not in result.error_detail:
        return f"{result.error_code}: {result.error_detail}"
    return result.error_detail or result.error_code


def fail(*, session: Session, delivery: Delivery, message: Message, reason: str) -> None:
    """A failed delivery is never silent: the message shows it, a system note says it, and
    the ticket is reopened so someone looks."""
    from services.replies import add_team_message

    delivery.status = "failed"
    delivery.next_attempt_at = None
    message.delivery_status = "failed"
    message.delivery_error = reason
    ticket = session.get_one(Ticket, delivery.ticket_id)
    add_team_message(
        session=session, ticket=ticket, author=None, is_private=True, author_type="system",
        content=f"Delivery of a reply through {delivery.channel} failed: {reason}. "
        "Retry it from the message once the cause is fixed.",
    )
    if ticket.status != "open":
        ticket.status = "open"
        mark_unread_dirty(session, ticket.project_id)


def retry_failed(*, session: Session, ticket: Ticket, message_id: uuid.UUID) -> Message:
    """POST …/messages/{id}/retry: put a failed delivery back in the queue."""
    message = session.get(Message, message_id)
    if message is None or message.ticket_id != ticket.id or message.deleted_at is not None:
        raise NotFoundError("Not found.", attr="message_id")
    delivery = session.scalar(select(Delivery).where(Delivery.message_id == message.id))
    if delivery is None:
        raise ValidationError("This message has no delivery to retry.", attr="message_id", code="not_deliverable")
    if delivery.status != "failed":
        raise ValidationError(f"Only failed deliveries can be retried (this one is {delivery.status}).",
                              attr="message_id", code="not_failed")
    moment = now()
    delivery.status = "pending"
    delivery.next_attempt_at = moment
    # A fresh 24 h budget for the retry the team asked for.
    delivery.created_at = moment
    delivery.last_error = None
    delivery.last_error_code = None
    message.delivery_status = "pending"
    message.delivery_error = None
    after_commit(session, "deliver", delivery.id)
    session.flush()
    return message


def due_deliveries(*, session: Session, grace: float = 0.0, limit: int = 500) -> list[uuid.UUID]:
    """Deliveries due for `grace` seconds or more that nobody is working on (for the sweeper)."""
    moment = now() - timedelta(seconds=grace)
    return list(session.scalars(select(Delivery.id).where(_claimable(moment)).order_by(Delivery.next_attempt_at).limit(limit)))


def defer(*, session: Session, delivery_id: uuid.UUID, seconds: float) -> None:
    """Give a claimed delivery back unsent (pacing): not an attempt, not an unknown outcome."""
    delivery = session.get_one(Delivery, delivery_id)
    delivery.status = "pending"
    delivery.attempts = max(0, delivery.attempts - 1)
    delivery.outcome_unknown = False
    delivery.lease_expires_at = None
    delivery.next_attempt_at = now() + timedelta(seconds=seconds)
    message = session.get_one(Message, delivery.message_id)
    message.delivery_status = "pending"
