"""GET /api/users/@me/ and GET /api/personal_api_keys/@current: who a key belongs to, never its secret."""

from __future__ import annotations

from core.db import session_scope
from services import accounts
from tests.factories import make_key, make_tenant


def test_me_returns_the_keys_user_with_its_projects(client, tenant):
    second = make_tenant("Acme Labs")  # the same user, a second project
    response = client.get("/api/users/@me/", headers=tenant.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == tenant.user_id
    assert body["email"] == "agent@acme.test"
    assert body["first_name"] == "Ada" and body["last_name"] == "Agent"
    assert body["uuid"] and body["distinct_id"] == body["uuid"]
    assert body["projects"] == [{"id": tenant.project_id, "name": "Acme"}, {"id": second.project_id, "name": "Acme Labs"}]
    assert body["team"] == {"id": tenant.project_id, "name": "Acme"}


def test_me_answers_without_the_trailing_slash_too(client, tenant):
    assert client.get("/api/users/@me", headers=tenant.headers).json()["id"] == tenant.user_id


def test_me_lists_only_the_projects_a_scoped_key_reaches(client, tenant):
    second = make_tenant("Acme Labs")
    key = make_key(tenant, ["ticket:read"], scoped_projects=[second.project_id])
    body = client.get("/api/users/@me/", headers={"Authorization": f"Bearer {key}"}).json()
    assert body["projects"] == [{"id": second.project_id, "name": "Acme Labs"}]
    assert body["team"] == {"id": second.project_id, "name": "Acme Labs"}


def test_current_key_shows_its_label_scopes_and_projects_but_never_the_secret(client, tenant):
    for path in ("/api/personal_api_keys/@current", "/api/personal_api_keys/@current/"):
        response = client.get(path, headers=tenant.headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["label"] == "Acme key"
        assert body["scopes"] == ["*"]
        assert body["scoped_projects"] is None
        assert body["scoped_teams"] == [] and body["scoped_organizations"] == []
        assert body["created_at"].endswith("Z") and body["last_used_at"].endswith("Z")
        assert body["mask_value"] == tenant.api_key[:4] + "…" + tenant.api_key[-4:]
        assert tenant.api_key not in response.text
        assert set(body) == {"id", "label", "scopes", "scoped_projects", "scoped_teams", "scoped_organizations",
                             "created_at", "last_used_at", "mask_value"}


def test_current_key_reports_a_project_restriction(client, tenant):
    key = make_key(tenant, ["ticket:read", "conversation:read"], scoped_projects=[tenant.project_id])
    body = client.get("/api/personal_api_keys/@current", headers={"Authorization": f"Bearer {key}"}).json()
    assert body["scopes"] == ["ticket:read", "conversation:read"]
    assert body["scoped_projects"] == [tenant.project_id] and body["scoped_teams"] == [tenant.project_id]


def test_a_key_of_any_scope_may_ask_who_it_is(client, tenant):
    key = make_key(tenant, ["integration:read"])
    headers = {"Authorization": f"Bearer {key}"}
    assert client.get("/api/users/@me/", headers=headers).status_code == 200
    assert client.get("/api/personal_api_keys/@current", headers=headers).status_code == 200


def test_identity_endpoints_refuse_a_missing_or_unknown_key(client, tenant):
    for path in ("/api/users/@me/", "/api/personal_api_keys/@current"):
        missing = client.get(path)
        assert missing.status_code == 401 and missing.json()["code"] == "not_authenticated"
        wrong = client.get(path, headers={"Authorization": "Bearer phx_not-a-real-key"})
        assert wrong.status_code == 401 and wrong.json()["code"] == "authentication_failed"


def test_a_user_without_projects_gets_an_empty_list_and_no_team(client, db):
    with session_scope() as session:
        user = accounts.get_or_create_user(session=session, email="loner@example.test")
        secret = accounts.create_api_key(session=session, user=user, scopes=["*"], label="loner").secret
    body = client.get("/api/users/@me/", headers={"Authorization": f"Bearer {secret}"}).json()
    assert body["projects"] == [] and body["team"] is None
