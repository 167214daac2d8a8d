"""The API caches what a key may do for a few seconds (api/deps.py); every change to keys,
users, projects or memberships made through a Session takes effect at once, in every process
sharing the cache (Redis), and any other change within GRANT_TTL_SECONDS."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete, text

from api import deps
from core.db import get_engine, session_scope
from models import ApiKey, ProjectMember
from services import accounts
from tests.factories import make_key


def _list(client: Any, tenant: Any, key: str) -> int:
    response = client.get(tenant.url("tickets/"), headers={"Authorization": f"Bearer {key}"})
    return int(response.status_code)


def _key_id(secret: str) -> uuid.UUID:
    with session_scope(read_only=True) as session:
        grant = accounts.load_grant(session=session, secret=secret)
        assert grant is not None
        return grant.key_id


def _check_a_revoked_key_is_refused_at_once(client: Any, tenant: Any) -> None:
    key = make_key(tenant, ["ticket:read"])
    assert _list(client, tenant, key) == 200  # its grant is cached now
    with session_scope() as session:
        assert accounts.revoke_api_key(session=session, key_id=_key_id(key))
    assert _list(client, tenant, key) == 401
    assert _list(client, tenant, tenant.api_key) == 200  # other keys keep working


def test_a_revoked_key_is_refused_at_once(client, tenant):
    _check_a_revoked_key_is_refused_at_once(client, tenant)


def test_a_revoked_key_is_refused_at_once_on_redis(tenant, redis_url, client):
    _check_a_revoked_key_is_refused_at_once(client, tenant)


def test_a_revocation_by_another_process_is_seen_through_the_shared_generation(tenant, redis_url, client):
    """Another process revoking a key bumps the generation in Redis; this process's cached
    grant is not used past it."""
    key = make_key(tenant, ["ticket:read"])
    assert _list(client, tenant, key) == 200
    # What the other process does: the row goes, the shared generation moves on.
    with get_engine().begin() as conn:
        conn.execute(delete(ApiKey.__table__).where(ApiKey.__table__.c.key_hash == _hash(key)))
    accounts.invalidate_grants()
    assert _list(client, tenant, key) == 401


def test_a_deleted_key_object_and_a_changed_scope_take_effect_at_once(client, tenant):
    key = make_key(tenant, ["ticket:read"])
    assert _list(client, tenant, key) == 200
    with session_scope() as session:
        session.get_one(ApiKey, _key_id(key)).scopes = ["conversation:read"]
    response = client.get(tenant.url("tickets/"), headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 403 and response.json()["code"] == "permission_denied"
    key_id = _key_id(key)
    with session_scope() as session:
        session.delete(session.get_one(ApiKey, key_id))
    assert _list(client, tenant, key) == 401


def test_a_user_removed_from_the_project_is_refused_at_once(client, tenant):
    assert _list(client, tenant, tenant.api_key) == 200
    with session_scope() as session:
        session.execute(delete(ProjectMember).where(ProjectMember.project_id == tenant.project_id,
                                                    ProjectMember.user_id == tenant.user_id))
    assert _list(client, tenant, tenant.api_key) == 404


def test_a_change_outside_any_session_is_honoured_after_the_grant_expires(client, tenant, monkeypatch):
    key = make_key(tenant, ["ticket:read"])
    assert _list(client, tenant, key) == 200
    with get_engine().begin() as conn:  # raw SQL: no Session event sees it
        conn.execute(text("DELETE FROM api_keys WHERE key_hash = :h"), {"h": _hash(key)})
    assert _list(client, tenant, key) == 200  # still cached (at most GRANT_TTL_SECONDS)
    monkeypatch.setattr(deps, "GRANT_TTL_SECONDS", 0.0)
    assert _list(client, tenant, key) == 401


def test_a_cached_grant_does_not_hit_the_database(client, tenant, monkeypatch):
    assert _list(client, tenant, tenant.api_key) == 200
    original = accounts.load_grant
    reads: list[str] = []

    def counting_load(**kwargs: Any) -> Any:
        reads.append("load")
        return original(**kwargs)

    monkeypatch.setattr(accounts, "load_grant", counting_load)
    for _ in range(3):
        assert _list(client, tenant, tenant.api_key) == 200
    assert reads == []


def _hash(secret: str) -> str:
    from core.crypto import hash_api_key

    return hash_api_key(secret)
