"""AI conversations (the seed's open, cancel, queue and append_message, plus list/retrieve and
a resumable SSE stream of a run's events), help articles, and AI for tickets.

Conversation paths take a UUID path converter, so `/conversations/tickets/...`,
`/conversations/articles/...` and other routers' fixed paths never match `{conversation}`.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Depends, FastAPI, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.deps import Principal, require
from api.errors import error_body
from api.routing import SlashRouter, include_project_router
from api.schemas import Body, iso, message_out, user_out
from core.db import session_scope
from models import (
    AgentRun,
    AgentTask,
    Conversation,
    ConversationMessage,
    ConversationQueueItem,
    HelpArticle,
    User,
)
from services import ai_tickets, ticket_query
from services import conversations as service
from services import tickets as ticket_service
from services.agent import knowledge

router = SlashRouter(tags=["conversations"])
READ = require("conversation:read")
WRITE = require("conversation:write")
TICKET_READ = require("ticket:read")
TICKET_WRITE = require("ticket:write")

SSE_POLL_SECONDS = 0.1
SSE_KEEPALIVE_SECONDS = 15.0
CONVERSATION = "/{conversation:uuid}"


# -- bodies ---------------------------------------------------------------------------------

class OpenIn(Body):
    content: str | None = Field(default=None, max_length=100_000)
    trace_id: str | None = None
    attached_context: list[Any] | None = None
    initial_permission_mode: str | None = None
    task_id: str | None = None


class ContentIn(Body):
    content: str = Field(max_length=100_000)


class QueueIn(ContentIn):
    trace_id: str | None = None
    attached_context: list[Any] | None = None


class AppendIn(ContentIn):
    role: str | None = None


class ConversationIn(Body):
    id: uuid.UUID | None = None
    title: str | None = None
    agent_runtime: str = "sandbox"


class ArticleIn(Body):
    title: str | None = None
    body: str | None = None
    url: str | None = None
    tags: list[str] | None = None
    published: bool | None = None


class AISettingsIn(Body):
    auto_triage: bool | None = None
    auto_answer: bool | None = None
    auto_answer_channels: list[str] | None = None
    answer_confidence: float | None = None


class SendDraftIn(Body):
    content: str | None = Field(default=None, max_length=100_000)


# -- shapes ---------------------------------------------------------------------------------

def conversation_message_out(message: ConversationMessage) -> dict[str, Any]:
    return {
        "id": str(message.id),
        "type": {"user": "human", "assistant": "ai"}.get(message.role, message.role),
        "role": message.role,
        "content": message.content,
        "status": message.status,
        "run_id": str(message.run_id) if message.run_id else None,
        "tool_calls": message.tool_calls or [],
        "citations": message.citations or [],
        "attached_context": message.attached_context or [],
        "trace_id": message.trace_id,
        "created_at": iso(message.created_at),
        "updated_at": iso(message.updated_at),
    }


def run_out(run: AgentRun | None) -> dict[str, Any] | None:
    if run is None:
        return None
    return {
        "id": str(run.id),
        "task_id": str(run.task_id),
        "status": run.status,
        "trace_id": run.trace_id,
        "runtime": run.runtime,
        "error": run.error,
        "last_event_id": run.last_event_seq,
        "created_at": iso(run.created_at),
        "started_at": iso(run.started_at),
        "first_token_at": iso(run.first_token_at),
        "finished_at": iso(run.finished_at),
    }


def task_out(task: AgentTask | None, creator: User | None) -> dict[str, Any] | None:
    if task is None:
        return None
    return {
        "id": str(task.id),
        "title": task.title,
        "description": task.description,
        "origin_product": task.origin_product,
        "latest_run": str(task.latest_run_id) if task.latest_run_id else None,
        "archived": task.archived,
        "created_at": iso(task.created_at),
        "updated_at": iso(task.updated_at),
        "created_by": user_out(creator) if creator else None,
    }


def queue_out(items: list[ConversationQueueItem]) -> dict[str, Any]:
    return {
        "messages": [
            {"id": str(item.id), "content": item.content, "trace_id": item.trace_id,
             "attached_context": item.attached_context or [], "created_at": iso(item.created_at),
             "updated_at": iso(item.updated_at)}
            for item in items
        ],
        "max_queue_messages": service.MAX_QUEUE_MESSAGES,
    }


def conversation_out(session: Session, conversation: Conversation, *, detail: bool) -> dict[str, Any]:
    owner = session.get(User, conversation.user_id)
    task = session.get(AgentTask, conversation.task_id) if conversation.task_id else None
    out: dict[str, Any] = {
        "id": str(conversation.id),
        "status": conversation.status,
        "title": conversation.title,
        "type": conversation.type,
        "user": user_out(owner) if owner else None,
        "created_at": iso(conversation.created_at),
        "updated_at": iso(conversation.updated_at),
        "has_unsupported_content": False,
        "agent_mode": conversation.agent_mode,
        "agent_runtime": conversation.agent_runtime,
        "is_sandbox": conversation.agent_runtime == "sandbox",
        "is_internal": False,
        "pending_approvals": conversation.pending_approvals or [],
        "task": task_out(task, owner),
        "latest_run": run_out(service.latest_run(session, conversation)),
    }
    if detail:
        out["messages"] = [conversation_message_out(m) for m in service.messages_of(session=session,
                                                                                     conversation=conversation)]
        out["queue"] = queue_out(service.queue_items(session, conversation))
    return out


def article_out(article: HelpArticle) -> dict[str, Any]:
    return {
        "id": str(article.id),
        "title": article.title,
        "body": article.body,
        "url": article.url,
        "tags": article.tags or [],
        "published": article.published,
        "created_at": iso(article.created_at),
        "updated_at": iso(article.updated_at),
    }


def _queue_full(exc: service.QueueFullError) -> JSONResponse:
    body = error_body(exc.type, exc.code, exc.detail, exc.attr, error="queue_full",
                      max_queue_messages=service.MAX_QUEUE_MESSAGES)
    return JSONResponse(body, status_code=409)


def _page(limit: str | None, offset: str | None, default: int = 50, maximum: int = 200) -> tuple[int, int]:
    return (ticket_query._parse_limit(limit, default, maximum, "limit"),
            ticket_query._parse_limit(offset, 0, 10**9, "offset"))


def _paginated(request: Request, count: int, limit: int, offset: int, results: list[Any]) -> dict[str, Any]:
    def url(at: int) -> str:
        return str(request.url.include_query_params(limit=limit, offset=at))

    return {
        "count": count,
        "next": url(offset + limit) if offset + len(results) < count else None,
        "previous": url(max(0, offset - limit)) if offset > 0 else None,
        "results": results,
    }


# -- conversations --------------------------------------------------------------------------

def list_conversations(request: Request, project_id: int, principal: Principal = Depends(READ),
                       limit: str | None = Query(None), offset: str | None = Query(None)) -> dict[str, Any]:
    limit_n, offset_n = _page(limit, offset)
    with session_scope(read_only=True) as session:
        count, rows = service.list_conversations(session=session, project_id=project_id, user_id=principal.user.id,
                                                 limit=limit_n, offset=offset_n)
        results = [conversation_out(session, c, detail=False) for c in rows]
    return _paginated(request, count, limit_n, offset_n, results)


def create_conversation(project_id: int, body: ConversationIn, principal: Principal = Depends(WRITE)) -> dict[str, Any]:
    with session_scope() as session:
        conversation = service.create_conversation(
            session=session, project_id=project_id, user_id=principal.user.id, conversation_id=body.id,
            title=body.title, agent_runtime=body.agent_runtime,
        )
        return conversation_out(session, conversation, detail=True)


# The collection itself: `conversations` and `conversations/` (SlashRouter cannot express an empty path).
for _path, _schema in (("", True), ("/", False)):
    router.add_api_route(_path, list_conversations, methods=["GET"], summary="List the caller's AI conversations",
                         include_in_schema=_schema)
    router.add_api_route(_path, create_conversation, methods=["POST"], status_code=201, include_in_schema=_schema,
                         summary="Create a conversation (agent_runtime sandbox, or langgraph: record-only)")


@router.get(CONVERSATION, summary="A conversation with its messages, latest run and queue")
def retrieve_conversation(project_id: int, conversation: uuid.UUID, principal: Principal = Depends(READ)) -> dict[str, Any]:
    with session_scope(read_only=True) as session:
        found = service.get_conversation(session=session, project_id=project_id, user_id=principal.user.id,
                                         conversation_id=conversation)
        return conversation_out(session, found, detail=True)


@router.post(CONVERSATION + "/open", summary="Create-or-resume a sandbox conversation; with content, process the turn",
             responses={204: {"description": "Warm request that provisioned nothing."},
                        400: {"description": "Conversation is not on the sandbox runtime."},
                        409: {"description": "The follow-up queue is full."}})
def open_conversation(project_id: int, conversation: uuid.UUID, body: OpenIn | None = None,
                      principal: Principal = Depends(WRITE)) -> Response:
    body = body or OpenIn()
    try:
        with session_scope() as session:
            outcome = service.open_conversation(
                session=session, project_id=project_id, user_id=principal.user.id, scopes=list(principal.scopes),
                conversation_id=conversation, content=body.content, trace_id=body.trace_id,
                attached_context=body.attached_context, initial_permission_mode=body.initial_permission_mode,
                task_id=body.task_id,
            )
            if outcome.run is None:
                return Response(status_code=204)
            result = {
                "task_id": str(outcome.task.id),
                "run_id": str(outcome.run.id),
                "trace_id": outcome.run.trace_id,
                "run_status": outcome.run.status,
                "just_created_run": outcome.just_created_run,
                "conversation_id": str(outcome.conversation.id),
                "queued": outcome.queued is not None,
                "queue_id": str(outcome.queued.id) if outcome.queued else None,
            }
    except service.QueueFullError as exc:
        return _queue_full(exc)
    return JSONResponse(result)


@router.patch(CONVERSATION + "/cancel", status_code=204, summary="Cancel the conversation's in-progress run",
              responses={422: {"description": "Nothing to cancel."}})
def cancel_conversation(project_id: int, conversation: uuid.UUID, principal: Principal = Depends(WRITE)) -> Response:
    with session_scope() as session:
        service.cancel_conversation(session=session, project_id=project_id, user_id=principal.user.id,
                                    conversation_id=conversation)
    return Response(status_code=204)


# POST as well: clients that treat cancel as an action rather than an update.
router.post(CONVERSATION + "/cancel", status_code=204, include_in_schema=False)(cancel_conversation)


@router.get(CONVERSATION + "/queue", summary="The follow-up messages waiting for the current run")
def get_queue(project_id: int, conversation: uuid.UUID, principal: Principal = Depends(READ)) -> dict[str, Any]:
    with session_scope(read_only=True) as session:
        return queue_out(service.list_queue(session=session, project_id=project_id, user_id=principal.user.id,
                                            conversation_id=conversation))


@router.post(CONVERSATION + "/queue", summary="Queue a follow-up message (at most 2)",
             responses={409: {"description": "queue_full"}})
def add_to_queue(project_id: int, conversation: uuid.UUID, body: QueueIn,
                 principal: Principal = Depends(WRITE)) -> Response:
    try:
        with session_scope() as session:
            items = service.add_to_queue(
                session=session, project_id=project_id, user_id=principal.user.id, scopes=list(principal.scopes),
                conversation_id=conversation, content=body.content, trace_id=body.trace_id,
                attached_context=body.attached_context,
            )
            result = queue_out(items)
    except service.QueueFullError as exc:
        return _queue_full(exc)
    return JSONResponse(result)


@router.post(CONVERSATION + "/queue/clear", summary="Remove every queued message")
def clear_queue(project_id: int, conversation: uuid.UUID, principal: Principal = Depends(WRITE)) -> dict[str, Any]:
    with session_scope() as session:
        return queue_out(service.clear_queue(session=session, project_id=project_id, user_id=principal.user.id,
                                             conversation_id=conversation))


@router.patch(CONVERSATION + "/queue/{queue_id}", summary="Edit a queued message")
def update_queue_item(project_id: int, conversation: uuid.UUID, queue_id: str, body: ContentIn,
                      principal: Principal = Depends(WRITE)) -> dict[str, Any]:
    with session_scope() as session:
        return queue_out(service.update_queue_item(session=session, project_id=project_id, user_id=principal.user.id,
                                                   conversation_id=conversation, queue_id=queue_id,
                                                   content=body.content))


@router.delete(CONVERSATION + "/queue/{queue_id}", summary="Remove a queued message")
def delete_queue_item(project_id: int, conversation: uuid.UUID, queue_id: str,
                      principal: Principal = Depends(WRITE)) -> dict[str, Any]:
    with session_scope() as session:
        return queue_out(service.delete_queue_item(session=session, project_id=project_id, user_id=principal.user.id,
                                                   conversation_id=conversation, queue_id=queue_id))


@router.post(CONVERSATION + "/append_message", status_code=201,
             summary="Append a message without running the agent")
def append_message(project_id: int, conversation: uuid.UUID, body: AppendIn,
                   principal: Principal = Depends(WRITE)) -> dict[str, Any]:
    with session_scope() as session:
        message = service.append_message(session=session, project_id=project_id, user_id=principal.user.id,
                                         conversation_id=conversation, content=body.content, role=body.role)
        return conversation_message_out(message)


# -- runs -----------------------------------------------------------------------------------

def _owned_run(project_id: int, user_id: int, conversation: uuid.UUID, run_id: uuid.UUID) -> dict[str, Any] | None:
    with session_scope(read_only=True) as session:
        found = service.get_conversation(session=session, project_id=project_id, user_id=user_id,
                                         conversation_id=conversation)
        return run_out(service.get_run(session=session, conversation=found, run_id=run_id))


@router.get(CONVERSATION + "/runs/{run_id:uuid}", summary="A run's status")
def retrieve_run(project_id: int, conversation: uuid.UUID, run_id: uuid.UUID,
                 principal: Principal = Depends(READ)) -> dict[str, Any] | None:
    return _owned_run(project_id, principal.user.id, conversation, run_id)


def _event_out(event: Any) -> dict[str, Any]:
    return {"id": event.seq, "event": event.kind, "data": event.data, "created_at": iso(event.created_at)}


@router.get(CONVERSATION + "/runs/{run_id:uuid}/events", summary="A run's events after `after` (polling clients)")
def list_run_events(project_id: int, conversation: uuid.UUID, run_id: uuid.UUID,
                    principal: Principal = Depends(READ), after: int = Query(0, ge=0),
                    limit: int = Query(500, ge=1, le=1000)) -> dict[str, Any]:
    run = _owned_run(project_id, principal.user.id, conversation, run_id)
    with session_scope(read_only=True) as session:
        events = service.read_events(session=session, run_id=run_id, after_seq=after, limit=limit)
        return {"run": run, "events": [_event_out(e) for e in events]}


def _poll(run_id: uuid.UUID, after: int) -> tuple[list[Any], str | None]:
    with session_scope(read_only=True) as session:
        # Status first: on PostgreSQL each statement sees the latest commit, so a terminal
        # status read before the events guarantees the `end` event is among them.
        status = session.scalar(select(AgentRun.status).where(AgentRun.id == run_id))
        events = service.read_events(session=session, run_id=run_id, after_seq=after, limit=500)
        for event in events:
            session.expunge(event)
        return events, status


def _sse(event: Any) -> str:
    return f"id: {event.seq}\nevent: {event.kind}\ndata: {json.dumps(event.data, default=str)}\n\n"


@router.get(CONVERSATION + "/runs/{run_id:uuid}/stream",
            summary="Server-sent events of a run (token, tool_call, tool_result, status, end); "
                    "resume with Last-Event-ID")
async def stream_run(request: Request, project_id: int, conversation: uuid.UUID, run_id: uuid.UUID,
                     principal: Principal = Depends(READ),
                     last_event_id: str | None = Header(None, alias="Last-Event-ID"),
                     after: int | None = Query(None, ge=0, description="Resume after this event id")) -> Response:
    await run_in_threadpool(_owned_run, project_id, principal.user.id, conversation, run_id)
    start = after if after is not None else 0
    if last_event_id and last_event_id.strip().isdigit():
        start = int(last_event_id.strip())

    async def events() -> AsyncIterator[str]:
        seen = start
        yield "retry: 1000\n\n"
        quiet_since = time.monotonic()
        while True:
            if await request.is_disconnected():
                return
            batch, status = await run_in_threadpool(_poll, run_id, seen)
            for event in batch:
                yield _sse(event)
                seen = event.seq
                if event.kind == "end":
                    return
            if batch:
                quiet_since = time.monotonic()
                continue
            if status in ("completed", "failed", "cancelled"):
                return  # resumed after the end: nothing more will come
            if time.monotonic() - quiet_since >= SSE_KEEPALIVE_SECONDS:
                quiet_since = time.monotonic()
                yield ": keep-alive\n\n"
            await asyncio.sleep(SSE_POLL_SECONDS)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


# -- help articles --------------------------------------------------------------------------

@router.get("/articles", summary="List help articles")
def list_articles(request: Request, project_id: int, principal: Principal = Depends(READ),
                  search: str | None = Query(None, max_length=200), limit: str | None = Query(None),
                  offset: str | None = Query(None)) -> dict[str, Any]:
    limit_n, offset_n = _page(limit, offset, default=100, maximum=1000)
    with session_scope(read_only=True) as session:
        count, rows = knowledge.list_articles(session=session, project_id=project_id, limit=limit_n, offset=offset_n,
                                              search=search)
        return _paginated(request, count, limit_n, offset_n, [article_out(a) for a in rows])


@router.post("/articles", status_code=201, summary="Create a help article")
def create_article(project_id: int, body: ArticleIn, principal: Principal = Depends(WRITE)) -> dict[str, Any]:
    with session_scope() as session:
        article = knowledge.create_article(session=session, project_id=project_id,
                                           data=body.model_dump(exclude_unset=True))
        return article_out(article)


@router.get("/articles/{article_id}", summary="A help article")
def retrieve_article(project_id: int, article_id: str, principal: Principal = Depends(READ)) -> dict[str, Any]:
    with session_scope(read_only=True) as session:
        return article_out(knowledge.get_article(session=session, project_id=project_id, article_id=article_id))


@router.patch("/articles/{article_id}", summary="Update a help article")
def update_article(project_id: int, article_id: str, body: ArticleIn,
                   principal: Principal = Depends(WRITE)) -> dict[str, Any]:
    with session_scope() as session:
        article = knowledge.get_article(session=session, project_id=project_id, article_id=article_id)
        return article_out(knowledge.update_article(session=session, article=article,
                                                    data=body.model_dump(exclude_unset=True)))


@router.delete("/articles/{article_id}", status_code=204, summary="Delete a help article")
def delete_article(project_id: int, article_id: str, principal: Principal = Depends(WRITE)) -> Response:
    with session_scope() as session:
        article = knowledge.get_article(session=session, project_id=project_id, article_id=article_id)
        knowledge.delete_article(session=session, article=article)
    return Response(status_code=204)


# -- AI for tickets -------------------------------------------------------------------------

def _settings_out(settings: Any) -> dict[str, Any]:
    return {
        "auto_triage": settings.auto_triage,
        "auto_answer": settings.auto_answer,
        "auto_answer_channels": list(settings.auto_answer_channels or []),
        "answer_confidence": settings.answer_confidence,
    }


@router.get("/ai_settings", summary="The project's AI settings for tickets")
def get_ai_settings(project_id: int, principal: Principal = Depends(TICKET_READ)) -> dict[str, Any]:
    with session_scope(read_only=True) as session:
        return _settings_out(ai_tickets.settings_for(session=session, project_id=project_id))


@router.patch("/ai_settings", summary="Change the project's AI settings for tickets")
def update_ai_settings(project_id: int, body: AISettingsIn, principal: Principal = Depends(TICKET_WRITE)) -> dict[str, Any]:
    with session_scope() as session:
        return _settings_out(ai_tickets.update_settings(session=session, project_id=project_id,
                                                        changes=body.model_dump(exclude_unset=True)))


def _ticket(project_id: int, ticket_id: str) -> dict[str, Any]:
    from api.tickets import serialise

    with session_scope(read_only=True) as session:
        return serialise(session, [ticket_service.get_ticket(session=session, project_id=project_id, ref=ticket_id)])[0]


@router.post("/tickets/{ticket_id}/ai/triage", summary="Triage a ticket now (fills ai_triage)")
def triage_ticket(project_id: int, ticket_id: str, principal: Principal = Depends(TICKET_WRITE)) -> dict[str, Any]:
    ai_tickets.triage_ticket(project_id=project_id, ticket_ref=ticket_id)
    return _ticket(project_id, ticket_id)


@router.post("/tickets/{ticket_id}/ai/draft", status_code=201,
             summary="Draft an answer to the customer (a private ai_draft message)")
def draft_answer(project_id: int, ticket_id: str, principal: Principal = Depends(TICKET_WRITE)) -> dict[str, Any]:
    return message_out(ai_tickets.draft_answer(project_id=project_id, ticket_ref=ticket_id))


@router.post("/tickets/{ticket_id}/ai/auto_answer",
             summary="Answer the customer now if the agent is confident, else escalate")
def auto_answer(project_id: int, ticket_id: str, principal: Principal = Depends(TICKET_WRITE)) -> dict[str, Any]:
    outcome = ai_tickets.auto_answer(project_id=project_id, ticket_ref=ticket_id)
    return {"outcome": outcome, "ticket": _ticket(project_id, ticket_id)}


@router.post("/tickets/{ticket_id}/messages/{message_id}/send_draft", status_code=201,
             summary="Send an AI draft to the customer as your reply (optionally edited)")
def send_draft(project_id: int, ticket_id: str, message_id: str, body: SendDraftIn | None = None,
               principal: Principal = Depends(TICKET_WRITE)) -> dict[str, Any]:
    with session_scope() as session:
        ticket = ticket_service.get_ticket(session=session, project_id=project_id, ref=ticket_id, for_update=True)
        sent = ai_tickets.send_draft(session=session, ticket=ticket, message_id=message_id, author=principal.user,
                                     content=body.content if body else None)
        return message_out(sent)


def mount(app: FastAPI) -> None:
    include_project_router(app, router)
