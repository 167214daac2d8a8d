"""The ticket list: every filter of GET tickets/, its ordering and a count that never scans far."""

from __future__ import annotations

import calendar
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, exists, func, literal_column, or_, select, text, union
from sqlalchemy.orm import Session

from core.clock import now
from models import Message, Tag, Ticket, TicketTag
from models.ticket import PRIORITIES, TICKET_STATUSES
from services.errors import ValidationError
from services.tickets import parse_timestamp

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_SEARCH_LENGTH = 200
# Counting a million matches costs as much as reading them. Up to this many the count is
# exact; past it the count is reported as this cap (and `next` still works from the page).
COUNT_CAP = 10_000

ORDERINGS = ("created_at", "updated_at", "ticket_number", "sla_due_at")
LIST_PARAMETERS = (
    "status", "priority", "assignee", "channel_source", "channel_detail", "distinct_ids", "emails",
    "date_from", "date_to", "sla", "tags", "tags_all", "tags_exclude", "search", "order_by", "snoozed",
)
RELATIVE_DATE = re.compile(r"^-?([0-9]{0,6})([hdwmyqHM])(Start|End)?$")
TICKET_NUMBER = re.compile(r"#?([0-9]{1,18})")


@dataclass(frozen=True)
class TicketPage:
    count: int
    tickets: list[Ticket]
    has_more: bool


def split_list(value: Any) -> list[str]:
    """A comma list or a JSON array, as PostHog's clients send either."""
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    raw = str(value).strip()
    if raw.startswith("["):
        try:
            parsed = json.loads(raw)
            if isinstance(parsed, list):
                return [str(v).strip() for v in parsed if str(v).strip()]
        except ValueError:
            pass
    return [part.strip() for part in raw.split(",") if part.strip()]


