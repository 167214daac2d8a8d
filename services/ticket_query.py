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

from sqlalchemy import (
    ColumnElement,
    Select,
    Uuid,
    and_,
    any_,
    cast,
    exists,
    false,
    func,
    literal_column,
    or_,
    select,
    text,
    union,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session, aliased

from core.clock import now
from models import Message, Tag, Ticket, TicketTag
from models.ticket import PRIORITIES, TICKET_STATUSES
from services.errors import ValidationError
from services.tickets import MAX_INT, parse_timestamp

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_SEARCH_LENGTH = 200
# Counting a million matches costs as much as reading them. Up to this many the count is
# exact; past it the count is reported as this cap (and `next` still works from the page).
# Each counted row is an index entry (and on SQLite often a table row) read: 2,000 keeps the
# count within a few milliseconds at any table size.
COUNT_CAP = 2_000
# A tag or text filter matching at most this many rows is answered from its own index (fetch
# the candidates, check the other filters, sort them); a filter matching more is answered by
# walking the list order and probing each ticket, which finds a page after a few hundred rows.
# Both cost about the same here, so neither plan ever has to touch more than ~this many rows.
SELECTIVE_CANDIDATES = 10_000

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
    tickets: list[Any]  # rows with the Ticket attribute names
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


def _bounded_count(session: Session, stmt: Select[Any], cap: int) -> int:
    """How many rows `stmt` returns, reading at most `cap` + 1 of them."""
    return int(session.scalar(select(func.count()).select_from(stmt.limit(cap + 1).subquery())) or 0)


def _id_in(session: Session, ids: Select[Any], *, drive: bool = True) -> ColumnElement[bool]:
    """`tickets.id IN (ids)` shaped so both planners drive the query from the (small) id set.

    PostgreSQL gets `id = ANY((SELECT array_agg(…)))`: an init plan it cannot turn into a
    hash join over a sequential scan of tickets, which it otherwise picks for a few thousand
    ids under the default random_page_cost. Only one such term may drive a query (`drive`):
    a second one would be checked as a filter, a linear search of its array for every row."""
    if drive and session.get_bind().dialect.name == "postgresql":
        sub = ids.subquery()
        array = cast(select(func.array_agg(list(sub.c)[0])).scalar_subquery(), postgresql.ARRAY(Uuid))
        return Ticket.id == any_(array)
    return Ticket.id.in_(ids)


def _has_tag(tag_ids: list[uuid.UUID]) -> Any:
    """EXISTS one of these tags on the ticket. An alias of ticket_tags, so that the clause
    still has its own FROM inside a count query that joins ticket_tags itself."""
    link = aliased(TicketTag)
    return exists().where(link.ticket_id == Ticket.id, link.tag_id.in_(tag_ids))


@dataclass
class ListQuery:
    """The page query and the count query of one set of list parameters.

    They differ only when a filter is answered by probing each ticket (a common tag): the
    page walks the list order and stops after a page, while the count is driven from the
    filter's own index so that it too stops after COUNT_CAP matches."""

    page: Select[tuple[Ticket]]
    count: Select[Any]


class _Builder:
    def __init__(self, session: Session, project_id: int) -> None:
        self.session = session
        self.project_id = project_id
        self.dialect = session.get_bind().dialect.name
        self.where: list[Any] = [Ticket.project_id == project_id, Ticket.deleted_at.is_(None)]
        self.page_only: list[Any] = []
        self.count_join: list[uuid.UUID] | None = None
        self.driven = False

    def add(self, clause: Any) -> None:
        self.where.append(clause)

    def add_candidates(self, ids: Select[Any]) -> None:
        """Restrict to a small set of ticket ids; the first such set drives the query."""
        self.add(_id_in(self.session, ids, drive=not self.driven))
        self.driven = True

    # -- tags --------------------------------------------------------------------------------

    def tag_ids(self, names: list[str]) -> list[uuid.UUID]:
        return list(self.session.scalars(select(Tag.id).where(Tag.project_id == self.project_id, Tag.name.in_(names))))

    def any_tags(self, names: list[str]) -> None:
        ids = self.tag_ids(names)
        if not ids:
            self.add(false())
            return
        links = select(TicketTag.ticket_id).where(TicketTag.tag_id.in_(ids))
        if _bounded_count(self.session, links, SELECTIVE_CANDIDATES) <= SELECTIVE_CANDIDATES:
            self.add_candidates(links)
        elif self.count_join is None:
            self.page_only.append(_has_tag(ids))
            self.count_join = ids
        else:
            self.add(_has_tag(ids))

    def all_tags(self, names: list[str]) -> None:
        for name in sorted(set(names)):
            self.any_tags([name])

    def no_tags(self, names: list[str]) -> None:
        ids = self.tag_ids(names)
        if ids:
            self.add(~_has_tag(ids))

    # -- text search -------------------------------------------------------------------------

    def search(self, term: str) -> None:
        """Customer name/email, email subject or any live message contains `term` (any case)."""
        pattern = _like_pattern(term)
        if self.dialect == "sqlite" and len(term) >= 3:
            # FTS5 trigram tables answer a quoted phrase as a case-insensitive substring match.
            phrase = '"' + term.replace('"', '""') + '"'
            in_tickets = text("SELECT rowid FROM ticket_fts WHERE ticket_fts MATCH :q").bindparams(q=phrase)
            in_messages = text("SELECT rowid FROM message_fts WHERE message_fts MATCH :q2").bindparams(q2=phrase)
            probe = self._fts_count("ticket_fts", phrase) + self._fts_count("message_fts", phrase)
            if probe <= SELECTIVE_CANDIDATES:
                # Two IN terms SQLite answers with a multi-index OR: ticket matches by rowid,
                # message matches by ticket id (through the id probe index).
                self.add(or_(
                    literal_column("tickets.rowid").in_(in_tickets),
                    Ticket.id.in_(select(Message.ticket_id).where(
                        literal_column("messages.rowid").in_(in_messages), Message.deleted_at.is_(None)
                    )),
                ))
                return
            # A common term: probe each ticket in list order (SQLite's LIKE ignores ASCII case).
            self.add(self._probe_clause(pattern, like=lambda col: col.like(pattern, escape="\\")))
            return
        ticket_match = or_(
            Ticket.customer_name.ilike(pattern, escape="\\"),
            Ticket.customer_email.ilike(pattern, escape="\\"),
            Ticket.email_subject.ilike(pattern, escape="\\"),
        )
        in_tickets = select(Ticket.id).where(Ticket.project_id == self.project_id, ticket_match)
        in_messages = select(Message.ticket_id).where(
            Message.project_id == self.project_id,
            Message.content.ilike(pattern, escape="\\"),
            Message.deleted_at.is_(None),
        )
        if self.dialect == "postgresql" and len(term) >= 3:
            # pg_trgm GIN indexes serve each branch (a BitmapOr over the three ticket columns).
            probe = _bounded_count(self.session, in_tickets, SELECTIVE_CANDIDATES) + _bounded_count(
                self.session, in_messages, SELECTIVE_CANDIDATES
            )
            if probe <= SELECTIVE_CANDIDATES:
                self.add_candidates(union(in_tickets, in_messages))
                return
        # Short terms (no trigram to look up) and common terms: probe each ticket in list order.
        self.add(self._probe_clause(pattern, like=lambda col: col.ilike(pattern, escape="\\")))

    def _fts_count(self, table: str, phrase: str) -> int:
        sql = f"SELECT count(*) FROM (SELECT rowid FROM {table} WHERE {table} MATCH :q LIMIT :n)"
        return int(self.session.execute(text(sql), {"q": phrase, "n": SELECTIVE_CANDIDATES + 1}).scalar() or 0)

    @staticmethod
    def _probe_clause(pattern: str, like: Any) -> Any:
        return or_(
            like(Ticket.customer_name),
            like(Ticket.customer_email),
            like(Ticket.email_subject),
            exists().where(Message.ticket_id == Ticket.id, Message.deleted_at.is_(None), like(Message.content)),
        )

    def build(self) -> ListQuery:
        page = select(Ticket).where(*self.where, *self.page_only)
        if self.count_join is None:
            count = select(Ticket.id).where(*self.where)
        else:
            # Driven from ticket_tags: stops after COUNT_CAP matching tickets, however common the tag.
            count = (
                select(Ticket.id)
                .join(TicketTag, TicketTag.ticket_id == Ticket.id)
                .where(TicketTag.tag_id.in_(self.count_join), *self.where)
            )
            if len(self.count_join) > 1:
                count = count.distinct()
        return ListQuery(page=page, count=count)


def build_list_query(
    *, session: Session, project_id: int, params: Mapping[str, Any], user_id: int | None
) -> ListQuery:
    """Translate list parameters into the page and count SELECTs (without ordering and paging)."""
    # A NUL character cannot be stored or compared by PostgreSQL (and matches nothing anyway).
    params = {k: v.replace("\x00", "") if isinstance(v, str) else v for k, v in params.items()}
    b = _Builder(session, project_id)
    current = now()

    statuses = [s for s in split_list(params.get("status")) if s in TICKET_STATUSES]
    if statuses:
        b.add(Ticket.status.in_(statuses))
    priorities = [p for p in split_list(params.get("priority")) if p in PRIORITIES]
    if priorities:
        b.add(Ticket.priority.in_(priorities))

    assignee_terms = []
    for token in split_list(params.get("assignee")):
        if token == "unassigned":
            assignee_terms.append(and_(Ticket.assignee_user_id.is_(None), Ticket.assignee_role_id.is_(None)))
        elif token == "me" and user_id is not None:
            assignee_terms.append(Ticket.assignee_user_id == user_id)
        elif token.startswith("user:") and re.fullmatch(r"[0-9]{1,15}", token[5:]):
            user = int(token[5:])
            assignee_terms.append(Ticket.assignee_user_id == user if user <= MAX_INT else false())
        elif token.startswith("role:"):
            try:
                assignee_terms.append(Ticket.assignee_role_id == uuid.UUID(token[5:]))
            except ValueError:
                continue
    if assignee_terms:
        b.add(or_(*assignee_terms))

    sources = split_list(params.get("channel_source"))
    if sources:
        b.add(Ticket.channel_source.in_(sources))
    details = split_list(params.get("channel_detail"))
    if details:
        b.add(Ticket.channel_detail.in_(details))

    who = []
    distinct_ids = split_list(params.get("distinct_ids"))
    if distinct_ids:
        who.append(Ticket.distinct_id.in_(distinct_ids))
    emails = [e.lower() for e in split_list(params.get("emails"))]
    if emails:
        # customer_email is stored lower-cased, so the (project_id, customer_email) index serves it.
        who.append(Ticket.customer_email.in_(emails))
    if who:
        b.add(or_(*who))

    if params.get("date_from"):
        bound = parse_date_bound(str(params["date_from"]), "date_from")
        if bound is not None:
            b.add(Ticket.updated_at >= bound)
    if params.get("date_to"):
        bound = parse_date_bound(str(params["date_to"]), "date_to")
        if bound is not None:
            b.add(Ticket.updated_at <= bound)

    sla = params.get("sla")
    if sla == "breached":
        b.add(Ticket.sla_due_at < current)
    elif sla == "at-risk":
        b.add(and_(Ticket.sla_due_at >= current, Ticket.sla_due_at <= current + timedelta(hours=1)))
    elif sla == "on-track":
        b.add(Ticket.sla_due_at > current + timedelta(hours=1))

    snoozed = str(params.get("snoozed") or "").lower()
    if snoozed in ("true", "1"):
        b.add(Ticket.snoozed_until.is_not(None))
    elif snoozed in ("false", "0"):
        b.add(Ticket.snoozed_until.is_(None))

    search = params.get("search")
    if search is not None and str(search).strip():
        term = str(search).strip()
        if len(term) > MAX_SEARCH_LENGTH:
            raise ValidationError(f"search is at most {MAX_SEARCH_LENGTH} characters.", attr="search")
        number = TICKET_NUMBER.fullmatch(term)
        if number:
            value = int(number.group(1))
            b.add(Ticket.ticket_number == value if value <= MAX_INT else false())
        else:
            b.search(term)

    any_tags = [t.lower() for t in split_list(params.get("tags"))]
    if any_tags:
        b.any_tags(any_tags)
    all_tags = [t.lower() for t in split_list(params.get("tags_all"))]
    if all_tags:
        b.all_tags(all_tags)
    exclude = [t.lower() for t in split_list(params.get("tags_exclude"))]
    if exclude:
        b.no_tags(exclude)
    return b.build()


def build_query(
    *, session: Session, project_id: int, params: Mapping[str, Any], user_id: int | None
) -> Select[tuple[Ticket]]:
    """The list's page SELECT for these parameters (without ordering and paging); raises
    ValidationError for values no list could take (an over-long search, a bad date)."""
    return build_list_query(session=session, project_id=project_id, params=params, user_id=user_id).page


def order_clauses(order_by: Any, table: Any = None) -> list[Any]:
    """ORDER BY for `order_by` (default -updated_at), ties broken by -ticket_number."""
    columns = (table if table is not None else Ticket.__table__).c
    raw = str(order_by or "-updated_at")
    descending = raw.startswith("-")
    field = raw[1:] if descending else raw
    if field not in ORDERINGS:
        field, descending = "updated_at", True
    column = columns[field]
    primary = column.desc() if descending else column.asc()
    if field == "sla_due_at":
        primary = primary.nulls_last()
    clauses = [primary]
    if field != "ticket_number":
        clauses.append(columns.ticket_number.desc())
    return clauses


TICKET_COLUMNS = tuple(Ticket.__table__.columns)


def page_query(session: Session, page: Select[Any], order_by: Any, limit: int, offset: int) -> Select[Any]:
    """The page as a deferred join: find the page's keys first (an index-only walk where the
    indexes allow, sorting narrow rows otherwise), then read those rows whole. Sorting or
    skipping thousands of wide ticket rows is what makes a naive page slow."""
    sqlite = session.get_bind().dialect.name == "sqlite"
    inner_key = literal_column("tickets.rowid") if sqlite else Ticket.id
    keys = page.with_only_columns(inner_key).order_by(*order_clauses(order_by)).limit(limit).offset(offset)
    outer = Ticket.__table__.alias("page")
    outer_key = literal_column("page.rowid") if sqlite else outer.c.id
    return select(*outer.columns).where(outer_key.in_(keys)).order_by(*order_clauses(order_by, outer))


def _page_rows(session: Session, page: Select[Any], order_by: Any, limit: int, offset: int) -> list[Any]:
    return list(session.execute(page_query(session, page, order_by, limit, offset)).all())


def list_tickets(
    *, session: Session, project_id: int, params: Mapping[str, Any], user_id: int | None
) -> tuple[TicketPage, int, int]:
    """One page of the list with its count. The count is exact up to COUNT_CAP matches and
    reported as COUNT_CAP (or offset + page, if larger) beyond it, so it never reads more
    than COUNT_CAP matching rows.

    The page holds rows (attribute access like Ticket objects, read-only), which a page of
    1,000 tickets loads several times faster than ORM objects."""
    limit = _parse_limit(params.get("limit"), DEFAULT_LIMIT, MAX_LIMIT, "limit")
    offset = _parse_limit(params.get("offset"), 0, 10**9, "offset")
    query = build_list_query(session=session, project_id=project_id, params=params, user_id=user_id)
    rows = _page_rows(session, query.page, params.get("order_by"), limit + 1, offset)
    has_more = len(rows) > limit
    rows = rows[:limit]
    if not has_more and (rows or offset == 0):
        count = offset + len(rows)
    else:
        count = _bounded_count(session, query.count.order_by(None), COUNT_CAP - 1)
        # Past the cap a deep page still never reports fewer tickets than it has shown.
        count = max(min(count, COUNT_CAP), offset + len(rows) + int(has_more) if rows else 0)
    return TicketPage(count=count, tickets=rows, has_more=has_more), limit, offset
