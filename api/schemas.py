"""Request bodies (for validation and the OpenAPI docs) and the response shapes of the seed."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from models import Message, Person, User

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


class ReplyAttachmentIn(Body):
    """One file of a reply or note (JSON); multipart/form-data sends files as `attachments` parts."""

    filename: str
    content_type: str | None = None
    content_base64: str


class ReplyIn(Body):
    message: str = Field(max_length=100_000)
    is_private: bool = False
    rich_content: dict[str, Any] | list[Any] | None = None
    # At most 20 files, 10 MB each, 25 MB in all (services.attachments checks, naming `attachments`).
    attachments: list[ReplyAttachmentIn] | None = None


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
        # The UTC wall clock without astimezone(), which is slow for the zoneinfo tzinfo
        # psycopg attaches (this runs five times per ticket of every list page).
        offset = value.utcoffset()
        value = (value - offset if offset else value).replace(tzinfo=None)
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


def person_out(person: Person | Any | None, distinct_ids: list[str]) -> dict[str, Any] | None:
    if person is None:
        return None
    return _person(person.id, person.name, person.email, person.properties, person.is_identified,
                   person.created_at, distinct_ids)


def _person(person_id: Any, name: str | None, email: str | None, properties: dict[str, Any] | None,
            is_identified: Any, created_at: datetime, distinct_ids: list[str]) -> dict[str, Any]:
    shown = dict(properties or {})
    if email and "email" not in shown:
        shown["email"] = email
    if name and "name" not in shown:
        shown["name"] = name
    return {
        "id": str(person_id),
        "name": name or email or (distinct_ids[0] if distinct_ids else None),
        "distinct_ids": distinct_ids,
        "properties": shown,
        "created_at": iso(created_at),
        "is_identified": bool(is_identified),
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


def ticket_rows_out(rows: list[Any]) -> list[dict[str, Any]]:
    """The seed's ticket objects from list rows (services.ticket_query.embedded_select: the
    ticket's columns plus the embedded assignee with its user or role, the person with its
    distinct ids, and the tag names), without a query per embedded object.

    On the hot path of every list page: the row's field names are read once per page and each
    row is zipped into a dict once."""
    if not rows:
        return []
    fields = rows[0]._fields
    out = []
    for row in rows:
        c = dict(zip(fields, row, strict=False))  # a row and its field names: same length
        item: dict[str, Any] = {"id": str(c["id"])}
        for name in PLAIN_FIELDS:
            item[name] = c[name]
        for name in TIME_FIELDS:
            value = c[name]
            item[name] = None if value is None else iso(value)
        item["ai_resolved"] = bool(c["ai_resolved"])
        if c["assignee_user_id"] is not None:
            user = None
            if c["embed_user_uuid"] is not None:
                user_uuid = str(c["embed_user_uuid"])
                user = {"id": c["assignee_user_id"], "uuid": user_uuid, "distinct_id": user_uuid,
                        "first_name": c["embed_user_first_name"], "last_name": c["embed_user_last_name"],
                        "email": c["embed_user_email"]}
            item["assignee"] = {"id": c["assignee_user_id"], "type": "user", "user": user, "role": None}
        elif c["assignee_role_id"] is not None:
            role_id = str(c["assignee_role_id"])
            role = None if c["embed_role_name"] is None else {"id": role_id, "name": c["embed_role_name"]}
            item["assignee"] = {"id": role_id, "type": "role", "user": None, "role": role}
        else:
            item["assignee"] = None
        if c["embed_person_id"] is None:
            item["person"] = None
        else:
            item["person"] = _person(c["embed_person_id"], c["embed_person_name"], c["embed_person_email"],
                                     c["embed_person_properties"], c["embed_person_is_identified"],
                                     c["embed_person_created_at"], sorted(c["embed_person_distinct_ids"] or ()))
        item["tags"] = sorted(c["embed_tags"] or ())
        out.append(item)
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
        # What the channel said beyond the text (GitHub: is_pull_request, html_url).
        "channel_metadata": message.channel_metadata or {},
        "version": message.version,
        "created_at": iso(message.created_at),
        "updated_at": iso(message.updated_at),
    }
