"""Request bodies (for validation and the OpenAPI docs) and the response shapes of the seed."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

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

    @field_validator("*", mode="before")
    @classmethod
    def _no_nul_characters(cls, value: Any) -> Any:
        # PostgreSQL text cannot hold U+0000; refuse it on both databases, naming the field.
        items = value if isinstance(value, list) else [value]
        if any(isinstance(item, str) and "\x00" in item for item in items):
            raise ValueError("NUL characters are not allowed.")
        return value


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


# The ticket columns the API shows as they are, and those it shows as ISO timestamps.
PLAIN_FIELDS = (
    "ticket_number", "channel_source", "channel_detail", "distinct_id", "status", "priority",
    "anonymous_traits", "escalation_reason", "ai_triage", "message_count", "last_message_text",
    "unread_team_count", "unread_customer_count", "session_id", "session_context", "slack_channel_id",
    "slack_thread_ts", "slack_team_id", "email_subject", "email_from", "email_to", "cc_participants",
    "github_repo", "github_issue_number",
)
TIME_FIELDS = ("created_at", "updated_at", "last_message_at", "sla_due_at", "snoozed_until")


def _columns(ticket: Ticket | Any) -> dict[str, Any]:
    """A ticket's columns by name: one C-level zip for a row (a list page holds rows), getattr
    for an ORM object."""
    fields = getattr(ticket, "_fields", None)
    if fields is not None:
        return dict(zip(fields, ticket, strict=True))
    return {name: getattr(ticket, name) for name in ("id", "ai_resolved", *PLAIN_FIELDS, *TIME_FIELDS)}


def ticket_out(
    ticket: Ticket | Any,
    *,
    tags: list[str],
    person: tuple[Any, list[str]] | None,
    users: dict[int, User],
    roles: dict[uuid.UUID, Role],
) -> dict[str, Any]:
    """The seed's ticket object. `ticket` is a Ticket or a row with the same column names."""
    columns = _columns(ticket)
    out: dict[str, Any] = {"id": str(columns["id"])}
    for name in PLAIN_FIELDS:
        out[name] = columns[name]
    for name in TIME_FIELDS:
        out[name] = iso(columns[name])
    out["ai_resolved"] = bool(columns["ai_resolved"])
    out["assignee"] = assignee_out(ticket, users, roles)
    out["person"] = person_out(*person) if person else None
    out["tags"] = tags
    return out


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
