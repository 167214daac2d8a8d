"""AI conversations: open (create-or-resume), cancel, the follow-up queue, append_message, and
the execution of runs by the workers.

A conversation has at most one active run (queued with input, or in progress). Content that
arrives while one is active waits in the queue (at most `MAX_QUEUE_MESSAGES`); when a run
ends, however it ends, the oldest queued message starts the next run. A warm run (queued,
no input yet) is what an open without content provisions: the client gets its handle to
follow before it sends the first message, which then runs on it.

`execute_run` runs on a worker. It claims the run atomically, streams the runtime's events
into numbered run events and into the assistant message, refreshes the run's heartbeat,
and checks for a cancel request between events (a cache flag, every 50 ms, and the run row
at every flush), so a cancel is honoured well within a second. The database is the source
of truth: `fail_stale_runs` (the sweeper) fails runs whose worker died.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.cache import get_cache
from core.clock import as_utc, now
from core.db import run_after_commit, session_scope
from models import (
    AgentRun,
    AgentRunEvent,
    AgentTask,
    Conversation,
    ConversationMessage,
    ConversationQueueItem,
)
from models.conversation import ACTIVE_RUN_STATUSES
from services.agent import get_runtime
from services.agent.base import (
    AgentRequest,
    AgentRuntime,
    AgentRuntimeError,
    AnswerEnd,
    TokenEvent,
    ToolCallEvent,
    ToolResultEvent,
    Turn,
)
from services.agent.tools import TicketwireToolbox
from services.dispatch import after_commit
from services.errors import (
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    UnprocessableError,
    ValidationError,
)

log = logging.getLogger(__name__)

MAX_QUEUE_MESSAGES = 2
MAX_CONTENT_LENGTH = 20_000
HISTORY_TURNS = 20
FLUSH_INTERVAL = 0.1  # seconds between writes of coalesced tokens
CACHE_POLL_INTERVAL = 0.05
HEARTBEAT_INTERVAL = 2.0
CANCEL_DB_POLL_INTERVAL = 0.5  # when no write happened meanwhile (a write checks it anyway)
STALE_AFTER = timedelta(seconds=60)
WARM_RUN_TTL = timedelta(minutes=15)
TOOL_RESULT_CHARS = 4000


class QueueFullError(ConflictError):
    code = "queue_full"


@dataclass(frozen=True)
class OpenOutcome:
    conversation: Conversation
    task: AgentTask
    run: AgentRun | None
    just_created_run: bool
    queued: ConversationQueueItem | None = None


# -- lookups --------------------------------------------------------------------------------

def _is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _load(session: Session, conversation_id: uuid.UUID, *, for_update: bool) -> Conversation | None:
    query = select(Conversation).where(Conversation.id == conversation_id)
    if for_update and _is_postgres(session):
        query = query.with_for_update()
    return session.scalar(query.execution_options(populate_existing=True))


def _check_owner(conversation: Conversation, *, project_id: int, user_id: int) -> Conversation:
    if conversation.project_id != project_id:
        raise NotFoundError("Not found.")
    if conversation.user_id != user_id:
        raise PermissionDeniedError("This conversation belongs to another user.")
    return conversation


def get_conversation(
    *, session: Session, project_id: int, user_id: int, conversation_id: uuid.UUID, for_update: bool = False
) -> Conversation:
    """The user's conversation: another project's (or none) is 404, another user's is 403."""
    found = _load(session, conversation_id, for_update=for_update)
    if found is None:
        raise NotFoundError("Not found.")
    return _check_owner(found, project_id=project_id, user_id=user_id)


def get_or_create_conversation(
    *, session: Session, project_id: int, user_id: int, conversation_id: uuid.UUID, agent_runtime: str = "sandbox",
    title: str | None = None, agent_mode: str | None = None,
) -> tuple[Conversation, bool]:
    """Create the conversation on first use from the client's id; locked for this transaction."""
    found = _load(session, conversation_id, for_update=True)
    if found is not None:
        return _check_owner(found, project_id=project_id, user_id=user_id), False
    stamp = now()
    conversation = Conversation(
        id=conversation_id, project_id=project_id, user_id=user_id, status="idle", title=title, type="assistant",
        agent_runtime=agent_runtime, agent_mode=agent_mode, pending_approvals=[], created_at=stamp, updated_at=stamp,
    )
    try:
        with session.begin_nested():
            session.add(conversation)
    except IntegrityError:
        # Two opens raced to create it: the other one won; use its row.
        found = _load(session, conversation_id, for_update=True)
        if found is None:
            raise
        return _check_owner(found, project_id=project_id, user_id=user_id), False
    return conversation, True


