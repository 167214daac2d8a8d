"""The OpenAI-compatible backend against a local fake server (real HTTP): streaming, tool calls
onto ticketwire's services, slow streams, errors and retries."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from services import agent, conversations
from services.agent.base import (
    AgentRequest,
    AgentRuntimeError,
    AnswerEnd,
    TokenEvent,
    ToolCallEvent,
    ToolResultEvent,
    TriageRequest,
    collect,
)
from services.agent.openai_compat import OpenAICompatRuntime, OpenAIConfig
from services.agent.tools import TicketwireToolbox
from tests.conversations.conftest import conv_url
from tests.factories import make_ticket
from tests.fakes.http import Reply
from tests.fakes.openai_api import FakeOpenAI


@pytest.fixture
def api() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


def runtime_for(api: FakeOpenAI, **overrides: Any) -> OpenAICompatRuntime:
    config = OpenAIConfig(base_url=api.base_url, model="fake-model", api_key="sk-test", **overrides)
    return OpenAICompatRuntime(config, sleep=lambda _: None)


def request(tenant: Any, question: str, *, scopes: list[str] | None = None, audience: str = "team") -> AgentRequest:
    toolbox = TicketwireToolbox(project_id=tenant.project_id, user_id=tenant.user_id,
                                scopes=["*"] if scopes is None else scopes, audience=audience)  # type: ignore[arg-type]
    return AgentRequest(project_id=tenant.project_id, question=question, toolbox=toolbox,
                        audience=audience)  # type: ignore[arg-type]


def test_tokens_stream_from_the_server_with_the_key_model_and_tools(tenant, api, help_center):
    api.reply_text(["To reset", " your password", ", click Forgot password [1]."])
    events = list(runtime_for(api).stream(request(tenant, "How do I reset my password?")))
    assert [e.text for e in events if isinstance(e, TokenEvent)] == [
        "To reset", " your password", ", click Forgot password [1]."]
    end = events[-1]
    assert isinstance(end, AnswerEnd) and not end.declined
    assert end.citations[0].title == "Resetting your password"
    call = api.calls_to("/chat/completions")[0]
    assert call.headers["authorization"] == "Bearer sk-test"
    body = call.json()
    assert body["model"] == "fake-model" and body["stream"] is True
    assert body["messages"][0]["role"] == "system" and "Resetting your password" in body["messages"][0]["content"]
    assert body["messages"][-1] == {"role": "user", "content": "How do I reset my password?"}
    assert [t["function"]["name"] for t in body["tools"]] == [
        "search_help_center", "search_tickets", "read_ticket", "draft_reply"]


def test_a_tool_call_reads_a_ticket_through_ticketwires_services(tenant, api):
    ticket = make_ticket(tenant.project_id, message="My export never arrives", customer_name="Carla")
    api.reply_tool_call("read_ticket", {"ticket": str(ticket["ticket_number"])}, call_id="call_read")
    api.reply_text(["Carla's export is stuck."])
    events = list(runtime_for(api).stream(request(tenant, "What is ticket 1 about?")))
    call = next(e for e in events if isinstance(e, ToolCallEvent))
    result = next(e for e in events if isinstance(e, ToolResultEvent))
    assert call.name == "read_ticket" and call.arguments == {"ticket": "1"}
    assert not result.is_error and result.result["messages"][0]["content"] == "My export never arrives"
    second = api.requests()[1]["messages"]
    assert second[-2]["tool_calls"][0]["id"] == "call_read"
    assert second[-1]["role"] == "tool" and second[-1]["tool_call_id"] == "call_read"
    assert "My export never arrives" in second[-1]["content"]
    assert "".join(e.text for e in events if isinstance(e, TokenEvent)) == "Carla's export is stuck."


def test_a_tool_call_can_draft_a_reply_but_only_with_ticket_write(client, tenant, api):
    ticket = make_ticket(tenant.project_id, message="Where is my invoice?")
    api.reply_tool_call("draft_reply", {"ticket": ticket["id"], "content": "Invoices are under Billing."})
    api.reply_text(["Drafted."])
    list(runtime_for(api).stream(request(tenant, "Draft an answer for ticket 1")))
    thread = client.get(tenant.url(f"tickets/{ticket['id']}/messages"), headers=tenant.headers).json()["results"]
    draft = thread[-1]
    assert draft["message_type"] == "ai_draft" and draft["is_private"] is True and draft["author_type"] == "AI"
    assert draft["content"] == "Invoices are under Billing."

    api.reply_tool_call("draft_reply", {"ticket": ticket["id"], "content": "sneaky"})
    api.reply_text(["I cannot."])
    events = list(runtime_for(api).stream(request(tenant, "Draft it", scopes=["conversation:write"])))
    assert "tools" not in api.requests()[-2] or all(
        t["function"]["name"] == "search_help_center" for t in api.requests()[-2]["tools"])
    refused = next(e for e in events if isinstance(e, ToolResultEvent))
    assert refused.is_error and "not available" in refused.result["error"]


def test_server_errors_and_rate_limits_are_retried_before_the_first_token(tenant, api):
    api.fail_next(Reply(500, {"error": {"message": "overloaded"}}))
    api.fail_next(Reply(429, {"error": {"message": "slow down"}}, headers={"Retry-After": "0"}))
    api.reply_text(["fine"])
    answer = collect(runtime_for(api).stream(request(tenant, "hello?")))
    assert answer.text == "fine" and len(api.calls_to("/chat/completions")) == 3


def test_a_permanent_error_fails_with_the_servers_message(tenant, api):
    api.fail_next(Reply(401, {"error": {"message": "Incorrect API key provided"}}))
    with pytest.raises(AgentRuntimeError) as raised:
        collect(runtime_for(api).stream(request(tenant, "hello?")))
    assert raised.value.code == "http_401" and "Incorrect API key" in raised.value.detail
    assert len(api.calls_to("/chat/completions")) == 1


def test_a_stalled_server_times_out(tenant, api):
    api.fail_next(Reply(200, {"never": "mind"}, delay=2.0))
    started = time.monotonic()
    with pytest.raises(AgentRuntimeError) as raised:
        collect(runtime_for(api, timeout=0.3, max_retries=0).stream(request(tenant, "hello?")))
    assert raised.value.code == "timeout" and time.monotonic() - started < 1.9


def test_an_error_chunk_mid_stream_fails_the_answer(tenant, api):
    from tests.fakes.openai_api import StreamReply, sse

    api.script.append(StreamReply(200, chunks=[sse({"error": {"message": "context length exceeded"}})],
                                  headers={"Content-Type": "text/event-stream"}))
    with pytest.raises(AgentRuntimeError, match="context length exceeded"):
        collect(runtime_for(api).stream(request(tenant, "hello?")))


def test_a_customer_answer_the_model_declines_never_streams_the_marker(tenant, api, help_center):
    api.reply_text(["NO_", "ANSWER"])
    events = list(runtime_for(api).stream(request(tenant, "Do you sell bicycles?", audience="customer")))
    assert [e for e in events if isinstance(e, TokenEvent)] == []
    assert isinstance(events[-1], AnswerEnd) and events[-1].declined
    assert [t["function"]["name"] for t in api.requests()[0]["tools"]] == ["search_help_center"]


def test_triage_uses_the_models_json_and_falls_back_when_it_is_unusable(tenant, api):
    api.reply_json({"category": "billing", "urgency": "high", "language": "de", "suggested_priority": "high",
                    "suggested_tags": ["Refund", "invoice"], "confidence": 0.83})
    triage = runtime_for(api).triage(TriageRequest(project_id=tenant.project_id, subject="Rechnung",
                                                   text="Ich wurde doppelt belastet", channel="email"))
    assert triage["category"] == "billing" and triage["language"] == "de" and triage["confidence"] == 0.83
    assert triage["suggested_tags"] == ["refund", "invoice"] and triage["runtime"] == "openai"
    assert api.requests()[0]["response_format"] == {"type": "json_object"}

    api.reply_json("not json at all")
    fallback = runtime_for(api).triage(TriageRequest(project_id=tenant.project_id, subject="",
                                                     text="I was charged twice, please refund", channel="widget"))
    assert fallback["runtime"] == "offline" and fallback["category"] == "billing"


def test_a_conversation_run_uses_the_configured_backend_and_a_slow_stream_cancels_quickly(
        client, tenant, api, dispatched, monkeypatch):
    monkeypatch.setenv("TICKETWIRE_AGENT_BASE_URL", api.base_url)
    monkeypatch.setenv("TICKETWIRE_AGENT_MODEL", "fake-model")
    runtime = agent.get_runtime()
    assert isinstance(runtime, OpenAICompatRuntime) and runtime.config.model == "fake-model"

    api.reply_text([f"word{i} " for i in range(50)], delay=0.3)
    cid = uuid.uuid4()
    handle = client.post(conv_url(tenant, cid, "open"), json={"content": "tell me a story"},
                         headers=tenant.headers).json()
    outcome: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: outcome.update(status=conversations.execute_run(handle["run_id"])))
    worker.start()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        run = client.get(conv_url(tenant, cid, f"runs/{handle['run_id']}"), headers=tenant.headers).json()
        if run["first_token_at"]:
            break
        time.sleep(0.05)
    assert client.patch(conv_url(tenant, cid, "cancel"), headers=tenant.headers).status_code == 204
    asked = time.monotonic()
    worker.join(5)
    assert outcome["status"] == "cancelled" and time.monotonic() - asked < 1.0
    conversation = client.get(conv_url(tenant, cid), headers=tenant.headers).json()
    assert conversation["status"] == "idle" and conversation["latest_run"]["runtime"] == "openai"
    assert conversation["messages"][-1]["content"].startswith("word0 ")
