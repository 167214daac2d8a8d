"""Real SMTP delivery to an aiosmtpd server started by the test."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from channels.base import DeliveryStatus, OutboundReply
from channels.email import EmailAdapter, EmailConfig
from channels.email import outbound as email_outbound
from channels.email.outbound import build_reply_mime, send_messages

USER, PASSWORD = "acme", "hunter2"


def free_port() -> int:
    # aiosmtpd's Controller cannot take port 0 (its readiness probe needs the real port).
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    peer: Any


@dataclass
class Recorder:
    """An aiosmtpd handler that keeps every accepted message and can be told how to answer."""

    received: list[Received] = field(default_factory=list)
    peers: list[Any] = field(default_factory=list)
    rcpt_answers: dict[str, str] = field(default_factory=dict)
    data_answers: list[str] = field(default_factory=list)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        if session.peer not in self.peers:
            self.peers.append(session.peer)
        answer = self.rcpt_answers.get(address.lower())
        if answer:
            return answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_answers:
            return self.data_answers.pop(0)
        content = envelope.original_content or envelope.content
        message = BytesParser(policy=policy.default).parsebytes(content)
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), message, session.peer))
        return "250 Message accepted for delivery"


def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        USER.encode(),
        PASSWORD.encode(),
    )
    # handled=False: aiosmtpd then answers 535 itself (with the default it stays silent)
    return AuthResult(success=ok, handled=False)


@dataclass
class Server:
    recorder: Recorder
    port: int

    def config(self, **overrides: Any) -> EmailConfig:
        settings: dict[str, Any] = {
            "from_email": "support@acme.test",
            "from_name": "Acme Support",
            "smtp_host": "127.0.0.1",
            "smtp_port": self.port,
            "smtp_security": "none",
            "smtp_timeout": 5,
        }
        settings.update(overrides)
        return EmailConfig.from_settings(settings)


@pytest.fixture
def server() -> Iterator[Server]:
    recorder = Recorder()
    port = free_port()
    controller = Controller(
        recorder, hostname="127.0.0.1", port=port, authenticator=authenticate, auth_require_tls=False
    )
    controller.start()
    try:
        yield Server(recorder, port)
    finally:
        controller.stop()


def message(number: int = 1, to: str = "ann@customer.test", **overrides: Any) -> EmailMessage:
    arguments: dict[str, Any] = {
        "from_email": "support@acme.test",
        "from_name": "Acme Support",
        "to": to,
        "subject": "Printer on fire",
        "text": f"Reply number {number}.\n\nSee *this*.",
        "message_id": f"<d-{number}@acme.test>",
        "in_reply_to": "<c-2@customer.test>",
        "references": ["<c-1@customer.test>", "<c-2@customer.test>"],
    }
    arguments.update(overrides)
    return build_reply_mime(**arguments)


def test_a_reply_arrives_with_its_headers_parts_and_threading(server: Server) -> None:
    (result,) = send_messages(server.config(), [message(cc=["bob@customer.test"])])
    assert result.status is DeliveryStatus.DELIVERED
    assert result.external_id == "<d-1@acme.test>"
    (got,) = server.recorder.received
    assert got.mail_from == "support@acme.test"
    assert got.rcpt_tos == ["ann@customer.test", "bob@customer.test"]
    mail = got.message
    assert mail["From"] == "Acme Support <support@acme.test>"
    assert mail["To"] == "ann@customer.test"
    assert mail["Cc"] == "bob@customer.test"
    assert mail["Subject"] == "Re: Printer on fire"
    assert mail["Message-ID"] == "<d-1@acme.test>"
    assert mail["In-Reply-To"] == "<c-2@customer.test>"
    assert mail["References"] == "<c-1@customer.test> <c-2@customer.test>"
    plain, html = mail.iter_parts()
    assert plain.get_content().replace("\r\n", "\n") == "Reply number 1.\n\nSee *this*.\n"
    assert "<em>this</em>" in html.get_content()


def test_several_messages_go_over_one_connection(server: Server) -> None:
    results = send_messages(server.config(), [message(1), message(2), message(3)])
    assert [r.status for r in results] == [DeliveryStatus.DELIVERED] * 3
    assert [r.external_id for r in results] == ["<d-1@acme.test>", "<d-2@acme.test>", "<d-3@acme.test>"]
    assert [m.message["Message-ID"] for m in server.recorder.received] == [r.external_id for r in results]
    assert len(server.recorder.peers) == 1


def test_a_4xx_answer_is_retryable(server: Server) -> None:
    server.recorder.data_answers.append("451 4.3.0 Mailbox busy, try later")
    (result,) = send_messages(server.config(), [message()])
    assert result.status is DeliveryStatus.RETRYABLE
    assert result.error_code == "smtp_451"
    assert result.error_detail == "451 4.3.0 Mailbox busy, try later"
    assert result.retry_after is None


def test_a_5xx_answer_fails_with_the_servers_text(server: Server) -> None:
    server.recorder.rcpt_answers["gone@customer.test"] = "550 5.1.1 <gone@customer.test>: User unknown"
    (result,) = send_messages(server.config(), [message(to="gone@customer.test")])
    assert result.status is DeliveryStatus.FAILED
    assert result.error_code == "smtp_550"
    assert (
        result.error_detail is not None
        and "550 5.1.1 <gone@customer.test>: User unknown" in result.error_detail
    )


def test_a_refused_customer_is_not_delivered_even_when_a_cc_is(server: Server) -> None:
    server.recorder.rcpt_answers["gone@customer.test"] = "550 5.1.1 User unknown"
    (result,) = send_messages(server.config(), [message(to="gone@customer.test", cc=["bob@customer.test"])])
    assert result.status is DeliveryStatus.FAILED
    assert result.error_detail == "550 gone@customer.test: 5.1.1 User unknown"


def test_one_rejected_message_does_not_stop_the_burst(server: Server) -> None:
    server.recorder.rcpt_answers["gone@customer.test"] = "550 5.1.1 User unknown"
    results = send_messages(server.config(), [message(1), message(2, to="gone@customer.test"), message(3)])
    assert [r.status for r in results] == [
        DeliveryStatus.DELIVERED,
        DeliveryStatus.FAILED,
        DeliveryStatus.DELIVERED,
    ]
    assert [m.message["Message-ID"] for m in server.recorder.received] == [
        "<d-1@acme.test>",
        "<d-3@acme.test>",
    ]
    assert len(server.recorder.peers) == 1


def test_connection_refused_is_retryable_for_every_message() -> None:
    config = EmailConfig.from_settings(
        {
            "from_email": "support@acme.test",
            "smtp_host": "127.0.0.1",
            "smtp_port": free_port(),
            "smtp_security": "none",
        }
    )
    results = send_messages(config, [message(1), message(2)])
    assert [r.status for r in results] == [DeliveryStatus.RETRYABLE] * 2
    assert {r.error_code for r in results} == {"smtp_connection_error"}


def test_a_server_that_never_answers_times_out_as_retryable() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    accepted: list[socket.socket] = []

    def accept() -> None:
        try:
            connection, _ = listener.accept()
            accepted.append(connection)  # hold it open, say nothing
        except OSError:
            pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        config = EmailConfig.from_settings(
            {
                "from_email": "support@acme.test",
                "smtp_host": "127.0.0.1",
                "smtp_port": listener.getsockname()[1],
                "smtp_security": "none",
                "smtp_timeout": 0.5,
            }
        )
        (result,) = send_messages(config, [message()])
    finally:
        listener.close()
        for connection in accepted:
            connection.close()
    assert result.status is DeliveryStatus.RETRYABLE
    assert result.error_code == "smtp_timeout"


def test_login_is_used_when_configured(server: Server) -> None:
    (result,) = send_messages(server.config(smtp_username=USER, smtp_password=PASSWORD), [message()])
    assert result.status is DeliveryStatus.DELIVERED
    (result,) = send_messages(server.config(smtp_username=USER, smtp_password="wrong"), [message()])
    assert result.status is DeliveryStatus.FAILED
    assert result.error_code == "smtp_535"


def test_starttls_required_but_not_offered_fails_without_retrying(server: Server) -> None:
    (result,) = send_messages(server.config(smtp_security="starttls"), [message()])
    assert result.status is DeliveryStatus.FAILED
    assert result.error_detail is not None and "STARTTLS" in result.error_detail


def test_test_connection_reports_banner_ehlo_and_login(server: Server) -> None:
    report = email_outbound.test_connection(server.config(smtp_username=USER, smtp_password=PASSWORD))
    assert report["ok"] is True
    assert report["banner"].startswith("220 ")
    assert report["ehlo"].startswith("250 ")
    assert report["login"].startswith("235 ")
    assert "auth" in report["extensions"]
    assert PASSWORD not in repr(report)


def test_test_connection_reports_the_error(server: Server) -> None:
    bad = email_outbound.test_connection(server.config(smtp_username=USER, smtp_password="wrong"))
    assert bad["ok"] is False and bad["code"] == 535 and bad["error"].startswith("535 ")
    refused = email_outbound.test_connection(server.config(smtp_port=free_port()))
    assert refused["ok"] is False and refused["error"]


def test_the_adapter_delivers_a_reply_from_the_ticket_thread(server: Server) -> None:
    adapter = EmailAdapter(server.config())
    reply = OutboundReply(
        delivery_id="dlv-7",
        ticket_id="t-1",
        ticket_number=3,
        text="All fixed.",
        thread={
            "email_to": "ann@customer.test",
            "email_subject": "Printer on fire",
            "email_message_id": "<dlv-7@acme.test>",
            "in_reply_to": "<c-2@customer.test>",
            "references": ["<c-1@customer.test>", "<c-2@customer.test>"],
            "cc_participants": ["bob@customer.test"],
        },
    )
    result = adapter.deliver(reply)
    assert result.status is DeliveryStatus.DELIVERED
    assert result.external_id == "<dlv-7@acme.test>"
    (got,) = server.recorder.received
    assert got.rcpt_tos == ["ann@customer.test", "bob@customer.test"]
    assert got.message["In-Reply-To"] == "<c-2@customer.test>"
    assert got.message["Subject"] == "Re: Printer on fire"


def test_sending_works_from_inside_a_running_event_loop(server: Server) -> None:
    async def inside() -> list[DeliveryStatus]:
        return [r.status for r in send_messages(server.config(), [message()])]

    assert asyncio.run(inside()) == [DeliveryStatus.DELIVERED]