def list_conversations(
    *, session: Session, project_id: int, user_id: int, limit: int, offset: int
) -> tuple[int, list[Conversation]]:
    query = select(Conversation).where(Conversation.project_id == project_id, Conversation.user_id == user_id)
    count = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(
        query.order_by(Conversation.updated_at.desc(), Conversation.id).limit(limit).offset(offset)
    ).all()
    return int(count), list(rows)


def messages_of(*, session: Session, conversation: Conversation) -> list[ConversationMessage]:
    return list(
        session.scalars(
            select(ConversationMessage)
            .where(ConversationMessage.conversation_id == conversation.id)
            .order_by(ConversationMessage.created_at, ConversationMessage.id)
        )
    )


def active_run(session: Session, conversation: Conversation) -> AgentRun | None:
    """The run doing (or about to do) a turn: queued with input, or in progress."""
    return session.scalar(
        select(AgentRun)
        .where(AgentRun.conversation_id == conversation.id, AgentRun.status.in_(ACTIVE_RUN_STATUSES),
               AgentRun.input.is_not(None))
        .order_by(AgentRun.created_at.desc())
        .limit(1)
    )


def warm_run(session: Session, conversation: Conversation) -> AgentRun | None:
    return session.scalar(
        select(AgentRun)
        .where(AgentRun.conversation_id == conversation.id, AgentRun.status == "queued", AgentRun.input.is_(None))
        .order_by(AgentRun.created_at.desc())
        .limit(1)
    )


def latest_run(session: Session, conversation: Conversation) -> AgentRun | None:
    return session.scalar(
        select(AgentRun).where(AgentRun.conversation_id == conversation.id)
        .order_by(AgentRun.created_at.desc(), AgentRun.id).limit(1)
    )


def get_run(*, session: Session, conversation: Conversation, run_id: uuid.UUID) -> AgentRun:
    run = session.get(AgentRun, run_id)
    if run is None or run.conversation_id != conversation.id:
        raise NotFoundError("Not found.", attr="run_id")
    return run


# -- open -----------------------------------------------------------------------------------

def _validate_content(content: Any, attr: str = "content") -> str:
    if not isinstance(content, str) or not content.strip():
        raise ValidationError("This field may not be blank.", attr=attr)
    if len(content) > MAX_CONTENT_LENGTH:
        raise ValidationError(f"Ensure this field has no more than {MAX_CONTENT_LENGTH} characters.", attr=attr)
    return content


def _ensure_task(session: Session, conversation: Conversation, *, user_id: int, task_id: Any) -> AgentTask:
    task = session.get(AgentTask, conversation.task_id) if conversation.task_id else None
    if task_id not in (None, ""):
        try:
            wanted = uuid.UUID(str(task_id))
        except ValueError:
            raise ValidationError("task_id must be a UUID.", attr="task_id") from None
        if task is None or task.id != wanted:
            raise ValidationError("task_id is not this conversation's task.", attr="task_id")
    if task is None:
        stamp = now()
        task = AgentTask(
            id=uuid.uuid4(), project_id=conversation.project_id, conversation_id=conversation.id,
            title=conversation.title or "", description="", origin_product="conversations", created_by_id=user_id,
            archived=False, created_at=stamp, updated_at=stamp,
        )
        session.add(task)
        session.flush()
        conversation.task_id = task.id
    return task


def _new_run(session: Session, conversation: Conversation, task: AgentTask, *, user_id: int, trace_id: str | None,
             scopes: list[str]) -> AgentRun:
    run = AgentRun(
        id=uuid.uuid4(), project_id=conversation.project_id, conversation_id=conversation.id, task_id=task.id,
        user_id=user_id, status="queued", trace_id=trace_id or str(uuid.uuid4()), input=None, scopes=list(scopes),
        attempts=0, last_event_seq=0, created_at=now(),
    )
    session.add(run)
    task.latest_run_id = run.id
    task.updated_at = now()
    session.flush()
    return run


