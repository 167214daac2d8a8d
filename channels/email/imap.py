"""IMAP polling of an existing mailbox (Gmail, Microsoft 365, Dovecot…): the protocol half.

Only what a poller that must never lose or double mail needs, on the stdlib `imaplib`:

- `open()` logs in and SELECTs the folder, returning its UIDVALIDITY: UIDs are only stable
  while it stays the same (RFC 3501 §2.3.1.1), so the poller stores the pair (UIDVALIDITY,
  last UID) and starts over, de-duplicated by Message-ID, when it changes.
- `uids_after(n)` is `UID SEARCH UID n+1:*`. A range ending in `*` always includes the
  highest UID even when it is ≤ n (RFC 3501 §6.4.8), so the answer is filtered.
- `fetch()` uses `BODY.PEEK[]`: a plain `BODY[]` sets \\Seen as a side effect (RFC 3501
  §6.4.5), and nothing may look read before it is stored. `mark_seen()` is called after the
  commit.
- Errors are sorted so the poller can react: `LoginRejectedError` (wrong credentials, app
  password needed), `MailboxUnreachableError` (refused, timed out, dropped, BYE), and
  `FetchError` (the server answered NO/BAD for this request; Dovecot also drops the connection
  on a message it cannot read, which surfaces as unreachable and is retried per message).
"""

from __future__ import annotations

import imaplib
import re
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

SECURITY = ("tls", "starttls", "none")
DEFAULT_PORTS = {"tls": 993, "starttls": 143, "none": 143}


class ImapError(Exception):
    """Base of the poller's IMAP errors."""


class LoginRejectedError(ImapError):
    """The server refused the credentials (or the login method)."""


class MailboxUnreachableError(ImapError):
    """No answer, a refused or dropped connection, a timeout, or a BYE from the server."""


class FetchError(ImapError):
    """The server answered NO or BAD to a command on a live connection."""


@dataclass(frozen=True)
class ImapSettings:
    host: str
    username: str
    password: str
    port: int | None = None
    security: str = "tls"
    folder: str = "INBOX"
    timeout: float = 30.0

    @property
    def resolved_port(self) -> int:
        return self.port or DEFAULT_PORTS.get(self.security, 993)


@dataclass(frozen=True)
class FolderState:
    uidvalidity: int
    uidnext: int | None
    exists: int


