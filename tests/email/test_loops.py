"""Auto-replies and bounces are recognised, so they never open tickets or start mail loops."""

from __future__ import annotations

from pathlib import Path

import pytest

from channels.email.loops import auto_reply_reason
from channels.email.parse import parse_email

FIXTURES = Path(__file__).parent / "fixtures"

# (is_auto_reply, reason) per fixture. Bounces count as automatic too; their `bounce` field
# tells the service to fail the delivery instead of adding a note.
AUTO_REPLIES = {
    "autoreply-auto-submitted-auto-replied.eml": "Auto-Submitted: auto-replied",
    # no Auto-Submitted; X-Auto-Response-Suppress alone marks nothing, the subject does
    "autoreply-exchange-out-of-office-windows-1252-qp.eml": "Subject: Automatic reply: Nyaan",
    "autoreply-apple-vacation-in-reply-to.eml": "X-Apple-Action: VACATION",
    "bounce-dsn-postfix-multipart-report.eml": "Auto-Submitted: auto-replied",
    "bounce-dsn-office365-windows-1252.eml": "Auto-Submitted: auto-replied",
    "bounce-gmail-plain-text-not-dsn.eml": "Delivery status notification (failure)",
    "bounce-dsn-mailbox-full-rfc822-headers.eml": "Delivery status notification (failure)",
}

BOUNCES = {
    "bounce-dsn-postfix-multipart-report.eml": {
        "recipient": "r@p351355.pool.example.ne.jp",
        "original_recipient": "kijitora@example.org",
        "status": "5.1.1",
        "diagnostic": 'procmail: Couldn\'t create "/var/spool/mail/neko" id: r.example.org: No such user',
        "original_message_id": None,  # the returned message/rfc822 part is empty
        "action": "failed",
        "permanent": True,
    },
    "bounce-dsn-office365-windows-1252.eml": {
        # no message/delivery-status part: read from the human-readable report
        "recipient": "kijitora@example.com",
        "original_recipient": None,
        "status": "5.1.10",
        "diagnostic": "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup",
        "original_message_id": "<FFFFFFFF.EEEEEEEE@example.ed.jp>",
        "action": "failed",
        "permanent": True,
    },
    "bounce-gmail-plain-text-not-dsn.eml": {
        "recipient": "awfawfawfawfawfaw@someserverhere.com",
        "original_recipient": None,
        "status": "5.1.0",
        "diagnostic": "550 5.1.0 Recipient rejected: <awfawfawfawfawfaw@someserverhere.com>",
        "original_message_id": "<CAKsfaBUUGqVZiaMrmH3TRPfq1odQPtM7Ey5YW1SgyJJRHtAjgw@mail.gmail.com>",
        "action": "failed",
        "permanent": True,
    },
    "bounce-dsn-mailbox-full-rfc822-headers.eml": {
        "recipient": "abh@netpar.com.br",
        "original_recipient": None,
        "status": "4.2.2",
        "diagnostic": "Persistent transient failure - mailbox: mailbox full",
        "original_message_id": "<004801d1fc84$01c934ac$b247f0b7$@infospacemail.com>",
        "action": "failed",
        "permanent": False,  # a soft bounce
    },
}

ALL_EML = sorted(p.name for p in FIXTURES.glob("*.eml"))


@pytest.mark.parametrize("name", ALL_EML)
def test_each_fixture_is_classified_as_person_auto_reply_or_bounce(name: str) -> None:
    parsed = parse_email((FIXTURES / name).read_bytes())
    assert parsed.is_auto_reply is (name in AUTO_REPLIES)
    assert parsed.auto_reply_reason == AUTO_REPLIES.get(name)
    assert parsed.bounce == BOUNCES.get(name)


def headers(**values: str) -> dict[str, list[str]]:
    return {k.replace("_", "-").lower(): [v] for k, v in values.items()}


