"""Internationalised senders and recipients on the way in (RFC 6531/6532): raw UTF-8 headers,
encoded-word display names and IDN domains in ASCII form all become tickets that show the
address in Unicode, through the HTTP endpoint and the SMTP listener (with SMTPUTF8); the same
customer writing once with `xn--` and once in Unicode stays on one ticket."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import aiosmtplib
import pytest

from channels.email.listener import make_controller
from channels.email.parse import parse_email
from services.email_inbound import SmtpMailbox
from tests.email_inbound.conftest import (
    INBOUND,
    Mailroom,
    create_config,
    deliver,
    drain,
    messages,
    ticket_row,
    tickets,
    unique_id,
)
from tests.services import free_port


def raw_mail(headers: str, body: str = "Hello from far away.") -> bytes:
    """A mail as an RFC 6532 client writes it: UTF-8 straight in the header block."""
    return (headers.strip().replace("\n", "\r\n") + "\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
            + body + "\r\n").encode("utf-8")


def test_the_parser_reads_utf8_addresses_encoded_words_and_ascii_idn_domains() -> None:
    parsed = parse_email(raw_mail(f"""
From: =?utf-8?b?5byg5LiJ?= <用户@例子.广告>
To: {INBOUND}, "Zoë Ünal" <zoë@exämple.com>
Cc: =?utf-8?q?J=C3=BCrgen_M=C3=BCller?= <jurgen@XN--EXMPLE-CUA.com>, "Chén, Wěi" <wei@xn--fsqu00a.xn--4rr70v>
Reply-To: josé@exämple.com
Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=
Message-ID: <m1@例子.广告>
"""))
    assert (parsed.from_name, parsed.from_email) == ("张三", "用户@例子.广告")
    assert parsed.to == [INBOUND, "zoë@exämple.com"]
    assert parsed.cc == ["jurgen@exämple.com", "wei@例子.广告"]
    assert parsed.reply_to == "josé@exämple.com" and parsed.subject == "Grüße"
    assert parsed.message_id == "<m1@例子.广告>" and parsed.headers_ok and parsed.parse_warnings == []


def test_a_mail_from_an_internationalised_address_becomes_a_ticket_showing_it_in_unicode(
    client: Any, mailroom: Mailroom, worker: Any
) -> None:
    deliver(client, mailroom, worker, raw_mail(f"""
From: =?utf-8?b?5byg5LiJ?= <用户@例子.广告>
To: {INBOUND}
Cc: "Zoë" <zoë@XN--EXMPLE-CUA.com>
Subject: 你好
Message-ID: {unique_id()}
"""))
    [ticket] = tickets(client, mailroom)
    detail = client.get(mailroom.tenant.url(f"tickets/{ticket['id']}"), headers=mailroom.tenant.headers).json()
    assert detail["email_from"] == "用户@例子.广告" and detail["email_to"] == "用户@例子.广告"
    assert detail["cc_participants"] == ["zoë@exämple.com"] and detail["email_subject"] == "你好"
    row = ticket_row(ticket["id"])
    assert (row["customer_email"], row["customer_name"]) == ("用户@例子.广告", "张三")
    [message] = messages(client, mailroom, ticket["id"])
    assert message["author_name"] == "张三" and message["content"] == "Hello from far away."


def test_the_same_customer_writing_in_ascii_and_in_unicode_form_stays_on_one_ticket(
    client: Any, mailroom: Mailroom, worker: Any
) -> None:
    deliver(client, mailroom, worker, raw_mail(f"""
From: Jürgen <jurgen@xn--exmple-cua.com>
To: {INBOUND}
Subject: Order 42
Message-ID: {unique_id()}
"""))
    [ticket] = tickets(client, mailroom)
    assert ticket_row(ticket["id"])["customer_email"] == "jurgen@exämple.com"
    deliver(client, mailroom, worker, raw_mail(f"""
From: Jürgen <jurgen@EXÄMPLE.com>
To: {INBOUND}
Subject: Re: Order 42 [#{ticket['ticket_number']}]
Message-ID: {unique_id()}
""", body="Any news?"))
    [same] = tickets(client, mailroom)
    assert same["id"] == ticket["id"]
    assert [m["content"] for m in messages(client, mailroom, ticket["id"])] == ["Hello from far away.", "Any news?"]


@pytest.fixture
def listener(db: str) -> Iterator[int]:
    port = free_port()  # aiosmtpd's Controller cannot take port 0
    controller = make_controller(SmtpMailbox(), host="127.0.0.1", port=port, hostname="mx.ticketwire.test")
    controller.start()
    yield port
    controller.stop()


def test_the_smtp_listener_takes_smtputf8_mail_from_an_internationalised_sender(
    client: Any, mailroom: Mailroom, listener: int, worker: Any
) -> None:
    raw = raw_mail(f"""
From: José Núñez <josé@exämple.com>
To: {INBOUND}
Subject: Pedido
Message-ID: {unique_id()}
""", body="¿Dónde está mi pedido?")
    # MAIL FROM:<josé@exämple.com> SMTPUTF8, as a sending server does for such mail (RFC 6531 §3.4).
    errors, answer = asyncio.run(aiosmtplib.send(raw, sender="josé@exämple.com", recipients=[INBOUND],
                                                 hostname="127.0.0.1", port=listener, start_tls=False,
                                                 mail_options=["SMTPUTF8"]))
    assert errors == {} and answer.startswith("2.0.0")
    drain(worker)
    [ticket] = tickets(client, mailroom)
    assert ticket_row(ticket["id"])["customer_email"] == "josé@exämple.com"
    [message] = messages(client, mailroom, ticket["id"])
    assert message["author_name"] == "José Núñez" and message["content"] == "¿Dónde está mi pedido?"
    full = client.get(mailroom.tenant.url(f"tickets/{ticket['id']}/messages/{message['id']}/full_email"),
                      headers=mailroom.tenant.headers).content
    assert "Return-Path: <josé@exämple.com>".encode() in full


def test_an_inbound_address_on_an_idn_domain_receives_mail_sent_to_either_form(
    client: Any, tenant: Any, listener: int, worker: Any
) -> None:
    room = create_config(client, tenant, inbound_address="help@xn--mnchen-3ya.test")
    for recipient in ("help@xn--mnchen-3ya.test", "help@münchen.test", "HELP+x@MÜNCHEN.test"):
        raw = raw_mail(f"From: ann@customer.test\nTo: {recipient}\nSubject: hi\nMessage-ID: {unique_id()}")
        errors, _answer = asyncio.run(aiosmtplib.send(raw, sender="ann@customer.test", recipients=[recipient],
                                                      hostname="127.0.0.1", port=listener, start_tls=False,
                                                      mail_options=["SMTPUTF8"]))
        assert errors == {}, recipient
    drain(worker)
    listed = client.get(tenant.url("tickets/?limit=10"), headers=tenant.headers).json()["results"]
    assert len(listed) == 3 and {ticket_row(t["id"])["email_config_id"] for t in listed} == {uuid.UUID(room["id"])}
