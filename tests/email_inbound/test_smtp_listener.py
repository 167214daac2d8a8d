"""`ticketwire smtp`: the aiosmtpd listener in front of the database, with aiosmtplib as the
sending server. Recipients are checked at RCPT (550 for unknown ones), DATA is answered only
after the raw message is stored, STARTTLS is offered with a certificate, big mail is refused."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest

from channels.email.listener import ReceivedMail, make_controller, tls_context
from services.email_inbound import SmtpMailbox
from tests.email_inbound.conftest import (
    INBOUND,
    Mailroom,
    create_config,
    drain,
    mail,
    messages,
    raw_events,
    ticket_row,
    tickets,
)
from tests.services import free_port


@pytest.fixture
def listener(db: str) -> Iterator[int]:
    port = free_port()  # aiosmtpd's Controller cannot take port 0
    controller = make_controller(SmtpMailbox(), host="127.0.0.1", port=port, hostname="mx.ticketwire.test")
    controller.start()
    yield port
    controller.stop()


def send(port: int, raw: bytes, *, sender: str = "carla@customer.test", recipients: list[str] | None = None,
         **options: Any) -> Any:
    return asyncio.run(aiosmtplib.send(raw, sender=sender, recipients=recipients or [INBOUND], hostname="127.0.0.1",
                                       port=port, start_tls=False, **options))


def test_mail_to_the_inbound_address_becomes_a_ticket_with_trace_headers(
    client: Any, mailroom: Mailroom, listener: int, worker: Any
) -> None:
    raw = mail(subject="Sent by SMTP", body="Hello over SMTP")
    errors, answer = send(listener, raw)
    assert errors == {} and answer.startswith("2.0.0")
    drain(worker)
    [ticket] = tickets(client, mailroom)
    [message] = messages(client, mailroom, ticket["id"])
    assert message["content"] == "Hello over SMTP"
    assert str(ticket_row(ticket["id"])["email_config_id"]) == mailroom.config_id
    full = client.get(mailroom.tenant.url(f"tickets/{ticket['id']}/messages/{message['id']}/full_email"),
                      headers=mailroom.tenant.headers).content
    head, _, rest = full.partition(b"Received: from ")
    assert head == f"Return-Path: <carla@customer.test>\r\nDelivered-To: {INBOUND}\r\n".encode()
    assert b"by mx.ticketwire.test (ticketwire) with ESMTP\r\n" in rest
    assert full.endswith(raw.replace(b"\n", b"\r\n")) or full.endswith(raw)


def test_an_unknown_recipient_is_refused_at_rcpt_and_nothing_is_stored(
    client: Any, mailroom: Mailroom, listener: int, worker: Any
) -> None:
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
        send(listener, mail(), recipients=["nobody@inbound.acme.test"])
    assert refused.value.recipients[0].code == 550
    drain(worker)
    assert raw_events(client, mailroom) == []


def test_known_recipients_are_stored_when_others_are_refused(
    client: Any, mailroom: Mailroom, listener: int, worker: Any
) -> None:
    errors, _ = send(listener, mail(), recipients=["nobody@inbound.acme.test", INBOUND.upper()])
    assert list(errors) == ["nobody@inbound.acme.test"] and errors["nobody@inbound.acme.test"][0] == 550
    drain(worker)
    assert len(tickets(client, mailroom)) == 1


def test_a_plus_address_envelope_recipient_threads_even_when_the_headers_name_the_public_address(
    client: Any, mailroom: Mailroom, listener: int, worker: Any
) -> None:
    from services.email_inbound import reply_address

    send(listener, mail(subject="first"))
    drain(worker)
    [ticket] = tickets(client, mailroom)
    address = reply_address(inbound_address=INBOUND, project_id=mailroom.project_id,
                            ticket_number=ticket["ticket_number"])
    # The support address forwards to our inbound address: only the envelope names the token.
    send(listener, mail(to="support@acme.test", subject="no headers, new subject"), recipients=[address])
    drain(worker)
    assert len(tickets(client, mailroom)) == 1
    assert len(messages(client, mailroom, ticket["id"])) == 2


def test_one_mail_to_two_projects_is_stored_in_each(
    client: Any, mailroom: Mailroom, other_tenant: Any, listener: int, worker: Any
) -> None:
    other = create_config(client, other_tenant, from_email="help@globex.test", inbound_address="help@inbound.globex.test")
    send(listener, mail(), recipients=[INBOUND, other["inbound_address"]])
    drain(worker)
    other_room = Mailroom(other_tenant, other["id"], other["inbound_address"], other["inbound_secret"])
    assert len(tickets(client, mailroom)) == 1 and len(tickets(client, other_room)) == 1


def test_a_bounce_with_a_null_sender_is_accepted_and_recognised(
    client: Any, mailroom: Mailroom, listener: int, worker: Any
) -> None:
    async def null_sender() -> None:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=listener, start_tls=False) as smtp:
            await smtp.mail("")  # MAIL FROM:<>, as every bounce is sent (RFC 5321 §4.5.5)
            await smtp.rcpt(INBOUND)
            await smtp.data(mail(sender="MAILER-DAEMON <mailer-daemon@mx.customer.test>", subject="Undeliverable"))

    asyncio.run(null_sender())
    drain(worker)
    assert tickets(client, mailroom) == []  # `Return-Path: <>`: automatic mail, no ticket
    assert [e["status"] for e in raw_events(client, mailroom)] == ["ignored"]


def test_mail_over_the_size_limit_is_refused(db: str, mailroom: Mailroom) -> None:
    port = free_port()
    controller = make_controller(SmtpMailbox(), host="127.0.0.1", port=port, data_size_limit=20_000)
    controller.start()
    try:
        with pytest.raises(aiosmtplib.SMTPResponseException) as refused:
            send(port, mail(body="x" * 50_000))
        assert refused.value.code == 552
    finally:
        controller.stop()


class BrokenMailbox:
    """A mailbox whose storage is down (the database is away)."""

    def accepts(self, address: str) -> bool:
        return True

    def store(self, mail: ReceivedMail) -> None:
        raise OSError("database unavailable")


def test_a_storage_failure_answers_451_so_the_sender_retries() -> None:
    port = free_port()
    controller = make_controller(BrokenMailbox(), host="127.0.0.1", port=port)
    controller.start()
    try:
        with pytest.raises(aiosmtplib.SMTPDataError) as refused:
            send(port, mail())
        assert refused.value.code == 451
    finally:
        controller.stop()


def _self_signed(directory: Path) -> tuple[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_file), str(key_file)


def test_starttls_is_offered_with_a_certificate_and_marks_the_trace(
    client: Any, mailroom: Mailroom, worker: Any, tmp_path: Path
) -> None:
    cert, key = _self_signed(tmp_path)
    context = tls_context(cert, key)
    assert isinstance(context, ssl.SSLContext)
    port = free_port()
    controller = make_controller(SmtpMailbox(), host="127.0.0.1", port=port, tls=context)
    controller.start()
    try:
        errors, _ = asyncio.run(aiosmtplib.send(mail(body="secret stuff"), sender="carla@customer.test",
                                                recipients=[INBOUND], hostname="127.0.0.1", port=port,
                                                start_tls=True, validate_certs=False))
    finally:
        controller.stop()
    assert errors == {}
    drain(worker)
    [ticket] = tickets(client, mailroom)
    [message] = messages(client, mailroom, ticket["id"])
    full = client.get(mailroom.tenant.url(f"tickets/{ticket['id']}/messages/{message['id']}/full_email"),
                      headers=mailroom.tenant.headers).content
    assert b"(ticketwire) with ESMTPS\r\n" in full
