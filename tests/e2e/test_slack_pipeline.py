"""Slack end to end in one process: sign, POST, run the worker, assert rows and what Slack got.

The worker is Dramatiq's real Worker on the in-process StubBroker (the embedded mode); the
multi-process Redis runs are in tests/workers/test_redis_workers.py.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from api.app import create_app
from channels.slack import SlackSigner
from tests.e2e.support import drain, wait_for
from tests.fakes.slack_api import FakeSlack

FIXTURES = Path(__file__).resolve().parent.parent / "slack" / "fixtures"
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
CHANNEL = "C06NRA6JLER"


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def slack_project(client: Any, tenant: Any, fake_slack: FakeSlack) -> Any:
    fake_slack.add_user("U061F7AUR", real_name="Customer Carla", email="carla@customer.test")
    fake_slack.add_user("U0123ABC", real_name="Customer Carla", email="carla@customer.test")
    response = client.put(
        tenant.url("integrations/slack"),
        json={"bot_token": fake_slack.token, "signing_secret": SECRET, "channel_ids": [CHANNEL],
              "api_base_url": fake_slack.api_url},
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
    assert "bot_token" not in json.dumps(response.json()["settings"])
    return tenant


def post_event(client: Any, tenant: Any, body: bytes) -> Any:
    headers = SlackSigner(SECRET).sign(body)
    return client.post(f"/webhooks/slack/{tenant.project_id}/events", content=body,
                       headers={**headers, "Content-Type": "application/json"})


def channel_message(text: str, ts: str, event_id: str, *, user: str = "U061F7AUR", thread_ts: str | None = None) -> bytes:
    event: dict[str, Any] = {"type": "message", "channel": CHANNEL, "user": user, "text": text, "ts": ts,
                             "channel_type": "channel"}
    if thread_ts:
        event["thread_ts"] = thread_ts
    return json.dumps({"type": "event_callback", "team_id": "T00FAKE00AA", "event_id": event_id,
                       "event_time": int(float(ts)), "event": event}).encode()


def test_a_signed_channel_message_becomes_a_ticket_and_a_reply_is_posted_in_its_thread(
    client: Any, slack_project: Any, fake_slack: FakeSlack, worker: Any
) -> None:
    body = (FIXTURES / "message__channel_plain_text.json").read_bytes()
    assert post_event(client, slack_project, body).json() == {"ok": True, "duplicate": False}
    drain(worker)
    listed = client.get(slack_project.url("tickets/?channel_source=slack"), headers=slack_project.headers).json()
    assert listed["count"] == 1
    ticket = listed["results"][0]
    assert ticket["channel_detail"] == "slack_channel_message"
    assert ticket["slack_channel_id"] == CHANNEL and ticket["unread_team_count"] == 1

    reply = client.post(slack_project.url(f"tickets/{ticket['id']}/reply"), json={"message": "On it!"},
                        headers=slack_project.headers)
    assert reply.status_code == 201 and reply.json()["delivery_status"] == "pending"
    drain(worker)
    assert len(fake_slack.posts) == 1
    post = fake_slack.posts[0]
    assert post["channel"] == CHANNEL and post["thread_ts"] == ticket["slack_thread_ts"] and post["text"] == "On it!"
    messages = client.get(slack_project.url(f"tickets/{ticket['id']}/messages"), headers=slack_project.headers).json()
    assert [m["delivery_status"] for m in messages["results"]] == [None, "sent"]


def test_replayed_and_retried_events_create_one_message_each(
    client: Any, slack_project: Any, fake_slack: FakeSlack, worker: Any
) -> None:
    root = channel_message("Printer on fire", "1700000000.000100", "Ev01")
    reply = channel_message("Still burning", "1700000001.000200", "Ev02", thread_ts="1700000000.000100")
    for _ in range(5):
        assert post_event(client, slack_project, root).status_code == 200
        assert post_event(client, slack_project, reply).status_code == 200
    drain(worker)
    tickets = client.get(slack_project.url("tickets"), headers=slack_project.headers).json()["results"]
    assert len(tickets) == 1 and tickets[0]["message_count"] == 2


def test_a_bad_signature_is_refused_and_stores_nothing(client: Any, slack_project: Any, worker: Any) -> None:
    body = channel_message("hi", "1700000000.000100", "Ev03")
    response = client.post(f"/webhooks/slack/{slack_project.project_id}/events", content=body,
                           headers={"X-Slack-Request-Timestamp": str(int(time.time())), "X-Slack-Signature": "v0=bad"})
    assert response.status_code == 401
    events = client.get(slack_project.url("inbound_events"), headers=slack_project.headers).json()["results"]
    assert events == []


def test_url_verification_is_answered_with_the_challenge(client: Any, slack_project: Any) -> None:
    body = (FIXTURES / "url_verification__challenge.json").read_bytes()
    response = post_event(client, slack_project, body)
    assert response.status_code == 200 and response.json()["challenge"] == json.loads(body)["challenge"]


def test_an_oversized_webhook_is_refused_with_413_and_stores_nothing(client: Any, slack_project: Any) -> None:
    message = json.loads(channel_message("hi", "1700000000.000100", "Ev04"))
    message["event"]["text"] = "x" * 1_000_001
    response = post_event(client, slack_project, json.dumps(message).encode())
    assert response.status_code == 413
    assert response.json()["code"] == "too_large" and "1000000 bytes" in response.json()["detail"]
    events = client.get(slack_project.url("inbound_events"), headers=slack_project.headers).json()["results"]
    assert events == []


def test_the_first_of_repeated_signature_headers_counts(client: Any, slack_project: Any) -> None:
    body = channel_message("hi", "1700000000.000100", "Ev05")
    signed = SlackSigner(SECRET).sign(body)
    good = [(name, value) for name, value in signed.items()]
    first_good = client.post(f"/webhooks/slack/{slack_project.project_id}/events", content=body,
                             headers=[*good, ("X-Slack-Signature", "v0=bad")])
    assert first_good.status_code == 200
    first_bad = client.post(f"/webhooks/slack/{slack_project.project_id}/events", content=body,
                            headers=[("X-Slack-Signature", "v0=bad"), *good])
    assert first_bad.status_code == 401


def test_webhooks_answered_ahead_of_fastapi_are_still_documented_and_answer_alike(
    client: Any, slack_project: Any
) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/webhooks/slack/{project_id}/events", "/webhooks/github/{project_id}",
                 "/webhooks/teams/{project_id}/messages"):
        assert "post" in paths[path]
    body = channel_message("hi", "1700000000.000100", "Ev06")
    # Ten digits are left to FastAPI's route; nine are answered directly: the same 404.
    by_fastapi = client.post("/webhooks/slack/1234567890/events", content=body, headers=SlackSigner(SECRET).sign(body))
    direct = client.post("/webhooks/slack/123456789/events", content=body, headers=SlackSigner(SECRET).sign(body))
    assert by_fastapi.status_code == direct.status_code == 404
    assert by_fastapi.json() == direct.json() == {"type": "invalid_request", "code": "not_found",
                                                  "detail": "Not found.", "attr": None}
    assert client.post("/webhooks/slack/abc/events", content=body).status_code == 400
    assert client.get(f"/webhooks/slack/{slack_project.project_id}/events").status_code == 405


def test_a_body_streamed_past_the_limit_is_refused_before_it_is_read_whole() -> None:
    app = create_app()
    chunks = [{"type": "http.request", "body": b"x" * 600_000, "more_body": True} for _ in range(5)]
    received: list[int] = []
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        received.append(1)
        return chunks[len(received) - 1]

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    def scope(headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
        return {"type": "http", "method": "POST", "path": "/webhooks/slack/1/events", "headers": headers,
                "query_string": b""}

    asyncio.run(app(scope([]), receive, send))
    assert len(received) == 2 and sent[0]["status"] == 413
    assert json.loads(sent[1]["body"])["code"] == "too_large"
    received.clear()
    sent.clear()
    asyncio.run(app(scope([(b"content-length", b"1000001")]), receive, send))
    assert received == [] and sent[0]["status"] == 413


def test_a_poison_event_is_marked_failed_and_does_not_block_the_events_behind_it(
    client: Any, slack_project: Any, worker: Any
) -> None:
    poison = json.dumps({"type": "event_callback", "team_id": "T00FAKE00AA", "event_id": "EvPoison",
                         "event": {"type": "some_future_event_type"}}).encode()
    assert post_event(client, slack_project, poison).status_code == 200
    assert post_event(client, slack_project, channel_message("after the poison", "1700000005.000100", "Ev05")).status_code == 200
    drain(worker)
    events = client.get(slack_project.url("inbound_events"), headers=slack_project.headers).json()["results"]
    by_id = {e["event_id"]: e for e in events}
    assert by_id["EvPoison"]["status"] == "failed" and "Unsupported" in by_id["EvPoison"]["error"]
    assert by_id["Ev05"]["status"] == "processed"
    replay = client.post(slack_project.url(f"inbound_events/{by_id['EvPoison']['id']}/replay"), headers=slack_project.headers)
    assert replay.status_code == 200 and replay.json()["status"] == "pending"


def test_a_permanent_error_fails_the_delivery_loudly_and_retry_really_resends(
    client: Any, slack_project: Any, fake_slack: FakeSlack, worker: Any
) -> None:
    post_event(client, slack_project, channel_message("help", "1700000000.000100", "Ev10"))
    drain(worker)
    ticket = client.get(slack_project.url("tickets"), headers=slack_project.headers).json()["results"][0]
    client.patch(slack_project.url(f"tickets/{ticket['id']}"), json={"status": "pending"}, headers=slack_project.headers)
    fake_slack.fail_next_with_error("channel_not_found", method="chat.postMessage")
    sent = client.post(slack_project.url(f"tickets/{ticket['id']}/reply"), json={"message": "Answer"},
                       headers=slack_project.headers).json()
    drain(worker)
    messages = client.get(slack_project.url(f"tickets/{ticket['id']}/messages"), headers=slack_project.headers).json()["results"]
    reply = next(m for m in messages if m["id"] == sent["id"])
    assert reply["delivery_status"] == "failed" and "channel_not_found" in reply["delivery_error"]
    note = messages[-1]
    assert note["author_type"] == "system" and note["is_private"] and "failed" in note["content"]
    assert client.get(slack_project.url(f"tickets/{ticket['id']}"), headers=slack_project.headers).json()["status"] == "open"
    assert fake_slack.posts == []

    retried = client.post(slack_project.url(f"tickets/{ticket['id']}/messages/{sent['id']}/retry"), headers=slack_project.headers)
    assert retried.status_code == 202 and retried.json()["delivery_status"] == "pending"
    drain(worker)
    assert [p["text"] for p in fake_slack.posts] == ["Answer"]


def test_rate_limits_and_server_errors_are_retried_until_delivered_once(
    client: Any, slack_project: Any, fake_slack: FakeSlack, worker: Any
) -> None:
    post_event(client, slack_project, channel_message("help", "1700000000.000100", "Ev20"))
    drain(worker)
    ticket = client.get(slack_project.url("tickets"), headers=slack_project.headers).json()["results"][0]
    fake_slack.fail_next_with_rate_limit(retry_after=1, method="chat.postMessage")
    fake_slack.fail_next_with_server_error(method="chat.postMessage")
    client.post(slack_project.url(f"tickets/{ticket['id']}/reply"), json={"message": "Hang on"}, headers=slack_project.headers)
    wait_for(lambda: fake_slack.posts, timeout=15)
    time.sleep(0.3)
    assert [p["text"] for p in fake_slack.posts] == ["Hang on"]
    assert len(fake_slack.calls_of("chat.postMessage")) == 3
