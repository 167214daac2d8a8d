"""Helpers of bench/pipeline.py: load generation (wrk, an open-loop asyncio sender), the signed
webhook payloads of each channel, the processes of a deployment, and SQL over the database.

Every generated webhook is a distinct event that must become exactly one new ticket with one
customer message, so the bench can join what it sent to what the database holds through
`messages.external_id` (the adapter's external id, prefixed with the channel by
`services.ingest._external_key`) and count what was lost or duplicated.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from channels.github import sign as github_sign  # noqa: E402
from channels.slack import SlackSigner  # noqa: E402
from channels.teams.inbound import event_id as teams_event_id  # noqa: E402
from tests.fakes.github_api import FakeGitHub  # noqa: E402
from tests.fakes.slack_api import FakeSlack  # noqa: E402
from tests.fakes.teams_api import APP_ID, APP_PASSWORD, METADATA_PATH, TENANT_ID, FakeTeams  # noqa: E402

# Customers per channel: events rotate over them, so persons are shared as in real traffic
# but no single row is hot (and each vendor look-up is made once, then cached).
AUTHORS = 50


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1) if ordered else float("nan")


def wait_http(url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# -- database -------------------------------------------------------------------------------


def sql(pg_url: str, query: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
    import psycopg

    dsn = pg_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as conn:
        return list(conn.execute(query, params).fetchall())  # type: ignore[arg-type]


def _wait_until_none_left(count: Callable[[], int], dep: Deployment, timeout: float) -> dict[str, float]:
    """Poll `count()` until it is 0 (or `timeout`): how long it took and what was left."""
    start = time.monotonic()
    left = 0
    while time.monotonic() - start < timeout:
        dep.check()
        left = count()
        if left == 0:
            break
        time.sleep(0.25)
    return {"seconds": round(time.monotonic() - start, 1), "left": left}


def wait_drained(pg_url: str, dep: Deployment, *, timeout: float) -> dict[str, float]:
    """Wait until no raw event is pending or processing; how long it took and what was left."""
    return _wait_until_none_left(
        lambda: sql(pg_url, "SELECT count(*) FROM raw_events WHERE status IN ('pending','processing')")[0][0],
        dep, timeout)


def wait_queues_empty(redis_url: str, dep: Deployment, *, queues: Sequence[str] = ("inbound", "agent"),
                      timeout: float) -> dict[str, float]:
    """Wait until the workers have nothing queued or in flight on `queues` (AI triage runs
    behind ingest, so it is still catching up when the raw events are drained). Dramatiq's
    Redis broker keeps each message in `dramatiq:<queue>.msgs` (delayed: `<queue>.DQ.msgs`)
    until it is acknowledged."""
    import redis

    client = redis.Redis.from_url(redis_url)
    keys = [f"dramatiq:{q}{suffix}.msgs" for q in queues for suffix in ("", ".DQ")]
    return _wait_until_none_left(lambda: sum(int(client.hlen(key)) for key in keys), dep, timeout)


def wait_tickets_triaged(pg_url: str, project_id: int, dep: Deployment, *, timeout: float) -> dict[str, float]:
    """wait_queues_empty for the embedded mode, whose in-process broker the bench cannot see:
    wait until every ticket of the project has its AI triage (the default settings triage all)."""
    return _wait_until_none_left(
        lambda: sql(pg_url, "SELECT count(*) FROM tickets WHERE project_id = %s AND ai_triage IS NULL "
                            "AND deleted_at IS NULL", (project_id,))[0][0],
        dep, timeout)


# -- processes ------------------------------------------------------------------------------


class Deployment:
    """The processes of a run. On a shared machine something else may stop one of them: `check`
    restarts it and notes the incident (the numbers around it are then suspect)."""

    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.tmp, self.env = tmp, env
        self.procs: list[subprocess.Popen[bytes]] = []
        self.envs: dict[int, dict[str, str]] = {}
        self.incidents: list[str] = []
        self.log = open(tmp / "processes.log", "ab")  # noqa: SIM115

    def start(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(list(args), cwd=ROOT, env=env or self.env, stdout=self.log, stderr=self.log)
        self.procs.append(proc)
        self.envs[proc.pid] = env or self.env
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in list(self.procs):
            self.stop(proc)

    def check(self) -> None:
        for proc in list(self.procs):
            code = proc.poll()
            if code is None:
                continue
            self.procs.remove(proc)
            args = [str(a) for a in proc.args]  # type: ignore[union-attr]
            what = " ".join(args[1:4])
            self.incidents.append(f"{time.strftime('%H:%M:%S')} {what} (pid {proc.pid}) exited with {code}; restarted")
            progress(f"INCIDENT: {self.incidents[-1]}")
            self.start(*args, env=self.envs.pop(proc.pid))


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} load {load_average()[0]}] {message}", file=sys.stderr, flush=True)


# -- events ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """One signed webhook and what it must become."""

    headers: dict[str, str]
    body: bytes
    event_id: str  # raw_events.event_id
    external_id: str  # messages.external_id of the customer message it must create


class SlackLoad:
    """Top-level messages in 200 configured channels: each one opens a ticket (SPEC.md, Slack)."""

    name = "slack"
    team = "TBENCH"
    secret = "bench-signing-secret"

    def __init__(self, fake: FakeSlack, project_id: int) -> None:
        self.fake = fake
        self.path = f"/webhooks/slack/{project_id}/events"
        self.channels = [f"CBENCH{i:04d}" for i in range(200)]
        self.signer = SlackSigner(self.secret)
        for k in range(AUTHORS):
            fake.add_user(f"UBENCH{k:02d}", real_name=f"Bench Customer {k}", email=f"bench{k}@customer.test")

    def settings(self) -> dict[str, Any]:
        return {"bot_token": self.fake.token, "signing_secret": self.secret, "channel_ids": self.channels,
                "api_base_url": self.fake.api_url, "bot_user_id": self.fake.bot_user_id}

    def event(self, phase: int, n: int) -> Event:
        channel = self.channels[n % len(self.channels)]
        ts = f"{1700000000 + n}.{phase:06d}"
        event_id = f"Ev{phase:02d}{n:08d}"
        body = json.dumps({"type": "event_callback", "team_id": self.team, "event_id": event_id,
                           "event": {"type": "message", "channel": channel, "user": f"UBENCH{n % AUTHORS:02d}",
                                     "text": f"bench {phase}/{n}", "ts": ts}}).encode()
        # Slack's v0 signature carries the signing time: sign just before sending.
        headers = {**self.signer.sign(body), "Content-Type": "application/json"}
        return Event(headers, body, event_id, f"slack:{channel}:{ts}")


class GitHubLoad:
    """`issues.opened` deliveries (tests/github/fixtures/issues__opened.json), each a new issue."""

    name = "github"
    secret = "bench-github-webhook-secret"
    token = "ghp_bench_token"

    def __init__(self, fake: FakeGitHub, project_id: int) -> None:
        self.fake = fake
        self.path = f"/webhooks/github/{project_id}"
        self.template = json.loads((ROOT / "tests/github/fixtures/issues__opened.json").read_bytes())
        self.repo = self.template["repository"]["full_name"]

    def settings(self) -> dict[str, Any]:
        return {"token": self.token, "webhook_secret": self.secret, "repositories": [self.repo],
                "api_base_url": self.fake.url}

    def event(self, phase: int, n: int) -> Event:
        payload = copy.deepcopy(self.template)
        issue = payload["issue"]
        number = phase * 10_000_000 + n + 1
        issue_id = 3_000_000_000 + number
        for key in ("url", "html_url", "comments_url", "events_url", "labels_url"):
            issue[key] = issue[key].replace("/issues/1", f"/issues/{number}")
        k = n % AUTHORS
        login = f"bench-customer-{k}"
        issue["user"] = {**issue["user"], "login": login, "id": 81_000_000 + k}
        payload["sender"] = dict(issue["user"])
        issue.update(number=number, id=issue_id, node_id=f"I_bench{issue_id}", title=f"Bench issue {phase}/{n}",
                     body=f"Something is wrong ({phase}/{n}).")
        body = json.dumps(payload, separators=(",", ":")).encode()
        delivery = f"{phase:08x}-0000-4000-8000-{n:012x}"
        headers = {"X-GitHub-Event": "issues", "X-GitHub-Delivery": delivery,
                   "X-Hub-Signature-256": github_sign(body, self.secret), "Content-Type": "application/json",
                   "User-Agent": "GitHub-Hookshot/bench"}
        return Event(headers, body, delivery, f"github:issue:{issue_id}")


class TeamsLoad:
    """Channel messages @mentioning the bot (tests/teams/fixtures/message__channel_mention_bot.json),
    each the root of its own thread, each with its own RS256 Bot Connector JWT (signed by the
    fake's key; the app validates it against the fake's OpenID metadata and JWKS)."""

    name = "teams"
    channel = "19:097e6717fd7245bdbeba6baa13840db8@thread.skype"

    def __init__(self, fake: FakeTeams, project_id: int) -> None:
        self.fake = fake
        self.path = f"/webhooks/teams/{project_id}/messages"
        self.template = json.loads((ROOT / "tests/teams/fixtures/message__channel_mention_bot.json").read_bytes())
        for k in range(AUTHORS):
            fake.add_user(self._aad(k), mail=f"teams{k}@customer.test", name=f"Teams Customer {k}")

    @staticmethod
    def _aad(k: int) -> str:
        return f"00000000-0000-4000-8000-{k:012d}"

    def settings(self) -> dict[str, Any]:
        url = self.fake.url
        return {"app_id": APP_ID, "app_password": APP_PASSWORD, "tenant_id": TENANT_ID,
                "openid_metadata_url": f"{url}{METADATA_PATH}",
                "token_url": f"{url}/botframework.com/oauth2/v2.0/token", "graph_base_url": f"{url}/v1.0"}

    def event(self, phase: int, n: int) -> Event:
        activity = copy.deepcopy(self.template)
        activity_id = str(1_700_000_000_000 + phase * 10_000_000 + n)
        k = n % AUTHORS
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        text = f"bench {phase}/{n}"
        activity.update(
            id=activity_id, serviceUrl=self.fake.service_url, timestamp=stamp, localTimestamp=stamp,
            text=f"<at>My Combined</at>{text}\n",
            attachments=[{"contentType": "text/html", "content": f"<div><span itemscope=\"\" itemtype="
                          f"\"http://schema.skype.com/Mention\" itemid=\"0\">My Combined</span>{text}</div>"}],
        )
        activity["from"] = {"id": f"29:bench-{k}", "name": f"Teams Customer {k}", "aadObjectId": self._aad(k)}
        activity["conversation"]["id"] = f"{self.channel};messageid={activity_id}"
        body = json.dumps(activity, separators=(",", ":")).encode()
        headers = {**self.fake.issuer.sign(body, audience=APP_ID), "Content-Type": "application/json"}
        return Event(headers, body, teams_event_id(activity), f"teams:{activity_id}")


# -- load -----------------------------------------------------------------------------------


def wrk_script(path: Path, url_path: str, events: Sequence[Event]) -> None:
    """A wrk Lua script sending each pre-signed request once (wrk thread k takes every k-th),
    read from a data file at start-up (a Lua chunk cannot hold more than 65,536 constants)."""
    data = path.with_suffix(".tsv")
    with data.open("w") as fh:
        for event in events:
            fields = [url_path, event.body.decode(), *(f"{k}: {v}" for k, v in event.headers.items())]
            assert not any("\t" in f or "\n" in f for f in fields)
            fh.write("\t".join(fields) + "\n")
    path.write_text(f"""
