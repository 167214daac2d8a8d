"""Internal notes as a resource: POST tickets/{id}/notes, PATCH and DELETE …/notes/{message_id}."""

from __future__ import annotations

from typing import Any

from core.clock import FrozenClock, use_clock
from tests.factories import make_key, make_tenant, make_ticket


def _note(client: Any, tenant: Any, ticket: dict[str, Any], text: str = "Checked the logs", **extra: Any) -> Any:
    return client.post(tenant.url(f"tickets/{ticket['id']}/notes/"), json={"message": text, **extra},
                       headers=tenant.headers)


def _messages(client: Any, tenant: Any, ticket: dict[str, Any]) -> list[dict[str, Any]]:
    response = client.get(tenant.url(f"tickets/{ticket['id']}/messages"), headers=tenant.headers)
    assert response.status_code == 200, response.text
    return response.json()["results"]


def test_a_note_is_stored_private_from_support_and_left_out_of_the_counters(client, tenant):
    ticket = make_ticket(tenant.project_id)
    created = _note(client, tenant, ticket, rich_content={"type": "doc", "content": []})
    assert created.status_code == 201, created.text
    note = created.json()
    assert note["is_private"] is True
    assert note["author_type"] == "support"
    assert note["message_type"] == "internal_note"
    assert note["author_name"] == "Ada Agent"
    assert note["rich_content"] == {"type": "doc", "content": []}
    assert note["version"] == 1 and note["delivery_status"] is None
    shown = client.get(tenant.url(f"tickets/{ticket['id']}"), headers=tenant.headers).json()
    assert shown["message_count"] == 1 and shown["last_message_text"] == "Hello, I need help"
    assert [m["id"] for m in _messages(client, tenant, ticket)][-1] == note["id"]


def test_a_note_can_be_posted_by_ticket_number_and_without_the_trailing_slash(client, tenant):
    ticket = make_ticket(tenant.project_id)
    response = client.post(tenant.url(f"tickets/{ticket['ticket_number']}/notes"), json={"message": "hi"},
                           headers=tenant.headers)
    assert response.status_code == 201, response.text


def test_an_identical_note_posted_twice_within_the_replay_window_is_stored_once(client, tenant):
    ticket = make_ticket(tenant.project_id)
    first = _note(client, tenant, ticket)
    second = _note(client, tenant, ticket)
    assert first.status_code == 201 and second.status_code == 200
    assert first.json()["id"] == second.json()["id"]


def test_a_blank_note_is_refused_with_the_message_attr(client, tenant):
    ticket = make_ticket(tenant.project_id)
    response = _note(client, tenant, ticket, text="   ")
    assert response.status_code == 400
    assert response.json()["attr"] == "message"


def test_editing_a_note_bumps_its_version_and_updated_at(client, tenant):
    clock = FrozenClock()
    previous = use_clock(clock)
    try:
        ticket = make_ticket(tenant.project_id)
        note = _note(client, tenant, ticket, rich_content={"type": "doc"}).json()
        clock.advance(minutes=5)
        edited = client.patch(tenant.url(f"tickets/{ticket['id']}/notes/{note['id']}/"),
                              json={"message": "Checked the logs: a 502 from the proxy"}, headers=tenant.headers)
        assert edited.status_code == 200, edited.text
        body = edited.json()
        assert body["id"] == note["id"] and body["version"] == 2
        assert body["content"] == "Checked the logs: a 502 from the proxy"
        assert body["updated_at"] > note["updated_at"] and body["created_at"] == note["created_at"]
        # New text without rich_content drops the stale rich body (as PostHog's notes PATCH does).
        assert body["rich_content"] is None
        again = client.patch(tenant.url(f"tickets/{ticket['id']}/notes/{note['id']}"),
                             json={"rich_content": {"type": "doc", "content": [{"type": "text"}]}},
                             headers=tenant.headers).json()
        assert again["version"] == 3 and again["content"] == "Checked the logs: a 502 from the proxy"
        assert again["rich_content"] == {"type": "doc", "content": [{"type": "text"}]}
    finally:
        use_clock(previous)
    listed = {m["id"]: m for m in _messages(client, tenant, ticket)}
    assert listed[note["id"]]["version"] == 3


def test_an_edit_with_nothing_to_change_is_refused(client, tenant):
    ticket = make_ticket(tenant.project_id)
    note = _note(client, tenant, ticket).json()
    response = client.patch(tenant.url(f"tickets/{ticket['id']}/notes/{note['id']}"), json={},
                            headers=tenant.headers)
    assert response.status_code == 400


