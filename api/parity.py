"""PostHog parity beyond the seed: internal notes, team message edits and saved views."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI, Query, Request, Response
from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.deps import Principal, require
from api.routing import SlashRouter, include_project_router
from api.schemas import Body, iso, message_out, user_out
from api.tickets import _paginated
from core.db import session_scope
from models import SavedView, User
from services import message_edits, notes, replies, ticket_query, views
from services import tickets as ticket_service

router = SlashRouter(tags=["notes", "views"])
READ = require("ticket:read")
WRITE = require("ticket:write")


class NoteIn(Body):
    message: str = Field(max_length=100_000)
    rich_content: dict[str, Any] | list[Any] | None = None


class MessageEditIn(Body):
    message: str | None = Field(default=None, max_length=100_000)
    rich_content: dict[str, Any] | list[Any] | None = None


class ViewIn(Body):
    name: str | None = Field(default=None, max_length=10_000)
    filters: dict[str, Any] | None = None
    shared: bool | None = None


def _edit_fields(body: MessageEditIn) -> dict[str, Any]:
    """Only what the client sent: an omitted rich_content differs from an explicit null."""
    sent = body.model_dump(exclude_unset=True)
    return {key: sent.get(key, message_edits.UNSET) for key in ("message", "rich_content")}


# -- notes ---------------------------------------------------------------------------------

@router.post("/tickets/{ticket_id}/notes", status_code=201, summary="Add an internal note")
def create_note(project_id: int, ticket_id: str, body: NoteIn, response: Response,
                principal: Principal = Depends(WRITE)) -> dict[str, Any]:
    session = None
    try:
        with session_scope() as session:
            ticket = ticket_service.get_ticket(session=session, project_id=project_id, ref=ticket_id, for_update=True)
            outcome = notes.create_note(session=session, ticket=ticket, author=principal.user, message=body.message,
                                        rich_content=body.rich_content)
            result = message_out(outcome.message)
    finally:
        if session is not None:
            replies.release_guards(session)
    if outcome.replayed:
        response.status_code = 200
    return result


@router.patch("/tickets/{ticket_id}/notes/{message_id}", summary="Edit your internal note")
def update_note(project_id: int, ticket_id: str, message_id: str, body: MessageEditIn,
                principal: Principal = Depends(WRITE)) -> dict[str, Any]:
    fields = _edit_fields(body)
    with session_scope() as session:
        ticket = ticket_service.get_ticket(session=session, project_id=project_id, ref=ticket_id)
        note = notes.update_note(session=session, ticket=ticket, user=principal.user, message_id=message_id,
                                 message=fields["message"], rich_content=fields["rich_content"])
        return message_out(note)


@router.delete("/tickets/{ticket_id}/notes/{message_id}", status_code=204, summary="Delete your internal note")
def delete_note(project_id: int, ticket_id: str, message_id: str, principal: Principal = Depends(WRITE)) -> Response:
    with session_scope() as session:
        ticket = ticket_service.get_ticket(session=session, project_id=project_id, ref=ticket_id)
        notes.delete_note(session=session, ticket=ticket, user=principal.user, message_id=message_id)
    return Response(status_code=204)


# -- team message edits ----------------------------------------------------------------------

@router.patch("/tickets/{ticket_id}/messages/{message_id}", summary="Edit your public reply")
def edit_message(project_id: int, ticket_id: str, message_id: str, body: MessageEditIn,
                 principal: Principal = Depends(WRITE)) -> dict[str, Any]:
    fields = _edit_fields(body)
    with session_scope() as session:
        ticket = ticket_service.get_ticket(session=session, project_id=project_id, ref=ticket_id, for_update=True)
        outcome = message_edits.edit_team_message(
            session=session, ticket=ticket, editor=principal.user, message_id=message_id,
            content=fields["message"], rich_content=fields["rich_content"],
        )
        return {**message_out(outcome.message), "edit_status": outcome.edit_status}


# -- saved views ------------------------------------------------------------------------------

def view_out(view: SavedView, creator: User | None) -> dict[str, Any]:
    return {
        "id": str(view.id),
        "short_id": view.short_id,
        "name": view.name,
        "filters": view.filters or {},
        "shared": bool(view.shared),
        "created_at": iso(view.created_at),
        "updated_at": iso(view.updated_at),
        "created_by": user_out(creator) if creator else None,
    }


def _views_out(session: Session, rows: list[SavedView]) -> list[dict[str, Any]]:
    user_ids = {v.user_id for v in rows}
    users = {u.id: u for u in session.scalars(select(User).where(User.id.in_(user_ids)))} if user_ids else {}
    return [view_out(v, users.get(v.user_id)) for v in rows]


@router.get("/views", summary="List the saved views you can see")
def list_views(request: Request, project_id: int, principal: Principal = Depends(READ),
               limit: str | None = Query(None), offset: str | None = Query(None)) -> dict[str, Any]:
    limit_n = ticket_query._parse_limit(limit, 100, 1000, "limit")
    offset_n = ticket_query._parse_limit(offset, 0, 10**9, "offset")
    with session_scope(read_only=True) as session:
        count, rows = views.list_views(session=session, project_id=project_id, user_id=principal.user.id,
                                       limit=limit_n, offset=offset_n)
        results = _views_out(session, rows)
    return _paginated(request, count, limit_n, offset_n, offset_n + len(results) < count, results)


@router.post("/views", status_code=201, summary="Save a named set of list filters")
def create_view(project_id: int, body: ViewIn, principal: Principal = Depends(WRITE)) -> dict[str, Any]:
    with session_scope() as session:
        view = views.create_view(
            session=session, project_id=project_id, user_id=principal.user.id, name=body.name,
            filters=body.filters, shared=body.shared if body.shared is not None else False,
        )
        return _views_out(session, [view])[0]


@router.get("/views/{short_id}", summary="Get a saved view")
def retrieve_view(project_id: int, short_id: str, principal: Principal = Depends(READ)) -> dict[str, Any]:
    with session_scope(read_only=True) as session:
        view = views.get_view(session=session, project_id=project_id, user_id=principal.user.id, short_id=short_id)
        return _views_out(session, [view])[0]


@router.patch("/views/{short_id}", summary="Change your saved view (filters are replaced, not merged)")
def update_view(project_id: int, short_id: str, body: ViewIn, principal: Principal = Depends(WRITE)) -> dict[str, Any]:
    changes = body.model_dump(exclude_unset=True)
    with session_scope() as session:
        view = views.get_own_view(session=session, project_id=project_id, user_id=principal.user.id,
                                  short_id=short_id)
        views.update_view(session=session, view=view, changes=changes)
        return _views_out(session, [view])[0]


@router.delete("/views/{short_id}", status_code=204, summary="Delete your saved view")
def delete_view(project_id: int, short_id: str, principal: Principal = Depends(WRITE)) -> Response:
    with session_scope() as session:
        view = views.get_own_view(session=session, project_id=project_id, user_id=principal.user.id,
                                  short_id=short_id)
        views.delete_view(session=session, view=view)
    return Response(status_code=204)


def mount(app: FastAPI) -> None:
    include_project_router(app, router)
