"""GitHub and Teams on the worker-process stack: integrations pointed at the fakes, tickets
opened through the real webhooks, replies in bulk, and the deliveries read back from
PostgreSQL."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text

from channels.github import sign
from tests.fakes.github_api import FakeGitHub
from tests.fakes.teams_api import APP_ID, APP_PASSWORD, METADATA_PATH, TENANT_ID, FakeTeams
from tests.workers.support import Stack, bootstrap, put_integration, tickets, wait_for

FIXTURES = Path(__file__).resolve().parents[1]
GITHUB_SECRET = "It's a Secret to Everybody"
GITHUB_TOKEN = "ghp_fake_token"
HELLO_WORLD = "Codertocat/Hello-World"
# The customer's message in a Teams channel that @mentions the bot (Microsoft's sample).
TEAMS_MENTION = FIXTURES / "teams" / "fixtures" / "message__channel_mention_bot.json"
# No limits of ours in the way of a test that sends hundreds of replies through the API.
UNTHROTTLED_API = {
    "TICKETWIRE_SEND_RATE_PER_MINUTE": "1000000", "TICKETWIRE_SEND_RATE_PER_HOUR": "1000000",
    "TICKETWIRE_RATE_LIMIT_PER_MINUTE": "1000000", "TICKETWIRE_RATE_LIMIT_PER_HOUR": "1000000",
}


def github_project(stack: Stack, github: FakeGitHub, **settings: Any) -> dict[str, Any]:
    ctx = bootstrap(stack)
    put_integration(ctx, "github", {"token": GITHUB_TOKEN, "webhook_secret": GITHUB_SECRET,
                                    "api_base_url": github.url, **settings})
    return ctx


def open_github_issue(stack: Stack, ctx: dict[str, Any]) -> dict[str, Any]:
    """`issues.opened` through the webhook; the ticket once a worker ingested it."""
    body = (FIXTURES / "github" / "fixtures" / "issues__opened.json").read_bytes()
    r = httpx.post(f"{stack.url}/webhooks/github/{ctx['project_id']}", content=body, headers={
        "X-GitHub-Event": "issues", "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        "X-Hub-Signature-256": sign(body, GITHUB_SECRET), "Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    [ticket] = wait_for(lambda: tickets(ctx))
    return ticket


def teams_project(stack: Stack, teams: FakeTeams) -> dict[str, Any]:
    ctx = bootstrap(stack)
    put_integration(ctx, "teams", {
        "app_id": APP_ID, "app_password": APP_PASSWORD, "tenant_id": TENANT_ID,
        "openid_metadata_url": f"{teams.url}{METADATA_PATH}", "token_url": f"{teams.url}/botframework.com/oauth2/v2.0/token",
        "graph_base_url": f"{teams.url}/v1.0"})
    return ctx


def open_teams_threads(stack: Stack, ctx: dict[str, Any], teams: FakeTeams, channels: int) -> list[dict[str, Any]]:
    """One @mention of the bot in each of `channels` Teams channels (each its own thread, so its
    own rate-limit bucket); the tickets once a worker ingested them."""
    sample = json.loads(TEAMS_MENTION.read_bytes())
    for n in range(channels):
        activity = copy.deepcopy(sample)
        channel, root = f"19:support{n:02d}@thread.skype", str(1_571_540_169_848 + n)
        activity.update(id=root, serviceUrl=teams.service_url)
        activity["conversation"]["id"] = f"{channel};messageid={root}"
        activity["channelData"].update(teamsChannelId=channel, channel={"id": channel})
        body = json.dumps(activity).encode()
        r = httpx.post(f"{stack.url}/webhooks/teams/{ctx['project_id']}/messages", content=body,
                       headers={**teams.issuer.sign(body, audience=APP_ID), "Content-Type": "application/json"})
        assert r.status_code == 200, r.text
    return wait_for(lambda: len(found := tickets(ctx)) == channels and found, timeout=60)


def post_replies(ctx: dict[str, Any], jobs: Iterable[tuple[str, str]]) -> None:
    """POST …/reply for each (ticket id, text), a few at a time."""
    with httpx.Client(timeout=30) as client, ThreadPoolExecutor(4) as pool:
        for response in pool.map(lambda job: client.post(f"{ctx['base']}/tickets/{job[0]}/reply",
                                                         headers=ctx["headers"], json={"message": job[1]}), jobs):
            assert response.status_code == 201, response.text


def delivery_rows(database_url: str) -> list[dict[str, Any]]:
    """Every delivery as PostgreSQL has it (the API lists at most 200 messages a page)."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT id, status, attempts, last_error_code FROM deliveries"))
            return [dict(row._mapping) for row in rows]
    finally:
        engine.dispose()


def ideal_seconds(windows: Iterable[tuple[float, int]], count: int) -> float:
    """The least time from the first to the last of `count` requests the windows allow."""
    limits = list(windows)
    times: list[float] = []
    for _ in range(count):
        at = times[-1] if times else 0.0
        for period, limit in limits:
            if len(times) >= limit:
                at = max(at, times[-limit] + period)
        times.append(at)
    return times[-1]


def max_in_any_window(arrivals: Iterable[float], period: float) -> int:
    """The most requests the fake saw in any `period` seconds (a sliding window)."""
    ordered = sorted(arrivals)
    most, start = 0, 0
    for end, at in enumerate(ordered):
        while ordered[start] <= at - period:
            start += 1
        most = max(most, end - start + 1)
    return most
