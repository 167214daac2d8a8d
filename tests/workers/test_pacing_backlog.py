"""A 500-reply backlog drained by two real `ticketwire worker` processes that share one pacer in
Redis, against fakes that enforce the vendors' published limits: zero 429s/403s, every reply
posted exactly once, and (GitHub) as fast as the windows allow.

GitHub runs with scaled windows (80 per 4 s and 500 per 240 s instead of per minute and per
hour), configured identically in the integration's `rate_limits` (as a GitHub Enterprise
Server admin would) and in the fake; Teams runs at Microsoft's real per-thread limits across
ten channels.
"""

from __future__ import annotations

import collections
import time

from channels.github.outbound import marked_delivery_id
from tests.fakes.github_api import FakeGitHub
from tests.fakes.teams_api import FakeTeams
from tests.workers.channel_support import (
    GITHUB_TOKEN,
    HELLO_WORLD,
    UNTHROTTLED_API,
    delivery_rows,
    github_project,
    ideal_seconds,
    max_in_any_window,
    open_github_issue,
    open_teams_threads,
    post_replies,
    teams_project,
)
from tests.workers.support import Stack, wait_for

BACKLOG = 500
# GitHub's 80 per minute and 500 per hour, fifteen times faster.
GITHUB_WINDOWS = ((4.0, 80), (240.0, 500))
TEAMS_CHANNELS = 10


def start_draining(stack: Stack) -> float:
    stack.start("worker-a", "worker", "--threads", "16")
    stack.start("worker-b", "worker", "--threads", "16")
    stack.start("scheduler", "scheduler")
    return time.monotonic()


def test_a_500_reply_github_backlog_drains_at_the_configured_limits_without_a_secondary_rate_limit(
    stack: Stack, postgres_url: str
) -> None:
    stack.env.update(UNTHROTTLED_API)
    with FakeGitHub(token=GITHUB_TOKEN, content_limits=GITHUB_WINDOWS) as github:
        stack.start_web()
        ctx = github_project(stack, github, rate_limits=[{"period_seconds": p, "max": n} for p, n in GITHUB_WINDOWS])
        stack.start("ingest", "worker", "--threads", "2")
        ticket = open_github_issue(stack, ctx)
        stack.kill("ingest")  # the backlog builds up with no worker running
        post_replies(ctx, [(ticket["id"], f"Reply {n}") for n in range(BACKLOG)])

        started = start_draining(stack)
        try:
            wait_for(lambda: len(github.content_requests) >= BACKLOG, timeout=90)
        except AssertionError:
            statuses = collections.Counter((r["status"], r["last_error_code"]) for r in delivery_rows(postgres_url))
            raise AssertionError(f"{len(github.content_requests)} posted, {github.secondary_rate_limited} refused, "
                                 f"deliveries {dict(statuses)}") from None
        drained = time.monotonic() - started
        time.sleep(1.0)  # nothing more arrives

        arrivals = github.content_requests
        markers = collections.Counter(marked_delivery_id(c["body"]) for c in github.comments_on(HELLO_WORLD, 1))
        rows = delivery_rows(postgres_url)
        assert github.secondary_rate_limited == 0
        assert len(arrivals) == BACKLOG and set(markers.values()) == {1}
        assert set(markers) == {str(row["id"]) for row in rows}
        wait_for(lambda: {row["status"] for row in delivery_rows(postgres_url)} == {"sent"}, timeout=10)
        for period, limit in GITHUB_WINDOWS:
            assert max_in_any_window(arrivals, period) <= limit
        spread = max(arrivals) - min(arrivals)
        ideal = ideal_seconds(GITHUB_WINDOWS, BACKLOG)
        print(f"\ngithub backlog: {BACKLOG} replies drained in {drained:.1f} s after the workers started; "
              f"first to last post {spread:.2f} s, the windows allow {ideal:.2f} s: {ideal / spread:.0%} of the "
              f"allowed rate; {github.secondary_rate_limited} secondary rate limits")
        assert ideal / spread >= 0.9


def test_a_500_reply_teams_backlog_across_ten_channels_drains_without_a_429(stack: Stack, postgres_url: str) -> None:
    stack.env.update(UNTHROTTLED_API)
    with FakeTeams() as teams:
        stack.start_web()
        ctx = teams_project(stack, teams)
        stack.start("ingest", "worker", "--threads", "2")
        tickets = open_teams_threads(stack, ctx, teams, TEAMS_CHANNELS)
        stack.kill("ingest")
        per_channel = BACKLOG // TEAMS_CHANNELS
        post_replies(ctx, [(t["id"], f"Reply {n} on {t['ticket_number']}") for n in range(per_channel) for t in tickets])

        started = start_draining(stack)
        wait_for(lambda: len(teams.activities) >= BACKLOG, timeout=90)
        drained = time.monotonic() - started
        time.sleep(1.0)

        posted = collections.Counter(a.delivery_id for a in teams.activities)
        threads = collections.Counter(a.conversation_id.split(";")[0] for a in teams.activities)
        rows = delivery_rows(postgres_url)
        print(f"\nteams backlog: {BACKLOG} replies in {TEAMS_CHANNELS} channels drained in {drained:.1f} s "
              f"after the workers started; {teams.rate_limited} 429s")
        assert teams.rate_limited == 0
        assert len(teams.activities) == BACKLOG and set(posted.values()) == {1}
        assert set(posted) == {str(row["id"]) for row in rows}
        assert set(threads.values()) == {per_channel} and len(threads) == TEAMS_CHANNELS
        wait_for(lambda: {row["status"] for row in delivery_rows(postgres_url)} == {"sent"}, timeout=10)
