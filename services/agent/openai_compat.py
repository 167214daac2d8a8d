"""An OpenAI-compatible chat-completions backend (OpenAI, vLLM, llama.cpp server, Ollama, LiteLLM…).

Configured by TICKETWIRE_AGENT_BASE_URL (e.g. `https://api.openai.com/v1`), _API_KEY and
_MODEL. Answers stream (`"stream": true`, server-sent `data:` chunks ending with
`data: [DONE]`, per OpenAI's "Chat Completions API — streaming" reference); tool calls
arrive as `delta.tool_calls` fragments keyed by `index` whose `function.arguments` strings
must be concatenated before parsing. Tools run on ticketwire's own services through the
run's `Toolbox`, then the conversation goes back to the model, for at most
`max_tool_rounds` rounds.

429, 5xx, timeouts and connection errors are retried (honouring Retry-After) as long as no
token of the round was streamed yet; anything else fails the run with the server's error.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from services.agent.base import (
    AgentEvent,
    AgentRequest,
    AgentRuntimeError,
    AnswerEnd,
    KnowledgeHit,
    Source,
    TokenEvent,
    ToolCallEvent,
    ToolError,
    ToolResultEvent,
    TriageRequest,
)
from services.agent.offline import MIN_COVERAGE
from services.agent.triage import clean_triage, triage_text

NO_ANSWER = "NO_ANSWER"
MAX_RETRY_AFTER = 10.0
TOOL_RESULT_CHARS = 8000

SYSTEM_TEAM = (
    "You are ticketwire's support assistant, helping a support team member. Answer from the help "
    "articles and resolved tickets below and from your tools (search the help center, search and read "
    "tickets, save reply drafts). Cite sources as [n]. If nothing you can find answers the question, say "
    "plainly that you don't know. Never invent policies, prices or features."
)
SYSTEM_CUSTOMER = (
    "You are a support assistant answering a customer. Answer only from the help articles below (search "
    "for more with your tool if needed), briefly and kindly, in the customer's language, citing articles "
    f"as [n]. If the articles do not answer the question, reply with exactly {NO_ANSWER} and nothing else."
)
SYSTEM_TRIAGE = (
    "Classify the support ticket. Reply with one JSON object with the keys: category (one of billing, bug, "
    "account, feature_request, question, other), urgency (low, normal, high, critical), language (ISO 639-1 "
    "code), suggested_priority (low, medium, high, critical), suggested_tags (at most 5 short lower-case "
    "tags), confidence (0 to 1)."
)


@dataclass(frozen=True)
class OpenAIConfig:
    base_url: str
    model: str
    api_key: str | None = None
    timeout: float = 60.0
    connect_timeout: float = 5.0
    max_retries: int = 2
    max_tool_rounds: int = 5

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OpenAIConfig | None:
        """None when TICKETWIRE_AGENT_BASE_URL is unset (the built-in runtime is used)."""
        env = os.environ if env is None else env
        base_url = (env.get("TICKETWIRE_AGENT_BASE_URL") or "").strip()
        if not base_url:
            return None
        return cls(
            base_url=base_url.rstrip("/"),
            model=(env.get("TICKETWIRE_AGENT_MODEL") or "gpt-4o-mini").strip(),
            api_key=(env.get("TICKETWIRE_AGENT_API_KEY") or "").strip() or None,
            timeout=float(env.get("TICKETWIRE_AGENT_TIMEOUT") or 60),
        )


@dataclass
class _Round:
    content: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str | None = None


class _HTTPError(Exception):
    def __init__(self, status: int, detail: str, retry_after: float | None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.retry_after = status, detail, retry_after


def _error_detail(response: httpx.Response) -> str:
    try:
        body = response.json()
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict):
            return str(error.get("message") or error.get("code") or error)[:500]
        if error:
            return str(error)[:500]
    except ValueError:
        pass
    return response.text[:500] or response.reason_phrase


def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("retry-after")
    try:
        return max(0.0, float(raw)) if raw is not None else None
    except ValueError:
        return None


class _MarkerFilter:
    """Holds back text while it could still be the start of NO_ANSWER, so the marker never streams."""

    def __init__(self) -> None:
        self.held = ""
        self.passed = False

    def feed(self, text: str) -> str:
        if self.passed:
            return text
        self.held += text
        stripped = self.held.lstrip()
        if stripped and not NO_ANSWER.startswith(stripped[: len(NO_ANSWER)]) or len(stripped) > len(NO_ANSWER):
            self.passed = True
            out, self.held = self.held, ""
            return out
        return ""

    def declined(self) -> bool:
        return not self.passed and self.held.strip() == NO_ANSWER


class OpenAICompatRuntime:
    name = "openai"

    def __init__(self, config: OpenAIConfig, *, client: httpx.Client | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.config = config
        self.client = client or httpx.Client(
            timeout=httpx.Timeout(config.timeout, connect=config.connect_timeout)
        )
        self.sleep = sleep

    # -- HTTP ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"{self.config.base_url}/chat/completions"

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream"}
        if self.config.api_key:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        return headers

    def _backoff(self, attempt: int, retry_after: float | None) -> None:
        delay = retry_after if retry_after is not None else 0.5 * 2**attempt
        self.sleep(min(delay, MAX_RETRY_AFTER))

    def _stream_round(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]],
                      on_text: Callable[[str], str]) -> Generator[AgentEvent, None, _Round]:
        body: dict[str, Any] = {"model": self.config.model, "messages": messages, "stream": True}
        if tools:
            body["tools"] = tools
        attempt = 0
        while True:
            result = _Round()
            calls: dict[int, dict[str, Any]] = {}
            emitted = False
            try:
                with self.client.stream("POST", self.url, json=body, headers=self._headers()) as response:
                    if response.status_code != 200:
                        response.read()
                        raise _HTTPError(response.status_code, _error_detail(response), _retry_after(response))
                    for line in response.iter_lines():
                        if not line.startswith("data:"):
                            continue  # blank separators, ": keep-alive" comments, "event:" lines
                        data = line[5:].strip()
                        if data == "[DONE]":
                            break
                        try:
                            chunk = json.loads(data)
                        except ValueError:
                            raise AgentRuntimeError("the model server sent a malformed stream chunk",
                                                    code="bad_response") from None
                        if isinstance(chunk, dict) and chunk.get("error"):
                            error = chunk["error"]
                            detail = error.get("message") if isinstance(error, dict) else str(error)
                            raise AgentRuntimeError(f"model server error: {detail}", code="model_error")
                        for choice in chunk.get("choices") or []:
                            delta = choice.get("delta") or {}
                            text = delta.get("content")
                            if text:
                                emitted = True
                                result.content += text
                                visible = on_text(text)
                                if visible:
                                    yield TokenEvent(visible)
                            for fragment in delta.get("tool_calls") or []:
                                emitted = True
                                slot = calls.setdefault(int(fragment.get("index", 0)),
                                                        {"id": "", "name": "", "arguments": ""})
                                slot["id"] = fragment.get("id") or slot["id"]
                                function = fragment.get("function") or {}
                                slot["name"] += function.get("name") or ""
                                slot["arguments"] += function.get("arguments") or ""
                            if choice.get("finish_reason"):
                                result.finish_reason = choice["finish_reason"]
                result.tool_calls = [calls[i] for i in sorted(calls)]
                return result
            except _HTTPError as exc:
                retryable = exc.status == 429 or exc.status >= 500
                if retryable and not emitted and attempt < self.config.max_retries:
                    self._backoff(attempt, exc.retry_after)
                    attempt += 1
                    continue
                raise AgentRuntimeError(f"model server answered HTTP {exc.status}: {exc.detail}",
                                        code=f"http_{exc.status}", retryable=retryable) from None
            except httpx.TimeoutException:
                if not emitted and attempt < self.config.max_retries:
                    self._backoff(attempt, None)
                    attempt += 1
                    continue
                raise AgentRuntimeError("the model server timed out", code="timeout", retryable=True) from None
            except httpx.TransportError as exc:
                if not emitted and attempt < self.config.max_retries:
                    self._backoff(attempt, None)
                    attempt += 1
                    continue
                raise AgentRuntimeError(f"cannot reach the model server: {type(exc).__name__}",
                                        code="connection_error", retryable=True) from None

    # -- AgentRuntime ----------------------------------------------------------------------

    def stream(self, request: AgentRequest) -> Iterator[AgentEvent]:
        context = request.toolbox.search_knowledge(request.question, limit=3)
        grounded = [hit for hit in context if hit.source.coverage >= MIN_COVERAGE]
        messages: list[dict[str, Any]] = [{"role": "system", "content": self._system_prompt(request, context)}]
        messages += [{"role": turn.role, "content": turn.content} for turn in request.history]
        messages.append({"role": "user", "content": request.question})
        tools = request.toolbox.specs()
        marker = _MarkerFilter()
        pass_through: Callable[[str], str] = lambda text: text  # noqa: E731
        cited: dict[str, Source] = {}
        for round_number in range(self.config.max_tool_rounds + 1):
            last_round = round_number == self.config.max_tool_rounds
            filter_text = marker.feed if request.audience == "customer" else pass_through
            result = yield from self._stream_round(messages, [] if last_round else tools, filter_text)
            if not result.tool_calls:
                break
            messages.append({
                "role": "assistant",
                "content": result.content or None,
                "tool_calls": [
                    {"id": call["id"], "type": "function",
                     "function": {"name": call["name"], "arguments": call["arguments"] or "{}"}}
                    for call in result.tool_calls
                ],
            })
            for call in result.tool_calls:
                try:
                    arguments = json.loads(call["arguments"] or "{}")
                except ValueError:
                    arguments = None
                yield ToolCallEvent(call_id=call["id"], name=call["name"],
                                    arguments=arguments if isinstance(arguments, dict) else {})
                outcome: Any
                if not isinstance(arguments, dict):
                    outcome, is_error = {"error": "arguments were not a JSON object"}, True
                else:
                    try:
                        outcome, is_error = request.toolbox.call(call["name"], arguments), False
                    except ToolError as exc:
                        outcome, is_error = {"error": str(exc)}, True
                yield ToolResultEvent(call_id=call["id"], name=call["name"], result=outcome, is_error=is_error)
                if call["name"] == "search_help_center" and isinstance(outcome, list):
                    for item in outcome[:3]:
                        if item.get("coverage", 0) >= MIN_COVERAGE:
                            cited.setdefault(item["id"], Source(kind=item["kind"], id=item["id"], title=item["title"],
                                                                url=item.get("url"), score=item.get("score", 0.0),
                                                                coverage=item.get("coverage", 0.0)))
                messages.append({"role": "tool", "tool_call_id": call["id"],
                                 "content": json.dumps(outcome, default=str)[:TOOL_RESULT_CHARS]})
        if request.audience == "customer" and marker.declined():
            yield AnswerEnd(citations=[], confidence=0.0, declined=True)
            return
        if request.audience == "customer" and marker.held:
            yield TokenEvent(marker.held)  # a short answer that merely began like the marker
        sources = [hit.source for hit in grounded] + [s for key, s in cited.items()
                                                      if key not in {h.source.id for h in grounded}]
        confidence = max([s.coverage for s in sources], default=0.0)
        yield AnswerEnd(citations=sources, confidence=round(confidence, 2), declined=False)

    def _system_prompt(self, request: AgentRequest, context: list[KnowledgeHit]) -> str:
        prompt = SYSTEM_CUSTOMER if request.audience == "customer" else SYSTEM_TEAM
        if context:
            blocks = [f"[{n}] {hit.source.title}\n{hit.text[:1500]}" for n, hit in enumerate(context, start=1)]
            prompt += "\n\nKnowledge:\n\n" + "\n\n".join(blocks)
        if request.attached_context:
            prompt += "\n\nAttached context:\n" + json.dumps(request.attached_context, default=str)[:4000]
        return prompt

    def triage(self, request: TriageRequest) -> dict[str, Any]:
        fallback = triage_text(request.subject, request.text, toolbox=request.toolbox)
        body = {
            "model": self.config.model,
            "messages": [
                {"role": "system", "content": SYSTEM_TRIAGE},
                {"role": "user", "content": f"Channel: {request.channel}\nSubject: {request.subject}\n\n"
                                            f"{request.text[:6000]}"},
            ],
            "response_format": {"type": "json_object"},
        }
        try:
            response = self.client.post(self.url, json=body, headers=self._headers())
            if response.status_code != 200:
                raise AgentRuntimeError(f"HTTP {response.status_code}: {_error_detail(response)}")
            content = response.json()["choices"][0]["message"]["content"]
            raw = json.loads(content)
            if not isinstance(raw, dict):
                raise ValueError("not an object")
        except (AgentRuntimeError, httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as exc:
            # Triage is advisory: a model outage must not leave the ticket without one.
            fallback["runtime"] = "offline"
            fallback["fallback_reason"] = str(exc)[:200] or type(exc).__name__
            return fallback
        result = clean_triage(raw, fallback)
        result["runtime"] = self.name
        return result
