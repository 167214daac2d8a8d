"""Inbound email benchmark (issue 5): messages per second through the SMTP listener and through
IMAP polling into tickets, next to the raw baselines measured in the same run:

* a bare aiosmtpd sink (a handler that answers 250 and keeps nothing), sent the same mail by
  the same aiosmtplib clients, for the listener;
* a bare imaplib loop fetching the same messages (UID FETCH … BODY.PEEK[] in batches of 100)
  from the same Dovecot, for the poller.

Everything runs in one process: the listener (`ticketwire smtp`'s aiosmtpd controller and
`SmtpMailbox`), the poller, and Dramatiq's in-process broker with worker threads for ingest.
In production the listener, the poller and the workers are separate processes, so each path is
measured in two phases that do not share the GIL: taking the mail in (stored durably; the
ingest messages queue up) and then turning the queue into tickets. The end-to-end rate is
messages / (both phases). The database is SQLite by default (the `make run` default) or a
private PostgreSQL started for the run (`--database postgres`, needs the Debian server).

    .venv/bin/python bench/email_inbound.py                       # 1,000 messages, SQLite
    .venv/bin/python bench/email_inbound.py --database postgres
    .venv/bin/python bench/email_inbound.py --messages 200 --no-imap
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiosmtplib  # noqa: E402
from aiosmtpd.controller import Controller  # noqa: E402

from tests.services import free_port  # noqa: E402

INBOUND = "help@inbound.bench.test"
SENDER = "customer@customer.test"


def message(n: int, run: str) -> bytes:
    body = f"Hello, this is benchmark message {n}. The printer is on fire again.\r\n" * 5
    return (
        f"From: Customer {n} <c{n}.{run}@customer.test>\r\nTo: {INBOUND}\r\nSubject: Bench {run} {n}\r\n"
        f"Message-ID: <{run}-{n}@customer.test>\r\nDate: Fri, 27 Nov 2026 08:00:00 +0000\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}"
    ).encode()


async def _send_all(port: int, messages: list[bytes], concurrency: int) -> float:
    """Send every message over `concurrency` connections (each reused for its share)."""
    async def client(share: list[bytes]) -> None:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=60) as smtp:
            for raw in share:
                await smtp.sendmail(SENDER, [INBOUND], raw)

    started = time.perf_counter()
    await asyncio.gather(*(client(messages[i::concurrency]) for i in range(concurrency)))
    return time.perf_counter() - started


class BareSink:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        return "250 OK"


def wait_for(count: Callable[[], int], target: int, timeout: float) -> float:
    started = time.perf_counter()
    deadline = time.monotonic() + timeout
    while count() < target:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {count()} of {target} after {timeout} s")
        time.sleep(0.05)
    return time.perf_counter() - started


def setup_database(kind: str, workdir: Path) -> Any:
    server = None
    if kind == "postgres":
        from tests.services import start_postgres

        server = start_postgres(workdir / "pg")
        os.environ["DATABASE_URL"] = server.url
    else:
        os.environ["DATABASE_URL"] = f"sqlite:///{workdir / 'ticketwire.db'}"
    os.environ["TICKETWIRE_VAR_DIR"] = str(workdir / "var")
    os.environ.setdefault("TICKETWIRE_SECRET_KEY", "bench-secret-key")
    os.environ.pop("REDIS_URL", None)
    from core.migrate import migrate

    migrate()
    return server


def counts(project_id: int) -> tuple[int, int]:
    from sqlalchemy import func, select

    from core.db import session_scope
    from models import RawEvent, Ticket

    with session_scope(read_only=True) as session:
        tickets = session.scalar(select(func.count()).select_from(Ticket).where(Ticket.project_id == project_id))
        events = session.scalar(select(func.count()).select_from(RawEvent).where(RawEvent.project_id == project_id))
    return int(tickets or 0), int(events or 0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8, help="SMTP client connections")
    parser.add_argument("--worker-threads", type=int, default=4)
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--no-imap", action="store_true")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="ticketwire-bench-email-"))
    pg = setup_database(args.database, workdir)
    import workers.actors
    from channels.email.listener import make_controller
    from core.db import session_scope
    from services import accounts, email_configs
    from services.dispatch import install_dispatcher
    from services.email_inbound import SmtpMailbox

    install_dispatcher(workers.actors.dispatch)
    results: list[tuple[str, str]] = []
    n = args.messages
    try:
        with session_scope() as session:
            project, _ = accounts.get_or_create_project(session=session, name="Bench")
            config, _secret = email_configs.create_config(
                session=session, project_id=project.id,
                data={"from_email": "support@bench.test", "smtp_host": "127.0.0.1", "inbound_address": INBOUND},
            )
            project_id, config_id = project.id, config.id

        # -- SMTP: bare sink, then the listener -------------------------------------------------
        run = uuid.uuid4().hex[:8]
        port = free_port()
        bare = Controller(BareSink(), hostname="127.0.0.1", port=port)
        bare.start()
        try:
            bare_seconds = asyncio.run(_send_all(port, [message(i, "bare" + run) for i in range(n)], args.concurrency))
        finally:
            bare.stop()
        results.append(("bare aiosmtpd sink (accept and discard)", f"{n / bare_seconds:,.0f} msg/s"))

        port = free_port()
        listener = make_controller(SmtpMailbox(), host="127.0.0.1", port=port)
        listener.start()
        try:
            ack_seconds = asyncio.run(_send_all(port, [message(i, "smtp" + run) for i in range(n)], args.concurrency))
        finally:
            listener.stop()
        ingest_seconds = drain(args.worker_threads, project_id, n)
        results.append(("SMTP listener: accepted (stored durably before 250)", f"{n / ack_seconds:,.0f} msg/s"))
        results.append(("listener acceptance vs bare sink", f"{bare_seconds / ack_seconds:.0%}"))
        results.append(("ingest worker: queued raw mail → tickets", f"{n / ingest_seconds:,.0f} msg/s"))
        results.append(("SMTP listener → tickets, end to end", f"{n / (ack_seconds + ingest_seconds):,.0f} msg/s"))

        # -- IMAP: a bare fetch loop, then the poller ---------------------------------------------
        if not args.no_imap:
            results.extend(_imap(n, project_id, config_id, run, args.worker_threads))
    finally:
        from services.email_configs import smtp_pool

        smtp_pool().close()
        if pg is not None:
            pg.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    database = "SQLite (WAL)" if args.database == "sqlite" else "PostgreSQL"
    print(f"\n{n} messages, {args.concurrency} SMTP connections, {args.worker_threads} ingest threads, {database}")
    width = max(len(name) for name, _ in results)
    for name, value in results:
        print(f"  {name.ljust(width)}  {value}")


def drain(threads: int, project_id: int, n: int) -> float:
    """Start ingest worker threads on the queued raw mail; seconds until `n` more tickets."""
    from workers.broker import make_worker

    before = counts(project_id)[0]
    worker = make_worker(threads=threads)
    started = time.perf_counter()
    worker.start()
    try:
        wait_for(lambda: counts(project_id)[0] - before, n, timeout=900)
    finally:
        worker.stop()
    return time.perf_counter() - started


def _imap(n: int, project_id: int, config_id: uuid.UUID, run: str, threads: int) -> list[tuple[str, str]]:
    import imaplib

    from core.db import session_scope
    from services import email_configs
    from services.imap_poll import poll_mailbox
    from tests.email_inbound.dovecot import Dovecot

    results: list[tuple[str, str]] = []
    server = Dovecot()
    server.start()
    try:
        user = server.add_user()
        started = time.perf_counter()
        user.append(message(i, "imap" + run) for i in range(n))
        results.append(("IMAP APPEND into Dovecot (setup, for scale)", f"{n / (time.perf_counter() - started):,.0f} msg/s"))

        conn = imaplib.IMAP4("127.0.0.1", server.port)
        conn.login(user.username, user.password)
        conn.select("INBOX", readonly=True)
        started = time.perf_counter()
        fetched = 0
        for first in range(1, n + 1, 100):
            typ, data = conn.uid("FETCH", f"{first}:{min(n, first + 99)}", "(UID BODY.PEEK[])")
            fetched += sum(1 for item in data if isinstance(item, tuple))
        bare_seconds = time.perf_counter() - started
        conn.logout()
        assert fetched == n, fetched
        results.append(("bare imaplib UID FETCH BODY.PEEK[] loop", f"{n / bare_seconds:,.0f} msg/s"))

        with session_scope() as session:
            email_configs.update_config(
                session=session, project_id=project_id, config_id=config_id,
                data={"imap_host": "127.0.0.1", "imap_port": server.port, "imap_security": "none",
                      "imap_username": user.username, "imap_password": user.password},
            )
        started = time.perf_counter()
        result = poll_mailbox(config_id=config_id)
        poll_seconds = time.perf_counter() - started
        assert result.ok and result.stored == n, result
        ingest_seconds = drain(threads, project_id, n)
        results.append(("IMAP poller: stored as raw events (cursor committed per batch)", f"{n / poll_seconds:,.0f} msg/s"))
        results.append(("poller storing vs bare fetch", f"{bare_seconds / poll_seconds:.0%}"))
        results.append(("ingest worker: queued raw mail → tickets", f"{n / ingest_seconds:,.0f} msg/s"))
        results.append(("IMAP poller → tickets, end to end", f"{n / (poll_seconds + ingest_seconds):,.0f} msg/s"))
    finally:
        server.close()
    return results


if __name__ == "__main__":
    main()
