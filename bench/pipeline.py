"""Pipeline benchmark (issues 3 and 4), against `ticketwire serve` + `worker` + `scheduler` on
Redis and PostgreSQL, with the fake Slack Web API, GitHub REST API and Microsoft endpoints of
tests/fakes, and the raw baselines measured in the same run:

* a bare uvicorn route doing one idempotent INSERT and one Redis LPUSH (bench/bare_app.py);
* a bare Dramatiq no-op actor drained by the same worker settings.

    .venv/bin/python bench/pipeline.py                          # full run (~15 min on 2 idle cores)
    .venv/bin/python bench/pipeline.py --quick                  # smaller counts (~6 min)
    .venv/bin/python bench/pipeline.py --channels slack,teams   # a subset (default: all three)
    .venv/bin/python bench/pipeline.py --embedded               # `ticketwire dev`: one process, no Redis

Per channel (Slack events, signed GitHub `issues.opened` deliveries, Teams activities carrying
an RS256 Bot Connector JWT that the app checks against the fake's OpenID metadata + JWKS):
acknowledged webhooks per second at full speed (wrk, ack path alone, no workers), and
inbound-to-ticket latency at a fixed rate (an open-loop asyncio sender; each event's ticket
found through `messages.external_id`, latency = ticket created − webhook sent). Slack also:
ack latency at 300/s while workers ingest, reply-to-delivered at 100/s (fake Slack received
it − reply POSTed), and a backlog of replies across 10 channels against a fake that answers
429 to more than one post per second per channel. At the end every event and reply of the
run is counted: lost (acknowledged but not stored, or stored but no message) and duplicated.

Phases do not overlap: each starts once the workers have ingested the last one's events and
triaged its tickets (AI triage runs behind ingest; `triage_caught_up_after` says when it
finished). The reply phase starts after 20 unmeasured warm-up replies.

`--embedded` runs the same phases against the embedded mode instead: one `ticketwire dev`
process (REDIS_URL unset: Dramatiq's in-process broker, 4 worker threads and the periodic jobs
beside the API) on the same PostgreSQL, so every row is checked by the same SQL. Its worker
threads cannot be switched off, so the full-speed acks are measured while they ingest, the
backlog's replies are posted while they deliver (its clock starts at the first post), triage
is waited for by `tickets.ai_triage` instead of the Redis queues, and there is no bare
Dramatiq row (the baselines are the Redis deployment's).

The JSON printed last has every number; the exit status is 1 when anything was lost,
duplicated, unmatched or left undone (listed under "failures").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from pipeline_support import (  # noqa: E402
    Deployment,
    Event,
    GitHubLoad,
    SlackLoad,
    TeamsLoad,
    inbound_to_ticket,
    load_average,
    open_loop,
    open_loop_posts,
    pct,
    progress,
    run_wrk,
    sql,
    summarise_acks,
    wait_drained,
    wait_http,
    wait_queues_empty,
    wait_tickets_triaged,
    wrk_script,
)

from cli import DEFAULT_WORKER_THREADS  # noqa: E402
from tests.fakes.github_api import FakeGitHub  # noqa: E402
from tests.fakes.http import Reply  # noqa: E402
from tests.fakes.slack_api import FakeSlack  # noqa: E402
from tests.fakes.teams_api import FakeTeams  # noqa: E402
from tests.services import free_port, start_postgres, start_redis  # noqa: E402

CHANNELS = ("slack", "github", "teams")
# Phase numbers make every generated event distinct across the run.
PHASE_ACK_MAX, PHASE_ACK_300, PHASE_RATE = 1, 10, 20
WARM_UP_REPLIES = 20


class Ledger:
    """What the bench sent and had acknowledged, per channel, for the end-of-run count."""

    def __init__(self) -> None:
        self.expected: dict[str, dict[str, str]] = {c: {} for c in CHANNELS}  # event id → external id
        self.acked_bulk: dict[str, int] = Counter()  # 2xx answers counted by wrk
        self.bulk: dict[str, set[str]] = {c: set() for c in CHANNELS}  # event ids prepared for wrk
        self.acked_exact: dict[str, set[str]] = {c: set() for c in CHANNELS}  # event ids answered 200

    def generated(self, channel: str, events: list[Event]) -> None:
        self.expected[channel].update((e.event_id, e.external_id) for e in events)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--worker-threads", type=int, default=DEFAULT_WORKER_THREADS,
                        help="ticketwire worker --threads (default: the command's own default)")
    parser.add_argument("--worker-processes", type=int, default=2, help="ticketwire worker --processes")
    parser.add_argument("--split-queues", metavar="IN,OUT", default="",
                        help="threads per process for inbound+agent workers (--worker-processes of them) and "
                             "for one outbound worker process, e.g. 4,8 (default: every worker on every queue)")
    parser.add_argument("--rate", type=float, default=200.0, help="webhooks/s of the inbound-to-ticket rows")
    parser.add_argument("--channels", default=",".join(CHANNELS), help="comma-separated subset of slack,github,teams")
    parser.add_argument("--ack-only", action="store_true", help="only the bare route and the ack throughput")
    parser.add_argument("--embedded", action="store_true",
                        help="`ticketwire dev` (in-process broker and workers) instead of serve + worker + scheduler")
    args = parser.parse_args()
    chosen = [c.strip() for c in args.channels.split(",") if c.strip()]
    if not chosen or any(c not in CHANNELS for c in chosen):
        sys.exit(f"--channels takes a comma-separated subset of {','.join(CHANNELS)}")
    if not shutil.which("wrk"):
        sys.exit("bench/pipeline.py needs wrk: apt-get install wrk")
    scale = 0.3 if args.quick else 1.0
    tmp = Path(tempfile.mkdtemp(prefix="tw-bench-"))
    redis_server = start_redis(tmp / "redis")
    pg = start_postgres(tmp / "pg")
    dep = Deployment(tmp, {
        **os.environ, "DATABASE_URL": pg.url, "REDIS_URL": redis_server.url, "TICKETWIRE_SECRET_KEY": "bench",
        "TICKETWIRE_VAR_DIR": str(tmp / "var"), "TICKETWIRE_RATE_LIMIT_PER_MINUTE": "100000000",
        "TICKETWIRE_RATE_LIMIT_PER_HOUR": "100000000", "TICKETWIRE_SEND_RATE_PER_MINUTE": "100000000",
        "TICKETWIRE_SEND_RATE_PER_HOUR": "100000000",
    })
    results: dict[str, Any] = {"run": {"quick": args.quick, "channels": chosen, "cpus": os.cpu_count(),
                                       "load_average_start": load_average(),
                                       "web_workers": 1 if args.embedded else args.web_workers,
                                       "worker_threads": args.worker_threads, "split_queues": args.split_queues,
                                       "embedded": args.embedded}}
    failures: list[str] = []
    # A SIGTERM (e.g. the job being stopped) still stops the servers and prints the results.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        run(args, chosen, scale, tmp, dep, pg.url, redis_server.url, results, failures)
    except Exception as exc:  # report what was measured, then fail
        failures.append(f"bench aborted: {type(exc).__name__}: {exc}")
        raise
    finally:
        dep.stop_all()
        redis_server.stop()
        pg.stop()
        results["run"]["load_average_end"] = load_average()
        results["run"]["incidents"] = dep.incidents
        results["targets"] = targets(results)
        failures.extend(f"incident: {i}" for i in dep.incidents)
        results["failures"] = failures
        print(json.dumps(results, indent=2, default=float))
        # Keep the processes' log; the databases and the wrk data files are large.
        shutil.rmtree(tmp / "pg", ignore_errors=True)
        shutil.rmtree(tmp / "redis", ignore_errors=True)
        for data in tmp.glob("*.tsv"):
            data.unlink()
        print(f"processes' output: {tmp / 'processes.log'}", file=sys.stderr)
    if failures:
        sys.exit(1)


def run(args: argparse.Namespace, chosen: list[str], scale: float, tmp: Path, dep: Deployment, pg_url: str,
        redis_url: str, results: dict[str, Any], failures: list[str]) -> None:
    py = sys.executable
    subprocess.run([py, "-m", "cli", "migrate"], cwd=ROOT, env=dep.env, check=True, capture_output=True)
    boot = json.loads(subprocess.run([py, "-m", "cli", "admin", "bootstrap", "--json"], cwd=ROOT, env=dep.env,
                                     check=True, capture_output=True).stdout)
    project_id = int(boot["project_id"])
    seconds = max(5, int(10 * scale))
    ledger = Ledger()

    # -- 1. bare route baseline -----------------------------------------------------------
    progress("bare route")
    bare_port = free_port()
    bare_env = {**dep.env, "BARE_PG_DSN": pg_url.replace("postgresql+psycopg://", "postgresql://"),
                "BARE_REDIS_URL": redis_url, "PYTHONPATH": str(ROOT / "bench")}
    bare = dep.start(py, "-m", "uvicorn", "bare_app:app", "--port", str(bare_port), "--workers",
                     str(args.web_workers), "--log-level", "warning", "--no-access-log", env=bare_env)
    wait_http(f"http://127.0.0.1:{bare_port}/")
    n_bare = seconds * 3000
    bare_events = [Event({"X-Event-Id": f"bare{n}", "Content-Type": "application/json"},
                         json.dumps({"n": n, "text": f"bare {n}"}).encode(), f"bare{n}", "") for n in range(n_bare)]
    wrk_script(tmp / "bare.lua", "/hook", bare_events)
    results["bare_route"] = run_wrk(f"http://127.0.0.1:{bare_port}/hook", tmp / "bare.lua", threads=2,
                                    connections=32, seconds=seconds, prepared=n_bare)
    dep.stop(bare)
    bare_rps = results["bare_route"]["rps"]

    # -- 2. the app, the fakes, the integrations ------------------------------------------
    port = free_port()
    if args.embedded:  # no REDIS_URL: the in-process broker, with the worker threads on
        embedded_env = {k: v for k, v in dep.env.items() if k != "REDIS_URL"} | {"TICKETWIRE_EMBEDDED_WORKERS": "1"}
        web = dep.start(py, "-m", "cli", "dev", "--port", str(port), env=embedded_env)
    else:
        web = dep.start(py, "-m", "cli", "serve", "--port", str(port), "--workers", str(args.web_workers))

    def wait_triaged(timeout: float) -> dict[str, float]:
        if args.embedded:
            return wait_tickets_triaged(pg_url, project_id, dep, timeout=timeout)
        return wait_queues_empty(redis_url, dep, timeout=timeout)

    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/healthz")
    headers = {"Authorization": f"Bearer {boot['api_key']}"}
    api = f"{base}/api/projects/{project_id}/conversations"
    with FakeSlack(team_id=SlackLoad.team) as fslack, FakeGitHub(token=GitHubLoad.token) as fgithub, \
            FakeTeams() as fteams:
        builders = {"slack": lambda: SlackLoad(fslack, project_id), "github": lambda: GitHubLoad(fgithub, project_id),
                    "teams": lambda: TeamsLoad(fteams, project_id)}
        loads = {c: builders[c]() for c in chosen}
        for name, load in loads.items():
            httpx.put(f"{api}/integrations/{name}", headers=headers, json=load.settings(),
                      timeout=30).raise_for_status()

        # -- 3. acks at full speed, per channel (no workers: the ack path alone; --embedded:
        #       with the in-process workers ingesting) -----------------------------------------
        for name, load in loads.items():
            progress(f"{name}: acks at full speed")
            n_prep = seconds * 3000
            events = [load.event(PHASE_ACK_MAX, n) for n in range(n_prep)]
            ledger.generated(name, events)
            ledger.bulk[name].update(e.event_id for e in events)
            script = tmp / f"ack_{name}.lua"
            wrk_script(script, load.path, events)
            del events
            row = run_wrk(f"{base}{load.path}", script, threads=2, connections=32, seconds=seconds, prepared=n_prep)
            stored = sql(pg_url, "SELECT count(*) FROM raw_events WHERE project_id = %s AND channel = %s",
                         (project_id, name))[0][0]
            acked = row["requests"] - row["non_2xx"]
            ledger.acked_bulk[name] += acked
            row.update(stored=stored, share_of_bare=round(row["rps"] / bare_rps, 3) if bare_rps else None,
                       acked_not_stored=max(0, acked - stored))
            results.setdefault(name, {})["ack_max"] = row
            progress(f"{name} ack_max: {row}")
            if row["wrapped"]:
                failures.append(f"{name} ack_max: wrk sent more than the {n_prep} prepared events (raise the count)")
            if row["non_2xx"] or row["acked_not_stored"]:
                failures.append(f"{name} ack_max: {row['non_2xx']} non-2xx, {row['acked_not_stored']} acked not stored")
        if args.ack_only:
            return

        # -- 4. workers on; drain what the full-speed runs stored -------------------------
        progress("workers on: draining the full-speed runs")
        if not args.embedded:
            start_workers(dep, py, args)
            dep.start(py, "-m", "cli", "scheduler")
        stored_all, done_before = sql(pg_url, "SELECT count(*), count(*) FILTER (WHERE status NOT IN "
                                      "('pending', 'processing')) FROM raw_events WHERE project_id = %s",
                                      (project_id,))[0]
        drain = wait_drained(pg_url, dep, timeout=1800 * scale + 300)
        # --embedded: the worker threads ingested some events while the acks were measured.
        left_to_drain = stored_all - done_before
        drain.update(events=stored_all, ingested_before=done_before,
                     per_second=round(left_to_drain / drain["seconds"], 1) if drain["seconds"] else None)
        drain["triage_caught_up_after"] = wait_triaged(timeout=1800 * scale + 300)["seconds"]
        results["drain_after_ack_max"] = drain
        progress(f"drained: {drain}")
        if drain["left"]:
            failures.append(f"drain after ack_max: {drain['left']} raw events still pending")

        # -- 5. Slack ack latency at 300/s while workers ingest ----------------------------
        if "slack" in loads:
            load = loads["slack"]
            progress("slack: ack latency at 300/s")
            n300 = int(3000 * scale)
            events = [load.event(PHASE_ACK_300, n) for n in range(n300)]
            ledger.generated("slack", events)
            sent = asyncio.run(open_loop(f"{base}{load.path}", events, 300))
            ledger.acked_exact["slack"].update(s.event.event_id for s in sent if s.status == 200)
            results["slack"]["ack_at_300"] = summarise_acks(sent)
            results["slack"]["ack_at_300"]["drain_after"] = wait_drained(pg_url, dep, timeout=600)
            # Each phase on its own: the next starts once triage of this one's tickets is done.
            results["slack"]["ack_at_300"]["triage_caught_up_after"] = wait_triaged(timeout=600)

        # -- 6. inbound-to-ticket at a fixed rate, per channel -----------------------------
        n_rate = int(10 * args.rate * scale)
        for index, (name, load) in enumerate(loads.items()):
            phase = PHASE_RATE + index
            progress(f"{name}: inbound-to-ticket at {args.rate:g}/s")
            events = [load.event(phase, n) for n in range(n_rate)]
            ledger.generated(name, events)
            sent = asyncio.run(open_loop(f"{base}{load.path}", events, args.rate))
            ledger.acked_exact[name].update(s.event.event_id for s in sent if s.status == 200)
            drained = wait_drained(pg_url, dep, timeout=600)
            triaged = wait_triaged(timeout=600)
            row = inbound_to_ticket(pg_url, project_id, name, sent)
            row.update(rate=args.rate, ack=summarise_acks(sent), drain_after_seconds=drained["seconds"],
                       triage_caught_up_after_seconds=round(drained["seconds"] + triaged["seconds"], 1))
            results[name][f"inbound_to_ticket_at_{int(args.rate)}"] = row
            progress(f"{name} inbound_to_ticket: {row}")
            if row["unmatched"] or row["acked"] < row["sent"]:
                failures.append(f"{name} inbound_to_ticket: {row['unmatched']} of {row['acked']} acked events have no "
                                f"ticket ({row['raw_event_status']}); {row['sent'] - row['acked']} not acked")

        if "slack" in loads:
            slack_outbound(loads["slack"], fslack, base, api, headers, project_id, pg_url, scale, dep, args,
                           results, failures)

        # -- 9. totals over the whole run --------------------------------------------------
        progress("totals")
        wait_drained(pg_url, dep, timeout=300)
        results["totals"] = totals(pg_url, project_id, chosen, ledger, fslack if "slack" in loads else None,
                                   results, failures)
    dep.stop(web)
    # Workers and scheduler are stopped before the bare Dramatiq run, which uses the same Redis.
    dep.stop_all()

    # -- 10. bare Dramatiq no-op actor drained by the same worker settings -------------------
    if args.embedded:
        return
    progress("bare Dramatiq")
    results["bare_dramatiq"] = bare_dramatiq(redis_url, dep, int(5000 * scale), args.worker_threads)


def start_workers(dep: Deployment, py: str, args: argparse.Namespace) -> None:
    if not args.split_queues:
        dep.start(py, "-m", "cli", "worker", "--processes", str(args.worker_processes),
                  "--threads", str(args.worker_threads))
        return
    inbound_threads, outbound_threads = (int(n) for n in args.split_queues.split(","))
    dep.start(py, "-m", "cli", "worker", "--processes", str(args.worker_processes), "--threads", str(inbound_threads),
              "--queues", "inbound,agent")
    dep.start(py, "-m", "cli", "worker", "--processes", "1", "--threads", str(outbound_threads),
              "--queues", "outbound,outbound_paced")


def slack_outbound(load: SlackLoad, fake: FakeSlack, base: str, api: str, headers: dict[str, str], project_id: int,
                   pg_url: str, scale: float, dep: Deployment, args: argparse.Namespace, results: dict[str, Any],
                   failures: list[str]) -> None:
    py = sys.executable
    # When fake Slack accepted each delivery (first time), keyed by the delivery id in the
    # message metadata that every post carries (channels/slack/outbound.py).
    received: dict[str, float] = {}
    original = fake._methods["chat.postMessage"]

    def recording(params: dict[str, Any]) -> Any:
        answer = original(params)
        if answer.get("ok"):
            received.setdefault(_delivery_id(params), time.time())
        return answer

    fake._methods["chat.postMessage"] = recording

    # -- 7. reply-to-delivered at 100/s (one reply per channel per 2 s: under Slack's pace) --
    progress("slack: reply-to-delivered at 100/s")
    targets = [str(r[0]) for r in sql(pg_url, """
        SELECT DISTINCT ON (slack_channel_id) id FROM tickets
        WHERE project_id = %s AND channel_source = 'slack' ORDER BY slack_channel_id, created_at""", (project_id,))]
    n100 = int(1000 * scale)
    sent_at: dict[str, float] = {}  # message id → when its POST left
    errors = 0
    # Warm-up, not measured (as list_tickets.py's first requests): the web processes' first
    # replies import and compile the reply path, which a server in service has long done.
    warm_ids = _post_replies(api, headers, targets[::-1], WARM_UP_REPLIES, "warm-up")
    warm_deadline = time.monotonic() + 60
    while len({r[1] for r in _deliveries(pg_url, warm_ids)} & received.keys()) < len(warm_ids) \
            and time.monotonic() < warm_deadline:
        time.sleep(0.1)

    # Sent by bench/loadgen.py from a process of its own: an httpx client here spent about a
    # millisecond of CPU per request and shared this process's GIL with fake Slack's server
    # threads, whose receive times are the end of the measurement.
    prefix = urlsplit(api).path
    reply_headers = {**headers, "Content-Type": "application/json"}
    posts = [(f"{prefix}/tickets/{targets[i % len(targets)]}/reply", reply_headers,
              json.dumps({"message": f"reply {i}"}).encode()) for i in range(n100)]
    for t, status, body in asyncio.run(open_loop_posts(base, posts, 100)):
        if status != 201:
            errors += 1
            continue
        sent_at[json.loads(body)["id"]] = t
    rows = _deliveries(pg_url, list(sent_at))
    deadline = time.monotonic() + 120
    while sum(r[1] in received for r in rows) < len(rows) and time.monotonic() < deadline:
        time.sleep(0.25)
        dep.check()
        rows = _deliveries(pg_url, list(sent_at))
    to_fake = [(received[did] - sent_at[mid]) * 1000 for mid, did, _, _ in rows if did in received]
    recorded = [(sent - created) * 1000 for _, _, sent, created in rows if sent is not None]
    row = {"rate": 100, "targets": len(targets), "sent": n100, "created": len(sent_at), "api_errors": errors,
           "received_by_fake": len(to_fake), "p50": pct(to_fake, 0.5), "p99": pct(to_fake, 0.99),
           "max": pct(to_fake, 1.0),
           "recorded_sent": {"n": len(recorded), "p50": pct(recorded, 0.5), "p99": pct(recorded, 0.99)}}
    results["slack"]["reply_to_delivered_at_100"] = row
    if errors or len(to_fake) < n100:
        failures.append(f"slack reply_to_delivered: {len(to_fake)} of {n100} replies reached fake Slack, "
                        f"{errors} API errors")

    # -- 8. backlog: replies across 10 channels, Slack enforcing 1/s per channel ----------
    progress("slack: reply backlog")
    last_post: dict[str, float] = {}
    rejected = 0

    class _RateLimited(Exception):
        pass

    def enforcing(params: dict[str, Any]) -> Any:
        nonlocal rejected
        channel = params.get("channel", "")
        now_ = time.monotonic()
        if now_ - last_post.get(channel, 0.0) < 0.95:
            rejected += 1
            raise _RateLimited()
        last_post[channel] = now_
        return recording(params)

    def handle(call: Any, match: Any) -> Reply:
        try:
            return fake._handle(call, match)
        except _RateLimited:
            return Reply(429, {"ok": False, "error": "ratelimited"}, headers={"Retry-After": "1"})

    fake._methods["chat.postMessage"] = enforcing
    fake.routes.insert(0, ("POST", re.compile(r"/api/(?P<method>[\w.]+)\Z"), handle))
    backlog_targets = targets[:10]
    n_backlog = int(1000 * scale)
    if args.embedded:  # the workers are threads of the web process: they deliver as the replies come
        start = time.monotonic()
        ids = _post_replies(api, headers, backlog_targets, n_backlog, "backlog")
    else:
        for p in [p for p in dep.procs if "worker" in p.args]:
            dep.stop(p)
        ids = _post_replies(api, headers, backlog_targets, n_backlog, "backlog")
        start = time.monotonic()
        start_workers(dep, py, args)
    dids = {r[1] for r in _deliveries(pg_url, ids)}
    deadline = start + 3600 * scale + 300
    while len(dids & received.keys()) < n_backlog and time.monotonic() < deadline:
        time.sleep(0.1)
        dep.check()
    took = time.monotonic() - start
    ideal = n_backlog / 10  # 1 per second per channel
    posted = len(dids & received.keys())
    results["slack"]["backlog"] = {"replies": n_backlog, "channels": 10, "seconds": round(took, 1),
                                   "ideal_seconds": ideal, "use_of_allowed_rate": round(ideal / took, 3),
                                   "429s": rejected, "posted": posted}
    if posted < n_backlog:
        failures.append(f"slack backlog: {posted} of {n_backlog} posted")


def _post_replies(api: str, headers: dict[str, str], tickets: list[str], count: int, label: str) -> list[str]:
    """`count` replies, one after another, round the tickets; their message ids."""
    ids = []
    for n in range(count):
        r = httpx.post(f"{api}/tickets/{tickets[n % len(tickets)]}/reply", headers=headers,
                       json={"message": f"{label} {n}"}, timeout=30)
        r.raise_for_status()
        ids.append(r.json()["id"])
    return ids


def _delivery_id(params: dict[str, Any]) -> str:
    metadata = params.get("metadata")
    if isinstance(metadata, str):
        metadata = json.loads(metadata)
    payload = (metadata or {}).get("event_payload") or {}
    return str(payload.get("delivery_id") or f"text:{params.get('text')}")


def _deliveries(pg_url: str, message_ids: list[str]) -> list[tuple[str, str, float | None, float]]:
    rows = sql(pg_url, """
        SELECT d.message_id, d.id, extract(epoch FROM d.sent_at), extract(epoch FROM m.created_at)
        FROM deliveries d JOIN messages m ON m.id = d.message_id WHERE d.message_id = ANY(%s::uuid[])""",
        (message_ids,))
    return [(str(a), str(b), float(c) if c is not None else None, float(d)) for a, b, c, d in rows]


def totals(pg_url: str, project_id: int, chosen: list[str], ledger: Ledger, fake: FakeSlack | None,
           results: dict[str, Any], failures: list[str]) -> dict[str, Any]:
    """Every event the bench generated that the app stored must be one message on one new ticket;
    every acknowledged one must be stored; every reply posted once."""
    out: dict[str, Any] = {}
    lost_all = dup_all = 0
    for name in chosen:
        expected = ledger.expected[name]
        raws = sql(pg_url, "SELECT event_id, status FROM raw_events WHERE project_id = %s AND channel = %s",
                   (project_id, name))
        stored = {r[0] for r in raws}
        statuses = Counter(r[1] for r in raws)
        messages = sql(pg_url, """SELECT external_id, count(*) FROM messages WHERE project_id = %s
                                  AND message_type = 'customer_message' AND external_id LIKE %s
                                  GROUP BY external_id""", (project_id, f"{name}:%"))
        per_ext = {r[0]: r[1] for r in messages}
        tickets = sql(pg_url, """SELECT count(*), count(DISTINCT thread_key) FROM tickets WHERE project_id = %s
                                 AND channel_source = %s""", (project_id, name))[0]
        stored_expected = {e for e in stored if e in expected}
        no_message = [e for e in stored_expected if expected[e] not in per_ext]
        # wrk counts answers, not which events: every 2xx answer must be a stored event.
        acked = ledger.acked_bulk[name] + len(ledger.acked_exact[name])
        stored_from_bulk = len(stored & ledger.bulk[name])
        acked_not_stored = max(0, ledger.acked_bulk[name] - stored_from_bulk) + len(ledger.acked_exact[name] - stored)
        lost = acked_not_stored + len(no_message)
        duplicated = sum(c - 1 for c in per_ext.values()) + max(0, tickets[0] - len(stored_expected))
        out[name] = {"acked": acked, "stored": len(stored), "stored_not_generated": len(stored - stored_expected),
                     "raw_event_status": dict(statuses), "messages": sum(per_ext.values()), "tickets": tickets[0],
                     "acked_not_stored": acked_not_stored, "stored_without_message": len(no_message),
                     "lost": lost, "duplicated": duplicated}
        lost_all += lost
        dup_all += duplicated
        not_done = sum(v for k, v in statuses.items() if k != "processed")
        if lost or duplicated or not_done:
            failures.append(f"{name} totals: {lost} lost, {duplicated} duplicated, raw events {dict(statuses)}")
    if fake is not None:
        posted = Counter(_delivery_id(p) for p in fake.posts)
        deliveries = sql(pg_url, "SELECT status, count(*) FROM deliveries WHERE project_id = %s GROUP BY status",
                         (project_id,))
        statuses = {r[0]: r[1] for r in deliveries}
        replies = sum(statuses.values())
        undelivered = replies - statuses.get("sent", 0)
        dup_posts = sum(c - 1 for c in posted.values())
        out["slack_replies"] = {"replies": replies, "delivery_status": statuses, "posts": len(fake.posts),
                                "distinct_deliveries_posted": len(posted), "duplicated_posts": dup_posts,
                                "undelivered": undelivered}
        lost_all += undelivered
        dup_all += dup_posts
        if undelivered or dup_posts:
            failures.append(f"slack replies: {undelivered} undelivered, {dup_posts} posted twice")
    out["lost"] = lost_all
    out["duplicated"] = dup_all
    return out


def targets(results: dict[str, Any]) -> dict[str, Any]:
    """The issues' targets next to what this run measured (None: not measured)."""

    def get(*path: str) -> Any:
        node: Any = results
        for key in path:
            if not isinstance(node, dict) or key not in node:
                return None
            node = node[key]
        return node

    def check(value: Any, ok: Any) -> dict[str, Any]:
        return {"value": value, "met": None if value is None else bool(ok(value))}

    out = {
        "slack acks/s >= 1000": check(get("slack", "ack_max", "rps"), lambda v: v >= 1000),
        "slack acks >= 45% of bare route": check(get("slack", "ack_max", "share_of_bare"), lambda v: v >= 0.45),
        "slack ack p99 <= 20 ms at 300/s": check(get("slack", "ack_at_300", "p99"), lambda v: v <= 20),
        "slack reply-to-delivered p99 <= 100 ms at 100/s": check(get("slack", "reply_to_delivered_at_100", "p99"),
                                                                 lambda v: v <= 100),
        "slack backlog 0 x 429": check(get("slack", "backlog", "429s"), lambda v: v == 0),
        "slack backlog >= 90% of the allowed rate": check(get("slack", "backlog", "use_of_allowed_rate"),
                                                          lambda v: v >= 0.9),
        "zero lost": check(get("totals", "lost"), lambda v: v == 0),
        "zero duplicated": check(get("totals", "duplicated"), lambda v: v == 0),
    }
    for name in CHANNELS:
        for key, row in (get(name) or {}).items():
            if key.startswith("inbound_to_ticket_at_"):
                out[f"{name} inbound-to-ticket p99 <= 250 ms at {key.rsplit('_', 1)[1]}/s"] = check(
                    row.get("p99"), lambda v: v <= 250)
    return out