local counter = 0
function setup(thread)
  thread:set("offset", counter)
  counter = counter + 1
end
function init(args)
  local step = tonumber(args[1])
  reqs = {{}}
  local n = 0
  for line in io.lines("{data}") do
    if n % step == offset then
      local fields = {{}}
      for field in string.gmatch(line, "[^\t]+") do table.insert(fields, field) end
      local headers = {{}}
      for j = 3, #fields do
        local k, v = string.match(fields[j], "^([^:]+): (.*)$")
        headers[k] = v
      end
      table.insert(reqs, wrk.format("POST", fields[1], headers, fields[2]))
    end
    n = n + 1
  end
  i = 0
end
function request()
  i = i + 1
  return reqs[((i - 1) % #reqs) + 1]
end
""")


def run_wrk(url: str, script: Path, *, threads: int, connections: int, seconds: int, prepared: int) -> dict[str, Any]:
    out = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--latency",
                          "-s", str(script), url, "--", str(threads)], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]

    def latency(label: str) -> float:
        m = re.search(rf"\s{label}%\s+([\d.]+)(us|ms|s)", out)
        if not m:
            return float("nan")
        value, unit = float(m.group(1)), m.group(2)
        return round(value / 1000 if unit == "us" else value * 1000 if unit == "s" else value, 2)

    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = int(non2xx.group(1)) if non2xx else 0
    return {"rps": rps, "p50": latency("50"), "p99": latency("99"), "requests": total, "non_2xx": errors,
            "socket_errors": sum(int(x) for x in socket.groups()) if socket else 0,
            # More requests than prepared means wrk sent some twice (answered as duplicates).
            "wrapped": total > prepared}


@dataclass
class Sent:
    event: Event
    sent_at: float  # wall clock (epoch seconds) just before the request left
    latency_ms: float | None = None
    status: int | None = None


async def _loadgen(url: str, requests: list[tuple[Any, ...]], rate: float, *flags: str) -> list[list[Any]]:
    """bench/loadgen.py's results for `requests`, sent from a process of its own."""
    import pickle

    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(Path(__file__).with_name("loadgen.py")), url, str(rate), *flags,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate(pickle.dumps(requests))
    if proc.returncode:
        raise RuntimeError(f"bench/loadgen.py exited with {proc.returncode}")
    return list(json.loads(out))


async def open_loop(url: str, events: Sequence[Event], rate: float) -> list[Sent]:
    """Send at a fixed rate regardless of answers (no coordinated omission), from
    bench/loadgen.py in a process of its own; latency counts from each request's due time."""
    results = await _loadgen(url, [(e.headers, e.body) for e in events], rate)
    return [Sent(event, sent_at, latency_ms, status or None)
            for event, (sent_at, latency_ms, status) in zip(events, results, strict=True)]


async def open_loop_posts(base: str, posts: Sequence[tuple[str, dict[str, str], bytes]],
                          rate: float) -> list[tuple[float, int, str]]:
    """(sent at, HTTP status or 0, response body) of each (path, headers, body) POSTed to
    `base` at a fixed rate by bench/loadgen.py, in a process of its own."""
    results = await _loadgen(base, [(headers, body, path) for path, headers, body in posts], rate, "--bodies")
    return [(sent_at, status, body) for sent_at, _, status, body in results]


def summarise_acks(sent: Sequence[Sent]) -> dict[str, Any]:
    lat = [s.latency_ms for s in sent if s.latency_ms is not None]
    return {"n": len(sent), "p50": pct(lat, 0.5), "p99": pct(lat, 0.99), "max": pct(lat, 1.0),
            "acked": sum(s.status == 200 for s in sent), "errors": sum(s.status != 200 for s in sent)}


def inbound_to_ticket(pg_url: str, project_id: int, channel: str, sent: Sequence[Sent]) -> dict[str, Any]:
    """Join each acknowledged event to its raw event and to the ticket its message landed on.

    Latency is the ticket's `created_at` (set by the ingest worker, inside the transaction
    that commits it) minus the moment the bench sent the webhook; `from_received_at` starts
    at the raw event's `received_at` (stored while acknowledging) instead, and `committed`
    ends at the raw event's `processed_at` (the last write of that transaction).
    """
    acked = [s for s in sent if s.status == 200]
    rows = sql(pg_url, """
        SELECT m.external_id, extract(epoch FROM t.created_at), t.channel_source
        FROM messages m JOIN tickets t ON t.id = m.ticket_id
        WHERE m.project_id = %s AND m.external_id = ANY(%s)""", (project_id, [s.event.external_id for s in acked]))
    tickets = {r[0]: (float(r[1]), r[2]) for r in rows}
    raws = {r[0]: (r[1], float(r[2]), float(r[3]) if r[3] is not None else None) for r in sql(pg_url, """
        SELECT event_id, status, extract(epoch FROM received_at), extract(epoch FROM processed_at)
        FROM raw_events WHERE project_id = %s AND channel = %s AND event_id = ANY(%s)""",
        (project_id, channel, [s.event.event_id for s in acked]))}
    from_sent, from_received, committed = [], [], []
    statuses: dict[str, int] = {}
    for s in acked:
        raw = raws.get(s.event.event_id)
        statuses[raw[0] if raw else "not_stored"] = statuses.get(raw[0] if raw else "not_stored", 0) + 1
        hit = tickets.get(s.event.external_id)
        if hit is None:
            continue
        from_sent.append((hit[0] - s.sent_at) * 1000)
        if raw:
            from_received.append((hit[0] - raw[1]) * 1000)
            if raw[2] is not None:
                committed.append((raw[2] - s.sent_at) * 1000)
    return {"sent": len(sent), "acked": len(acked), "stored": len(raws), "matched": len(from_sent),
            "unmatched": len(acked) - len(from_sent), "raw_event_status": statuses,
            "p50": pct(from_sent, 0.5), "p99": pct(from_sent, 0.99), "max": pct(from_sent, 1.0),
            "from_received_at": {"p50": pct(from_received, 0.5), "p99": pct(from_received, 0.99)},
            "committed": {"p50": pct(committed, 0.5), "p99": pct(committed, 0.99)}}
