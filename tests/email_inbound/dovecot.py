"""A real Dovecot IMAP server (Debian `dovecot-imapd`) on a private port, for the poller tests.

A ~25-line config: passwd-file users, maildir in a temp dir, 127.0.0.1 only, no TLS. Dovecot's
mail processes run as an unprivileged user: `mail` when we are root, ourselves otherwise; the
temp dir lives directly under /tmp (pytest's own tmp dirs are 0700 root) so that user can
reach it. Each test gets its own mailbox user; `restart()` stops and starts the same server.
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tests.services import free_port

USERS = 500
PASSWORD = "secret"

CONFIG = """\
protocols = imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{root}/mail/%u
mail_fsync = never
first_valid_uid = {uid}
last_valid_uid = 0
default_internal_user = {internal_user}
default_login_user = {login_user}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/mail/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
"""


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (from /proc), deepest first."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: list[int] = []
    stack = list(parents.get(pid, []))
    while stack:
        child = stack.pop()
        found.append(child)
        stack.extend(parents.get(child, []))
    return found[::-1]


def _binary() -> str:
    found = shutil.which("dovecot") or ("/usr/sbin/dovecot" if Path("/usr/sbin/dovecot").exists() else None)
    if not found:
        raise RuntimeError("Dovecot is not installed (apt-get install dovecot-imapd; scripts/install-system-deps.sh)")
    return found


@dataclass
class Mailbox:
    """One IMAP user on the server."""

    server: Dovecot
    username: str
    password: str

    def connect(self) -> imaplib.IMAP4:
        conn = imaplib.IMAP4("127.0.0.1", self.server.port, timeout=10)
        conn.login(self.username, self.password)
        return conn

    def append(self, messages: Iterable[bytes], folder: str = "INBOX") -> int:
        """IMAP APPEND each message (unseen). Returns how many."""
        conn = self.connect()
        count = 0
        try:
            for raw in messages:
                typ, data = conn.append(folder, None, None, raw)
                assert typ == "OK", data
                count += 1
        finally:
            conn.logout()
        return count

    def seen_uids(self) -> set[int]:
        conn = self.connect()
        try:
            conn.select("INBOX", readonly=True)
            typ, data = conn.uid("SEARCH", "SEEN")
            assert typ == "OK"
            return {int(u) for u in (data[0] or b"").split()}
        finally:
            conn.logout()

    def message_files(self) -> list[Path]:
        root = self.server.root / "mail" / self.username
        return sorted([*root.glob("cur/*"), *root.glob("new/*")], key=lambda p: p.name)

    def create_folder(self, folder: str) -> None:
        conn = self.connect()
        try:
            typ, data = conn.create(folder)
            assert typ == "OK", data
        finally:
            conn.logout()

    def recreate_folder(self, folder: str) -> None:
        """DELETE and CREATE a folder: the new one has a new UIDVALIDITY (RFC 3501 §2.3.1.1),
        as when a mailbox is rebuilt or restored."""
        conn = self.connect()
        try:
            for command in (conn.delete, conn.create):
                typ, data = command(folder)
                assert typ == "OK", data
        finally:
            conn.logout()


class Dovecot:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="ticketwire-imap-poll-", dir="/tmp"))
        self.root.chmod(0o755)
        self.port = free_port()
        self.config = self.root / "dovecot.conf"
        if os.geteuid() == 0:
            user = pwd.getpwnam("mail")
            internal_user, login_user = "dovecot", "dovenull"  # created by the dovecot-core package
        else:
            user = pwd.getpwuid(os.geteuid())
            internal_user = login_user = user.pw_name
        self.uid, self.gid = user.pw_uid, user.pw_gid
        (self.root / "mail").mkdir()
        if os.geteuid() == 0:
            os.chown(self.root / "mail", self.uid, self.gid)
        (self.root / "users").write_text("".join(f"user{i}:{{PLAIN}}{PASSWORD}\n" for i in range(USERS)))
        self._next_user = -1
        self.config.write_text(CONFIG.format(root=self.root, uid=self.uid, gid=self.gid, port=self.port,
                                             internal_user=internal_user, login_user=login_user))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([_binary(), "-F", "-c", str(self.config)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                if s.recv(100).startswith(b"* OK"):
                    return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        log = (self.root / "dovecot.log").read_text() if (self.root / "dovecot.log").exists() else ""
        raise RuntimeError(f"Dovecot did not start: {log[-2000:]}")

    def stop(self) -> None:
        """Stop the server and every process it started. Dovecot's master exits on SIGTERM but
        an `imap` process serving a client lives on (it keeps answering NOOP and FETCH), which
        is not what a restarted or crashed server does: those are killed by their ids."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        children = _descendants(proc.pid)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        for pid in children:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            except OSError:
                return
            time.sleep(0.05)

    def restart(self) -> None:
        self.stop()
        self.start()

    def add_user(self) -> Mailbox:
        """A mailbox nobody used yet. The users are written before the server starts: Dovecot
        re-reads a changed passwd-file at most once a second, so users added while it runs may
        be refused for a moment."""
        self._next_user += 1
        if self._next_user >= USERS:
            raise RuntimeError("no mailbox users left; raise USERS")
        return Mailbox(self, f"user{self._next_user}", PASSWORD)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
