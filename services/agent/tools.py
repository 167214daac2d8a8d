"""The tools an agent may use: ticketwire's own services, bound to one user's project and scopes.

Each call opens its own short unit of work (a run streams for seconds; it must not hold a
transaction, least of all SQLite's single write lock, while a model thinks).
"""

from __future__ import annotations

from typing import Any

from core.db import session_scope
from services import accounts
from services.agent import knowledge
from services.agent.base import Audience, KnowledgeHit, ToolError

EXCERPT_CHARS = 400
THREAD_MESSAGES = 20


def _spec(name: str, description: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": properties, "required": required,
                           "additionalProperties": False},
        },
    }


SPECS: dict[str, tuple[str | None, dict[str, Any]]] = {
    "search_help_center": (None, _spec(
        "search_help_center", "Search the project's help articles (and, for the team, resolved tickets).",
        {"query": {"type": "string", "description": "What to look for"}}, ["query"])),
    "search_tickets": ("ticket:read", _spec(
        "search_tickets", "Search the project's tickets by text or #number.",
        {"query": {"type": "string"},
         "status": {"type": "string", "description": "Comma list: new, open, pending, on_hold, resolved"}},
        ["query"])),
    "read_ticket": ("ticket:read", _spec(
        "read_ticket", "Read a ticket and its latest messages (by id or number).",
        {"ticket": {"type": "string", "description": "Ticket UUID or number"}}, ["ticket"])),
    "draft_reply": ("ticket:write", _spec(
        "draft_reply", "Save a reply draft on a ticket for a teammate to review and send. Never sends it.",
        {"ticket": {"type": "string"}, "content": {"type": "string"}}, ["ticket", "content"])),
}


class TicketwireToolbox:
    """`Toolbox` over ticketwire's services for one project, user and set of key scopes."""

    def __init__(self, *, project_id: int, user_id: int | None = None, scopes: list[str] | tuple[str, ...] = (),
                 audience: Audience = "team", index_max_age: float = 0.0) -> None:
        self.project_id, self.user_id = project_id, user_id
        self.scopes, self.audience = list(scopes), audience
        # Seconds an already-checked knowledge index may be reused without asking the
        # database whether articles or resolved tickets changed (0: always ask).
        self.index_max_age = index_max_age

    def allowed(self, name: str) -> bool:
        if name not in SPECS:
            return False
        scope = SPECS[name][0]
        if scope is None:
            return True
        return self.audience == "team" and accounts.scope_allows(self.scopes, scope)

    def specs(self) -> list[dict[str, Any]]:
        return [spec for name, (_, spec) in SPECS.items() if self.allowed(name)]

    def search_knowledge(self, query: str, *, limit: int = 5) -> list[KnowledgeHit]:
        # Customers get help articles only: another customer's ticket is never an answer source.
        return knowledge.search(self.project_id, query, limit=limit, articles_only=self.audience == "customer",
                                max_age=self.index_max_age)

    def call(self, name: str, arguments: dict[str, Any]) -> Any:
        if not self.allowed(name):
            raise ToolError(f"tool {name!r} is not available to this key")
        try:
            return getattr(self, f"_tool_{name}")(**arguments)
        except TypeError as exc:
            raise ToolError(f"bad arguments for {name}: {exc}") from None

    # -- the tools -----------------------------------------------------------------------

    def _tool_search_help_center(self, query: str) -> list[dict[str, Any]]:
        return [
            {**hit.source.as_dict(), "excerpt": hit.text[:EXCERPT_CHARS]}
            for hit in self.search_knowledge(str(query), limit=5)
        ]

    def _tool_search_tickets(self, query: str, status: str | None = None) -> list[dict[str, Any]]:
        from services import ticket_query

        params: dict[str, Any] = {"search": str(query)[:200], "limit": 10}
        if status:
            params["status"] = status
        with session_scope(read_only=True) as session:
            page, _, _ = ticket_query.list_tickets(session=session, project_id=self.project_id, params=params,
                                                   user_id=self.user_id)
            return [
                {"id": str(t.id), "ticket_number": t.ticket_number, "status": t.status, "priority": t.priority,
                 "channel_source": t.channel_source, "subject": t.email_subject,
                 "last_message_text": (t.last_message_text or "")[:200]}
                for t in page.tickets
            ]

    def _tool_read_ticket(self, ticket: str) -> dict[str, Any]:
        from services import tickets as ticket_service
        from services.errors import NotFoundError

        with session_scope(read_only=True) as session:
            try:
                found = ticket_service.get_ticket(session=session, project_id=self.project_id, ref=str(ticket))
            except NotFoundError:
                raise ToolError(f"ticket {ticket} not found") from None
            count, messages = ticket_service.list_messages(session=session, ticket=found, limit=THREAD_MESSAGES,
                                                           offset=0)
            if count > THREAD_MESSAGES:
                _, messages = ticket_service.list_messages(session=session, ticket=found, limit=THREAD_MESSAGES,
                                                           offset=count - THREAD_MESSAGES)
            tags = ticket_service.tags_for(session=session, ticket_ids=[found.id])[found.id]
            return {
                "id": str(found.id), "ticket_number": found.ticket_number, "status": found.status,
                "priority": found.priority, "channel_source": found.channel_source, "subject": found.email_subject,
                "tags": tags, "ai_triage": found.ai_triage,
                "messages": [
                    {"author_type": m.author_type, "message_type": m.message_type, "is_private": m.is_private,
                     "content": m.content[:2000], "created_at": m.created_at.isoformat()}
                    for m in messages
                ],
            }

    def _tool_draft_reply(self, ticket: str, content: str) -> dict[str, Any]:
        from services import ai_tickets
        from services import tickets as ticket_service
        from services.errors import NotFoundError

        text = str(content).strip()
        if not text:
            raise ToolError("a draft needs content")
        with session_scope() as session:
            try:
                found = ticket_service.get_ticket(session=session, project_id=self.project_id, ref=str(ticket))
            except NotFoundError:
                raise ToolError(f"ticket {ticket} not found") from None
            draft = ai_tickets.create_draft(session=session, ticket=found, content=text[:5000])
            return {"message_id": str(draft.id), "ticket_number": found.ticket_number, "status": "drafted"}