def _title_from(content: str) -> str:
    line = content.strip().splitlines()[0] if content.strip() else ""
    return line[:80] + ("…" if len(line) > 80 else "")


def _start_turn(session: Session, conversation: Conversation, run: AgentRun, *, content: str,
                attached_context: list[Any] | None, trace_id: str | None) -> None:
    """Give `run` its input, store the user's message, and hand the run to the workers."""
    stamp = now()
    message = ConversationMessage(
        id=uuid.uuid4(), conversation_id=conversation.id, run_id=run.id, role="user", content=content,
        status="complete", attached_context=attached_context or None, trace_id=trace_id or run.trace_id,
        created_at=stamp, updated_at=stamp,
    )
    session.add(message)
    run.input = content
    run.attached_context = attached_context or None
    if trace_id:
        run.trace_id = trace_id
    run.user_message_id = message.id
    conversation.status = "in_progress"
    conversation.title = conversation.title or _title_from(content)
    conversation.updated_at = stamp
    session.flush()
    after_commit(session, "run", run.id)


def open_conversation(
    *,
    session: Session,
    project_id: int,
    user_id: int,
    scopes: list[str],
    conversation_id: uuid.UUID,
    content: Any = None,
    trace_id: Any = None,
    attached_context: Any = None,
    initial_permission_mode: Any = None,
    task_id: Any = None,
) -> OpenOutcome:
    """Create-or-resume. With content: a run for the turn, or a queued follow-up when one is in
    progress. Without: a warm run, unless one is active or warm already (run None = nothing provisioned)."""
    if content is not None and not isinstance(content, str):
        raise ValidationError("content must be a string or null.", attr="content")
    if trace_id is not None and (not isinstance(trace_id, str) or len(trace_id) > 200):
        raise ValidationError("trace_id must be a string of at most 200 characters.", attr="trace_id")
    if attached_context is not None and not isinstance(attached_context, list):
        raise ValidationError("attached_context must be a list.", attr="attached_context")
    if initial_permission_mode is not None and not isinstance(initial_permission_mode, str):
        raise ValidationError("initial_permission_mode must be a string.", attr="initial_permission_mode")
    text = content if isinstance(content, str) and content.strip() else None
    if text is not None:
        _validate_content(text)

    conversation, created = get_or_create_conversation(
        session=session, project_id=project_id, user_id=user_id, conversation_id=conversation_id,
        agent_mode=initial_permission_mode,
    )
    if conversation.agent_runtime != "sandbox":
        raise ValidationError("This conversation is not on the sandbox runtime.", attr="conversation",
                              code="not_sandbox_runtime")
    task = _ensure_task(session, conversation, user_id=user_id, task_id=task_id)

    if text is None:
        if active_run(session, conversation) or warm_run(session, conversation):
            return OpenOutcome(conversation, task, None, just_created_run=False)
        run = _new_run(session, conversation, task, user_id=user_id, trace_id=trace_id, scopes=scopes)
        conversation.updated_at = now()
        return OpenOutcome(conversation, task, run, just_created_run=True)

    current = active_run(session, conversation)
    if current is not None:
        item = _enqueue(session, conversation, content=text, trace_id=trace_id, attached_context=attached_context)
        return OpenOutcome(conversation, task, current, just_created_run=False, queued=item)
    run = warm_run(session, conversation)
    just_created = run is None
    if run is None:
        run = _new_run(session, conversation, task, user_id=user_id, trace_id=trace_id, scopes=scopes)
    else:
        run.scopes, run.user_id = list(scopes), user_id
    _start_turn(session, conversation, run, content=text, attached_context=attached_context, trace_id=trace_id)
    return OpenOutcome(conversation, task, run, just_created_run=just_created)


# -- cancel ---------------------------------------------------------------------------------

def _cancel_key(run_id: uuid.UUID | str) -> str:
    return f"agent-cancel:{run_id}"


