"""Compose campaigns, email unsubscribes, and an index on deliveries by campaign (issue 5).

Revision ID: 0005_campaigns
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0005_campaigns"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "campaigns",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("email_config_id", sa.Uuid(), nullable=True),
        sa.Column("created_by_user_id", sa.Integer(), nullable=True),
        sa.Column("email_subject", sa.String(length=998), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("recipients", sa.Integer(), nullable=False),
        sa.Column("queued", sa.Integer(), nullable=False),
        sa.Column("invalid", sa.JSON(), nullable=False),
        sa.Column("skipped", sa.JSON(), nullable=False),
        sa.Column("request_fingerprint", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], name="fk_campaigns_project_id_projects",
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["email_config_id"], ["email_configs.id"],
                                name="fk_campaigns_email_config_id_email_configs", ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["created_by_user_id"], ["users.id"], name="fk_campaigns_created_by_user_id_users",
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name="pk_campaigns"),
    )
    op.create_index("ix_campaigns_project_created", "campaigns", ["project_id", "created_at"])
    op.create_index("ix_campaigns_fingerprint", "campaigns", ["project_id", "request_fingerprint"])

    op.create_table(
        "email_unsubscribes",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("campaign_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], name="fk_email_unsubscribes_project_id_projects",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("project_id", "email", name="pk_email_unsubscribes"),
    )

    op.create_index("ix_deliveries_campaign_status", "deliveries", ["campaign_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_campaign_status", table_name="deliveries")
    op.drop_table("email_unsubscribes")
    op.drop_index("ix_campaigns_fingerprint", table_name="campaigns")
    op.drop_index("ix_campaigns_project_created", table_name="campaigns")
    op.drop_table("campaigns")
