"""GET tickets/: every filter, every ordering, paging and the embedded person, on a data set
whose answers are known (eight tickets, one of them deleted, plus another project's ticket)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import update

from core.clock import FrozenClock, use_clock
from core.db import session_scope
from models import Project, Role, Ticket
from services import accounts, ticket_query
from services import tickets as ticket_service
from services.ingest import add_customer_message
from services.persons import upsert_person
from tests.factories import make_tenant, make_ticket

# A Tuesday, so that relative bounds like -1mStart have a known answer.
T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


@dataclass
class Seeded:
    tenant: Any
    other_user_id: int
    role_id: str
    numbers: dict[str, int]  # ticket id → number


@pytest.fixture
def clock() -> Iterator[FrozenClock]:
    frozen = FrozenClock(T0)
    previous = use_clock(frozen)
    yield frozen
    use_clock(previous)


@pytest.fixture
def seeded(client: Any, tenant: Any, clock: FrozenClock) -> Seeded:
    """Tickets 1–8 of the table below (7 is soft-deleted) and a ticket of another project."""
    with session_scope() as session:
        project = session.get_one(Project, tenant.project_id)
        colleague = accounts.get_or_create_user(session=session, email="linus@acme.test", first_name="Linus")
        accounts.add_member(session=session, project=project, user=colleague)
        role = Role(id=uuid.uuid4(), project_id=tenant.project_id, name="Tier 2")
        session.add(role)
        session.flush()
        other_user_id, role_id = colleague.id, role.id
    with session_scope() as session:
        # Grace writes from her address (an email ticket has no distinct id): found by email.
        upsert_person(session=session, project_id=tenant.project_id, distinct_id="grace-web", name="Grace Hopper",
                      email="Grace@Navy.mil")

    def ticket(n: int, *, updated: timedelta, messages: list[str], status: str, **fields: Any) -> str:
        created = make_ticket(tenant.project_id, message=messages[0], **fields)
        assert created["ticket_number"] == n
        with session_scope() as session:
            t = session.get_one(Ticket, uuid.UUID(created["id"]))
            for text in messages[1:]:
                add_customer_message(session=session, ticket=t, content=text)
        with session_scope() as session:
            # Set last: a customer message reopens pending and resolved tickets.
            session.execute(update(Ticket).where(Ticket.id == uuid.UUID(created["id"])).values(
                status=status, updated_at=T0 - updated, created_at=T0 - timedelta(hours=100 - n)))
        return created["id"]

    ids = {
        ticket(1, updated=timedelta(hours=1), messages=["Invoice is wrong"], status="new", priority="low",
               distinct_id="d-ada", customer_name="Ada Lovelace", customer_email="ada@example.com",
               tags=["billing"], sla_due_at=T0 - timedelta(hours=1)): 1,
        ticket(2, updated=timedelta(hours=2), messages=["Moth found in relay", "second msg ok"], status="open",
               priority="high", channel_source="email", channel_detail=None, customer_name="Grace Hopper",
               customer_email="grace@navy.mil", email_subject="Printer on fire", tags=["billing", "urgent"],
               assignee_user_id=tenant.user_id, sla_due_at=T0 + timedelta(minutes=30)): 2,
        ticket(3, updated=timedelta(days=3), messages=["kernel panic"], status="pending", priority="critical",
               channel_source="slack", channel_detail="slack_channel_message", customer_name="Linus Torvalds", tags=["bug"], assignee_user_id=other_user_id,
               sla_due_at=T0 + timedelta(hours=3)): 3,
        ticket(4, updated=timedelta(days=10), messages=["unix pipes 42"], status="resolved", priority=None,
               channel_source="github", channel_detail="github_issue", distinct_id="d-ken",
               customer_name="Ken Thompson", assignee_role_id=role_id): 4,
        ticket(5, updated=timedelta(days=40), messages=["abstraction"], status="on_hold", priority="medium",
               channel_source="teams", channel_detail="teams_bot_mention", distinct_id="d-barbara",
               customer_name="Barbara Liskov", tags=["urgent", "vip"], sla_due_at=T0 - timedelta(days=2),
               snoozed_until=T0 + timedelta(days=1)): 5,
        ticket(6, updated=timedelta(minutes=30), messages=["Hi"], status="open", priority="low",
               distinct_id="d-ada", customer_name="Ada Lovelace", tags=["vip"],
               assignee_user_id=tenant.user_id): 6,
    }
    deleted = ticket(7, updated=timedelta(minutes=1), messages=["Invoice deleted"], status="open",
                     distinct_id="d-ada", tags=["billing"])
    ids[ticket(8, updated=timedelta(minutes=30), messages=["Ticket eight"], status="new",
               distinct_id="d-eight")] = 8
    with session_scope() as session:
        ticket_service.soft_delete(session=session, ticket=session.get_one(Ticket, uuid.UUID(deleted)))
    stranger = make_tenant("Initech", email="boss@initech.test")
    make_ticket(stranger.project_id, message="Invoice from another project", tags=["billing"], distinct_id="d-ada")
    return Seeded(tenant, other_user_id, str(role_id), ids)


def numbers(client: Any, seeded: Seeded, **params: Any) -> list[int]:
    response = client.get(seeded.tenant.url("tickets/"), params=params, headers=seeded.tenant.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    found = [seeded.numbers[r["id"]] for r in body["results"]]
    assert body["count"] == len(found), body["count"]
    return found


def as_set(client: Any, seeded: Seeded, **params: Any) -> set[int]:
    return set(numbers(client, seeded, **params))


ALL = {1, 2, 3, 4, 5, 6, 8}


def test_the_default_list_is_newest_activity_first_without_deleted_or_foreign_tickets(client, seeded):
    assert numbers(client, seeded) == [8, 6, 1, 2, 3, 4, 5]


def test_status_and_priority_are_comma_lists_and_unknown_values_are_dropped(client, seeded):
    assert as_set(client, seeded, status="open") == {2, 6}
    assert as_set(client, seeded, status="open,pending") == {2, 3, 6}
    assert as_set(client, seeded, status="open,bogus") == {2, 6}
    assert as_set(client, seeded, status="bogus") == ALL
    assert as_set(client, seeded, priority="low") == {1, 6}
    assert as_set(client, seeded, priority="high,critical") == {2, 3}
    assert as_set(client, seeded, status="open", priority="low") == {6}


def test_assignee_takes_me_unassigned_users_and_roles_ored(client, seeded):
    assert as_set(client, seeded, assignee="me") == {2, 6}
    assert as_set(client, seeded, assignee="unassigned") == {1, 5, 8}
    assert as_set(client, seeded, assignee=f"user:{seeded.other_user_id}") == {3}
    assert as_set(client, seeded, assignee=f"role:{seeded.role_id}") == {4}
    assert as_set(client, seeded, assignee="me,unassigned") == {1, 2, 5, 6, 8}
    assert as_set(client, seeded, assignee="user:999999") == set()
    assert as_set(client, seeded, assignee=f"me,role:{seeded.role_id}") == {2, 4, 6}


def test_channel_source_and_channel_detail_filter(client, seeded):
    assert as_set(client, seeded, channel_source="email") == {2}
    assert as_set(client, seeded, channel_source="slack,teams") == {3, 5}
    assert as_set(client, seeded, channel_detail="widget_api") == {1, 6, 8}
    assert as_set(client, seeded, channel_source="widget", channel_detail="github_issue") == set()


def test_distinct_ids_and_emails_are_ored(client, seeded):
    assert as_set(client, seeded, distinct_ids="d-ada") == {1, 6}
    assert as_set(client, seeded, distinct_ids="d-ada,d-ken") == {1, 4, 6}
    assert as_set(client, seeded, distinct_ids=json.dumps(["d-ken"])) == {4}
    assert as_set(client, seeded, emails="GRACE@navy.mil") == {2}
    assert as_set(client, seeded, distinct_ids="d-ken", emails="grace@navy.mil") == {2, 4}


def test_date_bounds_take_iso_timestamps_relative_forms_and_all(client, seeded):
    assert as_set(client, seeded, date_from="-24h") == {1, 2, 6, 8}
    assert as_set(client, seeded, date_from="-7d") == {1, 2, 3, 6, 8}
    assert as_set(client, seeded, date_to="-7d") == {4, 5}
    # -1m from 10 March is 10 February; its start is 1 February (ticket 4 was updated 28 Feb).
    assert as_set(client, seeded, date_from="-1mStart") == {1, 2, 3, 4, 6, 8}
    assert as_set(client, seeded, date_from="all") == ALL
    assert as_set(client, seeded, date_from="2026-03-01T00:00:00Z") == {1, 2, 3, 6, 8}
    assert as_set(client, seeded, date_from="-7d", date_to="-90M") == {2, 3}
    response = client.get(seeded.tenant.url("tickets/"), params={"date_from": "last tuesday"},
                          headers=seeded.tenant.headers)
    assert response.status_code == 400 and response.json()["attr"] == "date_from"


def test_sla_splits_breached_at_risk_and_on_track_and_ignores_tickets_without_one(client, seeded, clock):
    assert as_set(client, seeded, sla="breached") == {1, 5}
    assert as_set(client, seeded, sla="at-risk") == {2}
    assert as_set(client, seeded, sla="on-track") == {3}
    clock.advance(minutes=31)  # ticket 2's deadline has now passed
    assert as_set(client, seeded, sla="breached") == {1, 2, 5}
    assert as_set(client, seeded, sla="at-risk") == set()


def test_snoozed_filters_on_snoozed_until(client, seeded):
    assert as_set(client, seeded, snoozed="true") == {5}
    assert as_set(client, seeded, snoozed="false") == ALL - {5}


@pytest.fixture(params=["tag-order", "indexed", "probed"])
def plan(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Tag and text filters have three plans: one tag's links walked in list order
    (ticket_query._Builder.tags_in_list_order), or, when that does not apply, the candidates
    from the filter's index or a walk of the list probing each ticket (SELECTIVE_CANDIDATES).
    All must agree."""
    if request.param != "tag-order":
        monkeypatch.setattr(ticket_query, "_by_updated_at", lambda order_by: False)
    if request.param == "probed":
        monkeypatch.setattr(ticket_query, "SELECTIVE_CANDIDATES", 0)
    return str(request.param)