def cancel_conversation(*, session: Session, project_id: int, user_id: int, conversation_id: uuid.UUID) -> None:
    """Stop the in-progress run: the conversation shows `canceling` until the worker stops it.
    Already canceling is accepted again; nothing to cancel raises UnprocessableError (422)."""
    conversation = get_conversation(session=session, project_id=project_id, user_id=user_id,
                                    conversation_id=conversation_id, for_update=True)
    run = active_run(session, conversation)
    if conversation.status == "canceling" and run is not None:
        return
    if run is None:
        raise UnprocessableError("Nothing to cancel: no run is in progress.", code="nothing_to_cancel")
    stamp = now()
    run.cancel_requested_at = stamp
    if run.status == "queued":
        # Not picked up by a worker yet: cancelled right here (the claim will find nothing).
        finish_run(session=session, run=run, status="cancelled", error=None)
        return
    conversation.status = "canceling"
    conversation.updated_at = stamp
    run_id = run.id

    run_after_commit(session, lambda: get_cache().set(_cancel_key(run_id), 1, ttl=3600))


# -- queue ----------------------------------------------------------------------------------

def queue_items(session: Session, conversation: Conversation) -> list[ConversationQueueItem]:
    return list(
        session.scalars(
            select(ConversationQueueItem)
            .where(ConversationQueueItem.conversation_id == conversation.id)
            .order_by(ConversationQueueItem.position, ConversationQueueItem.created_at)
        )
    )


def _enqueue(session: Session, conversation: Conversation, *, content: str, trace_id: Any,
             attached_context: Any) -> ConversationQueueItem:
    items = queue_items(session, conversation)
    if len(items) >= MAX_QUEUE_MESSAGES:
        raise QueueFullError(f"The queue already holds {MAX_QUEUE_MESSAGES} messages.", code="queue_full")
    stamp = now()
    item = ConversationQueueItem(
        id=uuid.uuid4(), conversation_id=conversation.id, position=(items[-1].position + 1) if items else 1,
        content=content, trace_id=trace_id if isinstance(trace_id, str) else None,
        attached_context=attached_context if isinstance(attached_context, list) else None,
        created_at=stamp, updated_at=stamp,
    )
    session.add(item)
    conversation.updated_at = stamp
    session.flush()
    return item


def _queue_conversation(session: Session, *, project_id: int, user_id: int,
                        conversation_id: uuid.UUID) -> Conversation:
    conversation = get_conversation(session=session, project_id=project_id, user_id=user_id,
                                    conversation_id=conversation_id, for_update=True)
    return conversation


def add_to_queue(
    *, session: Session, project_id: int, user_id: int, scopes: list[str], conversation_id: uuid.UUID,
    content: Any, trace_id: Any = None, attached_context: Any = None,
) -> list[ConversationQueueItem]:
    """Queue a follow-up. On an idle conversation it starts at once (the queue never waits on nothing)."""
    conversation = _queue_conversation(session, project_id=project_id, user_id=user_id,
                                       conversation_id=conversation_id)
    text = _validate_content(content)
    if conversation.agent_runtime != "sandbox":
        raise ValidationError("This conversation is not on the sandbox runtime.", attr="conversation",
                              code="not_sandbox_runtime")
    _enqueue(session, conversation, content=text, trace_id=trace_id, attached_context=attached_context)
    if active_run(session, conversation) is None:
        drain_queue(session=session, conversation=conversation, scopes=scopes)
    return queue_items(session, conversation)


def _queue_item(session: Session, conversation: Conversation, item_id: str) -> ConversationQueueItem:
    try:
        wanted = uuid.UUID(str(item_id))
    except ValueError:
        raise NotFoundError("Queued message not found.", attr="queue_id") from None
    item = session.get(ConversationQueueItem, wanted)
    if item is None or item.conversation_id != conversation.id:
        raise NotFoundError("Queued message not found.", attr="queue_id")
    return item


def update_queue_item(
    *, session: Session, project_id: int, user_id: int, conversation_id: uuid.UUID, queue_id: str, content: Any
) -> list[ConversationQueueItem]:
    conversation = _queue_conversation(session, project_id=project_id, user_id=user_id,
                                       conversation_id=conversation_id)
    item = _queue_item(session, conversation, queue_id)
    item.content = _validate_content(content)
    item.updated_at = now()
    session.flush()
    return queue_items(session, conversation)


