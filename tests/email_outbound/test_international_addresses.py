"""Internationalised customer addresses on the way out (RFC 6530–6532), against aiosmtpd with
and without SMTPUTF8: an IDN domain goes out in its ASCII form to any server; a non-ASCII
local part needs SMTPUTF8, and without it the delivery fails once, clearly, without retries;
compose and campaigns take valid internationalised addresses and name the field of bad ones."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from channels.email.parse import parse_email
from core.db import session_scope
from models import Delivery
from tests.email_outbound.conftest import Smtp, drain
from tests.email_outbound.sink import smtp_server
from tests.factories import make_ticket


@pytest.fixture
def utf8_smtp() -> Iterator[Smtp]:
    with smtp_server(smtputf8=True) as (sink, port):
        yield Smtp(sink, port)


def config(client: Any, tenant: Any, server: Smtp, **overrides: Any) -> str:
    response = client.post(tenant.url("email_configs"), json=server.settings(**overrides), headers=tenant.headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def email_ticket(tenant: Any, config_id: str, customer: str, cc: list[str] | None = None) -> str:
    made = make_ticket(
        tenant.project_id, message=None, channel_source="email", channel_detail=None, status="open",
        customer_email=customer.lower(), email_subject="Hello", email_from=customer, email_to=customer,
        email_config_id=uuid.UUID(config_id), cc_participants=cc or [],
    )
    return str(made["id"])


def answer(client: Any, tenant: Any, ticket_id: str, text: str = "Thanks, fixed.") -> dict[str, Any]:
    response = client.post(tenant.url(f"tickets/{ticket_id}/reply"), json={"message": text}, headers=tenant.headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


def message(client: Any, tenant: Any, ticket_id: str, message_id: str) -> dict[str, Any]:
    listed = client.get(tenant.url(f"tickets/{ticket_id}/messages"), headers=tenant.headers).json()["results"]
    return next(m for m in listed if m["id"] == message_id)


def delivery(message_id: str) -> Delivery:
    with session_scope(read_only=True) as session:
        row = session.scalars(select(Delivery).where(Delivery.message_id == uuid.UUID(message_id))).one()
        session.expunge(row)
        return row


def test_an_idn_domain_goes_out_in_ascii_to_a_server_without_smtputf8(
    client: Any, tenant: Any, smtp: Smtp, worker: Any
) -> None:
    config_id = config(client, tenant, smtp, from_name="Équipe Support 支持")
    ticket_id = email_ticket(tenant, config_id, "jurgen@exämple.com", cc=["zoe@例子.广告"])
    sent = answer(client, tenant, ticket_id)
    drain(worker)
    (mail,) = smtp.sink.mails
    assert mail.rcpt_tos == ["jurgen@xn--exmple-cua.com", "zoe@xn--fsqu00a.xn--4rr70v"]
    assert "SMTPUTF8" not in mail.mail_options and mail.raw.isascii()
    got = mail.message
    assert got["To"] == "jurgen@xn--exmple-cua.com" and got["Cc"] == "zoe@xn--fsqu00a.xn--4rr70v"
    assert got["From"].addresses[0].display_name == "Équipe Support 支持"  # an RFC 2047 encoded-word
    assert b"=?utf-8?" in mail.raw.split(b"\r\n\r\n")[0]
    assert message(client, tenant, ticket_id, sent["id"])["delivery_status"] == "sent"


def test_a_non_ascii_local_part_is_delivered_with_smtputf8_when_the_server_offers_it(
    client: Any, tenant: Any, utf8_smtp: Smtp, worker: Any
) -> None:
    config_id = config(client, tenant, utf8_smtp, from_name="Support 支持")
    ticket_id = email_ticket(tenant, config_id, "用户@例子.广告", cc=["josé@exämple.com", "bob@customer.test"])
    sent = answer(client, tenant, ticket_id, "谢谢 – fixed.")
    drain(worker)
    (mail,) = utf8_smtp.sink.mails
    assert "SMTPUTF8" in mail.mail_options
    assert mail.rcpt_tos == ["用户@例子.广告", "josé@exämple.com", "bob@customer.test"]
    head = mail.raw.split(b"\r\n\r\n")[0]
    assert "To: 用户@例子.广告\r\n".encode() in head  # raw UTF-8 (RFC 6532), no encoded-words
    assert "Cc: josé@exämple.com, bob@customer.test\r\n".encode() in head
    read_back = parse_email(mail.raw)  # our inbound parser reads what we sent (the stdlib's leaves surrogates)
    assert read_back.to == ["用户@例子.广告"] and read_back.cc == ["josé@exämple.com", "bob@customer.test"]
    assert read_back.from_name == "Support 支持" and "谢谢 – fixed." in read_back.text
    assert message(client, tenant, ticket_id, sent["id"])["delivery_status"] == "sent"


def test_without_smtputf8_a_non_ascii_local_part_fails_once_with_a_clear_reason(
    client: Any, tenant: Any, smtp: Smtp, worker: Any
) -> None:
    config_id = config(client, tenant, smtp)
    ticket_id = email_ticket(tenant, config_id, "用户@例子.广告")
    sent = answer(client, tenant, ticket_id)
    drain(worker)
    assert smtp.sink.mails == []
    shown = message(client, tenant, ticket_id, sent["id"])
    assert shown["delivery_status"] == "failed"
    assert "用户@例子.广告 has a non-ASCII local part" in shown["delivery_error"]
    assert f"offering SMTPUTF8, and the SMTP server 127.0.0.1:{smtp.port} does not" in shown["delivery_error"]
    row = delivery(sent["id"])
    assert (row.status, row.attempts, row.last_error_code) == ("failed", 1, "smtputf8_unsupported")
    listed = client.get(tenant.url(f"tickets/{ticket_id}/messages"), headers=tenant.headers).json()["results"]
    assert listed[-1]["author_type"] == "system" and "SMTPUTF8" in listed[-1]["content"]


def test_without_smtputf8_a_cc_with_a_non_ascii_local_part_is_left_out_and_the_customer_still_gets_it(
    client: Any, tenant: Any, smtp: Smtp, worker: Any
) -> None:
    config_id = config(client, tenant, smtp)
    ticket_id = email_ticket(tenant, config_id, "ann@customer.test", cc=["zoë@exämple.com", "bob@exämple.com"])
    sent = answer(client, tenant, ticket_id)
    drain(worker)
    (mail,) = smtp.sink.mails
    assert mail.rcpt_tos == ["ann@customer.test", "bob@xn--exmple-cua.com"]
    assert mail.message["Cc"] == "bob@xn--exmple-cua.com" and mail.raw.isascii()
    assert delivery(sent["id"]).status == "sent"


def test_a_utf8_message_id_of_the_customer_is_left_out_of_7_bit_threading_headers(
    client: Any, tenant: Any, smtp: Smtp, worker: Any
) -> None:
    from core.db import session_scope as scope
    from services.ingest import add_customer_message
    from services.tickets import get_ticket

    config_id = config(client, tenant, smtp)
    ticket_id = email_ticket(tenant, config_id, "jurgen@exämple.com")
    with scope() as session:
        ticket = get_ticket(session=session, project_id=tenant.project_id, ref=ticket_id)
        add_customer_message(session=session, ticket=ticket, content="Hi", external_id="<utf8-1@exämple.test>")
        add_customer_message(session=session, ticket=ticket, content="Hi", external_id="<id-2@xn--exmple-cua.com>")
    answer(client, tenant, ticket_id)
    drain(worker)
    (mail,) = smtp.sink.mails
    assert mail.message["In-Reply-To"] == "<id-2@xn--exmple-cua.com>"
    assert mail.message["References"] == "<id-2@xn--exmple-cua.com>" and mail.raw.isascii()


def test_compose_takes_internationalised_addresses_and_refuses_invalid_ones_naming_the_field(
    client: Any, tenant: Any, utf8_smtp: Smtp, worker: Any
) -> None:
    config_id = config(client, tenant, utf8_smtp)
    body = {"email_subject": "Welcome", "email_config_id": config_id, "message": "Hello!"}
    made = client.post(tenant.url("tickets/compose"), json={**body, "recipient_email": "josé@EXÄMPLE.com"},
                       headers=tenant.headers)
    assert made.status_code == 201, made.text
    ticket = client.get(tenant.url(f"tickets/{made.json()['id']}"), headers=tenant.headers).json()
    assert ticket["email_to"] == "josé@exämple.com"  # shown in Unicode
    ascii_form = client.post(tenant.url("tickets/compose"),
                             json={**body, "recipient_email": "jurgen@XN--EXMPLE-CUA.com", "message": "Hi J"},
                             headers=tenant.headers)
    assert ascii_form.status_code == 201
    assert client.get(tenant.url(f"tickets/{ascii_form.json()['id']}"),
                      headers=tenant.headers).json()["email_to"] == "jurgen@exämple.com"
    drain(worker)
    assert sorted(r for m in utf8_smtp.sink.mails for r in m.rcpt_tos) == ["josé@exämple.com",
                                                                          "jurgen@xn--exmple-cua.com"]
    for bad, words in (("josé@exa_mple.com", "not a valid"), ("用户@例子", "needs a dot"),
                       ("a..b@exämple.com", "two dots"), ("zoë@xn--zz.com", "internationalised domain"),
                       ("ann\u200b@customer.test", "invisible")):
        refused = client.post(tenant.url("tickets/compose"), json={**body, "recipient_email": bad},
                              headers=tenant.headers)
        assert refused.status_code == 400, bad
        assert refused.json()["attr"] == "recipient_email" and refused.json()["error_type"] == "invalid_email"
        assert words in refused.json()["detail"], (bad, refused.json()["detail"])


def test_a_campaign_sends_to_valid_internationalised_addresses_and_reports_invalid_rows_by_field(
    client: Any, tenant: Any, utf8_smtp: Smtp, worker: Any
) -> None:
    config_id = config(client, tenant, utf8_smtp)
    recipients = [
        {"email": "用户@例子.广告", "name": "用户"},
        {"email": "zoë@exämple.com", "name": "Zoë"},
        {"email": "zoë@XN--EXMPLE-CUA.com", "name": "Zoë again"},  # the same address in ASCII form
        {"email": "bad@exa_mple.com"},
        {"email": "zoë@exämple"},
        {"email": "ann@customer.test", "name": 7},
    ]
    response = client.post(tenant.url("campaigns"), headers=tenant.headers, json={
        "email_config_id": config_id, "email_subject": "News for {{name|you}}", "message": "Hello {{name|there}}",
        "recipients": recipients})
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["queued"] == 2
    assert created["skipped"] == [{"row": 3, "email": "zoë@exämple.com", "reason": "duplicate"}]
    assert [(r["row"], r["reason"], r["field"]) for r in created["invalid"]] == [
        (4, "invalid_email", "email"), (5, "invalid_email", "email"), (6, "invalid_fields", "name")]
    assert "not a valid host name" in created["invalid"][0]["detail"]
    assert "needs a dot" in created["invalid"][1]["detail"]
    drain(worker)
    by_recipient = utf8_smtp.sink.by_recipient()
    assert sorted(by_recipient) == ["zoë@exämple.com", "用户@例子.广告"]
    assert by_recipient["用户@例子.广告"][0].message["Subject"] == "News for 用户"


def test_an_internationalised_address_can_unsubscribe(client: Any, tenant: Any) -> None:
    added = client.post(tenant.url("email_unsubscribes"), json={"email": "Zoë@XN--EXMPLE-CUA.com"},
                        headers=tenant.headers)
    assert added.status_code == 201, added.text
    assert added.json()["email"] == "zoë@exämple.com"
    refused = client.post(tenant.url("email_unsubscribes"), json={"email": "zoë@exa_mple.com"}, headers=tenant.headers)
    assert refused.status_code == 400 and refused.json()["attr"] == "email"
