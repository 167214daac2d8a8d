"""Shared pieces of the inbound email tests: a project with email configs, an in-process
worker (Dramatiq's real Worker on the StubBroker, as in tests/e2e), signing and posting mail."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

import pytest

from channels.email.signature import SIGNATURE_HEADER, sign

FIXTURES = Path(__file__).resolve().parent.parent / "email" / "fixtures"
SUPPORT = "support@acme.test"
INBOUND = "help@inbound.acme.test"


@dataclass
class Mailroom:
    """A tenant with one email config (inbound address `INBOUND`, sending as `SUPPORT`)."""

    tenant: Any
    config_id: str
    inbound_address: str
    inbound_secret: str

    @property
    def project_id(self) -> int:
        return int(self.tenant.project_id)


def create_config(client: Any, tenant: Any, **fields: Any) -> dict[str, Any]:
    body = {"from_email": SUPPORT, "from_name": "Acme Support", "smtp_host": "127.0.0.1", "smtp_port": 2525,
            "smtp_security": "none", "inbound_address": INBOUND, **fields}
    response = client.post(tenant.url("email_configs"), json=body, headers=tenant.headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


@pytest.fixture
def mailroom(client: Any, tenant: Any) -> Mailroom:
    created = create_config(client, tenant)
    return Mailroom(tenant, created["id"], created["inbound_address"], created["inbound_secret"])


@pytest.fixture
def worker(db: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("TICKETWIRE_RETRY_BASE_SECONDS", "0.1")
    import workers.actors
    from services.dispatch import install_dispatcher
    from workers.broker import broker, make_worker

    install_dispatcher(workers.actors.dispatch)
    broker.flush_all()
    w = make_worker(threads=2)
    w.start()
    yield broker
    w.stop()
    broker.flush_all()


def drain(broker: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    for queue in ("inbound", "outbound"):
        broker.join(queue, timeout=int(max(0.1, deadline - time.monotonic()) * 1000), fail_fast=False)


def post_mail(client: Any, room: Mailroom, raw: bytes, *, secret: str | None = None) -> Any:
    headers = {SIGNATURE_HEADER: sign(raw, secret or room.inbound_secret), "Content-Type": "message/rfc822"}
    return client.post(f"/webhooks/email/{room.project_id}/inbound", content=raw, headers=headers)


def deliver(client: Any, room: Mailroom, broker: Any, raw: bytes) -> None:
    """POST one mail and let the worker take it in."""
    response = post_mail(client, room, raw)
    assert response.status_code == 200, response.text
    drain(broker)


def mail(
    *,
    sender: str = "Carla Customer <carla@customer.test>",
    to: str = INBOUND,
    subject: str = "Printer on fire",
    body: str = "It is on fire.",
    message_id: str | None = None,
    in_reply_to: str | None = None,
    references: list[str] | None = None,
    cc: str | None = None,
    headers: dict[str, str] | None = None,
    attachments: list[tuple[str, str, bytes]] | None = None,
) -> bytes:
    """A plain mail as a mail client would send it."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    if cc:
        message["Cc"] = cc
    message["Subject"] = subject
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = message_id or make_msgid(domain="customer.test")
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
    if references:
        message["References"] = " ".join(references)
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(body)
    for filename, content_type, content in attachments or []:
        maintype, _, subtype = content_type.partition("/")
        message.add_attachment(content, maintype=maintype, subtype=subtype, filename=filename)
    return message.as_bytes()


def tickets(client: Any, room: Mailroom) -> list[dict[str, Any]]:
    listed = client.get(room.tenant.url("tickets/?limit=1000&order_by=ticket_number"), headers=room.tenant.headers)
    assert listed.status_code == 200, listed.text
    return list(listed.json()["results"])


def messages(client: Any, room: Mailroom, ticket_id: str) -> list[dict[str, Any]]:
    listed = client.get(room.tenant.url(f"tickets/{ticket_id}/messages?limit=200"), headers=room.tenant.headers)
    assert listed.status_code == 200, listed.text
    return list(listed.json()["results"])


def raw_events(client: Any, room: Mailroom, status: str | None = None) -> list[dict[str, Any]]:
    query = "inbound_events?channel=email&limit=500" + (f"&status={status}" if status else "")
    listed = client.get(room.tenant.url(query), headers=room.tenant.headers)
    assert listed.status_code == 200, listed.text
    return list(listed.json()["results"])