def delete_queue_item(
    *, session: Session, project_id: int, user_id: int, conversation_id: uuid.UUID, queue_id: str
) -> list[ConversationQueueItem]:
    conversation = _queue_conversation(session, project_id=project_id, user_id=user_id,
                                       conversation_id=conversation_id)
    session.delete(_queue_item(session, conversation, queue_id))
    session.flush()
    return queue_items(session, conversation)


def clear_queue(
    *, session: Session, project_id: int, user_id: int, conversation_id: uuid.UUID
) -> list[ConversationQueueItem]:
    conversation = _queue_conversation(session, project_id=project_id, user_id=user_id,
                                       conversation_id=conversation_id)
    session.execute(delete(ConversationQueueItem).where(ConversationQueueItem.conversation_id == conversation.id))
    return []


def list_queue(*, session: Session, project_id: int, user_id: int,
               conversation_id: uuid.UUID) -> list[ConversationQueueItem]:
    conversation = get_conversation(session=session, project_id=project_id, user_id=user_id,
                                    conversation_id=conversation_id)
    return queue_items(session, conversation)


def drain_queue(*, session: Session, conversation: Conversation, scopes: list[str]) -> AgentRun | None:
    """Start the oldest queued message as the next run when nothing is active."""
    if active_run(session, conversation) is not None:
        return None
    items = queue_items(session, conversation)
    if not items:
        return None
    item = items[0]
    task = _ensure_task(session, conversation, user_id=conversation.user_id, task_id=None)
    run = warm_run(session, conversation) or _new_run(
        session, conversation, task, user_id=conversation.user_id, trace_id=item.trace_id, scopes=scopes
    )
    _start_turn(session, conversation, run, content=item.content, attached_context=item.attached_context,
                trace_id=item.trace_id)
    session.delete(item)
    session.flush()
    return run


# -- append_message -------------------------------------------------------------------------

def append_message(
    *, session: Session, project_id: int, user_id: int, conversation_id: uuid.UUID, content: Any, role: Any = None
) -> ConversationMessage:
    """Store a client-generated message (e.g. a ticket confirmation) without running the agent."""
    conversation = get_conversation(session=session, project_id=project_id, user_id=user_id,
                                    conversation_id=conversation_id, for_update=True)
    text = _validate_content(content)
    role = role or "assistant"
    if role not in ("assistant", "user", "system"):
        raise ValidationError("role must be one of assistant, user, system.", attr="role")
    stamp = now()
    message = ConversationMessage(
        id=uuid.uuid4(), conversation_id=conversation.id, run_id=None, role=role, content=text, status="complete",
        created_at=stamp, updated_at=stamp,
    )
    session.add(message)
    conversation.updated_at = stamp
    session.flush()
    return message


def create_conversation(
    *, session: Session, project_id: int, user_id: int, conversation_id: uuid.UUID | None, title: Any = None,
    agent_runtime: Any = "sandbox",
) -> Conversation:
    """POST conversations/: create a conversation explicitly (409 when the id exists)."""
    if agent_runtime not in ("sandbox", "langgraph"):
        raise ValidationError("agent_runtime must be sandbox or langgraph.", attr="agent_runtime")
    if title is not None and (not isinstance(title, str) or len(title) > 250):
        raise ValidationError("title must be a string of at most 250 characters.", attr="title")
    conversation_id = conversation_id or uuid.uuid4()
    if _load(session, conversation_id, for_update=False) is not None:
        raise ConflictError("A conversation with this id already exists.", attr="id")
    conversation, _ = get_or_create_conversation(
        session=session, project_id=project_id, user_id=user_id, conversation_id=conversation_id,
        agent_runtime=agent_runtime, title=title,
    )
    return conversation


# -- run events -----------------------------------------------------------------------------

def read_events(*, session: Session, run_id: uuid.UUID, after_seq: int, limit: int = 500) -> list[AgentRunEvent]:
    return list(
        session.scalars(
            select(AgentRunEvent).where(AgentRunEvent.run_id == run_id, AgentRunEvent.seq > after_seq)
            .order_by(AgentRunEvent.seq).limit(limit)
        )
    )


def _add_event(session: Session, run: AgentRun, kind: str, data: dict[str, Any]) -> int:
    run.last_event_seq = (run.last_event_seq or 0) + 1
    session.add(AgentRunEvent(run_id=run.id, seq=run.last_event_seq, kind=kind, data=data, created_at=now()))
    return run.last_event_seq


