"""The threading matrix: which ticket a mail joins, and that a stranger's never joins another
customer's. Our replies really go out over SMTP (an aiosmtpd sink) so the Message-IDs the
customers answer are the ones ticketwire stored."""

from __future__ import annotations

import time
import uuid
from typing import Any

from tests.email_inbound.conftest import (
    INBOUND,
    Mailroom,
    Sink,
    deliver,
    mail,
    messages,
    post_mail,
    reply,
    ticket_row,
    tickets,
    unique_id,
)

CARLA = "Carla Customer <carla@customer.test>"
EVE = "Eve Stranger <eve@elsewhere.test>"


def _open(client: Any, room: Mailroom, broker: Any, *, sender: str = CARLA, subject: str = "Printer on fire",
          cc: str | None = None) -> tuple[dict[str, Any], str]:
    first_id = unique_id()
    deliver(client, room, broker, mail(sender=sender, subject=subject, message_id=first_id, cc=cc))
    found = [t for t in tickets(client, room) if ticket_row(t["id"])["thread_key"] == first_id]
    assert len(found) == 1
    return found[0], first_id


def _token_address(room: Mailroom, ticket_number: int, *, mac: str | None = None) -> str:
    from services.email_inbound import reply_address, reply_token

    if mac is None:
        return reply_address(inbound_address=room.inbound_address, project_id=room.project_id,
                             ticket_number=ticket_number)
    token = reply_token(project_id=room.project_id, ticket_number=ticket_number)
    local, _, domain = room.inbound_address.partition("@")
    return f"{local}+t{token.split('x')[0]}x{mac}@{domain}"


def test_a_reply_with_headers_to_our_answer_joins_the_ticket(
    client: Any, sending_mailroom: Mailroom, worker: Any, sink: Sink
) -> None:
    room = sending_mailroom
    ticket, first_id = _open(client, room, worker)
    sent = reply(client, room, worker, sink, ticket["id"])
    assert sent["In-Reply-To"] == first_id
    ours = str(sent["Message-ID"])
    deliver(client, room, worker, mail(sender=CARLA, subject="Re: Printer on fire", in_reply_to=ours,
                                       references=[first_id, ours], body="Still burning."))
    assert len(tickets(client, room)) == 1
    thread = messages(client, room, ticket["id"])
    assert [m["author_type"] for m in thread] == ["customer", "support", "customer"]
    assert thread[-1]["content"] == "Still burning." and thread[-1]["rich_content"]["email"]["threaded_by"] == "in_reply_to"


def test_a_reply_with_only_references_joins_the_ticket(client: Any, mailroom: Mailroom, worker: Any) -> None:
    ticket, first_id = _open(client, mailroom, worker)
    deliver(client, mailroom, worker, mail(sender=CARLA, references=[unique_id(), first_id], body="Any news?"))
    assert len(tickets(client, mailroom)) == 1
    assert messages(client, mailroom, ticket["id"])[-1]["rich_content"]["email"]["threaded_by"] == "references"


def test_a_reply_without_headers_to_the_token_address_joins_the_ticket(
    client: Any, mailroom: Mailroom, worker: Any
) -> None:
    ticket, _ = _open(client, mailroom, worker)
    address = _token_address(mailroom, ticket["ticket_number"])
    assert address.startswith("help+t") and address.endswith("@inbound.acme.test")
    deliver(client, mailroom, worker, mail(sender=CARLA, to=address, subject="my printer", body="Copied by hand."))
    assert len(tickets(client, mailroom)) == 1
    assert messages(client, mailroom, ticket["id"])[-1]["rich_content"]["email"]["threaded_by"] == "address_token"


def test_a_token_address_with_a_forged_signature_opens_a_new_ticket(
    client: Any, mailroom: Mailroom, worker: Any
) -> None:
    ticket, _ = _open(client, mailroom, worker)
    forged = _token_address(mailroom, ticket["ticket_number"], mac="0123456789")
    deliver(client, mailroom, worker, mail(sender=CARLA, to=forged, subject="hello"))
    assert len(tickets(client, mailroom)) == 2


def test_a_subject_tag_from_the_customer_joins_the_ticket(client: Any, mailroom: Mailroom, worker: Any) -> None:
    ticket, _ = _open(client, mailroom, worker)
    deliver(client, mailroom, worker,
            mail(sender="CARLA <Carla@Customer.TEST>", subject=f"Re: Printer on fire [#{ticket['ticket_number']}]"))
    assert len(tickets(client, mailroom)) == 1
    assert messages(client, mailroom, ticket["id"])[-1]["rich_content"]["email"]["threaded_by"] == "subject_tag"


