"""Tickets: numbering, lookup, triage updates, soft delete and purge, tags and counters."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from core.clock import as_utc, now
from models import Message, Project, Role, Tag, Ticket, TicketTag, User
from models.ticket import PRIORITIES, TICKET_STATUSES
from services.accounts import user_project_ids
from services.errors import NotFoundError, ValidationError
from services.unread import mark_unread_dirty

PURGE_AFTER = timedelta(days=14)
# Integer columns are 32-bit on PostgreSQL: a larger id cannot exist (and would not bind).
MAX_INT = 2**31 - 1
MAX_TAGS_PER_REQUEST = 100
MAX_TAG_LENGTH = 255


_NUMBER_STATEMENT = (
    update(Project.__table__).where(Project.__table__.c.id == bindparam("project_id"))
    .values(ticket_seq=Project.__table__.c.ticket_seq + 1).returning(Project.__table__.c.ticket_seq)
)


def next_ticket_number(*, session: Session, project_id: int) -> int:
    """Hand out the project's next ticket number, inside the caller's transaction.

    One atomic UPDATE … RETURNING on the project row: PostgreSQL's row lock and SQLite's
    single writer both serialise concurrent creates, and a number is never reused because
    the counter only grows (deleting a ticket does not lower it). The row stays locked until
    the caller commits, so numbers are gap-free and follow commit order.
    """
    return int(session.connection().execute(_NUMBER_STATEMENT, {"project_id": project_id}).scalar_one())


def _number_in_own_transaction(*, session: Session, project_id: int) -> tuple[int, datetime] | None:
    """The next number and its creation stamp, taken outside the caller's transaction.

    For the ingest workers on PostgreSQL: holding the project row until the whole ticket,
    message and raw event were written made every concurrent ingest wait for the one before
    it. A short transaction of its own (BEGIN, UPDATE, COMMIT) still held the row across two
    round trips and the Python in between: with eight worker threads to a process, a thread
    often waited for the GIL before it could send COMMIT, and the next ingests queued on the
    row (sampled in pg_stat_activity during a drain: ~0.5 sessions waiting on it at any
    moment, at ~200 events/s). In autocommit the UPDATE is its own transaction and the row is
    locked for that one statement. The costs: a gap when the ticket's own transaction later
    rolls back, and a stamp taken just after the number, so two tickets ingested within the
    same few milliseconds may have created_at in the other order than their numbers. None on
    SQLite, whose single writer is the caller: a second writer would wait for it forever.
    """
    bind = session.get_bind()
    if bind.dialect.name != "postgresql":
        return None
    with bind.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        number = conn.execute(_NUMBER_STATEMENT, {"project_id": project_id}).scalar_one()
    return int(number), now()


def create_ticket(*, session: Session, project_id: int, own_number_transaction: bool = False, flush: bool = True,
                  **fields: Any) -> Ticket:
    """Insert a ticket with the next number. `fields` are Ticket columns.

    `own_number_transaction` (the ingest workers) takes the number in a transaction of its own
    on PostgreSQL instead of holding the project row until the caller commits. `flush=False`
    leaves the INSERT to the caller's next flush (ingest writes the ticket with its first
    message's counters in one INSERT).
    """
    numbered = _number_in_own_transaction(session=session, project_id=project_id) if own_number_transaction else None
    if numbered is not None:
        number, stamp = numbered
    else:
        number = next_ticket_number(session=session, project_id=project_id)
        # Stamped after taking the number (which waits for concurrent creators to commit), so
        # created_at follows ticket_number.
        stamp = now()
    ticket = Ticket(
        id=uuid.uuid4(),
        project_id=project_id,
        ticket_number=number,
        created_at=stamp,
        updated_at=stamp,
        message_count=0,
        unread_team_count=0,
        unread_customer_count=0,
        ai_resolved=False,
        **fields,
    )
    ticket.status = fields.get("status") or "new"
    session.add(ticket)
    if flush:
        session.flush()
    mark_unread_dirty(session, project_id)
    from services import sla

    sla.apply_on_new_ticket(session=session, ticket=ticket)
    return ticket


def get_ticket(*, session: Session, project_id: int, ref: str | uuid.UUID, for_update: bool = False) -> Ticket:
    """A ticket by UUID or ticket number; deleted tickets and other projects' are 404."""
    query = select(Ticket).where(Ticket.project_id == project_id, Ticket.deleted_at.is_(None))
    text = str(ref).strip()
    if re.fullmatch(r"#?[0-9]{1,18}", text):
        number = int(text.lstrip("#"))
        if number > MAX_INT:
            raise NotFoundError("Not found.")
        query = query.where(Ticket.ticket_number == number)
    else:
        try:
            query = query.where(Ticket.id == uuid.UUID(text))
        except ValueError:
            raise NotFoundError("Not found.") from None
    if for_update and session.bind is not None and session.bind.dialect.name == "postgresql":
        query = query.with_for_update()
    ticket = session.scalar(query)
    if ticket is None:
        raise NotFoundError("Not found.")
    return ticket


