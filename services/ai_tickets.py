"""AI for tickets: triage, auto-answers that customers accept or that escalate, and reply
drafts a teammate sends with one call.

Model calls can take seconds, so the functions that call a runtime (`triage_ticket`,
`draft_answer`, `auto_answer`, `process_new_ticket`) own their units of work: read in one
short transaction, call the runtime with none open, write in another. The others take the
caller's session like every service.

Customers only ever get answers built from help articles (audience "customer"): another
customer's ticket is never quoted to them.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from core.clock import now
from core.db import session_scope
from models import Message, ProjectAISettings, Ticket, TicketAIAnswer, User
from models.ticket import CHANNEL_SOURCES
from services import replies
from services import tickets as ticket_service
from services.agent import get_runtime
from services.agent.base import AgentRequest, AgentRuntime, Answer, TriageRequest, collect
from services.agent.tools import TicketwireToolbox
from services.dispatch import after_commit
from services.errors import ConflictError, NotFoundError, UnprocessableError, ValidationError
from services.unread import mark_unread_dirty

AI_AUTHOR_NAME = "AI assistant"
QUESTION_CHARS = 4000

NEGATIVE_REPLY = re.compile(
    r"\b(?:not|no|nope|still|didn't|doesn't|don't|isn't|wasn't|wrong|human|person|agent|someone|but|"
    r"nicht|pas|todavía|aber|mais|pero)\b|n't\b|\?",
    re.IGNORECASE,
)
POSITIVE_REPLY = re.compile(
    r"\b(?:thanks?|thank you|thx|ty|cheers|perfect|great|awesome|excellent|worked|works(?: now)?|solved|fixed|"
    r"resolved|got it|that helps?|helped|yes|yep|ok|okay|danke|merci|gracias|obrigad[oa]|grazie|bedankt)\b",
    re.IGNORECASE,
)


# -- settings -------------------------------------------------------------------------------

def settings_for(*, session: Session, project_id: int) -> ProjectAISettings:
    """The project's AI settings (the defaults, unsaved, until someone changes them)."""
    found = session.get(ProjectAISettings, project_id)
    return found if found is not None else _default_settings(project_id)


def _default_settings(project_id: int) -> ProjectAISettings:
    return ProjectAISettings(project_id=project_id, auto_triage=True, auto_answer=False,
                             auto_answer_channels=["widget", "email"], answer_confidence=0.6, updated_at=now())


def update_settings(*, session: Session, project_id: int, changes: dict[str, Any]) -> ProjectAISettings:
    for attr in ("auto_triage", "auto_answer"):
        if attr in changes and not isinstance(changes[attr], bool):
            raise ValidationError(f"{attr} must be a boolean.", attr=attr)
    if "auto_answer_channels" in changes:
        channels = changes["auto_answer_channels"]
        if not isinstance(channels, list) or any(c not in CHANNEL_SOURCES for c in channels):
            raise ValidationError(f"auto_answer_channels must be a list of {', '.join(CHANNEL_SOURCES)}.",
                                  attr="auto_answer_channels")
    if "answer_confidence" in changes:
        value = changes["answer_confidence"]
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise ValidationError("answer_confidence must be a number between 0 and 1.", attr="answer_confidence")
    current = session.get(ProjectAISettings, project_id)
    if current is None:
        current = settings_for(session=session, project_id=project_id)
        session.add(current)
    for attr in ("auto_triage", "auto_answer", "auto_answer_channels", "answer_confidence"):
        if attr in changes:
            setattr(current, attr, changes[attr])
    current.updated_at = now()
    session.flush()
    return current


# -- reading a ticket -----------------------------------------------------------------------

@dataclass(frozen=True)
class TicketQuestion:
    ticket_id: uuid.UUID
    project_id: int
    channel: str
    subject: str
    text: str