def _start_of(moment: datetime, unit: str) -> datetime:
    if unit == "M":
        return moment.replace(second=0, microsecond=0)
    if unit in ("h", "H"):
        return moment.replace(minute=0, second=0, microsecond=0)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if unit == "d":
        return day
    if unit == "w":
        return day - timedelta(days=day.weekday())
    if unit == "m":
        return day.replace(day=1)
    if unit == "q":
        return day.replace(month=(day.month - 1) // 3 * 3 + 1, day=1)
    return day.replace(month=1, day=1)


def _end_of(moment: datetime, unit: str) -> datetime:
    """The last microsecond of the minute/hour/day/week/month/quarter/year holding `moment`."""
    start = _start_of(moment, unit)
    if unit == "M":
        following = start + timedelta(minutes=1)
    elif unit in ("h", "H"):
        following = start + timedelta(hours=1)
    elif unit == "d":
        following = start + timedelta(days=1)
    elif unit == "w":
        following = start + timedelta(weeks=1)
    else:
        following = _minus_months(start, -{"m": 1, "q": 3}.get(unit, 12))
    return following - timedelta(microseconds=1)


def _minus_months(moment: datetime, months: int) -> datetime:
    month_index = moment.year * 12 + moment.month - 1 - months
    year, month = divmod(month_index, 12)
    last_day = calendar.monthrange(year, month + 1)[1]
    return moment.replace(year=year, month=month + 1, day=min(moment.day, last_day))


def parse_date_bound(value: str, attr: str) -> datetime | None:
    """ISO timestamps, or PostHog's relative forms: -24h, -7d, -2w, -1m, -1y, -30M (minutes),
    with an optional Start/End (-1mStart = the first instant of last month, dStart = today 00:00),
    or `all` (no bound). Times are UTC."""
    value = value.strip()
    if not value or value == "all":
        return None
    match = RELATIVE_DATE.match(value)
    if not match:
        return parse_timestamp(value, attr)
    amount, unit, edge = int(match.group(1) or 0), match.group(2), match.group(3)
    current = now()
    try:
        if unit == "M":
            moment = current - timedelta(minutes=amount)
        elif unit in ("h", "H"):
            moment = current - timedelta(hours=amount)
        elif unit == "d":
            moment = current - timedelta(days=amount)
        elif unit == "w":
            moment = current - timedelta(weeks=amount)
        else:
            moment = _minus_months(current, {"m": 1, "q": 3}.get(unit, 12) * amount)
        if edge == "Start":
            return _start_of(moment, unit)
        if edge == "End":
            return _end_of(moment, unit)
    except (OverflowError, ValueError):
        raise ValidationError(f"{attr} is too far in the past.", attr=attr) from None
    return moment


def _parse_limit(value: Any, default: int, maximum: int, attr: str) -> int:
    if value in (None, ""):
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValidationError("A valid integer is required.", attr=attr) from None
    return max(0, min(number, maximum)) if attr == "offset" else max(1, min(number, maximum))


def _like_pattern(term: str) -> str:
    return "%" + term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _search_clause(session: Session, project_id: int, term: str) -> Any:
    """Tickets whose customer name/email, email subject or any live message contains `term`.

    Written as `id IN (a UNION b …)` rather than `a OR b OR id IN (…)`: each branch is then
    answered from its own text index (FTS5 trigram tables on SQLite, pg_trgm GIN indexes on
    PostgreSQL) instead of an OR that makes the planner scan every ticket.
    """
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite" and len(term) >= 3:
        # FTS5 trigram tables answer a quoted phrase as a case-insensitive substring match.
        phrase = '"' + term.replace('"', '""') + '"'
        in_ticket = select(Ticket.id).where(
            literal_column("tickets.rowid").in_(
                text("SELECT rowid FROM ticket_fts WHERE ticket_fts MATCH :q").bindparams(q=phrase)
            )
        )
        in_messages = select(Message.ticket_id).where(
            literal_column("messages.rowid").in_(
                text("SELECT rowid FROM message_fts WHERE message_fts MATCH :q2").bindparams(q2=phrase)
            ),
            Message.deleted_at.is_(None),
        )
        return Ticket.id.in_(union(in_ticket, in_messages))
    # PostgreSQL: ILIKE served by the pg_trgm GIN indexes (a BitmapOr over the three ticket
    # columns). SQLite with fewer than 3 characters: trigrams cannot help, a short term is a
    # plain scan.
    pattern = _like_pattern(term)
    in_ticket = select(Ticket.id).where(
        Ticket.project_id == project_id,
        or_(
            Ticket.customer_name.ilike(pattern, escape="\\"),
            Ticket.customer_email.ilike(pattern, escape="\\"),
            Ticket.email_subject.ilike(pattern, escape="\\"),
        ),
    )
    in_messages = select(Message.ticket_id).where(
        Message.content.ilike(pattern, escape="\\"), Message.deleted_at.is_(None)
    )
    return Ticket.id.in_(union(in_ticket, in_messages))


def _tag_subquery(project_id: int, names: list[str]) -> Any:
    return (
        select(TicketTag.ticket_id)
        .join(Tag, Tag.id == TicketTag.tag_id)
        .where(Tag.project_id == project_id, Tag.name.in_(names))
    )


def build_query(
    *, session: Session, project_id: int, params: Mapping[str, Any], user_id: int | None
) -> Select[tuple[Ticket]]:
    """Translate list parameters into a SELECT (without ordering and paging)."""
    # A NUL character cannot be stored or compared by PostgreSQL (and matches nothing anyway).
    params = {k: v.replace("\x00", "") if isinstance(v, str) else v for k, v in params.items()}
    q = select(Ticket).where(Ticket.project_id == project_id, Ticket.deleted_at.is_(None))
    current = now()

    statuses = [s for s in split_list(params.get("status")) if s in TICKET_STATUSES]
    if statuses:
        q = q.where(Ticket.status.in_(statuses))
    priorities = [p for p in split_list(params.get("priority")) if p in PRIORITIES]
    if priorities:
        q = q.where(Ticket.priority.in_(priorities))

    assignee_terms = []
    for token in split_list(params.get("assignee")):
        if token == "unassigned":
            assignee_terms.append(and_(Ticket.assignee_user_id.is_(None), Ticket.assignee_role_id.is_(None)))
        elif token == "me" and user_id is not None:
            assignee_terms.append(Ticket.assignee_user_id == user_id)
        elif token.startswith("user:") and re.fullmatch(r"[0-9]{1,15}", token[5:]):
            assignee_terms.append(Ticket.assignee_user_id == int(token[5:]))
        elif token.startswith("role:"):
            try:
                assignee_terms.append(Ticket.assignee_role_id == uuid.UUID(token[5:]))
            except ValueError:
                continue
    if assignee_terms:
        q = q.where(or_(*assignee_terms))

    sources = split_list(params.get("channel_source"))
    if sources:
        q = q.where(Ticket.channel_source.in_(sources))
    details = split_list(params.get("channel_detail"))
    if details:
        q = q.where(Ticket.channel_detail.in_(details))

    who = []
    distinct_ids = split_list(params.get("distinct_ids"))
    if distinct_ids:
        who.append(Ticket.distinct_id.in_(distinct_ids))
    emails = [e.lower() for e in split_list(params.get("emails"))]
    if emails:
        who.append(func.lower(Ticket.customer_email).in_(emails))
    if who:
        q = q.where(or_(*who))

    if params.get("date_from"):
        bound = parse_date_bound(str(params["date_from"]), "date_from")
        if bound is not None:
            q = q.where(Ticket.updated_at >= bound)
    if params.get("date_to"):
        bound = parse_date_bound(str(params["date_to"]), "date_to")
        if bound is not None:
            q = q.where(Ticket.updated_at <= bound)

    sla = params.get("sla")
    if sla == "breached":
        q = q.where(Ticket.sla_due_at < current)
    elif sla == "at-risk":
        q = q.where(Ticket.sla_due_at >= current, Ticket.sla_due_at <= current + timedelta(hours=1))
    elif sla == "on-track":
        q = q.where(Ticket.sla_due_at > current + timedelta(hours=1))

    snoozed = str(params.get("snoozed") or "").lower()
    if snoozed in ("true", "1"):
        q = q.where(Ticket.snoozed_until.is_not(None))
    elif snoozed in ("false", "0"):
        q = q.where(Ticket.snoozed_until.is_(None))

    any_tags = [t.lower() for t in split_list(params.get("tags"))]
    if any_tags:
        q = q.where(Ticket.id.in_(_tag_subquery(project_id, any_tags)))
    for name in {t.lower() for t in split_list(params.get("tags_all"))}:
        q = q.where(
            exists().where(
                TicketTag.ticket_id == Ticket.id,
                TicketTag.tag_id == select(Tag.id).where(Tag.project_id == project_id, Tag.name == name).scalar_subquery(),
            )
        )
    exclude = [t.lower() for t in split_list(params.get("tags_exclude"))]
    if exclude:
        q = q.where(Ticket.id.not_in(_tag_subquery(project_id, exclude)))

    search = params.get("search")
    if search is not None and str(search).strip():
        term = str(search).strip()
        if len(term) > MAX_SEARCH_LENGTH:
            raise ValidationError(f"search is at most {MAX_SEARCH_LENGTH} characters.", attr="search")
        number = TICKET_NUMBER.fullmatch(term)
        if number:
            q = q.where(Ticket.ticket_number == int(number.group(1)))
        else:
            q = q.where(_search_clause(session, project_id, term))
    return q


def order_clauses(order_by: Any) -> list[Any]:
    raw = str(order_by or "-updated_at")
    descending = raw.startswith("-")
    field = raw.lstrip("-")
    if field not in ORDERINGS:
        field, descending = "updated_at", True
    column = getattr(Ticket, field)
    primary = column.desc() if descending else column.asc()
    if field == "sla_due_at":
        primary = primary.nulls_last()
    clauses = [primary]
    if field != "ticket_number":
        clauses.append(Ticket.ticket_number.desc())
    return clauses


def list_tickets(
    *, session: Session, project_id: int, params: Mapping[str, Any], user_id: int | None
) -> tuple[TicketPage, int, int]:
    """One page of the list with its count. The count is exact up to COUNT_CAP matches and
    reported as COUNT_CAP beyond it, so it never costs more than reading COUNT_CAP index rows."""
    limit = _parse_limit(params.get("limit"), DEFAULT_LIMIT, MAX_LIMIT, "limit")
    offset = _parse_limit(params.get("offset"), 0, 10**9, "offset")
    query = build_query(session=session, project_id=project_id, params=params, user_id=user_id)
    rows = list(session.scalars(query.order_by(*order_clauses(params.get("order_by"))).limit(limit + 1).offset(offset)))
    has_more = len(rows) > limit
    rows = rows[:limit]
    if not has_more and (rows or offset == 0):
        count = offset + len(rows)
    else:
        bounded = query.with_only_columns(Ticket.id).order_by(None).limit(COUNT_CAP)
        count = int(session.scalar(select(func.count()).select_from(bounded.subquery())) or 0)
        count = max(count, offset + len(rows) + int(has_more))
    return TicketPage(count=count, tickets=rows, has_more=has_more), limit, offset
