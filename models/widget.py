"""Widget visitors (session links, restore tokens), the email outbox for visitors, SLA policies.

The widget's settings themselves live in `integrations` (channel "widget"): `settings` JSON
and the identity secret in `secrets_enc`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, created_at_col, updated_at_col, uuid_pk


class WidgetSessionLink(Base):
    """An anonymous widget session whose tickets a verified visitor also sees.

    Written when a request proves both (a valid identity hash and the session id), or when
    posthog-js reports `$create_alias` / `$identify` for the session's anonymous distinct id.
    A session belongs to at most one verified identity.
    """

    __tablename__ = "widget_session_links"

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    widget_session_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    identity_distinct_id: Mapped[str] = mapped_column(String(400))
    # "identity_request" (proved in one request) or "alias" (from the SDK's captured event).
    via: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = created_at_col()

    __table_args__ = (Index("ix_widget_session_links_identity", "project_id", "identity_distinct_id"),)


class WidgetRestoreToken(Base):
    """A one-time, email-keyed link that moves a visitor's tickets to another browser."""

    __tablename__ = "widget_restore_tokens"

    id: Mapped[uuid.UUID] = uuid_pk()
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    # sha256 of the token; the token itself only ever exists in the email.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    recipient_email: Mapped[str] = mapped_column(String(254))
    created_at: Mapped[datetime] = created_at_col()
    expires_at: Mapped[datetime] = mapped_column()
    consumed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    consumed_by_widget_session_id: Mapped[str | None] = mapped_column(String(200), nullable=True)

    __table_args__ = (Index("ix_widget_restore_tokens_email", "project_id", "recipient_email"),)


class WidgetNotification(Base):
    """An email owed to a widget visitor: an unread team reply, or a restore link.

    The email channel sends pending rows and sets `sent_at`. `(kind, dedupe_key)` is unique so
    two scheduler runs never queue the same notification twice.
    """

    __tablename__ = "widget_notifications"

    id: Mapped[uuid.UUID] = uuid_pk()
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    ticket_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), nullable=True)
    # "unread_reply" or "restore_link"
    kind: Mapped[str] = mapped_column(String(20))
    # unread_reply: the newest reply it covers (message id); restore_link: the token row id.
    dedupe_key: Mapped[str] = mapped_column(String(100))
    recipient_email: Mapped[str] = mapped_column(String(254))
    # What the email says (reply texts, restore URL), encrypted like channel secrets: it may
    # hold a live restore token.
    payload_enc: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = created_at_col()
    sent_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (
        UniqueConstraint("kind", "dedupe_key"),
        Index("ix_widget_notifications_pending", "sent_at", "created_at"),
        Index("ix_widget_notifications_ticket", "ticket_id"),
    )


class SlaPolicy(Base):
    """A project's response targets per priority, optionally counted in business hours.

    `targets`: {"critical"|"high"|"medium"|"low"|"default": {"first_response_minutes": int,
    "next_response_minutes": int|null}}; "default" covers tickets without a priority.
    `business_hours`: null (round the clock) or {"weekdays": [1..7, ISO, Monday = 1],
    "start": "HH:MM", "end": "HH:MM" (end ≤ start = the window runs past midnight),
    "timezone": IANA name, "holidays": ["YYYY-MM-DD", ...]}.
    """

    __tablename__ = "sla_policies"

    id: Mapped[uuid.UUID] = uuid_pk()
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), unique=True)
    targets: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    business_hours: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = created_at_col()
    updated_at: Mapped[datetime] = updated_at_col()
