"""PATCH tickets/{id}/messages/{message_id}: a team member edits their own public reply, and the
edit goes to the channel where the channel allows it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from channels.base import DeliveryResult, DeliveryStatus
from core.clock import FrozenClock, use_clock
from core.db import session_scope
from models import Delivery
from services import deliveries, dispatch
from tests.factories import make_key, make_tenant, make_ticket

DETAILS = {"slack": "slack_channel_message", "github": "github_issue", "teams": "teams_channel_message",
           "email": None, "widget": "widget_api"}


@pytest.fixture
def dispatched() -> Iterator[list[tuple[str, str]]]:
    """What services handed to the workers after commit, in order."""
    sent: list[tuple[str, str]] = []
    previous = dispatch._dispatcher
    dispatch.install_dispatcher(lambda kind, object_id: sent.append((kind, object_id)))
    yield sent
    dispatch.install_dispatcher(previous)


def _ticket(tenant: Any, channel: str) -> dict[str, Any]:
    return make_ticket(tenant.project_id, channel_source=channel, channel_detail=DETAILS[channel])


def _reply(client: Any, tenant: Any, ticket: dict[str, Any], text: str = "We are looking into it") -> dict[str, Any]:
    response = client.post(tenant.url(f"tickets/{ticket['id']}/reply"), json={"message": text}, headers=tenant.headers)
    assert response.status_code == 201, response.text
    return response.json()


def _edit(client: Any, tenant: Any, ticket: dict[str, Any], message_id: str, **body: Any) -> Any:
    return client.patch(tenant.url(f"tickets/{ticket['id']}/messages/{message_id}/"),
                        json={"message": "We found the cause", **body}, headers=tenant.headers)


def _delivery_id(message_id: str) -> uuid.UUID:
    with session_scope(read_only=True) as session:
        return session.scalars(select(Delivery.id).where(Delivery.message_id == uuid.UUID(message_id))).one()


def _claim(message_id: str) -> deliveries.Claim:
    with session_scope() as session:
        claim = deliveries.claim(session=session, delivery_id=_delivery_id(message_id), worker_id="test-worker")
        assert claim is not None
        return claim


def _record(message_id: str, result: DeliveryResult) -> None:
    with session_scope() as session:
        deliveries.record_result(session=session, delivery_id=_delivery_id(message_id), result=result)


def _deliver(message_id: str) -> None:
    _claim(message_id)
    _record(message_id, DeliveryResult.delivered("vendor-1"))


def _messages(client: Any, tenant: Any, ticket: dict[str, Any]) -> list[dict[str, Any]]:
    return client.get(tenant.url(f"tickets/{ticket['id']}/messages"), headers=tenant.headers).json()["results"]


@pytest.mark.parametrize("channel", ["slack", "github", "teams"])
def test_a_delivered_reply_is_edited_at_a_channel_that_allows_edits(client, tenant, dispatched, channel):
    clock = FrozenClock()
    previous = use_clock(clock)
    try:
        ticket = _ticket(tenant, channel)
        reply = _reply(client, tenant, ticket)
        _deliver(reply["id"])
        dispatched.clear()
        clock.advance(minutes=2)
        response = _edit(client, tenant, ticket, reply["id"], rich_content={"type": "doc"})
    finally:
        use_clock(previous)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["edit_status"] == "pending_channel_edit"
    assert body["id"] == reply["id"] and body["version"] == 2
    assert body["content"] == "We found the cause" and body["rich_content"] == {"type": "doc"}
    assert body["updated_at"] > reply["updated_at"] and body["delivery_status"] == "sent"
    assert dispatched == [("edit", reply["id"])]
    assert {m["id"]: m["version"] for m in _messages(client, tenant, ticket)}[reply["id"]] == 2


def test_an_email_reply_already_sent_cannot_be_edited_and_the_team_is_told(client, tenant, dispatched):
    ticket = _ticket(tenant, "email")
    reply = _reply(client, tenant, ticket)
    _deliver(reply["id"])
    dispatched.clear()
    response = _edit(client, tenant, ticket, reply["id"])
    assert response.status_code == 200, response.text
    assert response.json()["edit_status"] == "not_supported_by_channel"
    assert response.json()["content"] == "We found the cause" and response.json()["version"] == 2
    assert not [d for d in dispatched if d[0] == "edit"]
    note = _messages(client, tenant, ticket)[-1]
    assert note["is_private"] is True and note["author_type"] == "system"
    assert note["message_type"] == "internal_note"
    assert "already has the original" in note["content"]
    assert client.get(tenant.url(f"tickets/{ticket['id']}"), headers=tenant.headers).json()["message_count"] == 2


def test_a_reply_not_sent_yet_is_sent_with_the_edited_text(client, tenant, dispatched):
    ticket = _ticket(tenant, "slack")
    reply = _reply(client, tenant, ticket)
    response = _edit(client, tenant, ticket, reply["id"])
    assert response.status_code == 200 and response.json()["edit_status"] == "not_delivered_yet"
    assert response.json()["delivery_status"] == "pending"
    assert not [d for d in dispatched if d[0] == "edit"]
    assert _claim(reply["id"]).reply.text == "We found the cause"


def test_a_failed_reply_is_not_delivered_yet_and_a_retry_sends_the_edit(client, tenant, dispatched):
    ticket = _ticket(tenant, "email")
    reply = _reply(client, tenant, ticket)
    _claim(reply["id"])
    _record(reply["id"], DeliveryResult(DeliveryStatus.FAILED, error_code="mailbox_not_found", error_detail="550"))
    response = _edit(client, tenant, ticket, reply["id"])
    assert response.json()["edit_status"] == "not_delivered_yet"
    assert not any("original" in m["content"] for m in _messages(client, tenant, ticket))
    retried = client.post(tenant.url(f"tickets/{ticket['id']}/messages/{reply['id']}/retry"), headers=tenant.headers)
    assert retried.status_code == 202, retried.text
    assert _claim(reply["id"]).reply.text == "We found the cause"


def test_a_reply_being_sent_is_treated_as_delivered(client, tenant, dispatched):
    slack = _ticket(tenant, "slack")
    slack_reply = _reply(client, tenant, slack)
    _claim(slack_reply["id"])
    assert _edit(client, tenant, slack, slack_reply["id"]).json()["edit_status"] == "pending_channel_edit"
    assert ("edit", slack_reply["id"]) in dispatched
    email = _ticket(tenant, "email")
    email_reply = _reply(client, tenant, email)
    _claim(email_reply["id"])
    assert _edit(client, tenant, email, email_reply["id"]).json()["edit_status"] == "not_supported_by_channel"
    assert "may already have the original" in _messages(client, tenant, email)[-1]["content"]


def test_a_widget_reply_is_edited_in_place_because_the_widget_reads_our_store(client, tenant, dispatched):
    ticket = _ticket(tenant, "widget")
    reply = _reply(client, tenant, ticket)
    _deliver(reply["id"])
    response = _edit(client, tenant, ticket, reply["id"])
    assert response.json()["edit_status"] == "applied"
    assert not [d for d in dispatched if d[0] == "edit"]


def test_editing_the_latest_reply_updates_the_tickets_last_message_text(client, tenant):
    ticket = _ticket(tenant, "slack")
    first = _reply(client, tenant, ticket, "First answer")
    _reply(client, tenant, ticket, "Second answer")
    _edit(client, tenant, ticket, first["id"])
    shown = client.get(tenant.url(f"tickets/{ticket['id']}"), headers=tenant.headers).json()
    assert shown["last_message_text"] == "Second answer"
    latest = _messages(client, tenant, ticket)[-1]
    _edit(client, tenant, ticket, latest["id"], message="Second answer, corrected")
    shown = client.get(tenant.url(f"tickets/{ticket['id']}"), headers=tenant.headers).json()
    assert shown["last_message_text"] == "Second answer, corrected"


def test_another_team_members_reply_cannot_be_edited(client, tenant):
    teammate = make_tenant("Acme", email="teammate@acme.test")
    ticket = _ticket(tenant, "slack")
    reply = _reply(client, tenant, ticket)
    response = _edit(client, teammate, ticket, reply["id"])
    assert response.status_code == 403, response.text
    assert response.json()["code"] == "not_message_author"


def test_a_customer_message_cannot_be_edited_by_the_team(client, tenant):
    ticket = _ticket(tenant, "slack")
    customer = _messages(client, tenant, ticket)[0]
    response = _edit(client, tenant, ticket, customer["id"])
    assert response.status_code == 400 and response.json()["code"] == "not_team_message"


def test_a_private_note_is_edited_through_the_notes_endpoint_instead(client, tenant):
    ticket = _ticket(tenant, "slack")
    note = client.post(tenant.url(f"tickets/{ticket['id']}/notes"), json={"message": "internal"},
                       headers=tenant.headers).json()
    response = _edit(client, tenant, ticket, note["id"])
    assert response.status_code == 400 and response.json()["code"] == "not_public_reply"


def test_an_unknown_or_deleted_message_is_not_found(client, tenant):
    ticket = _ticket(tenant, "slack")
    other = _ticket(tenant, "slack")
    reply = _reply(client, tenant, ticket)
    note = client.post(tenant.url(f"tickets/{ticket['id']}/notes"), json={"message": "internal"},
                       headers=tenant.headers).json()
    client.delete(tenant.url(f"tickets/{ticket['id']}/notes/{note['id']}"), headers=tenant.headers)
    for ticket_ref, message_id in ((ticket, str(uuid.uuid4())), (ticket, "nope"), (other, reply["id"]),
                                   (ticket, note["id"])):
        response = _edit(client, tenant, ticket_ref, message_id)
        assert response.status_code == 404 and response.json()["code"] == "message_not_found"


def test_an_edit_must_keep_a_message(client, tenant):
    ticket = _ticket(tenant, "slack")
    reply = _reply(client, tenant, ticket)
    for body in ({"message": "  "}, {"message": None}, {"message": "x" * 5001}):
        response = client.patch(tenant.url(f"tickets/{ticket['id']}/messages/{reply['id']}"), json=body,
                                headers=tenant.headers)
        assert response.status_code == 400 and response.json()["attr"] == "message", body


def test_editing_a_reply_needs_the_ticket_write_scope(client, tenant):
    ticket = _ticket(tenant, "slack")
    reply = _reply(client, tenant, ticket)
    read_only = {"Authorization": f"Bearer {make_key(tenant, ['ticket:read'])}"}
    response = client.patch(tenant.url(f"tickets/{ticket['id']}/messages/{reply['id']}"),
                            json={"message": "x"}, headers=read_only)
    assert response.status_code == 403 and response.json()["code"] == "permission_denied"
