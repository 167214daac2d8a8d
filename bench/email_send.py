"""Campaign sending benchmark (issue 5): compose-campaign mails per second through the production
shape (`ticketwire serve` + `ticketwire worker` processes + `ticketwire scheduler` on PostgreSQL
and Redis) into a local aiosmtpd sink, with the rate limit lifted, next to bare aiosmtplib loops
sending the same kind of message to the same sink in the same run:

* bare, one connection: build the reply MIME and `send_message` in a loop, one SMTP connection;
* bare, N connections: the same on as many concurrent connections as the pool may open.

    .venv/bin/python bench/email_send.py                  # 5,000 recipients
    .venv/bin/python bench/email_send.py --recipients 1000 --workers 1 --threads 4
    BENCH_NO_SCHEDULER=1 .venv/bin/python bench/email_send.py   # without the sweeper's re-sends

The campaign figure is measured at the sink, from the first mail received to the last (and from
the campaign POST to the last, which includes creating the tickets). Nothing here asserts a
number; RESULTS.md records runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
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

from channels.email.outbound import build_reply_mime  # noqa: E402
from tests.email_outbound.sink import Sink, smtp_server  # noqa: E402
from tests.services import free_port, start_postgres, start_redis  # noqa: E402


def message(n: int) -> Any:
    return build_reply_mime(
        from_email="news@acme.test", from_name="Acme", to=f"user{n:05d}@customers.test", subject="News for User",
        text=f"Hello User {n},\n\nyour **Pro** plan has news.", message_id=f"<bare-{n}@acme.test>", is_reply=False,
    )


async def bare_loop(port: int, count: int, connections: int) -> float:
    """Mails per second over `connections` concurrent aiosmtplib connections."""
    import aiosmtplib

    async def one(indexes: range) -> None:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
        await smtp.connect()
        for n in indexes:
            await smtp.send_message(message(n))
        await smtp.quit()

    started = time.perf_counter()
    await asyncio.gather(*(one(range(c, count, connections)) for c in range(connections)))
    return count / (time.perf_counter() - started)


def wait_http(url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipients", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per worker process")
    parser.add_argument("--bare-count", type=int, default=2000)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="ticketwire-bench-email-"))
    redis_server = start_redis(tmp / "redis")
    pg = start_postgres(tmp / "pg")
    procs: list[subprocess.Popen[bytes]] = []
    log = open(tmp / "processes.log", "ab")  # noqa: SIM115
    results: dict[str, Any] = {}
    try:
        with smtp_server(Sink()) as (sink, port):
            connections = int(os.environ.get("TICKETWIRE_EMAIL_MAX_CONNECTIONS", "4"))
            results["bare_1"] = asyncio.run(bare_loop(port, args.bare_count, 1))
            results["bare_n"] = asyncio.run(bare_loop(port, args.bare_count, connections))
            results["bare_connections"] = connections
            sink.mails.clear()

            env = {**os.environ, "DATABASE_URL": pg.url, "REDIS_URL": redis_server.url,
                   "TICKETWIRE_SECRET_KEY": "bench-secret", "TICKETWIRE_VAR_DIR": str(tmp / "var"),
                   "TICKETWIRE_EMAIL_RATE_PER_MINUTE": "0"}
            env.pop("TICKETWIRE_EMBEDDED_WORKERS", None)
            py = sys.executable
            subprocess.run([py, "-m", "cli", "migrate"], cwd=ROOT, env=env, check=True, capture_output=True)
            out = subprocess.run([py, "-m", "cli", "admin", "bootstrap", "--json", "--project-name", "Bench"],
                                 cwd=ROOT, env=env, check=True, capture_output=True)
            project = json.loads(out.stdout)
            web_port = free_port()
            procs.append(subprocess.Popen([py, "-m", "cli", "serve", "--port", str(web_port)], cwd=ROOT, env=env,
                                          stdout=log, stderr=log))
            for _ in range(args.workers):
                procs.append(subprocess.Popen([py, "-m", "cli", "worker", "--threads", str(args.threads)], cwd=ROOT,
                                              env=env, stdout=log, stderr=log))
            if not os.environ.get("BENCH_NO_SCHEDULER"):
                procs.append(subprocess.Popen([py, "-m", "cli", "scheduler"], cwd=ROOT, env=env, stdout=log,
                                              stderr=log))
            url = f"http://127.0.0.1:{web_port}"
            wait_http(f"{url}/healthz")
            headers = {"Authorization": f"Bearer {project['api_key']}"}
            base = f"{url}/api/projects/{project['project_id']}/conversations"
            config = httpx.post(f"{base}/email_configs", headers=headers, json={
                "from_email": "news@acme.test", "from_name": "Acme", "smtp_host": "127.0.0.1", "smtp_port": port,
                "smtp_security": "none"}).json()
            csv_text = "email,name,plan\n" + "".join(
                f"user{n:05d}@customers.test,User {n},Pro\n" for n in range(args.recipients))
            time.sleep(2)  # let the workers connect to Redis
            started = time.monotonic()
            created = httpx.post(f"{base}/campaigns", headers=headers, timeout=600, data={
                "email_config_id": config["id"], "email_subject": "News for {{name}}",
                "message": "Hello {{name}},\n\nyour **{{plan}}** plan has news."},
                files={"file": ("r.csv", csv_text.encode(), "text/csv")})
            assert created.status_code == 201, created.text
            results["create_seconds"] = time.monotonic() - started
            deadline = time.monotonic() + 1800
            while len(sink.mails) < args.recipients and time.monotonic() < deadline:
                time.sleep(0.2)
            finished = time.monotonic()
            times = sorted(m.at for m in sink.mails)
            results["sent"] = len(sink.mails)
            results["campaign_send_rate"] = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
            results["campaign_end_to_end_rate"] = len(times) / (finished - started)
            results["end_to_end_seconds"] = finished - started
            results["smtp_connections"] = sink.connections
            results["distinct_recipients"] = len(sink.by_recipient())
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        redis_server.stop()
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"\nEmail sending, {args.recipients} recipients, {args.workers} worker process(es) x {args.threads} threads")
    print(f"  bare aiosmtplib loop, 1 connection        {results['bare_1']:8.0f} mails/s")
    print(f"  bare aiosmtplib loop, {results['bare_connections']} connections       {results['bare_n']:8.0f} mails/s")
    print(f"  campaign, first to last mail at the sink  {results['campaign_send_rate']:8.0f} mails/s")
    print(f"  campaign, POST to last mail               {results['campaign_end_to_end_rate']:8.0f} mails/s "
          f"({results['end_to_end_seconds']:.1f} s; creating {results['create_seconds']:.1f} s)")
    print(f"  mails {results['sent']}, distinct recipients {results['distinct_recipients']}, "
          f"SMTP connections {results['smtp_connections']}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
