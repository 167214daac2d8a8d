"""The inbound SMTP listener (`ticketwire smtp`): an aiosmtpd server in front of a `Mailbox`.

The listener knows SMTP and nothing of the database: a `Mailbox` (services.email_inbound's
`SmtpMailbox` in production, a recorder in tests) answers whether a recipient exists and
stores an accepted message. The rules it enforces:

- Unknown recipients are refused at RCPT time with 550, so the sending server bounces the
  mail to its author instead of us accepting and then dropping it (RFC 5321 §3.3: a server
  that accepts a message takes responsibility for delivering it or reporting the failure).
- DATA is answered 250 only after the mailbox stored the message durably; a storage failure
  answers 451, a transient code, and the sender retries later (RFC 5321 §4.2.5: "the
  receiver MUST NOT... lose the message" after 250).
- Messages over `data_size_limit` (25 MB by default) are refused with 552 by aiosmtpd, which
  also advertises the limit in the EHLO `SIZE` extension (RFC 1870).
- STARTTLS is offered when a certificate is configured (TICKETWIRE_SMTP_TLS_CERT/KEY).
- As the final delivery hop we add `Return-Path`, `Delivered-To` and a `Received` trace line
  to the stored copy (RFC 5321 §4.4), so the envelope recipient (a `support+t<token>@` reply
  address) and a null sender (`MAIL FROM:<>`, bounces) survive into parsing.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, Protocol

from aiosmtpd.controller import Controller, UnthreadedController
from aiosmtpd.smtp import SMTP, Envelope, Session

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 25 * 1024 * 1024
# RFC 5321 §4.5.3.1.8: servers must accept at least 100 recipients; a support mailbox never
# needs more, and the limit bounds the recipient look-ups one message can cause.
MAX_RECIPIENTS = 100


class MailboxUnavailableError(Exception):
    """The mailbox cannot store right now: answered with a transient 4xx code."""


@dataclass(frozen=True)
class ReceivedMail:
    """One message as the listener accepted it."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    content: bytes
    peer_ip: str = ""
    helo: str = ""
    tls: bool = False
    hostname: str = "ticketwire"
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def for_recipient(self, rcpt: str) -> bytes:
        """The stored copy for one envelope recipient, with the final-delivery trace headers."""
        protocol = "ESMTPS" if self.tls else "ESMTP"
        helo = _header_safe(self.helo) or "unknown"
        trace = (
            f"Return-Path: <{_header_safe(self.mail_from)}>\r\n"
            f"Delivered-To: {_header_safe(rcpt)}\r\n"
            f"Received: from {helo} ([{_header_safe(self.peer_ip)}])\r\n"
            f"\tby {_header_safe(self.hostname)} (ticketwire) with {protocol}\r\n"
            f"\tfor <{_header_safe(rcpt)}>; {format_datetime(self.received_at)}\r\n"
        )
        return trace.encode("utf-8", "replace") + self.content


def _header_safe(value: str) -> str:
    return "".join(ch for ch in value if ch not in "\r\n<>")[:300]


class Mailbox(Protocol):
    """Where the listener puts mail. Both methods block; the listener calls them in a thread."""

    def accepts(self, address: str) -> bool:
        """Whether `address` (an envelope recipient) belongs to a configured inbound address."""

    def store(self, mail: ReceivedMail) -> None:
        """Store durably before returning; raise MailboxUnavailableError (or anything) for 451."""


class InboundHandler:
    """aiosmtpd handler hooks: recipient check at RCPT, durable store at DATA."""

    def __init__(self, mailbox: Mailbox, *, hostname: str | None = None) -> None:
        self.mailbox = mailbox
        self.hostname = hostname or socket.getfqdn()

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return "452 4.5.3 Too many recipients"
        try:
            known = await asyncio.get_running_loop().run_in_executor(None, self.mailbox.accepts, address)
        except Exception:
            log.exception("recipient check failed")
            return "451 4.3.0 Temporary failure looking up the recipient, try again later"
        if not known:
            return "550 5.1.1 No such recipient here"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        content = envelope.original_content or envelope.content or b""
        if isinstance(content, str):  # only with decode_data=True, which we never set
            content = content.encode("utf-8", "surrogateescape")
        peer = session.peer
        mail = ReceivedMail(
            mail_from=envelope.mail_from or "",
            rcpt_tos=tuple(envelope.rcpt_tos),
            content=content,
            peer_ip=str(peer[0]) if isinstance(peer, tuple) and peer else "",
            helo=session.host_name or "",
            tls=session.ssl is not None,
            hostname=self.hostname,
        )
        try:
            await asyncio.get_running_loop().run_in_executor(None, self.mailbox.store, mail)
        except Exception:
            log.exception("storing an inbound message failed; answered 451 so the sender retries")
            return "451 4.3.0 Temporary failure storing the message, try again later"
        return "250 2.0.0 Message accepted"


def tls_context(cert_file: str | None, key_file: str | None) -> ssl.SSLContext | None:
    """A server context for STARTTLS, or None when no certificate is configured."""
    if not cert_file or not key_file:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context


def _server_kwargs(*, tls: ssl.SSLContext | None, data_size_limit: int, timeout: float) -> dict[str, Any]:
    return {
        "data_size_limit": data_size_limit,
        "enable_SMTPUTF8": True,
        "decode_data": False,
        "tls_context": tls,
        "require_starttls": False,
        "ident": "ticketwire ESMTP",
        "timeout": timeout,
    }


def make_controller(
    mailbox: Mailbox,
    *,
    host: str = "127.0.0.1",
    port: int = 2525,
    tls: ssl.SSLContext | None = None,
    data_size_limit: int = MAX_MESSAGE_BYTES,
    hostname: str | None = None,
    timeout: float = 300.0,
    threaded: bool = True,
    loop: asyncio.AbstractEventLoop | None = None,
) -> Controller | UnthreadedController:
    """An aiosmtpd controller serving `mailbox` (a free real port: Controller cannot take 0).

    `threaded=False` gives an UnthreadedController for use inside a running asyncio loop
    (call `begin()` / `end()`); the threaded one runs its own loop (`start()` / `stop()`).
    """
    handler = InboundHandler(mailbox, hostname=hostname)
    kwargs = _server_kwargs(tls=tls, data_size_limit=data_size_limit, timeout=timeout)
    if threaded:
        return Controller(handler, hostname=host, port=port, server_hostname=hostname, **kwargs)
    return UnthreadedController(handler, hostname=host, port=port, loop=loop, server_hostname=hostname, **kwargs)


def serve(
    mailbox: Mailbox,
    *,
    host: str = "127.0.0.1",
    port: int = 2525,
    cert_file: str | None = None,
    key_file: str | None = None,
    data_size_limit: int = MAX_MESSAGE_BYTES,
    hostname: str | None = None,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Run the listener until SIGTERM/SIGINT (the `ticketwire smtp` process)."""
    controller = make_controller(
        mailbox, host=host, port=port, tls=tls_context(cert_file, key_file), data_size_limit=data_size_limit,
        hostname=hostname,
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    controller.start()
    log.info("SMTP listener on %s:%s (STARTTLS %s)", host, port, "on" if cert_file else "off")
    if on_ready is not None:
        on_ready()
    try:
        stop.wait()
    finally:
        controller.stop()
