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
    JSON,
    ColumnElement,
    Select,
    String,
    Uuid,
    and_,
    any_,
    bindparam,
    case,
    cast,
    exists,
    false,
    func,
    literal_column,
    or_,
    select,
    text,
    type_coerce,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from core.clock import now
from models import Message, Person, PersonDistinctId, Role, Tag, Ticket, TicketTag, User
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


# A plain table alias, made once: an ORM `aliased()` per call cost ~0.7 ms of adaptation per
# request in the tag filters (the alias name only has to differ from the query's own FROM).
_OTHER_LINK = TicketTag.__table__.alias("other_link")


def _has_tag(tag_ids: list[uuid.UUID], ticket_id: Any = None) -> Any:
    """EXISTS one of these tags on the ticket (`ticket_id`: tickets.id, or the driving link's
    ticket_id). An alias of ticket_tags, so that the clause still has its own FROM inside a
    query that reads ticket_tags itself; `SELECT 1`, so that SQLite answers it from the
    primary key index alone."""
    link = _OTHER_LINK.c
    ticket_id = Ticket.id if ticket_id is None else ticket_id
    return select(literal_column("1")).where(link.ticket_id == ticket_id, link.tag_id.in_(tag_ids)).exists()


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
        # The tag whose links drive the page in list order (tags_in_list_order), and the
        # other tag terms, on the driving link's ticket_id.
        self.tag_driver: uuid.UUID | None = None
        self.link_terms: list[Any] = []
        # Filled by look_up_tags: the request's tag names that exist, and for the required
        # tags of a walk in list order, where their DENSITY_PROBE-th link lies.
        self.tag_id_of: dict[str, uuid.UUID] = {}
        self.density_of: dict[str, tuple[int, float, int]] = {}

    def add(self, clause: Any) -> None:
        self.where.append(clause)

    def add_ids(self, ids: list[str]) -> None:
        """Restrict to these ticket ids (PostgreSQL): `id = ANY(CAST(:ids AS uuid[]))`, the ids
        in one text parameter (an array literal), which costs far less Python than thousands
        of UUID parameters. It drives the query like `add_candidates`."""
        literal = "{" + ",".join(ids) + "}"
        self.add(Ticket.id == any_(cast(bindparam("candidate_ids", literal, type_=String), postgresql.ARRAY(Uuid))))
        self.driven = True

    def add_candidates(self, ids: Select[Any]) -> None:
        """Restrict to a small set of ticket ids; the first such set drives the query."""
        self.add(_id_in(self.session, ids, drive=not self.driven))
        self.driven = True

    # -- tags --------------------------------------------------------------------------------

    def look_up_tags(self, names: list[str], *, probe: list[str], ascending: bool) -> None:
        """Every tag name of the request in one statement: its id and, for the names in
        `probe` (the required tags of a walk in list order, when there are several), how far
        a walk in list order goes to meet DENSITY_PROBE of its links — the list position
        (updated_at, then ticket_number) of that link, read from the order index (a hundred
        entries). Smaller is further, so rarer there, which makes the better driver: each of
        its links then meets the other required tags as often as they are common."""
        columns: list[Any] = [Tag.name, Tag.id]
        if probe:
            nth_link = (
                select(TicketTag.updated_at, TicketTag.ticket_number)
                .where(TicketTag.tag_id == Tag.id, TicketTag.deleted_at.is_(None))
                .order_by(*_link_order("updated_at" if ascending else "-updated_at"))
                .offset(DENSITY_PROBE - 1).limit(1)
            )
            probed = Tag.name.in_(probe)
            columns += [case((probed, nth_link.with_only_columns(TicketTag.updated_at).scalar_subquery())),
                        case((probed, nth_link.with_only_columns(TicketTag.ticket_number).scalar_subquery()))]
        rows = self.session.execute(
            select(*columns).where(Tag.project_id == self.project_id, Tag.name.in_(sorted(set(names))))
        ).all()
        for row in rows:
            self.tag_id_of[row[0]] = row[1]
            if row[0] in probe:
                self.density_of[row[0]] = _density(row[2], row[3], ascending)

    def tag_ids(self, names: list[str]) -> list[uuid.UUID]:
        return [self.tag_id_of[name] for name in sorted(set(names)) if name in self.tag_id_of]

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

    def _link_has_tag(self, tag_ids: list[uuid.UUID], *, negate: bool = False) -> Any:
        """On the walked link: its ticket has (or, `negate`, has none of) these tags, read from
        the link's tag_set in the index entry; for a ticket with more tags than tag_set lists
        (NULL), from its links (EXISTS)."""
        text_of = (lambda i: i.hex) if self.dialect == "sqlite" else str
        listed = [TicketTag.tag_set.like(f"%{text_of(i)}%") for i in tag_ids]
        if negate:
            return or_(and_(TicketTag.tag_set.is_not(None), *(~term for term in listed)),
                       and_(TicketTag.tag_set.is_(None), ~_has_tag(tag_ids, TicketTag.ticket_id)))
        return or_(and_(TicketTag.tag_set.is_not(None), or_(*listed)),
                   and_(TicketTag.tag_set.is_(None), _has_tag(tag_ids, TicketTag.ticket_id)))

    def _build_from_links(self) -> ListQuery:
        """The page and count walk the driving tag's live links (ix_ticket_tags_tag_order) in
        list order. Only the tag terms: neither reads a ticket (page_query reads the page's
        tickets, checking their project). With ticket filters too (status): each link's ticket
        is checked through the probe index."""
        link_where = [TicketTag.tag_id == self.tag_driver, TicketTag.deleted_at.is_(None), *self.link_terms]
        ticket_terms = self.where[2:]  # past project_id and deleted_at
        if ticket_terms:
            joined = select(Ticket).join(TicketTag, TicketTag.ticket_id == Ticket.id).where(*self.where, *link_where)
            return ListQuery(page=joined.execution_options(list_order=TAG_LIST_ORDER),
                             count=joined.with_only_columns(literal_column("1")))
        links = select(TicketTag.ticket_id).where(*link_where)
        return ListQuery(page=links.execution_options(list_order=TAG_LIST_ORDER, list_project=self.project_id),
                         count=links.with_only_columns(literal_column("1")))

    def tags_in_list_order(self, any_names: list[str], all_names: list[str]) -> bool:
        """Answer `tags` (one tag) and `tags_all` by walking one tag's links in list order
        (ix_ticket_tags_tag_order: the tag, then the ticket's updated_at and number) and
        checking each one: a page costs about a page of index entries, however rare or
        common the tag, and so does the count (COUNT_CAP entries at most). The rarest required
        tag drives (`look_up_tags`); the other tag terms are checked against the link's
        tag_set (`_link_has_tag`). Only for the `updated_at` order without filters that would
        make most links fail the check (NOT_IN_TAG_ORDER). False when there is no single
        required tag (`tags` with several names and no `tags_all`)."""
        must = required_tags(any_names, all_names)
        if not must:
            return False
        ids = self.tag_id_of
        any_ids = [ids[name] for name in sorted(set(any_names)) if name in ids]
        if any(name not in ids for name in must) or (any_names and not any_ids):
            self.add(false())
            return True
        if len(set(any_names)) > 1:
            self.link_terms.append(self._link_has_tag(any_ids))
        driver = must[0]
        if len(must) > 1:
            driver = min(must, key=lambda name: self.density_of.get(name, (0, 0.0, 0)))
        for name in must:
            if name != driver:
                self.link_terms.append(self._link_has_tag([ids[name]]))
        self.tag_driver = ids[driver]
        return True

    def no_tags(self, names: list[str]) -> None:
        ids = self.tag_ids(names)
        if ids and self.tag_driver is not None:
            self.link_terms.append(self._link_has_tag(ids, negate=True))
        elif ids:
            self.add(~_has_tag(ids))

    # -- text search -------------------------------------------------------------------------

    def search(self, term: str) -> None:
        """Customer name/email, email subject or any live message contains `term` (any case).

        A term with trigrams is looked up once in the text indexes (FTS5 trigram tables on
        SQLite, pg_trgm GIN indexes on PostgreSQL): when at most SELECTIVE_CANDIDATES tickets
        match, their keys are handed to the page and the count as one array parameter, so
        neither evaluates the text match again. More matches (a common word) and terms too
        short for trigrams are answered by probing each ticket in list order."""
        pattern = _like_pattern(term)
        if self.dialect == "sqlite" and len(term) >= 3:
            rowids = self._fts_candidates(term)
            if rowids is not None:
                # One JSON array parameter, read by json_each: ticket rows found by rowid.
                self.add(literal_column("tickets.rowid").in_(
                    select(literal_column("value")).select_from(func.json_each(json.dumps(rowids)))
                ))
                return
            # A common term: probe each ticket in list order (SQLite's LIKE ignores ASCII case).
            self.add(self._probe_clause(pattern, like=lambda col: col.like(pattern, escape="\\")))
            return
        if self.dialect == "postgresql" and len(term) >= 3:
            ids = self._trigram_candidates(pattern)
            if ids is not None:
                self.add_ids(ids)
                return
        # Short terms (no trigram to look up) and common terms: probe each ticket in list order.
        self.add(self._probe_clause(pattern, like=lambda col: col.ilike(pattern, escape="\\")))

    def _fts_candidates(self, term: str) -> list[int] | None:
        """Rowids of the tickets whose name/email/subject or a live message contains `term`
        (FTS5 trigram tables answer a quoted phrase as a case-insensitive substring match);
        None when more than SELECTIVE_CANDIDATES match."""
        phrase = '"' + term.replace('"', '""') + '"'
        limit = SELECTIVE_CANDIDATES + 1
        found = set(self.session.scalars(
            text("SELECT rowid FROM ticket_fts WHERE ticket_fts MATCH :q LIMIT :n"), {"q": phrase, "n": limit}
        ))
        if len(found) > SELECTIVE_CANDIDATES:
            return None
        messages = list(self.session.scalars(
            text("SELECT rowid FROM message_fts WHERE message_fts MATCH :q LIMIT :n"), {"q": phrase, "n": limit}
        ))
        if len(found) + len(messages) > SELECTIVE_CANDIDATES:  # before reading any message row
            return None
        if messages:
            found.update(self.session.scalars(text(
                "SELECT t.rowid FROM messages m JOIN tickets t ON t.id = m.ticket_id "
                "WHERE m.rowid IN (SELECT value FROM json_each(:rowids)) AND m.deleted_at IS NULL"
            ), {"rowids": json.dumps(messages)}))
        return sorted(found)

    def _trigram_candidates(self, pattern: str) -> list[str] | None:
        """Ids of the tickets whose name/email/subject (a BitmapOr over three GIN indexes) or a
        live message matches; None when more than SELECTIVE_CANDIDATES match."""
        limit = SELECTIVE_CANDIDATES + 1
        ticket_match = or_(
            Ticket.customer_name.ilike(pattern, escape="\\"),
            Ticket.customer_email.ilike(pattern, escape="\\"),
            Ticket.email_subject.ilike(pattern, escape="\\"),
        )
        # As text: the ids only travel back to the server as one array literal.
        found = set(self.session.scalars(
            select(cast(Ticket.id, String)).where(Ticket.project_id == self.project_id, ticket_match).limit(limit)
        ))
        if len(found) > SELECTIVE_CANDIDATES:
            return None
        found.update(self.session.scalars(select(cast(Message.ticket_id, String)).where(
            Message.project_id == self.project_id, Message.content.ilike(pattern, escape="\\"),
            Message.deleted_at.is_(None),
        ).limit(limit)))
        return sorted(found) if len(found) <= SELECTIVE_CANDIDATES else None

    @staticmethod
    def _probe_clause(pattern: str, like: Any) -> Any:
        return or_(
            like(Ticket.customer_name),
            like(Ticket.customer_email),
            like(Ticket.email_subject),
            exists().where(Message.ticket_id == Ticket.id, Message.deleted_at.is_(None), like(Message.content)),
        )

    def build(self) -> ListQuery:
        if self.tag_driver is not None:
            return self._build_from_links()
        page = select(Ticket).where(*self.where, *self.page_only)
        if self.count_join is None:
            # `SELECT 1`: any index that answers the filters answers the count without rows.
            count = select(literal_column("1")).select_from(Ticket).where(*self.where)
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
    all_tags = [t.lower() for t in split_list(params.get("tags_all"))]
    exclude = [t.lower() for t in split_list(params.get("tags_exclude"))]
    in_list_order = _by_updated_at(params.get("order_by")) and not any(params.get(k) for k in NOT_IN_TAG_ORDER)
    ascending = params.get("order_by") == "updated_at"
    if any_tags or all_tags or exclude:
        must = required_tags(any_tags, all_tags) if in_list_order else []
        b.look_up_tags([*any_tags, *all_tags, *exclude], probe=must if len(must) > 1 else [], ascending=ascending)
    if not (in_list_order and b.tags_in_list_order(any_tags, all_tags)):
        if any_tags:
            b.any_tags(any_tags)
        if all_tags:
            b.all_tags(all_tags)
    if exclude:
        b.no_tags(exclude)
    return b.build()


