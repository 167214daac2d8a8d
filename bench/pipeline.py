"""Pipeline benchmark (issue 3), against `ticketwire serve` + `worker` + `scheduler` on Redis and
PostgreSQL, with a fake Slack Web API, and the raw baselines measured in the same run:

* a bare uvicorn route doing one idempotent INSERT and one Redis LPUSH (bench/bare_app.py);
* a bare Dramatiq no-op actor drained by the same worker settings.

    .venv/bin/python bench/pipeline.py            # full run, ~5 minutes
    .venv/bin/python bench/pipeline.py --quick    # smaller counts

Load comes from `wrk` (Debian package) for maximum throughput and from an open-loop asyncio
sender for latency at a fixed rate. Latencies past the ack are read from the database's own
timestamps (raw event received → ticket created; reply created → delivery sent).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from channels.slack import SlackSigner  # noqa: E402
from tests.fakes.http import Reply  # noqa: E402
from tests.fakes.slack_api import FakeSlack  # noqa: E402
from tests.services import free_port, start_postgres, start_redis  # noqa: E402

SECRET = "bench-signing-secret"
TEAM = "TBENCH"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def wait_http(url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def slack_event(n: int, channel: str, *, prefix: str) -> bytes:
    return json.dumps({"type": "event_callback", "team_id": TEAM, "event_id": f"{prefix}{n}",
                       "event": {"type": "message", "channel": channel, "user": "UBENCH", "text": f"bench {n}",
                                 "ts": f"{1700000000 + n}.{hash(prefix) % 1000000:06d}"}}).encode()


def wrk_script(path: Path, requests: list[tuple[str, dict[str, str], bytes]]) -> None:
    """A wrk Lua script sending each pre-signed request once (wrk thread k takes every k-th),
    read from a data file at start-up (a Lua chunk cannot hold more than 65,536 constants)."""
    data = path.with_suffix(".tsv")
    with data.open("w") as fh:
        for url_path, headers, body in requests:
            fields = [url_path, body.decode(), *(f"{k}: {v}" for k, v in headers.items())]
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


def run_wrk(url: str, script: Path, *, threads: int, connections: int, seconds: int) -> dict[str, float]:
    out = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--latency",
                          "-s", str(script), url, "--", str(threads)], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def latency(label: str) -> float:
        m = re.search(rf"\s{label}%\s+([\d.]+)(us|ms|s)", out)
        if not m:
            return float("nan")
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50": latency("50"), "p99": latency("99"), "errors": float(non2xx.group(1)) if non2xx else 0.0}


async def open_loop(url: str, requests: list[tuple[dict[str, str], bytes]], rate: float) -> tuple[list[float], int]:
    """Send at a fixed rate regardless of answers (no coordinated omission); latencies in ms."""
    latencies: list[float] = []
    errors = 0
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=200)) as client:
        start = time.perf_counter()

        async def one(i: int, headers: dict[str, str], body: bytes) -> None:
            nonlocal errors
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
            t0 = time.perf_counter()
            try:
                r = await client.post(url, content=body, headers=headers)
            except httpx.HTTPError:
                errors += 1
                return
            latencies.append((time.perf_counter() - t0) * 1000)
            if r.status_code not in (200, 201):
                errors += 1

        await asyncio.gather(*(one(i, h, b) for i, (h, b) in enumerate(requests)))
    return latencies, errors


class Deployment:
    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.tmp, self.env = tmp, env
        self.procs: list[subprocess.Popen[bytes]] = []
        self.log = open(tmp / "processes.log", "ab")  # noqa: SIM115

    def start(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(list(args), cwd=ROOT, env=env or self.env, stdout=self.log, stderr=self.log)
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        proc.terminate()
        proc.wait(15)
        self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in list(self.procs):
            self.stop(proc)


def sql(pg_url: str, query: str) -> list[tuple[Any, ...]]:
    import psycopg

    dsn = pg_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as conn:
        return list(conn.execute(query).fetchall())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--ack-only", action="store_true", help="only the bare route and the ack throughput")
    args = parser.parse_args()
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
    results: dict[str, Any] = {}
    try:
        py = sys.executable
        subprocess.run([py, "-m", "cli", "migrate"], cwd=ROOT, env=dep.env, check=True, capture_output=True)
        boot = json.loads(subprocess.run([py, "-m", "cli", "admin", "bootstrap", "--json"], cwd=ROOT, env=dep.env,
                                         check=True, capture_output=True).stdout)
        seconds = max(5, int(10 * scale))

        # -- 1. bare route baseline -------------------------------------------------------
        bare_port = free_port()
        bare_env = {**dep.env, "BARE_PG_DSN": pg.url.replace("postgresql+psycopg://", "postgresql://"),
                    "BARE_REDIS_URL": redis_server.url, "PYTHONPATH": str(ROOT / "bench")}
        bare = dep.start(py, "-m", "uvicorn", "bare_app:app", "--port", str(bare_port), "--workers",
                         str(args.web_workers), "--log-level", "warning", "--no-access-log", env=bare_env)
        wait_http(f"http://127.0.0.1:{bare_port}/")
        bare_reqs = [("/hook", {"X-Event-Id": f"bare{n}", "Content-Type": "application/json"},
                      slack_event(n, "CBARE", prefix="Bare")) for n in range(60000)]
        wrk_script(tmp / "bare.lua", bare_reqs)
        results["bare_route"] = run_wrk(f"http://127.0.0.1:{bare_port}/hook", tmp / "bare.lua", threads=2,
                                        connections=32, seconds=seconds)
        dep.stop(bare)

        # -- 2. ticketwire acks at full speed (no workers: the ack path alone) ---------------
        port = free_port()
        web = dep.start(py, "-m", "cli", "serve", "--port", str(port), "--workers", str(args.web_workers))
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/healthz")
        with FakeSlack(team_id=TEAM) as fake:
            headers = {"Authorization": f"Bearer {boot['api_key']}"}
            api = f"{base}/api/projects/{boot['project_id']}/conversations"
            channels = [f"CBENCH{i:04d}" for i in range(200)]
            httpx.put(f"{api}/integrations/slack", headers=headers, json={
                "bot_token": fake.token, "signing_secret": SECRET, "channel_ids": channels,
                "api_base_url": fake.api_url, "bot_user_id": fake.bot_user_id}).raise_for_status()
            fake.add_user("UBENCH", real_name="Bench Customer", email="bench@customer.test")
            signer = SlackSigner(SECRET)
            hook = f"/webhooks/slack/{boot['project_id']}/events"

            def signed(n: int, prefix: str) -> tuple[dict[str, str], bytes]:
                body = slack_event(n, channels[n % len(channels)], prefix=prefix)
                return {**signer.sign(body), "Content-Type": "application/json"}, body

            ack_reqs = [(hook, *signed(n, "Max")) for n in range(60000)]
            wrk_script(tmp / "ack.lua", ack_reqs)
            results["ack_max"] = run_wrk(f"{base}{hook}", tmp / "ack.lua", threads=2, connections=32, seconds=seconds)
            acked = sql(pg.url, "SELECT count(*) FROM raw_events")[0][0]
            results["ack_max"]["stored"] = acked
            if args.ack_only:
                return

            # -- 3. ack latency at 300/s, with workers and scheduler running ----------------
            dep.start(py, "-m", "cli", "worker", "--threads", "8")
            dep.start(py, "-m", "cli", "scheduler")
            time.sleep(2)
            # Drain what step 2 stored before measuring (they become tickets).
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                left = sql(pg.url, "SELECT count(*) FROM raw_events WHERE status IN ('pending','processing')")[0][0]
                if left == 0:
                    break
                time.sleep(1)
            results["drain_of_max_run_seconds"] = round(time.monotonic() - (deadline - 600), 1)

            n300 = int(3000 * scale)
            lat, errors = asyncio.run(open_loop(f"{base}{hook}", [signed(n, "R300-") for n in range(n300)], 300))
            results["ack_at_300"] = {"p50": pct(lat, 0.5), "p99": pct(lat, 0.99), "errors": errors, "n": n300}

            # -- 4. inbound-to-ticket at 200/s --------------------------------------------
            time.sleep(3)
            n200 = int(2000 * scale)
            lat, errors = asyncio.run(open_loop(f"{base}{hook}", [signed(n, "R200-") for n in range(n200)], 200))
            time.sleep(5)
            rows = sql(pg.url, """
                SELECT extract(epoch FROM (t.created_at - r.received_at)) * 1000
                FROM raw_events r JOIN tickets t ON t.thread_key = 'TBENCH:' ||
                     (convert_from(r.body, 'UTF8')::json->'event'->>'channel') || ':' ||
                     (convert_from(r.body, 'UTF8')::json->'event'->>'ts')
                WHERE r.event_id LIKE 'R200-%'""")
            itt = [float(r[0]) for r in rows]
            results["inbound_to_ticket_at_200"] = {"p50": pct(itt, 0.5), "p99": pct(itt, 0.99), "tickets": len(itt),
                                                   "sent": n200, "ack_errors": errors}

            # -- 5. reply-to-delivered at 100/s (one reply per channel per 2 s: under Slack's pace)
            tickets = httpx.get(f"{api}/tickets/?limit=1000&search=", headers=headers).json()["results"]
            by_channel: dict[str, str] = {}
            for t in tickets:
                by_channel.setdefault(t["slack_channel_id"], t["id"])
            targets = list(by_channel.values())[:200]
            n100 = int(1000 * scale)
            reply_reqs = []
            for n in range(n100):
                body = json.dumps({"message": f"reply {n}"}).encode()
                reply_reqs.append(({**headers, "Content-Type": "application/json"}, body,
                                   f"{api}/tickets/{targets[n % len(targets)]}/reply"))

            async def replies() -> tuple[list[float], int]:
                latencies: list[float] = []
                errs = 0
                async with httpx.AsyncClient(timeout=30) as client:
                    start = time.perf_counter()

                    async def one(i: int, h: dict[str, str], b: bytes, u: str) -> None:
                        nonlocal errs
                        await asyncio.sleep(max(0.0, start + i / 100 - time.perf_counter()))
                        try:
                            r = await client.post(u, content=b, headers=h)
                        except httpx.HTTPError:
                            errs += 1
                            return
                        errs += r.status_code != 201
                    await asyncio.gather(*(one(i, h, b, u) for i, (h, b, u) in enumerate(reply_reqs)))
                return latencies, errs

            posts_before = len(fake.posts)
            _, reply_errors = asyncio.run(replies())
            deadline = time.monotonic() + 120
            while len(fake.posts) - posts_before < n100 and time.monotonic() < deadline:
                time.sleep(0.5)
            rows = sql(pg.url, """SELECT extract(epoch FROM (d.sent_at - m.created_at)) * 1000 FROM deliveries d
                                  JOIN messages m ON m.id = d.message_id WHERE d.sent_at IS NOT NULL""")
            rtd = [float(r[0]) for r in rows]
            results["reply_to_delivered_at_100"] = {"p50": pct(rtd, 0.5), "p99": pct(rtd, 0.99), "delivered": len(rtd),
                                                    "sent": n100, "api_errors": reply_errors,
                                                    "posts": len(fake.posts) - posts_before}

            # -- 6. backlog: 1,000 replies across 10 channels, Slack enforcing 1/s per channel --
            last_post: dict[str, float] = {}
            rejected = 0
            original = fake._methods["chat.postMessage"]

            def enforcing(params: dict[str, Any]) -> Any:
                nonlocal rejected
                channel = params.get("channel", "")
                now_ = time.monotonic()
                if now_ - last_post.get(channel, 0.0) < 0.95:
                    rejected += 1
                    raise _RateLimited()
                last_post[channel] = now_
                return original(params)

            class _RateLimited(Exception):
                pass

            def handle(call: Any, match: Any) -> Reply:
                try:
                    return fake._handle(call, match)
                except _RateLimited:
                    return Reply(429, {"ok": False, "error": "ratelimited"}, headers={"Retry-After": "1"})

            fake._methods["chat.postMessage"] = enforcing
            fake.routes.insert(0, ("POST", re.compile(r"/api/(?P<method>[\w.]+)\Z"), handle))
            backlog_targets = targets[:10]
            n_backlog = int(1000 * scale)
            worker_procs = [p for p in dep.procs if "worker" in p.args]
            for p in worker_procs:
                dep.stop(p)
            for n in range(n_backlog):
                httpx.post(f"{api}/tickets/{backlog_targets[n % 10]}/reply", headers=headers,
                           json={"message": f"backlog {n}"}).raise_for_status()
            posts_before = len(fake.posts)
            start = time.monotonic()
            dep.start(py, "-m", "cli", "worker", "--threads", "8")
            deadline = start + 3600
            while len(fake.posts) - posts_before < n_backlog and time.monotonic() < deadline:
                time.sleep(0.5)
            took = time.monotonic() - start
            ideal = n_backlog / 10  # 1 per second per channel
            results["backlog"] = {"replies": n_backlog, "channels": 10, "seconds": round(took, 1),
                                  "ideal_seconds": ideal, "use_of_allowed_rate": round(ideal / took, 3),
                                  "429s": rejected, "posts": len(fake.posts) - posts_before}

            # -- 7. totals: lost and duplicated ---------------------------------------------
            texts = [p["text"] for p in fake.posts]
            results["duplicated_posts"] = len(texts) - len(set(texts))
            stored = sql(pg.url, "SELECT count(*) FROM raw_events")[0][0]
            unprocessed = sql(pg.url, "SELECT count(*) FROM raw_events WHERE status NOT IN ('processed','ignored')")[0][0]
            results["raw_events"] = {"stored": stored, "not_processed": unprocessed}
            msg_dupes = sql(pg.url, "SELECT count(*) - count(DISTINCT external_id) FROM messages WHERE external_id IS NOT NULL")
            results["duplicated_messages"] = msg_dupes[0][0]
            undelivered = sql(pg.url, "SELECT count(*) FROM deliveries WHERE status <> 'sent'")[0][0]
            results["undelivered"] = undelivered
        dep.stop(web)

        # -- 8. bare Dramatiq no-op actor drained by the same worker settings ----------------
        results["bare_dramatiq"] = bare_dramatiq(redis_server.url, dep, int(5000 * scale))
    finally:
        dep.stop_all()
        redis_server.stop()
        pg.stop()
        print(json.dumps(results, indent=2, default=float))


def bare_dramatiq(redis_url: str, dep: Deployment, count: int) -> dict[str, float]:
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
                     "w = dramatiq.Worker(bare_actor.broker, worker_threads=8, worker_timeout=100); w.start()\n"
                     "time.sleep(3600)", env=env)
    while int(client.get("bare:done") or 0) < count and time.monotonic() - start < 300:
        time.sleep(0.05)
    took = time.monotonic() - start
    dep.stop(proc)
    return {"messages": count, "seconds": round(took, 2), "per_second": round(count / took, 1)}


if __name__ == "__main__":
    main()
