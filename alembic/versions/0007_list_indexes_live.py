"""The list's filter indexes end in deleted_at (and the sort tie-break), so a page's "not
deleted" check and the bounded count read the index alone.

Every list query asks for `deleted_at IS NULL`. With deleted_at outside the index, each match
cost a read of the (wide) ticket row: the count of a filter (exact up to COUNT_CAP = 2,000
matches) read 2,000 rows, 2–3 ms on SQLite at 1M tickets against 0.1 ms from the index alone
(bench/list_tickets.py). Appending ticket_number too lets a page in `-updated_at` order come
out of the index without sorting ties.

Also a partial index for the widget's unread-reply notifier (services.widget
`notify_unread_replies`, run every minute by the scheduler, inside the web process in the
embedded mode): it looks for tickets whose visitor has unread team replies, and without an index
read every widget ticket, ~280 ms of CPU at 1M tickets, a stall felt by requests running then.

Mirror in models/ticket.py `Ticket.__table_args__`.

Revision ID: 0007_list_indexes_live
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0007_list_indexes_live"
down_revision = "0002"
branch_labels = None
depends_on = None

BEFORE = {
    "ix_tickets_list_updated": ["project_id", "updated_at", "ticket_number"],
    "ix_tickets_list_created": ["project_id", "created_at"],
    "ix_tickets_status_updated": ["project_id", "status", "updated_at"],
    "ix_tickets_assignee_user": ["project_id", "assignee_user_id", "status", "updated_at"],
    "ix_tickets_assignee_role": ["project_id", "assignee_role_id", "updated_at"],
    "ix_tickets_channel": ["project_id", "channel_source", "updated_at"],
    "ix_tickets_sla": ["project_id", "sla_due_at"],
}
AFTER = {
    "ix_tickets_list_updated": ["project_id", "updated_at", "ticket_number", "deleted_at"],
    "ix_tickets_list_created": ["project_id", "created_at", "ticket_number", "deleted_at"],
    "ix_tickets_status_updated": ["project_id", "status", "updated_at", "ticket_number", "deleted_at"],
    "ix_tickets_assignee_user": ["project_id", "assignee_user_id", "status", "updated_at", "ticket_number", "deleted_at"],
    "ix_tickets_assignee_role": ["project_id", "assignee_role_id", "updated_at", "ticket_number", "deleted_at"],
    "ix_tickets_channel": ["project_id", "channel_source", "updated_at", "ticket_number", "deleted_at"],
    "ix_tickets_sla": ["project_id", "sla_due_at", "deleted_at"],
}


def _rebuild(columns: dict[str, list[str]]) -> None:
    for name, cols in columns.items():
        op.drop_index(name, table_name="tickets")
        op.create_index(name, "tickets", cols)
    analyze_sqlite_indexes(list(columns))


def analyze_sqlite_indexes(names: list[str]) -> None:
    """SQLite forgets a dropped index's statistics, and without them its planner may prefer
    another index: where the database has statistics (it was ANALYZEd), gather the new ones."""
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    if bind.exec_driver_sql("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'").first() is None:
        return
    for name in names:
        op.execute(f"ANALYZE {name}")


UNREAD_CUSTOMER = "unread_customer_count > 0 AND deleted_at IS NULL"


def upgrade() -> None:
    _rebuild(AFTER)
    op.create_index("ix_tickets_unread_customer", "tickets", ["last_message_at"],
                    sqlite_where=sa.text(UNREAD_CUSTOMER), postgresql_where=sa.text(UNREAD_CUSTOMER))
    analyze_sqlite_indexes(["ix_tickets_unread_customer"])


def downgrade() -> None:
    op.drop_index("ix_tickets_unread_customer", table_name="tickets")
    _rebuild(BEFORE)