def quote_mailbox(name: str) -> str:
    """An IMAP quoted string (imaplib sends arguments as they are; `Sent Items` needs quotes).
    Non-ASCII folder names would need modified UTF-7 (RFC 3501 §5.1.3); not supported."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


_UID = re.compile(rb"\bUID (\d+)", re.IGNORECASE)


def _text(data: object) -> str:
    if isinstance(data, list):
        return " ".join(_text(item) for item in data)
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return str(data)


class ImapMailbox:
    """One connection to one folder. Use as a context manager or call open()/close()."""

    def __init__(self, settings: ImapSettings) -> None:
        if settings.security not in SECURITY:
            raise ValueError(f"imap security must be one of {', '.join(SECURITY)}")
        self.settings = settings
        self.conn: imaplib.IMAP4 | None = None

    def __enter__(self) -> ImapMailbox:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- connection ------------------------------------------------------------------------

    def _connect(self) -> imaplib.IMAP4:
        s = self.settings
        context = ssl.create_default_context()
        try:
            if s.security == "tls":
                conn: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                    s.host, s.resolved_port, ssl_context=context, timeout=s.timeout
                )
            else:
                conn = imaplib.IMAP4(s.host, s.resolved_port, timeout=s.timeout)
                if s.security == "starttls":
                    conn.starttls(ssl_context=context)
        except (OSError, imaplib.IMAP4.abort) as exc:
            raise MailboxUnreachableError(_describe(exc)) from exc
        except imaplib.IMAP4.error as exc:  # e.g. STARTTLS refused
            raise MailboxUnreachableError(_describe(exc)) from exc
        return conn

    def open(self) -> FolderState:
        """Connect, log in and select the folder (read-write: \\Seen is set after storing)."""
        self.close()
        conn = self._connect()
        self.conn = conn
        try:
            conn.login(self.settings.username, self.settings.password)
        except imaplib.IMAP4.abort as exc:
            self.close()
            raise MailboxUnreachableError(_describe(exc)) from exc
        except imaplib.IMAP4.error as exc:
            self.close()
            raise LoginRejectedError(_describe(exc)) from exc
        except OSError as exc:
            self.close()
            raise MailboxUnreachableError(_describe(exc)) from exc
        typ, data = self._call(conn.select, quote_mailbox(self.settings.folder))
        if typ != "OK":
            raise FetchError(f"cannot select the folder: {_text(data)[:200]}")
        uidvalidity = self._response_int(conn, "UIDVALIDITY")
        if uidvalidity is None:
            raise FetchError("the server sent no UIDVALIDITY")
        exists = self._response_int(conn, "EXISTS") or 0
        return FolderState(uidvalidity=uidvalidity, uidnext=self._response_int(conn, "UIDNEXT"), exists=exists)

    @staticmethod
    def _response_int(conn: imaplib.IMAP4, name: str) -> int | None:
        _typ, values = conn.response(name)
        for value in reversed(values or []):
            if isinstance(value, bytes) and value.strip().isdigit():
                return int(value.strip())
        return None

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is None:
            return
        try:
            conn.logout()
        except Exception:  # noqa: BLE001 - closing a dead connection
            try:
                conn.shutdown()
            except Exception:  # noqa: BLE001
                pass

    def _call(self, method: object, *args: object) -> tuple[str, list[object]]:
        try:
            typ, data = method(*args)  # type: ignore[operator]
        except imaplib.IMAP4.abort as exc:
            self.close()
            raise MailboxUnreachableError(_describe(exc)) from exc
        except imaplib.IMAP4.error as exc:
            raise FetchError(_describe(exc)) from exc
        except OSError as exc:
            self.close()
            raise MailboxUnreachableError(_describe(exc)) from exc
        return typ, list(data or [])

    def _live(self) -> imaplib.IMAP4:
        if self.conn is None:
            raise MailboxUnreachableError("not connected")
        return self.conn

    # -- commands ---------------------------------------------------------------------------

    def uids_after(self, last_uid: int) -> list[int]:
        """UIDs greater than `last_uid`, ascending."""
        conn = self._live()
        typ, data = self._call(conn.uid, "SEARCH", "UID", f"{last_uid + 1}:*")
        if typ != "OK":
            raise FetchError(f"UID SEARCH failed: {_text(data)[:200]}")
        uids = {int(token) for line in data if isinstance(line, bytes) for token in line.split() if token.isdigit()}
        return sorted(uid for uid in uids if uid > last_uid)

    def fetch(self, uids: Sequence[int]) -> dict[int, bytes]:
        """The raw messages of `uids` (BODY.PEEK[]: nothing is marked seen). UIDs expunged
        meanwhile are simply absent from the answer."""
        if not uids:
            return {}
        conn = self._live()
        typ, data = self._call(conn.uid, "FETCH", ",".join(str(u) for u in uids), "(UID BODY.PEEK[])")
        if typ != "OK":
            raise FetchError(f"UID FETCH failed: {_text(data)[:200]}")
        return _fetched_bodies(data)

    def mark_seen(self, uids: Sequence[int]) -> None:
        if not uids:
            return
        conn = self._live()
        typ, data = self._call(conn.uid, "STORE", ",".join(str(u) for u in uids), "+FLAGS.SILENT", r"(\Seen)")
        if typ != "OK":
            raise FetchError(f"UID STORE failed: {_text(data)[:200]}")


def _fetched_bodies(data: Sequence[object]) -> dict[int, bytes]:
    """imaplib's FETCH answer → {uid: literal}. Each message is a (prefix, literal) tuple
    followed by the rest of its line; servers put `UID n` before or after the literal."""
    bodies: dict[int, bytes] = {}
    items = list(data)
    for position, item in enumerate(items):
        if not isinstance(item, tuple) or len(item) < 2:
            continue
        prefix, literal = item[0], item[1]
        match = _UID.search(prefix) if isinstance(prefix, bytes) else None
        if match is None and position + 1 < len(items) and isinstance(items[position + 1], bytes):
            match = _UID.search(items[position + 1])  # type: ignore[arg-type]
        if match is None or not isinstance(literal, bytes):
            continue
        bodies[int(match.group(1))] = literal
    return bodies


def _describe(exc: BaseException) -> str:
    """A short, secret-free description of a connection or protocol error."""
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out waiting for the server"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc}"[:200]
    if isinstance(exc, socket.gaierror):
        return "host name not found"
    text = _text(exc.args[0]) if exc.args else type(exc).__name__
    return (text or type(exc).__name__)[:200]
