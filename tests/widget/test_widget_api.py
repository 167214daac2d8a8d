"""The public widget API as posthog-js calls it: messages, tickets, read, status codes, shapes."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import quote

from tests.widget.support import (
    SITE,
    WIDGET,
    mark_read,
    messages,
    new_session_id,
    reply,
    rest_ticket,
    send,
    tickets,
    widget_headers,
)


def test_a_first_message_opens_a_new_widget_ticket_and_answers_200_not_201(client, tenant):
    session_id = new_session_id()
    response = send(client, tenant, session_id, "Where is my order?", traits={"name": "Grace", "email": "Grace@Example.com"},
                    session_id="ph-session-1", session_context={"current_url": f"{SITE}/orders/1"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"ticket_id", "message_id", "ticket_status", "unread_count", "created_at"}
    assert body["ticket_status"] == "new" and body["unread_count"] == 0
    ticket = rest_ticket(client, tenant, body["ticket_id"])
    assert ticket["channel_source"] == "widget" and ticket["channel_detail"] == "widget_embedded"
    assert ticket["status"] == "new" and ticket["unread_team_count"] == 1 and ticket["message_count"] == 1
    assert ticket["distinct_id"] == "anon-distinct-1"
    assert ticket["anonymous_traits"] == {"name": "Grace", "email": "Grace@Example.com"}
    assert ticket["session_id"] == "ph-session-1"
    assert ticket["session_context"] == {"current_url": f"{SITE}/orders/1"}
    assert ticket["person"]["properties"] == {"email": "grace@example.com", "name": "Grace"}


def test_a_server_call_without_an_origin_is_a_widget_api_ticket(client, tenant):
    response = send(client, tenant, new_session_id(), origin=None)
    assert response.status_code == 200
    assert rest_ticket(client, tenant, response.json()["ticket_id"])["channel_detail"] == "widget_api"
    assert "access-control-allow-origin" not in response.headers


def test_a_follow_up_message_lands_on_the_same_ticket(client, tenant):
    session_id = new_session_id()
    first = send(client, tenant, session_id, "one").json()
    second = send(client, tenant, session_id, "two", ticket_id=first["ticket_id"])
    assert second.status_code == 200 and second.json()["ticket_id"] == first["ticket_id"]
    ticket = rest_ticket(client, tenant, first["ticket_id"])
    assert ticket["unread_team_count"] == 2 and ticket["message_count"] == 2 and ticket["last_message_text"] == "two"


def test_a_message_on_a_resolved_ticket_reopens_it(client, tenant):
    session_id = new_session_id()
    ticket_id = send(client, tenant, session_id).json()["ticket_id"]
    client.patch(tenant.url(f"tickets/{ticket_id}"), json={"status": "resolved"}, headers=tenant.headers)
    assert send(client, tenant, session_id, "still broken", ticket_id=ticket_id).json()["ticket_status"] == "open"


def test_the_ticket_list_holds_the_sessions_tickets_newest_first(client, tenant):
    session_id = new_session_id()
    first = send(client, tenant, session_id, "first").json()["ticket_id"]
    second = send(client, tenant, session_id, "second").json()["ticket_id"]
    send(client, tenant, new_session_id(), "someone else")
    response = tickets(client, tenant, session_id)
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2 and [t["id"] for t in body["results"]] == [second, first]
    item = body["results"][0]
    assert set(item) == {"id", "ticket_number", "status", "unread_count", "last_message", "last_message_at",
                         "message_count", "created_at"}
    assert item["last_message"] == "second" and item["message_count"] == 1 and item["status"] == "new"
    assert tickets(client, tenant, session_id, status="resolved").json()["count"] == 0
    assert tickets(client, tenant, session_id, limit="1", offset="1").json()["results"][0]["id"] == first


def test_an_unknown_status_filter_is_refused_with_the_field_named(client, tenant):
    response = tickets(client, tenant, new_session_id(), status="closed")
    assert response.status_code == 400 and response.json()["attr"] == "status"


def test_messages_come_oldest_first_with_the_widget_fields(client, tenant):
    session_id = new_session_id()
    sent = send(client, tenant, session_id, "hello", traits={"name": "Grace"}).json()
    reply(client, tenant, sent["ticket_id"], "Hi Grace, how can we help?")
    response = messages(client, tenant, sent["ticket_id"], session_id)
    assert response.status_code == 200
    body = response.json()
    assert body["ticket_id"] == sent["ticket_id"] and body["ticket_status"] == "new"
    assert body["unread_count"] == 1 and body["has_more"] is False
    first, second = body["messages"]
    assert set(first) == {"id", "content", "rich_content", "author_type", "author_name", "created_at", "is_private"}
    assert (first["content"], first["author_type"], first["author_name"]) == ("hello", "customer", "Grace")
    assert (second["content"], second["author_type"], second["author_name"]) == ("Hi Grace, how can we help?", "support",
                                                                                   "Ada Agent")
    assert first["is_private"] is second["is_private"] is False


def test_after_is_strict_so_the_widgets_own_message_is_not_returned_twice(client, tenant):
    session_id = new_session_id()
    sent = send(client, tenant, session_id, "hello").json()
    # The widget echoes the created_at of its own message back as the cursor.
    echoed = messages(client, tenant, sent["ticket_id"], session_id, after=sent["created_at"]).json()
    assert echoed["messages"] == []
    reply(client, tenant, sent["ticket_id"], "an answer")
    after_own = messages(client, tenant, sent["ticket_id"], session_id, after=sent["created_at"]).json()
    assert [m["content"] for m in after_own["messages"]] == ["an answer"]


def test_a_plus_offset_in_after_arrives_percent_encoded_and_still_matches(client, tenant):
    session_id = new_session_id()
    sent = send(client, tenant, session_id, "hello").json()
    reply(client, tenant, sent["ticket_id"], "an answer")
    created = datetime.fromisoformat(sent["created_at"].replace("Z", "+00:00"))
    with_plus = created.isoformat()  # ...+00:00, as PostHog's own API writes it
    assert "+00:00" in with_plus
    url = (f"{WIDGET}/messages/{sent['ticket_id']}?widget_session_id={session_id}&limit=50"
           f"&after={quote(with_plus, safe='')}")
    assert "%2B00%3A00" in url
    body = client.get(url, headers=widget_headers(tenant)).json()
    assert [m["content"] for m in body["messages"]] == ["an answer"]
    # Sent unencoded, "+" reads as a space: it is put back, not refused.
    raw = f"{WIDGET}/messages/{sent['ticket_id']}?widget_session_id={session_id}&after={with_plus}"
    assert [m["content"] for m in client.get(raw, headers=widget_headers(tenant)).json()["messages"]] == ["an answer"]
    # Another zone, same instant.
    shifted = created.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Kolkata")).isoformat()
    body = messages(client, tenant, sent["ticket_id"], session_id, after=shifted).json()
    assert [m["content"] for m in body["messages"]] == ["an answer"]


def test_has_more_is_set_when_the_page_is_full(client, tenant):
    session_id = new_session_id()
    ticket_id = send(client, tenant, session_id, "m1").json()["ticket_id"]
    send(client, tenant, session_id, "m2", ticket_id=ticket_id)
    send(client, tenant, session_id, "m3", ticket_id=ticket_id)
    page = messages(client, tenant, ticket_id, session_id, limit="2").json()
    assert [m["content"] for m in page["messages"]] == ["m1", "m2"] and page["has_more"] is True
    rest = messages(client, tenant, ticket_id, session_id, limit="2", after=page["messages"][-1]["created_at"]).json()
    assert [m["content"] for m in rest["messages"]] == ["m3"] and rest["has_more"] is False
    assert messages(client, tenant, ticket_id, session_id, limit="10").json()["has_more"] is False


def test_bad_after_and_limit_values_are_refused(client, tenant):
    session_id = new_session_id()
    ticket_id = send(client, tenant, session_id).json()["ticket_id"]
    assert messages(client, tenant, ticket_id, session_id, after="yesterday").json()["attr"] == "after"
    assert messages(client, tenant, ticket_id, session_id, limit="0").status_code == 400
    assert messages(client, tenant, ticket_id, session_id, limit="501").status_code == 400


def test_private_notes_never_reach_the_widget(client, tenant):
    session_id = new_session_id()
    sent = send(client, tenant, session_id, "hello").json()
    reply(client, tenant, sent["ticket_id"], "internal: VIP customer", private=True)
    reply(client, tenant, sent["ticket_id"], "public answer")
    body = messages(client, tenant, sent["ticket_id"], session_id).json()
    assert [m["content"] for m in body["messages"]] == ["hello", "public answer"]
    assert body["unread_count"] == 1
    listed = tickets(client, tenant, session_id).json()["results"][0]
    assert listed["last_message"] == "public answer" and listed["message_count"] == 2
    # Nor through the cursor, even right after the note.
    note_time = client.get(tenant.url(f"tickets/{sent['ticket_id']}/messages"), headers=tenant.headers).json()
    private = next(m for m in note_time["results"] if m["is_private"])
    after_note = messages(client, tenant, sent["ticket_id"], session_id, after=sent["created_at"]).json()
    assert private["content"] not in [m["content"] for m in after_note["messages"]]


def test_a_team_reply_counts_as_unread_until_the_visitor_reads_it(client, tenant):
    session_id = new_session_id()
    ticket_id = send(client, tenant, session_id).json()["ticket_id"]
    reply(client, tenant, ticket_id, "first answer")
    reply(client, tenant, ticket_id, "second answer")
    assert rest_ticket(client, tenant, ticket_id)["unread_customer_count"] == 2
    assert tickets(client, tenant, session_id).json()["results"][0]["unread_count"] == 2
    response = mark_read(client, tenant, ticket_id, session_id)
    assert response.status_code == 200 and response.json() == {"success": True, "unread_count": 0}
    ticket = rest_ticket(client, tenant, ticket_id)
    assert ticket["unread_customer_count"] == 0 and ticket["unread_team_count"] == 1
    assert messages(client, tenant, ticket_id, session_id).json()["unread_count"] == 0


def test_reading_does_not_reorder_the_teams_ticket_list(client, tenant):
    session_id = new_session_id()
    ticket_id = send(client, tenant, session_id).json()["ticket_id"]
    reply(client, tenant, ticket_id, "answer")
    before = rest_ticket(client, tenant, ticket_id)["updated_at"]
    mark_read(client, tenant, ticket_id, session_id)
    assert rest_ticket(client, tenant, ticket_id)["updated_at"] == before


def test_a_reply_to_a_widget_ticket_is_visible_to_the_visitor_and_delivered_at_once(client, tenant):
    from channels.base import DeliveryStatus, OutboundReply
    from channels.widget import WidgetAdapter, WidgetConfig

    session_id = new_session_id()
    ticket_id = send(client, tenant, session_id).json()["ticket_id"]
    sent = reply(client, tenant, ticket_id, "We are on it")
    assert [m["content"] for m in messages(client, tenant, ticket_id, session_id).json()["messages"]][-1] == "We are on it"
    outcome = WidgetAdapter(WidgetConfig()).deliver(
        OutboundReply(delivery_id="d-1", ticket_id=ticket_id, ticket_number=1, text=sent["content"], thread={})
    )
    assert outcome.status == DeliveryStatus.DELIVERED and outcome.external_id == "widget:d-1"


def test_the_widget_api_answers_with_or_without_a_trailing_slash(client, tenant):
    session_id = new_session_id()
    body = {"message": "hi", "widget_session_id": session_id, "distinct_id": "d", "ticket_id": None}
    assert client.post(f"{WIDGET}/message/", json=body, headers=widget_headers(tenant)).status_code == 200
    assert client.get(f"{WIDGET}/tickets/", params={"widget_session_id": session_id},
                      headers=widget_headers(tenant)).json()["count"] == 1


def test_a_deleted_ticket_disappears_from_the_widget(client, tenant):
    session_id = new_session_id()
    ticket_id = send(client, tenant, session_id).json()["ticket_id"]
    assert client.delete(tenant.url(f"tickets/{ticket_id}"), headers=tenant.headers).status_code == 204
    assert tickets(client, tenant, session_id).json()["count"] == 0
    assert messages(client, tenant, ticket_id, session_id).status_code == 403
