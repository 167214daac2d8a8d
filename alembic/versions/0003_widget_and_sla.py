"""Widget visitors (session links, restore tokens, email outbox) and SLA policies.

Revision ID: 0003_widget
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0003_widget"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "widget_session_links",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("widget_session_id", sa.String(length=200), nullable=False),
        sa.Column("identity_distinct_id", sa.String(length=400), nullable=False),
        sa.Column("via", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], name="fk_widget_session_links_project_id_projects",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("project_id", "widget_session_id", name="pk_widget_session_links"),
    )
    op.create_index("ix_widget_session_links_identity", "widget_session_links", ["project_id", "identity_distinct_id"])

    op.create_table(
        "widget_restore_tokens",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("recipient_email", sa.String(length=254), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("consumed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("consumed_by_widget_session_id", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], name="fk_widget_restore_tokens_project_id_projects",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_widget_restore_tokens"),
        sa.UniqueConstraint("token_hash", name="uq_widget_restore_tokens_token_hash"),
    )
    op.create_index("ix_widget_restore_tokens_email", "widget_restore_tokens", ["project_id", "recipient_email"])

    op.create_table(
        "widget_notifications",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Uuid(), nullable=True),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("dedupe_key", sa.String(length=100), nullable=False),
        sa.Column("recipient_email", sa.String(length=254), nullable=False),
        sa.Column("payload_enc", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], name="fk_widget_notifications_project_id_projects",
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], name="fk_widget_notifications_ticket_id_tickets",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_widget_notifications"),
        sa.UniqueConstraint("kind", "dedupe_key", name="uq_widget_notifications_kind_dedupe_key"),
    )
    op.create_index("ix_widget_notifications_pending", "widget_notifications", ["sent_at", "created_at"])
    op.create_index("ix_widget_notifications_ticket", "widget_notifications", ["ticket_id"])

    op.create_table(
        "sla_policies",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("targets", sa.JSON(), nullable=False),
        sa.Column("business_hours", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], name="fk_sla_policies_project_id_projects",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_sla_policies"),
        sa.UniqueConstraint("project_id", name="uq_sla_policies_project_id"),
    )


def downgrade() -> None:
    op.drop_table("sla_policies")
    op.drop_index("ix_widget_notifications_ticket", table_name="widget_notifications")
    op.drop_index("ix_widget_notifications_pending", table_name="widget_notifications")
    op.drop_table("widget_notifications")
    op.drop_index("ix_widget_restore_tokens_email", table_name="widget_restore_tokens")
    op.drop_table("widget_restore_tokens")
    op.drop_index("ix_widget_session_links_identity", table_name="widget_session_links")
    op.drop_table("widget_session_links")