def finish_run(
    *, session: Session, run: AgentRun, status: str, error: str | None, end: AnswerEnd | None = None,
    content: str | None = None, tool_calls: list[dict[str, Any]] | None = None,
) -> AgentRun | None:
    """End a run (in the caller's transaction): final events, the assistant message, the
    conversation back to idle, and the next queued message started. Returns that next run."""
    stamp = now()
    run.status = status
    run.error = error
    run.finished_at = stamp
    message = session.get(ConversationMessage, run.assistant_message_id) if run.assistant_message_id else None
    if message is not None:
        if content is not None:
            message.content = content
        message.status = {"completed": "complete"}.get(status, status)
        if end is not None:
            message.citations = [s.as_dict() for s in end.citations] or None
        if tool_calls:
            message.tool_calls = tool_calls
        message.updated_at = stamp
    _add_event(session, run, "status", {"status": status})
    _add_event(session, run, "end", {
        "status": status,
        "message_id": str(message.id) if message is not None else None,
        "citations": [s.as_dict() for s in end.citations] if end else [],
        "confidence": end.confidence if end else None,
        "declined": end.declined if end else None,
        "error": error,
    })
    conversation = _load(session, run.conversation_id, for_update=True)
    if conversation is None:
        return None
    conversation.status = "idle"
    conversation.updated_at = stamp
    session.flush()
    next_run = drain_queue(session=session, conversation=conversation, scopes=list(run.scopes or []))
    get_cache().delete(_cancel_key(run.id))
    return next_run


# -- execution (workers) --------------------------------------------------------------------

def _worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"[:100]


def _history(session: Session, run: AgentRun) -> list[Turn]:
    rows = session.execute(
        select(ConversationMessage.role, ConversationMessage.content)
        .where(ConversationMessage.conversation_id == run.conversation_id,
               ConversationMessage.role.in_(("user", "assistant")),
               ConversationMessage.status == "complete",
               ConversationMessage.id != run.user_message_id)
        .order_by(ConversationMessage.created_at.desc(), ConversationMessage.id.desc())
        .limit(HISTORY_TURNS)
    ).all()
    return [Turn(role=role, content=content[:4000]) for role, content in reversed(rows)]


@dataclass
class _Writer:
    """Buffers a run's output and writes it in short transactions (tokens coalesced)."""

    run_id: uuid.UUID
    text: list[str] = field(default_factory=list)
    pending_tokens: list[str] = field(default_factory=list)
    pending_events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    end: AnswerEnd | None = None
    first_token_written: bool = False
    last_write: float = 0.0
    last_check: float = 0.0

    def add(self, item: object) -> bool:
        """Take one runtime event; True when it should be written at once."""
        if isinstance(item, TokenEvent):
            self.text.append(item.text)
            self.pending_tokens.append(item.text)
            return not self.first_token_written
        self._tokens_to_event()
        if isinstance(item, ToolCallEvent):
            self.pending_events.append(("tool_call", {"id": item.call_id, "name": item.name,
                                                      "arguments": item.arguments}))
            self.tool_calls.append({"id": item.call_id, "name": item.name, "arguments": item.arguments})
            return True
        if isinstance(item, ToolResultEvent):
            result = item.result
            preview = result if len(repr(result)) <= TOOL_RESULT_CHARS else repr(result)[:TOOL_RESULT_CHARS] + "…"
            self.pending_events.append(("tool_result", {"id": item.call_id, "name": item.name, "result": preview,
                                                        "is_error": item.is_error}))
            for call in self.tool_calls:
                if call["id"] == item.call_id:
                    call["is_error"] = item.is_error
            return True
        if isinstance(item, AnswerEnd):
            self.end = item
        return False

    def _tokens_to_event(self) -> None:
        if self.pending_tokens:
            self.pending_events.append(("token", {"delta": "".join(self.pending_tokens)}))
            self.pending_tokens = []

    def flush(self) -> bool:
        """Write what is buffered and refresh the heartbeat. True when the run must stop
        (cancel requested, or the sweeper already ended it)."""
        self._tokens_to_event()
        with session_scope() as session:
            query = select(AgentRun).where(AgentRun.id == self.run_id)
            if _is_postgres(session):
                query = query.with_for_update()
            run = session.scalar(query)
            if run is None or run.status != "in_progress":
                return True
            stamp = now()
            wrote_token = False
            for kind, data in self.pending_events:
                _add_event(session, run, kind, data)
                wrote_token = wrote_token or kind == "token"
            self.pending_events = []
            if wrote_token and run.first_token_at is None:
                run.first_token_at = stamp
                self.first_token_written = True
            run.heartbeat_at = stamp
            if run.assistant_message_id:
                session.execute(
                    update(ConversationMessage).where(ConversationMessage.id == run.assistant_message_id)
                    .values(content="".join(self.text), updated_at=stamp)
                )
            self.last_write = self.last_check = time.monotonic()
            return run.cancel_requested_at is not None

    def must_stop(self) -> bool:
        """A read-only look at the run row: cancel requested, or ended by the sweeper."""
        self.last_check = time.monotonic()
        with session_scope(read_only=True) as session:
            row = session.execute(
                select(AgentRun.status, AgentRun.cancel_requested_at).where(AgentRun.id == self.run_id)
            ).one_or_none()
        return row is None or row[0] != "in_progress" or row[1] is not None


