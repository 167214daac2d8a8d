"""Ticket endpoints of the seed: list, create, retrieve, update, delete, messages, reply,
bulk status/tags, unread count and compose."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from fastapi import Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from api import reply_body
from api.deps import Principal, enforce_rate_limit, require
from api.responses import FastJSONResponse
from api.routing import SlashRouter
from api.schemas import (
    BulkStatusIn,
    BulkTagsIn,
    ComposeIn,
    TicketCreate,
    TicketUpdate,
    message_out,
    ticket_rows_out,
)
from core.db import session_scope
from core.settings import get_settings
from models import Ticket
from services import replies, ticket_query, views
from services import tickets as ticket_service
from services.persons import upsert_person
from services.unread import unread_count

router = SlashRouter(tags=["tickets"])


def send_limits() -> tuple[tuple[int, int], ...]:
    """Per-user limits for reply and compose (SPEC: "per user for reply/compose")."""
    settings = get_settings()
    return ((settings.send_rate_per_minute, 60), (settings.send_rate_per_hour, 3600))
READ = require("ticket:read")
WRITE = require("ticket:write")


def serialise(session: Session, tickets: Iterable[Ticket | Any]) -> list[dict[str, Any]]:
    """Shape tickets with their tags, person and assignee: one query (the list's row shape)."""
    rows = ticket_query.embedded_rows(session, [t.id for t in tickets])
    return ticket_rows_out(rows)


def _page_url(request: Request, limit: int, offset: int) -> str:
    return str(request.url.include_query_params(limit=limit, offset=offset))


def _paginated(request: Request, count: int, limit: int, offset: int, has_more: bool, results: list[Any]) -> dict[str, Any]:
    return {
        "count": count,
        "next": _page_url(request, limit, offset + limit) if has_more else None,
        "previous": _page_url(request, limit, max(0, offset - limit)) if offset > 0 else None,
        "results": results,
    }


@router.get("/tickets", summary="List tickets with person data attached")
def list_tickets(
    request: Request,
    project_id: int,
    principal: Principal = Depends(READ),
    status: str | None = Query(None), priority: str | None = Query(None), assignee: str | None = Query(None),
    channel_source: str | None = Query(None), channel_detail: str | None = Query(None),
    distinct_ids: str | None = Query(None), emails: str | None = Query(None),
    date_from: str | None = Query(None), date_to: str | None = Query(None), sla: str | None = Query(None),
    tags: str | None = Query(None), tags_all: str | None = Query(None), tags_exclude: str | None = Query(None),
    search: str | None = Query(None), order_by: str | None = Query(None), snoozed: str | None = Query(None),
    view: str | None = Query(None), limit: str | None = Query(None), offset: str | None = Query(None),
) -> dict[str, Any]:
    params = dict(request.query_params)
    with session_scope(read_only=True) as session:
        if view:
            params = views.apply_view(session=session, project_id=project_id, user_id=principal.user.id,
                                      short_id=view, params=params)
        page, limit_n, offset_n = ticket_query.list_tickets(
            session=session, project_id=project_id, params=params, user_id=principal.user.id
        )
    # The rows embed assignee, person and tags; FastJSONResponse skips re-validating the page.
    return FastJSONResponse(_paginated(request, page.count, limit_n, offset_n, page.has_more,
                                       ticket_rows_out(page.tickets)))


@router.post("/tickets", status_code=201, summary="Create a ticket (API clients)")
def create_ticket(project_id: int, body: TicketCreate, principal: Principal = Depends(WRITE)) -> dict[str, Any]:
    data = body.model_dump(exclude_unset=True)
    with session_scope() as session:
        distinct_id = data.get("distinct_id")
        if distinct_id:
            upsert_person(session=session, project_id=project_id, distinct_id=distinct_id,
                          name=data.get("customer_name"), email=data.get("customer_email"))
        ticket = ticket_service.create_ticket(
            session=session,
            project_id=project_id,
            channel_source=data.get("channel_source") or "widget",
            channel_detail=data.get("channel_detail") or ("widget_api" if not data.get("channel_source") or data.get("channel_source") == "widget" else None),
            distinct_id=distinct_id,
            email_subject=data.get("email_subject"),
            customer_name=data.get("customer_name"),
            customer_email=(data.get("customer_email") or "").lower() or None,
            # Given at creation so an SLA policy picks this priority's target.
            priority=data.get("priority"),
        )
        triage = {k: data[k] for k in ticket_service.UPDATABLE if k in data and k != "status"}
        if triage:
            ticket_service.update_ticket(session=session, ticket=ticket, changes=triage)
        if data.get("status"):
            ticket.status = data["status"]
        if data.get("message"):
            from services.ingest import add_customer_message

            add_customer_message(session=session, ticket=ticket, content=data["message"],
                                 author_name=data.get("customer_name"))
        session.flush()
        return serialise(session, [ticket])[0]


@router.get("/tickets/unread_count", summary="Total unread ticket count for the team")
def get_unread_count(project_id: int, principal: Principal = Depends(READ)) -> dict[str, int]:
    with session_scope(read_only=True) as session:
        return {"count": unread_count(session=session, project_id=project_id)}


@router.post("/tickets/bulk_update_status", summary="Update the status of multiple tickets")
def bulk_update_status(project_id: int, body: BulkStatusIn, principal: Principal = Depends(WRITE)) -> dict[str, Any]:
    with session_scope() as session:
        changed = ticket_service.bulk_update_status(session=session, project_id=project_id, ids=body.ids, status=body.status)
    return {"updated": len(changed), "ids": [str(i) for i in changed]}


@router.post("/tickets/bulk_update_tags", summary="Add, remove or set tags on multiple tickets")
def bulk_update_tags(project_id: int, body: BulkTagsIn, principal: Principal = Depends(WRITE)) -> dict[str, Any]:
    with session_scope() as session:
        updated, skipped = ticket_service.bulk_update_tags(
            session=session, project_id=project_id, ids=body.ids, action=body.action, tags=body.tags
        )
    return {"updated": updated, "skipped": skipped}


@router.post("/tickets/compose", status_code=201, summary="Create an outbound email ticket and send its first message")
def compose(project_id: int, body: ComposeIn, response: Response, principal: Principal = Depends(WRITE)) -> dict[str, Any]:
    enforce_rate_limit(f"user-send:{principal.user.id}", send_limits())
    session = None
    try:
        with session_scope() as session:
            outcome = replies.compose(
                session=session, project_id=project_id, author=principal.user,
                recipient_email=body.recipient_email, email_subject=body.email_subject,
                email_config_id=body.email_config_id, message=body.message,
                recipient_distinct_id=body.recipient_distinct_id, rich_content=body.rich_content,
            )
            result = {"id": str(outcome.ticket.id), "ticket_number": outcome.ticket.ticket_number}
    finally:
        if session is not None:
            replies.release_guards(session)
    if outcome.replayed:
        response.status_code = 200
    return result


@router.get("/tickets/{ticket_id}", summary="Get a ticket (by UUID or number) and mark it read by the team")
def retrieve_ticket(project_id: int, ticket_id: str, principal: Principal = Depends(READ)) -> dict[str, Any]:
    with session_scope() as session:
        ticket = ticket_service.get_ticket(session=session, project_id=project_id, ref=ticket_id)
        ticket_service.mark_read_by_team(session=session, ticket=ticket)
        return FastJSONResponse(serialise(session, [ticket])[0])


@router.patch("/tickets/{ticket_id}", summary="Update a ticket")
def update_ticket(project_id: int, ticket_id: str, body: TicketUpdate, principal: Principal = Depends(WRITE)) -> dict[str, Any]:
    changes = body.model_dump(exclude_unset=True, mode="python")
    if "assignee" in changes and changes["assignee"] is not None:
        changes["assignee"] = body.assignee.model_dump() if body.assignee else None
    for key in ("status",):
        if key in changes and changes[key] is None:
            from services.errors import ValidationError

            raise ValidationError("This field may not be null.", attr=key)
    with session_scope() as session:
        ticket = ticket_service.get_ticket(session=session, project_id=project_id, ref=ticket_id, for_update=True)
        ticket_service.update_ticket(session=session, ticket=ticket, changes=changes)
        return serialise(session, [ticket])[0]


@router.delete("/tickets/{ticket_id}", status_code=204, summary="Soft-delete a ticket")
def delete_ticket(project_id: int, ticket_id: str, principal: Principal = Depends(WRITE)) -> Response:
    with session_scope() as session:
        ticket = ticket_service.get_ticket(session=session, project_id=project_id, ref=ticket_id)
        ticket_service.soft_delete(session=session, ticket=ticket)
    return Response(status_code=204)


@router.get("/tickets/{ticket_id}/messages", summary="The message thread of a ticket, oldest first")
def list_messages(
    request: Request, project_id: int, ticket_id: str, principal: Principal = Depends(READ),
    limit: str | None = Query(None), offset: str | None = Query(None),
) -> dict[str, Any]:
    limit_n = ticket_query._parse_limit(limit, 50, 200, "limit")
    offset_n = ticket_query._parse_limit(offset, 0, 10**9, "offset")
    with session_scope(read_only=True) as session:
        ticket = ticket_service.get_ticket(session=session, project_id=project_id, ref=ticket_id)
        count, messages = ticket_service.list_messages(session=session, ticket=ticket, limit=limit_n, offset=offset_n)
        results = [message_out(m) for m in messages]
    return _paginated(request, count, limit_n, offset_n, offset_n + len(results) < count, results)


@router.post("/tickets/{ticket_id}/reply", status_code=201, summary="Post a reply or an internal note",
             openapi_extra=reply_body.openapi_extra())
def reply(project_id: int, ticket_id: str, response: Response, principal: Principal = Depends(WRITE),
          form: reply_body.ReplyRequest = Depends(reply_body.reply_request)) -> dict[str, Any]:
    # JSON or multipart/form-data (files); see api/reply_body.py.
    enforce_rate_limit(f"user-send:{principal.user.id}", send_limits())
    body, files = form.body, form.files()
    session = None
    try:
        with session_scope() as session:
            ticket = ticket_service.get_ticket(session=session, project_id=project_id, ref=ticket_id, for_update=True)
            outcome = replies.reply(session=session, ticket=ticket, author=principal.user, message=body.message,
                                    is_private=body.is_private, rich_content=body.rich_content, attachments=files)
            result = message_out(outcome.message)
    finally:
        if session is not None:
            replies.release_guards(session)
    if outcome.replayed:
        response.status_code = 200
    return result


@router.post("/tickets/{ticket_id}/messages/{message_id}/retry", summary="Re-send a failed delivery")
def retry_delivery(project_id: int, ticket_id: str, message_id: str, principal: Principal = Depends(WRITE)) -> JSONResponse:
    from services import deliveries

    with session_scope() as session:
        ticket = ticket_service.get_ticket(session=session, project_id=project_id, ref=ticket_id)
        try:
            mid = uuid.UUID(message_id)
        except ValueError:
            from services.errors import NotFoundError

            raise NotFoundError("Not found.", attr="message_id") from None
        message = deliveries.retry_failed(session=session, ticket=ticket, message_id=mid)
        return JSONResponse(message_out(message), status_code=202)
