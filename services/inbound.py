"""Raw inbound events: stored before acknowledgement, claimed by the ingest worker, replayable."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, bindparam, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from channels.base import RawEvent as AdapterEvent
from core.clock import as_utc, now
from core.db import get_engine
from models import RawEvent
from services.dispatch import after_commit, dispatch_now
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


def _raw_event_values(*, project_id: int, channel: str, event_id: str, body: bytes, headers: dict[str, str],
                      status: str, error: str | None) -> dict[str, Any]:
    moment = now()
    return {
        "id": uuid.uuid4(), "project_id": project_id, "channel": channel, "event_id": event_id[:500], "body": body,
        "headers": {k: v for k, v in headers.items() if k in KEPT_HEADERS}, "status": status, "attempts": 0,
        "next_attempt_at": moment, "received_at": moment, "error": error,
        "processed_at": moment if status == "ignored" else None,
    }


@lru_cache(maxsize=2)
def _insert_statement(dialect: str) -> Any:
    """INSERT … ON CONFLICT DO NOTHING RETURNING id, built once: executing the same statement
    object with new parameters skips SQLAlchemy's per-call statement construction."""
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    table = RawEvent.__table__
    return (
        insert(table)
        .on_conflict_do_nothing(index_elements=["project_id", "channel", "event_id"])
        .returning(table.c.id)
    )


def _existing_id(conn: Connection | Session, *, project_id: int, channel: str, event_id: str) -> uuid.UUID:
    return conn.execute(  # type: ignore[return-value]
        select(RawEvent.id).where(RawEvent.project_id == project_id, RawEvent.channel == channel,
                                  RawEvent.event_id == event_id[:500])
    ).scalar_one()


def store_raw_event(
    *, session: Session, project_id: int, channel: str, event_id: str, body: bytes, headers: dict[str, str]
) -> Stored:
    """Insert the event under its unique (project, channel, event id) key, within `session`.

    A duplicate (vendor retry, replay) returns created=False and enqueues nothing; a retry of an
    event whose first attempt never landed inserts it now. The ingest message goes out when the
    session commits.
    """
    values = _raw_event_values(project_id=project_id, channel=channel, event_id=event_id, body=body,
                               headers=headers, status="pending", error=None)
    inserted = session.execute(_insert_statement(session.get_bind().dialect.name), values).scalar_one_or_none()
    if inserted is None:
        return Stored(_existing_id(session, project_id=project_id, channel=channel, event_id=event_id), False)
    after_commit(session, "ingest", inserted)
    return Stored(inserted, True)


def accept_raw_event(
    *, project_id: int, channel: str, event_id: str, body: bytes, headers: dict[str, str], ignored: str | None = None
) -> Stored:
    """The webhook acknowledgement's whole database work: one INSERT … ON CONFLICT DO NOTHING
    RETURNING in its own transaction on a plain connection (no ORM session on this hot path),
    then the ingest message. `ignored` stores the event already finished with that reason
    (recorded for the operator, replayable, never parsed)."""
    values = _raw_event_values(project_id=project_id, channel=channel, event_id=event_id, body=body,
                               headers=headers, status="ignored" if ignored else "pending", error=ignored)
    engine = get_engine()
    with engine.begin() as conn:
        inserted = conn.execute(_insert_statement(engine.dialect.name), values).scalar_one_or_none()
        if inserted is None:
            existing = _existing_id(conn, project_id=project_id, channel=channel, event_id=event_id)
    if inserted is None:
        return Stored(existing, False)
    if not ignored:
        dispatch_now("ingest", inserted)
    return Stored(inserted, True)


def _claimable(moment: Any) -> Any:
    return or_(
        (RawEvent.status == "pending") & (RawEvent.next_attempt_at <= moment),
        (RawEvent.status == "processing") & (RawEvent.lease_expires_at < moment),
    )


@lru_cache(maxsize=1)
def _lease_statements() -> tuple[Any, Any, Any]:
    """(claim, finish as processed/ignored, finish as failed): Core statements built once, with
    bindparams. Every event runs the first two; as ORM-enabled UPDATEs each cost the ORM's
    bulk-update machinery and a fresh cache key (a tenth of an ingest's CPU, measured)."""
    r = RawEvent.__table__.c
    event_id = bindparam("b_id", type_=r.id.type)
    moment = bindparam("b_moment", type_=r.received_at.type)
    claimable = or_(
        (r.status == "pending") & (r.next_attempt_at <= moment),
        (r.status == "processing") & (r.lease_expires_at < moment),
    )
    claim = (
        update(RawEvent.__table__)
        .where(r.id == event_id, claimable)
        .values(status="processing", attempts=r.attempts + 1,
                lease_expires_at=bindparam("b_lease_until", type_=r.lease_expires_at.type))
        .returning(r.project_id, r.channel, r.event_id, r.body, r.headers, r.received_at, r.attempts)
    )
    failed = (
        update(RawEvent.__table__)
        .where(r.id == event_id)
        .values(status=bindparam("b_status", type_=r.status.type), error=bindparam("b_error", type_=r.error.type),
                lease_expires_at=None)
    )
    done = failed.values(processed_at=moment)
    return claim, done, failed


def claim_raw_event(*, session: Session, raw_event_id: uuid.UUID) -> tuple[int, str, AdapterEvent, int] | None:
    """Lease the event for one attempt: (project id, channel, event, attempt) or None."""
    moment = now()
    claim, _, _ = _lease_statements()
    row = session.connection().execute(
        claim, {"b_id": raw_event_id, "b_moment": moment, "b_lease_until": moment + LEASE}
    ).one_or_none()
    if row is None:
        return None
    project_id, channel, event_id, body, headers, received_at, attempts = row
    event = AdapterEvent(event_id=event_id, body=bytes(body), headers=dict(headers or {}),
                         received_at=as_utc(received_at) or moment)
    return project_id, channel, event, attempts


def finish_raw_event(*, session: Session, raw_event_id: uuid.UUID, status: str, error: str | None = None) -> None:
    """processed | ignored | failed. A failed event keeps its error and stays replayable."""
    _, done, failed = _lease_statements()
    values = {"b_id": raw_event_id, "b_status": status, "b_error": error[:2000] if error else None}
    if status in ("processed", "ignored"):
        session.connection().execute(done, {**values, "b_moment": now()})
    else:
        session.connection().execute(failed, values)


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
