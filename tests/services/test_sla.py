"""SLA: business-hour arithmetic, the policy API, and the clock's hooks on tickets."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from core.clock import FrozenClock, as_utc, use_clock
from core.db import session_scope
from models import Message, Ticket
from services import sla
from services.errors import ValidationError
from services.ingest import add_customer_message
from services.replies import add_team_message
from services.tickets import create_ticket
from tests.factories import make_key

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def hours(start: str, end: str, *, weekdays: list[int] | None = None, tz: str = "Europe/Berlin",
          holidays: list[str] | None = None) -> sla.BusinessHours:
    parsed = sla.parse_business_hours({"weekdays": weekdays or [1, 2, 3, 4, 5], "start": start, "end": end,
                                       "timezone": tz, "holidays": holidays or []})
    assert parsed is not None
    return parsed


def local(tz: ZoneInfo, *args: int) -> datetime:
    return datetime(*args, tzinfo=tz)


def due_local(start: datetime, minutes: int, business: sla.BusinessHours | None, tz: ZoneInfo = BERLIN) -> datetime:
    return sla.compute_due(start, minutes, business).astimezone(tz)


# -- arithmetic ------------------------------------------------------------------------------

def test_without_business_hours_the_target_counts_round_the_clock():
    start = datetime(2025, 3, 7, 16, 0, tzinfo=UTC)
    assert sla.compute_due(start, 90) == start + timedelta(minutes=90)


def test_time_inside_business_hours_counts_directly():
    office = hours("09:00", "17:00")
    assert due_local(local(BERLIN, 2025, 3, 4, 10, 0), 60, office) == local(BERLIN, 2025, 3, 4, 11, 0)


def test_friday_afternoon_rolls_over_the_weekend_to_monday():
    office = hours("09:00", "17:00")
    # Friday 16:00 + 2 h = 1 h on Friday, 1 h on Monday.
    assert due_local(local(BERLIN, 2025, 3, 7, 16, 0), 120, office) == local(BERLIN, 2025, 3, 10, 10, 0)


def test_a_ticket_opened_on_the_weekend_starts_counting_on_monday_morning():
    office = hours("09:00", "17:00")
    assert due_local(local(BERLIN, 2025, 3, 8, 13, 0), 30, office) == local(BERLIN, 2025, 3, 10, 9, 30)


def test_before_opening_the_clock_waits_for_the_office_to_open():
    office = hours("09:00", "17:00")
    assert due_local(local(BERLIN, 2025, 3, 4, 6, 15), 15, office) == local(BERLIN, 2025, 3, 4, 9, 15)


def test_at_closing_time_the_next_minute_is_the_next_mornings_first():
    office = hours("09:00", "17:00")
    assert due_local(local(BERLIN, 2025, 3, 4, 17, 0), 1, office) == local(BERLIN, 2025, 3, 5, 9, 1)
    # Exactly filling the day ends at closing time, not the next morning.
    assert due_local(local(BERLIN, 2025, 3, 4, 9, 0), 480, office) == local(BERLIN, 2025, 3, 4, 17, 0)


def test_a_target_longer_than_a_business_day_spans_several_days():
    office = hours("09:00", "17:00")
    # Thursday 15:00 + 20 h: 2 h Thu, 8 h Fri, 8 h Mon, 2 h Tue.
    assert due_local(local(BERLIN, 2025, 3, 6, 15, 0), 20 * 60, office) == local(BERLIN, 2025, 3, 11, 11, 0)


def test_holidays_are_skipped():
    office = hours("09:00", "17:00", holidays=["2025-12-25", "2025-12-26"])
    # Wednesday 24 Dec 16:30 + 1 h: 30 min that day, then Thu and Fri are holidays → Monday.
    assert due_local(local(BERLIN, 2025, 12, 24, 16, 30), 60, office) == local(BERLIN, 2025, 12, 29, 9, 30)


def test_the_spring_forward_night_does_not_shift_the_next_mornings_hours():
    every_day = hours("09:00", "17:00", weekdays=[1, 2, 3, 4, 5, 6, 7])
    # Berlin moves from CET (+1) to CEST (+2) early on Sunday 30 March 2025.
    due = sla.compute_due(local(BERLIN, 2025, 3, 29, 16, 0), 120, every_day)
    assert due == datetime(2025, 3, 30, 8, 0, tzinfo=UTC)  # 10:00 CEST, not 09:00 UTC (10:00 CET)
    assert due.astimezone(BERLIN).hour == 10


def test_the_fall_back_night_does_not_shift_the_next_mornings_hours_either():
    every_day = hours("09:00", "17:00", weekdays=[1, 2, 3, 4, 5, 6, 7])
    # Sunday 26 October 2025: CEST (+2) back to CET (+1).
    due = sla.compute_due(local(BERLIN, 2025, 10, 25, 16, 0), 120, every_day)
    assert due == datetime(2025, 10, 26, 9, 0, tzinfo=UTC)
    assert due.astimezone(BERLIN).hour == 10


def test_a_night_shift_across_the_dst_change_is_an_hour_shorter_in_real_time():
    nights = hours("22:00", "06:00", weekdays=[1, 2, 3, 4, 5, 6, 7])
    start = local(BERLIN, 2025, 3, 29, 22, 0)  # 21:00 UTC
    # 22:00 CET → 06:00 CEST is 7 real hours, not 8.
    assert sla.compute_due(start, 7 * 60, nights) == datetime(2025, 3, 30, 4, 0, tzinfo=UTC)
    assert due_local(start, 7 * 60 + 1, nights) == local(BERLIN, 2025, 3, 30, 22, 1)


def test_an_overnight_window_runs_past_midnight():
    nights = hours("22:00", "06:00", weekdays=[1, 2, 3, 4, 5, 6, 7], tz="UTC")
    start = datetime(2025, 6, 2, 23, 30, tzinfo=UTC)
    assert sla.compute_due(start, 60, nights) == datetime(2025, 6, 3, 0, 30, tzinfo=UTC)
    # A ticket at 02:00 is inside the window that opened the evening before.
    assert sla.compute_due(datetime(2025, 6, 3, 2, 0, tzinfo=UTC), 60, nights) == datetime(2025, 6, 3, 3, 0, tzinfo=UTC)
    # Only the weekday the window opens on counts: Friday night's window runs into Saturday.
    fridays = hours("22:00", "06:00", weekdays=[5], tz="UTC")
    assert sla.compute_due(datetime(2025, 6, 7, 5, 0, tzinfo=UTC), 120, fridays) == datetime(2025, 6, 13, 23, 0, tzinfo=UTC)


def test_an_end_of_24_00_means_midnight():
    evenings = hours("18:00", "24:00", weekdays=[1, 2, 3, 4, 5, 6, 7], tz="UTC")
    assert sla.compute_due(datetime(2025, 6, 2, 23, 0, tzinfo=UTC), 120, evenings) == datetime(2025, 6, 3, 19, 0,
                                                                                               tzinfo=UTC)


def test_new_york_hours_follow_american_dst_dates():
    office = hours("09:00", "17:00", tz="America/New_York")
    # US clocks spring forward on Sunday 9 March 2025 (two weeks before Europe).
    due = sla.compute_due(local(NEW_YORK, 2025, 3, 7, 16, 30), 60, office)
    assert due == datetime(2025, 3, 10, 13, 30, tzinfo=UTC)  # Monday 09:30 EDT (-4)


def test_a_policy_with_no_open_days_in_reach_is_refused():
    closed = hours("09:00", "17:00", weekdays=[1], holidays=[f"20{y}-{m:02d}-{d:02d}" for y in (25, 26, 27, 28)
                                                                  for m in range(1, 13) for d in range(1, 29)][:1000])
    with pytest.raises(ValidationError):
        sla.compute_due(datetime(2025, 1, 1, tzinfo=UTC), 60 * 24 * 400, closed)


@pytest.mark.parametrize(
    ("business_hours", "attr"),
    [
        ({"start": "9:00", "end": "17:00", "timezone": "UTC"}, "business_hours.start"),
        ({"start": "09:00", "end": "25:00", "timezone": "UTC"}, "business_hours.end"),
        ({"start": "09:00", "end": "09:00", "timezone": "UTC"}, "business_hours.end"),
        ({"start": "09:00", "end": "17:00", "timezone": "Mars/Olympus"}, "business_hours.timezone"),
        ({"start": "09:00", "end": "17:00", "timezone": "UTC", "weekdays": [0]}, "business_hours.weekdays"),
        ({"start": "09:00", "end": "17:00", "timezone": "UTC", "holidays": ["Christmas"]}, "business_hours.holidays"),
    ],
)
def test_business_hours_are_validated(business_hours: dict[str, Any], attr: str):
    with pytest.raises(ValidationError) as caught:
        sla.parse_business_hours(business_hours)
    assert caught.value.attr == attr


# -- the policy API --------------------------------------------------------------------------

POLICY = {
    "targets": {
        "critical": {"first_response_minutes": 30, "next_response_minutes": 60},
        "high": {"first_response_minutes": 120},
        "default": {"first_response_minutes": 480, "next_response_minutes": 960},
    },
    "business_hours": {"weekdays": [1, 2, 3, 4, 5], "start": "09:00", "end": "17:00", "timezone": "Europe/Berlin",
                       "holidays": ["2025-12-25"]},
}


def test_a_policy_can_be_put_and_read_back(client, tenant):
    assert client.get(tenant.url("sla_policy"), headers=tenant.headers).json() == {
        "targets": {}, "business_hours": None, "updated_at": None,
    }
    response = client.put(tenant.url("sla_policy"), json=POLICY, headers=tenant.headers)
    assert response.status_code == 200, response.text
    body = client.get(tenant.url("sla_policy/"), headers=tenant.headers).json()
    assert body["targets"]["critical"] == {"first_response_minutes": 30, "next_response_minutes": 60}
    assert body["targets"]["high"] == {"first_response_minutes": 120, "next_response_minutes": None}
    assert body["business_hours"] == POLICY["business_hours"] and body["updated_at"]
    environments = f"/api/environments/{tenant.project_id}/conversations/sla_policy"
    assert client.get(environments, headers=tenant.headers).json() == body


def test_policy_mistakes_are_400_with_the_field_named(client, tenant):
    bad = [
        ({"targets": {"urgent": {"first_response_minutes": 5}}}, "targets"),
        ({"targets": {"high": {"first_response_minutes": 0}}}, "targets.high.first_response_minutes"),
        ({"targets": {"high": {"first_response_minutes": "soon"}}}, "targets.high.first_response_minutes"),
        ({"targets": {}, "business_hours": {"start": "09:00", "end": "17:00", "timezone": "Nowhere"}},
         "business_hours.timezone"),
    ]
    for body, attr in bad:
        response = client.put(tenant.url("sla_policy"), json=body, headers=tenant.headers)
        assert response.status_code == 400 and response.json()["attr"] == attr, body


def test_reading_the_policy_needs_ticket_read_and_changing_it_ticket_write(client, tenant):
    reader = {"Authorization": f"Bearer {make_key(tenant, ['ticket:read'])}"}
    assert client.get(tenant.url("sla_policy"), headers=reader).status_code == 200
    response = client.put(tenant.url("sla_policy"), json=POLICY, headers=reader)
    assert response.status_code == 403 and "ticket:write" in response.json()["detail"]


# -- the hooks -------------------------------------------------------------------------------

@pytest.fixture
def clock() -> Iterator[FrozenClock]:
    # Tuesday 4 March 2025, 10:00 in Berlin.
    frozen = FrozenClock(datetime(2025, 3, 4, 9, 0, tzinfo=UTC))
    previous = use_clock(frozen)
    yield frozen
    use_clock(previous)


def _with_policy(tenant: Any, policy: dict[str, Any] = POLICY) -> None:
    with session_scope() as session:
        sla.set_policy(session=session, project_id=tenant.project_id, targets=policy["targets"],
                       business_hours=policy.get("business_hours"))


def _new_ticket(session: Any, tenant: Any, priority: str | None = None) -> Ticket:
    ticket = create_ticket(session=session, project_id=tenant.project_id, channel_source="widget",
                           channel_detail="widget_api", priority=priority)
    sla.apply_on_new_ticket(session=session, ticket=ticket)
    message = add_customer_message(session=session, ticket=ticket, content="help")
    sla.apply_on_customer_message(session=session, ticket=ticket, message=message)
    return ticket


def _team_reply(session: Any, ticket: Ticket, *, private: bool = False) -> Message:
    message = add_team_message(session=session, ticket=ticket, author=None, content="on it", is_private=private)
    sla.apply_on_team_reply(session=session, ticket=ticket, message=message)
    return message


def _customer(session: Any, ticket: Ticket) -> Message:
    message = add_customer_message(session=session, ticket=ticket, content="more")
    sla.apply_on_customer_message(session=session, ticket=ticket, message=message)
    return message


def test_a_new_ticket_gets_its_first_response_due_date_from_the_policy(db, tenant, clock):
    _with_policy(tenant)
    with session_scope() as session:
        critical = _new_ticket(session, tenant, "critical")
        assert as_utc(critical.sla_due_at) == datetime(2025, 3, 4, 9, 30, tzinfo=UTC)
        unprioritised = _new_ticket(session, tenant)  # "default": 8 business hours → Wednesday 10:00
        assert as_utc(unprioritised.sla_due_at) == datetime(2025, 3, 5, 9, 0, tzinfo=UTC)
        low = _new_ticket(session, tenant, "low")  # no "low" target: the default applies
        assert as_utc(low.sla_due_at) == datetime(2025, 3, 5, 9, 0, tzinfo=UTC)


def test_without_a_policy_tickets_get_no_due_date_and_hand_set_ones_stay(db, tenant, clock):
    with session_scope() as session:
        ticket = _new_ticket(session, tenant, "critical")
        assert ticket.sla_due_at is None
        ticket.sla_due_at = datetime(2025, 3, 9, tzinfo=UTC)
        _team_reply(session, ticket)
        assert as_utc(ticket.sla_due_at) == datetime(2025, 3, 9, tzinfo=UTC)


def test_an_explicit_due_date_on_a_new_ticket_is_kept(db, tenant, clock):
    _with_policy(tenant)
    with session_scope() as session:
        ticket = create_ticket(session=session, project_id=tenant.project_id, priority="critical",
                               sla_due_at=datetime(2025, 3, 20, tzinfo=UTC))
        sla.apply_on_new_ticket(session=session, ticket=ticket)
        assert as_utc(ticket.sla_due_at) == datetime(2025, 3, 20, tzinfo=UTC)


def test_the_first_public_reply_clears_the_clock_and_the_next_customer_message_restarts_it(db, tenant, clock):
    _with_policy(tenant)
    with session_scope() as session:
        ticket = _new_ticket(session, tenant, "critical")
        clock.advance(minutes=10)
        _team_reply(session, ticket, private=True)  # a note answers nobody
        assert as_utc(ticket.sla_due_at) == datetime(2025, 3, 4, 9, 30, tzinfo=UTC)
        _team_reply(session, ticket)
        assert ticket.sla_due_at is None
        clock.advance(minutes=20)
        _customer(session, ticket)  # 10:30 Berlin + 60 min next-response target
        assert as_utc(ticket.sla_due_at) == datetime(2025, 3, 4, 10, 30, tzinfo=UTC)
        clock.advance(minutes=15)
        _customer(session, ticket)  # a second message does not push the running clock back
        assert as_utc(ticket.sla_due_at) == datetime(2025, 3, 4, 10, 30, tzinfo=UTC)
        _team_reply(session, ticket)
        assert ticket.sla_due_at is None


def test_a_priority_without_a_next_response_target_stays_clear_after_the_reply(db, tenant, clock):
    _with_policy(tenant)
    with session_scope() as session:
        ticket = _new_ticket(session, tenant, "high")
        _team_reply(session, ticket)
        _customer(session, ticket)
        assert ticket.sla_due_at is None


def test_a_customer_message_after_hours_is_due_the_next_business_morning(db, tenant, clock):
    _with_policy(tenant)
    clock.set(datetime(2025, 3, 7, 17, 30, tzinfo=UTC))  # Friday 18:30 in Berlin
    with session_scope() as session:
        ticket = _new_ticket(session, tenant, "critical")
        assert as_utc(ticket.sla_due_at) == datetime(2025, 3, 10, 8, 30, tzinfo=UTC)  # Monday 09:30


def test_changing_the_policy_applies_to_the_next_ticket_at_once(db, tenant, clock):
    _with_policy(tenant)
    with session_scope() as session:
        _new_ticket(session, tenant, "critical")
    _with_policy(tenant, {"targets": {"critical": {"first_response_minutes": 5}}})
    with session_scope() as session:
        ticket = _new_ticket(session, tenant, "critical")
        assert as_utc(ticket.sla_due_at) == datetime(2025, 3, 4, 9, 5, tzinfo=UTC)
