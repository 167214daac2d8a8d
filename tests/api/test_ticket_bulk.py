"""POST tickets/bulk_update_status and tickets/bulk_update_tags."""

from __future__ import annotations

import uuid
from typing import Any

from tests.factories import make_ticket


def _status(client: Any, tenant: Any, ids: list[Any], status: Any) -> Any:
    return client.post(tenant.url("tickets/bulk_update_status"), json={"ids": ids, "status": status},
                       headers=tenant.headers)


def _tags(client: Any, tenant: Any, ids: list[Any], action: Any, tags: Any) -> Any:
    return client.post(tenant.url("tickets/bulk_update_tags/"), json={"ids": ids, "action": action, "tags": tags},
                       headers=tenant.headers)


def _ticket(client: Any, tenant: Any, ref: str) -> dict[str, Any]:
    return client.get(tenant.url(f"tickets/{ref}"), headers=tenant.headers).json()


def test_bulk_status_changes_this_projects_tickets_and_skips_the_rest_silently(client, tenant, other_tenant):
    new = make_ticket(tenant.project_id)["id"]
    already = make_ticket(tenant.project_id, message=None, status="resolved")["id"]
    theirs = make_ticket(other_tenant.project_id)["id"]
    response = _status(client, tenant, [new, already, theirs, str(uuid.uuid4()), "garbage", new], "resolved")
    assert response.status_code == 200
    assert response.json() == {"updated": 1, "ids": [new]}
    assert _ticket(client, tenant, new)["status"] == "resolved"
    assert _ticket(client, other_tenant, theirs)["status"] == "new"
    assert _status(client, tenant, [], "open").json() == {"updated": 0, "ids": []}


def test_bulk_status_refuses_an_unknown_status_or_too_many_ids(client, tenant):
    made = make_ticket(tenant.project_id)["id"]
    bad = _status(client, tenant, [made], "closed")
    assert bad.status_code == 400 and bad.json()["attr"] == "status"
    many = _status(client, tenant, [str(uuid.uuid4()) for _ in range(501)], "open")
    assert many.status_code == 400 and many.json()["attr"] == "ids"
    assert _ticket(client, tenant, made)["status"] == "new"


def test_bulk_tags_add_remove_and_set(client, tenant, other_tenant):
    a = make_ticket(tenant.project_id, tags=["billing"])["id"]
    b = make_ticket(tenant.project_id)["id"]
    theirs = make_ticket(other_tenant.project_id, tags=["billing"])["id"]
    added = _tags(client, tenant, [a, b, theirs, "nope"], "add", [" VIP ", "billing"]).json()
    assert added["updated"] == [{"id": a, "tags": ["billing", "vip"]}, {"id": b, "tags": ["billing", "vip"]}]
    assert added["skipped"] == [{"id": theirs, "reason": "not_found"}, {"id": "nope", "reason": "not_found"}]
    removed = _tags(client, tenant, [a], "remove", ["BILLING", "never-there"]).json()
    assert removed["updated"] == [{"id": a, "tags": ["vip"]}]
    replaced = _tags(client, tenant, [a, b], "set", ["urgent"]).json()
    assert [u["tags"] for u in replaced["updated"]] == [["urgent"], ["urgent"]]
    assert _ticket(client, tenant, a)["tags"] == ["urgent"] and _ticket(client, tenant, b)["tags"] == ["urgent"]
    assert _ticket(client, other_tenant, theirs)["tags"] == ["billing"]
    cleared = _tags(client, tenant, [a], "set", []).json()
    assert cleared["updated"] == [{"id": a, "tags": []}]
    listed = client.get(tenant.url("tickets/"), params={"tags": "urgent"}, headers=tenant.headers).json()
    assert [r["id"] for r in listed["results"]] == [b]


def test_bulk_tags_limits_are_400_with_the_field(client, tenant):
    made = make_ticket(tenant.project_id, tags=["keep"])["id"]
    too_many = _tags(client, tenant, [made], "add", [f"t{i}" for i in range(101)])
    assert too_many.status_code == 400 and too_many.json()["attr"] == "tags"
    too_long = _tags(client, tenant, [made], "add", ["x" * 256])
    assert too_long.status_code == 400 and too_long.json()["attr"] == "tags"
    bad_action = _tags(client, tenant, [made], "toggle", ["a"])
    assert bad_action.status_code == 400 and bad_action.json()["attr"] == "action"
    not_strings = _tags(client, tenant, [made], "add", [1, {"a": 1}])
    assert not_strings.status_code == 400 and not_strings.json()["attr"].startswith("tags")
    assert _ticket(client, tenant, made)["tags"] == ["keep"]
    exactly = _tags(client, tenant, [made], "set", [f"t{i:03}" for i in range(100)])
    assert exactly.status_code == 200 and len(exactly.json()["updated"][0]["tags"]) == 100
    longest = _tags(client, tenant, [made], "set", ["y" * 255])
    assert longest.status_code == 200 and longest.json()["updated"][0]["tags"] == ["y" * 255]