def test_a_deleted_note_leaves_the_thread_and_cannot_be_changed_again(client, tenant):
    ticket = make_ticket(tenant.project_id)
    note = _note(client, tenant, ticket).json()
    deleted = client.delete(tenant.url(f"tickets/{ticket['id']}/notes/{note['id']}/"), headers=tenant.headers)
    assert deleted.status_code == 204 and deleted.content == b""
    assert note["id"] not in [m["id"] for m in _messages(client, tenant, ticket)]
    for method, kwargs in (("PATCH", {"json": {"message": "x"}}), ("DELETE", {})):
        response = client.request(method, tenant.url(f"tickets/{ticket['id']}/notes/{note['id']}"),
                                  headers=tenant.headers, **kwargs)
        assert response.status_code == 404
        assert response.json()["code"] == "note_not_found"


def test_the_same_note_written_again_after_deleting_it_is_a_new_note(client, tenant):
    ticket = make_ticket(tenant.project_id)
    first = _note(client, tenant, ticket).json()
    client.delete(tenant.url(f"tickets/{ticket['id']}/notes/{first['id']}"), headers=tenant.headers)
    again = _note(client, tenant, ticket)
    assert again.status_code == 201 and again.json()["id"] != first["id"]
    assert again.json()["id"] in [m["id"] for m in _messages(client, tenant, ticket)]


def test_a_public_reply_is_not_a_private_note(client, tenant):
    ticket = make_ticket(tenant.project_id)
    reply = client.post(tenant.url(f"tickets/{ticket['id']}/reply"), json={"message": "On it"},
                        headers=tenant.headers).json()
    for method, kwargs in (("PATCH", {"json": {"message": "x"}}), ("DELETE", {})):
        response = client.request(method, tenant.url(f"tickets/{ticket['id']}/notes/{reply['id']}"),
                                  headers=tenant.headers, **kwargs)
        assert response.status_code == 400, response.text
        assert response.json()["code"] == "not_private_note"
        assert response.json()["error_type"] == "not_private_note"


def test_a_customer_message_is_not_a_private_note(client, tenant):
    ticket = make_ticket(tenant.project_id)
    customer = _messages(client, tenant, ticket)[0]
    response = client.delete(tenant.url(f"tickets/{ticket['id']}/notes/{customer['id']}"), headers=tenant.headers)
    assert response.status_code == 400 and response.json()["code"] == "not_private_note"


def test_only_the_author_may_edit_or_delete_a_note(client, tenant):
    teammate = make_tenant("Acme", email="teammate@acme.test")
    ticket = make_ticket(tenant.project_id)
    note = _note(client, tenant, ticket).json()
    for method, kwargs in (("PATCH", {"json": {"message": "mine now"}}), ("DELETE", {})):
        response = client.request(method, teammate.url(f"tickets/{ticket['id']}/notes/{note['id']}"),
                                  headers=teammate.headers, **kwargs)
        assert response.status_code == 403, response.text
        assert response.json()["code"] == "not_note_author"
        assert response.json()["error_type"] == "not_note_author"
    assert _messages(client, tenant, ticket)[-1]["content"] == "Checked the logs"


def test_a_note_under_another_ticket_or_an_unknown_id_is_not_found(client, tenant):
    ticket = make_ticket(tenant.project_id)
    other = make_ticket(tenant.project_id)
    note = _note(client, tenant, ticket).json()
    for path in (f"tickets/{other['id']}/notes/{note['id']}",
                 f"tickets/{ticket['id']}/notes/00000000-0000-0000-0000-000000000000",
                 f"tickets/{ticket['id']}/notes/not-a-uuid"):
        response = client.patch(tenant.url(path), json={"message": "x"}, headers=tenant.headers)
        assert response.status_code == 404, path
        assert response.json()["code"] == "note_not_found"


def test_another_projects_ticket_is_not_found_for_notes(client, tenant, other_tenant):
    ticket = make_ticket(other_tenant.project_id)
    response = client.post(tenant.url(f"tickets/{ticket['id']}/notes"), json={"message": "x"}, headers=tenant.headers)
    assert response.status_code == 404


def test_notes_need_the_ticket_write_scope(client, tenant):
    ticket = make_ticket(tenant.project_id)
    note = _note(client, tenant, ticket).json()
    read_only = {"Authorization": f"Bearer {make_key(tenant, ['ticket:read'])}"}
    calls = (
        ("POST", f"tickets/{ticket['id']}/notes", {"json": {"message": "x"}}),
        ("PATCH", f"tickets/{ticket['id']}/notes/{note['id']}", {"json": {"message": "x"}}),
        ("DELETE", f"tickets/{ticket['id']}/notes/{note['id']}", {}),
    )
    for method, path, kwargs in calls:
        response = client.request(method, tenant.url(path), headers=read_only, **kwargs)
        assert response.status_code == 403, (method, response.text)
        assert response.json()["code"] == "permission_denied"
    assert client.post(tenant.url(f"tickets/{ticket['id']}/notes"), json={"message": "x"}).status_code == 401
