"""Create, retrieve (by UUID or number, marking read), update (snooze ↔ status, assignee,
tags), soft delete with the 14-day purge, and the paginated message thread."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from core.clock import FrozenClock, use_clock
from core.db import session_scope
from models import Delivery, Message, Project, Role, Ticket, TicketTag
from services import tickets as ticket_service
from services.ingest import add_customer_message
from tests.factories import make_ticket

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> Iterator[FrozenClock]:
    frozen = FrozenClock(T0)
    previous = use_clock(frozen)
    yield frozen
    use_clock(previous)


def _get(client: Any, tenant: Any, ref: Any) -> Any:
    return client.get(tenant.url(f"tickets/{ref}"), headers=tenant.headers)


def _patch(client: Any, tenant: Any, ref: Any, **body: Any) -> Any:
    return client.patch(tenant.url(f"tickets/{ref}"), json=body, headers=tenant.headers)


def _ticket_row(ticket_id: str) -> Ticket:
    with session_scope() as session:
        return session.get_one(Ticket, uuid.UUID(ticket_id))


# -- create --------------------------------------------------------------------------------


def test_creating_a_ticket_defaults_to_a_new_widget_api_ticket(client, tenant, clock):
    response = client.post(tenant.url("tickets"), json={}, headers=tenant.headers)
    assert response.status_code == 201
    body = response.json()
    assert body["ticket_number"] == 1 and body["status"] == "new"
    assert body["channel_source"] == "widget" and body["channel_detail"] == "widget_api"
    assert body["created_at"] == "2026-03-10T12:00:00Z" and body["tags"] == [] and body["assignee"] is None
    assert body["message_count"] == 0 and body["person"] is None


def test_creating_a_ticket_takes_triage_fields_a_first_message_and_a_person(client, tenant, clock):
    response = client.post(tenant.url("tickets/"), json={
        "channel_source": "slack", "channel_detail": "slack_bot_mention", "status": "open", "priority": "high",
        "distinct_id": "u-1", "customer_name": "Ada", "customer_email": "Ada@Example.com", "message": "Help!",
        "tags": [" Billing ", "billing"], "assignee": {"type": "user", "id": tenant.user_id},
        "sla_due_at": "2026-03-11T12:00:00+02:00",
    }, headers=tenant.headers)
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["status"], body["priority"], body["channel_detail"]) == ("open", "high", "slack_bot_mention")
    assert body["tags"] == ["billing"] and body["assignee"]["id"] == tenant.user_id
    assert body["sla_due_at"] == "2026-03-11T10:00:00Z"
    assert body["message_count"] == 1 and body["unread_team_count"] == 1 and body["last_message_text"] == "Help!"
    assert body["person"]["name"] == "Ada" and body["person"]["distinct_ids"] == ["u-1"]


def test_snoozing_at_creation_puts_the_ticket_on_hold_unless_a_status_is_given(client, tenant):
    snoozed = client.post(tenant.url("tickets/"), json={"snoozed_until": "2030-01-01T00:00:00Z"},
                          headers=tenant.headers).json()
    assert snoozed["status"] == "on_hold"
    explicit = client.post(tenant.url("tickets/"), json={"snoozed_until": "2030-01-01T00:00:00Z", "status": "pending"},
                           headers=tenant.headers).json()
    assert explicit["status"] == "pending"


def test_a_failed_create_writes_nothing_and_burns_no_number(client, tenant):
    response = client.post(tenant.url("tickets/"), json={"message": "hi", "tags": ["x" * 256]}, headers=tenant.headers)
    assert response.status_code == 400 and response.json()["attr"] == "tags"
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Ticket)) == 0
        assert session.scalar(select(func.count()).select_from(Message)) == 0
    assert client.post(tenant.url("tickets/"), json={}, headers=tenant.headers).json()["ticket_number"] == 1


def test_an_unknown_enum_at_creation_is_a_400_naming_the_field(client, tenant):
    for field, value in (("status", "closed"), ("priority", "urgent"), ("channel_source", "fax"),
                         ("channel_detail", "carrier_pigeon")):
        response = client.post(tenant.url("tickets/"), json={field: value}, headers=tenant.headers)
        assert response.status_code == 400, field
        assert response.json()["attr"] == field and response.json()["type"] == "validation_error"


# -- retrieve ------------------------------------------------------------------------------


def test_a_ticket_is_found_by_uuid_by_number_and_by_hash_number(client, tenant):
    made = make_ticket(tenant.project_id)
    for ref in (made["id"], made["ticket_number"], f"%23{made['ticket_number']}"):
        response = _get(client, tenant, ref)
        assert response.status_code == 200 and response.json()["id"] == made["id"], ref


def test_reading_a_ticket_marks_it_read_by_the_team_without_touching_updated_at(client, tenant):
    made = make_ticket(tenant.project_id, message="one")
    with session_scope() as session:
        ticket = session.get_one(Ticket, uuid.UUID(made["id"]))
        add_customer_message(session=session, ticket=ticket, content="two")
    before = _ticket_row(made["id"])
    assert before.unread_team_count == 2
    first = _get(client, tenant, made["ticket_number"]).json()
    assert first["unread_team_count"] == 0
    after = _ticket_row(made["id"])
    assert after.unread_team_count == 0 and after.updated_at == before.updated_at


def test_unknown_and_malformed_ticket_ids_are_404(client, tenant):
    make_ticket(tenant.project_id)
    for ref in (uuid.uuid4(), 999, "not-a-ticket", "²", "1" * 40, "-1"):
        for method in ("get", "patch", "delete"):
            kwargs = {"json": {}} if method == "patch" else {}
            response = getattr(client, method)(tenant.url(f"tickets/{ref}"), headers=tenant.headers, **kwargs)
            assert response.status_code == 404, (ref, method)
            assert response.json()["code"] == "not_found"


# -- update --------------------------------------------------------------------------------


def test_snoozing_moves_to_on_hold_and_unsnoozing_back_to_open(client, tenant):
    made = make_ticket(tenant.project_id)
    snoozed = _patch(client, tenant, made["id"], snoozed_until="2030-01-01T09:00:00Z").json()
    assert snoozed["status"] == "on_hold" and snoozed["snoozed_until"] == "2030-01-01T09:00:00Z"
    moved = _patch(client, tenant, made["id"], snoozed_until="2030-02-01T09:00:00Z").json()
    assert moved["status"] == "on_hold"  # re-snoozing is not a transition
    _patch(client, tenant, made["id"], status="pending")
    still = _patch(client, tenant, made["id"], snoozed_until="2030-03-01T09:00:00Z").json()
    assert still["status"] == "pending"
    woken = _patch(client, tenant, made["id"], snoozed_until=None).json()
    assert woken["status"] == "open" and woken["snoozed_until"] is None


def test_an_explicit_status_wins_over_the_snooze_rule(client, tenant):
    made = make_ticket(tenant.project_id)
    both = _patch(client, tenant, made["id"], snoozed_until="2030-01-01T00:00:00Z", status="pending").json()
    assert both["status"] == "pending"
    cleared = _patch(client, tenant, made["id"], snoozed_until=None, status="resolved").json()
    assert cleared["status"] == "resolved" and cleared["snoozed_until"] is None
    untouched = _patch(client, tenant, made["id"], snoozed_until=None).json()
    assert untouched["status"] == "resolved"  # it was not snoozed: clearing changes nothing


def test_an_update_changes_the_triage_fields(client, tenant, clock):
    made = make_ticket(tenant.project_id)
    clock.advance(minutes=5)
    body = _patch(client, tenant, made["ticket_number"], priority="critical", ai_resolved=True,
                  escalation_reason="angry", anonymous_traits={"plan": "pro"}, sla_due_at="2026-03-10T13:00:00Z").json()
    assert body["priority"] == "critical" and body["ai_resolved"] is True and body["escalation_reason"] == "angry"
    assert body["anonymous_traits"] == {"plan": "pro"} and body["sla_due_at"] == "2026-03-10T13:00:00Z"
    assert body["updated_at"] == "2026-03-10T12:05:00Z"
    cleared = _patch(client, tenant, made["id"], priority=None, sla_due_at=None, escalation_reason=None).json()
    assert cleared["priority"] is None and cleared["sla_due_at"] is None and cleared["escalation_reason"] is None


def test_assignee_may_be_a_project_member_or_a_project_role_or_null(client, tenant, other_tenant):
    made = make_ticket(tenant.project_id)
    with session_scope() as session:
        role = Role(id=uuid.uuid4(), project_id=tenant.project_id, name="Billing team")
        foreign_role = Role(id=uuid.uuid4(), project_id=other_tenant.project_id, name="Their team")
        session.add_all([role, foreign_role])
        role_id, foreign_role_id = str(role.id), str(foreign_role.id)
    user = _patch(client, tenant, made["id"], assignee={"type": "user", "id": tenant.user_id}).json()["assignee"]
    assert user["type"] == "user" and user["id"] == tenant.user_id and user["user"]["email"] == "agent@acme.test"
    assert user["role"] is None
    by_role = _patch(client, tenant, made["id"], assignee={"type": "role", "id": role_id}).json()["assignee"]
    assert by_role == {"id": role_id, "type": "role", "user": None, "role": {"id": role_id, "name": "Billing team"}}
    assert _patch(client, tenant, made["id"], assignee=None).json()["assignee"] is None
    for bad in ({"type": "user", "id": other_tenant.user_id}, {"type": "user", "id": 10**12},
                {"type": "role", "id": foreign_role_id}, {"type": "role", "id": "nope"},
                {"type": "team", "id": 1}, {"type": "user", "id": "abc"}):
        response = _patch(client, tenant, made["id"], assignee=bad)
        assert response.status_code == 400, bad
        assert response.json()["attr"].startswith("assignee"), response.json()


def test_tags_in_an_update_replace_the_set_trimmed_and_lower_cased(client, tenant):
    made = make_ticket(tenant.project_id, tags=["old"])
    assert _patch(client, tenant, made["id"], tags=[" Billing", "VIP ", "vip", ""]).json()["tags"] == ["billing", "vip"]
    assert _patch(client, tenant, made["id"], tags=["urgent"]).json()["tags"] == ["urgent"]
    assert _patch(client, tenant, made["id"], tags=[]).json()["tags"] == []


def test_a_rejected_update_changes_nothing(client, tenant):
    made = make_ticket(tenant.project_id, tags=["keep"])
    response = _patch(client, tenant, made["id"], status="resolved", priority="high", tags=["new"],
                      assignee={"type": "user", "id": 10**9})
    assert response.status_code == 400 and response.json()["attr"] == "assignee"
    row = _ticket_row(made["id"])
    assert row.status == "new" and row.priority is None
    assert _get(client, tenant, made["id"]).json()["tags"] == ["keep"]


def test_bad_update_values_are_400_with_the_field_in_attr(client, tenant):
    made = make_ticket(tenant.project_id)
    cases = {
        "status": "closed", "priority": "urgent", "snoozed_until": "tomorrow", "sla_due_at": "soon",
        "ai_resolved": "maybe", "tags": "billing", "anonymous_traits": [1],
    }
    for field, value in cases.items():
        response = _patch(client, tenant, made["id"], **{field: value})
        assert response.status_code == 400, field
        assert response.json()["attr"].split(".")[0] == field, response.json()
    for field in ("status", "ai_resolved", "tags"):
        response = _patch(client, tenant, made["id"], **{field: None})
        assert response.status_code == 400 and response.json()["attr"] == field, field
    far = _patch(client, tenant, made["id"], snoozed_until="9999-12-31T23:59:59-14:00")
    assert far.status_code == 400 and far.json()["attr"] == "snoozed_until"


# -- delete and purge ----------------------------------------------------------------------


def test_a_deleted_ticket_is_hidden_from_every_endpoint(client, tenant):
    made = make_ticket(tenant.project_id, tags=["billing"])
    assert client.delete(tenant.url(f"tickets/{made['id']}"), headers=tenant.headers).status_code == 204
    assert _get(client, tenant, made["id"]).status_code == 404
    assert _get(client, tenant, made["ticket_number"]).status_code == 404
    assert _patch(client, tenant, made["id"], status="open").status_code == 404
    assert client.delete(tenant.url(f"tickets/{made['id']}"), headers=tenant.headers).status_code == 404
    assert client.get(tenant.url(f"tickets/{made['id']}/messages"), headers=tenant.headers).status_code == 404
    reply = client.post(tenant.url(f"tickets/{made['id']}/reply"), json={"message": "hi"}, headers=tenant.headers)
    assert reply.status_code == 404
    listed = client.get(tenant.url("tickets/"), params={"tags": "billing"}, headers=tenant.headers).json()
    assert listed["count"] == 0
    assert client.get(tenant.url("tickets/"), params={"search": str(made["ticket_number"])},
                      headers=tenant.headers).json()["count"] == 0
    bulk = client.post(tenant.url("tickets/bulk_update_status"), json={"ids": [made["id"]], "status": "open"},
                       headers=tenant.headers).json()
    assert bulk == {"updated": 0, "ids": []}
    # Numbers are never reused.
    assert client.post(tenant.url("tickets/"), json={}, headers=tenant.headers).json()["ticket_number"] == 2


def test_deleted_tickets_are_purged_with_their_rows_after_fourteen_days(client, tenant, clock):
    gone = make_ticket(tenant.project_id, tags=["billing"])
    kept = make_ticket(tenant.project_id)
    reply = client.post(tenant.url(f"tickets/{gone['id']}/reply"), json={"message": "on it"}, headers=tenant.headers)
    assert reply.status_code == 201
    client.delete(tenant.url(f"tickets/{gone['id']}"), headers=tenant.headers)
    clock.advance(days=13, hours=23)
    with session_scope() as session:
        assert ticket_service.purge_deleted(session=session) == 0
    clock.advance(hours=2)
    with session_scope() as session:
        assert ticket_service.purge_deleted(session=session) == 1
    with session_scope() as session:
        gone_id = uuid.UUID(gone["id"])
        assert session.get(Ticket, gone_id) is None
        for model in (Message, Delivery, TicketTag):
            assert session.scalar(select(func.count()).select_from(model).where(model.ticket_id == gone_id)) == 0
        assert session.get(Ticket, uuid.UUID(kept["id"])) is not None
    with session_scope() as session:
        assert ticket_service.purge_deleted(session=session) == 0


# -- messages ------------------------------------------------------------------------------


def test_messages_are_chronological_paginated_and_include_private_notes(client, tenant, clock):
    made = make_ticket(tenant.project_id, message="first")
    for text, private in (("second", False), ("a note", True), ("fourth", False), ("fifth", True)):
        clock.advance(seconds=1)
        response = client.post(tenant.url(f"tickets/{made['id']}/reply"), json={"message": text, "is_private": private},
                               headers=tenant.headers)
        assert response.status_code == 201
    url = tenant.url(f"tickets/{made['ticket_number']}/messages")
    page = client.get(url, params={"limit": 2}, headers=tenant.headers).json()
    assert page["count"] == 5 and page["previous"] is None
    assert [m["content"] for m in page["results"]] == ["first", "second"]
    second = client.get(page["next"], headers=tenant.headers).json()
    assert [m["content"] for m in second["results"]] == ["a note", "fourth"]
    third = client.get(second["next"], headers=tenant.headers).json()
    assert [m["content"] for m in third["results"]] == ["fifth"] and third["next"] is None
    note = second["results"][0]
    assert note["is_private"] is True and note["message_type"] == "internal_note" and note["delivery_status"] is None
    assert note["author_type"] == "support" and note["author_name"] == "Ada Agent"
    customer = page["results"][0]
    assert customer["author_type"] == "customer" and customer["message_type"] == "customer_message"
    everything = client.get(url, params={"limit": 500}, headers=tenant.headers).json()
    assert len(everything["results"]) == 5  # limit is clamped to 200, not refused


def test_private_notes_do_not_move_the_public_counters(client, tenant):
    made = make_ticket(tenant.project_id, message="question")
    client.post(tenant.url(f"tickets/{made['id']}/reply"), json={"message": "internal", "is_private": True},
                headers=tenant.headers)
    body = _get(client, tenant, made["id"]).json()
    assert body["message_count"] == 1 and body["last_message_text"] == "question"
    assert body["unread_customer_count"] == 0
    client.post(tenant.url(f"tickets/{made['id']}/reply"), json={"message": "answer"}, headers=tenant.headers)
    body = _get(client, tenant, made["id"]).json()
    assert body["message_count"] == 2 and body["last_message_text"] == "answer"
    assert body["unread_customer_count"] == 1


def test_a_customer_message_reopens_a_resolved_or_pending_ticket(client, tenant):
    for status in ("resolved", "pending"):
        made = make_ticket(tenant.project_id, message=None, status=status)
        with session_scope() as session:
            ticket = session.get_one(Ticket, uuid.UUID(made["id"]))
            add_customer_message(session=session, ticket=ticket, content="still broken")
        assert _ticket_row(made["id"]).status == "open"


def test_number_lookups_never_cross_projects(client, tenant, other_tenant):
    theirs = make_ticket(other_tenant.project_id)
    assert theirs["ticket_number"] == 1
    assert _get(client, tenant, 1).status_code == 404
    assert _get(client, tenant, theirs["id"]).status_code == 404
    mine = make_ticket(tenant.project_id)
    assert _get(client, tenant, 1).json()["id"] == mine["id"]
    with session_scope() as session:
        assert session.get_one(Project, tenant.project_id).ticket_seq == 1