def mark_read_by_team(*, session: Session, ticket: Ticket) -> None:
    if ticket.unread_team_count:
        # A counter reset is not an edit: keep updated_at (the list's order) as it was.
        session.execute(
            update(Ticket).where(Ticket.id == ticket.id).values(unread_team_count=0, updated_at=ticket.updated_at)
        )
        ticket.unread_team_count = 0
        mark_unread_dirty(session, ticket.project_id)


def validate_enum(value: Any, allowed: Iterable[str], attr: str, *, nullable: bool = False) -> str | None:
    if value is None and nullable:
        return None
    if not isinstance(value, str) or value not in allowed:
        choices = ", ".join(allowed)
        raise ValidationError(f"'{value}' is not a valid choice for {attr} (one of: {choices}).", attr=attr)
    return value


def resolve_assignee(*, session: Session, project_id: int, value: Any) -> tuple[int | None, uuid.UUID | None]:
    """`{type: user, id: int}` or `{type: role, id: uuid}` or null → (user id, role id)."""
    if value is None:
        return None, None
    if not isinstance(value, dict) or value.get("type") not in ("user", "role") or "id" not in value:
        raise ValidationError("assignee must be null or {type: 'user'|'role', id}.", attr="assignee")
    if value["type"] == "user":
        try:
            user_id = int(value["id"])
        except (TypeError, ValueError):
            raise ValidationError("assignee user id must be an integer.", attr="assignee") from None
        user = session.get(User, user_id) if 0 < user_id <= MAX_INT else None
        if user is None or project_id not in user_project_ids(session=session, user=user):
            raise ValidationError("assignee user is not a member of this project.", attr="assignee")
        return user_id, None
    try:
        role_id = uuid.UUID(str(value["id"]))
    except ValueError:
        raise ValidationError("assignee role id must be a UUID.", attr="assignee") from None
    role = session.get(Role, role_id)
    if role is None or role.project_id != project_id:
        raise ValidationError("assignee role does not exist in this project.", attr="assignee")
    return None, role_id


