"""Ticket list: a narrow "probe" index from ticket id to the columns every list query checks.

A tag or text-search filter that matches a few thousand tickets is answered from its own
index (ticket_tags, FTS5, pg_trgm): the candidate ids are looked up in tickets, checked
against the project, the soft delete and the status, and sorted by the list order. Reading
the wide ticket row for each candidate cost ~3 µs (SQLite) to ~4 µs (PostgreSQL heap fetch);
with this index the check and the sort are index-only (SQLite keeps the rowid in every index
entry, PostgreSQL answers it with an index-only scan) and only the page's rows are read whole
(services/ticket_query.py `_page_rows`). Measured by bench/list_tickets.py at 1M tickets.

Mirror in models/ticket.py `Ticket.__table_args__`:
    Index("ix_tickets_id_probe", "id", "project_id", "deleted_at", "status", "updated_at",
          "ticket_number")

Revision ID: 0003_list_indexes
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003_list_indexes"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_tickets_id_probe", "tickets", ["id", "project_id", "deleted_at", "status", "updated_at", "ticket_number"]
    )


def downgrade() -> None:
    op.drop_index("ix_tickets_id_probe", table_name="tickets")