def _question(session: Session, ticket: Any) -> TicketQuestion:
    """What the customer asked: their messages since the team last answered publicly.
    `ticket`: a Ticket, or a row with its id, project_id, channel_source and email_subject."""
    rows = session.execute(
        select(Message.author_type, Message.content)
        .where(Message.ticket_id == ticket.id, Message.is_private.is_(False), Message.deleted_at.is_(None))
        .order_by(Message.created_at, Message.id)
    ).all()
    since_answer: list[str] = []
    for author_type, content in rows:
        if author_type == "customer":
            since_answer.append(content or "")
        elif author_type in ("support", "AI"):
            since_answer = []
    text = "\n\n".join(since_answer) or "\n\n".join(c or "" for a, c in rows if a == "customer")
    return TicketQuestion(ticket.id, ticket.project_id, ticket.channel_source, ticket.email_subject or "",
                          text[:QUESTION_CHARS])


def _read_question(project_id: int, ticket_ref: str | uuid.UUID) -> TicketQuestion:
    with session_scope(read_only=True) as session:
        ticket = ticket_service.get_ticket(session=session, project_id=project_id, ref=ticket_ref)
        return _question(session, ticket)


# -- triage ---------------------------------------------------------------------------------

TRIAGE_INDEX_MAX_AGE = 2.0


def triage_ticket(*, project_id: int, ticket_ref: str | uuid.UUID, runtime: AgentRuntime | None = None,
                  question: TicketQuestion | None = None) -> dict[str, Any]:
    """Fill the ticket's `ai_triage` {category, urgency, language, suggested_priority,
    suggested_tags, confidence} from the runtime. Advisory: priority and tags are not changed.
    `question`: the ticket's question when the caller has just read it."""
    question = question or _read_question(project_id, ticket_ref)
    runtime = runtime or get_runtime()
    # Triage is advisory and runs for every new ticket: an index checked within the last
    # couple of seconds is current enough, and saves two queries per ticket under a burst.
    toolbox = TicketwireToolbox(project_id=project_id, audience="team", index_max_age=TRIAGE_INDEX_MAX_AGE)
    result = runtime.triage(TriageRequest(project_id=project_id, subject=question.subject, text=question.text,
                                          channel=question.channel, toolbox=toolbox))
    result["triaged_at"] = now().isoformat()
    with session_scope() as session:
        session.connection().execute(_STORE_TRIAGE, {"b_ticket_id": question.ticket_id, "b_triage": result})
    return result


_TICKETS = Ticket.__table__
# Not an edit by anyone: updated_at (the list's order) stays as it was.
_STORE_TRIAGE = (
    update(_TICKETS).where(_TICKETS.c.id == bindparam("b_ticket_id", type_=_TICKETS.c.id.type))
    .values(ai_triage=bindparam("b_triage", type_=_TICKETS.c.ai_triage.type), updated_at=_TICKETS.c.updated_at)
)


# -- drafts ---------------------------------------------------------------------------------

def create_draft(*, session: Session, ticket: Ticket, content: str) -> Message:
    """A private `ai_draft` message: visible to the team only, sent by `send_draft`."""
    draft = replies.add_team_message(session=session, ticket=ticket, author=None, content=content, is_private=True,
                                     author_type="AI", message_type="ai_draft")
    draft.author_name = AI_AUTHOR_NAME
    session.flush()
    return draft


def _answer(question: TicketQuestion, runtime: AgentRuntime | None) -> Answer:
    runtime = runtime or get_runtime()
    toolbox = TicketwireToolbox(project_id=question.project_id, audience="customer")
    ask = f"{question.subject}\n\n{question.text}".strip()
    return collect(runtime.stream(AgentRequest(project_id=question.project_id, question=ask, toolbox=toolbox,
                                               audience="customer")))


