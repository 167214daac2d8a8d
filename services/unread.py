"""The team's unread count: cached 30 s per project, invalidated after any commit that changes it.

The count itself is kept by database triggers in `unread_counters` (models/unread.py), so a
cache miss reads a few rows rather than summing every unread ticket.

Invalidation bumps a per-project generation number (one Redis round trip for any number of
projects), and a cached value is only used while its generation is current. Deleting the
cached value instead would not do: a reader that computed the sum just before a change
committed could store the old sum after the change deleted the key, and serve it for 30 s.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.cache import get_cache
from core.db import after_outer_commit, after_outer_rollback
from models import UnreadCounter

TTL_SECONDS = 30
GENERATION_TTL_SECONDS = 7 * 24 * 3600


def _key(project_id: int) -> str:
    return f"unread:{project_id}"


def _generation_key(project_id: int) -> str:
    return f"unread-gen:{project_id}"


def mark_unread_dirty(session: Session, project_id: int) -> None:
    """Call whenever a change alters unread_team_count, status or visibility of a ticket."""
    session.info.setdefault("unread_dirty", set()).add(project_id)


def invalidate(project_ids: set[int] | list[int]) -> None:
    """Forget the cached counts of these projects (done for you after a commit that marked them)."""
    get_cache().incr_many([(_generation_key(p), GENERATION_TTL_SECONDS) for p in sorted(project_ids)])


@after_outer_commit
def _invalidate_after_commit(session: Session) -> None:
    dirty = session.info.pop("unread_dirty", None)
    if dirty:
        invalidate(dirty)


@after_outer_rollback
def _forget_after_rollback(session: Session) -> None:
    session.info.pop("unread_dirty", None)


def unread_count(*, session: Session, project_id: int) -> int:
    """Sum of unread_team_count over tickets that are not resolved and not deleted."""
    cache = get_cache()
    generation = int(cache.get(_generation_key(project_id)) or 0)
    cached: Any = cache.get(_key(project_id))
    if isinstance(cached, dict) and cached.get("generation") == generation:
        return int(cached["count"])
    # The triggers of migration 0007_unread_counters keep the sum: a few rows, however many
    # tickets are unread.
    total = int(
        session.scalar(
            select(func.coalesce(func.sum(UnreadCounter.total), 0)).where(UnreadCounter.project_id == project_id)
        )
        or 0
    )
    cache.set(_key(project_id), {"generation": generation, "count": total}, TTL_SECONDS)
    return total