@pytest.mark.parametrize(
    ("given", "subject", "reason"),
    [
        (headers(auto_submitted="auto-generated"), "Hi", "Auto-Submitted: auto-generated"),
        (
            headers(auto_submitted="auto-replied; owner-email=x@example.com"),
            "Hi",
            "Auto-Submitted: auto-replied",
        ),
        (headers(auto_submitted="no"), "Hi", None),
        (headers(x_autoreply="yes"), "Hi", "X-Autoreply: yes"),
        (headers(x_autorespond="Vacation"), "Hi", "X-Autorespond: Vacation"),
        (headers(precedence="bulk"), "Hi", "Precedence: bulk"),
        (headers(precedence="junk"), "Hi", "Precedence: junk"),
        (headers(precedence="auto_reply"), "Hi", "Precedence: auto_reply"),
        (headers(precedence="list"), "Hi", "Precedence: list"),
        (headers(precedence="first-class"), "Hi", None),
        (headers(x_auto_response_suppress="All"), "Hi", None),
        ({}, "Out of Office: back Monday", "Subject: Out of Office: back Monday"),
        ({}, "Abwesenheitsnotiz: Urlaub", "Subject: Abwesenheitsnotiz: Urlaub"),
        ({}, "Automatische Antwort: Ihre Anfrage", "Subject: Automatische Antwort: Ihre Anfrage"),
        ({}, "Re: my auto reply settings are broken", None),
    ],
)
def test_auto_reply_headers_and_subjects(
    given: dict[str, list[str]], subject: str, reason: str | None
) -> None:
    assert auto_reply_reason(given, subject) == reason


def test_a_delayed_dsn_is_automatic_but_not_a_bounce() -> None:
    raw = (
        b"From: MAILER-DAEMON@mx.example.org\r\nTo: support@example.com\r\nSubject: Delayed Mail\r\n"
        b"Message-ID: <d@mx.example.org>\r\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="r"\r\n\r\n'
        b"--r\r\nContent-Type: text/plain\r\n\r\nStill trying.\r\n"
        b"--r\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.org\r\n\r\n"
        b"Final-Recipient: rfc822; slow@example.net\r\nAction: delayed\r\nStatus: 4.4.7\r\n\r\n"
        b"--r--\r\n"
    )
    parsed = parse_email(raw)
    assert parsed.bounce is None
    assert parsed.is_auto_reply
    assert parsed.auto_reply_reason == "Delivery status notification (delayed)"


def test_a_returned_message_part_gives_the_original_message_id() -> None:
    raw = (
        b"From: MAILER-DAEMON@mx.example.org\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="r"\r\n\r\n'
        b"--r\r\nContent-Type: text/plain\r\n\r\nSorry.\r\n"
        b"--r\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.org\r\n\r\n"
        b"Final-Recipient: rfc822; gone@example.net\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        b"Diagnostic-Code: smtp; 550 5.1.1 <gone@example.net>: Recipient address rejected\r\n\r\n"
        b"--r\r\nContent-Type: message/rfc822\r\n\r\n"
        b"From: Support <support@example.com>\r\nTo: gone@example.net\r\n"
        b"Message-ID: <delivery-42@example.com>\r\nSubject: Re: help\r\n\r\nHello\r\n"
        b"--r--\r\n"
    )
    parsed = parse_email(raw)
    assert parsed.bounce is not None
    assert parsed.bounce["original_message_id"] == "<delivery-42@example.com>"
    assert parsed.bounce["diagnostic"] == "550 5.1.1 <gone@example.net>: Recipient address rejected"
    assert parsed.text == "Sorry."  # the returned original is neither text nor an attachment
    assert parsed.attachments == []


def test_a_read_receipt_is_automatic() -> None:
    raw = (
        b"From: bob@example.net\r\nSubject: Read: help\r\n"
        b'Content-Type: multipart/report; report-type=disposition-notification; boundary="r"\r\n\r\n'
        b"--r\r\nContent-Type: text/plain\r\n\r\nYour message was read.\r\n"
        b"--r\r\nContent-Type: message/disposition-notification\r\n\r\nDisposition: manual-action/MDN-sent-manually; displayed\r\n"
        b"--r--\r\n"
    )
    parsed = parse_email(raw)
    assert parsed.is_auto_reply and parsed.bounce is None
    assert parsed.auto_reply_reason == "Read receipt (disposition notification)"


def test_a_null_return_path_marks_mail_as_automatic() -> None:
    parsed = parse_email(b"Return-Path: <>\r\nFrom: robot@example.net\r\nSubject: Notice\r\n\r\nhello\r\n")
    assert parsed.is_auto_reply and parsed.auto_reply_reason == "Return-Path: <>"


def test_a_person_writing_about_delivery_is_not_a_bounce() -> None:
    parsed = parse_email(
        b"From: Ann <ann@example.net>\r\nSubject: Delivery failure of my parcel\r\n\r\n"
        b"The parcel never arrived, order 550 5.1.1\r\n"
    )
    assert parsed.bounce is None and not parsed.is_auto_reply
