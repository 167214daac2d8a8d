"""Runs on the workers: execution, events and the SSE stream, cancel, the queue draining,
failures and the sweeper."""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import timedelta
from typing import Any

from core.clock import FrozenClock, now, use_clock
from core.db import session_scope
from services import conversations
from services.agent.base import AgentRuntimeError
from services.agent.offline import OfflineRuntime
from tests.conversations.conftest import ScriptedRuntime, conv_url


def open_turn(client: Any, tenant: Any, cid: uuid.UUID, content: str) -> dict[str, Any]:
    response = client.post(conv_url(tenant, cid, "open"), json={"content": content}, headers=tenant.headers)
    assert response.status_code == 200, response.text
    return response.json()


def events_of(client: Any, tenant: Any, cid: uuid.UUID, run_id: str, after: int = 0) -> list[dict[str, Any]]:
    response = client.get(conv_url(tenant, cid, f"runs/{run_id}/events?after={after}"), headers=tenant.headers)
    assert response.status_code == 200
    return response.json()["events"]


def parse_sse(text: str) -> list[dict[str, Any]]:
    events = []
    for block in text.split("\n\n"):
        fields: dict[str, Any] = {}
        for line in block.splitlines():
            name, _, value = line.partition(": ")
            if name in ("id", "event", "data"):
                fields[name] = value
        if "event" in fields:
            events.append({"id": int(fields["id"]), "event": fields["event"], "data": json.loads(fields["data"])})
    return events


def test_a_run_answers_from_the_help_center_and_streams_its_events(client, tenant, help_center, dispatched):
    cid = uuid.uuid4()
    handle = open_turn(client, tenant, cid, "How do I reset my password?")
    assert conversations.execute_run(handle["run_id"], runtime=OfflineRuntime()) == "completed"

    conversation = client.get(conv_url(tenant, cid), headers=tenant.headers).json()
    assert conversation["status"] == "idle" and conversation["latest_run"]["status"] == "completed"
    user, answer = conversation["messages"]
    assert user["role"] == "user" and answer["role"] == "assistant" and answer["status"] == "complete"
    assert "Forgot password" in answer["content"] and "Resetting your password" in answer["content"]
    assert answer["citations"][0]["title"] == "Resetting your password"
    assert answer["tool_calls"][0]["name"] == "search_help_center"

    events = events_of(client, tenant, cid, handle["run_id"])
    kinds = [e["event"] for e in events]
    assert kinds[0] == "status" and events[0]["data"] == {"status": "in_progress"}
    assert kinds[1:3] == ["tool_call", "tool_result"]
    assert "token" in kinds and kinds[-2:] == ["status", "end"]
    assert [e["id"] for e in events] == list(range(1, len(events) + 1))
    assert "".join(e["data"]["delta"] for e in events if e["event"] == "token") == answer["content"]
    assert events[-1]["data"]["status"] == "completed" and events[-1]["data"]["message_id"] == answer["id"]


def test_the_sse_stream_replays_a_finished_run_and_resumes_after_last_event_id(client, tenant, dispatched):
    cid = uuid.uuid4()
    handle = open_turn(client, tenant, cid, "hi")
    conversations.execute_run(handle["run_id"], runtime=ScriptedRuntime(["Hello", " there", "!"]))
    url = conv_url(tenant, cid, f"runs/{handle['run_id']}/stream")
    full = client.get(url, headers=tenant.headers)
    assert full.status_code == 200 and full.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(full.text)
    assert events[0]["event"] == "status" and events[-1]["event"] == "end"
    resumed = parse_sse(client.get(url, headers={**tenant.headers, "Last-Event-ID": "2"}).text)
    assert [e["id"] for e in resumed] == [e["id"] for e in events if e["id"] > 2]


def test_the_sse_stream_follows_a_run_live(client, tenant, dispatched):
    cid = uuid.uuid4()
    handle = open_turn(client, tenant, cid, "tell me slowly")
    runtime = ScriptedRuntime([f"w{i} " for i in range(6)], delay=0.05)
    worker = threading.Thread(target=conversations.execute_run, args=(handle["run_id"],),
                              kwargs={"runtime": runtime})
    url = conv_url(tenant, cid, f"runs/{handle['run_id']}/stream")
    with client.stream("GET", url, headers=tenant.headers) as stream:
        worker.start()
        text = "".join(stream.iter_text())
    worker.join(5)
    events = parse_sse(text)
    assert events[-1]["event"] == "end" and events[-1]["data"]["status"] == "completed"
    assert "".join(e["data"]["delta"] for e in events if e["event"] == "token") == "".join(runtime.tokens)


def test_cancel_during_a_run_stops_it_within_a_second(client, tenant, dispatched):
    cid = uuid.uuid4()
    handle = open_turn(client, tenant, cid, "write a long answer")
    runtime = ScriptedRuntime([f"token{i} " for i in range(400)], delay=0.02)
    outcome: dict[str, Any] = {}
    worker = threading.Thread(
        target=lambda: outcome.update(status=conversations.execute_run(handle["run_id"], runtime=runtime)))
    worker.start()
    assert runtime.started.wait(5)
    time.sleep(0.2)
    response = client.patch(conv_url(tenant, cid, "cancel"), headers=tenant.headers)
    asked = time.monotonic()
    assert response.status_code == 204
    assert client.get(conv_url(tenant, cid), headers=tenant.headers).json()["status"] in ("canceling", "idle")
    assert client.patch(conv_url(tenant, cid, "cancel"), headers=tenant.headers).status_code in (204, 422)
    worker.join(5)
    assert time.monotonic() - asked < 1.0
    assert outcome["status"] == "cancelled"

    conversation = client.get(conv_url(tenant, cid), headers=tenant.headers).json()
    assert conversation["status"] == "idle" and conversation["latest_run"]["status"] == "cancelled"
    answer = conversation["messages"][-1]
    assert answer["status"] == "cancelled" and answer["content"].startswith("token0 ")
    assert len(answer["content"].split()) < 400
    assert events_of(client, tenant, cid, handle["run_id"])[-1]["data"]["status"] == "cancelled"
    assert client.patch(conv_url(tenant, cid, "cancel"), headers=tenant.headers).status_code == 422


