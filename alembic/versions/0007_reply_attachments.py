"""Files attached by the team to replies and internal notes (issue 5, outbound attachments).

Revision ID: 0007_reply_attachments
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0007_reply_attachments"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "message_attachments",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.Uuid(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("content_type", sa.String(length=255), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], name="fk_message_attachments_project_id_projects",
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["message_id"], ["messages.id"], name="fk_message_attachments_message_id_messages",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_message_attachments"),
        sa.UniqueConstraint("message_id", "position", name="uq_message_attachments_message_id_position"),
    )


def downgrade() -> None:
    op.drop_table("message_attachments")
