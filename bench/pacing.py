"""GitHub outbound pacing at the real published limits: a 500-reply backlog drained by two
`ticketwire worker` processes (Redis, PostgreSQL) against the fake GitHub enforcing 80
content-creating requests per minute and 500 per hour per token.

    .venv/bin/python bench/pacing.py            # ~7 minutes, mostly waiting on the windows
    .venv/bin/python bench/pacing.py --replies 200

Prints JSON: the drain time (workers started → last comment, and first → last comment), the
403s the fake answered, the largest number of comments it saw in any 60 s and any hour, and
the share of the allowed rate reached (the least first-to-last time the windows allow for that
many comments, over the measured one). The baseline is the earlier single-rate pacer (the
hourly 500 as one steady rate: one comment per 7.2 s), computed, not run: an hour for 500.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from channels.github.outbound import CONTENT_CREATION_LIMITS  # noqa: E402
from core.migrate import migrate  # noqa: E402
from tests.fakes.github_api import FakeGitHub  # noqa: E402
from tests.services import test_services  # noqa: E402
from tests.workers.channel_support import (  # noqa: E402
    GITHUB_TOKEN,
    UNTHROTTLED_API,
    github_project,
    ideal_seconds,
    max_in_any_window,
    open_github_issue,
    post_replies,
)
from tests.workers.support import Stack, wait_for  # noqa: E402


def fresh_database(admin_url: str) -> str:
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("DROP DATABASE IF EXISTS ticketwire_bench_pacing"))
        conn.execute(text("CREATE DATABASE ticketwire_bench_pacing"))
    admin.dispose()
    url = admin_url.rsplit("/", 1)[0] + "/ticketwire_bench_pacing"
    migrate(url)
    return url


def run(replies: int) -> dict[str, object]:
    with test_services() as urls, tempfile.TemporaryDirectory(prefix="tw-bench-pacing-") as tmp:
        database_url = fresh_database(urls["postgres"])
        env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": urls["redis"],
               "TICKETWIRE_SECRET_KEY": "bench-secret", "TICKETWIRE_VAR_DIR": tmp, **UNTHROTTLED_API}
        env.pop("TICKETWIRE_EMBEDDED_WORKERS", None)
        stack = Stack(env, Path(tmp))
        try:
            with FakeGitHub(token=GITHUB_TOKEN, content_limits=CONTENT_CREATION_LIMITS) as github:
                stack.start_web()
                ctx = github_project(stack, github)  # no rate_limits: GitHub's published windows
                stack.start("ingest", "worker", "--threads", "2")
                ticket = open_github_issue(stack, ctx)
                stack.kill("ingest")
                post_replies(ctx, [(ticket["id"], f"Reply {n}") for n in range(replies)])
                stack.start("worker-a", "worker")
                stack.start("worker-b", "worker")
                stack.start("scheduler", "scheduler")
                started = time.monotonic()
                wait_for(lambda: len(github.content_requests) >= replies, timeout=ideal_seconds(
                    CONTENT_CREATION_LIMITS, replies) + 300)
                drained = time.monotonic() - started
                time.sleep(2)
                arrivals = list(github.content_requests)
                spread = max(arrivals) - min(arrivals)
                ideal = ideal_seconds(CONTENT_CREATION_LIMITS, replies)
                return {
                    "replies": replies,
                    "windows": [list(w) for w in CONTENT_CREATION_LIMITS],
                    "drain_seconds_from_workers_start": round(drained, 1),
                    "first_to_last_comment_seconds": round(spread, 1),
                    "allowed_first_to_last_seconds": round(ideal, 1),
                    "share_of_allowed_rate": round(ideal / spread, 3) if spread else None,
                    "secondary_rate_limit_403s": github.secondary_rate_limited,
                    "comments_posted": len(arrivals),
                    "max_comments_in_any_60s": max_in_any_window(arrivals, 60.0),
                    "max_comments_in_any_hour": max_in_any_window(arrivals, 3600.0),
                    "baseline_single_rate_seconds": round((replies - 1) * 3600 / 500, 1),
                }
        finally:
            stack.stop_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replies", type=int, default=500)
    args = parser.parse_args()
    print(json.dumps(run(args.replies), indent=2))


if __name__ == "__main__":
    main()