def draft_answer(*, project_id: int, ticket_ref: str | uuid.UUID, runtime: AgentRuntime | None = None) -> Message:
    """Ask the runtime for an answer to the customer and store it as a draft (422 if it has none)."""
    question = _read_question(project_id, ticket_ref)
    if not question.text.strip():
        raise UnprocessableError("The ticket has no customer message to answer.", code="nothing_to_answer")
    answer = _answer(question, runtime)
    if answer.declined or not answer.text:
        raise UnprocessableError("The agent found nothing in the help center that answers this ticket.",
                                 code="no_answer")
    with session_scope() as session:
        ticket = ticket_service.get_ticket(session=session, project_id=project_id, ref=question.ticket_id)
        draft = create_draft(session=session, ticket=ticket, content=answer.text[: replies.MAX_REPLY_LENGTH])
        session.expunge(draft)
        return draft


def send_draft(*, session: Session, ticket: Ticket, message_id: Any, author: User, content: Any = None) -> Message:
    """Send an AI draft to the customer as the author's public reply (optionally edited first).
    The draft leaves the thread; sending it again is a 409."""
    try:
        wanted = uuid.UUID(str(message_id))
    except ValueError:
        raise NotFoundError("Draft not found.", attr="message_id") from None
    draft = session.get(Message, wanted)
    if draft is None or draft.ticket_id != ticket.id or draft.message_type != "ai_draft":
        raise NotFoundError("Draft not found.", attr="message_id")
    if draft.deleted_at is not None:
        raise ConflictError("This draft was already sent.", code="draft_already_sent")
    text = replies._validate_message(draft.content if content is None else content, attr="content")
    sent = replies.add_team_message(session=session, ticket=ticket, author=author, content=text, is_private=False)
    draft.deleted_at = now()
    session.flush()
    return sent


# -- auto-answers ---------------------------------------------------------------------------

def request_processing(session: Session, ticket: Ticket) -> None:
    """After this transaction commits, the workers triage (and maybe answer) the new ticket."""
    after_commit(session, "ai_ticket", ticket.id)


def on_customer_message(*, session: Session, ticket: Ticket, message: Message, new_ticket: bool) -> str | None:
    """The one hook for ingest (every channel), called after a customer message is stored:
    a new ticket is queued for triage and auto-answer; a reply settles a proposed AI answer."""
    if new_ticket:
        request_processing(session, ticket)
        return None
    return handle_customer_reply(session=session, ticket=ticket, message=message)


def process_new_ticket(*, ticket_id: uuid.UUID | str, runtime: AgentRuntime | None = None) -> dict[str, Any]:
    """Triage and auto-answer a new ticket as its project's AI settings say (the worker's job)."""
    with session_scope(read_only=True) as session:
        # The ticket's few fields and its project's settings in one statement: every new
        # ticket of every channel comes through here.
        ticket = session.execute(_NEW_TICKET, {"ticket_id": uuid.UUID(str(ticket_id))}).first()
        if ticket is None or ticket.deleted_at is not None:
            return {"triage": None, "answer": "skipped"}
        project_id, channel = ticket.project_id, ticket.channel_source
        settings = ticket.ProjectAISettings or _default_settings(project_id)
        auto_triage, auto = settings.auto_triage, settings.auto_answer
        channels = list(settings.auto_answer_channels or [])
        question = _question(session, ticket) if auto_triage else None
    outcome: dict[str, Any] = {"triage": None, "answer": "skipped"}
    if auto_triage:
        outcome["triage"] = triage_ticket(project_id=project_id, ticket_ref=ticket_id, runtime=runtime,
                                          question=question)
    if auto and channel in channels:
        outcome["answer"] = auto_answer(project_id=project_id, ticket_ref=ticket_id, runtime=runtime)
    return outcome


_NEW_TICKET = (
    select(Ticket.id, Ticket.project_id, Ticket.channel_source, Ticket.email_subject, Ticket.deleted_at,
           ProjectAISettings)
    .outerjoin(ProjectAISettings, ProjectAISettings.project_id == Ticket.project_id)
    .where(Ticket.id == bindparam("ticket_id"))
)


def _has_team_answer(session: Session, ticket: Ticket) -> bool:
    return session.scalar(
        select(Message.id).where(Message.ticket_id == ticket.id, Message.is_private.is_(False),
                                 Message.author_type.in_(("support", "AI")), Message.deleted_at.is_(None)).limit(1)
    ) is not None