def test_tags_any_all_and_exclude_take_json_arrays_or_comma_lists(client, seeded, plan):
    assert as_set(client, seeded, tags="billing") == {1, 2}
    assert as_set(client, seeded, tags="BILLING") == {1, 2}
    assert as_set(client, seeded, tags="billing,vip") == {1, 2, 5, 6}
    assert as_set(client, seeded, tags=json.dumps(["billing", "vip"])) == {1, 2, 5, 6}
    assert as_set(client, seeded, tags_all=json.dumps(["billing", "urgent"])) == {2}
    assert as_set(client, seeded, tags_all="urgent,vip") == {5}
    assert as_set(client, seeded, tags_exclude="billing") == ALL - {1, 2}
    assert as_set(client, seeded, tags_exclude=json.dumps(["billing", "vip"])) == {3, 4, 8}
    assert as_set(client, seeded, tags="vip", tags_exclude="urgent") == {6}
    assert as_set(client, seeded, tags="no-such-tag") == set()
    assert as_set(client, seeded, tags_exclude="no-such-tag") == ALL
    assert as_set(client, seeded, tags="billing", status="new") == {1}


def test_tag_and_text_filters_page_and_count_the_same_way_under_either_plan(client, seeded, plan):
    url = seeded.tenant.url("tickets/")
    for params, expected in (
        ({"tags": "billing,vip"}, [6, 1, 2, 5]),
        ({"tags_all": "urgent,vip", "tags": "vip"}, [5]),
        ({"tags": "vip", "tags_all": "vip,urgent", "tags_exclude": "billing"}, [5]),
        ({"tags_exclude": "billing,bug"}, [8, 6, 4, 5]),
        ({"search": "ada lovelace"}, [6, 1]),
        ({"search": "e", "status": "new,open,on_hold"}, [8, 6, 1, 2]),  # not 5: "Barbara Liskov", "abstraction"
    ):
        pages = []
        for offset in range(len(expected) + 1):
            body = client.get(url, params={**params, "limit": 1, "offset": offset},
                              headers=seeded.tenant.headers).json()
            assert body["count"] == len(expected), (params, offset, body["count"])
            pages += [seeded.numbers[r["id"]] for r in body["results"]]
        assert pages == expected, params


