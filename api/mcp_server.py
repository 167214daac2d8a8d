"""The MCP server (`ticketwire mcp`): ticket tools for AI assistants, over stdio or streamable HTTP.

Tools: list_tickets, read_ticket, search_tickets, reply_to_ticket, update_ticket. Every call
is made as a personal API key and limited by its scopes exactly like the REST API
(`ticket:read` to list, read and search; `ticket:write` to reply and update) and by the
projects the key may see.

- stdio: the key comes from TICKETWIRE_API_KEY (the client's server config sets it).
- streamable HTTP: each request's `Authorization: Bearer <key>` header; without one, the
  TICKETWIRE_API_KEY of the server process (for a single-user server on localhost only).

The project is the tool's `project_id` argument, else TICKETWIRE_PROJECT_ID, else the only
project the key can access.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from api.schemas import message_out
from core.db import session_scope
from services import accounts, replies, ticket_query
from services import tickets as ticket_service
from services.errors import ServiceError

ENV_API_KEY = "TICKETWIRE_API_KEY"
ENV_PROJECT_ID = "TICKETWIRE_PROJECT_ID"
THREAD_LIMIT = 50

INSTRUCTIONS = (
    "ticketwire is a support inbox. Use list_tickets and search_tickets to find tickets, read_ticket to see a "
    "ticket's thread, reply_to_ticket to answer the customer (is_private=true for an internal note), and "
    "update_ticket to change status, priority, tags or assignee. Public replies are delivered to the customer "
    "through the ticket's channel (email, Slack, Teams, GitHub, widget)."
)


@dataclass(frozen=True)
class Caller:
    user_id: int
    scopes: tuple[str, ...]
    project_id: int


def _bearer(ctx: Context | None) -> str | None:
    headers = ctx.headers if ctx is not None else None
    if not headers:
        return None
    value = headers.get("authorization") or headers.get("Authorization") or ""
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def authenticate(secret: str | None, project_id: int | None) -> Caller:
    """The key's user, scopes and project; ToolError when the key or project is not usable."""
    if not secret:
        raise ToolError(f"No API key: set {ENV_API_KEY} (or send Authorization: Bearer <key> over HTTP).")
    with session_scope() as session:
        found = accounts.authenticate(session=session, secret=secret)
        if found is None:
            raise ToolError("Invalid personal API key.")
        key, user = found
        if accounts.key_needs_touch(key):
            accounts.touch_key(session=session, key_id=key.id)
        if project_id is None:
            env_project = os.environ.get(ENV_PROJECT_ID, "").strip()
            if env_project.isdigit():
                project_id = int(env_project)
            else:
                visible = [p for p in accounts.user_project_ids(session=session, user=user)
                           if key.scoped_projects is None or p in key.scoped_projects]
                if len(visible) != 1:
                    raise ToolError(f"Pass project_id (or set {ENV_PROJECT_ID}): this key can access "
                                    f"{len(visible)} projects.")
                project_id = visible[0]
        if not (0 < project_id < 2**31) or not accounts.key_can_access(session=session, key=key, user=user,
                                                                        project_id=project_id):
            raise ToolError("Project not found.")
        return Caller(user_id=user.id, scopes=tuple(key.scopes or []), project_id=project_id)


def _require(caller: Caller, scope: str) -> None:
    if not accounts.scope_allows(list(caller.scopes), scope):
        raise ToolError(f"API key missing required scope '{scope}'.")


def _ticket_summary(ticket: Any, tags: list[str]) -> dict[str, Any]:
    from api.schemas import iso

    return {
        "id": str(ticket.id),
        "ticket_number": ticket.ticket_number,
        "status": ticket.status,
        "priority": ticket.priority,
        "channel_source": ticket.channel_source,
        "subject": ticket.email_subject,
        "customer_name": ticket.customer_name,
        "last_message_text": ticket.last_message_text,
        "last_message_at": iso(ticket.last_message_at),
        "updated_at": iso(ticket.updated_at),
        "escalation_reason": ticket.escalation_reason,
        "ai_triage": ticket.ai_triage,
        "tags": tags,
    }


