"""Who may read what through the widget: sessions, verified identities, tokens, origins, CORS."""

from __future__ import annotations

import gzip
import json
import uuid

from channels.widget import sign_identity
from tests.factories import make_ticket
from tests.widget.support import (
    IDENTITY_SECRET,
    SITE,
    WIDGET,
    configure_widget,
    mark_read,
    messages,
    new_session_id,
    send,
    tickets,
    widget_headers,
)


def _identity(distinct_id: str, secret: str = IDENTITY_SECRET) -> dict[str, str]:
    return {"identity_distinct_id": distinct_id, "identity_hash": sign_identity(secret, distinct_id)}


# -- sessions --------------------------------------------------------------------------------

def test_another_sessions_ticket_is_forbidden_whatever_the_call(client, tenant):
    owner, intruder = new_session_id(), new_session_id()
    ticket_id = send(client, tenant, owner, "my secret problem").json()["ticket_id"]
    assert messages(client, tenant, ticket_id, intruder).status_code == 403
    assert send(client, tenant, intruder, "let me in", ticket_id=ticket_id).status_code == 403
    assert mark_read(client, tenant, ticket_id, intruder).status_code == 403
    assert tickets(client, tenant, intruder).json()["count"] == 0
    # Nothing was written by the refused calls.
    assert messages(client, tenant, ticket_id, owner).json()["messages"][-1]["content"] == "my secret problem"


def test_unknown_deleted_and_other_projects_ticket_ids_all_answer_403(client, tenant, other_tenant):
    session_id = new_session_id()
    assert messages(client, tenant, str(uuid.uuid4()), session_id).status_code == 403
    foreign = send(client, other_tenant, session_id).json()["ticket_id"]  # same session id, other project
    assert messages(client, tenant, foreign, session_id).status_code == 403
    api_ticket = make_ticket(tenant.project_id)["id"]  # a ticket with no widget session at all
    assert messages(client, tenant, api_ticket, session_id).status_code == 403
    assert messages(client, tenant, "not-a-uuid", session_id).status_code == 400


def test_a_request_without_any_visitor_credentials_is_refused(client, tenant):
    response = send(client, tenant, None)
    assert response.status_code == 400 and response.json()["attr"] == "widget_session_id"
    assert tickets(client, tenant, None).status_code == 400


def test_short_or_exotic_session_ids_are_refused(client, tenant):
    assert send(client, tenant, "1234").status_code == 400
    assert send(client, tenant, "v:" + "a" * 64).status_code == 400
    assert send(client, tenant, "a" * 16).status_code == 200


# -- tokens and origins ----------------------------------------------------------------------

def test_a_missing_or_unknown_widget_token_is_401(client, tenant):
    body = {"message": "hi", "widget_session_id": new_session_id()}
    assert client.post(f"{WIDGET}/message", json=body, headers={"Origin": SITE}).status_code == 401
    response = client.post(f"{WIDGET}/message", json=body, headers={"X-Conversations-Token": "phc_nope", "Origin": SITE})
    assert response.status_code == 401
    # The error still carries CORS, so the SDK sees the status instead of a network error.
    assert response.headers["access-control-allow-origin"] == SITE


def test_with_allowed_domains_writes_need_an_allowed_origin(client, tenant):
    configure_widget(tenant, allowed_domains=["shop.example.com", "*.example.org"])
    session_id = new_session_id()
    allowed = send(client, tenant, session_id, origin=SITE)
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == SITE
    assert send(client, tenant, session_id, origin="https://eu.example.org").status_code == 200
    foreign = send(client, tenant, session_id, origin="https://evil.example.net")
    assert foreign.status_code == 403 and foreign.json()["code"] == "origin_not_allowed"
    assert "access-control-allow-origin" not in foreign.headers
    # A server call has no Origin: with domains set, writes refuse it too.
    assert send(client, tenant, session_id, origin=None).status_code == 403
    ticket_id = allowed.json()["ticket_id"]
    assert mark_read(client, tenant, ticket_id, session_id, origin="https://evil.example.net").status_code == 403
    # Reads from a foreign page are refused; reads without an Origin (server side) are not.
    assert messages(client, tenant, ticket_id, session_id, origin="https://evil.example.net").status_code == 403
    assert messages(client, tenant, ticket_id, session_id, origin=None).status_code == 200


