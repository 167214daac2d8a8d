"""Keys, scopes, rate limits, project isolation and bad input for every ticket endpoint."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from core import settings as settings_module
from core.db import session_scope
from models import Message, Ticket
from tests.factories import make_key, make_ticket


def _endpoints(ticket: str) -> list[tuple[str, str, str, dict[str, Any] | None]]:
    """(method, path, scope, json body) for every ticket endpoint."""
    return [
        ("GET", "tickets/", "ticket:read", None),
        ("GET", "tickets/unread_count", "ticket:read", None),
        ("GET", f"tickets/{ticket}", "ticket:read", None),
        ("GET", f"tickets/{ticket}/messages", "ticket:read", None),
        ("POST", "tickets/", "ticket:write", {}),
        ("PATCH", f"tickets/{ticket}", "ticket:write", {"priority": "low"}),
        ("POST", f"tickets/{ticket}/reply", "ticket:write", {"message": "hi", "is_private": True}),
        ("POST", "tickets/bulk_update_status", "ticket:write", {"ids": [ticket], "status": "open"}),
        ("POST", "tickets/bulk_update_tags", "ticket:write", {"ids": [ticket], "action": "add", "tags": ["a"]}),
        ("POST", "tickets/compose", "ticket:write", {"recipient_email": "a@b.co", "email_subject": "s",
                                                     "email_config_id": str(uuid.uuid4()), "message": "m"}),
        ("POST", f"tickets/{ticket}/messages/{uuid.uuid4()}/retry", "ticket:write", None),
        ("DELETE", f"tickets/{ticket}", "ticket:write", None),
    ]


def _call(client: Any, tenant: Any, method: str, path: str, body: Any, headers: dict[str, str],
          prefix: str = "projects") -> Any:
    url = tenant.url(path).replace("/api/projects/", f"/api/{prefix}/")
    return client.request(method, url, json=body, headers=headers)


def test_every_endpoint_needs_a_valid_key(client, tenant):
    ticket = make_ticket(tenant.project_id)["id"]
    for method, path, _, body in _endpoints(ticket):
        for headers, code in (({}, "not_authenticated"), ({"Authorization": "Bearer phx_wrong"}, "authentication_failed"),
                              ({"Authorization": f"Basic {tenant.api_key}"}, "not_authenticated"),
                              ({"Authorization": "Bearer "}, "not_authenticated")):
            response = _call(client, tenant, method, path, body, headers)
            assert response.status_code == 401, (method, path, headers)
            assert response.json()["code"] == code and response.json()["type"] == "authentication_error"


def test_a_missing_scope_is_a_403_naming_it_and_write_implies_read(client, tenant):
    ticket = make_ticket(tenant.project_id)["id"]
    keys = {
        "none": make_key(tenant, ["conversation:read"]),
        "read": make_key(tenant, ["ticket:read"]),
        "write": make_key(tenant, ["ticket:write"]),
    }
    for method, path, scope, body in _endpoints(ticket):
        for name, key in keys.items():
            response = _call(client, tenant, method, path, body, {"Authorization": f"Bearer {key}"})
            allowed = name == "write" or (name == "read" and scope == "ticket:read")
            if allowed:
                assert response.status_code not in (401, 403), (method, path, name, response.text)
            else:
                assert response.status_code == 403, (method, path, name)
                error = response.json()
                assert scope in error["detail"] and error["required_scope"] == scope
                assert error["code"] == "permission_denied"


def test_a_key_limited_to_other_projects_sees_404_everywhere(client, tenant, other_tenant):
    ticket = make_ticket(tenant.project_id)["id"]
    elsewhere = make_key(tenant, ["*"], scoped_projects=[other_tenant.project_id])
    for method, path, _, body in _endpoints(ticket):
        response = _call(client, tenant, method, path, body, {"Authorization": f"Bearer {elsewhere}"})
        assert response.status_code == 404, (method, path)
        assert response.json()["code"] == "not_found"
    # And a project the key's user is not a member of, or no project at all, is 404 too.
    for project in (other_tenant.project_id, 10**12, "abc"):
        response = client.get(f"/api/projects/{project}/conversations/tickets/", headers=tenant.headers)
        assert response.status_code == 404, project
    assert _call(client, tenant, "GET", "tickets/", None, tenant.headers, prefix="environments").status_code == 200


def test_another_projects_tickets_are_404_by_uuid_and_by_number(client, tenant, other_tenant):
    theirs = make_ticket(other_tenant.project_id, message="secret")
    for ref in (theirs["id"], theirs["ticket_number"]):
        for method, path, _, body in _endpoints(str(ref)):
            if "{" in path or str(ref) not in path or "bulk" in path:
                continue
            response = _call(client, tenant, method, path, body, tenant.headers)
            assert response.status_code == 404, (method, path)
    listed = client.get(tenant.url("tickets/"), params={"search": "secret"}, headers=tenant.headers).json()
    assert listed["count"] == 0
    with session_scope() as session:
        ticket = session.get_one(Ticket, uuid.UUID(theirs["id"]))
        assert ticket.deleted_at is None and ticket.priority is None
        assert len(list(session.query(Message).filter(Message.ticket_id == ticket.id))) == 1


def test_each_key_is_rate_limited_per_minute_with_retry_after(client, tenant, monkeypatch):
    monkeypatch.setenv("TICKETWIRE_RATE_LIMIT_PER_MINUTE", "3")
    settings_module.get_settings.cache_clear()
    url = tenant.url("tickets/unread_count")
    assert [client.get(url, headers=tenant.headers).status_code for _ in range(3)] == [200, 200, 200]
    throttled = client.get(url, headers=tenant.headers)
    assert throttled.status_code == 429 and throttled.json()["type"] == "throttled"
    assert 1 <= int(throttled.headers["Retry-After"]) <= 60
    other_key = make_key(tenant, ["ticket:read"])
    assert client.get(url, headers={"Authorization": f"Bearer {other_key}"}).status_code == 200


def test_the_rate_limit_also_holds_on_redis(tenant, redis_url, client, monkeypatch):
    monkeypatch.setenv("TICKETWIRE_RATE_LIMIT_PER_MINUTE", "2")
    settings_module.get_settings.cache_clear()
    url = tenant.url("tickets/")
    assert [client.get(url, headers=tenant.headers).status_code for _ in range(3)] == [200, 200, 429]


def test_malformed_json_and_non_object_bodies_are_400(client, tenant):
    headers = {**tenant.headers, "Content-Type": "application/json"}
    malformed = client.post(tenant.url("tickets/"), content=b'{"status": ', headers=headers)
    assert malformed.status_code == 400 and malformed.json()["code"] == "parse_error"
    for body in (b"[1, 2]", b'"text"', b"null"):
        response = client.post(tenant.url("tickets/"), content=body, headers=headers)
        assert response.status_code == 400, body
    missing = client.post(tenant.url("tickets/bulk_update_status"), headers=tenant.headers)
    assert missing.status_code == 400
    with session_scope() as session:
        assert session.query(Ticket).count() == 0


def test_a_body_over_one_megabyte_is_413(client, tenant):
    # (The reply path takes more: its attachments; see tests/api/test_reply_attachments.py.)
    make_ticket(tenant.project_id)  # its message must stay the only one
    response = client.post(tenant.url("tickets/"), json={"message": "x" * 1_100_000}, headers=tenant.headers)
    assert response.status_code == 413 and response.json()["code"] == "too_large"
    with session_scope() as session:
        assert session.query(Message).count() == 1


def test_a_streamed_body_over_one_megabyte_is_413_too(client, tenant):
    def chunks() -> Any:
        yield b'{"message": "'
        for _ in range(12):
            yield b"x" * 100_000
        yield b'"}'

    headers = {**tenant.headers, "Content-Type": "application/json"}
    response = client.post(tenant.url("tickets/"), content=chunks(), headers=headers)
    assert response.status_code == 413


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"search": "#99999999999"}, 0),
        ({"search": "99999999999999999999999"}, 0),
        ({"assignee": "user:99999999999"}, 0),
        ({"search": "a\x00b"}, 0),
        ({"tags": "a\x00b"}, 0),
        ({"distinct_ids": "\x00"}, 1),  # an empty value is no filter
        ({"date_from": "-999999y"}, None),
        ({"date_from": "0001-01-01T00:00:00+01:00"}, None),
        ({"limit": "99999999999999999999", "offset": "99999999999999999999"}, 1),
    ],
)
def test_extreme_list_parameters_never_fail_the_server(client, tenant, params, expected):
    make_ticket(tenant.project_id)
    response = client.get(tenant.url("tickets/"), params=params, headers=tenant.headers)
    if expected is None:
        assert response.status_code == 400 and response.json()["attr"] == "date_from"
    else:
        assert response.status_code == 200 and response.json()["count"] == expected


def test_huge_ticket_numbers_are_not_found(client, tenant):
    for ref in ("99999999999", "#2147483648", "2147483647"):
        assert client.get(tenant.url(f"tickets/{ref.replace('#', '%23')}"), headers=tenant.headers).status_code == 404


def test_nul_characters_in_a_body_are_refused_with_the_field(client, tenant):
    made = make_ticket(tenant.project_id)
    reply = client.post(tenant.url(f"tickets/{made['id']}/reply"), json={"message": "a\x00b"}, headers=tenant.headers)
    assert reply.status_code == 400 and reply.json()["attr"] == "message"
    tags = client.patch(tenant.url(f"tickets/{made['id']}"), json={"tags": ["a\x00"]}, headers=tenant.headers)
    assert tags.status_code == 400 and tags.json()["attr"] == "tags"


def test_unknown_paths_and_methods_answer_json_errors(client, tenant):
    missing = client.get(tenant.url("tickets/x/y/z"), headers=tenant.headers)
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    wrong = client.put(tenant.url("tickets/"), json={}, headers=tenant.headers)
    assert wrong.status_code == 405 and wrong.json()["code"] == "method_not_allowed"