def required_tags(any_names: list[str], all_names: list[str]) -> list[str]:
    """The tags every match has: `tags_all`, and `tags` when it names one tag."""
    return sorted(set(all_names) | (set(any_names) if len(set(any_names)) == 1 else set()))


def _density(updated_at: datetime | None, ticket_number: int | None, ascending: bool) -> tuple[int, float, int]:
    """The sort key of a required tag's DENSITY_PROBE-th link (look_up_tags): smaller is rarer."""
    if updated_at is None and ticket_number is None:  # fewer links than that: the rarest there is
        return (0, 0.0, 0)
    stamp = updated_at.timestamp() if updated_at is not None else 0.0
    # Walking newest first, further is older (then a lower number); oldest first, newer.
    return (1, -stamp if ascending else stamp, ticket_number or 0)


# Filters that, next to a tag, may leave few of the tag's tickets: with them the planner picks
# the driving index (the filter's or the tag's links) as before. `status` stays: the probe
# index answers it, and a page of the rarest status (5 %) probes ~2,000 links.
NOT_IN_TAG_ORDER = ("priority", "assignee", "channel_source", "channel_detail", "distinct_ids", "emails",
                    "date_from", "date_to", "sla", "snoozed", "search")
TAG_LIST_ORDER = "ticket_tags"
DENSITY_PROBE = 100


