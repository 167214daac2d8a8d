"""SLA policies: response targets per priority, counted round the clock or in business hours.

The clock, as an operator reads it:
- a new ticket is due a first response `first_response_minutes` after it was created;
- the first public team (or AI) reply stops that clock (`sla_due_at` is cleared);
- the customer's next message starts the next-response clock (`next_response_minutes`), so
  each answer clears the due date and each new customer message advances it;
- while a clock runs, further customer messages never push it back (the earliest due wins);
- an explicit `sla_due_at` set through the ticket API stays until a reply clears it (in a
  project without a policy, replies leave hand-set due dates alone).

Business-hour arithmetic happens on real (UTC) instants: each business day's window is
built in the policy's IANA time zone and converted to UTC, so a day with a DST change still
has its 8 real hours, weekends and holidays contribute nothing, and a window whose end is
not after its start (22:00–06:00, or an end of 24:00) runs past midnight into the next day.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.cache import get_cache
from core.clock import as_utc, now
from models import Message, Ticket
from models.ticket import PRIORITIES
from models.widget import SlaPolicy
from services.errors import ValidationError

TARGET_KEYS = (*PRIORITIES, "default")
MAX_TARGET_MINUTES = 366 * 24 * 60
MAX_HOLIDAYS = 1000
# How far ahead a due date may be searched for (a policy with one business day a year and a
# week-long target still fits).
MAX_SEARCH_DAYS = 3 * 366
CACHE_TTL_SECONDS = 30
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$|^24:00$")


@dataclass(frozen=True)
class BusinessHours:
    weekdays: frozenset[int]  # ISO: Monday = 1 … Sunday = 7
    start: time
    end: time | None  # None = 24:00
    tz: ZoneInfo
    holidays: frozenset[date]

    def window(self, day: date) -> tuple[datetime, datetime] | None:
        """The business window that opens on `day` (local), in UTC; None on closed days."""
        if day.isoweekday() not in self.weekdays or day in self.holidays:
            return None
        opens = _local_to_utc(day, self.start, self.tz)
        if self.end is None or self.end <= self.start:
            # End of day (24:00) or an overnight window: it closes on the next calendar day.
            closes = _local_to_utc(day + timedelta(days=1), self.end or time(0, 0), self.tz)
        else:
            closes = _local_to_utc(day, self.end, self.tz)
        return opens, closes


def _local_to_utc(day: date, at: time, tz: ZoneInfo) -> datetime:
    """A wall-clock time on a local date as a UTC instant, with zoneinfo's `fold=0` rule:
    a time repeated by a fall-back change is its first occurrence, and a time skipped by a
    spring-forward change keeps the offset from before the change (02:30 on the night clocks
    jump from 02:00 to 03:00 becomes 03:30 summer time)."""
    return datetime.combine(day, at, tzinfo=tz).astimezone(UTC)


def parse_business_hours(raw: Any) -> BusinessHours | None:
    """Validate a policy's `business_hours` object (None = round the clock)."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ValidationError("business_hours must be an object or null.", attr="business_hours")
    weekdays = raw.get("weekdays", [1, 2, 3, 4, 5])
    if (
        not isinstance(weekdays, list)
        or not weekdays
        or not all(isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= 7 for d in weekdays)
    ):
        raise ValidationError("business_hours.weekdays must be a non-empty list of ISO weekdays (1 = Monday … 7 = Sunday).",
                              attr="business_hours.weekdays")
    start, end = raw.get("start"), raw.get("end")
    for name, value in (("start", start), ("end", end)):
        if not isinstance(value, str) or not _HHMM.match(value):
            raise ValidationError(f"business_hours.{name} must be HH:MM.", attr=f"business_hours.{name}")
    if start == "24:00":
        raise ValidationError("business_hours.start must be before 24:00.", attr="business_hours.start")
    if start == end:
        raise ValidationError("business_hours.start and end must differ.", attr="business_hours.end")
    tz_name = raw.get("timezone", "UTC")
    try:
        if not isinstance(tz_name, str) or not tz_name:
            raise ZoneInfoNotFoundError(tz_name)
        tz = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(f"'{tz_name}' is not an IANA time zone.", attr="business_hours.timezone") from None
    holidays_raw = raw.get("holidays", [])
    if not isinstance(holidays_raw, list) or len(holidays_raw) > MAX_HOLIDAYS:
        raise ValidationError(f"business_hours.holidays must be a list of at most {MAX_HOLIDAYS} dates.",
                              attr="business_hours.holidays")
    holidays = set()
    for item in holidays_raw:
        try:
            holidays.add(date.fromisoformat(item))
        except (TypeError, ValueError):
            raise ValidationError(f"holiday '{item}' is not a YYYY-MM-DD date.", attr="business_hours.holidays") from None
    return BusinessHours(
        weekdays=frozenset(weekdays),
        start=_parse_hhmm(start),
        end=None if end == "24:00" else _parse_hhmm(end),
        tz=tz,
        holidays=frozenset(holidays),
    )