def _service_errors(fn: Any) -> Any:
    """Service errors (validation, not found, conflict) reach the model as tool errors."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ServiceError as exc:
            where = f" ({exc.attr})" if exc.attr else ""
            raise ToolError(f"{exc.detail}{where}") from None

    return wrapper


def build_server(*, api_key: str | None = None) -> MCPServer:
    """The MCP server; `api_key` overrides TICKETWIRE_API_KEY (tests)."""
    server: MCPServer = MCPServer("ticketwire", instructions=INSTRUCTIONS, version="0.1.0")

    def caller(ctx: Context | None, project_id: int | None) -> Caller:
        secret = _bearer(ctx) or api_key or os.environ.get(ENV_API_KEY)
        return authenticate(secret, project_id)

    def _list(who: Caller, params: dict[str, Any]) -> dict[str, Any]:
        with session_scope(read_only=True) as session:
            page, limit, offset = ticket_query.list_tickets(session=session, project_id=who.project_id,
                                                            params=params, user_id=who.user_id)
            tags = ticket_service.tags_for(session=session, ticket_ids=[t.id for t in page.tickets])
            return {"count": page.count, "limit": limit, "offset": offset, "has_more": page.has_more,
                    "tickets": [_ticket_summary(t, tags[t.id]) for t in page.tickets]}

    @server.tool(description="List tickets, newest activity first. Filters: status and priority (comma lists), "
                             "assignee (me, unassigned, user:<id>), channel_source, tags (comma list).")
    @_service_errors
    def list_tickets(ctx: Context, status: str | None = None, priority: str | None = None,
                     assignee: str | None = None, channel_source: str | None = None, tags: str | None = None,
                     order_by: str = "-updated_at", limit: int = 20, offset: int = 0,
                     project_id: int | None = None) -> dict[str, Any]:
        who = caller(ctx, project_id)
        _require(who, "ticket:read")
        params = {"status": status, "priority": priority, "assignee": assignee, "channel_source": channel_source,
                  "tags": tags, "order_by": order_by, "limit": min(max(limit, 1), 100), "offset": max(offset, 0)}
        return _list(who, {k: v for k, v in params.items() if v is not None})

    @server.tool(description="Search tickets: '#12' or '12' finds ticket 12; any other text matches customer "
                             "name and email, subject and every message.")
    @_service_errors
    def search_tickets(ctx: Context, query: str, status: str | None = None, limit: int = 20,
                       project_id: int | None = None) -> dict[str, Any]:
        who = caller(ctx, project_id)
        _require(who, "ticket:read")
        params: dict[str, Any] = {"search": query, "limit": min(max(limit, 1), 100)}
        if status:
            params["status"] = status
        return _list(who, params)

    @server.tool(description="Read a ticket (by UUID or number) with its latest messages, internal notes included.")
    @_service_errors
    def read_ticket(ctx: Context, ticket: str, project_id: int | None = None) -> dict[str, Any]:
        who = caller(ctx, project_id)
        _require(who, "ticket:read")
        with session_scope(read_only=True) as session:
            found = ticket_service.get_ticket(session=session, project_id=who.project_id, ref=ticket)
            count, _ = ticket_service.list_messages(session=session, ticket=found, limit=1, offset=0)
            _, messages = ticket_service.list_messages(session=session, ticket=found, limit=THREAD_LIMIT,
                                                       offset=max(0, count - THREAD_LIMIT))
            tags = ticket_service.tags_for(session=session, ticket_ids=[found.id])[found.id]
            out = _ticket_summary(found, tags)
            out["message_count"] = count
            out["messages"] = [message_out(m) for m in messages]
            return out

    @server.tool(description="Reply to a ticket. Public replies (is_private=false) are delivered to the customer "
                             "through the ticket's channel; is_private=true stores an internal note.")
    @_service_errors
    def reply_to_ticket(ctx: Context, ticket: str, message: str, is_private: bool = False,
                        project_id: int | None = None) -> dict[str, Any]:
        who = caller(ctx, project_id)
        _require(who, "ticket:write")
        from models import User

        session = None
        try:
            with session_scope() as session:
                found = ticket_service.get_ticket(session=session, project_id=who.project_id, ref=ticket,
                                                  for_update=True)
                author = session.get_one(User, who.user_id)
                outcome = replies.reply(session=session, ticket=found, author=author, message=message,
                                        is_private=is_private)
                return {"ticket_number": found.ticket_number, "replayed": outcome.replayed,
                        "message": message_out(outcome.message)}
        finally:
            if session is not None:
                replies.release_guards(session)

    @server.tool(description="Update a ticket: status (new, open, pending, on_hold, resolved), priority (low, "
                             "medium, high, critical), tags (replaces the set), assignee_user_id.")
    @_service_errors
    def update_ticket(ctx: Context, ticket: str, status: str | None = None, priority: str | None = None,
                      tags: list[str] | None = None, assignee_user_id: int | None = None,
                      project_id: int | None = None) -> dict[str, Any]:
        who = caller(ctx, project_id)
        _require(who, "ticket:write")
        changes: dict[str, Any] = {}
        if status is not None:
            changes["status"] = status
        if priority is not None:
            changes["priority"] = priority
        if tags is not None:
            changes["tags"] = tags
        if assignee_user_id is not None:
            changes["assignee"] = {"type": "user", "id": assignee_user_id}
        if not changes:
            raise ToolError("Nothing to update: give status, priority, tags or assignee_user_id.")
        with session_scope() as session:
            found = ticket_service.get_ticket(session=session, project_id=who.project_id, ref=ticket, for_update=True)
            ticket_service.update_ticket(session=session, ticket=found, changes=changes)
            tags_now = ticket_service.tags_for(session=session, ticket_ids=[found.id])[found.id]
            return _ticket_summary(found, tags_now)

    return server


def main(transport: str = "stdio", host: str = "127.0.0.1", port: int = 8765) -> None:
    """Run the server: transport "stdio" or "http" (streamable HTTP at http://host:port/mcp)."""
    server = build_server()
    if transport == "stdio":
        server.run("stdio")
    elif transport in ("http", "streamable-http"):
        server.run("streamable-http", host=host, port=port)
    else:
        raise ValueError(f"unknown transport {transport!r} (stdio or http)")


if __name__ == "__main__":  # python -m api.mcp_server [stdio|http]
    import sys

    main(sys.argv[1] if len(sys.argv) > 1 else "stdio")
