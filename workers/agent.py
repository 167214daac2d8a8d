"""Agent actors: execute a conversation run, and triage/auto-answer a new ticket.

Thin on purpose: the services own the work and write its outcome to the database (a run's
status, events and messages; a ticket's ai_triage and answer). No retries: a failed run is
recorded as failed, and a run whose worker died is failed by the sweeper
(`services.conversations.fail_stale_runs`). The broker is set up by workers/broker.py.
"""

from __future__ import annotations

import dramatiq

from services import ai_tickets, conversations


@dramatiq.actor(queue_name="agent", max_retries=0, time_limit=30 * 60 * 1000)
def run_agent(run_id: str) -> None:
    """Execute one conversation run (dispatch kind "run")."""
    conversations.execute_run(run_id)


# Behind ingest in a worker's queue of prefetched messages (a higher number is a lower
# priority): under a burst of webhooks, tickets appear first and their triage follows.
TRIAGE_PRIORITY = 50


@dramatiq.actor(queue_name="agent", max_retries=0, time_limit=10 * 60 * 1000, priority=TRIAGE_PRIORITY)
def process_ticket_ai(ticket_id: str) -> None:
    """Triage a new ticket and, when the project enables it, answer it (dispatch kind "ai_ticket")."""
    ai_tickets.process_new_ticket(ticket_id=ticket_id)
