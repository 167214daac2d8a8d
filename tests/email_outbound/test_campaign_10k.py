"""A 10,000-recipient campaign through the production shape: `ticketwire serve`, two `ticketwire
worker` processes and the scheduler on Redis and PostgreSQL, mailing a local SMTP server. One
worker is killed with SIGKILL in the middle; every recipient still gets exactly one mail.

The SMTP server files a copy of each accepted mail under the IMAP mailbox's Sent folder (as Gmail
and Microsoft 365 do), which is how a delivery whose worker died between the server's "250" and
the database write is recognised as sent instead of being mailed again. The rate limit is
lifted (TICKETWIRE_EMAIL_RATE_PER_MINUTE=0); test_campaigns.py shows it holding.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text

from tests.email_outbound.sink import Dovecot, Sink, smtp_server
from tests.workers.support import ROOT, Stack

RECIPIENTS = 10_000


def wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_ten_thousand_recipients_get_exactly_one_mail_each_although_a_worker_is_killed(
    services: dict[str, Any], postgres_url: str, tmp_path: Path, dovecot: Dovecot
) -> None:
    from tests.conftest import _truncate_postgres

    _truncate_postgres(postgres_url)
    import redis

    redis.Redis.from_url(services["redis"]).flushdb()
    env = {
        **os.environ, "DATABASE_URL": postgres_url, "REDIS_URL": services["redis"],
        "TICKETWIRE_SECRET_KEY": "test-secret-key-not-for-production", "TICKETWIRE_VAR_DIR": str(tmp_path),
        "TICKETWIRE_DELIVERY_LEASE_SECONDS": "3", "TICKETWIRE_RETRY_BASE_SECONDS": "0.2",
        "TICKETWIRE_EMAIL_RATE_PER_MINUTE": "0",
    }
    env.pop("TICKETWIRE_EMBEDDED_WORKERS", None)
    stack = Stack(env, tmp_path)
    logins_before = dovecot.logins()
    sink = Sink(sent_folder=dovecot.sent_folder())
    try:
        with smtp_server(sink) as (_sink, port):
            stack.start_web()
            out = subprocess.run([sys.executable, "-m", "cli", "admin", "bootstrap", "--json", "--project-name", "Acme"],
                                 cwd=ROOT, env=env, capture_output=True, check=True)
            import json

            project = json.loads(out.stdout)
            headers = {"Authorization": f"Bearer {project['api_key']}"}
            base = f"{stack.url}/api/projects/{project['project_id']}/conversations"
            config = httpx.post(f"{base}/email_configs", headers=headers, json={
                "from_email": "news@acme.test", "from_name": "Acme", "smtp_host": "127.0.0.1", "smtp_port": port,
                "smtp_security": "none", "imap_host": "127.0.0.1", "imap_port": dovecot.port, "imap_security": "none",
                "imap_username": dovecot.user, "imap_password": dovecot.password,
            })
            assert config.status_code == 201, config.text
            stack.start("worker1", "worker", "--threads", "4")
            stack.start("worker2", "worker", "--threads", "4")
            stack.start("scheduler", "scheduler")

            csv_text = "email,name,plan\n" + "".join(
                f"user{n:05d}@customers.test,User {n},{'Pro' if n % 2 else 'Team'}\n" for n in range(RECIPIENTS))
            started = time.monotonic()
            created = httpx.post(
                f"{base}/campaigns", headers=headers, timeout=180,
                data={"email_config_id": config.json()["id"], "email_subject": "News for {{name}}",
                      "message": "Hello {{name}},\n\nyour **{{plan}}** plan has news."},
                files={"file": ("recipients.csv", csv_text.encode(), "text/csv")},
            )
            assert created.status_code == 201, created.text
            campaign = created.json()
            assert campaign["queued"] == RECIPIENTS and campaign["invalid"] == [] and campaign["skipped"] == []
            created_after = time.monotonic() - started

            wait_for(lambda: len(sink.mails) >= RECIPIENTS // 4, 120, "a quarter of the mails")
            stack.kill("worker1")
            killed_at = len(sink.mails)
            stack.start("worker3", "worker", "--threads", "4")

            def progress() -> dict[str, Any]:
                return dict(httpx.get(f"{base}/campaigns/{campaign['id']}?limit=1", headers=headers, timeout=30).json())

            wait_for(lambda: len(sink.mails) >= RECIPIENTS or sink.errors, 300, "every mail to arrive")
            assert sink.errors == [], (sink.errors[:3], dovecot.log())
            wait_for(lambda: progress()["queued"] == 0, 60, "every delivery to be recorded")
            finished_after = time.monotonic() - started
            time.sleep(1.0)
            final = progress()
            # Each reconciliation logs in to the mailbox; the sink's own copy-filing connection is one more.
            reconciled = dovecot.logins() - logins_before - 1
    finally:
        stack.stop_all()

    assert final["sent"] == RECIPIENTS and final["failed"] == 0, final
    per_recipient = Counter(address.lower() for mail in sink.mails for address in mail.rcpt_tos)
    expected = {f"user{n:05d}@customers.test" for n in range(RECIPIENTS)}
    assert set(per_recipient) == expected
    repeated = {address: count for address, count in per_recipient.items() if count != 1}
    assert repeated == {}, f"{len(repeated)} recipients got more than one mail"
    assert len({mail.message_id for mail in sink.mails}) == RECIPIENTS

    engine = create_engine(postgres_url)
    with engine.connect() as conn:
        stored = set(conn.execute(text(
            "SELECT m.external_id FROM messages m JOIN deliveries d ON d.message_id = m.id"
            " WHERE d.campaign_id = :c"), {"c": campaign["id"]}).scalars())
        retried = conn.execute(text("SELECT count(*) FROM deliveries WHERE campaign_id = :c AND attempts > 1"),
                               {"c": campaign["id"]}).scalar_one()
    engine.dispose()
    # Every mail carried the Message-ID stored on its ticket's message (replies thread by it).
    assert stored == {mail.message_id for mail in sink.mails}
    print(f"\n10k campaign: created in {created_after:.1f} s, all sent after {finished_after:.1f} s "
          f"({RECIPIENTS / finished_after:.0f} mails/s end to end); worker killed after {killed_at} mails; "
          f"{retried} deliveries took a second attempt, {reconciled} looked in the Sent folder first; "
          f"{sink.connections} SMTP connections")
