"""Pipeline benchmark: signed Slack webhooks acknowledged per second and their latency, and
inbound-to-ticket latency, next to a bare uvicorn route doing one idempotent insert and one
Redis LPUSH, in the same run.

    .venv/bin/python bench/pipeline.py [--requests 2000] [--concurrency 16]

It starts Redis and PostgreSQL (tests/services.py), `ticketwire serve` + `ticketwire worker`
+ `ticketwire scheduler` on them, and a fake Slack Web API. Numbers go to stdout; record
them in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from channels.slack import SlackSigner  # noqa: E402
from tests.fakes.slack_api import FakeSlack  # noqa: E402
from tests.services import free_port, start_postgres, start_redis  # noqa: E402

SECRET = "bench-signing-secret"
CHANNEL = "CBENCH0001"



def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def fire(url: str, bodies: list[tuple[bytes, dict[str, str]]], concurrency: int) -> tuple[float, list[float], int]:
    latencies: list[float] = []
    errors = 0
    queue: asyncio.Queue[tuple[bytes, dict[str, str]]] = asyncio.Queue()
    for item in bodies:
        queue.put_nowait(item)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors
        while not queue.empty():
            body, headers = queue.get_nowait()
            start = time.perf_counter()
            r = await client.post(url, content=body, headers=headers)
            latencies.append(time.perf_counter() - start)
            if r.status_code != 200:
                errors += 1

    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=concurrency)) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return time.perf_counter() - started, latencies, errors


def wait_http(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tw-bench-"))
    redis_server = start_redis(tmp / "redis")
    pg = start_postgres(tmp / "pg")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        env = {**os.environ, "DATABASE_URL": pg.url, "REDIS_URL": redis_server.url,
               "TICKETWIRE_SECRET_KEY": "bench", "TICKETWIRE_VAR_DIR": str(tmp / "var"),
               "TICKETWIRE_RATE_LIMIT_PER_MINUTE": "100000000", "TICKETWIRE_RATE_LIMIT_PER_HOUR": "100000000"}
        subprocess.run([sys.executable, "-m", "cli", "migrate"], cwd=ROOT, env=env, check=True, capture_output=True)
        boot = json.loads(subprocess.run([sys.executable, "-m", "cli", "admin", "bootstrap", "--json"], cwd=ROOT,
                                         env=env, check=True, capture_output=True).stdout)
        port = free_port()
        log = open(tmp / "bench.log", "ab")  # noqa: SIM115
        procs.append(subprocess.Popen([sys.executable, "-m", "cli", "serve", "--port", str(port)], cwd=ROOT, env=env,
                                      stdout=log, stderr=log))
        procs.append(subprocess.Popen([sys.executable, "-m", "cli", "worker", "--threads", "8"], cwd=ROOT, env=env,
                                      stdout=log, stderr=log))
        procs.append(subprocess.Popen([sys.executable, "-m", "cli", "scheduler"], cwd=ROOT, env=env, stdout=log, stderr=log))
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/healthz")
        with FakeSlack() as fake:
            headers = {"Authorization": f"Bearer {boot['api_key']}"}
            api = f"{base}/api/projects/{boot['project_id']}/conversations"
            httpx.put(f"{api}/integrations/slack", headers=headers, json={
                "bot_token": fake.token, "signing_secret": SECRET, "channel_ids": [CHANNEL], "api_base_url": fake.api_url,
                "bot_user_id": fake.bot_user_id}).raise_for_status()
            fake.add_user("UBENCH", real_name="Bench Customer", email="bench@customer.test")
            signer = SlackSigner(SECRET)
            bodies = []
            for n in range(args.requests):
                body = json.dumps({"type": "event_callback", "team_id": "TBENCH", "event_id": f"EvB{n}",
                                   "event": {"type": "message", "channel": CHANNEL, "user": "UBENCH",
                                             "text": f"bench {n}", "ts": f"{1700000000 + n}.000100"}}).encode()
                bodies.append((body, {**signer.sign(body), "Content-Type": "application/json"}))
            elapsed, lat, errors = asyncio.run(fire(f"{base}/webhooks/slack/{boot['project_id']}/events", bodies,
                                                    args.concurrency))
            print(f"ticketwire webhook acks: {args.requests / elapsed:.0f}/s  p50 {pct(lat, .5):.1f} ms  "
                  f"p99 {pct(lat, .99):.1f} ms  errors {errors}")
            start = time.monotonic()
            while time.monotonic() - start < 300:
                count = httpx.get(f"{api}/tickets/?limit=1", headers=headers).json()["count"]
                if count >= min(args.requests, 10_000):
                    break
                time.sleep(0.5)
            print(f"all {args.requests} webhooks became tickets {time.monotonic() - start:.1f} s after the last ack "
                  f"(tickets counted: {count})")
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)
        redis_server.stop()
        pg.stop()


if __name__ == "__main__":
    main()
