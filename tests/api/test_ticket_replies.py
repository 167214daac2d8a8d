"""POST tickets/{id}/reply (notes, public replies with their delivery, the 120 s replay rule,
409 while in flight) and POST tickets/compose."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from core.cache import get_cache
from core.clock import FrozenClock, use_clock
from core.db import session_scope
from models import Delivery, EmailConfig, Message, Ticket
from services import replies
from tests.factories import make_ticket

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> Iterator[FrozenClock]:
    frozen = FrozenClock(T0)
    previous = use_clock(frozen)
    yield frozen
    use_clock(previous)


def _reply(client: Any, tenant: Any, ref: Any, **body: Any) -> Any:
    return client.post(tenant.url(f"tickets/{ref}/reply"), json=body, headers=tenant.headers)


def _deliveries(ticket_id: str | None = None) -> list[Delivery]:
    with session_scope() as session:
        query = select(Delivery)
        if ticket_id:
            query = query.where(Delivery.ticket_id == uuid.UUID(ticket_id))
        return list(session.scalars(query))


def _messages(ticket_id: str) -> list[Message]:
    with session_scope() as session:
        return list(session.scalars(select(Message).where(Message.ticket_id == uuid.UUID(ticket_id))
                                    .order_by(Message.created_at)))


def _email_config(project_id: int) -> str:
    with session_scope() as session:
        config = EmailConfig(id=uuid.uuid4(), project_id=project_id, from_email="support@acme.test",
                             from_name="Acme", smtp_host="127.0.0.1", inbound_address=f"in-{uuid.uuid4().hex}@acme.test")
        session.add(config)
        return str(config.id)


# -- reply ---------------------------------------------------------------------------------


def test_a_private_note_is_stored_without_a_delivery(client, tenant):
    made = make_ticket(tenant.project_id)
    response = _reply(client, tenant, made["id"], message="Checked the logs", is_private=True)
    assert response.status_code == 201
    body = response.json()
    assert body["is_private"] is True and body["message_type"] == "internal_note" and body["delivery_status"] is None
    assert body["author_type"] == "support" and body["content"] == "Checked the logs"
    assert _deliveries(made["id"]) == []


def test_a_public_reply_is_stored_with_a_pending_delivery_in_the_same_transaction(client, tenant):
    made = make_ticket(tenant.project_id, channel_source="slack", channel_detail="slack_bot_mention")
    response = _reply(client, tenant, made["ticket_number"], message="We are on it",
                      rich_content={"type": "doc", "content": []})
    assert response.status_code == 201
    body = response.json()
    assert body["message_type"] == "sent_reply" and body["delivery_status"] == "pending"
    assert body["rich_content"] == {"type": "doc", "content": []} and body["author_name"] == "Ada Agent"
    [delivery] = _deliveries(made["id"])
    assert str(delivery.message_id) == body["id"] and delivery.status == "pending" and delivery.channel == "slack"
    with session_scope() as session:
        ticket = session.get_one(Ticket, uuid.UUID(made["id"]))
        assert ticket.first_response_at is not None and ticket.unread_customer_count == 1


def test_replaying_the_same_reply_within_120_seconds_returns_the_original(client, tenant, clock):
    made = make_ticket(tenant.project_id)
    first = _reply(client, tenant, made["id"], message="Same words")
    clock.advance(seconds=119)
    again = _reply(client, tenant, made["id"], message="Same words")
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert len(_deliveries(made["id"])) == 1
    # The privacy flag is part of the request: a note with the same words is another message.
    assert _reply(client, tenant, made["id"], message="Same words", is_private=True).status_code == 201
    clock.advance(seconds=2)  # 121 s after the first
    later = _reply(client, tenant, made["id"], message="Same words")
    assert later.status_code == 201 and later.json()["id"] != first.json()["id"]
    assert len(_deliveries(made["id"])) == 2


def test_a_duplicate_while_the_first_is_in_flight_is_a_409(client, tenant, clock):
    made = make_ticket(tenant.project_id)
    fingerprint = replies._fingerprint("reply", tenant.user_id, made["id"], "Hold on", False, None)
    # The first request holds this lock from before its insert until after its commit.
    assert get_cache().add(f"reply-lock:{fingerprint}", 1, ttl=30)
    response = _reply(client, tenant, made["id"], message="Hold on")
    assert response.status_code == 409 and response.json()["code"] == "duplicate_in_flight"
    assert _messages(made["id"])[1:] == [] and _deliveries() == []
    get_cache().delete(f"reply-lock:{fingerprint}")
    assert _reply(client, tenant, made["id"], message="Hold on").status_code == 201


def test_the_replay_lock_is_released_after_each_request(client, tenant):
    made = make_ticket(tenant.project_id)
    _reply(client, tenant, made["id"], message="once")
    fingerprint = replies._fingerprint("reply", tenant.user_id, made["id"], "once", False, None)
    assert get_cache().get(f"reply-lock:{fingerprint}") is None
    refused = _reply(client, tenant, made["id"], message=" ")
    assert refused.status_code == 400


def test_reply_validation_names_the_field(client, tenant):
    made = make_ticket(tenant.project_id)
    for body, attr in (({"message": "   "}, "message"), ({"message": "x" * 5001}, "message"), ({}, "message"),
                       ({"message": 5}, "message"), ({"message": "ok", "is_private": "perhaps"}, "is_private")):
        response = _reply(client, tenant, made["id"], **body)
        assert response.status_code == 400, body
        assert response.json()["attr"] == attr, (body, response.json())
    assert _reply(client, tenant, made["id"], message="x" * 5000).status_code == 201
    assert _messages(made["id"])[-1].content == "x" * 5000


def test_replies_to_another_projects_ticket_are_404(client, tenant, other_tenant):
    theirs = make_ticket(other_tenant.project_id)
    assert _reply(client, tenant, theirs["id"], message="hi").status_code == 404
    assert _deliveries() == []


# -- compose -------------------------------------------------------------------------------


def _compose(client: Any, tenant: Any, **body: Any) -> Any:
    return client.post(tenant.url("tickets/compose"), json=body, headers=tenant.headers)


def test_compose_opens_an_email_ticket_with_its_first_message_and_a_pending_delivery(client, tenant):
    config_id = _email_config(tenant.project_id)
    response = _compose(client, tenant, recipient_email=" Grace@Navy.mil ", email_subject="Your order",
                        email_config_id=config_id, message="Hello Grace", recipient_distinct_id="grace-1")
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"id", "ticket_number"} and body["ticket_number"] == 1
    ticket = client.get(tenant.url(f"tickets/{body['id']}"), headers=tenant.headers).json()
    assert ticket["status"] == "open" and ticket["channel_source"] == "email" and ticket["channel_detail"] is None
    assert ticket["email_subject"] == "Your order" and ticket["email_to"] == "Grace@Navy.mil"
    assert ticket["distinct_id"] == "grace-1" and ticket["message_count"] == 1
    [message] = _messages(body["id"])
    assert message.content == "Hello Grace" and message.author_type == "support" and not message.is_private
    [delivery] = _deliveries(body["id"])
    assert delivery.status == "pending" and delivery.channel == "email" and delivery.message_id == message.id
    assert client.get(tenant.url("tickets/"), params={"emails": "grace@navy.mil"},
                      headers=tenant.headers).json()["count"] == 1


def test_composing_the_same_message_twice_within_120_seconds_creates_one_ticket(client, tenant, clock):
    config_id = _email_config(tenant.project_id)
    body = {"recipient_email": "grace@navy.mil", "email_subject": "Hi", "email_config_id": config_id,
            "message": "Once"}
    first = _compose(client, tenant, **body)
    again = _compose(client, tenant, **body)
    assert first.status_code == 201 and again.status_code == 200 and again.json() == first.json()
    clock.advance(seconds=121)
    assert _compose(client, tenant, **body).json()["ticket_number"] == 2


@pytest.mark.parametrize(
    ("change", "attr", "error_type"),
    [
        ({"recipient_email": "not-an-address"}, "recipient_email", "invalid_email"),
        ({"recipient_email": "a@b@c.com"}, "recipient_email", "invalid_email"),
        ({"recipient_email": None}, "recipient_email", "invalid_email"),
        ({"message": "  "}, "message", "empty_message"),
        ({"message": ""}, "message", "empty_message"),
        ({"email_subject": ""}, "email_subject", "missing_subject"),
        ({"email_config_id": "not-a-uuid"}, "email_config_id", "invalid_email_config"),
        ({"email_config_id": str(uuid.uuid4())}, "email_config_id", "invalid_email_config"),
        ({"recipient_email": 42}, "recipient_email", "invalid_input"),
    ],
)
def test_compose_refuses_bad_input_with_detail_and_error_type(client, tenant, change, attr, error_type):
    config_id = _email_config(tenant.project_id)
    body = {"recipient_email": "grace@navy.mil", "email_subject": "Hi", "email_config_id": config_id,
            "message": "Hello", **change}
    response = _compose(client, tenant, **body)
    assert response.status_code == 400
    error = response.json()
    assert error["error_type"] == error_type and error["attr"] == attr and error["detail"]
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Ticket)) == 0
        assert session.scalar(select(func.count()).select_from(Delivery)) == 0


def test_compose_refuses_another_projects_email_config(client, tenant, other_tenant):
    theirs = _email_config(other_tenant.project_id)
    response = _compose(client, tenant, recipient_email="grace@navy.mil", email_subject="Hi",
                        email_config_id=theirs, message="Hello")
    assert response.status_code == 400
    assert response.json()["error_type"] == "invalid_email_config" and response.json()["attr"] == "email_config_id"
