"""Replies and compose really reach an SMTP server through the delivery pipeline (aiosmtpd here),
with their headers, parts and threading; SMTP failures follow the delivery policy; the
per-config rate holds; connections are reused across a burst; an unknown outcome is reconciled
through the mailbox's Sent folder."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from sqlalchemy import select

from core.db import session_scope
from models import Delivery, Message
from services import deliveries, email_configs
from services.ingest import add_customer_message
from services.tickets import get_ticket
from tests.email_outbound.conftest import Smtp, assert_paced, drain, wait_for
from tests.email_outbound.sink import Dovecot, smtp_server
from tests.factories import make_ticket


def email_ticket(tenant: Any, config_id: str, *, cc: list[str] | None = None, subject: str = "Printer on fire") -> str:
    """An email ticket from Ann with two messages of hers (Message-IDs <c-1…>, <c-2…>)."""
    marker = uuid.uuid4().hex[:8]
    made = make_ticket(
        tenant.project_id, message=None, channel_source="email", channel_detail=None, status="new",
        customer_email="ann@customer.test", customer_name="Ann Customer", email_subject=subject,
        email_from="ann@customer.test", email_to="Ann Customer <ann@customer.test>",
        email_config_id=uuid.UUID(config_id), cc_participants=cc or [],
    )
    with session_scope() as session:
        ticket = get_ticket(session=session, project_id=tenant.project_id, ref=made["id"])
        add_customer_message(session=session, ticket=ticket, content="It is on fire.",
                             external_id=f"<c-1-{marker}@customer.test>")
        add_customer_message(session=session, ticket=ticket, content="Still burning.",
                             external_id=f"<c-2-{marker}@customer.test>")
    return str(made["id"])


def delivery_of(message_id: str) -> Delivery:
    with session_scope(read_only=True) as session:
        row = session.scalar(select(Delivery).where(Delivery.message_id == uuid.UUID(message_id)))
        assert row is not None
        session.expunge(row)
        return row


def stored_external_id(message_id: str) -> str | None:
    with session_scope(read_only=True) as session:
        return session.scalar(select(Message.external_id).where(Message.id == uuid.UUID(message_id)))


def messages(client: Any, tenant: Any, ticket_id: str) -> list[dict[str, Any]]:
    return list(client.get(tenant.url(f"tickets/{ticket_id}/messages"), headers=tenant.headers).json()["results"])


def test_a_public_reply_arrives_as_a_threaded_reply_with_text_and_html(
    client: Any, tenant: Any, smtp: Smtp, email_config: dict[str, Any], worker: Any
) -> None:
    ticket_id = email_ticket(tenant, email_config["id"], cc=["bob@customer.test", "Support@Acme.test"])
    sent = client.post(tenant.url(f"tickets/{ticket_id}/reply"),
                       json={"message": "Try **turning it off** and on.\n\nSee <https://acme.test/help>."},
                       headers=tenant.headers)
    assert sent.status_code == 201, sent.text
    drain(worker)
    (mail,) = smtp.sink.mails
    delivery = delivery_of(sent.json()["id"])
    our_id = f"<{delivery.id}@acme.test>"
    got = mail.message
    assert mail.mail_from == "support@acme.test"
    assert mail.rcpt_tos == ["ann@customer.test", "bob@customer.test"]
    assert got["From"] == "Acme Support <support@acme.test>"
    assert got["To"] == "ann@customer.test"
    assert got["Cc"] == "bob@customer.test"  # our own address is never copied
    assert got["Subject"] == "Re: Printer on fire"
    assert got["Message-ID"] == our_id
    c1, c2 = [m for m in (stored_external_id(x["id"]) for x in messages(client, tenant, ticket_id)[:2])]
    assert got["In-Reply-To"] == c2
    assert got["References"] == f"{c1} {c2}"
    assert got["List-Unsubscribe"] is None  # only campaign mail carries it
    plain, html = got.get_body(("plain",)), got.get_body(("html",))
    assert plain is not None and "Try **turning it off** and on." in plain.get_content()
    assert html is not None and "<strong>turning it off</strong>" in html.get_content()
    # Our Message-ID is the message's external id: the customer's answer threads by it.
    assert stored_external_id(sent.json()["id"]) == our_id
    assert delivery.status == "sent" and delivery.external_id == our_id
    assert messages(client, tenant, ticket_id)[-1]["delivery_status"] == "sent"


def test_compose_really_sends_a_new_conversation_and_the_next_reply_threads_on_it(
    client: Any, tenant: Any, smtp: Smtp, email_config: dict[str, Any], worker: Any
) -> None:
    composed = client.post(tenant.url("tickets/compose"), headers=tenant.headers, json={
        "recipient_email": "carla@customer.test", "email_subject": "Your invoice", "email_config_id": email_config["id"],
        "message": "Hello Carla,\n\nyour invoice is *attached* below."})
    assert composed.status_code == 201, composed.text
    drain(worker)
    (first,) = smtp.sink.mails
    got = first.message
    assert got["Subject"] == "Your invoice" and got["To"] == "carla@customer.test"
    assert got["In-Reply-To"] is None and got["References"] is None
    ticket_id = composed.json()["id"]
    (message,) = messages(client, tenant, ticket_id)
    assert message["delivery_status"] == "sent" and stored_external_id(message["id"]) == got["Message-ID"]

    client.post(tenant.url(f"tickets/{ticket_id}/reply"), json={"message": "A reminder."}, headers=tenant.headers)
    drain(worker)
    second = smtp.sink.mails[1].message
    assert second["Subject"] == "Re: Your invoice"
    assert second["In-Reply-To"] == got["Message-ID"] and second["References"] == got["Message-ID"]


def test_an_smtp_4xx_is_retried_and_the_mail_arrives_once(
    client: Any, tenant: Any, smtp: Smtp, email_config: dict[str, Any], worker: Any
) -> None:
    ticket_id = email_ticket(tenant, email_config["id"])
    smtp.sink.answers.append(("DATA", "451 4.3.0 Mailbox busy, try again later"))
    sent = client.post(tenant.url(f"tickets/{ticket_id}/reply"), json={"message": "Fixed."}, headers=tenant.headers)
    wait_for(lambda: delivery_of(sent.json()["id"]).status == "sent", timeout=15)
    assert len(smtp.sink.mails) == 1
    delivery = delivery_of(sent.json()["id"])
    assert delivery.attempts == 2 and delivery.last_error_code == "smtp_451"


def test_an_smtp_5xx_fails_at_once_with_the_servers_text_on_the_message(
    client: Any, tenant: Any, smtp: Smtp, email_config: dict[str, Any], worker: Any
) -> None:
    ticket_id = email_ticket(tenant, email_config["id"])
    client.patch(tenant.url(f"tickets/{ticket_id}"), json={"status": "pending"}, headers=tenant.headers)
    smtp.sink.refuse["ann@customer.test"] = "550 5.1.1 <ann@customer.test>: Recipient address rejected"
    sent = client.post(tenant.url(f"tickets/{ticket_id}/reply"), json={"message": "Hello?"}, headers=tenant.headers)
    drain(worker)
    listed = messages(client, tenant, ticket_id)
    reply = next(m for m in listed if m["id"] == sent.json()["id"])
    assert reply["delivery_status"] == "failed"
    assert "550 5.1.1 <ann@customer.test>: Recipient address rejected" in reply["delivery_error"]
    assert listed[-1]["author_type"] == "system" and listed[-1]["is_private"]
    assert client.get(tenant.url(f"tickets/{ticket_id}"), headers=tenant.headers).json()["status"] == "open"
    assert delivery_of(sent.json()["id"]).attempts == 1 and smtp.sink.mails == []


def test_a_server_that_cannot_be_reached_leaves_the_reply_pending_with_the_reason(
    client: Any, tenant: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workers.outbound import run_delivery

    monkeypatch.setenv("TICKETWIRE_RETRY_BASE_SECONDS", "60")
    with smtp_server() as (_sink, port):
        pass  # a port that just stopped listening
    created = client.post(tenant.url("email_configs"), headers=tenant.headers, json={
        "from_email": "support@acme.test", "smtp_host": "127.0.0.1", "smtp_port": port, "smtp_security": "none"}).json()
    ticket_id = email_ticket(tenant, created["id"])
    sent = client.post(tenant.url(f"tickets/{ticket_id}/reply"), json={"message": "Hi"}, headers=tenant.headers)
    result = run_delivery(delivery_of(sent.json()["id"]).id)
    assert result is not None and result.status == "retryable"
    delivery = delivery_of(sent.json()["id"])
    assert delivery.status == "pending" and delivery.last_error_code == "smtp_connection_error"
    reply = next(m for m in messages(client, tenant, ticket_id) if m["id"] == sent.json()["id"])
    assert reply["delivery_status"] == "pending" and "smtp_connection_error" in reply["delivery_error"]


def test_a_burst_of_replies_shares_a_few_smtp_connections(
    client: Any, tenant: Any, smtp: Smtp, email_config: dict[str, Any], worker: Any
) -> None:
    tickets = [email_ticket(tenant, email_config["id"]) for _ in range(12)]
    for number, ticket_id in enumerate(tickets):
        response = client.post(tenant.url(f"tickets/{ticket_id}/reply"), json={"message": f"Reply {number}"},
                               headers=tenant.headers)
        assert response.status_code == 201
    drain(worker)
    assert len(smtp.sink.mails) == 12
    # Two worker threads: at most one connection each (plus one if a connection went idle).
    assert smtp.sink.connections <= 3, smtp.sink.connections


def test_the_sending_rate_of_a_config_spaces_a_backlog(
    client: Any, tenant: Any, smtp: Smtp, worker: Any
) -> None:
    created = client.post(tenant.url("email_configs"), json=smtp.settings(send_rate_per_minute=120),
                          headers=tenant.headers).json()
    tickets = [email_ticket(tenant, created["id"]) for _ in range(5)]
    for ticket_id in tickets:
        client.post(tenant.url(f"tickets/{ticket_id}/reply"), json={"message": "Paced"}, headers=tenant.headers)
    wait_for(lambda: len(smtp.sink.mails) == 5, timeout=20)
    assert_paced(sorted(m.at for m in smtp.sink.mails), interval=0.5)  # 120 a minute


def test_an_unknown_outcome_is_reconciled_through_the_sent_folder_and_not_sent_twice(
    client: Any, tenant: Any, dovecot: Dovecot, db: str
) -> None:
    """The worker died after the server accepted the mail: the provider filed it under Sent, so
    the next attempt finds it there and records it as sent without mailing the customer again."""
    from tests.email_outbound.sink import Sink

    sink = Sink(sent_folder=dovecot.sent_folder())
    with smtp_server(sink) as (_sink, port):
        created = client.post(tenant.url("email_configs"), headers=tenant.headers, json={
            "from_email": "support@acme.test", "smtp_host": "127.0.0.1", "smtp_port": port, "smtp_security": "none",
            "imap_host": "127.0.0.1", "imap_port": dovecot.port, "imap_security": "none",
            "imap_username": dovecot.user, "imap_password": dovecot.password}).json()
        ticket_id = email_ticket(tenant, created["id"])
        sent = client.post(tenant.url(f"tickets/{ticket_id}/reply"), json={"message": "Once only"},
                           headers=tenant.headers).json()
        delivery_id = delivery_of(sent["id"]).id
        # First attempt: claimed and sent, then the worker "dies" before recording the result.
        with session_scope() as session:
            claim = deliveries.claim(session=session, delivery_id=delivery_id, worker_id="doomed")
        assert claim is not None
        adapter = email_configs.adapter_for_ticket(thread=claim.ticket)
        assert adapter.deliver(claim.reply).external_id == f"<{delivery_id}@acme.test>"
        assert len(sink.mails) == 1
        with session_scope() as session:  # the lease runs out
            row = session.get_one(Delivery, delivery_id)
            row.lease_expires_at = row.lease_expires_at.replace(year=2000)
        from workers.outbound import run_delivery

        result = run_delivery(delivery_id)
        assert result is not None and result.external_id == f"<{delivery_id}@acme.test>"
        assert len(sink.mails) == 1
        row = delivery_of(sent["id"])
        assert row.status == "sent" and row.attempts == 2

        # Without a copy under Sent (the first attempt never reached DATA) it is sent again.
        other = client.post(tenant.url(f"tickets/{ticket_id}/reply"), json={"message": "Lost once"},
                            headers=tenant.headers).json()
        other_id = delivery_of(other["id"]).id
        with session_scope() as session:
            assert deliveries.claim(session=session, delivery_id=other_id, worker_id="doomed") is not None
            session.get_one(Delivery, other_id).lease_expires_at = time_in_the_past()
        assert run_delivery(other_id) is not None
        assert [m.message_id for m in sink.mails] == [f"<{delivery_id}@acme.test>", f"<{other_id}@acme.test>"]


def time_in_the_past() -> Any:
    from datetime import UTC, datetime

    return datetime(2000, 1, 1, tzinfo=UTC)


def test_mails_wait_their_turn_behind_the_sending_rate_without_sleeping_a_worker_long(db: str) -> None:
    from services import pacing

    key = f"email:{uuid.uuid4()}"
    started = time.monotonic()
    slots = [pacing.reserve(key, 2.0) for _ in range(8)]
    assert time.monotonic() - started < 0.5
    granted = [s for s in slots if s.granted]
    assert [round(s.wait, 1) for s in granted] == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert all(not s.granted and s.wait > 2.0 for s in slots[5:])
