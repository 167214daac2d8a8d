"""EmailAdapter: verify, event id and the normalised InboundMessage of every stored email."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from channels.base import (
    Author,
    ChannelAdapter,
    InboundMessage,
    MessageKind,
    OutboundReply,
    RawEvent,
    RawRequest,
)
from channels.email import EmailAdapter, EmailConfig
from channels.email.signature import SIGNATURE_HEADER, sign
from channels.errors import InvalidSignatureError, MalformedPayloadError

FIXTURES = Path(__file__).parent / "fixtures"
ALL_EML = sorted(p.name for p in FIXTURES.glob("*.eml"))
SECRET = "s3cret"


def make_adapter(**overrides: object) -> EmailAdapter:
    settings: dict[str, object] = {
        "from_email": "support@acme.test",
        "from_name": "Acme Support",
        "smtp_host": "127.0.0.1",
        "smtp_security": "none",
        "inbound_secret": SECRET,
        "inbound_address": "support@inbound.acme.test",
    }
    settings.update(overrides)
    return EmailAdapter(EmailConfig.from_settings(settings))


def event(raw: bytes) -> RawEvent:
    return RawEvent(event_id="e1", body=raw, headers={}, received_at=datetime(2024, 1, 1, tzinfo=UTC))


def parse(name: str) -> InboundMessage:
    (message,) = make_adapter().parse(event((FIXTURES / name).read_bytes()))
    return message


def test_the_adapter_follows_the_channel_contract() -> None:
    adapter = make_adapter()
    assert isinstance(adapter, ChannelAdapter)
    assert adapter.name == "email"
    assert adapter.handshake(RawRequest.build(b"x")) is None


def test_config_from_settings_ignores_extra_keys_and_defaults_ports_by_security() -> None:
    assert (
        EmailConfig.from_settings({"from_email": "a@b.test", "smtp_security": "tls", "x": 1}).smtp_port == 465
    )
    assert EmailConfig.from_settings({"from_email": "a@b.test"}).smtp_port == 587
    assert EmailConfig.from_settings({"from_email": "a@b.test", "smtp_security": "none"}).smtp_port == 25
    imap = EmailConfig.from_settings({"from_email": "a@b.test", "imap_host": "imap.b.test"})
    assert (imap.imap_port, imap.imap_security, imap.imap_folder) == (993, "tls", "INBOX")
    with pytest.raises(ValueError):
        EmailConfig.from_settings({"from_email": "a@b.test", "smtp_security": "ssl3"})


def test_a_signed_request_verifies_and_an_unsigned_one_is_refused() -> None:
    adapter = make_adapter()
    raw = (FIXTURES / "plain-text-apple-mail.eml").read_bytes()
    adapter.verify(RawRequest.build(raw, {SIGNATURE_HEADER: sign(raw, SECRET)}))
    with pytest.raises(InvalidSignatureError):
        adapter.verify(RawRequest.build(raw, {}))
    with pytest.raises(InvalidSignatureError):
        adapter.verify(RawRequest.build(raw + b"x", {SIGNATURE_HEADER: sign(raw, SECRET)}))


@pytest.mark.parametrize("name", ALL_EML)
def test_event_id_is_the_message_id_of_the_parsed_message(name: str) -> None:
    raw = (FIXTURES / name).read_bytes()
    adapter = make_adapter()
    (message,) = adapter.parse(event(raw))
    assert adapter.event_id(RawRequest.build(raw)) == message.external_id == message.thread_key
    assert message.external_id == message.metadata["message_id"]


def test_an_empty_body_is_malformed() -> None:
    with pytest.raises(MalformedPayloadError):
        make_adapter().event_id(RawRequest.build(b"  \r\n"))
    with pytest.raises(MalformedPayloadError):
        make_adapter().parse(event(b""))


@pytest.mark.parametrize("name", ALL_EML)
def test_every_email_becomes_one_new_message_that_may_open_a_ticket(name: str) -> None:
    message = parse(name)
    assert message.channel == "email"
    assert message.channel_detail is None
    assert message.kind is MessageKind.NEW
    assert message.creates_ticket is True
    assert message.rich_content is not None and "full_text" in message.rich_content
    assert set(message.metadata) >= {
        "message_id",
        "in_reply_to",
        "references",
        "to",
        "cc",
        "reply_to",
        "ticket_token",
        "is_auto_reply",
        "auto_reply_reason",
        "bounce",
        "parse_warnings",
    }


def test_golden_thunderbird_reply() -> None:
    message = parse("reply-thunderbird-references-format-flowed.eml")
    assert message == InboundMessage(
        channel="email",
        external_id="<473FFE27.20003@xxx.org>",
        thread_key="<473FFE27.20003@xxx.org>",
        author=Author(
            external_id="xxxxxxxx@xxx.org",
            name="Testing",
            email="xxxxxxxx@xxx.org",
            distinct_id="xxxxxxxx@xxx.org",
        ),
        text="Message body",
        channel_detail=None,
        rich_content={"full_text": "Message body", "html_available": False},
        attachments=(),
        sent_at=datetime(2007, 11, 18, 19, 56, 7, tzinfo=timezone(timedelta(hours=11))),
        kind=MessageKind.NEW,
        creates_ticket=True,
        subject="Re: Test reply email",
        ticket_fields={
            "email_to": "xxxxxxxx@xxx.org",
            "email_subject": "Re: Test reply email",
            "cc_participants": [],
        },
        metadata={
            "message_id": "<473FFE27.20003@xxx.org>",
            "message_id_synthesized": False,
            "in_reply_to": "<348F04F142D69C21-291E56D292BC@xxxx.net>",
            "references": ["<473FF3B8.9020707@xxx.org>", "<348F04F142D69C21-291E56D292BC@xxxx.net>"],
            "to": ["mikel@xxxx.net"],
            "cc": [],
            "reply_to": None,
            "ticket_token": None,
            "ticket_token_source": None,
            "is_auto_reply": False,
            "auto_reply_reason": None,
            "bounce": None,
            "parse_warnings": [],
            "headers_ok": True,
            "skipped_attachments": [],
        },
    )


def test_golden_gmail_reply_shows_the_new_text_and_keeps_the_full_one() -> None:
    message = parse("reply-gmail-multipart-alternative.eml")
    assert message.author == Author(
        external_id="xxx@gmail.com", name="Megan One", email="xxx@gmail.com", distinct_id="xxx@gmail.com"
    )
    assert message.text == "Hello"
    assert message.rich_content == {
        "full_text": "Hello\n\nOn Mon, Apr 2, 2012 at 6:26 PM, Megan One <xxx@gmail.com> wrote:\n\n> Hi",
        "html_available": True,
    }
    assert message.subject == "Re: Test"


def test_golden_auto_reply_is_one_message_marked_in_metadata() -> None:
    message = parse("autoreply-apple-vacation-in-reply-to.eml")
    assert message.text == "I'm only sleeping."
    assert message.metadata["is_auto_reply"] is True
    assert message.metadata["auto_reply_reason"] == "X-Apple-Action: VACATION"
    assert message.metadata["in_reply_to"] == "<25203A4E-F90F-4A14-BF51-3E7B9D39BE8E@libsisimai.org>"
    assert message.author.distinct_id == "kijitora@apple.example.com"


def test_golden_bounce_is_one_message_with_the_failure_in_metadata() -> None:
    message = parse("bounce-gmail-plain-text-not-dsn.eml")
    assert message.metadata["bounce"] == {
        "recipient": "awfawfawfawfawfaw@someserverhere.com",
        "original_recipient": None,
        "status": "5.1.0",
        "diagnostic": "550 5.1.0 Recipient rejected: <awfawfawfawfawfaw@someserverhere.com>",
        "original_message_id": "<CAKsfaBUUGqVZiaMrmH3TRPfq1odQPtM7Ey5YW1SgyJJRHtAjgw@mail.gmail.com>",
        "action": "failed",
        "permanent": True,
    }
    assert message.metadata["is_auto_reply"] is True


def test_golden_attachment_is_carried_with_its_bytes() -> None:
    message = parse("attachment-rfc2231-filename-iso-8859-1-encoded-word-subject.eml")
    (attachment,) = message.attachments
    assert (attachment.filename, attachment.content_type, attachment.size) == (
        "Eelanalüüsi päring.jpg",
        "image/jpeg",
        1952,
    )
    assert attachment.content is not None and attachment.content.startswith(b"\xff\xd8")
    assert message.subject == "Eelanalüüsi päring"
    assert message.text == ""


def test_a_message_stripped_to_nothing_falls_back_to_the_full_text() -> None:
    raw = b"From: a@example.net\r\nSubject: q\r\nMessage-ID: <q@example.net>\r\n\r\n> only a quote\r\n"
    (message,) = make_adapter().parse(event(raw))
    assert message.text == "> only a quote"


def test_warnings_travel_in_metadata() -> None:
    message = parse("malformed-missing-closing-boundary.eml")
    assert message.metadata["parse_warnings"] == ["missing closing boundary"]


def test_reply_to_and_cc_become_the_ticket_coordinates_without_our_own_addresses() -> None:
    raw = (
        b"From: Ann <ann@customer.test>\r\nReply-To: team@customer.test\r\nTo: support@acme.test\r\n"
        b"Cc: Bob <bob@customer.test>, support@inbound.acme.test, ann@customer.test\r\n"
        b"Subject: Help\r\nMessage-ID: <h@customer.test>\r\n\r\nhelp\r\n"
    )
    (message,) = make_adapter().parse(event(raw))
    assert message.ticket_fields == {
        "email_to": "team@customer.test",
        "email_subject": "Help",
        "cc_participants": ["bob@customer.test"],
    }
    assert message.metadata["cc"] == ["bob@customer.test", "support@inbound.acme.test", "ann@customer.test"]


@pytest.mark.parametrize(
    ("recipients", "subject", "token", "source"),
    [
        ("support+tAbC123@inbound.acme.test", "Re: Help", "AbC123", "address"),
        ("Support <support+t42@inbound.acme.test>", "Re: Help [#7]", "42", "address"),
        ("support+t42@elsewhere.test", "Re: Help [#7]", "7", "subject"),  # not our mailbox
        ("support@inbound.acme.test", "Re: Help [#123]", "123", "subject"),
        ("support@inbound.acme.test", "Re: Help", None, None),
    ],
)
def test_the_ticket_token_comes_from_our_plus_address_or_a_subject_tag(
    recipients: str, subject: str, token: str | None, source: str | None
) -> None:
    raw = (
        f"From: ann@customer.test\r\nTo: {recipients}\r\nSubject: {subject}\r\nMessage-ID: <t@x.test>\r\n\r\nhi\r\n"
    ).encode()
    (message,) = make_adapter().parse(event(raw))
    assert (message.metadata["ticket_token"], message.metadata["ticket_token_source"]) == (token, source)


def test_our_own_mail_coming_back_is_ignored() -> None:
    adapter = make_adapter()
    from_us = (
        b"From: Acme Support <support@acme.test>\r\nTo: ann@customer.test\r\nSubject: Re: x\r\n\r\nhi\r\n"
    )
    assert adapter.parse(event(from_us)) == []
    forwarded = (
        b"From: ann@customer.test\r\nTo: support@inbound.acme.test\r\nSubject: Re: x\r\n"
        b"X-Ticketwire-Delivery: <d-1@acme.test>\r\n\r\nhi\r\n"
    )
    assert adapter.parse(event(forwarded)) == []
    other_install = forwarded.replace(b"<d-1@acme.test>", b"<d-1@vendor.test>")
    assert len(adapter.parse(event(other_install))) == 1


def test_find_delivered_is_always_none_for_email() -> None:
    reply = OutboundReply(delivery_id="d1", ticket_id="t1", ticket_number=1, text="hi", thread={})
    assert make_adapter().find_delivered(reply) is None


def test_deliver_without_a_customer_address_fails_without_sending() -> None:
    reply = OutboundReply(delivery_id="d1", ticket_id="t1", ticket_number=1, text="hi", thread={})
    result = make_adapter().deliver(reply)
    assert result.status == "failed"
    assert result.error_code == "missing_recipient"
