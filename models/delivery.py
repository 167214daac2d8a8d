"""Outbound deliveries and inbound raw events: the durable halves of the pipeline."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, created_at_col, updated_at_col, uuid_pk


class Delivery(Base):
    """One public reply on its way to the ticket's channel: pending → sending → sent | failed."""

    __tablename__ = "deliveries"

    id: Mapped[uuid.UUID] = uuid_pk()
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    ticket_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    message_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), unique=True)
    channel: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(nullable=True)
    leased_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    # Set while an attempt is in flight: if the lease expires with this still set, the
    # outcome is unknown and the adapter's find_delivered runs before any re-send.
    outcome_unknown: Mapped[bool] = mapped_column(Boolean, default=False)
    last_error_code: Mapped[str | None] = mapped_column(String(100), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    external_id: Mapped[str | None] = mapped_column(String(300), nullable=True)
    campaign_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = created_at_col()
    updated_at: Mapped[datetime] = updated_at_col()
    sent_at: Mapped[datetime | None] = mapped_column(nullable=True)

    __table_args__ = (Index("ix_deliveries_due", "status", "next_attempt_at"),)


class RawEvent(Base):
    """An inbound webhook or mail exactly as received, stored before it is acknowledged."""

    __tablename__ = "raw_events"

    id: Mapped[uuid.UUID] = uuid_pk()
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(20))
    event_id: Mapped[str] = mapped_column(String(500))
    headers: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    # pending → processing → processed | ignored | failed
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    received_at: Mapped[datetime] = created_at_col()
    processed_at: Mapped[datetime | None] = mapped_column(nullable=True)

    __table_args__ = (
        UniqueConstraint("project_id", "channel", "event_id"),
        Index("ix_raw_events_due", "status", "next_attempt_at"),
    )


class Integration(Base):
    """A project's settings for one channel. Secrets are encrypted in `secrets_enc`."""

    __tablename__ = "integrations"
    __table_args__ = (UniqueConstraint("project_id", "channel"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(20))
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    secrets_enc: Mapped[str | None] = mapped_column(Text, nullable=True)
    health: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = created_at_col()
    updated_at: Mapped[datetime] = updated_at_col()


class EmailConfig(Base):
    __tablename__ = "email_configs"

    id: Mapped[uuid.UUID] = uuid_pk()
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    from_email: Mapped[str] = mapped_column(String(254))
    from_name: Mapped[str] = mapped_column(String(200), default="")
    smtp_host: Mapped[str] = mapped_column(String(300))
    smtp_port: Mapped[int] = mapped_column(Integer, default=587)
    smtp_security: Mapped[str] = mapped_column(String(20), default="starttls")
    smtp_username: Mapped[str | None] = mapped_column(String(300), nullable=True)
    imap_host: Mapped[str | None] = mapped_column(String(300), nullable=True)
    imap_port: Mapped[int | None] = mapped_column(Integer, nullable=True)
    imap_security: Mapped[str | None] = mapped_column(String(20), nullable=True)
    imap_username: Mapped[str | None] = mapped_column(String(300), nullable=True)
    imap_folder: Mapped[str | None] = mapped_column(String(300), nullable=True)
    imap_uidvalidity: Mapped[int | None] = mapped_column(Integer, nullable=True)
    imap_last_uid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    inbound_address: Mapped[str] = mapped_column(String(254), unique=True)
    # smtp_password, imap_password, inbound_secret (Fernet under TICKETWIRE_SECRET_KEY).
    secrets_enc: Mapped[str | None] = mapped_column(Text, nullable=True)
    send_rate_per_minute: Mapped[int] = mapped_column(Integer, default=30)
    health: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = created_at_col()
    updated_at: Mapped[datetime] = updated_at_col()


class SavedView(Base):
    __tablename__ = "saved_views"

    id: Mapped[uuid.UUID] = uuid_pk()
    short_id: Mapped[str] = mapped_column(String(20), unique=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    filters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    shared: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = created_at_col()
    updated_at: Mapped[datetime] = updated_at_col()
