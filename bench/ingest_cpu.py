"""CPU per ingested event: what one new ticket from a Slack message costs the worker and the
database, measured in one process, one thread, without the broker in the way.

    .venv/bin/python bench/ingest_cpu.py [--events 2000] [--postgres-url URL]

Starts PostgreSQL 15 and Redis (tests/services.py) unless --postgres-url is given, migrates a
fresh database, configures the Slack integration against a fake Slack Web API, stores signed
Slack events through the app's webhook route (TestClient), then times:

- **ingest**: `workers.inbound.process_raw_event` for each stored event (claim, parse, a new
  ticket with its person, first message and SLA clock, finish, the triage message sent);
- **triage**: `services.ai_tickets.process_new_ticket` for each new ticket (offline runtime);
- **baseline**: the same rows written bare — one psycopg transaction per event that claims the
  raw event, inserts the ticket and its message and finishes the event (4 statements);

reporting wall and CPU milliseconds per event for this process (Python) and for PostgreSQL
(the sum of its processes' CPU time from /proc). Nothing here is run by the test suite.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from tests.services import start_postgres, start_redis  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def postgres_cpu() -> float:
    total = 0.0
    for comm in glob.glob("/proc/[0-9]*/comm"):
        try:
            if open(comm).read().strip() != "postgres":
                continue
            fields = open(comm[:-4] + "stat").read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICKS
        except OSError:
            continue
    return total


def own_cpu() -> float:
    times = os.times()
    return times.user + times.system


def measure(label: str, count: int, run: Any) -> dict[str, float]:
    cpu, pg, wall = own_cpu(), postgres_cpu(), time.perf_counter()
    run()
    row = {"events": count,
           "wall_ms": (time.perf_counter() - wall) / count * 1e3,
           "python_cpu_ms": (own_cpu() - cpu) / count * 1e3,
           "postgres_cpu_ms": (postgres_cpu() - pg) / count * 1e3}
    print(f"{label:9s} {row['wall_ms']:6.2f} ms wall, {row['python_cpu_ms']:5.2f} ms Python CPU, "
          f"{row['postgres_cpu_ms']:5.2f} ms PostgreSQL CPU per event", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--postgres-url", help="an existing server (postgresql+psycopg://…/postgres)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="tw-ingest-cpu-"))
    redis_server = start_redis(tmp / "redis")
    pg = None if args.postgres_url else start_postgres(tmp / "pg")
    server_url = args.postgres_url or pg.url
    database = f"ingest_cpu_{uuid.uuid4().hex[:8]}"
    admin_url = server_url.replace("+psycopg", "")
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {database}")
    url = server_url.rsplit("/", 1)[0] + "/" + database
    os.environ.update({"DATABASE_URL": url, "REDIS_URL": redis_server.url, "TICKETWIRE_SECRET_KEY": "bench",
                       "TICKETWIRE_VAR_DIR": str(tmp / "var"), "TICKETWIRE_RATE_LIMIT_PER_MINUTE": "100000000",
                       "TICKETWIRE_RATE_LIMIT_PER_HOUR": "100000000"})
    python = sys.executable
    subprocess.run([python, "-m", "cli", "migrate"], cwd=ROOT, check=True, capture_output=True)
    boot = json.loads(subprocess.run([python, "-m", "cli", "admin", "bootstrap", "--json"], cwd=ROOT, check=True,
                                     capture_output=True).stdout)

    from starlette.testclient import TestClient

    import workers.actors  # noqa: F401  (the dispatcher: new tickets send their triage message)
    from api.app import create_app
    from bench.pipeline_support import SlackLoad
    from services import ai_tickets
    from tests.fakes.slack_api import FakeSlack
    from workers.inbound import process_raw_event

    project_id = boot["project_id"]
    fake = FakeSlack(team_id=SlackLoad.team)
    fake.__enter__()
    load = SlackLoad(fake, project_id)
    client = TestClient(create_app())
    client.put(f"/api/projects/{project_id}/conversations/integrations/slack",
               headers={"Authorization": f"Bearer {boot['api_key']}"}, json=load.settings()).raise_for_status()
    db = psycopg.connect(url.replace("+psycopg", ""), autocommit=True)

    def store(phase: int, count: int) -> list[uuid.UUID]:
        for n in range(count):
            event = load.event(phase, n)
            client.post(load.path, content=event.body, headers=event.headers).raise_for_status()
        return [row[0] for row in db.execute(
            "SELECT id FROM raw_events WHERE status = 'pending' ORDER BY received_at").fetchall()]

    for raw_event_id in store(1, 50):  # warm-up: imports, mappers, caches, prepared statements
        process_raw_event(raw_event_id)
    events = store(2, args.events)
    results: dict[str, Any] = {"events": len(events)}
    results["ingest"] = measure("ingest", len(events), lambda: [process_raw_event(i) for i in events])
    statuses = dict(db.execute("SELECT status, count(*) FROM raw_events GROUP BY 1").fetchall())
    assert statuses == {"processed": len(events) + 50}, statuses
    tickets = [row[0] for row in db.execute(
        "SELECT id FROM tickets ORDER BY created_at DESC LIMIT %s", (len(events),)).fetchall()]
    results["triage"] = measure("triage", len(tickets),
                                lambda: [ai_tickets.process_new_ticket(ticket_id=t) for t in tickets])

    baseline_events = store(3, args.events)
    bare = psycopg.connect(url.replace("+psycopg", ""))

    def bare_ingest() -> None:
        for raw_event_id in baseline_events:
            with bare.transaction():
                bare.execute("UPDATE raw_events SET status = 'processing', attempts = attempts + 1 "
                             "WHERE id = %s RETURNING body", (raw_event_id,)).fetchone()
                number = bare.execute("UPDATE projects SET ticket_seq = ticket_seq + 1 WHERE id = %s "
                                      "RETURNING ticket_seq", (project_id,)).fetchone()[0]
                ticket_id = uuid.uuid4()
                bare.execute(
                    "INSERT INTO tickets (id, project_id, ticket_number, channel_source, status, thread_key, "
                    "message_count, unread_team_count, unread_customer_count, ai_resolved, created_at, updated_at) "
                    "VALUES (%s, %s, %s, 'slack', 'new', %s, 1, 1, 0, false, now(), now())",
                    (ticket_id, project_id, number, f"bare:{raw_event_id}"))
                bare.execute(
                    "INSERT INTO messages (id, project_id, ticket_id, message_type, author_type, is_private, "
                    "content, external_id, version, created_at, updated_at) "
                    "VALUES (%s, %s, %s, 'customer_message', 'customer', false, 'bench', %s, 1, now(), now())",
                    (uuid.uuid4(), project_id, ticket_id, f"bare:{raw_event_id}"))
                bare.execute("UPDATE raw_events SET status = 'processed', processed_at = now() WHERE id = %s",
                             (raw_event_id,))

    results["baseline"] = measure("baseline", len(baseline_events), bare_ingest)
    print(json.dumps(results, indent=2))
    fake.__exit__(None, None, None)
    redis_server.stop()
    if pg is not None:
        pg.stop()
    else:  # someone else's server: leave it as it was
        from core.db import get_engine

        bare.close()
        db.close()
        get_engine().dispose()
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE {database} WITH (FORCE)")


if __name__ == "__main__":
    main()