def test_a_tag_filter_follows_the_list_order_as_tickets_and_their_tags_change(client, seeded, plan):
    """The tag-order plan reads the order from ticket_tags, where triggers copy it."""
    url, headers = seeded.tenant.url("tickets/"), seeded.tenant.headers

    def tagged(tag: str, **params: str) -> list[int]:
        body = client.get(url, params={"tags": tag, **params}, headers=headers).json()
        return [seeded.numbers[r["id"]] for r in body["results"]]

    before = tagged("billing")
    assert before == [1, 2]
    by_number = {n: i for i, n in seeded.numbers.items()}
    assert client.patch(seeded.tenant.url(f"tickets/{by_number[2]}"), json={"priority": "high"},
                        headers=headers).status_code == 200  # updated now: first in the list
    assert tagged("billing") == [2, 1]
    assert tagged("billing", order_by="updated_at") == [1, 2]
    response = client.post(seeded.tenant.url("tickets/bulk_update_tags"), headers=headers,
                           json={"ids": [by_number[8]], "action": "add", "tags": ["billing"]})
    assert response.status_code == 200
    assert tagged("billing") == [8, 2, 1]
    assert tagged("billing", limit="1", offset="1") == [2]
    assert client.delete(seeded.tenant.url(f"tickets/{by_number[8]}"), headers=headers).status_code == 204
    assert tagged("billing") == [2, 1]
    body = client.get(url, params={"tags": "billing", "limit": "1"}, headers=headers).json()
    assert body["count"] == 2


