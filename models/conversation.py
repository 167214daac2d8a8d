"""AI conversations and their runs, help articles, and the AI state of tickets.

A conversation (client-minted UUID) belongs to one user of one project. Each turn the agent
answers is a run of the conversation's agent task; a run's progress is a numbered list of
events (tokens, tool calls, status changes, end) that clients follow over SSE and resume by
event number. Follow-ups sent while a run is in progress wait in the queue (at most 2).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, created_at_col, updated_at_col, uuid_pk

CONVERSATION_STATUSES = ("idle", "in_progress", "canceling")
RUN_STATUSES = ("queued", "in_progress", "completed", "failed", "cancelled")
ACTIVE_RUN_STATUSES = ("queued", "in_progress")
AGENT_RUNTIMES = ("sandbox", "langgraph")
MESSAGE_ROLES = ("user", "assistant", "tool", "system")
EVENT_KINDS = ("status", "token", "tool_call", "tool_result", "end")


class Conversation(Base):
    __tablename__ = "conversations"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)  # minted by the client
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(20), default="idle")
    title: Mapped[str | None] = mapped_column(String(250), nullable=True)
    type: Mapped[str] = mapped_column(String(30), default="assistant")
    # "sandbox" conversations run on ticketwire's agent; "langgraph" ones (PostHog's legacy
    # runtime) are record-only here: append_message works, open answers 400.
    agent_runtime: Mapped[str] = mapped_column(String(20), default="sandbox")
    agent_mode: Mapped[str | None] = mapped_column(String(50), nullable=True)
    pending_approvals: Mapped[list[Any]] = mapped_column(JSON, default=list)
    # The conversation's agent task (agent_tasks.id); no foreign key, as the task points back.
    task_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = created_at_col()
    updated_at: Mapped[datetime] = updated_at_col()

    __table_args__ = (Index("ix_conversations_owner", "project_id", "user_id", "updated_at"),)


class AgentTask(Base):
    """The unit of work a conversation's runs belong to (PostHog's `task`)."""

    __tablename__ = "agent_tasks"

    id: Mapped[uuid.UUID] = uuid_pk()
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    conversation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(String(250), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    origin_product: Mapped[str] = mapped_column(String(50), default="conversations")
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    latest_run_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    archived: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = created_at_col()
    updated_at: Mapped[datetime] = updated_at_col()


class AgentRun(Base):
    """One agent turn: queued → in_progress → completed | failed | cancelled.

    A run with status queued and no `input` is a warm run: provisioned by an open without
    content, it waits for the first message. `heartbeat_at` is refreshed by the executing
    worker; a run in progress whose heartbeat stopped is failed by the sweeper.
    """

    __tablename__ = "agent_runs"

    id: Mapped[uuid.UUID] = uuid_pk()
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    conversation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    task_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agent_tasks.id", ondelete="CASCADE"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    status: Mapped[str] = mapped_column(String(20), default="queued")
    trace_id: Mapped[str] = mapped_column(String(200))
    input: Mapped[str | None] = mapped_column(Text, nullable=True)
    attached_context: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    # The scopes of the key that started the run: the tools the agent may use on its behalf.
    scopes: Mapped[list[Any]] = mapped_column(JSON, default=list)
    runtime: Mapped[str | None] = mapped_column(String(30), nullable=True)
    user_message_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    assistant_message_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    cancel_requested_at: Mapped[datetime | None] = mapped_column(nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_event_seq: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = created_at_col()
    started_at: Mapped[datetime | None] = mapped_column(nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(nullable=True)
    first_token_at: Mapped[datetime | None] = mapped_column(nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)

    __table_args__ = (
        Index("ix_agent_runs_conversation", "conversation_id", "created_at"),
        Index("ix_agent_runs_status", "status", "heartbeat_at"),
    )


class AgentRunEvent(Base):
    """One numbered event of a run (`seq` counts from 1 per run; it is the SSE event id)."""

    __tablename__ = "agent_run_events"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agent_runs.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(20))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = created_at_col()

    __table_args__ = (UniqueConstraint("run_id", "seq"),)


class ConversationMessage(Base):
    __tablename__ = "conversation_messages"

    id: Mapped[uuid.UUID] = uuid_pk()
    conversation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    run_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    role: Mapped[str] = mapped_column(String(20))
    content: Mapped[str] = mapped_column(Text, default="")
    # streaming while a run writes it; complete, cancelled or failed once it ends.
    status: Mapped[str] = mapped_column(String(20), default="complete")
    tool_calls: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    citations: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    attached_context: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    trace_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = created_at_col()
    updated_at: Mapped[datetime] = updated_at_col()

    __table_args__ = (Index("ix_conversation_messages_order", "conversation_id", "created_at"),)


class ConversationQueueItem(Base):
    """A follow-up message waiting for the in-progress run to end (oldest `position` first)."""

    __tablename__ = "conversation_queue_items"

    id: Mapped[uuid.UUID] = uuid_pk()
    conversation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    content: Mapped[str] = mapped_column(Text)
    trace_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    attached_context: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = created_at_col()
    updated_at: Mapped[datetime] = updated_at_col()

    __table_args__ = (Index("ix_conversation_queue_order", "conversation_id", "position"),)


class HelpArticle(Base):
    """A help-center article the built-in runtime answers from."""

    __tablename__ = "help_articles"

    id: Mapped[uuid.UUID] = uuid_pk()
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text, default="")
    url: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    tags: Mapped[list[Any]] = mapped_column(JSON, default=list)
    published: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = created_at_col()
    updated_at: Mapped[datetime] = updated_at_col()

    # Covers the knowledge fingerprint (count and latest update of published articles).
    __table_args__ = (Index("ix_help_articles_project", "project_id", "published", "updated_at"),)


class ProjectAISettings(Base):
    """Per project: whether new tickets are triaged and answered by the agent."""

    __tablename__ = "project_ai_settings"

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    auto_triage: Mapped[bool] = mapped_column(Boolean, default=True)
    auto_answer: Mapped[bool] = mapped_column(Boolean, default=False)
    auto_answer_channels: Mapped[list[Any]] = mapped_column(JSON, default=lambda: ["widget", "email"])
    answer_confidence: Mapped[float] = mapped_column(Float, default=0.6)
    updated_at: Mapped[datetime] = updated_at_col()


class TicketAIAnswer(Base):
    """An AI answer posted to a customer: proposed until the customer accepts it or it escalates."""

    __tablename__ = "ticket_ai_answers"

    id: Mapped[uuid.UUID] = uuid_pk()
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    ticket_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    message_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("messages.id", ondelete="SET NULL"), nullable=True)
    # proposed → accepted | escalated
    status: Mapped[str] = mapped_column(String(20), default="proposed")
    confidence: Mapped[float] = mapped_column(Float, default=0.0)
    citations: Mapped[list[Any]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = created_at_col()
    updated_at: Mapped[datetime] = updated_at_col()