def _claim(run_id: uuid.UUID, runtime_name: str) -> AgentRun | None:
    """queued → in_progress, atomically (a duplicate broker message finds nothing to claim)."""
    with session_scope() as session:
        stamp = now()
        claimed = session.execute(
            update(AgentRun)
            .where(AgentRun.id == run_id, AgentRun.status == "queued", AgentRun.input.is_not(None))
            .values(status="in_progress", started_at=stamp, heartbeat_at=stamp, attempts=AgentRun.attempts + 1,
                    worker_id=_worker_id(), runtime=runtime_name)
            .execution_options(synchronize_session=False)
        ).rowcount
        if not claimed:
            return None
        run = session.get_one(AgentRun, run_id, populate_existing=True)
        message = ConversationMessage(
            id=uuid.uuid4(), conversation_id=run.conversation_id, run_id=run.id, role="assistant", content="",
            status="streaming", trace_id=run.trace_id, created_at=stamp, updated_at=stamp,
        )
        session.add(message)
        run.assistant_message_id = message.id
        _add_event(session, run, "status", {"status": "in_progress"})
        session.flush()
        session.expunge(run)
        return run


def _pump(events: Any, sink: queue.Queue[tuple[str, Any]], stop: threading.Event) -> None:
    try:
        for item in events:
            if stop.is_set():
                break
            sink.put(("event", item))
        sink.put(("done", None))
    except BaseException as exc:  # handed to the run loop, which records it
        sink.put(("error", exc))
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()


def execute_run(run_id: uuid.UUID | str, *, runtime: AgentRuntime | None = None) -> str | None:
    """Execute one queued run to its end; returns its final status (None if there was nothing
    to claim: already taken, finished or cancelled)."""
    run_uuid = uuid.UUID(str(run_id))
    runtime = runtime or get_runtime()
    run = _claim(run_uuid, runtime.name)
    if run is None:
        return None
    with session_scope(read_only=True) as session:
        history = _history(session, run)
    toolbox = TicketwireToolbox(project_id=run.project_id, user_id=run.user_id, scopes=list(run.scopes or []),
                                audience="team")
    request = AgentRequest(project_id=run.project_id, question=run.input or "", toolbox=toolbox, history=history,
                           attached_context=list(run.attached_context or []), audience="team")
    started = time.monotonic()
    writer = _Writer(run_id=run_uuid, last_write=started, last_check=started)
    sink: queue.Queue[tuple[str, Any]] = queue.Queue()
    stop = threading.Event()
    status, error = "completed", None
    try:
        events = runtime.stream(request)
        producer = threading.Thread(target=_pump, args=(events, sink, stop), daemon=True,
                                    name=f"agent-run-{run_uuid}")
        producer.start()
        cache, cancel_key = get_cache(), _cancel_key(run_uuid)
        last_cache_poll = 0.0
        urgent = False
        while True:
            try:
                kind, payload = sink.get(timeout=CACHE_POLL_INTERVAL)
            except queue.Empty:
                kind, payload = "idle", None
            if kind == "done":
                break
            if kind == "error":
                status = "failed"
                if isinstance(payload, AgentRuntimeError):
                    error = payload.detail
                else:
                    log.error("agent run %s crashed", run_uuid, exc_info=payload)
                    error = f"internal error ({type(payload).__name__})"
                break
            if kind == "event" and writer.add(payload):
                urgent = True
            moment = time.monotonic()
            if moment - last_cache_poll >= CACHE_POLL_INTERVAL:
                last_cache_poll = moment
                if cache.get(cancel_key):
                    status = "cancelled"
                    break
            # Write at once what a client waits for (the first token, a tool call), but take
            # whatever else is already waiting into the same transaction.
            due = writer.pending_tokens and moment - writer.last_write >= FLUSH_INTERVAL
            if (urgent and sink.empty()) or due or moment - writer.last_write >= HEARTBEAT_INTERVAL:
                urgent = False
                if writer.flush():
                    status = "cancelled"
                    break
            elif moment - writer.last_check >= CANCEL_DB_POLL_INTERVAL and writer.must_stop():
                status = "cancelled"
                break
    except Exception as exc:  # our own failure (database…): record it if we still can
        log.exception("agent run %s failed", run_uuid)
        status, error = "failed", f"internal error ({type(exc).__name__})"
    finally:
        stop.set()
    return _finalise(run_uuid, writer, status, error)


