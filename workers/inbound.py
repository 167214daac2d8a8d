"""ingest_event: parse a stored raw event and apply it to tickets."""

from __future__ import annotations

import logging
import uuid

import dramatiq

from channels.errors import ChannelNotConfiguredError, MalformedPayloadError, UnsupportedEventError
from core.db import session_scope
from services import inbound, integrations
from services.deliveries import backoff_seconds
from services.ingest import apply_inbound
from workers import broker as _broker  # noqa: F401  (sets the broker before the actor exists)
from workers import metrics

log = logging.getLogger(__name__)
ORPHAN_ATTEMPTS = 4


def process_raw_event(raw_event_id: uuid.UUID) -> str | None:
    """One attempt. Returns the final status, or None if someone else has the event."""
    with session_scope() as session:
        claimed = inbound.claim_raw_event(session=session, raw_event_id=raw_event_id)
    if claimed is None:
        return None
    project_id, channel, event, attempt = claimed
    try:
        if channel == "email":  # the adapter of the email config that received the mail
            from services import email_inbound

            adapter = email_inbound.adapter_for_event(project_id=project_id, event=event)
        else:
            adapter = integrations.adapter_for(project_id=project_id, channel=channel)
        messages = adapter.parse(event)
    except (UnsupportedEventError, MalformedPayloadError, ChannelNotConfiguredError) as exc:
        # Permanent: keep the event, its error visible and replayable, and move on.
        log.warning("raw event %s failed: %s", raw_event_id, type(exc).__name__)
        with session_scope() as session:
            inbound.finish_raw_event(session=session, raw_event_id=raw_event_id, status="failed",
                                     error=f"{type(exc).__name__}: {exc}")
        metrics.INGESTED.labels(channel, "failed").inc()
        return "failed"
    except Exception as exc:  # a vendor look-up failed, a bug… retry a few times, then fail
        return _retry_later(raw_event_id, channel, exc, attempt)
    try:
        with session_scope() as session:
            if channel == "email":  # threading by Message-ID and reply token, loops, bounces
                from services import email_inbound

                applied = email_inbound.apply_email(session=session, project_id=project_id, event=event,
                                                    messages=messages, wait_for_thread=attempt < ORPHAN_ATTEMPTS)
            else:
                applied = apply_inbound(session=session, project_id=project_id, messages=messages)
            if applied.orphans and not applied.changed and attempt < ORPHAN_ATTEMPTS:
                # Vendors deliver concurrently: a thread reply can overtake the event that
                # opens its ticket. Look again shortly before calling it a stranger's thread.
                session.rollback()
                inbound.retry_raw_event_later(session=session, raw_event_id=raw_event_id,
                                              error="thread not found yet", delay=0.5 * attempt)
                retry_in = 0.5 * attempt
            else:
                retry_in = None
                status = "processed" if applied.changed else "ignored"
                inbound.finish_raw_event(session=session, raw_event_id=raw_event_id, status=status)
    except Exception as exc:
        return _retry_later(raw_event_id, channel, exc, attempt)
    if retry_in is not None:
        ingest_event.send_with_options(args=(str(raw_event_id),), delay=int(retry_in * 1000))
        return "pending"
    metrics.INGESTED.labels(channel, status).inc()
    return status


def _retry_later(raw_event_id: uuid.UUID, channel: str, exc: Exception, attempt: int) -> str:
    log.exception("raw event %s attempt %s raised", raw_event_id, attempt)
    delay = backoff_seconds(attempt) / 5
    with session_scope() as session:
        again = inbound.retry_raw_event_later(session=session, raw_event_id=raw_event_id,
                                              error=f"{type(exc).__name__}: {exc}", delay=delay)
    if again:
        ingest_event.send_with_options(args=(str(raw_event_id),), delay=int(delay * 1000))
        return "pending"
    metrics.INGESTED.labels(channel, "failed").inc()
    return "failed"


@dramatiq.actor(queue_name="inbound", max_retries=0)
def ingest_event(raw_event_id: str) -> None:
    process_raw_event(uuid.UUID(raw_event_id))
