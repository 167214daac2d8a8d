"""Email configs API (DESIGN.md): SMTP/IMAP settings per project, inbound address and secret."""

from __future__ import annotations

from typing import Any

from fastapi import Body, Depends, FastAPI, Response

from api.deps import Principal, require
from api.routing import SlashRouter, include_project_router
from api.schemas import iso
from core.db import session_scope
from services import email_configs

router = SlashRouter(tags=["email configs"])
READ = require("integration:read")
WRITE = require("integration:write")


def _out(view: dict[str, Any]) -> dict[str, Any]:
    return {**view, "created_at": iso(view["created_at"]), "updated_at": iso(view["updated_at"])}


@router.post("/email_configs", status_code=201,
             summary="Create an email config (the response shows the inbound secret, once)")
def create_email_config(project_id: int, body: Any = Body(...), principal: Principal = Depends(WRITE)) -> dict[str, Any]:
    with session_scope() as session:
        row, secret = email_configs.create_config(session=session, project_id=project_id, data=body)
        return _out(email_configs.config_view(row, inbound_secret=secret))


@router.get("/email_configs", summary="The project's email configs (secrets never shown)")
def list_email_configs(project_id: int, principal: Principal = Depends(READ)) -> dict[str, Any]:
    with session_scope(read_only=True) as session:
        rows = email_configs.list_configs(session=session, project_id=project_id)
        results = [_out(email_configs.config_view(row)) for row in rows]
    return {"count": len(results), "next": None, "previous": None, "results": results}


@router.get("/email_configs/{config_id}", summary="An email config (secrets never shown)")
def get_email_config(project_id: int, config_id: str, principal: Principal = Depends(READ)) -> dict[str, Any]:
    with session_scope(read_only=True) as session:
        row = email_configs.get_config(session=session, project_id=project_id, config_id=config_id)
        return _out(email_configs.config_view(row))


@router.patch("/email_configs/{config_id}", summary="Change an email config (passwords: null removes)")
def update_email_config(project_id: int, config_id: str, body: Any = Body(...),
                        principal: Principal = Depends(WRITE)) -> dict[str, Any]:
    with session_scope() as session:
        row = email_configs.update_config(session=session, project_id=project_id, config_id=config_id, data=body)
        return _out(email_configs.config_view(row))


@router.delete("/email_configs/{config_id}", status_code=204, summary="Remove an email config")
def delete_email_config(project_id: int, config_id: str, principal: Principal = Depends(WRITE)) -> Response:
    with session_scope() as session:
        email_configs.delete_config(session=session, project_id=project_id, config_id=config_id)
    return Response(status_code=204)


@router.post("/email_configs/{config_id}/test", summary="Open an SMTP connection and report the server's answer")
def test_email_config(project_id: int, config_id: str, principal: Principal = Depends(WRITE)) -> dict[str, Any]:
    with session_scope(read_only=True) as session:
        row = email_configs.get_config(session=session, project_id=project_id, config_id=config_id)
        config, row_id = email_configs.adapter_config(row), row.id
    report = email_configs.test_smtp(config)  # no transaction open while the server answers
    with session_scope() as session:
        email_configs.set_health(session=session, config_id=row_id, ok=report["ok"], detail=report["detail"],
                                 source="smtp")
    return report


@router.post("/email_configs/{config_id}/rotate_inbound_secret",
             summary="Replace the inbound secret (the response shows the new one, once)")
def rotate_inbound_secret(project_id: int, config_id: str, principal: Principal = Depends(WRITE)) -> dict[str, Any]:
    with session_scope() as session:
        row, secret = email_configs.rotate_inbound_secret(session=session, project_id=project_id, config_id=config_id)
        return _out(email_configs.config_view(row, inbound_secret=secret))


def mount(app: FastAPI) -> None:
    include_project_router(app, router)
