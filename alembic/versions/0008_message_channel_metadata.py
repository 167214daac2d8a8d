"""What the channel said about a message beyond its text (a GitHub comment's pull request
marking and URL, its author's association).

Revision ID: 0008_message_channel_metadata
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0008_message_channel_metadata"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("channel_metadata", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("channel_metadata")
