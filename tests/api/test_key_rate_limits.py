"""Per-key rate limits and the cost of authentication (api/deps.py): once a process has seen a
key, a request reads the grant generation and counts both windows in ONE cache round trip;
unknown keys are 401 and never counted; a request the minute refuses is not counted in the
hour."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
import redis

from api import deps
from core import settings as settings_module
from core.cache import get_cache
from core.db import session_scope
from services import accounts
from tests.conftest import commandstats_delta, redis_commandstats
from tests.factories import make_key


def _limits(monkeypatch: pytest.MonkeyPatch, *, minute: int = 480, hour: int = 4800) -> None:
    monkeypatch.setenv("TICKETWIRE_RATE_LIMIT_PER_MINUTE", str(minute))
    monkeypatch.setenv("TICKETWIRE_RATE_LIMIT_PER_HOUR", str(hour))
    settings_module.get_settings.cache_clear()


def _key_id(secret: str) -> uuid.UUID:
    with session_scope(read_only=True) as session:
        grant = accounts.load_grant(session=session, secret=secret)
        assert grant is not None
        return grant.key_id


def _hour_count(key_id: uuid.UUID, since: float) -> int:
    """The key's count in this hour's window (summed over both windows if an hour began)."""
    cache = get_cache()
    hours = {int(since // 3600), int(time.time() // 3600)}
    return sum(int(cache.get(f"rl:key:{key_id}:3600:{hour}") or 0) for hour in hours)


def test_an_authenticated_request_is_one_redis_round_trip(tenant, redis_url, client, redis_round_trips):
    url = tenant.url("tickets/")
    get_cache().get("warm-up")  # connects (the handshake is a few round trips of its own)
    deps.forget_grants()
    redis_round_trips.clear()
    assert client.get(url, headers=tenant.headers).status_code == 200
    # This process's first sight of the key: the generation, then (after the database named
    # the key) its windows. Two round trips where there were three.
    assert len(redis_round_trips) == 2
    admin = redis.Redis.from_url(redis_url)
    before = redis_commandstats(admin)
    redis_round_trips.clear()
    for _ in range(10):
        assert client.get(url, headers=tenant.headers).status_code == 200
    assert len(redis_round_trips) == 10
    # Each: MULTI, GET auth-gen, INCRBY + PEXPIRE per window, EXEC, in one write.
    assert commandstats_delta(before, redis_commandstats(admin)) == {
        "multi": 10, "get": 10, "incrby": 20, "pexpire": 20, "exec": 10}


def test_an_expired_or_outdated_grant_still_costs_one_round_trip_before_the_database(tenant, redis_url, client,
                                                                                  redis_round_trips, monkeypatch):
    url = tenant.url("tickets/")
    assert client.get(url, headers=tenant.headers).status_code == 200
    monkeypatch.setattr(deps, "GRANT_TTL_SECONDS", 0.0)
    redis_round_trips.clear()
    assert client.get(url, headers=tenant.headers).status_code == 200
    assert len(redis_round_trips) == 1


def test_the_identity_endpoints_are_one_round_trip_and_share_the_keys_budget(tenant, redis_url, client,
                                                                             redis_round_trips, monkeypatch):
    _limits(monkeypatch, minute=3)
    assert client.get("/api/users/@me", headers=tenant.headers).status_code == 200
    redis_round_trips.clear()
    assert client.get("/api/personal_api_keys/@current", headers=tenant.headers).status_code == 200
    assert len(redis_round_trips) == 1
    assert client.get(tenant.url("tickets/"), headers=tenant.headers).status_code == 200
    throttled = client.get("/api/users/@me", headers=tenant.headers)
    assert throttled.status_code == 429 and throttled.json()["code"] == "throttled"
    assert client.get(tenant.url("tickets/"), headers=tenant.headers).status_code == 429


def _check_unknown_keys_are_401_and_never_counted(client: Any, tenant: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _limits(monkeypatch, minute=2)
    url = tenant.url("tickets/")
    for _ in range(5):
        response = client.get(url, headers={"Authorization": "Bearer phx_wrong"})
        assert response.status_code == 401 and response.json()["code"] == "authentication_failed"
    assert [client.get(url, headers=tenant.headers).status_code for _ in range(3)] == [200, 200, 429]


def test_unknown_keys_are_401_and_never_counted(client, tenant, monkeypatch):
    _check_unknown_keys_are_401_and_never_counted(client, tenant, monkeypatch)


def test_unknown_keys_are_401_and_never_counted_on_redis(tenant, redis_url, client, monkeypatch):
    _check_unknown_keys_are_401_and_never_counted(client, tenant, monkeypatch)
    counters = sorted(k.decode() for k in redis.Redis.from_url(redis_url).scan_iter("tw:rl:*"))
    key_id = _key_id(tenant.api_key)
    assert len(counters) == 2 and all(k.startswith(f"tw:rl:key:{key_id}:") for k in counters)


def _check_a_revoked_key_over_its_limit_is_401(client: Any, tenant: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _limits(monkeypatch, minute=1)
    key = make_key(tenant, ["ticket:read"])
    headers = {"Authorization": f"Bearer {key}"}
    url = tenant.url("tickets/")
    assert [client.get(url, headers=headers).status_code for _ in range(2)] == [200, 429]
    with session_scope() as session:
        assert accounts.revoke_api_key(session=session, key_id=_key_id(key))
    assert [client.get(url, headers=headers).status_code for _ in range(2)] == [401, 401]
    assert client.get(url, headers=tenant.headers).status_code == 200  # its own budget


def test_a_revoked_key_over_its_limit_is_401(client, tenant, monkeypatch):
    _check_a_revoked_key_over_its_limit_is_401(client, tenant, monkeypatch)


def test_a_revoked_key_over_its_limit_is_401_on_redis(tenant, redis_url, client, monkeypatch):
    _check_a_revoked_key_over_its_limit_is_401(client, tenant, monkeypatch)


def _check_the_minute_and_the_hour(client: Any, tenant: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    since = time.time()
    _limits(monkeypatch, minute=2, hour=3)
    key_id = _key_id(tenant.api_key)
    url = tenant.url("tickets/unread_count")
    assert [client.get(url, headers=tenant.headers).status_code for _ in range(4)] == [200, 200, 429, 429]
    # Requests the minute refused were never counted in the hour.
    assert _hour_count(key_id, since) == 2
    _limits(monkeypatch, minute=100, hour=3)
    assert client.get(url, headers=tenant.headers).status_code == 200
    throttled = client.get(url, headers=tenant.headers)
    assert throttled.status_code == 429
    retry = int(throttled.headers["Retry-After"])
    assert 1 <= retry <= 3600
    assert throttled.json() == {"type": "throttled", "code": "throttled", "attr": None,
                                "detail": f"Request was throttled. Expected available in {retry} seconds."}


def test_the_minute_and_the_hour_are_enforced_and_a_refused_request_is_not_counted_twice(client, tenant, monkeypatch):
    _check_the_minute_and_the_hour(client, tenant, monkeypatch)


def test_the_minute_and_the_hour_on_redis(tenant, redis_url, client, monkeypatch):
    _check_the_minute_and_the_hour(client, tenant, monkeypatch)


def test_with_redis_down_the_limits_fall_back_to_this_process(tenant, client, monkeypatch):
    from core import cache as cache_module
    from tests.services import free_port

    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    cache_module.reset_cache()
    _limits(monkeypatch, minute=2)
    url = tenant.url("tickets/")
    assert [client.get(url, headers=tenant.headers).status_code for _ in range(3)] == [200, 200, 429]
    assert client.get(url, headers={"Authorization": "Bearer phx_wrong"}).status_code == 401
