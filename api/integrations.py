"""Integrations API (beyond the seed): channel settings per project, and inbound events."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import Body, Depends, FastAPI, Query, Response
from sqlalchemy import select

from api.deps import Principal, require
from api.routing import SlashRouter, include_project_router
from api.schemas import iso
from core.db import session_scope
from models import RawEvent
from services import inbound, integrations
from services.errors import NotFoundError

router = SlashRouter(tags=["integrations"])
READ = require("integration:read")
WRITE = require("integration:write")


def _out(view: dict[str, Any]) -> dict[str, Any]:
    return {**view, "created_at": iso(view["created_at"]), "updated_at": iso(view["updated_at"])}


@router.put("/integrations/{channel}", summary="Create or update a channel integration")
def put_integration(project_id: int, channel: str, body: dict[str, Any] = Body(...),
                    principal: Principal = Depends(WRITE)) -> dict[str, Any]:
    with session_scope() as session:
        row = integrations.put_integration(session=session, project_id=project_id, channel=channel, values=body)
        return _out(integrations.integration_view(session=session, row=row))


@router.get("/integrations/{channel}", summary="A channel integration (secrets never shown)")
def get_integration(project_id: int, channel: str, principal: Principal = Depends(READ)) -> dict[str, Any]:
    with session_scope(read_only=True) as session:
        row = integrations.get_integration(session=session, project_id=project_id, channel=channel)
        return _out(integrations.integration_view(session=session, row=row))


@router.delete("/integrations/{channel}", status_code=204, summary="Remove a channel integration")
def delete_integration(project_id: int, channel: str, principal: Principal = Depends(WRITE)) -> Response:
    with session_scope() as session:
        integrations.delete_integration(session=session, project_id=project_id, channel=channel)
    return Response(status_code=204)


def _event_out(row: RawEvent) -> dict[str, Any]:
    return {
        "id": str(row.id), "channel": row.channel, "event_id": row.event_id, "status": row.status,
        "attempts": row.attempts, "error": row.error, "received_at": iso(row.received_at),
        "processed_at": iso(row.processed_at),
    }


@router.get("/inbound_events", summary="Raw inbound events (failed ones keep their error)")
def list_inbound_events(project_id: int, status: str | None = Query(None), channel: str | None = Query(None),
                        limit: int = Query(100, ge=1, le=500), principal: Principal = Depends(READ)) -> dict[str, Any]:
    with session_scope(read_only=True) as session:
        query = select(RawEvent).where(RawEvent.project_id == project_id)
        if status:
            query = query.where(RawEvent.status == status)
        if channel:
            query = query.where(RawEvent.channel == channel)
        rows = session.scalars(query.order_by(RawEvent.received_at.desc()).limit(limit)).all()
        return {"results": [_event_out(r) for r in rows]}


@router.post("/inbound_events/{event_id}/replay", summary="Process a stored inbound event again")
def replay_inbound_event(project_id: int, event_id: str, principal: Principal = Depends(WRITE)) -> dict[str, Any]:
    try:
        raw_id = uuid.UUID(event_id)
    except ValueError:
        raise NotFoundError("Not found.") from None
    with session_scope() as session:
        row = inbound.replay_raw_event(session=session, project_id=project_id, raw_event_id=raw_id)
        return _event_out(row)


def mount(app: FastAPI) -> None:
    include_project_router(app, router)
