"""The seed's conversation endpoints, status code by status code (SPEC.md "AI conversations")."""

from __future__ import annotations

import uuid
from typing import Any

from tests.conversations.conftest import conv_url
from tests.factories import make_key


def open_(client: Any, tenant: Any, cid: uuid.UUID, content: str | None = None, **extra: Any) -> Any:
    body = {"content": content, **extra} if content is not None or extra else None
    return client.post(conv_url(tenant, cid, "open"), json=body, headers=tenant.headers)


def test_opening_a_new_conversation_with_content_starts_a_run_for_that_turn(client, tenant, dispatched):
    cid = uuid.uuid4()
    response = open_(client, tenant, cid, "How do I reset my password?", trace_id="trace-1")
    assert response.status_code == 200, response.text
    handle = response.json()
    assert handle["just_created_run"] is True and handle["run_status"] == "queued"
    assert handle["trace_id"] == "trace-1" and handle["queued"] is False
    assert uuid.UUID(handle["task_id"]) and uuid.UUID(handle["run_id"])
    assert dispatched == [("run", handle["run_id"])]

    conversation = client.get(conv_url(tenant, cid), headers=tenant.headers).json()
    assert conversation["id"] == str(cid) and conversation["status"] == "in_progress"
    assert conversation["title"] == "How do I reset my password?"
    assert conversation["agent_runtime"] == "sandbox" and conversation["is_sandbox"] is True
    assert conversation["task"]["id"] == handle["task_id"]
    assert conversation["latest_run"]["id"] == handle["run_id"]
    assert [(m["role"], m["content"]) for m in conversation["messages"]] == [("user", "How do I reset my password?")]


def test_content_sent_while_a_run_is_in_progress_is_queued_not_run(client, tenant, dispatched):
    cid = uuid.uuid4()
    first = open_(client, tenant, cid, "first question").json()
    follow_up = open_(client, tenant, cid, "and a follow-up")
    assert follow_up.status_code == 200
    body = follow_up.json()
    assert body["just_created_run"] is False and body["run_id"] == first["run_id"] and body["queued"] is True
    queue = client.get(conv_url(tenant, cid, "queue"), headers=tenant.headers).json()
    assert queue["max_queue_messages"] == 2
    assert [m["content"] for m in queue["messages"]] == ["and a follow-up"]
    assert queue["messages"][0]["id"] == body["queue_id"]
    assert dispatched == [("run", first["run_id"])]


def test_a_warm_up_provisions_a_run_once_and_then_answers_204(client, tenant, dispatched):
    cid = uuid.uuid4()
    warm = open_(client, tenant, cid)
    assert warm.status_code == 200
    handle = warm.json()
    assert handle["just_created_run"] is True and handle["run_status"] == "queued"
    assert dispatched == []  # nothing to run until the first message

    again = open_(client, tenant, cid)
    assert again.status_code == 204 and again.content == b""

    turn = open_(client, tenant, cid, "hello there, my invoice is wrong").json()
    assert turn["run_id"] == handle["run_id"] and turn["just_created_run"] is False
    assert dispatched == [("run", handle["run_id"])]


def test_a_warm_up_while_a_run_is_in_progress_provisions_nothing(client, tenant, dispatched):
    cid = uuid.uuid4()
    open_(client, tenant, cid, "question")
    response = client.post(conv_url(tenant, cid, "open/"), headers=tenant.headers)
    assert response.status_code == 204


def test_opening_a_conversation_that_is_not_on_the_sandbox_runtime_is_400(client, tenant):
    created = client.post(tenant.url("/"), json={"agent_runtime": "langgraph", "title": "Legacy"},
                          headers=tenant.headers)
    assert created.status_code == 201, created.text
    cid = created.json()["id"]
    response = open_(client, tenant, uuid.UUID(cid), "hi")
    assert response.status_code == 400
    assert response.json()["code"] == "not_sandbox_runtime"
    # Record-only conversations still take client-generated messages.
    appended = client.post(conv_url(tenant, cid, "append_message"), json={"content": "Ticket #4 created"},
                           headers=tenant.headers)
    assert appended.status_code == 201