def _finalise(run_id: uuid.UUID, writer: _Writer, status: str, error: str | None) -> str | None:
    with session_scope() as session:
        query = select(AgentRun).where(AgentRun.id == run_id)
        if _is_postgres(session):
            query = query.with_for_update()
        run = session.scalar(query.execution_options(populate_existing=True))
        if run is None:
            return None
        if run.status != "in_progress":
            return run.status  # the sweeper ended it meanwhile
        if status == "completed" and run.cancel_requested_at is not None:
            status = "cancelled"
        writer._tokens_to_event()
        for kind, data in writer.pending_events:
            _add_event(session, run, kind, data)
        writer.pending_events = []
        if writer.text and run.first_token_at is None:
            run.first_token_at = now()
        finish_run(session=session, run=run, status=status, error=error, end=writer.end,
                   content="".join(writer.text), tool_calls=writer.tool_calls or None)
        return status


# -- the sweeper ----------------------------------------------------------------------------

def fail_stale_runs(*, session: Session, older_than: timedelta = STALE_AFTER) -> list[uuid.UUID]:
    """Fail runs in progress whose worker stopped refreshing the heartbeat (killed, crashed),
    and release warm runs nobody used. Returns the failed runs' ids. Called by the sweeper."""
    current = now()
    cutoff = current - older_than
    stale = list(
        session.scalars(
            select(AgentRun).where(AgentRun.status == "in_progress", AgentRun.heartbeat_at < cutoff).limit(200)
        )
    )
    failed = []
    for run in stale:
        seen = as_utc(run.heartbeat_at)
        finish_run(session=session, run=run, status="failed",
                   error=f"The worker running this turn stopped (no heartbeat since {seen.isoformat() if seen else '?'}).")
        failed.append(run.id)
    for run in session.scalars(
        select(AgentRun).where(AgentRun.status == "queued", AgentRun.input.is_(None),
                               AgentRun.created_at < current - WARM_RUN_TTL).limit(200)
    ):
        run.status, run.finished_at, run.error = "cancelled", current, "warm run released unused"
        _add_event(session, run, "end", {"status": "cancelled", "message_id": None, "citations": [],
                                         "confidence": None, "declined": None, "error": run.error})
    return failed


def redispatch_queued_runs(*, session: Session, older_than: timedelta = STALE_AFTER) -> list[uuid.UUID]:
    """Send queued runs (with input) that no worker claimed for `older_than` to the workers
    again: their broker message was lost. A duplicate is harmless (the claim is atomic)."""
    ids = list(
        session.scalars(
            select(AgentRun.id).where(AgentRun.status == "queued", AgentRun.input.is_not(None),
                                      AgentRun.created_at < now() - older_than).limit(500)
        )
    )
    for run_id in ids:
        after_commit(session, "run", run_id)
    return ids
