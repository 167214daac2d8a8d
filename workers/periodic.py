"""Periodic jobs: the sweeper, snooze wake-ups, purge, stale agent runs.

`ticketwire scheduler` runs them, or a thread of the web process in the embedded mode. One
instance is active per deployment: leadership is a lease row in the database.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from core.db import session_scope
from services import deliveries, inbound
from services import tickets as ticket_service

log = logging.getLogger(__name__)
# Rows enqueued a moment ago are probably still in the broker's queue; give them this long.
SWEEP_GRACE_SECONDS = 5.0
# Every raw event is enqueued when it is stored (and a retry as a delayed message), so while the
# inbound queue holds a backlog, due events are most likely waiting in it: re-sending them every
# sweep (500 at a time) doubled the messages of a 6,000-event drain, each a claim that found
# nothing to do. One lost under a backlog is re-sent once it is this old. (Not for deliveries:
# scheduled ones, campaigns and paced replies, reach the workers through the sweeper.)
INBOUND_BACKLOG_GRACE_SECONDS = 60.0


def _inbound_grace(queue_name: str) -> float:
    return INBOUND_BACKLOG_GRACE_SECONDS if _waiting_in(queue_name) else SWEEP_GRACE_SECONDS


def _waiting_in(queue_name: str) -> int:
    """Messages waiting in the broker's queue; 0 when it cannot say (in-process broker, Redis down)."""
    from workers.broker import broker

    client = getattr(broker, "client", None)
    if client is None:
        return 0
    try:
        return int(client.llen(f"{broker.namespace}:{queue_name}"))
    except Exception:  # Redis down: the sends below fail too, and the next sweep tries again
        return 0


def sweep() -> dict[str, int]:
    """Re-send due work that nobody is doing: lost broker messages, killed workers, outages."""
    from workers.inbound import ingest_event
    from workers.outbound import deliver

    inbound_grace = _inbound_grace(ingest_event.queue_name)
    with session_scope(read_only=True) as session:
        events = inbound.due_raw_events(session=session, grace=inbound_grace)
        due = deliveries.due_deliveries(session=session, grace=SWEEP_GRACE_SECONDS)
    for raw_event_id in events:
        ingest_event.send(str(raw_event_id))
    for delivery_id in due:
        deliver.send(str(delivery_id))
    return {"raw_events": len(events), "deliveries": len(due)}


def purge_deleted_tickets() -> int:
    total = 0
    while True:
        with session_scope() as session:
            purged = ticket_service.purge_deleted(session=session)
        total += purged
        if purged == 0:
            return total


def _optional(module: str, function: str) -> Callable[[], object] | None:
    """Jobs whose services arrive with their feature (snooze, SLA, agent runs)."""
    try:
        target = getattr(importlib.import_module(module), function)
    except (ImportError, AttributeError):
        return None

    def job() -> object:
        with session_scope() as session:
            return target(session=session)

    return job


@dataclass
class Job:
    name: str
    every: float
    run: Callable[[], object]
    next_at: float = 0.0


def default_jobs() -> list[Job]:
    jobs = [Job("sweep", 2.0, sweep), Job("purge_deleted_tickets", 3600.0, purge_deleted_tickets)]
    for name, module, function, every in (
        ("wake_snoozed_tickets", "services.snooze", "wake_snoozed_tickets", 30.0),
        ("notify_unread_replies", "services.widget", "notify_unread_replies", 60.0),
        ("fail_stale_runs", "services.conversations", "fail_stale_runs", 15.0),
        ("redispatch_queued_runs", "services.conversations", "redispatch_queued_runs", 30.0),
        ("sweep_edits", "services.edits", "redispatch_due_edits", 2.0),
    ):
        job = _optional(module, function)
        if job is not None:
            jobs.append(Job(name, every, job))
    from services.visitor_mail import send_visitor_emails

    jobs.append(Job("send_visitor_emails", 60.0, send_visitor_emails))
    try:  # starts one thread per mailbox and returns at once
        from services.imap_poll import poll_all_mailboxes

        jobs.append(Job("poll_imap_mailboxes", 30.0, poll_all_mailboxes))
    except ImportError:
        pass
    return jobs


class Scheduler:
    """Runs jobs on their intervals while it holds the leader lease."""

    LEASE_SECONDS = 10.0

    def __init__(self, jobs: list[Job] | None = None, *, tick: float = 0.5) -> None:
        self.jobs = jobs if jobs is not None else default_jobs()
        self.tick = tick
        self.identity = uuid.uuid4().hex
        self._stop = threading.Event()

    def is_leader(self) -> bool:
        """Hold (or renew) the `scheduler` lease in the database: one active instance per
        deployment, with or without Redis; another takes over LEASE_SECONDS after one dies."""
        from services import leases

        with session_scope() as session:
            return leases.acquire(session=session, name="scheduler", holder=self.identity, ttl=self.LEASE_SECONDS)

    def run_due(self) -> list[str]:
        ran = []
        current = time.monotonic()
        for job in self.jobs:
            if job.next_at <= current:
                job.next_at = current + job.every
                try:
                    job.run()
                    ran.append(job.name)
                except Exception:
                    log.exception("periodic job %s failed", job.name)
        return ran

    def run_forever(self) -> None:
        while not self._stop.is_set():
            try:
                if self.is_leader():
                    self.run_due()
            except Exception:
                log.exception("scheduler tick failed")
            self._stop.wait(self.tick)

    def start_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.run_forever, name="ticketwire-scheduler", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()
