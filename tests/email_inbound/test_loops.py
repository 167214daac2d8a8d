"""Automatic mail: auto-replies become system notes (never tickets, never answered), bounces
fail the delivery they report, our own mail is ignored, broken mail says so on the ticket."""

from __future__ import annotations

from typing import Any

from tests.email_inbound.conftest import (
    SUPPORT,
    Mailroom,
    Sink,
    create_config,
    deliver,
    mail,
    messages,
    raw_events,
    reply,
    tickets,
    unique_id,
)

CARLA = "Carla Customer <carla@customer.test>"


def _delivery(message_id: str) -> dict[str, Any]:
    import uuid

    from sqlalchemy import select

    from core.db import session_scope
    from models import Delivery

    with session_scope(read_only=True) as session:
        row = session.scalars(select(Delivery).where(Delivery.message_id == uuid.UUID(message_id))).one()
        return {"status": row.status, "last_error": row.last_error, "last_error_code": row.last_error_code}


def test_an_out_of_office_reply_to_our_answer_is_a_system_note_and_is_not_answered(
    client: Any, sending_mailroom: Mailroom, worker: Any, sink: Sink
) -> None:
    room = sending_mailroom
    first_id = unique_id()
    deliver(client, room, worker, mail(sender=CARLA, message_id=first_id))
    [ticket] = tickets(client, room)
    client.get(room.tenant.url(f"tickets/{ticket['id']}"), headers=room.tenant.headers)  # read: unread 0
    ours = str(reply(client, room, worker, sink, ticket["id"])["Message-ID"])
    sent_before = len(sink.received)
    deliver(client, room, worker, mail(sender=CARLA, subject="Automatic reply: Printer on fire", in_reply_to=ours,
                                       headers={"Auto-Submitted": "auto-replied"}, body="I am away until Monday."))
    [same] = tickets(client, room)
    assert same["unread_team_count"] == 0 and same["status"] == ticket["status"]
    note = messages(client, room, ticket["id"])[-1]
    assert (note["author_type"], note["is_private"], note["message_type"]) == ("system", True, "internal_note")
    assert "Auto-Submitted: auto-replied" in note["content"] and "I am away until Monday." in note["content"]
    assert note["delivery_status"] is None
    assert len(sink.received) == sent_before  # never answered


def test_an_auto_reply_that_matches_no_ticket_creates_nothing(client: Any, mailroom: Mailroom, worker: Any) -> None:
    deliver(client, mailroom, worker, mail(sender=CARLA, subject="Out of Office: hello",
                                           headers={"X-Autoreply": "yes"}))
    assert tickets(client, mailroom) == []
    assert [e["status"] for e in raw_events(client, mailroom)] == ["ignored"]


def test_a_bounce_fails_the_delivery_it_reports_with_the_servers_reason(
    client: Any, sending_mailroom: Mailroom, worker: Any, sink: Sink
) -> None:
    room = sending_mailroom
    deliver(client, room, worker, mail(sender=CARLA))
    [ticket] = tickets(client, room)
    client.patch(room.tenant.url(f"tickets/{ticket['id']}"), json={"status": "pending"}, headers=room.tenant.headers)
    sent = reply(client, room, worker, sink, ticket["id"])
    ours = str(sent["Message-ID"])
    reply_message = messages(client, room, ticket["id"])[-1]
    assert reply_message["delivery_status"] == "sent"
    dsn = (
        "From: Mail Delivery System <MAILER-DAEMON@mx.customer.test>\r\n"
        f"To: {SUPPORT}\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        f"Message-ID: {unique_id()}\r\nAuto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b1"\r\n\r\n'
        "--b1\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        "--b1\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.customer.test\r\n\r\n"
        "Final-Recipient: rfc822; carla@customer.test\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 <carla@customer.test>: Recipient address rejected\r\n"
        "--b1\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: Acme Support <{SUPPORT}>\r\nTo: carla@customer.test\r\nMessage-ID: {ours}\r\n"
        "--b1--\r\n"
    ).encode()
    deliver(client, room, worker, dsn)
    assert len(tickets(client, room)) == 1
    thread = messages(client, room, ticket["id"])
    failed = next(m for m in thread if m["id"] == reply_message["id"])
    assert failed["delivery_status"] == "failed" and "5.1.1" in failed["delivery_error"]
    assert "Recipient address rejected" in failed["delivery_error"]
    assert thread[-1]["author_type"] == "system" and "failed" in thread[-1]["content"]
    assert _delivery(reply_message["id"])["status"] == "failed"
    assert tickets(client, room)[0]["status"] == "open"  # reopened so someone looks


def test_mail_from_our_own_sending_addresses_is_ignored(client: Any, mailroom: Mailroom, worker: Any) -> None:
    other = create_config(client, mailroom.tenant, from_email="sales@acme.test",
                          inbound_address="sales@inbound.acme.test")
    deliver(client, mailroom, worker, mail(sender=f"Acme Support <{SUPPORT}>", subject="our own copy"))
    deliver(client, mailroom, worker, mail(sender=f"Sales <{other['from_email']}>", subject="another config's copy"))
    deliver(client, mailroom, worker, mail(sender=f"Loop <{mailroom.inbound_address}>", subject="looped"))
    assert tickets(client, mailroom) == []
    assert {e["status"] for e in raw_events(client, mailroom)} == {"ignored"}


def test_a_copy_of_our_own_reply_coming_back_is_not_stored_twice(
    client: Any, sending_mailroom: Mailroom, worker: Any, sink: Sink
) -> None:
    room = sending_mailroom
    deliver(client, room, worker, mail(sender=CARLA))
    [ticket] = tickets(client, room)
    sent = reply(client, room, worker, sink, ticket["id"])
    # e.g. the support address is Bcc'd on outgoing mail and forwards to the inbound address
    deliver(client, room, worker, sent.as_bytes())
    assert len(messages(client, room, ticket["id"])) == 2


def test_a_mail_whose_structure_was_repaired_keeps_the_original_and_says_so(
    client: Any, mailroom: Mailroom, worker: Any
) -> None:
    broken = (
        b"From: Carla <carla@customer.test>\r\nTo: help@inbound.acme.test\r\nSubject: broken\r\n"
        b"Message-ID: <broken-1@customer.test>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="right"\r\n\r\n'
        b"--wrong\r\nContent-Type: text/plain\r\n\r\nThe text survives.\r\n--wrong--\r\n"
    )
    deliver(client, mailroom, worker, broken)
    [ticket] = tickets(client, mailroom)
    first, note = messages(client, mailroom, ticket["id"])
    assert "The text survives." in first["content"]
    assert note["author_type"] == "system" and "could not be read completely" in note["content"]
    assert f"messages/{first['id']}/full_email" in note["content"]
    full = client.get(mailroom.tenant.url(f"tickets/{ticket['id']}/messages/{first['id']}/full_email"),
                      headers=mailroom.tenant.headers)
    assert full.content == broken
