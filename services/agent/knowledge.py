"""What the built-in runtime knows: a project's published help articles and its resolved
tickets, ranked with BM25.

The index is built per project on first use and kept in the process; every search first
compares a cheap fingerprint (count and latest update of articles and of resolved tickets)
and rebuilds when it changed, so an edited article is answered from at once without any
cross-process invalidation (newly resolved tickets: within `TICKETS_STALE_SECONDS`).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.db import session_scope
from core.settings import get_settings
from models import HelpArticle, Message, Ticket
from services.agent.base import KnowledgeHit, Source
from services.agent.bm25 import BM25Index
from services.agent.text import terms

# Resolved tickets older than the newest N are not indexed: recent answers are the ones that
# still hold, and the index stays small on a busy project.
MAX_TICKETS = 2000
# An article change rebuilds the index at once; newly resolved tickets join it at most this
# late, so a project resolving tickets every second does not rebuild on every question.
TICKETS_STALE_SECONDS = 60.0
TITLE_WEIGHT = 2  # a title term counts as much as this many body occurrences


@dataclass(frozen=True)
class Document:
    source: Source
    text: str
    tags: tuple[str, ...]


@dataclass
class KnowledgeIndex:
    fingerprint: tuple[Any, ...]
    documents: list[Document]
    bm25: BM25Index
    is_article: list[bool]
    built_at: float = field(default_factory=time.monotonic)

    def is_current(self, fingerprint: tuple[Any, ...]) -> bool:
        if fingerprint[:2] != self.fingerprint[:2]:
            return False  # articles changed
        return fingerprint == self.fingerprint or time.monotonic() - self.built_at < TICKETS_STALE_SECONDS

    def search(self, query: str, *, limit: int = 5, articles_only: bool = False) -> list[KnowledgeHit]:
        hits = self.bm25.search(terms(query), limit=limit, allowed=self.is_article if articles_only else None)
        out = []
        for hit in hits:
            doc = self.documents[hit.index]
            source = Source(kind=doc.source.kind, id=doc.source.id, title=doc.source.title, url=doc.source.url,
                            score=hit.score, coverage=hit.coverage)
            out.append(KnowledgeHit(source=source, text=doc.text, matched=hit.matched, tags=doc.tags))
        return out


# Keyed by (database URL, project id): tests switch databases under the same project ids.
_cache: dict[tuple[str, int], KnowledgeIndex] = {}
_locks: dict[tuple[str, int], threading.Lock] = {}
_guard = threading.Lock()
# When each cached index was last confirmed current (time.monotonic()).
_checked_at: dict[tuple[str, int], float] = {}


def _fingerprint(session: Session, project_id: int) -> tuple[Any, ...]:
    articles = session.execute(
        select(func.count(), func.max(HelpArticle.updated_at)).where(
            HelpArticle.project_id == project_id, HelpArticle.published.is_(True)
        )
    ).one()
    recent = (
        select(Ticket.updated_at)
        .where(Ticket.project_id == project_id, Ticket.status == "resolved", Ticket.deleted_at.is_(None))
        .order_by(Ticket.updated_at.desc())
        .limit(MAX_TICKETS)
        .subquery()
    )
    tickets = session.execute(select(func.count(), func.max(recent.c.updated_at))).one()
    return (int(articles[0]), str(articles[1]), int(tickets[0]), str(tickets[1]))


def _article_documents(session: Session, project_id: int) -> Iterable[tuple[Document, list[str]]]:
    rows = session.execute(
        select(HelpArticle.id, HelpArticle.title, HelpArticle.body, HelpArticle.url, HelpArticle.tags)
        .where(HelpArticle.project_id == project_id, HelpArticle.published.is_(True))
        .order_by(HelpArticle.created_at, HelpArticle.id)
    )
    for article_id, title, body, url, tags in rows:
        tag_list = tuple(str(t) for t in (tags or []))
        doc_terms = terms(title) * TITLE_WEIGHT + terms(body or "") + terms(" ".join(tag_list))
        source = Source(kind="article", id=str(article_id), title=title, url=url)
        yield Document(source=source, text=body or "", tags=tag_list), doc_terms


def _ticket_documents(session: Session, project_id: int) -> Iterable[tuple[Document, list[str]]]:
    from services.tickets import tags_for

    tickets = list(
        session.execute(
            select(Ticket.id, Ticket.ticket_number, Ticket.email_subject)
            .where(Ticket.project_id == project_id, Ticket.status == "resolved", Ticket.deleted_at.is_(None))
            .order_by(Ticket.updated_at.desc())
            .limit(MAX_TICKETS)
        )
    )
    ids = [t[0] for t in tickets]
    messages: dict[uuid.UUID, list[tuple[str, str]]] = {i: [] for i in ids}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        rows = session.execute(
            select(Message.ticket_id, Message.author_type, Message.content)
            .where(Message.ticket_id.in_(chunk), Message.is_private.is_(False), Message.deleted_at.is_(None))
            .order_by(Message.created_at, Message.id)
        )
        for ticket_id, author_type, content in rows:
            messages[ticket_id].append((author_type, content or ""))
    tags = tags_for(session=session, ticket_ids=ids)
    for ticket_id, number, subject in tickets:
        thread = messages[ticket_id]
        asked = " ".join(c for a, c in thread if a == "customer")
        answers = [c for a, c in thread if a in ("support", "AI")]
        if not asked or not answers:
            continue  # nothing to learn from a ticket nobody answered
        first_line = (subject or asked).strip().splitlines()[0][:80]
        source = Source(kind="ticket", id=str(ticket_id), title=f"Ticket #{number}: {first_line}")
        doc_terms = terms(subject or "") * TITLE_WEIGHT + terms(asked) + terms(" ".join(answers))
        # The team's last public answer is what resolved the ticket.
        yield Document(source=source, text=answers[-1], tags=tuple(tags.get(ticket_id, []))), doc_terms


def build_index(session: Session, project_id: int, fingerprint: tuple[Any, ...] | None = None) -> KnowledgeIndex:
    fingerprint = fingerprint or _fingerprint(session, project_id)
    pairs = list(_article_documents(session, project_id)) + list(_ticket_documents(session, project_id))
    documents = [doc for doc, _ in pairs]
    return KnowledgeIndex(
        fingerprint=fingerprint,
        documents=documents,
        bm25=BM25Index([doc_terms for _, doc_terms in pairs]),
        is_article=[doc.source.kind == "article" for doc in documents],
    )


def get_index(project_id: int, *, max_age: float = 0.0) -> KnowledgeIndex:
    """The project's current index, rebuilt if articles or resolved tickets changed.

    `max_age` > 0 reuses an index whose freshness was checked less than that many seconds ago
    without asking again (two queries per call add up when every new ticket is triaged).
    """
    key = (get_settings().database_url, project_id)
    checked = _checked_at.get(key)
    cached = _cache.get(key)
    if max_age > 0 and cached is not None and checked is not None and time.monotonic() - checked < max_age:
        return cached
    with session_scope(read_only=True) as session:
        fingerprint = _fingerprint(session, project_id)
        cached = _cache.get(key)
        if cached is not None and cached.is_current(fingerprint):
            _checked_at[key] = time.monotonic()
            return cached
    with _guard:
        lock = _locks.setdefault(key, threading.Lock())
    with lock:  # one build per project at a time; the others wait for it
        cached = _cache.get(key)
        if cached is not None and cached.is_current(fingerprint):
            return cached
        with session_scope(read_only=True) as session:
            index = build_index(session, project_id, fingerprint)
        _cache[key] = index
        _checked_at[key] = time.monotonic()
        return index


def search(project_id: int, query: str, *, limit: int = 5, articles_only: bool = False,
           max_age: float = 0.0) -> list[KnowledgeHit]:
    return get_index(project_id, max_age=max_age).search(query, limit=limit, articles_only=articles_only)


def forget() -> None:
    """Drop every cached index."""
    _cache.clear()
    _checked_at.clear()


# -- the articles API -----------------------------------------------------------------------

MAX_ARTICLE_BODY = 100_000


def _article_fields(data: dict[str, Any], *, partial: bool) -> dict[str, Any]:
    from services.errors import ValidationError

    out: dict[str, Any] = {}
    if "title" in data or not partial:
        title = data.get("title")
        if not isinstance(title, str) or not title.strip() or len(title) > 300:
            raise ValidationError("title is required (at most 300 characters).", attr="title")
        out["title"] = title.strip()
    if "body" in data or not partial:
        body = data.get("body", "")
        if not isinstance(body, str) or len(body) > MAX_ARTICLE_BODY:
            raise ValidationError(f"body must be text of at most {MAX_ARTICLE_BODY} characters.", attr="body")
        out["body"] = body
    if "url" in data:
        url = data["url"]
        if url is not None and (not isinstance(url, str) or len(url) > 1000):
            raise ValidationError("url must be a string of at most 1000 characters or null.", attr="url")
        out["url"] = url or None
    if "tags" in data:
        tags = data["tags"]
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags) or len(tags) > 50:
            raise ValidationError("tags must be a list of at most 50 strings.", attr="tags")
        out["tags"] = [t.strip().lower()[:100] for t in tags if t.strip()]
    if "published" in data:
        if not isinstance(data["published"], bool):
            raise ValidationError("published must be a boolean.", attr="published")
        out["published"] = data["published"]
    return out


def create_article(*, session: Session, project_id: int, data: dict[str, Any]) -> HelpArticle:
    from core.clock import now

    fields = _article_fields(data, partial=False)
    stamp = now()
    fields = {"url": None, "tags": [], "published": True, **fields}
    article = HelpArticle(id=uuid.uuid4(), project_id=project_id, created_at=stamp, updated_at=stamp, **fields)
    session.add(article)
    session.flush()
    return article


def get_article(*, session: Session, project_id: int, article_id: Any) -> HelpArticle:
    from services.errors import NotFoundError

    try:
        wanted = uuid.UUID(str(article_id))
    except ValueError:
        raise NotFoundError("Not found.") from None
    article = session.get(HelpArticle, wanted)
    if article is None or article.project_id != project_id:
        raise NotFoundError("Not found.")
    return article


def update_article(*, session: Session, article: HelpArticle, data: dict[str, Any]) -> HelpArticle:
    from core.clock import now

    for attr, value in _article_fields(data, partial=True).items():
        setattr(article, attr, value)
    article.updated_at = now()
    session.flush()
    return article


def delete_article(*, session: Session, article: HelpArticle) -> None:
    session.delete(article)
    session.flush()


def list_articles(
    *, session: Session, project_id: int, limit: int, offset: int, search: str | None = None
) -> tuple[int, list[HelpArticle]]:
    query = select(HelpArticle).where(HelpArticle.project_id == project_id)
    if search:
        pattern = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(HelpArticle.title.ilike(pattern, escape="\\") | HelpArticle.body.ilike(pattern, escape="\\"))
    count = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(HelpArticle.created_at.desc(), HelpArticle.id).limit(limit).offset(offset))
    return int(count), list(rows)