def test_another_users_conversation_is_403_on_every_endpoint(client, tenant, teammate, dispatched):
    cid = uuid.uuid4()
    run_id = open_(client, tenant, cid, "mine").json()["run_id"]
    h = teammate.headers
    calls = [
        client.post(conv_url(tenant, cid, "open"), json={"content": "hijack"}, headers=h),
        client.post(conv_url(tenant, cid, "open"), headers=h),
        client.patch(conv_url(tenant, cid, "cancel"), headers=h),
        client.get(conv_url(tenant, cid, "queue"), headers=h),
        client.post(conv_url(tenant, cid, "queue"), json={"content": "x"}, headers=h),
        client.post(conv_url(tenant, cid, "queue/clear"), headers=h),
        client.post(conv_url(tenant, cid, "append_message"), json={"content": "x"}, headers=h),
        client.get(conv_url(tenant, cid), headers=h),
        client.get(conv_url(tenant, cid, f"runs/{run_id}/events"), headers=h),
        client.get(conv_url(tenant, cid, f"runs/{run_id}/stream"), headers=h),
    ]
    assert [c.status_code for c in calls] == [403] * len(calls)
    assert client.get(tenant.url("/"), headers=h).json()["count"] == 0
    assert client.get(tenant.url("/"), headers=tenant.headers).json()["count"] == 1


def test_a_conversation_of_another_project_is_not_found(client, tenant, other_tenant, dispatched):
    cid = uuid.uuid4()
    open_(client, tenant, cid, "mine")
    assert client.post(conv_url(other_tenant, cid, "open"), json={"content": "x"},
                       headers=other_tenant.headers).status_code == 404
    assert client.get(conv_url(other_tenant, cid), headers=other_tenant.headers).status_code == 404


def test_cancel_with_nothing_in_progress_is_422(client, tenant, dispatched):
    cid = uuid.uuid4()
    assert client.patch(conv_url(tenant, cid, "cancel"), headers=tenant.headers).status_code == 404
    open_(client, tenant, cid)  # a warm run is not in progress
    response = client.patch(conv_url(tenant, cid, "cancel"), headers=tenant.headers)
    assert response.status_code == 422 and response.json()["code"] == "nothing_to_cancel"


def test_cancelling_a_run_no_worker_has_started_cancels_it_at_once(client, tenant, dispatched):
    cid = uuid.uuid4()
    run_id = open_(client, tenant, cid, "question").json()["run_id"]
    response = client.patch(conv_url(tenant, cid, "cancel/"), headers=tenant.headers)
    assert response.status_code == 204
    conversation = client.get(conv_url(tenant, cid), headers=tenant.headers).json()
    assert conversation["status"] == "idle" and conversation["latest_run"]["status"] == "cancelled"
    events = client.get(conv_url(tenant, cid, f"runs/{run_id}/events"), headers=tenant.headers).json()["events"]
    assert [e["event"] for e in events] == ["status", "end"] and events[-1]["data"]["status"] == "cancelled"
    # POST is accepted as well as the seed's PATCH; with nothing left it is 422.
    assert client.post(conv_url(tenant, cid, "cancel"), headers=tenant.headers).status_code == 422


def test_the_queue_holds_two_messages_and_a_third_is_409_queue_full(client, tenant, dispatched):
    cid = uuid.uuid4()
    open_(client, tenant, cid, "first")
    url = conv_url(tenant, cid, "queue")
    one = client.post(url, json={"content": "second"}, headers=tenant.headers)
    assert one.status_code == 200 and [m["content"] for m in one.json()["messages"]] == ["second"]
    two = client.post(url + "/", json={"content": "third"}, headers=tenant.headers)
    assert [m["content"] for m in two.json()["messages"]] == ["second", "third"]
    full = client.post(url, json={"content": "fourth"}, headers=tenant.headers)
    assert full.status_code == 409 and full.json()["error"] == "queue_full"
    also_full = open_(client, tenant, cid, "fifth")
    assert also_full.status_code == 409 and also_full.json()["error"] == "queue_full"


def test_queued_messages_can_be_edited_deleted_and_cleared(client, tenant, dispatched):
    cid = uuid.uuid4()
    open_(client, tenant, cid, "first")
    url = conv_url(tenant, cid, "queue")
    items = client.post(url, json={"content": "typo"}, headers=tenant.headers).json()["messages"]
    items = client.post(url, json={"content": "keep"}, headers=tenant.headers).json()["messages"]
    edited = client.patch(f"{url}/{items[0]['id']}", json={"content": "fixed"}, headers=tenant.headers)
    assert edited.status_code == 200
    assert [m["content"] for m in edited.json()["messages"]] == ["fixed", "keep"]
    deleted = client.delete(f"{url}/{items[1]['id']}/", headers=tenant.headers)
    assert deleted.status_code == 200 and [m["content"] for m in deleted.json()["messages"]] == ["fixed"]
    cleared = client.post(f"{url}/clear", headers=tenant.headers)
    assert cleared.status_code == 200 and cleared.json() == {"messages": [], "max_queue_messages": 2}