def test_tag_intersections_hold_for_a_ticket_with_more_tags_than_its_links_list(client, seeded, plan):
    """Past TAG_SET_MAX tags a link's tag_set is NULL and the tag-order plan asks the links."""
    from models.ticket import TAG_SET_MAX

    by_number = {n: i for i, n in seeded.numbers.items()}
    many = ["vip", "billing", "urgent"] + [f"filler-{i}" for i in range(TAG_SET_MAX)]
    response = client.patch(seeded.tenant.url(f"tickets/{by_number[6]}"), json={"tags": many},
                            headers=seeded.tenant.headers)
    assert response.status_code == 200
    assert as_set(client, seeded, tags_all="billing,urgent") == {2, 6}
    assert as_set(client, seeded, tags_all="vip,urgent") == {5, 6}
    assert as_set(client, seeded, tags="vip", tags_exclude="urgent") == set()
    assert as_set(client, seeded, tags="filler-3", tags_exclude="billing") == set()
    assert as_set(client, seeded, tags="urgent", tags_exclude="filler-3") == {2, 5}


def test_a_search_for_digits_matches_the_ticket_number_exactly(client, seeded):
    assert numbers(client, seeded, search="#3") == [3]
    assert numbers(client, seeded, search="3") == [3]
    assert numbers(client, seeded, search="7") == []  # deleted
    assert numbers(client, seeded, search="42") == []  # in a message, but digits mean a number


