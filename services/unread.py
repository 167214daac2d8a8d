"""The team's unread count: cached 30 s per project, invalidated after any commit that changes it."""

from __future__ import annotations

from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from core.cache import get_cache
from models import Ticket

TTL_SECONDS = 30


def _key(project_id: int) -> str:
    return f"unread:{project_id}"


def mark_unread_dirty(session: Session, project_id: int) -> None:
    """Call whenever a change alters unread_team_count, status or visibility of a ticket."""
    session.info.setdefault("unread_dirty", set()).add(project_id)


@event.listens_for(Session, "after_commit")
def _invalidate_after_commit(session: Session) -> None:
    dirty = session.info.pop("unread_dirty", None)
    if dirty:
        get_cache().delete(*(_key(p) for p in dirty))


@event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session: Session) -> None:
    session.info.pop("unread_dirty", None)


def unread_count(*, session: Session, project_id: int) -> int:
    """Sum of unread_team_count over tickets that are not resolved and not deleted."""
    cache = get_cache()
    cached = cache.get(_key(project_id))
    if cached is not None:
        return int(cached)
    total = session.scalar(
        select(func.coalesce(func.sum(Ticket.unread_team_count), 0)).where(
            Ticket.project_id == project_id,
            Ticket.unread_team_count > 0,
            Ticket.deleted_at.is_(None),
            Ticket.status != "resolved",
        )
    )
    cache.set(_key(project_id), int(total or 0), TTL_SECONDS)
    return int(total or 0)