def test_an_unknown_queue_item_is_404(client, tenant, dispatched):
    cid = uuid.uuid4()
    open_(client, tenant, cid, "first")
    url = conv_url(tenant, cid, "queue")
    assert client.patch(f"{url}/{uuid.uuid4()}", json={"content": "x"}, headers=tenant.headers).status_code == 404
    assert client.delete(f"{url}/not-a-uuid", headers=tenant.headers).status_code == 404


def test_queueing_on_an_idle_conversation_starts_the_run_at_once(client, tenant, dispatched):
    cid = uuid.uuid4()
    client.post(tenant.url("/"), json={"id": str(cid)}, headers=tenant.headers)
    response = client.post(conv_url(tenant, cid, "queue"), json={"content": "go"}, headers=tenant.headers)
    assert response.status_code == 200 and response.json()["messages"] == []
    conversation = client.get(conv_url(tenant, cid), headers=tenant.headers).json()
    assert conversation["status"] == "in_progress" and dispatched == [("run", conversation["latest_run"]["id"])]


def test_append_message_stores_without_running_the_agent(client, tenant, dispatched):
    cid = uuid.uuid4()
    open_(client, tenant, cid)
    response = client.post(conv_url(tenant, cid, "append_message/"), json={"content": "Ticket #12 was created."},
                           headers=tenant.headers)
    assert response.status_code == 201
    assert response.json()["content"] == "Ticket #12 was created." and response.json()["role"] == "assistant"
    conversation = client.get(conv_url(tenant, cid), headers=tenant.headers).json()
    assert conversation["status"] == "idle" and dispatched == []
    assert [m["content"] for m in conversation["messages"]] == ["Ticket #12 was created."]
    missing = client.post(conv_url(tenant, uuid.uuid4(), "append_message"), json={"content": "x"},
                          headers=tenant.headers)
    assert missing.status_code == 404
    blank = client.post(conv_url(tenant, cid, "append_message"), json={"content": " "}, headers=tenant.headers)
    assert blank.status_code == 400 and blank.json()["attr"] == "content"


def test_conversation_scopes_are_enforced(client, tenant, dispatched):
    cid = uuid.uuid4()
    reader = {"Authorization": f"Bearer {make_key(tenant, ['conversation:read'])}"}
    tickets_only = {"Authorization": f"Bearer {make_key(tenant, ['ticket:write'])}"}
    writer = {"Authorization": f"Bearer {make_key(tenant, ['conversation:write'])}"}
    denied = client.post(conv_url(tenant, cid, "open"), json={"content": "x"}, headers=reader)
    assert denied.status_code == 403 and "conversation:write" in denied.json()["detail"]
    assert client.post(conv_url(tenant, cid, "open"), json={"content": "x"}, headers=writer).status_code == 200
    assert client.get(conv_url(tenant, cid), headers=reader).status_code == 200  # write implies read
    assert client.get(tenant.url("/"), headers=tickets_only).status_code == 403
    assert client.get(tenant.url("/"), headers={}).status_code == 401


def test_ticket_routes_still_win_over_the_conversation_path(client, tenant):
    tickets = client.get(tenant.url("tickets"), headers=tenant.headers)
    assert tickets.status_code == 200 and "results" in tickets.json()
    assert client.get(tenant.url("tickets/unread_count"), headers=tenant.headers).json() == {"count": 0}


def test_both_url_prefixes_and_slashes_are_served(client, tenant, dispatched):
    cid = uuid.uuid4()
    env = f"/api/environments/{tenant.project_id}/conversations/{cid}/open/"
    assert client.post(env, json={"content": "hi"}, headers=tenant.headers).status_code == 200
    assert client.get(f"/api/environments/{tenant.project_id}/conversations", headers=tenant.headers).json()["count"] == 1


def test_bad_open_bodies_are_400_with_the_field_named(client, tenant):
    cid = uuid.uuid4()
    bad_context = open_(client, tenant, cid, "x", attached_context="nope")
    assert bad_context.status_code == 400 and bad_context.json()["attr"] == "attached_context"
    wrong_task = open_(client, tenant, cid, "x", task_id=str(uuid.uuid4()))
    assert wrong_task.status_code == 400 and wrong_task.json()["attr"] == "task_id"