def test_a_text_search_looks_at_names_emails_subjects_and_every_message(client, seeded, plan):
    assert as_set(client, seeded, search="invoice") == {1}
    assert as_set(client, seeded, search="HOPPER") == {2}
    assert as_set(client, seeded, search="navy.mil") == {2}
    assert as_set(client, seeded, search="printer on") == {2}
    assert as_set(client, seeded, search="msg ok") == {2}  # the second message of the ticket
    assert as_set(client, seeded, search="ada lovelace") == {1, 6}
    assert as_set(client, seeded, search="panic", status="pending") == {3}
    assert as_set(client, seeded, search="panic", status="open") == set()
    assert as_set(client, seeded, search="no such words") == set()


def test_a_search_shorter_than_three_characters_is_a_substring_match_too(client, seeded):
    assert as_set(client, seeded, search="hi") == {6}
    assert as_set(client, seeded, search="42x") == set()


def test_search_wildcards_are_taken_literally(client, seeded, plan):
    assert as_set(client, seeded, search="%") == set()
    assert as_set(client, seeded, search="_") == set()
    assert as_set(client, seeded, search="in%ice") == set()
    assert as_set(client, seeded, search='"invoice') == set()


def test_an_over_long_search_is_refused(client, seeded):
    response = client.get(seeded.tenant.url("tickets/"), params={"search": "x" * 201}, headers=seeded.tenant.headers)
    assert response.status_code == 400 and response.json()["attr"] == "search"


@pytest.mark.parametrize(
    ("order_by", "expected"),
    [
        (None, [8, 6, 1, 2, 3, 4, 5]),
        ("-updated_at", [8, 6, 1, 2, 3, 4, 5]),
        # Ties (6 and 8 share updated_at) are broken by -ticket_number in both directions.
        ("updated_at", [5, 4, 3, 2, 1, 8, 6]),
        ("created_at", [1, 2, 3, 4, 5, 6, 8]),
        ("-created_at", [8, 6, 5, 4, 3, 2, 1]),
        ("ticket_number", [1, 2, 3, 4, 5, 6, 8]),
        ("-ticket_number", [8, 6, 5, 4, 3, 2, 1]),
        # Tickets without an SLA come last either way.
        ("sla_due_at", [5, 1, 2, 3, 8, 6, 4]),
        ("-sla_due_at", [3, 2, 1, 5, 8, 6, 4]),
        ("bogus", [8, 6, 1, 2, 3, 4, 5]),
    ],
)
def test_order_by_sorts_with_the_ticket_number_as_tie_break(client, seeded, order_by, expected):
    params = {"order_by": order_by} if order_by else {}
    assert numbers(client, seeded, **params) == expected


def test_limit_and_offset_page_through_with_count_next_and_previous(client, seeded):
    url = seeded.tenant.url("tickets/")
    first = client.get(url, params={"limit": 3}, headers=seeded.tenant.headers).json()
    assert first["count"] == 7 and first["previous"] is None
    assert [seeded.numbers[r["id"]] for r in first["results"]] == [8, 6, 1]
    following = parse_qs(urlsplit(first["next"]).query)
    assert following["limit"] == ["3"] and following["offset"] == ["3"]
    second = client.get(first["next"], headers=seeded.tenant.headers).json()
    assert [seeded.numbers[r["id"]] for r in second["results"]] == [2, 3, 4]
    assert second["count"] == 7 and parse_qs(urlsplit(second["previous"]).query)["offset"] == ["0"]
    last = client.get(second["next"], headers=seeded.tenant.headers).json()
    assert [seeded.numbers[r["id"]] for r in last["results"]] == [5] and last["next"] is None
    assert last["count"] == 7
    beyond = client.get(url, params={"offset": 50}, headers=seeded.tenant.headers).json()
    assert beyond["results"] == [] and beyond["count"] == 7 and beyond["next"] is None
    # Filters are kept in the page links.
    filtered = client.get(url, params={"status": "open,new", "limit": 1}, headers=seeded.tenant.headers).json()
    assert filtered["count"] == 4 and "status=open%2Cnew" in filtered["next"]


