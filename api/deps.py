"""Authentication, scopes and per-key rate limits for the REST API."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Request

from api.errors import ApiError, not_authenticated
from core.cache import get_cache
from core.db import session_scope
from core.settings import get_settings
from models import ApiKey, User
from services import accounts


@dataclass(frozen=True)
class Principal:
    key_id: str
    key_label: str
    scopes: tuple[str, ...]
    scoped_projects: tuple[int, ...] | None
    user: User
    project_id: int | None


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise not_authenticated()
    return token.strip()


def enforce_rate_limit(bucket: str, limits: tuple[tuple[int, int], ...]) -> None:
    """Fixed windows (per minute, per hour): 429 with Retry-After when one is exceeded."""
    cache = get_cache()
    stamp = time.time()
    for limit, window in limits:
        key = f"rl:{bucket}:{window}:{int(stamp // window)}"
        if cache.incr(key, ttl=window) > limit:
            retry = max(1, math.ceil(window - stamp % window))
            raise ApiError(429, "throttled", "throttled", f"Request was throttled. Expected available in {retry} seconds.",
                           headers={"Retry-After": str(retry)})


def _authenticate(request: Request, project_id: int | None) -> tuple[ApiKey, User, bool]:
    """The key and its user (401 otherwise), and whether it may use `project_id`.

    One read-only unit of work; `last_used_at` is written (at most once a minute) in its own
    short transaction, so ordinary reads never take SQLite's write lock."""
    secret = _bearer(request)
    with session_scope(read_only=True) as session:
        found = accounts.authenticate(session=session, secret=secret)
        if found is None:
            raise ApiError(401, "authentication_error", "authentication_failed", "Invalid personal API key.")
        key, user = found
        allowed = project_id is not None and 0 < project_id < 2**31 and accounts.key_can_access(
            session=session, key=key, user=user, project_id=project_id
        )
        session.expunge(user)
        session.expunge(key)
    if accounts.key_needs_touch(key):
        with session_scope() as session:
            accounts.touch_key(session=session, key_id=key.id)
    return key, user, allowed


def authenticate(request: Request) -> tuple[ApiKey, User]:
    """The bearer key and its user; 401 when missing or unknown."""
    key, user, _ = _authenticate(request, None)
    return key, user


def require(scope: str, *, project: bool = True) -> Callable[[Request], Principal]:
    """Dependency: a valid key with `scope`, allowed on the path's project (404 otherwise)."""

    def dependency(request: Request) -> Principal:
        project_id = None
        if project:
            try:
                project_id = int(request.path_params.get("project_id"))  # type: ignore[arg-type]
            except (TypeError, ValueError):
                project_id = -1
        key, user, allowed = _authenticate(request, project_id)
        settings = get_settings()
        enforce_rate_limit(f"key:{key.id}", ((settings.rate_limit_per_minute, 60), (settings.rate_limit_per_hour, 3600)))
        if project and not allowed:
            raise ApiError(404, "invalid_request", "not_found", "Not found.")
        if not accounts.scope_allows(list(key.scopes or []), scope):
            raise ApiError(403, "authentication_error", "permission_denied",
                           f"API key missing required scope '{scope}'", attr=None, required_scope=scope)
        return Principal(
            key_id=str(key.id),
            key_label=key.label,
            scopes=tuple(key.scopes or []),
            scoped_projects=tuple(key.scoped_projects) if key.scoped_projects is not None else None,
            user=user,
            project_id=project_id,
        )

    return dependency
