"""Authentication, scopes and per-key rate limits for the REST API."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import Request

from api.errors import ApiError, not_authenticated
from core.cache import Cache, get_cache
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


Limits = tuple[tuple[int, int], ...]  # (limit, window in seconds) per fixed window


@dataclass(frozen=True)
class _Counted:
    """One request counted in a bucket's windows (not yet checked against the limits)."""

    bucket: str
    limits: Limits
    counters: list[tuple[str, float]]  # (cache key, ttl) per window, as counted
    counts: list[int]
    stamp: float


def _count(cache: Cache, bucket: str, limits: Limits, *, also_get: str | None = None) -> tuple[_Counted, Any]:
    """Count one request in each of the bucket's windows, and read `also_get`: one cache round trip."""
    stamp = time.time()
    counters = [(f"rl:{bucket}:{window}:{int(stamp // window)}", float(window)) for _, window in limits]
    counts, value = cache.incr_many(counters, also_get=also_get)
    return _Counted(bucket, limits, counters, counts, stamp), value


def _check(cache: Cache, counted: _Counted) -> None:
    """429 with Retry-After when a window's limit is exceeded (the first such, in order)."""
    for i, ((limit, window), count) in enumerate(zip(counted.limits, counted.counts, strict=True)):
        if count > limit:
            if counted.counters[i + 1 :]:
                # The windows are counted together now; a request throttled by one window used
                # to stop before the later ones were counted (the hour did not count requests
                # the minute refused), so take it back from those. (Until it is taken back, a
                # concurrent request may see those counts one higher.)
                cache.incr_many(counted.counters[i + 1 :], by=-1)
            retry = max(1, math.ceil(window - counted.stamp % window))
            raise ApiError(429, "throttled", "throttled", f"Request was throttled. Expected available in {retry} seconds.",
                           headers={"Retry-After": str(retry)})


def enforce_rate_limit(bucket: str, limits: Limits) -> None:
    """Fixed windows (per minute, per hour): 429 with Retry-After when one is exceeded."""
    cache = get_cache()
    counted, _ = _count(cache, bucket, limits)
    _check(cache, counted)


def key_limits() -> Limits:
    """Every API key's own limits (per minute, per hour), counted in `_key_bucket`."""
    settings = get_settings()
    return ((settings.rate_limit_per_minute, 60), (settings.rate_limit_per_hour, 3600))


def _key_bucket(key_id: uuid.UUID) -> str:
    return f"key:{key_id}"


# A key's grant is reused for this long at most (and only while no key, user, project or
# membership has changed since it was read: accounts.auth_generation). The bound covers
# changes made outside a Session (raw SQL) and, in the embedded mode without Redis, changes
# made by another process (the CLI).
GRANT_TTL_SECONDS = 10.0
_GRANTS_MAX = 10_000
_grants: dict[str, tuple[float, int, accounts.KeyGrant]] = {}  # key hash → (read at, generation, grant)
_touched: dict[uuid.UUID, datetime] = {}


def _grant(secret: str, limits: Limits | None = None) -> tuple[accounts.KeyGrant | None, _Counted | None]:
    """The key's grant: from this process's cache while fresh and current, else from the
    database. With `limits`, the request is also counted in the key's rate-limit windows (for
    `_check`; never for a key that does not exist).

    The shared generation is read before the database, so a racing change wins. When this
    process has read the key's grant before (current or not: a key's id never changes), that
    grant names the key's bucket, and the generation read and the window increments are one
    cache round trip (`Cache.incr_many`); otherwise they are two, around the database read.
    """
    digest = hash_api_key(secret)
    cache = get_cache()
    hit = _grants.get(digest)
    counted: _Counted | None = None
    if hit is not None and limits:
        counted, raw = _count(cache, _key_bucket(hit[2].key_id), limits, also_get=accounts.AUTH_GENERATION_KEY)
        generation = accounts.generation_of(raw)
    else:
        generation = accounts.auth_generation()
    if hit is not None and hit[1] == generation and time.monotonic() - hit[0] < GRANT_TTL_SECONDS:
        return hit[2], counted
    with session_scope(read_only=True) as session:
        grant = accounts.load_grant(session=session, secret=secret)
    if grant is None:
        # A revoked key counted above was counted in its own, now dead, bucket: no one else's.
        _grants.pop(digest, None)
        return None, None
    if len(_grants) >= _GRANTS_MAX:
        _grants.clear()
    _grants[digest] = (time.monotonic(), generation, grant)
    if limits and (counted is None or counted.bucket != _key_bucket(grant.key_id)):
        counted, _ = _count(cache, _key_bucket(grant.key_id), limits)
    return grant, counted


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


def _authenticate(request: Request, project_id: int | None, *,
                  rate_limited: bool = False) -> tuple[accounts.KeyGrant, bool]:
    """The key's grant (401 otherwise), and whether it may use `project_id`; with
    `rate_limited`, 429 when the key is over its limits (`key_limits`)."""
    grant, counted = _grant(_bearer(request), key_limits() if rate_limited else None)
    if grant is None:
        raise ApiError(401, "authentication_error", "authentication_failed", "Invalid personal API key.")
    allowed = project_id is not None and 0 < project_id < 2**31 and grant.can_access(project_id)
    _touch(grant)
    if counted is not None:
        _check(get_cache(), counted)
    return grant, allowed


def authenticate(request: Request, *, rate_limited: bool = False) -> tuple[ApiKey, User]:
    """The bearer key and its user (detached objects); 401 when missing or unknown, and with
    `rate_limited`, 429 when the key is over its limits."""
    grant, _ = _authenticate(request, None, rate_limited=rate_limited)
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
        # One cache round trip in all (grant generation and both rate-limit windows) once
        # this process has seen the key.
        grant, allowed = _authenticate(request, project_id, rate_limited=True)
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
