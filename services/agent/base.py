"""The agent runtime interface: what a run hands a runtime and the events it streams back.

A runtime turns a question (with the conversation so far) into a stream of events: text
tokens, tool calls and their results, and one final `AnswerEnd` with what it cited, how
confident it is and whether it declined. It also triages tickets. Runtimes never touch the
database themselves: everything they may read or do goes through the `Toolbox` they are
given, which is bound to one project, one user and that user's key scopes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Audience = Literal["team", "customer"]


class AgentRuntimeError(Exception):
    """The runtime could not answer (backend error, timeout, bad response)."""

    def __init__(self, detail: str, *, code: str = "runtime_error", retryable: bool = False) -> None:
        super().__init__(detail)
        self.detail, self.code, self.retryable = detail, code, retryable


@dataclass(frozen=True)
class Turn:
    role: Literal["user", "assistant"]
    content: str


@dataclass(frozen=True)
class Source:
    """A help article or a resolved ticket an answer used."""

    kind: Literal["article", "ticket"]
    id: str
    title: str
    url: str | None = None
    score: float = 0.0
    coverage: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "id": self.id, "title": self.title, "url": self.url,
                "score": round(self.score, 3), "coverage": round(self.coverage, 3)}


@dataclass(frozen=True)
class TokenEvent:
    text: str


@dataclass(frozen=True)
class ToolCallEvent:
    call_id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class ToolResultEvent:
    call_id: str
    name: str
    result: Any
    is_error: bool = False


@dataclass(frozen=True)
class AnswerEnd:
    citations: list[Source] = field(default_factory=list)
    confidence: float = 0.0
    declined: bool = False


AgentEvent = TokenEvent | ToolCallEvent | ToolResultEvent | AnswerEnd


class Toolbox(Protocol):
    """What a runtime may read and do, on behalf of one user of one project."""

    project_id: int
    audience: Audience

    def search_knowledge(self, query: str, *, limit: int = 5) -> list[KnowledgeHit]: ...

    def specs(self) -> list[dict[str, Any]]:
        """OpenAI-style function specs of the tools this user's scopes allow."""
        ...

    def call(self, name: str, arguments: dict[str, Any]) -> Any:
        """Run one tool; raises `ToolError` for a refused or failed call."""
        ...


class ToolError(Exception):
    pass


@dataclass(frozen=True)
class KnowledgeHit:
    source: Source
    text: str
    # Stemmed question terms the document contains (for picking the passage to quote).
    matched: frozenset[str] = frozenset()
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class AgentRequest:
    project_id: int
    question: str
    toolbox: Toolbox
    history: list[Turn] = field(default_factory=list)
    attached_context: list[Any] = field(default_factory=list)
    audience: Audience = "team"


@dataclass(frozen=True)
class TriageRequest:
    project_id: int
    subject: str
    text: str
    channel: str
    toolbox: Toolbox | None = None


@dataclass(frozen=True)
class Answer:
    text: str
    citations: list[Source]
    confidence: float
    declined: bool


CATEGORIES = ("billing", "bug", "account", "feature_request", "question", "other")
URGENCIES = ("low", "normal", "high", "critical")
URGENCY_TO_PRIORITY = {"low": "low", "normal": "medium", "high": "high", "critical": "critical"}


class AgentRuntime(Protocol):
    name: str

    def stream(self, request: AgentRequest) -> Iterator[AgentEvent]:
        """Answer `request.question`, yielding events; the last one is an `AnswerEnd`."""
        ...

    def triage(self, request: TriageRequest) -> dict[str, Any]:
        """{category, urgency, language, suggested_priority, suggested_tags, confidence}."""
        ...


def collect(events: Iterator[AgentEvent]) -> Answer:
    """Drain a stream into one `Answer` (for drafts and auto-answers, which do not stream)."""
    parts: list[str] = []
    end = AnswerEnd()
    for event in events:
        if isinstance(event, TokenEvent):
            parts.append(event.text)
        elif isinstance(event, AnswerEnd):
            end = event
    return Answer(text="".join(parts).strip(), citations=end.citations, confidence=end.confidence,
                  declined=end.declined)
