"""Every actor, imported in one place, and the dispatcher services use after commit.

`dramatiq workers.actors` / `ticketwire worker` load this module.
"""

from __future__ import annotations

import importlib

from services.dispatch import install_dispatcher
from workers.broker import broker
from workers.inbound import ingest_event
from workers.outbound import deliver

ACTORS = {"ingest": ingest_event, "deliver": deliver}

# Actors that arrive with their feature (agent runs, channel edits).
for kind, module, name in (
    ("run", "workers.agent", "run_agent"),
    ("ai_ticket", "workers.agent", "process_ticket_ai"),
    ("edit", "workers.edits", "edit_delivered_message"),
):
    try:
        ACTORS[kind] = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        pass


def dispatch(kind: str, object_id: str) -> None:
    actor = ACTORS.get(kind)
    if actor is not None:
        actor.send(object_id)


install_dispatcher(dispatch)

__all__ = ["ACTORS", "broker", "deliver", "dispatch", "ingest_event"]