def _by_updated_at(order_by: Any) -> bool:
    field = str(order_by or "-updated_at").lstrip("-")
    return field == "updated_at" or field not in ORDERINGS


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
# What a list item embeds besides the ticket's own columns, as extra labelled columns of the
# page's rows (read by api.schemas.ticket_rows_out).
EMBED_USER = ("embed_user_uuid", "embed_user_first_name", "embed_user_last_name", "embed_user_email")
EMBED_PERSON = ("embed_person_id", "embed_person_name", "embed_person_email", "embed_person_properties",
                "embed_person_is_identified", "embed_person_created_at", "embed_person_distinct_ids")


def _collect(sqlite: bool, column: Any) -> Any:
    """An aggregate that hands back a Python list: json_group_array on SQLite (JSON text the
    JSON type decodes), array_agg on PostgreSQL (None for no rows)."""
    if sqlite:
        return type_coerce(func.json_group_array(column), JSON)
    return type_coerce(func.array_agg(column), postgresql.ARRAY(String))


_EMBEDDED: dict[str, tuple[Any, Select[Any]]] = {}


def embedded_select(session: Session) -> tuple[Any, Select[Any]]:
    """`_embedded_select` for the session's database, built once: constructing this statement
    cost more than running it (SQLAlchemy statements are immutable, so one serves every thread)."""
    dialect = session.get_bind().dialect.name
    built = _EMBEDDED.get(dialect)
    if built is None:
        built = _EMBEDDED[dialect] = _embedded_select(dialect == "sqlite")
    return built


