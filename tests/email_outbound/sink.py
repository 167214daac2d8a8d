"""Local stand-ins for a mail provider: an aiosmtpd SMTP server that records what it accepts (and
can be told how to answer), and a Dovecot IMAP server whose Sent folder gets a copy of every
accepted mail, the way Gmail and Microsoft 365 file what their SMTP servers accept.

Also used by bench/email_send.py.
"""

from __future__ import annotations

import contextlib
import imaplib
import itertools
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


def free_port() -> int:
    # aiosmtpd's Controller cannot take port 0 (its readiness probe needs the real port).
    with contextlib.closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(<[^>\r\n]+>)", re.IGNORECASE | re.MULTILINE)


@dataclass
class Mail:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    connection: int
    at: float
    message_id: str | None
    mail_options: list[str] = field(default_factory=list)

    @property
    def message(self) -> EmailMessage:
        return BytesParser(policy=policy.default).parsebytes(self.raw)  # type: ignore[return-value]


class SentFolder:
    """Files a copy of each accepted mail in a Dovecot mailbox's Sent folder (IMAP APPEND)."""

    def __init__(self, host: str, port: int, user: str, password: str, folder: str = "Sent") -> None:
        self.host, self.port, self.user, self.password, self.folder = host, port, user, password, folder
        self._client: imaplib.IMAP4 | None = None

    def append(self, raw: bytes) -> None:
        for attempt in range(2):
            try:
                if self._client is None:
                    self._client = imaplib.IMAP4(self.host, self.port, timeout=10)
                    self._client.login(self.user, self.password)
                self._client.append(self.folder, None, None, raw)
                return
            except (OSError, imaplib.IMAP4.error):
                self._client = None
                if attempt:
                    raise

    def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(OSError, imaplib.IMAP4.error):
                self._client.logout()
            self._client = None


@dataclass
class Sink:
    """An aiosmtpd handler keeping every accepted mail.

    `answers` holds forced replies for the next commands, as (command, reply) pairs:
    ("RCPT", "550 5.1.1 No such user") answers the next RCPT, ("DATA", "451 ...") the next DATA.
    `refuse` maps recipient addresses to a permanent reply.
    """

    sent_folder: SentFolder | None = None
    mails: list[Mail] = field(default_factory=list)
    answers: list[tuple[str, str]] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)
    connections: int = 0
    errors: list[str] = field(default_factory=list)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _forced(self, command: str) -> str | None:
        with self._lock:
            for index, (name, answer) in enumerate(self.answers):
                if name == command:
                    del self.answers[index]
                    return answer
        return None

    def _connection(self, session: Any) -> int:
        number = getattr(session, "tw_connection", None)
        if number is None:
            number = next(self._ids)
            session.tw_connection = number
            self.connections += 1
        return int(number)

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        self._connection(session)
        forced = self._forced("MAIL")
        if forced:
            return forced
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        forced = self._forced("RCPT") or self.refuse.get(address.lower())
        if forced:
            return forced
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        forced = self._forced("DATA")
        if forced:
            return forced
        raw = envelope.original_content or envelope.content
        if self.sent_folder is not None:
            try:
                self.sent_folder.append(raw)
            except (OSError, imaplib.IMAP4.error) as exc:
                # A provider that cannot file the copy refuses the mail for now (the client retries).
                self.errors.append(repr(exc))
                return "451 4.3.0 Could not store the message, try again later"
        found = _MESSAGE_ID.search(raw.split(b"\r\n\r\n", 1)[0])
        mail = Mail(envelope.mail_from, list(envelope.rcpt_tos), raw, self._connection(session), time.monotonic(),
                    found.group(1).decode() if found else None, list(envelope.mail_options))
        with self._lock:
            self.mails.append(mail)
        return "250 2.0.0 Message accepted for delivery"

    def by_recipient(self) -> dict[str, list[Mail]]:
        result: dict[str, list[Mail]] = {}
        for mail in list(self.mails):
            for address in mail.rcpt_tos:
                result.setdefault(address.lower(), []).append(mail)
        return result


@contextlib.contextmanager
def smtp_server(sink: Sink | None = None, *, smtputf8: bool = False) -> Iterator[tuple[Sink, int]]:
    """The sink on a free port; `smtputf8` makes it offer SMTPUTF8 (RFC 6531) like Postfix,
    Exchange Online and Gmail do (aiosmtpd does not by default)."""
    sink = sink or Sink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port, enable_SMTPUTF8=smtputf8)
    controller.start()
    try:
        yield sink, port
    finally:
        controller.stop()
        if sink.sent_folder is not None:
            sink.sent_folder.close()


# --- Dovecot ---------------------------------------------------------------------------------------

DOVECOT_USER, DOVECOT_PASSWORD = "acme", "dovecot-secret"

_CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{root}/mail/%u
mail_fsync = never
first_valid_uid = 1
default_login_user = dovenull
default_internal_user = dovecot
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
namespace inbox {{
  inbox = yes
  mailbox Sent {{
    special_use = \\Sent
    auto = create
  }}
}}
"""


@dataclass
class Dovecot:
    port: int
    root: Path
    proc: subprocess.Popen[bytes]
    user: str = DOVECOT_USER
    password: str = DOVECOT_PASSWORD

    def log(self, *, tail: int = 3000) -> str:
        path = self.root / "dovecot.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return text[-tail:] if tail else text

    def logins(self) -> int:
        return self.log(tail=0).count("Login: user=<")

    def sent_folder(self) -> SentFolder:
        return SentFolder("127.0.0.1", self.port, self.user, self.password)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.root, ignore_errors=True)


def start_dovecot() -> Dovecot:
    """Dovecot (Debian `dovecot-imapd`) on a free port, one user with an INBOX and a \\Sent folder.

    As root, mail processes run as the `mail` user (Dovecot refuses root), so the directory is
    made reachable for it."""
    binary = shutil.which("dovecot") or "/usr/sbin/dovecot"
    if not Path(binary).exists():
        raise RuntimeError("Dovecot is not installed (apt-get install dovecot-imapd)")
    root = Path(tempfile.mkdtemp(prefix="ticketwire-dovecot-"))
    os.chmod(root, 0o755)
    if os.geteuid() == 0:
        mail_user = pwd.getpwnam("mail")
        uid, gid = mail_user.pw_uid, mail_user.pw_gid
    else:
        uid, gid = os.geteuid(), os.getegid()
    for name in ("run", "state", "mail"):
        (root / name).mkdir()
    os.chown(root / "mail", uid, gid)
    (root / "passwd").write_text(f"{DOVECOT_USER}:{{PLAIN}}{DOVECOT_PASSWORD}\n")
    port = free_port()
    (root / "dovecot.conf").write_text(_CONFIG.format(root=root, uid=uid, gid=gid, port=port))
    proc = subprocess.Popen([binary, "-F", "-c", str(root / "dovecot.conf")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while True:
        try:
            client = imaplib.IMAP4("127.0.0.1", port, timeout=2)
            client.login(DOVECOT_USER, DOVECOT_PASSWORD)
            client.logout()
            time.sleep(0.2)
            if proc.poll() is not None:  # somebody else's server answered on that port
                raise OSError("our Dovecot exited")
            return Dovecot(port, root, proc)
        except (OSError, imaplib.IMAP4.error):
            if time.monotonic() > deadline or proc.poll() is not None:
                log = (root / "dovecot.log").read_text() if (root / "dovecot.log").exists() else ""
                proc.kill()
                raise RuntimeError(f"Dovecot did not start: {log[-2000:]}") from None
            time.sleep(0.1)
