"""The team's unread total per project, kept by database triggers (migration 0007_unread_counters)."""

from __future__ import annotations

from sqlalchemy import Integer
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base


class UnreadCounter(Base):
    """Sum of `tickets.unread_team_count` over a project's live, unresolved tickets, split into
    a few slots per project: `GET tickets/unread_count` sums at most 128 rows instead of every
    unread ticket (~30,000 index entries at 1M tickets).

    Written only by the triggers on `tickets` (every INSERT, DELETE and UPDATE of
    unread_team_count, status, deleted_at or project_id, from any code path or raw SQL), never
    by the ORM. SQLite has one writer, so it uses slot 0; on PostgreSQL each transaction adds
    its delta to its backend's slot, `pg_backend_pid() % 128` (migration 0010), so concurrent
    writers of one project rarely wait on the same row. No foreign key to projects: a project's cascade delete fires the ticket triggers
    while the project row goes, and a counter row left behind holds 0."""

    __tablename__ = "unread_counters"

    project_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    slot: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    total: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