def auto_answer(*, project_id: int, ticket_ref: str | uuid.UUID, runtime: AgentRuntime | None = None) -> str:
    """Post an `AI` answer when the runtime is confident enough, else escalate the ticket to the
    team with `escalation_reason` (leaving a draft when there was a weak answer).
    Returns "answered", "escalated" or "skipped" (already answered, or resolved)."""
    with session_scope(read_only=True) as session:
        ticket = ticket_service.get_ticket(session=session, project_id=project_id, ref=ticket_ref)
        if ticket.status == "resolved" or _has_team_answer(session, ticket) or session.scalar(
            select(TicketAIAnswer.id).where(TicketAIAnswer.ticket_id == ticket.id).limit(1)
        ):
            return "skipped"
        question = _question(session, ticket)
        threshold = float(settings_for(session=session, project_id=project_id).answer_confidence)
    if not question.text.strip():
        return "skipped"
    answer = _answer(question, runtime)
    with session_scope() as session:
        ticket = ticket_service.get_ticket(session=session, project_id=project_id, ref=question.ticket_id,
                                           for_update=True)
        if _has_team_answer(session, ticket):
            return "skipped"  # a teammate answered while the runtime was thinking
        citations = [s.as_dict() for s in answer.citations]
        record = TicketAIAnswer(id=uuid.uuid4(), project_id=project_id, ticket_id=ticket.id,
                                confidence=answer.confidence, citations=citations, created_at=now(), updated_at=now())
        session.add(record)
        if not answer.declined and answer.text and answer.confidence >= threshold:
            message = replies.add_team_message(session=session, ticket=ticket, author=None,
                                               content=answer.text[: replies.MAX_REPLY_LENGTH],
                                               is_private=False, author_type="AI")
            message.author_name = AI_AUTHOR_NAME
            record.message_id, record.status = message.id, "proposed"
            ticket.status = "pending"  # waiting on the customer to accept it
            mark_unread_dirty(session, project_id)
            return "answered"
        record.status = "escalated"
        if answer.declined or not answer.text:
            ticket.escalation_reason = "The AI found nothing in the help center that answers this."
        else:
            ticket.escalation_reason = (
                f"The AI was not confident enough to answer (confidence {answer.confidence:.2f} "
                f"< {threshold:.2f}); its draft is on the ticket."
            )
            create_draft(session=session, ticket=ticket, content=answer.text[: replies.MAX_REPLY_LENGTH])
        return "escalated"


def classify_reply(text: str) -> bool | None:
    """True: the customer accepts the answer; False: they do not; None: unclear (a new question)."""
    if NEGATIVE_REPLY.search(text or ""):
        return False
    if POSITIVE_REPLY.search(text or ""):
        return True
    return None


def handle_customer_reply(*, session: Session, ticket: Ticket, message: Message) -> str | None:
    """Hook for ingest, after a customer message is stored: settle a proposed AI answer.
    Accepted → `ai_resolved` and resolved; anything else → escalated to the team."""
    record = session.scalar(
        select(TicketAIAnswer).where(TicketAIAnswer.ticket_id == ticket.id, TicketAIAnswer.status == "proposed")
        .order_by(TicketAIAnswer.created_at.desc()).limit(1)
    )
    if record is None or message.author_type != "customer":
        return None
    verdict = classify_reply(message.content)
    record.updated_at = now()
    if verdict is True:
        record.status = "accepted"
        ticket.ai_resolved = True
        ticket.escalation_reason = None
        ticket.status = "resolved"
        mark_unread_dirty(session, ticket.project_id)
        session.flush()
        return "accepted"
    record.status = "escalated"
    ticket.ai_resolved = False
    ticket.escalation_reason = (
        "The customer was not satisfied with the AI answer." if verdict is False
        else "The customer followed up after the AI answer."
    )
    if ticket.status in ("pending", "resolved"):
        ticket.status = "open"
    mark_unread_dirty(session, ticket.project_id)
    session.flush()
    return "escalated"
