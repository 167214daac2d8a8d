"""Widget benchmark: 1,000 simulated visitors polling as posthog-js does, with messages flowing.

    .venv/bin/python bench/widget.py [--visitors 1000] [--seconds 60] [--database sqlite|postgres]

It starts one `uvicorn` process serving ticketwire (embedded mode, no Redis; SQLite in a temp
dir, or a private PostgreSQL 15 with --database postgres) with one extra route, `/bench/bare` (returns a constant
JSON, no database), and then, from this process (asyncio + httpx):

1. baseline: `/bench/bare` and the widget's GET messages, each hammered by --concurrency
   closed-loop clients for --burst seconds → the requests per second the server sustains;
2. visitors (arriving over --ramp seconds; "steady" numbers leave the arrival out): every
   visitor opens a ticket (POST message), then polls its messages every 5 s
   with the `after` cursor, as the open widget does, and writes again now and then (~1 message
   a minute each); an agent answers random tickets through the REST API (≈1 a second, the
   per-user reply limit) → poll latency p50/p99, how long a reply takes to show up in the
   visitor's widget (reply committed → first poll that returns it), and the request rate.

The SDK waits for each poll to finish before scheduling the next one 5 s later, and so do the
simulated visitors. Numbers go to stdout (and bench/out/widget.json); record them in
bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.services import free_port, start_postgres  # noqa: E402

WIDGET = "/api/conversations/v1/widget"
POLL_SECONDS = 5.0
ORIGIN = "https://shop.example.com"


def create_bench_app() -> Any:
    """ticketwire's app plus a bare route measured next to it (uvicorn --factory)."""
    from api.app import create_app

    app = create_app()

    @app.get("/bench/bare", include_in_schema=False)
    def bare() -> dict[str, bool]:
        return {"ok": True}

    return app


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux): a measure the neighbours on a shared
    machine cannot inflate, unlike wall-clock latency."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def wait_http(url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


async def closed_loop(client: httpx.AsyncClient, make_request: Any, seconds: float, concurrency: int) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            response = await make_request()
            latencies.append(time.perf_counter() - start)
            if response.status_code != 200:
                errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {"requests": len(latencies), "rps": len(latencies) / elapsed, "p50_ms": pct(latencies, 0.5),
            "p99_ms": pct(latencies, 0.99), "errors": errors}