def _embedded_select(sqlite: bool) -> tuple[Any, Select[Any]]:
    """Tickets (aliased `page`) with everything a list item shows, in one statement: the
    assignee user or role (left joins), the tag names and the person with all of its distinct
    ids (correlated subqueries over their indexes). Returns (page alias, SELECT without WHERE).

    One statement instead of a query per embedded object: the database does ~5 index look-ups
    per ticket (for a page of 100, ~0.4 ms on SQLite and ~1.5 ms on PostgreSQL at 1M tickets),
    and no ORM objects or per-query round trips are made. A ticket's person is the one behind
    its distinct id, or, for a ticket without one (email), the oldest person with its email."""
    page = Ticket.__table__.alias("page")
    user = User.__table__.alias("assignee_user")
    role = Role.__table__.alias("assignee_role")
    person = Person.__table__.alias("person")
    link, tag = TicketTag.__table__.alias("link"), Tag.__table__.alias("tag")
    by_distinct_id = PersonDistinctId.__table__.alias("by_distinct_id")
    by_email = Person.__table__.alias("by_email")
    aliases = PersonDistinctId.__table__.alias("alias")
    tag_names = (
        select(_collect(sqlite, tag.c.name))
        .select_from(link.join(tag, tag.c.id == link.c.tag_id))
        .where(link.c.ticket_id == page.c.id)
        .scalar_subquery()
    )
    person_id = case(
        (
            or_(page.c.distinct_id.is_(None), page.c.distinct_id == ""),
            select(by_email.c.id)
            .where(by_email.c.project_id == page.c.project_id, page.c.customer_email != "",
                   by_email.c.email == func.lower(page.c.customer_email))
            .order_by(by_email.c.created_at, by_email.c.id)
            .limit(1)
            .scalar_subquery(),
        ),
        else_=select(by_distinct_id.c.person_id)
        .where(by_distinct_id.c.project_id == page.c.project_id, by_distinct_id.c.distinct_id == page.c.distinct_id)
        .scalar_subquery(),
    )
    distinct_ids = select(_collect(sqlite, aliases.c.distinct_id)).where(aliases.c.person_id == person.c.id)
    columns = [
        *page.columns,
        *(user.c[name[len("embed_user_"):]].label(name) for name in EMBED_USER),
        role.c.name.label("embed_role_name"),
        tag_names.label("embed_tags"),
        *(person.c[name[len("embed_person_"):]].label(name) for name in EMBED_PERSON[:-1]),
        distinct_ids.scalar_subquery().label("embed_person_distinct_ids"),
    ]
    joined = (
        page.outerjoin(user, user.c.id == page.c.assignee_user_id)
        .outerjoin(role, role.c.id == page.c.assignee_role_id)
        .outerjoin(person, person.c.id == person_id)
    )
    return page, select(*columns).select_from(joined)


