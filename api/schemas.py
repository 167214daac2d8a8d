"""Request bodies (for validation and the OpenAPI docs) and the response shapes of the seed."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from models import Message, Person, Role, Ticket, User

Status = Literal["new", "open", "pending", "on_hold", "resolved"]
Priority = Literal["low", "medium", "high", "critical"]
ChannelSource = Literal["email", "github", "slack", "teams", "widget"]
ChannelDetail = Literal[
    "github_issue", "slack_bot_mention", "slack_channel_message", "slack_emoji_reaction",
    "teams_bot_mention", "teams_channel_message", "widget_api", "widget_embedded",
]


class Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Assignee(Body):
    type: Literal["user", "role"]
    id: int | str


class TicketUpdate(Body):
    status: Status | None = None
    priority: Priority | None = None
    assignee: Assignee | None = None
    anonymous_traits: dict[str, Any] | None = None
    ai_resolved: bool | None = None
    escalation_reason: str | None = Field(default=None, max_length=10000)
    sla_due_at: datetime | None = None
    snoozed_until: datetime | None = None
    tags: list[str] | None = None


class TicketCreate(TicketUpdate):
    channel_source: ChannelSource | None = None
    channel_detail: ChannelDetail | None = None
    distinct_id: str | None = Field(default=None, max_length=400)
    email_subject: str | None = Field(default=None, max_length=998)
    customer_name: str | None = Field(default=None, max_length=300)
    customer_email: str | None = Field(default=None, max_length=254)
    message: str | None = Field(default=None, max_length=10000)


class ReplyIn(Body):
    message: str = Field(max_length=100_000)
    is_private: bool = False
    rich_content: dict[str, Any] | list[Any] | None = None


class ComposeIn(Body):
    recipient_email: str | None = None
    recipient_distinct_id: str | None = None
    email_subject: str | None = None
    email_config_id: str | None = None
    message: str | None = None
    rich_content: dict[str, Any] | list[Any] | None = None


class BulkStatusIn(Body):
    ids: list[str] = Field(max_length=500)
    status: Status


class BulkTagsIn(Body):
    ids: list[str] = Field(max_length=500)
    action: Literal["add", "remove", "set"]
    tags: list[str]


def iso(value: datetime | None) -> str | None:
    """UTC ISO 8601 with a Z. SQLite hands back naive datetimes, which are UTC."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat() + "Z"


def user_out(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "uuid": str(user.uuid),
        "distinct_id": str(user.uuid),
        "first_name": user.first_name,
        "last_name": user.last_name,
        "email": user.email,
    }


def assignee_out(ticket: Ticket | Any, users: dict[int, User], roles: dict[uuid.UUID, Role]) -> dict[str, Any] | None:
    if ticket.assignee_user_id is not None:
        user = users.get(ticket.assignee_user_id)
        return {"id": ticket.assignee_user_id, "type": "user", "user": user_out(user) if user else None, "role": None}
    if ticket.assignee_role_id is not None:
        role = roles.get(ticket.assignee_role_id)
        return {
            "id": str(ticket.assignee_role_id),
            "type": "role",
            "user": None,
            "role": {"id": str(role.id), "name": role.name} if role else None,
        }
    return None


def person_out(person: Person | Any | None, distinct_ids: list[str]) -> dict[str, Any] | None:
    if person is None:
        return None
    properties = dict(person.properties or {})
    if person.email and "email" not in properties:
        properties["email"] = person.email
    if person.name and "name" not in properties:
        properties["name"] = person.name
    return {
        "id": str(person.id),
        "name": person.name or person.email or (distinct_ids[0] if distinct_ids else None),
        "distinct_ids": distinct_ids,
        "properties": properties,
        "created_at": iso(person.created_at),
        "is_identified": bool(person.is_identified),
    }


def ticket_out(
    ticket: Ticket | Any,
    *,
    tags: list[str],
    person: tuple[Any, list[str]] | None,
    users: dict[int, User],
    roles: dict[uuid.UUID, Role],
) -> dict[str, Any]:
    return {
        "id": str(ticket.id),
        "ticket_number": ticket.ticket_number,
        "channel_source": ticket.channel_source,
        "channel_detail": ticket.channel_detail,
        "distinct_id": ticket.distinct_id,
        "status": ticket.status,
        "priority": ticket.priority,
        "assignee": assignee_out(ticket, users, roles),
        "anonymous_traits": ticket.anonymous_traits,
        "ai_resolved": bool(ticket.ai_resolved),
        "escalation_reason": ticket.escalation_reason,
        "ai_triage": ticket.ai_triage,
        "created_at": iso(ticket.created_at),
        "updated_at": iso(ticket.updated_at),
        "message_count": ticket.message_count,
        "last_message_at": iso(ticket.last_message_at),
        "last_message_text": ticket.last_message_text,
        "unread_team_count": ticket.unread_team_count,
        "unread_customer_count": ticket.unread_customer_count,
        "session_id": ticket.session_id,
        "session_context": ticket.session_context,
        "sla_due_at": iso(ticket.sla_due_at),
        "snoozed_until": iso(ticket.snoozed_until),
        "slack_channel_id": ticket.slack_channel_id,
        "slack_thread_ts": ticket.slack_thread_ts,
        "slack_team_id": ticket.slack_team_id,
        "email_subject": ticket.email_subject,
        "email_from": ticket.email_from,
        "email_to": ticket.email_to,
        "cc_participants": ticket.cc_participants,
        "github_repo": ticket.github_repo,
        "github_issue_number": ticket.github_issue_number,
        "person": person_out(*person) if person else None,
        "tags": tags,
    }


def message_out(message: Message) -> dict[str, Any]:
    return {
        "id": str(message.id),
        "message_type": message.message_type,
        "content": message.content,
        "rich_content": message.rich_content,
        "author_type": message.author_type,
        "author_name": message.author_name,
        "is_private": bool(message.is_private),
        "delivery_status": message.delivery_status,
        "delivery_error": message.delivery_error,
        "attachments": message.attachments or [],
        "version": message.version,
        "created_at": iso(message.created_at),
        "updated_at": iso(message.updated_at),
    }