def test_without_allowed_domains_any_origin_may_use_the_widget(client, tenant):
    response = send(client, tenant, new_session_id(), origin="https://anywhere.example")
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://anywhere.example"
    assert response.headers["vary"] == "Origin"


def test_a_url_shaped_allowed_domain_must_match_scheme_host_and_port(client, tenant):
    configure_widget(tenant, allowed_domains=["https://shop.example.com:8443"])
    assert send(client, tenant, new_session_id(), origin="https://shop.example.com:8443").status_code == 200
    assert send(client, tenant, new_session_id(), origin="https://shop.example.com").status_code == 403
    assert send(client, tenant, new_session_id(), origin="http://shop.example.com:8443").status_code == 403


def test_cors_preflights_are_answered_for_every_widget_path(client, tenant):
    for path in ("message", "tickets", f"messages/{uuid.uuid4()}", f"messages/{uuid.uuid4()}/read", "restore",
                 "restore/request"):
        response = client.options(f"{WIDGET}/{path}", headers={
            "Origin": SITE,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-conversations-token",
        })
        assert response.status_code == 204, path
        assert response.headers["access-control-allow-origin"] == SITE
        assert response.headers["access-control-allow-methods"] == "GET, POST, OPTIONS"
        assert response.headers["access-control-allow-headers"] == "Content-Type, X-Conversations-Token"


# -- verified identities ---------------------------------------------------------------------

def test_a_verified_visitor_reads_their_tickets_from_any_browser(client, tenant):
    configure_widget(tenant, identity_secret=IDENTITY_SECRET)
    first = send(client, tenant, None, "from my laptop", **_identity("user-42"))
    assert first.status_code == 200, first.text
    ticket_id = first.json()["ticket_id"]
    # No widget_session_id at all: the identity is the credential.
    listed = client.get(f"{WIDGET}/tickets", params=_identity("user-42"), headers=widget_headers(tenant)).json()
    assert [t["id"] for t in listed["results"]] == [ticket_id]
    body = client.get(f"{WIDGET}/messages/{ticket_id}", params=_identity("user-42"), headers=widget_headers(tenant))
    assert body.status_code == 200 and body.json()["messages"][0]["content"] == "from my laptop"
    assert send(client, tenant, new_session_id(), "from my phone", ticket_id=ticket_id, **_identity("user-42")).status_code == 200
    from tests.widget.support import rest_ticket

    assert rest_ticket(client, tenant, ticket_id)["distinct_id"] == "user-42"
    assert rest_ticket(client, tenant, ticket_id)["person"]["is_identified"] is True


def test_a_wrong_identity_hash_is_403_and_never_falls_back_to_the_session(client, tenant):
    configure_widget(tenant, identity_secret=IDENTITY_SECRET)
    session_id = new_session_id()
    ticket_id = send(client, tenant, session_id).json()["ticket_id"]
    forged = {"identity_distinct_id": "user-42", "identity_hash": sign_identity("guessed-secret-000000", "user-42")}
    response = send(client, tenant, session_id, "hi", **forged)
    assert response.status_code == 403 and response.json()["code"] == "identity_invalid"
    params = {"widget_session_id": session_id, **forged}
    assert client.get(f"{WIDGET}/messages/{ticket_id}", params=params, headers=widget_headers(tenant)).status_code == 403
    # A hash without its distinct id (or the reverse) is a malformed request.
    assert send(client, tenant, session_id, identity_hash="ab" * 32).status_code == 400


def test_identity_fields_are_refused_when_the_project_has_no_identity_secret(client, tenant):
    assert send(client, tenant, None, **_identity("user-42", "whatever-secret-0000")).status_code == 403


def test_one_verified_visitor_cannot_read_anothers_tickets(client, tenant):
    configure_widget(tenant, identity_secret=IDENTITY_SECRET)
    ticket_id = send(client, tenant, None, "mine", **_identity("alice")).json()["ticket_id"]
    params = _identity("mallory")
    assert client.get(f"{WIDGET}/messages/{ticket_id}", params=params, headers=widget_headers(tenant)).status_code == 403
    assert client.get(f"{WIDGET}/tickets", params=params, headers=widget_headers(tenant)).json()["count"] == 0
    # Knowing Alice's distinct id is not enough without her hash.
    assert send(client, tenant, new_session_id(), "me too", ticket_id=ticket_id, distinct_id="alice").status_code == 403


