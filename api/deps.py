"""Authentication, scopes and per-key rate limits for the REST API."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from fastapi import Request

from api.errors import ApiError, not_authenticated
from core.cache import get_cache
from core.clock import as_utc, now
from core.crypto import hash_api_key
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


# A key's grant is reused for this long at most (and only while no key, user, project or
# membership has changed since it was read: accounts.auth_generation). The bound covers
# changes made outside a Session (raw SQL) and, in the embedded mode without Redis, changes
# made by another process (the CLI).
GRANT_TTL_SECONDS = 10.0
_GRANTS_MAX = 10_000
_grants: dict[str, tuple[float, int, accounts.KeyGrant]] = {}  # key hash → (read at, generation, grant)
_touched: dict[uuid.UUID, datetime] = {}


def _grant(secret: str) -> accounts.KeyGrant | None:
    """The key's grant: from this process's cache while fresh and current, else from the database."""
    digest = hash_api_key(secret)
    generation = accounts.auth_generation()  # read before the database, so a racing change wins
    hit = _grants.get(digest)
    if hit is not None and hit[1] == generation and time.monotonic() - hit[0] < GRANT_TTL_SECONDS:
        return hit[2]
    with session_scope(read_only=True) as session:
        grant = accounts.load_grant(session=session, secret=secret)
    if grant is None:
        _grants.pop(digest, None)
        return None
    if len(_grants) >= _GRANTS_MAX:
        _grants.clear()
    _grants[digest] = (time.monotonic(), generation, grant)
    return grant


def forget_grants() -> None:
    """Drop this process's cached grants (tests that switch databases)."""
    _grants.clear()
    _touched.clear()


def _touch(grant: accounts.KeyGrant) -> None:
    """Record the key's use at most once a minute (in its own short transaction, so ordinary
    reads never take SQLite's write lock)."""
    last = _touched.get(grant.key_id, grant.last_used_at)
    if last is not None and (now() - as_utc(last)).total_seconds() <= accounts.TOUCH_EVERY:
        return
    _touched[grant.key_id] = now()
    with session_scope() as session:
        accounts.touch_key(session=session, key_id=grant.key_id)


def _authenticate(request: Request, project_id: int | None) -> tuple[accounts.KeyGrant, bool]:
    """The key's grant (401 otherwise), and whether it may use `project_id`."""
    grant = _grant(_bearer(request))
    if grant is None:
        raise ApiError(401, "authentication_error", "authentication_failed", "Invalid personal API key.")
    allowed = project_id is not None and 0 < project_id < 2**31 and grant.can_access(project_id)
    _touch(grant)
    return grant, allowed


def authenticate(request: Request) -> tuple[ApiKey, User]:
    """The bearer key and its user (detached objects); 401 when missing or unknown."""
    grant, _ = _authenticate(request, None)
    return grant.key(), grant.user()


def require(scope: str, *, project: bool = True) -> Callable[[Request], Principal]:
    """Dependency: a valid key with `scope`, allowed on the path's project (404 otherwise)."""

    def dependency(request: Request) -> Principal:
        project_id = None
        if project:
            try:
                project_id = int(request.path_params.get("project_id"))  # type: ignore[arg-type]
            except (TypeError, ValueError):
                project_id = -1
        grant, allowed = _authenticate(request, project_id)
        settings = get_settings()
        enforce_rate_limit(f"key:{grant.key_id}", ((settings.rate_limit_per_minute, 60), (settings.rate_limit_per_hour, 3600)))
        if project and not allowed:
            raise ApiError(404, "invalid_request", "not_found", "Not found.")
        if not accounts.scope_allows(list(grant.scopes), scope):
            raise ApiError(403, "authentication_error", "permission_denied",
                           f"API key missing required scope '{scope}'", attr=None, required_scope=scope)
        return Principal(
            key_id=str(grant.key_id),
            key_label=grant.label,
            scopes=grant.scopes,
            scoped_projects=grant.scoped_projects,
            user=grant.user(),
            project_id=project_id,
        )

    return dependency