def test_a_subject_tag_from_a_stranger_opens_a_new_ticket_for_the_stranger(
    client: Any, mailroom: Mailroom, worker: Any
) -> None:
    ticket, _ = _open(client, mailroom, worker)
    deliver(client, mailroom, worker, mail(sender=EVE, subject=f"Re: Printer on fire [#{ticket['ticket_number']}]",
                                           body="Let me in"))
    all_tickets = tickets(client, mailroom)
    assert len(all_tickets) == 2
    assert [m["content"] for m in messages(client, mailroom, ticket["id"])] == ["It is on fire."]
    newcomer = ticket_row(all_tickets[1]["id"])
    assert newcomer["customer_email"] == "eve@elsewhere.test"


def test_a_stranger_using_the_customers_token_address_opens_a_new_ticket(
    client: Any, mailroom: Mailroom, worker: Any
) -> None:
    ticket, _ = _open(client, mailroom, worker)
    deliver(client, mailroom, worker, mail(sender=EVE, to=_token_address(mailroom, ticket["ticket_number"])))
    assert len(tickets(client, mailroom)) == 2
    assert len(messages(client, mailroom, ticket["id"])) == 1


def test_a_forwarded_mail_opens_a_ticket_for_the_forwarder_not_the_original_author(
    client: Any, sending_mailroom: Mailroom, worker: Any, sink: Sink
) -> None:
    room = sending_mailroom
    ticket, _ = _open(client, room, worker)
    sent = reply(client, room, worker, sink, ticket["id"])
    # Carla's colleague forwards our answer to support: no In-Reply-To (a forward is a new
    # mail), the ticket's subject tag travels in "Fwd: Re: …", the original quoted below.
    forwarded_body = (
        "Can you help me too?\n\n---------- Forwarded message ---------\n"
        f"From: Acme Support <support@acme.test>\nSubject: {sent['Subject']}\n\nWe are on it.\n"
    )
    deliver(client, room, worker, mail(sender="Bob Colleague <bob@customer.test>",
                                       subject=f"Fwd: {sent['Subject']} [#{ticket['ticket_number']}]",
                                       body=forwarded_body))
    all_tickets = tickets(client, room)
    assert len(all_tickets) == 2
    assert ticket_row(all_tickets[1]["id"])["customer_email"] == "bob@customer.test"
    assert [m["author_type"] for m in messages(client, room, ticket["id"])] == ["customer", "support"]


def test_the_customer_forwarding_someone_elses_mail_owns_the_new_ticket(
    client: Any, mailroom: Mailroom, worker: Any
) -> None:
    body = "FYI\n\n---------- Forwarded message ---------\nFrom: Eve <eve@elsewhere.test>\n\nPay this invoice.\n"
    deliver(client, mailroom, worker, mail(sender=CARLA, subject="Fwd: invoice", body=body,
                                           in_reply_to=unique_id()))
    [ticket] = tickets(client, mailroom)
    assert ticket_row(ticket["id"])["customer_email"] == "carla@customer.test"


def test_replies_sharing_one_in_reply_to_across_customers_each_open_their_own_ticket(
    client: Any, mailroom: Mailroom, worker: Any
) -> None:
    # Carla writes to support and to a mailing list; the list's members answer all, so each
    # answer carries In-Reply-To = Carla's Message-ID, which is on Carla's ticket.
    ticket, first_id = _open(client, mailroom, worker, cc="Friends <friends@lists.test>", subject="Newsletter")
    for sender in ("Bea <bea@b.test>", "Cem <cem@c.test>"):
        deliver(client, mailroom, worker, mail(sender=sender, to=f"carla@customer.test, {INBOUND}",
                                               subject="Re: Newsletter", in_reply_to=first_id,
                                               references=[first_id], body=f"Reply from {sender}"))
    all_tickets = tickets(client, mailroom)
    assert len(all_tickets) == 3
    assert len(messages(client, mailroom, ticket["id"])) == 1
    customers = sorted(ticket_row(t["id"])["customer_email"] for t in all_tickets)
    assert customers == ["bea@b.test", "carla@customer.test", "cem@c.test"]


def test_replies_to_one_announcement_we_sent_thread_only_for_its_recipient(
    client: Any, sending_mailroom: Mailroom, worker: Any, sink: Sink
) -> None:
    room = sending_mailroom
    ticket, _ = _open(client, room, worker)
    announcement = str(reply(client, room, worker, sink, ticket["id"], "Our new opening hours")["Message-ID"])
    # The announcement was Bcc'd or forwarded to others; their replies share its Message-ID.
    deliver(client, room, worker, mail(sender="Bea <bea@b.test>", in_reply_to=announcement,
                                       references=[announcement], subject="Re: hours"))
    deliver(client, room, worker, mail(sender=CARLA, in_reply_to=announcement, references=[announcement],
                                       subject="Re: hours", body="Thanks!"))
    all_tickets = tickets(client, room)
    assert len(all_tickets) == 2
    assert [m["content"] for m in messages(client, room, ticket["id"])][-1] == "Thanks!"