def test_switching_from_anonymous_to_verified_keeps_the_sessions_tickets(client, tenant):
    configure_widget(tenant, identity_secret=IDENTITY_SECRET)
    session_id = new_session_id()
    anonymous_ticket = send(client, tenant, session_id, "before logging in").json()["ticket_id"]
    # One request proves both: the session id and the identity.
    verified = send(client, tenant, session_id, "after logging in", **_identity("user-7"))
    assert verified.status_code == 200
    listed = client.get(f"{WIDGET}/tickets", params=_identity("user-7"), headers=widget_headers(tenant)).json()
    assert {t["id"] for t in listed["results"]} == {anonymous_ticket, verified.json()["ticket_id"]}
    # The browser's session still reads its own ticket, and nobody else gained anything.
    assert messages(client, tenant, anonymous_ticket, session_id).status_code == 200
    other = client.get(f"{WIDGET}/tickets", params=_identity("user-8"), headers=widget_headers(tenant)).json()
    assert other["count"] == 0


def _capture(client, tenant, events, *, path="/i/v0/e/"):
    body = gzip.compress(json.dumps({"api_key": tenant.widget_token, "batch": events, "sent_at": "x"}).encode())
    return client.post(f"{path}?compression=gzip-js&ver=1.449.2", content=body,
                       headers={"Content-Type": "text/plain", "Origin": SITE})


def test_posthog_set_identity_links_the_anonymous_tickets_through_its_alias_event(client, tenant):
    """What the unchanged SDK does: posthog.setIdentity() aliases the anonymous distinct id and
    from then on sends only identity_distinct_id + identity_hash."""
    configure_widget(tenant, identity_secret=IDENTITY_SECRET)
    session_id = new_session_id()
    ticket_id = send(client, tenant, session_id, "anonymous question", distinct_id="anon-123").json()["ticket_id"]
    alias = {"event": "$create_alias", "properties": {"distinct_id": "anon-123", "alias": "user-9",
                                                       "token": tenant.widget_token}}
    response = _capture(client, tenant, [{"event": "$pageview", "properties": {"distinct_id": "anon-123"}}, alias])
    assert response.status_code == 200 and response.json() == {"status": 1}
    listed = client.get(f"{WIDGET}/tickets", params=_identity("user-9"), headers=widget_headers(tenant)).json()
    assert [t["id"] for t in listed["results"]] == [ticket_id]


def test_an_identify_event_links_like_an_alias_does(client, tenant):
    configure_widget(tenant, identity_secret=IDENTITY_SECRET)
    ticket_id = send(client, tenant, new_session_id(), "q", distinct_id="anon-555").json()["ticket_id"]
    identify = {"event": "$identify", "distinct_id": "user-5", "properties": {"$anon_distinct_id": "anon-555"}}
    _capture(client, tenant, [identify], path="/e/")
    listed = client.get(f"{WIDGET}/tickets", params=_identity("user-5"), headers=widget_headers(tenant)).json()
    assert [t["id"] for t in listed["results"]] == [ticket_id]


def test_a_project_can_turn_alias_linking_off(client, tenant):
    configure_widget(tenant, identity_secret=IDENTITY_SECRET, link_anonymous_on_identify=False)
    send(client, tenant, new_session_id(), "q", distinct_id="anon-777")
    _capture(client, tenant, [{"event": "$create_alias", "properties": {"distinct_id": "anon-777", "alias": "user-3"}}])
    listed = client.get(f"{WIDGET}/tickets", params=_identity("user-3"), headers=widget_headers(tenant)).json()
    assert listed["count"] == 0


def test_a_session_already_linked_to_one_identity_is_not_handed_to_another(client, tenant):
    configure_widget(tenant, identity_secret=IDENTITY_SECRET)
    session_id = new_session_id()
    send(client, tenant, session_id, "q", distinct_id="anon-1")
    send(client, tenant, session_id, "logged in", **_identity("first-user"))
    _capture(client, tenant, [{"event": "$create_alias", "properties": {"distinct_id": "anon-1", "alias": "second-user"}}])
    listed = client.get(f"{WIDGET}/tickets", params=_identity("second-user"), headers=widget_headers(tenant)).json()
    assert listed["count"] == 0
