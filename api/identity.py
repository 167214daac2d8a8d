"""The endpoints PostHog's MCP server and scripts call first to learn who a key belongs to.

`GET /api/users/@me/` and `GET /api/personal_api_keys/@current` live outside the project
prefix (as at PostHog). Any valid key may call them, whatever its scopes; the secret is never
returned, only its mask.
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI, Request
from sqlalchemy import select

from api.deps import authenticate
from api.routing import SlashRouter
from api.schemas import iso, user_out
from core.db import session_scope
from models import ApiKey, Project, ProjectMember, User

router = SlashRouter(tags=["identity"])


def current_key(request: Request) -> tuple[ApiKey, User]:
    """Dependency: a valid personal API key of any scope (401 otherwise), rate limited per key."""
    return authenticate(request, rate_limited=True)


def _key_projects(key: ApiKey, user: User) -> list[dict[str, Any]]:
    """The projects this key reaches: the user's, narrowed to the key's scoped projects."""
    with session_scope(read_only=True) as session:
        query = (
            select(Project.id, Project.name)
            .join(ProjectMember, ProjectMember.project_id == Project.id)
            .where(ProjectMember.user_id == user.id)
            .order_by(Project.id)
        )
        if key.scoped_projects is not None:
            query = query.where(Project.id.in_([int(p) for p in key.scoped_projects]))
        return [{"id": pid, "name": name} for pid, name in session.execute(query)]


@router.get("/api/users/@me", summary="The user the API key belongs to, with its projects")
def me(found: tuple[ApiKey, User] = Depends(current_key)) -> dict[str, Any]:
    key, user = found
    projects = _key_projects(key, user)
    return {
        **user_out(user),
        "projects": projects,
        # PostHog clients take their default project from `team`.
        "team": projects[0] if projects else None,
    }


@router.get("/api/personal_api_keys/@current", summary="The API key in use: label, scopes and projects")
def current_api_key(found: tuple[ApiKey, User] = Depends(current_key)) -> dict[str, Any]:
    key, _ = found
    # Read it back: authentication records `last_used_at` in its own transaction.
    with session_scope(read_only=True) as session:
        key = session.get(ApiKey, key.id) or key
    scoped = [int(p) for p in key.scoped_projects] if key.scoped_projects is not None else None
    return {
        "id": str(key.id),
        "label": key.label,
        "scopes": list(key.scopes or []),
        "scoped_projects": scoped,
        # PostHog's names for the same restriction (an empty list means "not restricted").
        "scoped_teams": scoped or [],
        "scoped_organizations": [],
        "created_at": iso(key.created_at),
        "last_used_at": iso(key.last_used_at),
        "mask_value": key.mask,
    }


def mount(app: FastAPI) -> None:
    app.include_router(router)
