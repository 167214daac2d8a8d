"""kill -9 mid-delivery for GitHub and Teams: real `ticketwire worker` processes on Redis and
PostgreSQL, the fake holding the request open so the kill lands while the post is in flight.

GitHub can be asked what was posted (the hidden marker in the comment), so the reply ends up
delivered exactly once. Teams cannot: without the marker our cache keeps after a successful
post, the reply fails visibly for the team to check, and is never posted twice on its own.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from channels.github.outbound import marked_delivery_id
from tests.fakes.github_api import FakeGitHub
from tests.fakes.teams_api import FakeTeams
from tests.workers.channel_support import (
    GITHUB_TOKEN,
    HELLO_WORLD,
    delivery_rows,
    github_project,
    open_github_issue,
    open_teams_threads,
    teams_project,
)
from tests.workers.support import Stack, messages, reply, wait_for

COMMENT_POSTS = r"/issues/1/comments$"


def the_reply(ctx: dict[str, Any], ticket_id: str, message_id: str) -> dict[str, Any]:
    return next(m for m in messages(ctx, ticket_id) if m["id"] == message_id)


def test_a_worker_killed_mid_github_post_leaves_the_comment_posted_exactly_once(stack: Stack) -> None:
    with FakeGitHub(token=GITHUB_TOKEN) as github:
        stack.start_web()
        ctx = github_project(stack, github)
        stack.start("worker", "worker", "--threads", "2")
        stack.start("scheduler", "scheduler")
        ticket = open_github_issue(stack, ctx)
        # GitHub stores the comment, then answers late: the worker dies before it hears back.
        github.slow_down_next_comment(30.0)
        sent = reply(ctx, ticket["id"], "Fixed in 1.2.3.")
        wait_for(lambda: github.comments_on(HELLO_WORLD, 1), timeout=20)
        stack.kill("worker")
        stack.start("worker2", "worker", "--threads", "2")

        # The lease lapses, the sweeper hands the delivery to the new worker, which looks for
        # the marker before posting again and finds it.
        wait_for(lambda: the_reply(ctx, ticket["id"], sent["id"])["delivery_status"] == "sent", timeout=40)
        time.sleep(1)
        [comment] = github.comments_on(HELLO_WORLD, 1)
        assert marked_delivery_id(comment["body"]) is not None
        assert [c.method for c in github.calls_to(COMMENT_POSTS) if c.method == "POST"] == ["POST"]
        assert github.secondary_rate_limited == 0


def test_a_worker_killed_mid_teams_post_fails_the_reply_visibly_and_never_posts_it_twice(
    stack: Stack, postgres_url: str
) -> None:
    with FakeTeams() as teams:
        stack.start_web()
        ctx = teams_project(stack, teams)
        stack.start("worker", "worker", "--threads", "2")
        stack.start("scheduler", "scheduler")
        [ticket] = open_teams_threads(stack, ctx, teams, 1)
        # The Bot Connector takes the activity, then answers late: the worker dies meanwhile.
        teams.hold_next_post(30.0)
        sent = reply(ctx, ticket["id"], "We are on it.")
        wait_for(lambda: teams.activities, timeout=20)
        stack.kill("worker")
        stack.start("worker2", "worker", "--threads", "2")

        failed = wait_for(lambda: (m := the_reply(ctx, ticket["id"], sent["id"]))["delivery_status"] == "failed" and m,
                          timeout=40)
        time.sleep(1)
        assert "outcome_unknown" in failed["delivery_error"] and "Retry" in failed["delivery_error"]
        [row] = delivery_rows(postgres_url)
        assert (row["status"], row["last_error_code"]) == ("failed", "outcome_unknown")
        # Posted once, carrying its delivery id in channelData.
        assert [a.delivery_id for a in teams.activities] == [str(row["id"])]
        assert len(teams.calls_to(r"/v3/conversations/")) == 1
        notes = [m for m in messages(ctx, ticket["id"]) if m["author_type"] == "system"]
        assert notes and "failed" in notes[-1]["content"]

        # The team looks, does not find the reply, and presses Retry: it really re-sends.
        r = httpx.post(f"{ctx['base']}/tickets/{ticket['id']}/messages/{sent['id']}/retry", headers=ctx["headers"])
        assert r.status_code in (200, 201, 202), r.text
        wait_for(lambda: the_reply(ctx, ticket["id"], sent["id"])["delivery_status"] == "sent", timeout=30)
        assert len(teams.activities) == 2 and teams.rate_limited == 0