class Visitor:
    def __init__(self, index: int) -> None:
        self.session_id = str(uuid.uuid4())
        self.distinct_id = f"bench-visitor-{index}"
        self.ticket_id: str | None = None
        self.after: str | None = None
        self.seen: set[str] = set()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="ticketwire-bench-widget-"))
    pg = start_postgres(workdir / "pg") if args.database == "postgres" else None
    database_url = pg.url if pg else f"sqlite:///{workdir / 'ticketwire.db'}"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "TICKETWIRE_VAR_DIR": str(workdir / "var"),
        "TICKETWIRE_SECRET_KEY": "bench-secret",
        "PYTHONPATH": str(ROOT),
        # The bench's own REST calls (setup, agent) stay far below these; raise them anyway so
        # only the widget's limits are in play.
        "TICKETWIRE_RATE_LIMIT_PER_MINUTE": "100000",
        "TICKETWIRE_RATE_LIMIT_PER_HOUR": "1000000",
    }
    env.pop("REDIS_URL", None)
    cli = [sys.executable, "-c", "import cli; cli.app()"]
    boot = subprocess.run([*cli, "admin", "bootstrap", "--project-name", "Bench", "--json"], env=env, cwd=ROOT,
                          capture_output=True, text=True, check=True)
    data = json.loads(boot.stdout.strip().splitlines()[-1])
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bench.widget:create_bench_app", "--factory", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning", "--no-access-log",
         # uvicorn's default keep-alive (5 s) equals the poll interval: connections would be
         # closed just as they are reused. Browsers retry that; a bench should not measure it.
         "--timeout-keep-alive", "30"],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(workdir / "server.log", "wb"),  # noqa: SIM115
    )
    results: dict[str, Any] = {"visitors": args.visitors, "seconds": args.seconds, "database": args.database}
    try:
        wait_http(f"{base}/bench/bare")
        api_headers = {"Authorization": f"Bearer {data['api_key']}"}
        widget_headers = {"X-Conversations-Token": data["widget_token"], "Origin": ORIGIN}
        project = f"/api/projects/{data['project_id']}/conversations"
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:
            response = await client.put(f"{project}/integrations/widget", headers=api_headers,
                                        json={"rate_limit_per_token_per_hour": 10_000_000})
            response.raise_for_status()
            await asyncio.sleep(11)  # the widget settings cache lives 10 s

            # -- 1. baseline and saturation -------------------------------------------------
            # Alternate short bursts of the two, so a busy neighbour on the machine weighs on
            # both alike; the ratio is the number to read.
            poll = await poll_requests(client, widget_headers, args.saturation_tickets)
            bursts: dict[str, list[dict[str, Any]]] = {"bare": [], "poll_saturation": []}
            for _ in range(args.rounds):
                for name, make in (("bare", lambda: client.get("/bench/bare")), ("poll_saturation", poll)):
                    cpu = cpu_seconds(server.pid)
                    burst = await closed_loop(client, make, args.burst, args.concurrency)
                    burst["server_cpu_ms_per_request"] = (cpu_seconds(server.pid) - cpu) * 1000 / burst["requests"]
                    bursts[name].append(burst)
            for name, runs in bursts.items():
                results[name] = {
                    "rps": sum(r["rps"] for r in runs) / len(runs),
                    "p50_ms": sorted(r["p50_ms"] for r in runs)[len(runs) // 2],
                    "p99_ms": sorted(r["p99_ms"] for r in runs)[len(runs) // 2],
                    "requests": sum(r["requests"] for r in runs),
                    "errors": sum(r["errors"] for r in runs),
                    "rounds": [round(r["rps"]) for r in runs],
                    "server_cpu_ms_per_request": sum(r["server_cpu_ms_per_request"] for r in runs) / len(runs),
                }
            results["poll_vs_bare"] = results["poll_saturation"]["rps"] / results["bare"]["rps"]
            results["load_average_before"] = os.getloadavg()[0]

            # -- 2. visitors ------------------------------------------------------------------
            visitors = [Visitor(i) for i in range(args.visitors)]
            poll_latencies: list[float] = []
            timeline: list[tuple[float, float]] = []
            write_latencies: list[float] = []
            visible_latencies: list[float] = []
            replied_at: dict[str, list[tuple[str, float]]] = {}
            errors: dict[str, int] = {}
            requests = 0

            async def call(kind: str, method: str, url: str, **kwargs: Any) -> httpx.Response | None:
                try:
                    return await client.request(method, url, **kwargs)
                except httpx.TransportError as exc:
                    key = f"{kind}:{type(exc).__name__}"
                    errors[key] = errors.get(key, 0) + 1
                    return None

            def count(kind: str, response: httpx.Response) -> None:
                nonlocal requests
                requests += 1
                if response.status_code != 200:
                    key = f"{kind}:{response.status_code}"
                    errors[key] = errors.get(key, 0) + 1

            async def send(visitor: Visitor, text: str) -> None:
                start = time.perf_counter()
                response = await call("message", "POST", f"{WIDGET}/message", headers=widget_headers, json={
                    "message": text, "widget_session_id": visitor.session_id, "distinct_id": visitor.distinct_id,
                    "ticket_id": visitor.ticket_id, "traits": {"name": None, "email": None},
                    "session_context": {"current_url": f"{ORIGIN}/products/{random.randint(1, 500)}"}})
                if response is None:
                    return
                write_latencies.append(time.perf_counter() - start)
                count("message", response)
                if response.status_code == 200:
                    body = response.json()
                    visitor.ticket_id = body["ticket_id"]
                    visitor.after = body["created_at"]

            stop_at = 0.0

            async def visitor_loop(visitor: Visitor) -> None:
                await asyncio.sleep(random.uniform(0, args.ramp))
                while visitor.ticket_id is None and time.perf_counter() < stop_at:
                    await send(visitor, "Hello, I have a question about my order")
                if visitor.ticket_id is None:
                    return
                next_write = time.perf_counter() + random.expovariate(1 / 60)
                await asyncio.sleep(random.uniform(0, POLL_SECONDS))
                while time.perf_counter() < stop_at:
                    params = {"widget_session_id": visitor.session_id, "limit": "50"}
                    if visitor.after:
                        params["after"] = visitor.after
                    start = time.perf_counter()
                    response = await call("poll", "GET", f"{WIDGET}/messages/{visitor.ticket_id}",
                                          headers=widget_headers, params=params)
                    now = time.perf_counter()
                    if response is not None:
                        poll_latencies.append(now - start)
                        timeline.append((now - started, now - start))
                        count("poll", response)
                    if response is not None and response.status_code == 200:
                        for message in response.json()["messages"]:
                            visitor.after = message["created_at"]
                            if message["author_type"] != "customer" and message["id"] not in visitor.seen:
                                visitor.seen.add(message["id"])
                                for reply_id, at in replied_at.get(visitor.ticket_id or "", []):
                                    if reply_id == message["id"]:
                                        visible_latencies.append(now - at)
                    if now >= next_write:
                        await send(visitor, "One more detail")
                        next_write = now + random.expovariate(1 / 60)
                    # The SDK schedules the next poll when this one is done.
                    await asyncio.sleep(POLL_SECONDS)

            async def agent_loop() -> None:
                await asyncio.sleep(args.ramp + POLL_SECONDS)
                while time.perf_counter() < stop_at - 2 * POLL_SECONDS:
                    ready = [v for v in visitors if v.ticket_id]
                    if ready:
                        visitor = random.choice(ready)
                        response = await call("reply", "POST", f"{project}/tickets/{visitor.ticket_id}/reply",
                                              headers=api_headers, json={"message": f"Answer {uuid.uuid4().hex[:8]}"})
                        done = time.perf_counter()
                        if response is not None:
                            count("reply", response if response.status_code != 201 else httpx.Response(200))
                        if response is not None and response.status_code == 201:
                            replied_at.setdefault(visitor.ticket_id or "", []).append((response.json()["id"], done))
                    await asyncio.sleep(args.reply_interval)

            lags: list[float] = []

            async def loop_lag() -> None:
                # How late this process's own event loop wakes up: if the load generator is
                # starved, its latencies are too, whatever the server does.
                while time.perf_counter() < stop_at:
                    before = time.perf_counter()
                    await asyncio.sleep(0.1)
                    lags.append(time.perf_counter() - before - 0.1)

            started = time.perf_counter()
            cpu_at_start = cpu_seconds(server.pid)
            client_cpu_at_start = cpu_seconds(os.getpid())
            stop_at = started + args.ramp + args.seconds
            await asyncio.gather(agent_loop(), loop_lag(), *(visitor_loop(v) for v in visitors))
            elapsed = time.perf_counter() - started
            results["load_average_after"] = os.getloadavg()[0]
            server_cpu = cpu_seconds(server.pid) - cpu_at_start
            replies = sum(len(v) for v in replied_at.values())
            buckets: dict[int, list[float]] = {}
            for at, latency in timeline:
                buckets.setdefault(int(at // 5) * 5, []).append(latency)
            steady = [latency for at, latency in timeline if args.ramp + POLL_SECONDS <= at <= args.ramp + args.seconds]
            results["steady_poll_p50_ms"] = pct(steady, 0.5)
            results["steady_poll_p99_ms"] = pct(steady, 0.99)
            results["poll_timeline"] = {f"{k}s": {"n": len(v), "p50_ms": round(pct(v, 0.5), 1), "p99_ms": round(pct(v, 0.99), 1)}
                                        for k, v in sorted(buckets.items())}
            results["visitors_run"] = {
                "elapsed_s": round(elapsed, 1),
                "requests": requests,
                "rps": requests / elapsed,
                "server_cpu_cores": server_cpu / elapsed,
                "server_cpu_ms_per_request": server_cpu * 1000 / max(1, requests),
                "client_cpu_cores": (cpu_seconds(os.getpid()) - client_cpu_at_start) / elapsed,
                "client_loop_lag_p99_ms": pct(lags, 0.99),
                "client_loop_lag_max_ms": max(lags) * 1000 if lags else float("nan"),
                "poll_p50_ms": pct(poll_latencies, 0.5),
                "poll_p99_ms": pct(poll_latencies, 0.99),
                "polls": len(poll_latencies),
                "message_p50_ms": pct(write_latencies, 0.5),
                "message_p99_ms": pct(write_latencies, 0.99),
                "messages": len(write_latencies),
                "replies": replies,
                "replies_seen": len(visible_latencies),
                "reply_visible_p50_ms": pct(visible_latencies, 0.5),
                "reply_visible_p99_ms": pct(visible_latencies, 0.99),
                "reply_visible_max_ms": max(visible_latencies) * 1000 if visible_latencies else float("nan"),
                "errors": errors,
            }
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
        if pg is not None:
            pg.stop()
    return results


async def poll_requests(client: httpx.AsyncClient, headers: dict[str, str], tickets: int) -> Any:
    """GET messages over many visitors' own tickets (so no session exceeds its poll budget);
    the tickets are made before the clock starts."""
    owned: list[tuple[str, str]] = []
    for _ in range(tickets):
        session_id = str(uuid.uuid4())
        response = await client.post(f"{WIDGET}/message", headers=headers, json={
            "message": "saturation", "widget_session_id": session_id, "distinct_id": "sat", "ticket_id": None})
        response.raise_for_status()
        owned.append((response.json()["ticket_id"], session_id))

    async def request() -> httpx.Response:
        ticket_id, session_id = random.choice(owned)
        return await client.get(f"{WIDGET}/messages/{ticket_id}", headers=headers,
                                params={"widget_session_id": session_id, "limit": "50"})

    return request


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--visitors", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=60, help="steady polling after the ramp")
    parser.add_argument("--ramp", type=float, default=10, help="visitors arrive spread over this many seconds")
    parser.add_argument("--burst", type=float, default=5, help="seconds per closed-loop burst")
    parser.add_argument("--rounds", type=int, default=3, help="alternating bare/poll bursts")
    parser.add_argument("--reply-interval", type=float, default=1.05, help="seconds between agent replies")
    parser.add_argument("--saturation-tickets", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8,
                        help="closed-loop clients (httpx itself slows down badly beyond a few dozen)")
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite",
                        help="sqlite (embedded default) or a private PostgreSQL started for the run")
    args = parser.parse_args()
    results = asyncio.run(run(args))
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "widget.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