def test_the_queue_drains_in_order_one_run_after_another(client, tenant, dispatched):
    cid = uuid.uuid4()
    runtime = ScriptedRuntime(["ok"])
    first = open_turn(client, tenant, cid, "first")
    assert open_turn(client, tenant, cid, "second")["queued"] is True
    assert open_turn(client, tenant, cid, "third")["queued"] is True

    conversations.execute_run(first["run_id"], runtime=runtime)
    assert len(dispatched) == 2 and dispatched[1][0] == "run"
    queue = client.get(conv_url(tenant, cid, "queue"), headers=tenant.headers).json()
    assert [m["content"] for m in queue["messages"]] == ["third"]
    assert client.get(conv_url(tenant, cid), headers=tenant.headers).json()["status"] == "in_progress"

    conversations.execute_run(dispatched[1][1], runtime=runtime)
    conversations.execute_run(dispatched[2][1], runtime=runtime)
    assert runtime.questions == ["first", "second", "third"]
    # Each turn sees the turns before it.
    assert [(t.role, t.content) for t in runtime.histories[2]] == [
        ("user", "first"), ("assistant", "ok"), ("user", "second"), ("assistant", "ok")]
    conversation = client.get(conv_url(tenant, cid), headers=tenant.headers).json()
    assert conversation["status"] == "idle" and conversation["queue"]["messages"] == []
    assert [m["content"] for m in conversation["messages"]] == ["first", "ok", "second", "ok", "third", "ok"]
    assert len(dispatched) == 3


def test_a_runtime_error_fails_the_run_and_the_next_message_still_runs(client, tenant, dispatched):
    cid = uuid.uuid4()
    first = open_turn(client, tenant, cid, "first")
    open_turn(client, tenant, cid, "second")
    broken = ScriptedRuntime(["partial "], fail_with=AgentRuntimeError("model server answered HTTP 500: boom"))
    assert conversations.execute_run(first["run_id"], runtime=broken) == "failed"
    run = client.get(conv_url(tenant, cid, f"runs/{first['run_id']}"), headers=tenant.headers).json()
    assert run["status"] == "failed" and "HTTP 500" in run["error"]
    end = events_of(client, tenant, cid, first["run_id"])[-1]
    assert end["event"] == "end" and end["data"]["status"] == "failed" and "HTTP 500" in end["data"]["error"]
    assert dispatched[-1][0] == "run" and dispatched[-1][1] != first["run_id"]


def test_a_run_is_executed_once_even_if_dispatched_twice(client, tenant, dispatched):
    cid = uuid.uuid4()
    handle = open_turn(client, tenant, cid, "once")
    runtime = ScriptedRuntime(["done"])
    assert conversations.execute_run(handle["run_id"], runtime=runtime) == "completed"
    assert conversations.execute_run(handle["run_id"], runtime=runtime) is None
    assert runtime.questions == ["once"]


def test_the_sweeper_fails_a_run_whose_worker_died_and_starts_the_next(client, tenant, dispatched):
    cid = uuid.uuid4()
    handle = open_turn(client, tenant, cid, "first")
    open_turn(client, tenant, cid, "second")
    # A worker claims the run and dies before writing anything else.
    assert conversations._claim(uuid.UUID(handle["run_id"]), "offline") is not None
    with session_scope() as session:
        assert conversations.fail_stale_runs(session=session) == []  # heartbeat is fresh
    clock = FrozenClock(now() + timedelta(minutes=2))
    previous = use_clock(clock)
    try:
        with session_scope() as session:
            failed = conversations.fail_stale_runs(session=session, older_than=timedelta(seconds=60))
    finally:
        use_clock(previous)
    assert failed == [uuid.UUID(handle["run_id"])]
    run = client.get(conv_url(tenant, cid, f"runs/{handle['run_id']}"), headers=tenant.headers).json()
    assert run["status"] == "failed" and "stopped" in run["error"]
    conversation = client.get(conv_url(tenant, cid), headers=tenant.headers).json()
    assert conversation["status"] == "in_progress" and conversation["latest_run"]["id"] != handle["run_id"]
    assert dispatched[-1] == ("run", conversation["latest_run"]["id"])


def test_unclaimed_runs_are_sent_again_and_unused_warm_runs_released(client, tenant, dispatched):
    queued = open_turn(client, tenant, uuid.uuid4(), "lost broker message")
    warm_cid = uuid.uuid4()
    warm = client.post(conv_url(tenant, warm_cid, "open"), headers=tenant.headers).json()
    previous = use_clock(FrozenClock(now() + timedelta(hours=1)))
    try:
        with session_scope() as session:
            assert conversations.redispatch_queued_runs(session=session) == [uuid.UUID(queued["run_id"])]
            conversations.fail_stale_runs(session=session)
    finally:
        use_clock(previous)
    assert dispatched[-1] == ("run", queued["run_id"])
    run = client.get(conv_url(tenant, warm_cid, f"runs/{warm['run_id']}"), headers=tenant.headers).json()
    assert run["status"] == "cancelled"
    # The next warm-up provisions a new one.
    assert client.post(conv_url(tenant, warm_cid, "open"), headers=tenant.headers).status_code == 200
