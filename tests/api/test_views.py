"""Saved views: CRUD under conversations/views/, who may see and change them, and ?view= on the list."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.factories import make_key, make_tenant, make_ticket

FIVE_FILTERS = {
    "status": ["open", "pending"],
    "priority": "high",
    "channel_source": ["slack", "email"],
    "tags": ["billing"],
    "date_from": "-7d",
}
EXPLICIT_QUERY = "status=open,pending&priority=high&channel_source=slack,email&tags=billing&date_from=-7d"


def _create(client: Any, tenant: Any, **body: Any) -> dict[str, Any]:
    response = client.post(tenant.url("views/"), json={"name": "Urgent billing", "filters": {}, **body},
                           headers=tenant.headers)
    assert response.status_code == 201, response.text
    return response.json()


def _seed(project_id: int) -> dict[str, str]:
    """Seven tickets; exactly `match_slack` and `match_email` pass all of FIVE_FILTERS."""
    recent = datetime.now(UTC) - timedelta(days=1)

    def ticket(status: str, priority: str, channel: str, tags: list[str], updated_at: datetime) -> str:
        detail = {"slack": "slack_channel_message", "email": None, "widget": "widget_api"}[channel]
        # No customer message: one would reopen the resolved and pending tickets.
        return make_ticket(project_id, message=None, status=status, priority=priority, channel_source=channel,
                           channel_detail=detail, tags=tags, updated_at=updated_at)["id"]

    return {
        "match_slack": ticket("open", "high", "slack", ["billing"], recent),
        "match_email": ticket("pending", "high", "email", ["billing", "vip"], recent - timedelta(days=1)),
        "low_priority": ticket("open", "low", "slack", ["billing"], recent),
        "resolved": ticket("resolved", "high", "slack", ["billing"], recent),
        "widget": ticket("open", "high", "widget", ["billing"], recent),
        "other_tag": ticket("open", "high", "slack", ["refund"], recent),
        "old": ticket("open", "high", "slack", ["billing"], datetime.now(UTC) - timedelta(days=30)),
    }


def _ids(response: Any) -> set[str]:
    assert response.status_code == 200, response.text
    return {t["id"] for t in response.json()["results"]}


def test_a_view_with_five_filters_returns_the_same_tickets_as_the_filters_passed_explicitly(client, tenant):
    seeded = _seed(tenant.project_id)
    view = _create(client, tenant, filters=FIVE_FILTERS)
    explicit = _ids(client.get(tenant.url(f"tickets/?{EXPLICIT_QUERY}"), headers=tenant.headers))
    via_view = _ids(client.get(tenant.url(f"tickets/?view={view['short_id']}"), headers=tenant.headers))
    assert explicit == {seeded["match_slack"], seeded["match_email"]}
    assert via_view == explicit


def test_explicit_list_parameters_override_the_views_filters(client, tenant):
    seeded = _seed(tenant.project_id)
    view = _create(client, tenant, filters=FIVE_FILTERS)
    overridden = client.get(tenant.url(f"tickets/?view={view['short_id']}&status=resolved"), headers=tenant.headers)
    assert _ids(overridden) == {seeded["resolved"]}
    widened = client.get(tenant.url(f"tickets/?view={view['short_id']}&date_from=all"), headers=tenant.headers)
    assert _ids(widened) == {seeded["match_slack"], seeded["match_email"], seeded["old"]}


def test_an_unknown_view_on_the_list_is_a_400(client, tenant):
    response = client.get(tenant.url("tickets/?view=nope1234"), headers=tenant.headers)
    assert response.status_code == 400
    assert response.json()["attr"] == "view" and response.json()["code"] == "invalid_view"


def test_another_users_private_view_is_unknown_on_the_list_but_a_shared_one_applies(client, tenant):
    teammate = make_tenant("Acme", email="teammate@acme.test")
    seeded = _seed(tenant.project_id)
    private = _create(client, tenant, filters=FIVE_FILTERS)
    shared = _create(client, tenant, filters=FIVE_FILTERS, shared=True)
    assert client.get(teammate.url(f"tickets/?view={private['short_id']}"), headers=teammate.headers).status_code == 400
    assert _ids(client.get(teammate.url(f"tickets/?view={shared['short_id']}"), headers=teammate.headers)) == {
        seeded["match_slack"], seeded["match_email"]}


def test_a_created_view_has_a_short_id_and_its_creator(client, tenant):
    view = _create(client, tenant, filters={"status": ["open"], "assignee": "me"}, short_id="hijacked")
    assert re.fullmatch(r"[A-Za-z0-9]{8}", view["short_id"])
    assert view["name"] == "Urgent billing"
    assert view["filters"] == {"status": ["open"], "assignee": "me"}
    assert view["shared"] is False
    assert view["created_at"].endswith("Z")
    assert view["created_by"]["id"] == tenant.user_id and view["created_by"]["email"] == "agent@acme.test"
    fetched = client.get(tenant.url(f"views/{view['short_id']}/"), headers=tenant.headers)
    assert fetched.status_code == 200 and fetched.json() == view


def test_a_view_may_be_saved_without_filters(client, tenant):
    response = client.post(tenant.url("views"), json={"name": "Everything"}, headers=tenant.headers)
    assert response.status_code == 201 and response.json()["filters"] == {}


def test_views_are_listed_newest_first_with_private_ones_only_for_their_creator(client, tenant, other_tenant):
    teammate = make_tenant("Acme", email="teammate@acme.test")
    mine = _create(client, tenant, name="Mine")
    team = _create(client, tenant, name="Team", shared=True)
    theirs = _create(client, teammate, name="Theirs")
    listed = client.get(tenant.url("views/"), headers=tenant.headers).json()
    assert listed["count"] == 2
    assert [v["short_id"] for v in listed["results"]] == [team["short_id"], mine["short_id"]]
    seen_by_teammate = client.get(teammate.url("views"), headers=teammate.headers).json()["results"]
    assert {v["short_id"] for v in seen_by_teammate} == {team["short_id"], theirs["short_id"]}
    assert client.get(other_tenant.url("views"), headers=other_tenant.headers).json()["count"] == 0


def test_the_view_list_pages_with_limit_and_offset(client, tenant):
    for n in range(3):
        _create(client, tenant, name=f"View {n}")
    page = client.get(tenant.url("views/?limit=2"), headers=tenant.headers).json()
    assert page["count"] == 3 and len(page["results"]) == 2 and page["next"]
    rest = client.get(tenant.url("views/?limit=2&offset=2"), headers=tenant.headers).json()
    assert len(rest["results"]) == 1 and rest["next"] is None


def test_another_users_private_view_is_not_found(client, tenant):
    teammate = make_tenant("Acme", email="teammate@acme.test")
    private = _create(client, tenant)
    for method, kwargs in (("GET", {}), ("PATCH", {"json": {"name": "x"}}), ("DELETE", {})):
        response = client.request(method, teammate.url(f"views/{private['short_id']}"), headers=teammate.headers,
                                  **kwargs)
        assert response.status_code == 404, method


def test_only_the_creator_may_change_or_delete_a_shared_view(client, tenant):
    teammate = make_tenant("Acme", email="teammate@acme.test")
    shared = _create(client, tenant, shared=True)
    assert client.get(teammate.url(f"views/{shared['short_id']}"), headers=teammate.headers).status_code == 200
    for method, kwargs in (("PATCH", {"json": {"name": "Hijacked"}}), ("DELETE", {})):
        response = client.request(method, teammate.url(f"views/{shared['short_id']}/"), headers=teammate.headers,
                                  **kwargs)
        assert response.status_code == 403, method
        assert response.json()["code"] == "not_view_creator"
    assert client.get(tenant.url(f"views/{shared['short_id']}"), headers=tenant.headers).json()["name"] == "Urgent billing"


def test_patch_replaces_the_filters_wholesale_and_keeps_the_short_id(client, tenant):
    view = _create(client, tenant, filters={"status": ["open"], "priority": "high"})
    renamed = client.patch(tenant.url(f"views/{view['short_id']}/"), json={"name": "Renamed", "short_id": "x"},
                           headers=tenant.headers)
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["name"] == "Renamed" and renamed.json()["filters"] == view["filters"]
    assert renamed.json()["short_id"] == view["short_id"]
    refiltered = client.patch(tenant.url(f"views/{view['short_id']}"),
                              json={"filters": {"tags_exclude": "spam"}, "shared": True}, headers=tenant.headers).json()
    assert refiltered["filters"] == {"tags_exclude": "spam"} and refiltered["shared"] is True
    assert refiltered["name"] == "Renamed"


def test_a_deleted_view_is_gone(client, tenant):
    view = _create(client, tenant)
    assert client.delete(tenant.url(f"views/{view['short_id']}/"), headers=tenant.headers).status_code == 204
    assert client.get(tenant.url(f"views/{view['short_id']}"), headers=tenant.headers).status_code == 404
    assert client.get(tenant.url(f"tickets/?view={view['short_id']}"), headers=tenant.headers).status_code == 400


def test_filters_must_be_list_parameters_with_valid_values(client, tenant):
    bad = (
        {"bogus": "x"},
        {"view": "abc"},
        {"limit": 5},
        {"status": {"nested": True}},
        {"date_from": "not a date"},
        {"search": "x" * 201},
    )
    for filters in bad:
        response = client.post(tenant.url("views/"), json={"name": "Bad", "filters": filters}, headers=tenant.headers)
        assert response.status_code == 400, filters
        assert response.json()["attr"] == "filters", (filters, response.json())
    not_an_object = client.post(tenant.url("views/"), json={"name": "Bad", "filters": ["status"]},
                                headers=tenant.headers)
    assert not_an_object.status_code == 400 and not_an_object.json()["attr"] == "filters"
    view = _create(client, tenant)
    patched = client.patch(tenant.url(f"views/{view['short_id']}"), json={"filters": {"bogus": 1}},
                           headers=tenant.headers)
    assert patched.status_code == 400 and patched.json()["attr"] == "filters"


def test_every_list_parameter_is_accepted_as_a_filter(client, tenant):
    filters = {
        "status": "open", "priority": ["high"], "assignee": "unassigned", "channel_source": "email",
        "channel_detail": "widget_api", "distinct_ids": ["d1"], "emails": "a@b.test", "date_from": "-1mStart",
        "date_to": "all", "sla": "breached", "tags": ["a"], "tags_all": ["b"], "tags_exclude": ["c"],
        "search": "refund", "order_by": "-created_at", "snoozed": "false",
    }
    assert _create(client, tenant, filters=filters)["filters"] == filters


def test_a_view_needs_a_name(client, tenant):
    for body in ({"filters": {}}, {"name": "  "}):
        response = client.post(tenant.url("views/"), json=body, headers=tenant.headers)
        assert response.status_code == 400 and response.json()["attr"] == "name"


def test_reading_views_needs_ticket_read_and_changing_them_ticket_write(client, tenant):
    view = _create(client, tenant)
    read_only = {"Authorization": f"Bearer {make_key(tenant, ['ticket:read'])}"}
    assert client.get(tenant.url("views"), headers=read_only).status_code == 200
    assert client.get(tenant.url(f"views/{view['short_id']}"), headers=read_only).status_code == 200
    for method, path, kwargs in (
        ("POST", "views", {"json": {"name": "x"}}),
        ("PATCH", f"views/{view['short_id']}", {"json": {"name": "x"}}),
        ("DELETE", f"views/{view['short_id']}", {}),
    ):
        response = client.request(method, tenant.url(path), headers=read_only, **kwargs)
        assert response.status_code == 403 and response.json()["code"] == "permission_denied"
    unrelated = {"Authorization": f"Bearer {make_key(tenant, ['integration:read'])}"}
    assert client.get(tenant.url("views"), headers=unrelated).status_code == 403
    assert client.get(tenant.url("views")).status_code == 401


def test_a_view_of_another_project_is_not_found_through_this_project(client, tenant, other_tenant):
    theirs = _create(client, other_tenant, shared=True)
    assert client.get(tenant.url(f"views/{theirs['short_id']}"), headers=tenant.headers).status_code == 404
    assert client.get(tenant.url(f"tickets/?view={theirs['short_id']}"), headers=tenant.headers).status_code == 400


def test_views_answer_under_the_environments_prefix_too(client, tenant):
    view = _create(client, tenant)
    response = client.get(f"/api/environments/{tenant.project_id}/conversations/views/{view['short_id']}/",
                          headers=tenant.headers)
    assert response.status_code == 200 and response.json()["short_id"] == view["short_id"]
