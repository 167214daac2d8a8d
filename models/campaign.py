"""Compose campaigns (one outbound email ticket per recipient) and email unsubscribes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, created_at_col, uuid_pk
from models.delivery import Delivery


class Campaign(Base):
    """One send to many: its tickets are found through `deliveries.campaign_id`."""

    __tablename__ = "campaigns"

    id: Mapped[uuid.UUID] = uuid_pk()
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    email_config_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("email_configs.id", ondelete="SET NULL"), nullable=True
    )
    created_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    email_subject: Mapped[str] = mapped_column(String(998))
    # The markdown template with its {{field}} placeholders, as submitted.
    message: Mapped[str] = mapped_column(Text)
    # Rows submitted, tickets created, and what was left out (with the reason per row).
    recipients: Mapped[int] = mapped_column(Integer, default=0)
    queued: Mapped[int] = mapped_column(Integer, default=0)
    invalid: Mapped[list[Any]] = mapped_column(JSON, default=list)
    skipped: Mapped[list[Any]] = mapped_column(JSON, default=list)
    # sha256 of (author, config, subject, message, recipients): a double-submitted campaign
    # must not mail everybody twice.
    request_fingerprint: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = created_at_col()
    # Set by "cancel": the mails not yet sent were withdrawn (their tickets deleted).
    cancelled_at: Mapped[datetime | None] = mapped_column(nullable=True)

    __table_args__ = (
        Index("ix_campaigns_project_created", "project_id", "created_at"),
        Index("ix_campaigns_fingerprint", "project_id", "request_fingerprint"),
    )


class EmailUnsubscribe(Base):
    """An address that asked not to get campaign mail from this project (lower-cased)."""

    __tablename__ = "email_unsubscribes"

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    email: Mapped[str] = mapped_column(String(254), primary_key=True)
    # api | one_click (RFC 8058 List-Unsubscribe-Post) | link
    source: Mapped[str] = mapped_column(String(20), default="api")
    campaign_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = created_at_col()


# Campaign progress counts a campaign's deliveries by status: index them (declared here, with
# the feature that needs it; the column itself belongs to the deliveries table).
Index("ix_deliveries_campaign_status", Delivery.__table__.c.campaign_id, Delivery.__table__.c.status)
