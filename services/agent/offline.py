"""The built-in runtime: answers from the project's help articles and resolved tickets, offline.

Retrieval is BM25 (`bm25.py`) over the project's knowledge (`knowledge.py`). The answer is
extractive: the passage of the best document that covers the question, with its source
cited. When no document covers enough of the question (by IDF mass, see
`BM25Index.search`) the runtime says plainly that it does not know rather than quoting the
nearest unrelated article. Customers only ever get help articles, never other tickets.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from services.agent.base import (
    AgentEvent,
    AgentRequest,
    AnswerEnd,
    KnowledgeHit,
    TokenEvent,
    ToolCallEvent,
    ToolResultEvent,
    TriageRequest,
)
from services.agent.text import sentences, terms
from services.agent.triage import triage_text

# The share of a question's IDF mass a document must contain to be used as its answer.
MIN_COVERAGE = 0.55
# A second source is cited when it covers the question too and scores close to the first.
SECOND_SOURCE_RATIO = 0.8
PASSAGE_CHARS = 700

DONT_KNOW_TEAM = (
    "I don't know. I couldn't find anything that answers this in the help articles or in past resolved tickets."
)
DONT_KNOW_CUSTOMER = (
    "I'm sorry, I don't know the answer to that. I've passed your question on to the team, who will get back to you."
)
NEED_MORE = "Could you tell me a little more about what you need help with?"
CHUNK_RE = re.compile(r"\S+\s*|\s+")


def best_passage(text: str, matched: frozenset[str], *, limit: int = PASSAGE_CHARS) -> str:
    """The sentences of `text` around the one that contains most of the question's terms."""
    text = text.strip()
    if len(text) <= limit:
        return text
    parts = sentences(text)
    if not parts:
        return text[:limit]
    scored = [len(set(terms(part)) & matched) for part in parts]
    best = max(range(len(parts)), key=lambda i: (scored[i], -i))
    start, end = best, best + 1
    size = len(parts[best])
    while True:
        grew = False
        if end < len(parts) and size + len(parts[end]) + 1 <= limit:
            size += len(parts[end]) + 1
            end += 1
            grew = True
        if start > 0 and scored[start - 1] and size + len(parts[start - 1]) + 1 <= limit:
            start -= 1
            size += len(parts[start]) + 1
            grew = True
        if not grew:
            break
    passage = " ".join(parts[start:end])
    return passage if len(passage) <= limit else passage[: limit - 1].rsplit(" ", 1)[0] + "…"


def _chunks(text: str) -> Iterator[TokenEvent]:
    for piece in CHUNK_RE.findall(text):
        yield TokenEvent(piece)


def retrieval_queries(request: AgentRequest) -> list[str]:
    """The question, then (for a follow-up the question alone does not answer) the previous
    question and this one together."""
    question = request.question.strip()
    previous = [t.content for t in request.history if t.role == "user" and t.content.strip()]
    queries = [question] if terms(question) else []
    if previous:
        queries.append(f"{previous[-1]} {question}")
    return queries


def compose(hits: list[KnowledgeHit], *, audience: str) -> tuple[str, list[KnowledgeHit]]:
    """The answer text and the hits it cites (empty when the runtime must decline)."""
    usable = [h for h in hits if h.source.coverage >= MIN_COVERAGE]
    if not usable:
        return (DONT_KNOW_CUSTOMER if audience == "customer" else DONT_KNOW_TEAM), []
    best = usable[0]
    cited = [best] + [
        h for h in usable[1:2] if h.source.score >= SECOND_SOURCE_RATIO * best.source.score
    ]
    passage = best_passage(best.text, best.matched)
    if best.source.kind == "ticket":
        lead = f"A similar question was resolved before ({best.source.title.split(':')[0]}). The team answered:\n\n"
    else:
        lead = ""
    refs = []
    for number, hit in enumerate(cited, start=1):
        where = f" ({hit.source.url})" if hit.source.url else ""
        refs.append(f"[{number}] {hit.source.title}{where}")
    return f"{lead}{passage}\n\nSources:\n" + "\n".join(refs), cited


class OfflineRuntime:
    """BM25 retrieval and extractive answers; no network, no model."""

    name = "offline"

    def stream(self, request: AgentRequest) -> Iterator[AgentEvent]:
        queries = retrieval_queries(request)
        if not queries:
            yield from _chunks(NEED_MORE)
            yield AnswerEnd(citations=[], confidence=0.0, declined=True)
            return
        tool = "search_help_center"
        text, cited = "", []
        for number, query in enumerate(queries, start=1):
            yield ToolCallEvent(call_id=f"search-{number}", name=tool, arguments={"query": query})
            hits = request.toolbox.search_knowledge(query, limit=5)
            yield ToolResultEvent(call_id=f"search-{number}", name=tool, result=[h.source.as_dict() for h in hits])
            text, cited = compose(hits, audience=request.audience)
            if cited:
                break
        yield from _chunks(text)
        if not cited:
            yield AnswerEnd(citations=[], confidence=0.0, declined=True)
            return
        yield AnswerEnd(citations=[h.source for h in cited], confidence=round(cited[0].source.coverage, 2),
                        declined=False)

    def triage(self, request: TriageRequest) -> dict[str, Any]:
        result = triage_text(request.subject, request.text, toolbox=request.toolbox)
        result["runtime"] = self.name
        return result
