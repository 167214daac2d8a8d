"""After-commit hand-off from services to the workers, without services importing Dramatiq.

Services call `after_commit(session, kind, id)`; once the transaction commits, the installed
dispatcher (the workers module installs one that calls `actor.send`) is told. If no dispatcher
is installed, or the broker is down, nothing is lost: the sweeper finds due rows in the
database and sends them again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy.orm import Session

from core.db import after_outer_commit, after_outer_rollback

log = logging.getLogger(__name__)

Dispatcher = Callable[[str, str], None]
_dispatcher: Dispatcher | None = None


def install_dispatcher(dispatcher: Dispatcher | None) -> None:
    global _dispatcher
    _dispatcher = dispatcher


def after_commit(session: Session, kind: str, object_id: object) -> None:
    """Queue `(kind, id)` to be dispatched once `session` commits. kinds: deliver, ingest, run."""
    session.info.setdefault("dispatch", []).append((kind, str(object_id)))


@after_outer_commit
def _dispatch_after_commit(session: Session) -> None:
    pending = session.info.pop("dispatch", None)
    for kind, object_id in pending or ():
        dispatch_now(kind, object_id)


def dispatch_now(kind: str, object_id: object) -> None:
    """Tell the workers about a row that is already committed (a plain-connection write)."""
    if _dispatcher is None:
        return
    try:
        _dispatcher(kind, str(object_id))
    except Exception:  # broker down: the sweeper re-sends from the database
        log.warning("dispatch of %s %s failed; the sweeper will pick it up", kind, object_id, exc_info=True)


@after_outer_rollback
def _forget_after_rollback(session: Session) -> None:
    session.info.pop("dispatch", None)