def parse_timestamp(value: Any, attr: str) -> datetime | None:
    """An ISO 8601 string (or datetime) as an aware UTC datetime; naive input is taken as UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValidationError(f"{attr} must be an ISO 8601 timestamp or null.", attr=attr) from None
    if not isinstance(value, datetime):
        raise ValidationError(f"{attr} must be an ISO 8601 timestamp or null.", attr=attr)
    try:
        parsed = as_utc(value)
        # Both databases and every client must be able to hold it after a shift to any zone.
        if parsed is None or not (datetime(1900, 1, 1, tzinfo=UTC) <= parsed <= datetime(9000, 1, 1, tzinfo=UTC)):
            raise OverflowError
    except OverflowError:
        raise ValidationError(f"{attr} is out of range.", attr=attr) from None
    return parsed


UPDATABLE = {
    "status", "priority", "assignee", "anonymous_traits", "ai_resolved", "escalation_reason",
    "sla_due_at", "snoozed_until", "tags",
}


def update_ticket(*, session: Session, ticket: Ticket, changes: dict[str, Any]) -> Ticket:
    """Apply a PATCH. Snoozing moves the ticket to on_hold, un-snoozing to open; an explicit
    `status` in the same request wins."""
    if "status" in changes:
        validate_enum(changes["status"], TICKET_STATUSES, "status")
    if "priority" in changes:
        validate_enum(changes["priority"], PRIORITIES, "priority", nullable=True)
    if "ai_resolved" in changes and not isinstance(changes["ai_resolved"], bool):
        raise ValidationError("ai_resolved must be a boolean.", attr="ai_resolved")
    if "escalation_reason" in changes and changes["escalation_reason"] is not None and not isinstance(
        changes["escalation_reason"], str
    ):
        raise ValidationError("escalation_reason must be a string or null.", attr="escalation_reason")
    if "anonymous_traits" in changes and changes["anonymous_traits"] is not None and not isinstance(
        changes["anonymous_traits"], dict
    ):
        raise ValidationError("anonymous_traits must be an object or null.", attr="anonymous_traits")
    sla_due_at = parse_timestamp(changes.get("sla_due_at"), "sla_due_at") if "sla_due_at" in changes else None
    snoozed = parse_timestamp(changes.get("snoozed_until"), "snoozed_until") if "snoozed_until" in changes else None
    assignee = (
        resolve_assignee(session=session, project_id=ticket.project_id, value=changes["assignee"])
        if "assignee" in changes
        else None
    )
    tag_names = normalise_tags(changes["tags"], attr="tags") if "tags" in changes else None

    old_status = ticket.status
    if "snoozed_until" in changes:
        was_snoozed = ticket.snoozed_until is not None
        ticket.snoozed_until = snoozed
        if snoozed is not None and not was_snoozed:
            ticket.status = "on_hold"
        elif snoozed is None and was_snoozed:
            ticket.status = "open"
    if "status" in changes:
        ticket.status = changes["status"]
    if "priority" in changes:
        ticket.priority = changes["priority"]
    if assignee is not None:
        ticket.assignee_user_id, ticket.assignee_role_id = assignee
    for attr in ("anonymous_traits", "ai_resolved", "escalation_reason"):
        if attr in changes:
            setattr(ticket, attr, changes[attr])
    if "sla_due_at" in changes:
        ticket.sla_due_at = sla_due_at
    if tag_names is not None:
        set_tags(session=session, ticket=ticket, names=tag_names)
    ticket.updated_at = now()
    if ticket.status != old_status:
        mark_unread_dirty(session, ticket.project_id)
    session.flush()
    return ticket


def soft_delete(*, session: Session, ticket: Ticket) -> None:
    ticket.deleted_at = now()
    mark_unread_dirty(session, ticket.project_id)


def purge_deleted(*, session: Session, older_than: timedelta = PURGE_AFTER, batch: int = 500) -> int:
    """Hard-delete tickets soft-deleted more than `older_than` ago, with their messages."""
    cutoff = now() - older_than
    ids = list(session.scalars(select(Ticket.id).where(Ticket.deleted_at < cutoff).limit(batch)))
    if not ids:
        return 0
    # Explicit deletes (not only ON DELETE CASCADE) so SQLite's FTS triggers see every row.
    from models import Delivery

    session.execute(delete(Delivery).where(Delivery.ticket_id.in_(ids)))
    session.execute(delete(Message).where(Message.ticket_id.in_(ids)))
    session.execute(delete(TicketTag).where(TicketTag.ticket_id.in_(ids)))
    session.execute(delete(Ticket).where(Ticket.id.in_(ids)))
    return len(ids)


# -- tags ----------------------------------------------------------------------------------

def normalise_tags(value: Any, *, attr: str = "tags") -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValidationError("tags must be a list of strings.", attr=attr)
    if len(value) > MAX_TAGS_PER_REQUEST:
        raise ValidationError(f"at most {MAX_TAGS_PER_REQUEST} tags per request.", attr=attr)
    names: list[str] = []
    for raw in value:
        name = raw.strip().lower()
        if not name:
            continue
        if len(name) > MAX_TAG_LENGTH:
            raise ValidationError(f"tag names are at most {MAX_TAG_LENGTH} characters.", attr=attr)
        if name not in names:
            names.append(name)
    return names


def _tag_ids(*, session: Session, project_id: int, names: list[str]) -> dict[str, uuid.UUID]:
    """Ids of the project's tags called `names`, creating the missing ones.

    INSERT … ON CONFLICT DO NOTHING (both databases) so two requests adding the same new
    tag at once do not fail on the (project, name) unique constraint."""
    if not names:
        return {}
    query = select(Tag.name, Tag.id).where(Tag.project_id == project_id, Tag.name.in_(names))
    existing = dict(session.execute(query).tuples().all())
    missing = [name for name in names if name not in existing]
    if missing:
        dialect = session.get_bind().dialect.name
        insert_fn = postgresql_insert if dialect == "postgresql" else sqlite_insert
        session.execute(
            insert_fn(Tag)
            .values([{"id": uuid.uuid4(), "project_id": project_id, "name": name} for name in missing])
            .on_conflict_do_nothing(index_elements=["project_id", "name"])
        )
        existing = dict(session.execute(query).tuples().all())
    return existing


def tags_for(*, session: Session, ticket_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, list[str]]:
    ids = list(ticket_ids)
    result: dict[uuid.UUID, list[str]] = {i: [] for i in ids}
    if not ids:
        return result
    rows = session.execute(
        select(TicketTag.ticket_id, Tag.name).join(Tag, Tag.id == TicketTag.tag_id).where(TicketTag.ticket_id.in_(ids))
    )
    for ticket_id, name in rows:
        result[ticket_id].append(name)
    for names in result.values():
        names.sort()
    return result


def set_tags(*, session: Session, ticket: Ticket, names: list[str]) -> list[str]:
    wanted = _tag_ids(session=session, project_id=ticket.project_id, names=names)
    current = set(session.scalars(select(TicketTag.tag_id).where(TicketTag.ticket_id == ticket.id)))
    target = set(wanted.values())
    if current - target:
        session.execute(delete(TicketTag).where(TicketTag.ticket_id == ticket.id, TicketTag.tag_id.in_(current - target)))
    for tag_id in target - current:
        session.add(TicketTag(ticket_id=ticket.id, tag_id=tag_id))
    session.flush()
    return sorted(names)


def bulk_update_status(*, session: Session, project_id: int, ids: list[Any], status: Any) -> list[uuid.UUID]:
    """Set `status` on the given tickets of this project; others and no-ops are skipped."""
    validate_enum(status, TICKET_STATUSES, "status")
    if not isinstance(ids, list) or len(ids) > 500:
        raise ValidationError("ids must be a list of at most 500 ticket ids.", attr="ids")
    uuids = _parse_uuids(ids)
    if not uuids:
        return []
    changed = list(
        session.scalars(
            select(Ticket.id).where(
                Ticket.project_id == project_id,
                Ticket.id.in_(uuids),
                Ticket.deleted_at.is_(None),
                Ticket.status != status,
            )
        )
    )
    if changed:
        session.execute(update(Ticket).where(Ticket.id.in_(changed)).values(status=status, updated_at=now()))
        mark_unread_dirty(session, project_id)
    return changed


def _parse_uuids(values: list[Any]) -> list[uuid.UUID]:
    out: list[uuid.UUID] = []
    for v in values:
        try:
            out.append(uuid.UUID(str(v)))
        except ValueError:
            continue
    return out


def bulk_update_tags(
    *, session: Session, project_id: int, ids: list[Any], action: Any, tags: Any
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Add, remove or set tags on the given tickets of this project; others are skipped."""
    if action not in ("add", "remove", "set"):
        raise ValidationError("action must be one of add, remove, set.", attr="action")
    if not isinstance(ids, list) or len(ids) > 500:
        raise ValidationError("ids must be a list of at most 500 ticket ids.", attr="ids")
    names = normalise_tags(tags)
    query = select(Ticket).where(
        Ticket.project_id == project_id, Ticket.id.in_(_parse_uuids(ids)), Ticket.deleted_at.is_(None)
    )
    if session.get_bind().dialect.name == "postgresql":
        # Lock the tickets before their links, in id order: the triggers of
        # 0007_tag_order_index update a ticket's links whenever the ticket changes, so a
        # writer that took the links first could deadlock with one updating the ticket.
        query = query.order_by(Ticket.id).with_for_update()
    found = {t.id: t for t in session.scalars(query)}
    current = tags_for(session=session, ticket_ids=found)
    updated: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    seen: set[str] = set()
    for raw in ids:
        if str(raw) in seen:
            continue
        seen.add(str(raw))
        try:
            ticket = found.get(uuid.UUID(str(raw)))
        except ValueError:
            ticket = None
        if ticket is None:
            skipped.append({"id": raw, "reason": "not_found"})
            continue
        have = current[ticket.id]
        if action == "add":
            target = sorted(set(have) | set(names))
        elif action == "remove":
            target = sorted(set(have) - set(names))
        else:
            target = sorted(set(names))
        if target != sorted(have):
            set_tags(session=session, ticket=ticket, names=target)
            ticket.updated_at = now()
        current[ticket.id] = target
        updated.append({"id": str(ticket.id), "tags": target})
    return updated, skipped


# -- messages and counters -----------------------------------------------------------------

def record_public_message(*, ticket: Ticket, message: Message, from_customer: bool) -> None:
    """Keep the ticket's counters in step with a new public message (notes never count)."""
    if message.is_private:
        return
    ticket.message_count = (ticket.message_count or 0) + 1
    ticket.last_message_at = message.created_at
    ticket.last_message_text = (message.content or "")[:500]
    if from_customer:
        ticket.unread_team_count = (ticket.unread_team_count or 0) + 1
        if ticket.status in ("resolved", "pending"):
            ticket.status = "open"
    elif message.author_type in ("support", "AI"):
        ticket.unread_customer_count = (ticket.unread_customer_count or 0) + 1
    ticket.updated_at = now()


def list_messages(
    *, session: Session, ticket: Ticket, limit: int, offset: int, include_private: bool = True
) -> tuple[int, list[Message]]:
    from sqlalchemy import func

    query = select(Message).where(Message.ticket_id == ticket.id, Message.deleted_at.is_(None))
    if not include_private:
        query = query.where(Message.is_private.is_(False))
    count = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(Message.created_at, Message.id).limit(limit).offset(offset)).all()
    return int(count), list(rows)
