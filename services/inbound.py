"""Raw inbound events: stored before acknowledgement, claimed by the ingest worker, replayable."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from channels.base import RawEvent as AdapterEvent
from core.clock import as_utc, now
from models import RawEvent
from services.dispatch import after_commit
from services.errors import NotFoundError, ValidationError

LEASE = timedelta(seconds=float(os.environ.get("TICKETWIRE_INGEST_LEASE_SECONDS", "60")))
MAX_ATTEMPTS = 5
# Headers worth keeping with the body for parsing later (event type, delivery id, …);
# never Authorization or cookies.
KEPT_HEADERS = (
    "content-type", "x-github-event", "x-github-delivery", "x-slack-retry-num", "x-slack-retry-reason",
    "x-slack-request-timestamp", "user-agent",
)


@dataclass(frozen=True)
class Stored:
    id: uuid.UUID
    created: bool


def store_raw_event(
    *, session: Session, project_id: int, channel: str, event_id: str, body: bytes, headers: dict[str, str]
) -> Stored:
    """Insert the event under its unique (project, channel, event id) key.

    One INSERT … ON CONFLICT DO NOTHING RETURNING: a duplicate (vendor retry, replay) returns
    created=False and enqueues nothing; a retry of an event whose first attempt never landed
    inserts it now. This is the whole ack path's database work, so it stays one statement.
    """
    event_id = event_id[:500]
    moment = now()
    values = {
        "id": uuid.uuid4(), "project_id": project_id, "channel": channel, "event_id": event_id, "body": body,
        "headers": {k: v for k, v in headers.items() if k in KEPT_HEADERS}, "status": "pending", "attempts": 0,
        "next_attempt_at": moment, "received_at": moment,
    }
    dialect = session.get_bind().dialect.name
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    statement = (
        insert(RawEvent).values(**values)
        .on_conflict_do_nothing(index_elements=["project_id", "channel", "event_id"])
        .returning(RawEvent.id)
    )
    inserted = session.execute(statement).scalar_one_or_none()
    if inserted is None:
        existing = session.scalar(
            select(RawEvent.id).where(RawEvent.project_id == project_id, RawEvent.channel == channel,
                                      RawEvent.event_id == event_id)
        )
        return Stored(existing, False)  # type: ignore[arg-type]
    after_commit(session, "ingest", inserted)
    return Stored(inserted, True)


def _claimable(moment: Any) -> Any:
    return or_(
        (RawEvent.status == "pending") & (RawEvent.next_attempt_at <= moment),
        (RawEvent.status == "processing") & (RawEvent.lease_expires_at < moment),
    )


def claim_raw_event(*, session: Session, raw_event_id: uuid.UUID) -> tuple[int, str, AdapterEvent, int] | None:
    """Lease the event for one attempt: (project id, channel, event, attempt) or None."""
    moment = now()
    result = session.execute(
        update(RawEvent)
        .where(RawEvent.id == raw_event_id, _claimable(moment))
        .values(status="processing", lease_expires_at=moment + LEASE, attempts=RawEvent.attempts + 1)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        return None
    row = session.get_one(RawEvent, raw_event_id)
    session.refresh(row)
    event = AdapterEvent(event_id=row.event_id, body=bytes(row.body), headers=dict(row.headers or {}),
                         received_at=as_utc(row.received_at) or moment)
    return row.project_id, row.channel, event, row.attempts


def finish_raw_event(*, session: Session, raw_event_id: uuid.UUID, status: str, error: str | None = None) -> None:
    """processed | ignored | failed. A failed event keeps its error and stays replayable."""
    row = session.get_one(RawEvent, raw_event_id)
    row.status = status
    row.error = error[:2000] if error else None
    row.lease_expires_at = None
    row.processed_at = now() if status in ("processed", "ignored") else row.processed_at


def retry_raw_event_later(*, session: Session, raw_event_id: uuid.UUID, error: str, delay: float) -> bool:
    """A transient failure: try again later, or fail for good after MAX_ATTEMPTS. True = will retry."""
    row = session.get_one(RawEvent, raw_event_id)
    row.error = error[:2000]
    row.lease_expires_at = None
    if row.attempts >= MAX_ATTEMPTS:
        row.status = "failed"
        return False
    row.status = "pending"
    row.next_attempt_at = now() + timedelta(seconds=delay)
    return True


def replay_raw_event(*, session: Session, project_id: int, raw_event_id: uuid.UUID) -> RawEvent:
    row = session.get(RawEvent, raw_event_id)
    if row is None or row.project_id != project_id:
        raise NotFoundError("Not found.")
    if row.status not in ("failed", "ignored", "processed"):
        raise ValidationError(f"The event is {row.status}; only finished events can be replayed.", attr="status")
    row.status = "pending"
    row.attempts = 0
    row.next_attempt_at = now()
    row.error = None
    after_commit(session, "ingest", row.id)
    return row


def due_raw_events(*, session: Session, grace: float = 0.0, limit: int = 500) -> list[uuid.UUID]:
    """Events due for `grace` seconds or more that nobody holds (for the sweeper: work that was
    just enqueued is probably still in the broker's queue, so it is left alone for a moment)."""
    moment = now() - timedelta(seconds=grace)
    return list(session.scalars(select(RawEvent.id).where(_claimable(moment)).order_by(RawEvent.next_attempt_at).limit(limit)))
