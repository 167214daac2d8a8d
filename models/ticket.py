"""Persons, tickets, messages and tags."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, created_at_col, updated_at_col, uuid_pk

TICKET_STATUSES = ("new", "open", "pending", "on_hold", "resolved")
PRIORITIES = ("low", "medium", "high", "critical")
CHANNEL_SOURCES = ("email", "github", "slack", "teams", "widget")
CHANNEL_DETAILS = (
    "github_issue",
    "slack_bot_mention",
    "slack_channel_message",
    "slack_emoji_reaction",
    "teams_bot_mention",
    "teams_channel_message",
    "widget_api",
    "widget_embedded",
)
AUTHOR_TYPES = ("customer", "support", "AI", "system")
MESSAGE_TYPES = ("customer_message", "sent_reply", "internal_note", "ai_draft")
DELIVERY_STATUSES = ("pending", "sending", "sent", "failed")


class Person(Base):
    __tablename__ = "persons"

    id: Mapped[uuid.UUID] = uuid_pk()
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str | None] = mapped_column(String(300), nullable=True)
    email: Mapped[str | None] = mapped_column(String(254), nullable=True)
    properties: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    is_identified: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = created_at_col()

    __table_args__ = (Index("ix_persons_project_email", "project_id", "email"),)


class PersonDistinctId(Base):
    __tablename__ = "person_distinct_ids"

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    distinct_id: Mapped[str] = mapped_column(String(400), primary_key=True)
    person_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("persons.id", ondelete="CASCADE"), index=True)


class Ticket(Base):
    __tablename__ = "tickets"

    id: Mapped[uuid.UUID] = uuid_pk()
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    ticket_number: Mapped[int] = mapped_column(Integer)
    channel_source: Mapped[str] = mapped_column(String(20), default="widget")
    channel_detail: Mapped[str | None] = mapped_column(String(40), nullable=True)
    distinct_id: Mapped[str | None] = mapped_column(String(400), nullable=True)
    status: Mapped[str] = mapped_column(String(20), default="new")
    priority: Mapped[str | None] = mapped_column(String(20), nullable=True)
    assignee_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    assignee_role_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("roles.id", ondelete="SET NULL"), nullable=True
    )
    anonymous_traits: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    ai_resolved: Mapped[bool] = mapped_column(Boolean, default=False)
    escalation_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    ai_triage: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = created_at_col()
    updated_at: Mapped[datetime] = updated_at_col()
    message_count: Mapped[int] = mapped_column(Integer, default=0)
    last_message_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_message_text: Mapped[str | None] = mapped_column(String(500), nullable=True)
    unread_team_count: Mapped[int] = mapped_column(Integer, default=0)
    unread_customer_count: Mapped[int] = mapped_column(Integer, default=0)
    session_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    session_context: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    sla_due_at: Mapped[datetime | None] = mapped_column(nullable=True)
    snoozed_until: Mapped[datetime | None] = mapped_column(nullable=True)
    first_response_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # Who the customer is, denormalised for search and for the person embed of email tickets.
    customer_name: Mapped[str | None] = mapped_column(String(300), nullable=True)
    customer_email: Mapped[str | None] = mapped_column(String(254), nullable=True)
    # Per-channel thread coordinates. `thread_key` is the channel's identity of the thread
    # (unique per project and channel), the other columns are what outbound delivery needs.
    thread_key: Mapped[str | None] = mapped_column(String(500), nullable=True)
    widget_session_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    slack_channel_id: Mapped[str | None] = mapped_column(String(50), nullable=True)
    slack_thread_ts: Mapped[str | None] = mapped_column(String(50), nullable=True)
    slack_team_id: Mapped[str | None] = mapped_column(String(50), nullable=True)
    email_subject: Mapped[str | None] = mapped_column(String(998), nullable=True)
    email_from: Mapped[str | None] = mapped_column(String(254), nullable=True)
    email_to: Mapped[str | None] = mapped_column(String(998), nullable=True)
    email_config_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("email_configs.id", ondelete="SET NULL"), nullable=True
    )
    cc_participants: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    github_repo: Mapped[str | None] = mapped_column(String(300), nullable=True)
    github_issue_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    teams_service_url: Mapped[str | None] = mapped_column(String(500), nullable=True)
    teams_conversation_id: Mapped[str | None] = mapped_column(String(500), nullable=True)
    teams_channel_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    teams_team_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    teams_tenant_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    teams_root_activity_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    deleted_at: Mapped[datetime | None] = mapped_column(nullable=True)

    __table_args__ = (
        UniqueConstraint("project_id", "ticket_number"),
        UniqueConstraint("project_id", "channel_source", "thread_key"),
        # The list's default order and its common filters, each ending in the sort key so
        # a page is an index range scan, not a sort.
        # Each also ends in deleted_at (0007_list_indexes_live), so that checking "not deleted"
        # and counting the matches read the index alone, not a row per match.
        Index("ix_tickets_list_updated", "project_id", "updated_at", "ticket_number", "deleted_at"),
        Index("ix_tickets_list_created", "project_id", "created_at", "ticket_number", "deleted_at"),
        # PostgreSQL carries the assignee columns for the bounded count of status + assignee
        # filters (alembic/versions/0009_status_index_assignee.py).
        Index("ix_tickets_status_updated", "project_id", "status", "updated_at", "ticket_number", "deleted_at",
              postgresql_include=["assignee_user_id", "assignee_role_id"]),
        Index("ix_tickets_assignee_user", "project_id", "assignee_user_id", "status", "updated_at", "ticket_number",
              "deleted_at"),
        Index("ix_tickets_assignee_role", "project_id", "assignee_role_id", "updated_at", "ticket_number",
              "deleted_at"),
        Index("ix_tickets_channel", "project_id", "channel_source", "updated_at", "ticket_number", "deleted_at"),
        Index("ix_tickets_sla", "project_id", "sla_due_at", "deleted_at"),
        Index("ix_tickets_distinct_id", "project_id", "distinct_id"),
        Index("ix_tickets_customer_email", "project_id", "customer_email"),
        Index("ix_tickets_snoozed", "snoozed_until"),
        Index("ix_tickets_deleted", "deleted_at"),
        Index("ix_tickets_widget_session", "project_id", "widget_session_id"),
        # Probing candidate ids (tag and text search) without reading the wide row (0003).
        Index("ix_tickets_id_probe", "id", "project_id", "deleted_at", "status", "updated_at", "ticket_number"),
        # The widget's unread-reply notifier (services.widget.notify_unread_replies, every
        # minute) looks only at tickets whose visitor has unread replies (0007_list_indexes_live).
        Index(
            "ix_tickets_unread_customer",
            "last_message_at",
            sqlite_where=text("unread_customer_count > 0 AND deleted_at IS NULL"),
            postgresql_where=text("unread_customer_count > 0 AND deleted_at IS NULL"),
        ),
        # unread_count sums only tickets with unread messages: a partial index keeps it small.
        Index(
            "ix_tickets_unread",
            "project_id",
            "status",
            "unread_team_count",
            sqlite_where=text("unread_team_count > 0 AND deleted_at IS NULL"),
            postgresql_where=text("unread_team_count > 0 AND deleted_at IS NULL"),
        ),
    )


class Message(Base):
    __tablename__ = "messages"

    id: Mapped[uuid.UUID] = uuid_pk()
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    ticket_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"))
    message_type: Mapped[str] = mapped_column(String(20))
    author_type: Mapped[str] = mapped_column(String(20))
    author_name: Mapped[str | None] = mapped_column(String(300), nullable=True)
    author_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    author_external_id: Mapped[str | None] = mapped_column(String(300), nullable=True)
    is_private: Mapped[bool] = mapped_column(Boolean, default=False)
    content: Mapped[str] = mapped_column(Text, default="")
    rich_content: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    attachments: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    # What the channel said about the message beyond its text, from the adapter's
    # InboundMessage.metadata: a GitHub comment's `is_pull_request`, `html_url`, …
    channel_metadata: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # The channel's id of this message ("slack:C1:1712.0001", an email Message-ID…), unique
    # per project so a replayed webhook never stores a message twice.
    external_id: Mapped[str | None] = mapped_column(String(500), nullable=True)
    # sha256 of (author, ticket, content, privacy) for the 120 s reply replay rule.
    request_fingerprint: Mapped[str | None] = mapped_column(String(64), nullable=True)
    delivery_status: Mapped[str | None] = mapped_column(String(20), nullable=True)
    delivery_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = created_at_col()
    updated_at: Mapped[datetime] = updated_at_col()
    deleted_at: Mapped[datetime | None] = mapped_column(nullable=True)

    __table_args__ = (
        UniqueConstraint("project_id", "external_id"),
        Index("ix_messages_ticket_created", "ticket_id", "created_at"),
        Index("ix_messages_fingerprint", "ticket_id", "request_fingerprint"),
    )


class Tag(Base):
    __tablename__ = "tags"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))


class TicketTag(Base):
    __tablename__ = "ticket_tags"

    ticket_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), primary_key=True)
    tag_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True)
    # The ticket's list order and soft delete, copied here by triggers (0007_tag_order_index)
    # so that a tag filter pages and counts through one index in list order, without reading
    # the tickets. Never written by the ORM: a link is inserted without them and the trigger
    # fills them in from the ticket.
    updated_at: Mapped[datetime | None] = mapped_column(nullable=True)
    ticket_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    deleted_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # All of the ticket's tag ids, comma-separated (NULL when it has more than
    # TAG_SET_MAX), so that walking one tag's links checks the other tags of a
    # tags_all/tags_exclude filter from the index entry instead of a look-up per link.
    tag_set: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (
        Index("ix_ticket_tags_tag", "tag_id", "ticket_id"),
        Index("ix_ticket_tags_tag_order", "tag_id", "deleted_at", "updated_at", "ticket_number", "ticket_id", "tag_set"),
    )


# A ticket with more tags than this keeps tag_set NULL (index entries stay small; PostgreSQL
# caps a B-tree entry at ~2.7 kB); its tag terms fall back to EXISTS (0007_tag_order_index).
TAG_SET_MAX = 16
