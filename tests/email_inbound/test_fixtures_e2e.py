"""Every email fixture through the full path: signed HTTP POST → ingest worker → rows.

Ordinary mail opens a ticket whose message has text whenever the mail had text; auto-replies
become a system note on the ticket they answer (or nothing when they answer nothing we know);
bounces fail the delivery they report; nothing raises."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from channels.email import parse_email
from tests.email_inbound.conftest import (
    FIXTURES,
    Mailroom,
    deliver,
    email_ticket,
    mail,
    messages,
    raw_events,
    sent_reply,
    tickets,
)

EMAILS = sorted(FIXTURES.glob("*.eml"))
REPLY_BODIES = sorted((FIXTURES / "reply-bodies").glob("*.txt"))
# Auto-replies that answer a message we can have (their In-Reply-To): a note on that ticket.
AUTO_REPLY_THREADS = {
    "autoreply-apple-vacation-in-reply-to.eml": (
        "kijitora@apple.example.com", "<25203A4E-F90F-4A14-BF51-3E7B9D39BE8E@libsisimai.org>"),
}
# Bounces: (the address we sent to, the Message-ID of our mail they report, or None when
# the report quotes no Message-ID and is matched by recipient).
BOUNCES = {
    "bounce-dsn-mailbox-full-rfc822-headers.eml": ("abh@netpar.com.br", "<004801d1fc84$01c934ac$b247f0b7$@infospacemail.com>"),
    "bounce-dsn-office365-windows-1252.eml": ("kijitora@example.com", "<FFFFFFFF.EEEEEEEE@example.ed.jp>"),
    "bounce-dsn-postfix-multipart-report.eml": ("kijitora@example.org", None),
    "bounce-gmail-plain-text-not-dsn.eml": (
        "awfawfawfawfawfaw@someserverhere.com", "<CAKsfaBUUGqVZiaMrmH3TRPfq1odQPtM7Ey5YW1SgyJJRHtAjgw@mail.gmail.com>"),
}
REPAIRED = {
    "malformed-missing-closing-boundary.eml", "malformed-multipart-without-boundary-param.eml",
    "malformed-nested-multipart-reused-boundary.eml", "malformed-raw-8bit-headers-broken-boundary.eml",
    "malformed-raw-cp1251-subject-blank-line-in-headers.eml",
}


def test_every_fixture_is_covered_by_this_test() -> None:
    names = {p.name for p in EMAILS}
    assert set(AUTO_REPLY_THREADS) | set(BOUNCES) | REPAIRED <= names
    assert len(names) == 24


@pytest.mark.parametrize("path", EMAILS, ids=[p.stem for p in EMAILS])
def test_each_fixture_becomes_a_ticket_a_note_or_a_failed_delivery(
    path: Path, client: Any, mailroom: Mailroom, worker: Any
) -> None:
    raw = path.read_bytes()
    parsed = parse_email(raw)
    if path.name in BOUNCES:
        _check_bounce(path.name, raw, client, mailroom, worker)
    elif parsed.is_auto_reply:
        _check_auto_reply(path.name, raw, client, mailroom, worker)
    else:
        deliver(client, mailroom, worker, raw)
        [ticket] = tickets(client, mailroom)
        assert ticket["channel_source"] == "email"
        thread = messages(client, mailroom, ticket["id"])
        first = thread[0]
        assert first["author_type"] == "customer"
        if parsed.text.strip():
            assert first["content"].strip(), "the mail had text but the message is empty"
        assert len(first["attachments"]) == len(parsed.attachments) + len(parsed.skipped_attachments)
        notes = [m for m in thread[1:] if m["author_type"] == "system"]
        assert bool(notes) == (path.name in REPAIRED), [n["content"] for n in notes]
        full = client.get(mailroom.tenant.url(f"tickets/{ticket['id']}/messages/{first['id']}/full_email"),
                          headers=mailroom.tenant.headers)
        assert full.status_code == 200 and full.content == raw
    assert [e["status"] for e in raw_events(client, mailroom)][-1] in ("processed", "ignored")
    assert not [e for e in raw_events(client, mailroom) if e["status"] == "failed"]


def _check_auto_reply(name: str, raw: bytes, client: Any, room: Mailroom, broker: Any) -> None:
    thread = AUTO_REPLY_THREADS.get(name)
    if thread is None:
        deliver(client, room, broker, raw)
        assert tickets(client, room) == []  # never a ticket
        assert raw_events(client, room)[0]["status"] == "ignored"
        return
    customer, our_message_id = thread
    ticket_id = email_ticket(room.project_id, customer=customer, config_id=room.config_id)
    sent_reply(ticket_id, our_message_id)
    deliver(client, room, broker, raw)
    [ticket] = tickets(client, room)
    assert ticket["id"] == ticket_id
    note = messages(client, room, ticket_id)[-1]
    assert (note["author_type"], note["is_private"]) == ("system", True)
    assert note["content"].startswith("Automatic reply from")


def _check_bounce(name: str, raw: bytes, client: Any, room: Mailroom, broker: Any) -> None:
    customer, original = BOUNCES[name]
    ticket_id = email_ticket(room.project_id, customer=customer, config_id=room.config_id)
    reply_id = sent_reply(ticket_id, original or "<sent-earlier@acme.test>")
    deliver(client, room, broker, raw)
    assert [t["id"] for t in tickets(client, room)] == [ticket_id]  # never a new ticket
    thread = messages(client, room, ticket_id)
    failed = next(m for m in thread if m["id"] == reply_id)
    assert failed["delivery_status"] == "failed", name
    assert failed["delivery_error"] and "returned the message" in failed["delivery_error"]
    assert thread[-1]["author_type"] == "system"


@pytest.mark.parametrize("path", REPLY_BODIES, ids=[p.stem for p in REPLY_BODIES])
def test_each_reply_body_fixture_sent_as_a_mail_keeps_text_on_its_ticket(
    path: Path, client: Any, mailroom: Mailroom, worker: Any
) -> None:
    # These fixtures are bodies only (quote-stripping samples): sent as a UTF-8 text mail.
    deliver(client, mailroom, worker, mail(subject="Re: question", body=path.read_text(encoding="utf-8")))
    [ticket] = tickets(client, mailroom)
    [message] = messages(client, mailroom, ticket["id"])
    assert message["content"].strip()
    assert message["rich_content"]["full_text"].strip()