def page_query(session: Session, page: Select[Any], order_by: Any, limit: int, offset: int,
               count: Select[Any] | None = None) -> Select[Any]:
    """The page as a deferred join: find the page's keys first (an index-only walk where the
    indexes allow, sorting narrow rows otherwise), then read those rows whole, with what each
    list item embeds (`embedded_select`). Sorting or skipping thousands of wide ticket rows is
    what makes a naive page slow.

    With `count` (ListQuery.count), every row also carries `embed_count`: how many rows the
    count query returns, reading at most COUNT_CAP of them (an uncorrelated subquery, which
    both databases run once), so the list needs no second statement for its count."""
    sqlite = session.get_bind().dialect.name == "sqlite"
    inner_key = literal_column("tickets.rowid") if sqlite else Ticket.id
    options = page.get_execution_options()
    # A tag-driven page (tags_in_list_order) walks the tag's links in their copy of the order;
    # one without ticket filters reads no ticket until the page's own.
    by_links = TicketTag.__table__ if options.get("list_order") == TAG_LIST_ORDER else None
    outer, query = embedded_select(session)
    outer_key = literal_column("page.rowid") if sqlite else outer.c.id
    if options.get("list_project") is not None:
        inner_key, outer_key = TicketTag.ticket_id, outer.c.id
        query = query.where(outer.c.project_id == options["list_project"])
    inner_order = _link_order(order_by) if by_links is not None else order_clauses(order_by)
    keys = page.with_only_columns(inner_key).order_by(*inner_order).limit(limit).offset(offset)
    if count is not None:
        counted = select(func.count()).select_from(count.order_by(None).limit(COUNT_CAP).subquery())
        query = query.add_columns(counted.scalar_subquery().label("embed_count"))
    return query.where(outer_key.in_(keys)).order_by(*order_clauses(order_by, outer))


def embedded_rows(session: Session, ticket_ids: list[uuid.UUID]) -> list[Any]:
    """These tickets as list rows (`embedded_select`), in the order given; unknown ids are skipped."""
    if not ticket_ids:
        return []
    outer, query = embedded_select(session)
    found = {row.id: row for row in session.execute(query.where(outer.c.id.in_(ticket_ids)))}
    return [found[i] for i in ticket_ids if i in found]


def _link_order(order_by: Any) -> list[Any]:
    """The list order on ticket_tags' copy of it, led by deleted_at (NULL on every live link):
    PostgreSQL does not count `deleted_at IS NULL` as fixing the column, so without it the
    order would not match ix_ticket_tags_tag_order and the tag's links would be sorted."""
    clauses = order_clauses(order_by, TicketTag.__table__)
    descending = str(order_by or "-updated_at") != "updated_at"
    deleted = TicketTag.deleted_at
    return [deleted.desc() if descending else deleted.asc(), *clauses]


def _page_rows(session: Session, page: Select[Any], order_by: Any, limit: int, offset: int,
               count: Select[Any] | None = None) -> list[Any]:
    return list(session.execute(page_query(session, page, order_by, limit, offset, count)).all())


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
    rows = _page_rows(session, query.page, params.get("order_by"), limit + 1, offset, query.count)
    has_more = len(rows) > limit
    rows = rows[:limit]
    if not has_more and (rows or offset == 0):
        count = offset + len(rows)
    else:
        # Counted by the page's own statement; a page past the end has no row to carry it.
        count = rows[0].embed_count if rows else _bounded_count(session, query.count.order_by(None), COUNT_CAP - 1)
        # Past the cap a deep page still never reports fewer tickets than it has shown.
        count = max(min(count, COUNT_CAP), offset + len(rows) + int(has_more) if rows else 0)
    return TicketPage(count=count, tickets=rows, has_more=has_more), limit, offset
