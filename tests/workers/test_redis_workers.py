"""The production shape: `ticketwire serve`, `worker` and `scheduler` as real processes on Redis
and PostgreSQL, with a fake Slack. Workers are killed with SIGKILL and Redis is stopped to show
that nothing is lost and nothing is sent twice."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest

from channels.slack import SlackSigner
from tests.fakes.slack_api import FakeSlack
from tests.workers.support import ROOT, Stack, put_integration, tickets, wait_for
from tests.workers.support import bootstrap as bootstrap_project

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
CHANNEL = "C06NRA6JLER"


def bootstrap(stack: Stack, fake: FakeSlack) -> dict[str, Any]:
    ctx = bootstrap_project(stack)
    put_integration(ctx, "slack", {
        "bot_token": fake.token, "signing_secret": SECRET, "channel_ids": [CHANNEL], "api_base_url": fake.api_url})
    return ctx


def event(n: int, *, thread: str | None = None) -> bytes:
    ev: dict[str, Any] = {"type": "message", "channel": CHANNEL, "user": "U061F7AUR", "text": f"message {n}",
                          "ts": f"17000000{n:02d}.000100", "channel_type": "channel"}
    if thread:
        ev["thread_ts"] = thread
    return json.dumps({"type": "event_callback", "team_id": "T00FAKE00AA", "event_id": f"Ev{n:04d}", "event": ev}).encode()


def post(stack: Stack, project_id: int, body: bytes, fake: FakeSlack | None = None) -> httpx.Response:
    if fake is not None:  # the customer's message also exists in Slack, as its thread root
        ev = json.loads(body)["event"]
        fake.add_message(ev["channel"], ev["text"], user=ev["user"], ts=ev["ts"])
    return httpx.post(f"{stack.url}/webhooks/slack/{project_id}/events", content=body,
                      headers={**SlackSigner(SECRET).sign(body), "Content-Type": "application/json"})


def test_a_worker_killed_mid_delivery_leaves_the_reply_delivered_exactly_once(stack: Stack) -> None:
    with FakeSlack() as fake:
        fake.add_user("U061F7AUR", real_name="Carla", email="carla@customer.test")
        stack.start_web()
        ctx = bootstrap(stack, fake)
        stack.start("worker", "worker", "--threads", "2")
        stack.start("scheduler", "scheduler")
        assert post(stack, ctx["project_id"], event(1), fake).status_code == 200
        ticket = wait_for(lambda: tickets(ctx))[0]
        # Slack stores the post, then answers late: the worker dies before it hears back.
        fake.fail_next_with_timeout(delay=4.0, method="chat.postMessage", after_processing=True)
        r = httpx.post(f"{ctx['base']}/tickets/{ticket['id']}/reply", headers=ctx["headers"], json={"message": "Fixed!"})
        assert r.status_code == 201
        wait_for(lambda: fake.posts, timeout=20)
        stack.kill("worker")
        stack.start("worker2", "worker", "--threads", "2")

        def delivered() -> bool:
            msgs = httpx.get(f"{ctx['base']}/tickets/{ticket['id']}/messages", headers=ctx["headers"]).json()["results"]
            return any(m["delivery_status"] == "sent" for m in msgs)

        try:
            wait_for(delivered, timeout=40)
        except AssertionError:
            msgs = httpx.get(f"{ctx['base']}/tickets/{ticket['id']}/messages", headers=ctx["headers"]).json()["results"]
            raise AssertionError(f"not delivered: {msgs} {[c.path for c in fake.calls]}") from None
        time.sleep(1)
        assert [p["text"] for p in fake.posts] == ["Fixed!"]


def test_with_redis_down_webhooks_and_replies_are_accepted_and_all_land_when_it_returns(
    stack: Stack, services: dict[str, Any]
) -> None:
    redis_server = services.get("redis_server")
    if redis_server is None:
        pytest.fail("this test needs the Redis server started by tests/services.py")
    with FakeSlack() as fake:
        fake.add_user("U061F7AUR", real_name="Carla", email="carla@customer.test")
        stack.start_web()
        ctx = bootstrap(stack, fake)
        stack.start("worker", "worker", "--threads", "2")
        stack.start("scheduler", "scheduler")
        assert post(stack, ctx["project_id"], event(1)).status_code == 200
        root = wait_for(lambda: tickets(ctx))[0]

        redis_server.stop()
        try:
            for n in range(2, 12):
                assert post(stack, ctx["project_id"], event(n)).status_code == 200
            for n in range(5):
                r = httpx.post(f"{ctx['base']}/tickets/{root['id']}/reply", headers=ctx["headers"],
                               json={"message": f"reply {n}"})
                assert r.status_code == 201, r.text
        finally:
            redis_server.restart()

        wait_for(lambda: len(tickets(ctx)) == 11, timeout=60)
        wait_for(lambda: len(fake.posts) >= 5, timeout=60)
        time.sleep(1.5)
        assert sorted(p["text"] for p in fake.posts) == [f"reply {n}" for n in range(5)]
        for n in range(1, 12):  # replayed again: nothing new
            post(stack, ctx["project_id"], event(n))
        time.sleep(1.5)
        assert len(tickets(ctx)) == 11


def test_workers_given_queues_consume_only_those(stack: Stack) -> None:
    """`ticketwire worker --queues`: a deployment can give ingest and deliveries their own
    processes (bench/RESULTS.md has the thread counts that suit each)."""
    with FakeSlack() as fake:
        fake.add_user("U061F7AUR", real_name="Carla", email="carla@customer.test")
        stack.start_web()
        ctx = bootstrap(stack, fake)
        stack.start("ingest", "worker", "--threads", "2", "--queues", "inbound,agent")
        assert post(stack, ctx["project_id"], event(1), fake).status_code == 200
        ticket = wait_for(lambda: tickets(ctx))[0]
        r = httpx.post(f"{ctx['base']}/tickets/{ticket['id']}/reply", headers=ctx["headers"], json={"message": "Fixed!"})
        assert r.status_code == 201
        time.sleep(1.5)
        assert fake.posts == []  # no worker consumes "outbound" yet
        stack.start("deliver", "worker", "--threads", "2", "--queues", "outbound,outbound_paced")
        wait_for(lambda: fake.posts, timeout=20)
        assert [p["text"] for p in fake.posts] == ["Fixed!"]


def test_a_worker_given_an_unknown_queue_refuses_to_start(stack: Stack) -> None:
    """A typo in --queues would otherwise start a worker that consumes nothing."""
    proc = subprocess.run([sys.executable, "-m", "cli", "worker", "--queues", "inbound,outbuond"], cwd=ROOT,
                          env=stack.env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "unknown queue outbuond" in proc.stderr and "outbound_paced" in proc.stderr