def test_a_cc_participant_replying_joins_the_ticket_without_becoming_its_customer(
    client: Any, mailroom: Mailroom, worker: Any
) -> None:
    ticket, first_id = _open(client, mailroom, worker, cc="Dan <dan@customer.test>")
    deliver(client, mailroom, worker, mail(sender="Dan <dan@customer.test>", in_reply_to=first_id,
                                           cc="Carla <carla@customer.test>, Fay <fay@customer.test>", body="+1"))
    [only] = tickets(client, mailroom)
    row = ticket_row(only["id"])
    assert row["customer_email"] == "carla@customer.test"
    assert row["cc_participants"] == ["dan@customer.test", "fay@customer.test"]
    assert [m["author_name"] for m in messages(client, mailroom, ticket["id"])] == ["Carla Customer", "Dan"]


def test_a_reply_to_a_resolved_ticket_reopens_it(client: Any, mailroom: Mailroom, worker: Any) -> None:
    ticket, first_id = _open(client, mailroom, worker)
    patched = client.patch(mailroom.tenant.url(f"tickets/{ticket['id']}"), json={"status": "resolved"},
                           headers=mailroom.tenant.headers)
    assert patched.status_code == 200
    deliver(client, mailroom, worker, mail(sender=CARLA, in_reply_to=first_id, body="It is back"))
    assert tickets(client, mailroom)[0]["status"] == "open"


def test_threading_never_crosses_projects(
    client: Any, mailroom: Mailroom, worker: Any, other_tenant: Any
) -> None:
    from tests.email_inbound.conftest import create_config

    ticket, first_id = _open(client, mailroom, worker)
    other = create_config(client, other_tenant, inbound_address="help@inbound.globex.test", from_email="s@globex.test")
    other_room = Mailroom(other_tenant, other["id"], other["inbound_address"], other["inbound_secret"])
    deliver(client, other_room, worker, mail(sender=CARLA, in_reply_to=first_id,
                                             subject=f"Re: [#{ticket['ticket_number']}]"))
    assert len(tickets(client, mailroom)) == 1 and len(messages(client, mailroom, ticket["id"])) == 1
    assert len(tickets(client, other_room)) == 1


def _event_ids(project_id: int) -> dict[str, uuid.UUID]:
    from sqlalchemy import select

    from core.db import session_scope
    from models import RawEvent

    with session_scope(read_only=True) as session:
        return {e: i for e, i in session.execute(
            select(RawEvent.event_id, RawEvent.id).where(RawEvent.project_id == project_id))}


def test_a_reply_that_overtakes_the_mail_it_answers_waits_for_it(client: Any, mailroom: Mailroom) -> None:
    from workers.inbound import process_raw_event

    first_id, second_id = unique_id(), unique_id()
    assert post_mail(client, mailroom, mail(sender=CARLA, message_id=first_id)).status_code == 200
    assert post_mail(client, mailroom, mail(sender=CARLA, message_id=second_id, in_reply_to=first_id,
                                            body="And another thing")).status_code == 200
    events = _event_ids(mailroom.project_id)
    assert process_raw_event(events[second_id]) == "pending"  # its thread is still queued
    assert process_raw_event(events[first_id]) == "processed"
    time.sleep(0.6)  # the retry's delay
    assert process_raw_event(events[second_id]) == "processed"
    [ticket] = tickets(client, mailroom)
    assert [m["content"] for m in messages(client, mailroom, ticket["id"])] == ["It is on fire.", "And another thing"]


def test_a_reply_whose_thread_never_arrives_still_opens_a_ticket(client: Any, mailroom: Mailroom) -> None:
    from core.db import session_scope
    from models import RawEvent
    from workers.inbound import ORPHAN_ATTEMPTS, process_raw_event

    missing, reply_id = unique_id(), unique_id()
    post_mail(client, mailroom, mail(sender=CARLA, message_id=missing, subject="never posted"))
    post_mail(client, mailroom, mail(sender=CARLA, message_id=reply_id, in_reply_to=missing))
    events = _event_ids(mailroom.project_id)
    with session_scope() as session:  # the first mail is stuck in flight (a worker died holding it)
        session.get_one(RawEvent, events[missing]).status = "processing"
    for attempt in range(1, ORPHAN_ATTEMPTS):
        assert process_raw_event(events[reply_id]) == "pending"
        time.sleep(0.5 * attempt + 0.1)  # the worker's orphan retry delay
    assert process_raw_event(events[reply_id]) == "processed"
    assert len(tickets(client, mailroom)) == 1


def test_a_customers_plus_address_is_kept_and_is_not_our_reply_token(
    client: Any, mailroom: Mailroom, worker: Any
) -> None:
    ticket, first_id = _open(client, mailroom, worker, sender="Carla <Carla+Orders@Customer.test>")
    assert ticket_row(ticket["id"])["customer_email"] == "carla+orders@customer.test"
    deliver(client, mailroom, worker, mail(sender="Carla+Orders@customer.test", in_reply_to=first_id, body="again"))
    assert len(tickets(client, mailroom)) == 1