def unique_id() -> str:
    return f"<{uuid.uuid4().hex}@customer.test>"


def ticket_row(ticket_id: str) -> dict[str, Any]:
    """Ticket columns the API does not show (customer_email, email_config_id, thread_key)."""
    from core.db import session_scope
    from models import Ticket

    with session_scope(read_only=True) as session:
        row = session.get_one(Ticket, uuid.UUID(ticket_id))
        return {c.name: getattr(row, c.name) for c in Ticket.__table__.columns}


# -- an SMTP server our replies really reach (aiosmtpd), for threading on our Message-IDs ------

@dataclass
class Sink:
    """An aiosmtpd server that keeps what it is sent."""

    port: int
    received: list[Any]

    def message_ids(self) -> list[str]:
        return [str(m["Message-ID"]) for m in self.received]


class _Keep:
    def __init__(self, received: list[Any]) -> None:
        self.received = received

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        from email import policy
        from email.parser import BytesParser

        self.received.append(BytesParser(policy=policy.default).parsebytes(envelope.original_content or envelope.content))
        return "250 OK"


@pytest.fixture
def sink(monkeypatch: pytest.MonkeyPatch) -> Iterator[Sink]:
    from aiosmtpd.controller import Controller

    from tests.services import free_port

    monkeypatch.setenv("TICKETWIRE_EMAIL_RATE_PER_MINUTE", "0")
    received: list[Any] = []
    port = free_port()  # aiosmtpd's Controller cannot take port 0
    controller = Controller(_Keep(received), hostname="127.0.0.1", port=port)
    controller.start()
    yield Sink(port, received)
    controller.stop()


@pytest.fixture
def sending_mailroom(client: Any, tenant: Any, sink: Sink) -> Mailroom:
    """A mailroom whose replies go to the SMTP sink."""
    created = create_config(client, tenant, smtp_port=sink.port)
    return Mailroom(tenant, created["id"], created["inbound_address"], created["inbound_secret"])


def reply(client: Any, room: Mailroom, broker: Any, sink: Sink, ticket_id: str, text: str = "We are on it.") -> Any:
    """Answer a ticket through the API and return the mail the customer got."""
    before = len(sink.received)
    response = client.post(room.tenant.url(f"tickets/{ticket_id}/reply"), json={"message": text},
                           headers=room.tenant.headers)
    assert response.status_code == 201, response.text
    drain(broker)
    deadline = time.monotonic() + 10
    while len(sink.received) == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(sink.received) == before + 1, "the reply did not reach the SMTP server"
    return sink.received[-1]


def sent_reply(ticket_id: str, message_id: str, text: str = "We are on it.") -> str:
    """A public reply already delivered with Message-ID `message_id` (as if sent earlier).
    Returns the message id."""
    from sqlalchemy import select

    from core.clock import now
    from core.db import session_scope
    from models import Delivery, Ticket
    from services.replies import add_team_message

    with session_scope() as session:
        ticket = session.get_one(Ticket, uuid.UUID(ticket_id))
        message = add_team_message(session=session, ticket=ticket, author=None, content=text, is_private=False)
        delivery = session.scalars(select(Delivery).where(Delivery.message_id == message.id)).one()
        message.external_id = message_id
        message.delivery_status = "sent"
        delivery.status, delivery.external_id, delivery.sent_at = "sent", message_id, now()
        session.info.pop("dispatch", None)  # already "sent": nothing for the worker to do
        return str(message.id)


def email_ticket(project_id: int, *, customer: str, subject: str = "Help", first_message_id: str | None = None,
                 config_id: str | None = None) -> str:
    """An email ticket of `customer` with one inbound message (as if it had arrived earlier)."""
    from core.db import session_scope
    from models import Ticket
    from services import tickets as ticket_service
    from services.ingest import add_customer_message

    message_id = first_message_id or unique_id()
    with session_scope() as session:
        ticket: Ticket = ticket_service.create_ticket(
            session=session, project_id=project_id, channel_source="email", channel_detail=None,
            thread_key=message_id, customer_email=customer, email_from=customer, email_to=customer,
            email_subject=subject, cc_participants=[],
            email_config_id=uuid.UUID(config_id) if config_id else None,
        )
        add_customer_message(session=session, ticket=ticket, content="Help me", external_id=message_id)
        return str(ticket.id)
