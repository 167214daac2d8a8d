"""The project's SLA policy (beyond the seed): `PUT/GET .../conversations/sla_policy`."""

from __future__ import annotations

from typing import Any

from fastapi import Body, Depends, FastAPI

from api.deps import Principal, require
from api.routing import SlashRouter, include_project_router
from api.schemas import iso
from core.db import session_scope
from models.widget import SlaPolicy
from services import sla

router = SlashRouter(tags=["sla"])


def mount(app: FastAPI) -> None:
    include_project_router(app, router)


def policy_out(row: SlaPolicy | None) -> dict[str, Any]:
    if row is None:
        return {"targets": {}, "business_hours": None, "updated_at": None}
    return {"targets": row.targets or {}, "business_hours": row.business_hours, "updated_at": iso(row.updated_at)}


@router.get("/sla_policy", summary="The project's SLA policy (targets per priority, business hours)")
def get_sla_policy(project_id: int, principal: Principal = Depends(require("ticket:read"))) -> dict[str, Any]:
    with session_scope(read_only=True) as session:
        return policy_out(sla.get_policy_row(session=session, project_id=project_id))


@router.put("/sla_policy", summary="Replace the project's SLA policy")
def put_sla_policy(project_id: int, body: dict[str, Any] = Body(...),
                   principal: Principal = Depends(require("ticket:write"))) -> dict[str, Any]:
    with session_scope() as session:
        row = sla.set_policy(session=session, project_id=project_id, targets=body.get("targets"),
                             business_hours=body.get("business_hours"))
        return policy_out(row)