def test_limit_is_clamped_and_a_non_integer_is_refused(client, seeded):
    url = seeded.tenant.url("tickets/")
    assert len(client.get(url, params={"limit": 0}, headers=seeded.tenant.headers).json()["results"]) == 1
    assert len(client.get(url, params={"limit": 5000}, headers=seeded.tenant.headers).json()["results"]) == 7
    for name in ("limit", "offset"):
        response = client.get(url, params={name: "ten"}, headers=seeded.tenant.headers)
        assert response.status_code == 400 and response.json()["attr"] == name


def test_the_count_is_exact_up_to_the_cap_and_capped_beyond_it(client, seeded, monkeypatch):
    monkeypatch.setattr(ticket_query, "COUNT_CAP", 4)
    url = seeded.tenant.url("tickets/")
    page = client.get(url, params={"limit": 2}, headers=seeded.tenant.headers).json()
    assert page["count"] == 4 and page["next"]
    assert client.get(url, params={"limit": 2, "status": "open,new"}, headers=seeded.tenant.headers).json()[
        "count"] == 4
    assert client.get(url, params={"limit": 2, "status": "open"}, headers=seeded.tenant.headers).json()["count"] == 2
    # Deep pages never report fewer tickets than they have shown.
    deep = client.get(url, params={"limit": 2, "offset": 5}, headers=seeded.tenant.headers).json()
    assert deep["count"] == 7 and deep["next"] is None


def test_each_result_embeds_its_person_by_distinct_id_or_by_email(client, seeded):
    body = client.get(seeded.tenant.url("tickets/"), headers=seeded.tenant.headers).json()
    by_number = {seeded.numbers[r["id"]]: r for r in body["results"]}
    ada = by_number[1]["person"]
    assert ada["name"] == "Ada Lovelace" and ada["distinct_ids"] == ["d-ada"]
    assert ada["properties"]["email"] == "ada@example.com" and ada["is_identified"] is False
    assert by_number[6]["person"]["id"] == ada["id"]
    grace = by_number[2]["person"]
    assert grace["name"] == "Grace Hopper" and grace["distinct_ids"] == ["grace-web"]
    assert by_number[4]["person"]["name"] == "Ken Thompson"
    assert by_number[3]["person"] is None  # neither a distinct id nor an email
    assert by_number[2]["assignee"]["type"] == "user" and by_number[2]["assignee"]["user"]["id"] == seeded.tenant.user_id
    assert by_number[4]["assignee"] == {"id": seeded.role_id, "type": "role", "user": None,
                                        "role": {"id": seeded.role_id, "name": "Tier 2"}}
    assert by_number[2]["tags"] == ["billing", "urgent"] and by_number[2]["message_count"] == 2
    assert by_number[2]["last_message_text"] == "second msg ok"


def test_a_list_item_has_every_field_of_the_seed(client, seeded):
    item = client.get(seeded.tenant.url("tickets/"), params={"limit": 1}, headers=seeded.tenant.headers).json()[
        "results"][0]
    seed_fields = {
        "id", "ticket_number", "channel_source", "channel_detail", "distinct_id", "status", "priority", "assignee",
        "anonymous_traits", "ai_resolved", "escalation_reason", "ai_triage", "created_at", "updated_at",
        "message_count", "last_message_at", "last_message_text", "unread_team_count", "unread_customer_count",
        "session_id", "session_context", "sla_due_at", "snoozed_until", "slack_channel_id", "slack_thread_ts",
        "slack_team_id", "email_subject", "email_from", "email_to", "cc_participants", "github_repo",
        "github_issue_number", "person", "tags",
    }
    assert seed_fields <= set(item)
    assert item["updated_at"] == "2026-03-10T11:30:00Z"