def bare_dramatiq(redis_url: str, dep: Deployment, count: int, threads: int) -> dict[str, float]:
    code = f"""
import time, dramatiq, redis
from dramatiq.brokers.redis import RedisBroker
broker = RedisBroker(url={redis_url!r}, heartbeat_timeout=15000)
dramatiq.set_broker(broker)
r = redis.Redis.from_url({redis_url!r})
@dramatiq.actor(queue_name="bare", max_retries=0)
def noop(i):
    r.incr("bare:done")
"""
    (dep.tmp / "bare_actor.py").write_text(code)
    env = {**dep.env, "PYTHONPATH": str(dep.tmp)}
    subprocess.run([sys.executable, "-c", f"import bare_actor\nfor i in range({count}): bare_actor.noop.send(i)"],
                   env=env, check=True, cwd=dep.tmp)
    import redis

    client = redis.Redis.from_url(redis_url)
    client.delete("bare:done")
    start = time.monotonic()
    proc = dep.start(sys.executable, "-c", "import bare_actor, dramatiq, time\n"
                     f"w = dramatiq.Worker(bare_actor.broker, worker_threads={threads}, worker_timeout=100); w.start()\n"
                     "time.sleep(3600)", env=env)
    while int(client.get("bare:done") or 0) < count and time.monotonic() - start < 300:
        time.sleep(0.05)
    took = time.monotonic() - start
    dep.stop(proc)
    return {"messages": count, "seconds": round(took, 2), "per_second": round(count / took, 1)}


if __name__ == "__main__":
    main()