def _parse_hhmm(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def _windows_from(start: datetime, hours: BusinessHours) -> Iterator[tuple[datetime, datetime]]:
    # Begin a day early: an overnight window that opened yesterday may still be open.
    day = start.astimezone(hours.tz).date() - timedelta(days=1)
    for _ in range(MAX_SEARCH_DAYS):
        window = hours.window(day)
        if window is not None and window[1] > start:
            yield window
        day += timedelta(days=1)


def compute_due(start: datetime, minutes: int, business_hours: BusinessHours | None = None) -> datetime:
    """`minutes` after `start`, counting only business hours when they are given."""
    start = as_utc(start)  # type: ignore[assignment]
    if business_hours is None:
        return start + timedelta(minutes=minutes)
    remaining = timedelta(minutes=minutes)
    for opens, closes in _windows_from(start, business_hours):
        begin = max(opens, start)
        available = closes - begin
        if remaining <= available:
            return begin + remaining
        remaining -= available
    raise ValidationError("the business hours leave no time to meet this target.", attr="business_hours")


# -- policies --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    first_response_minutes: int | None
    next_response_minutes: int | None


@dataclass(frozen=True)
class Policy:
    targets: dict[str, Target]
    business_hours: BusinessHours | None

    def target_for(self, priority: str | None) -> Target | None:
        return self.targets.get(priority or "default") or (self.targets.get("default") if priority else None)


def _parse_minutes(value: Any, attr: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not (1 <= value <= MAX_TARGET_MINUTES):
        raise ValidationError(f"{attr} must be a whole number of minutes between 1 and {MAX_TARGET_MINUTES}.", attr=attr)
    return value


def parse_targets(raw: Any) -> dict[str, Target]:
    if not isinstance(raw, dict):
        raise ValidationError("targets must be an object keyed by priority.", attr="targets")
    targets: dict[str, Target] = {}
    for key, value in raw.items():
        if key not in TARGET_KEYS:
            raise ValidationError(f"'{key}' is not a priority (one of: {', '.join(TARGET_KEYS)}).", attr="targets")
        if value is None:
            continue
        if not isinstance(value, dict):
            raise ValidationError(f"targets.{key} must be an object.", attr=f"targets.{key}")
        target = Target(
            first_response_minutes=_parse_minutes(value.get("first_response_minutes"), f"targets.{key}.first_response_minutes"),
            next_response_minutes=_parse_minutes(value.get("next_response_minutes"), f"targets.{key}.next_response_minutes"),
        )
        if target.first_response_minutes is None and target.next_response_minutes is None:
            continue
        targets[key] = target
    return targets


def _target_out(target: Target) -> dict[str, int | None]:
    return {"first_response_minutes": target.first_response_minutes, "next_response_minutes": target.next_response_minutes}


def set_policy(*, session: Session, project_id: int, targets: Any, business_hours: Any) -> SlaPolicy:
    """PUT sla_policy: validate and replace the project's policy."""
    parsed_targets = parse_targets(targets if targets is not None else {})
    parsed_hours = parse_business_hours(business_hours)
    stored_targets = {k: _target_out(v) for k, v in parsed_targets.items()}
    stored_hours = None
    if parsed_hours is not None:
        stored_hours = {
            "weekdays": sorted(parsed_hours.weekdays),
            "start": business_hours["start"],
            "end": business_hours["end"],
            "timezone": parsed_hours.tz.key,
            "holidays": sorted(d.isoformat() for d in parsed_hours.holidays),
        }
    row = session.scalar(select(SlaPolicy).where(SlaPolicy.project_id == project_id))
    stamp = now()
    if row is None:
        row = SlaPolicy(project_id=project_id, created_at=stamp)
        session.add(row)
    row.targets = stored_targets
    row.business_hours = stored_hours
    row.updated_at = stamp
    session.flush()
    get_cache().delete(_cache_key(project_id))
    session.info.pop(_SESSION_POLICIES, None)
    return row


def get_policy_row(*, session: Session, project_id: int) -> SlaPolicy | None:
    return session.scalar(select(SlaPolicy).where(SlaPolicy.project_id == project_id))


def _cache_key(project_id: int) -> str:
    return f"sla-policy:{project_id}"


# A new ticket looks its project's policy up twice (new ticket, first message): kept on the
# session for the rest of its life, one Redis read per unit of work.
_SESSION_POLICIES = "sla_policies"


def load_policy(*, session: Session, project_id: int) -> Policy | None:
    """The project's policy (cached 30 s; PUT invalidates), or None when it has none."""
    known = session.info.setdefault(_SESSION_POLICIES, {})
    if project_id not in known:
        known[project_id] = _load_policy(session=session, project_id=project_id)
    return known[project_id]


def _load_policy(*, session: Session, project_id: int) -> Policy | None:
    cache = get_cache()
    cached = cache.get(_cache_key(project_id))
    if cached is None:
        row = get_policy_row(session=session, project_id=project_id)
        cached = {"targets": row.targets, "business_hours": row.business_hours} if row else {}
        cache.set(_cache_key(project_id), cached, CACHE_TTL_SECONDS)
    if not cached or not cached.get("targets"):
        return None
    return Policy(targets=parse_targets(cached["targets"]), business_hours=parse_business_hours(cached["business_hours"]))


# -- hooks -----------------------------------------------------------------------------------

def apply_on_new_ticket(*, session: Session, ticket: Ticket) -> None:
    """Start the first-response clock of a new ticket (call right after it is created)."""
    if ticket.sla_due_at is not None:
        return
    policy = load_policy(session=session, project_id=ticket.project_id)
    target = policy.target_for(ticket.priority) if policy else None
    if policy is None or target is None or target.first_response_minutes is None:
        return
    ticket.sla_due_at = compute_due(ticket.created_at or now(), target.first_response_minutes, policy.business_hours)


def apply_on_customer_message(*, session: Session, ticket: Ticket, message: Message) -> None:
    """A customer wrote: start the clock unless one is already running (the earliest wins)."""
    if message.is_private or ticket.sla_due_at is not None:
        return
    policy = load_policy(session=session, project_id=ticket.project_id)
    target = policy.target_for(ticket.priority) if policy else None
    if policy is None or target is None:
        return
    minutes = target.first_response_minutes if ticket.first_response_at is None else target.next_response_minutes
    if minutes is None:
        return
    ticket.sla_due_at = compute_due(message.created_at or now(), minutes, policy.business_hours)


def apply_on_team_reply(*, session: Session, ticket: Ticket, message: Message) -> None:
    """A public team or AI reply answers the customer: the running clock stops.

    Private notes and system messages answer nobody and leave the clock as it is. The next
    customer message starts the next-response clock (`apply_on_customer_message`).
    """
    if message.is_private or message.author_type not in ("support", "AI") or ticket.sla_due_at is None:
        return
    # Without a policy, a due date set by hand through the API is the team's own business.
    if load_policy(session=session, project_id=ticket.project_id) is None:
        return
    ticket.sla_due_at = None
