"""AI for tickets: triage, drafts sent with one call, auto-answers that the customer accepts
or that escalate."""

from __future__ import annotations

from typing import Any

import pytest

from core.db import session_scope
from services import ai_tickets
from services import tickets as ticket_service
from services.ingest import add_customer_message
from tests.factories import make_key, make_ticket


def thread(client: Any, tenant: Any, ticket_id: str) -> list[dict[str, Any]]:
    return client.get(tenant.url(f"tickets/{ticket_id}/messages"), headers=tenant.headers).json()["results"]


def customer_replies(tenant: Any, ticket_id: str, text: str) -> str | None:
    """What ingest does for a customer's message on a ticket (the hook included)."""
    with session_scope() as session:
        ticket = ticket_service.get_ticket(session=session, project_id=tenant.project_id, ref=ticket_id)
        message = add_customer_message(session=session, ticket=ticket, content=text)
        return ai_tickets.on_customer_message(session=session, ticket=ticket, message=message, new_ticket=False)


def enable_auto_answer(client: Any, tenant: Any, **extra: Any) -> None:
    response = client.patch(tenant.url("ai_settings"), json={"auto_answer": True, **extra}, headers=tenant.headers)
    assert response.status_code == 200, response.text


def test_triage_fills_ai_triage_without_touching_the_ticket(client, tenant):
    ticket = make_ticket(tenant.project_id, message="I was charged twice for my subscription, please refund ASAP!")
    before = client.get(tenant.url(f"tickets/{ticket['id']}"), headers=tenant.headers).json()
    response = client.post(tenant.url(f"tickets/{ticket['id']}/ai/triage"), headers=tenant.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    triage = body["ai_triage"]
    assert {k: triage[k] for k in ("category", "urgency", "language", "suggested_priority")} == {
        "category": "billing", "urgency": "high", "language": "en", "suggested_priority": "high"}
    assert "billing" in triage["suggested_tags"] and 0 < triage["confidence"] <= 1
    assert triage["runtime"] == "offline"
    assert body["priority"] is None and body["tags"] == [] and body["updated_at"] == before["updated_at"]


@pytest.mark.parametrize(("text", "category", "urgency", "language"), [
    ("Hallo, ich kann mich nicht einloggen, mein Passwort wird nicht akzeptiert.", "account", "normal", "de"),
    ("Production is down for all our users, the dashboard returns 500 errors", "bug", "critical", "en"),
    ("It would be nice if you could add a dark mode, no rush", "feature_request", "low", "en"),
    ("How do I export my data to CSV?", "question", "normal", "en"),
])
def test_triage_reads_category_urgency_and_language(tenant, text, category, urgency, language):
    ticket = make_ticket(tenant.project_id, message=text)
    triage = ai_tickets.triage_ticket(project_id=tenant.project_id, ticket_ref=ticket["id"])
    assert (triage["category"], triage["urgency"], triage["language"]) == (category, urgency, language)


def test_triage_suggests_the_tags_of_similar_resolved_tickets(client, tenant):
    old = make_ticket(tenant.project_id, message="The Android app crashes when I upload a photo",
                      tags=["android", "mobile"])
    client.post(tenant.url(f"tickets/{old['id']}/reply"), json={"message": "Fixed in 3.2.1, please update."},
                headers=tenant.headers)
    client.patch(tenant.url(f"tickets/{old['id']}"), json={"status": "resolved"}, headers=tenant.headers)
    new = make_ticket(tenant.project_id, message="Android app crashes uploading a photo again")
    triage = ai_tickets.triage_ticket(project_id=tenant.project_id, ticket_ref=new["id"])
    assert {"android", "mobile"} <= set(triage["suggested_tags"])


def test_a_draft_is_private_to_the_team_and_sent_with_one_call(client, tenant, help_center):
    ticket = make_ticket(tenant.project_id, message="Hi, how do I reset my password?")
    created = client.post(tenant.url(f"tickets/{ticket['id']}/ai/draft"), headers=tenant.headers)
    assert created.status_code == 201, created.text
    draft = created.json()
    assert draft["message_type"] == "ai_draft" and draft["is_private"] is True and draft["author_type"] == "AI"
    assert "Forgot password" in draft["content"] and draft["delivery_status"] is None

    sent = client.post(tenant.url(f"tickets/{ticket['id']}/messages/{draft['id']}/send_draft"),
                       headers=tenant.headers)
    assert sent.status_code == 201, sent.text
    reply = sent.json()
    assert reply["message_type"] == "sent_reply" and reply["is_private"] is False
    assert reply["author_type"] == "support" and reply["author_name"] == "Ada Agent"
    assert reply["content"] == draft["content"] and reply["delivery_status"] == "pending"
    assert [m["message_type"] for m in thread(client, tenant, ticket["id"])] == ["customer_message", "sent_reply"]

    again = client.post(tenant.url(f"tickets/{ticket['id']}/messages/{draft['id']}/send_draft"),
                        headers=tenant.headers)
    assert again.status_code == 409 and again.json()["code"] == "draft_already_sent"


def test_a_draft_can_be_edited_before_it_is_sent(client, tenant, help_center):
    ticket = make_ticket(tenant.project_id, message="Where do I download my invoices?")
    draft = client.post(tenant.url(f"tickets/{ticket['id']}/ai/draft"), headers=tenant.headers).json()
    sent = client.post(tenant.url(f"tickets/{ticket['id']}/messages/{draft['id']}/send_draft"),
                       json={"content": "Under Billing → Invoices, as a PDF. Cheers!"}, headers=tenant.headers)
    assert sent.status_code == 201 and sent.json()["content"] == "Under Billing → Invoices, as a PDF. Cheers!"


def test_only_drafts_can_be_sent_and_only_with_ticket_write(client, tenant, help_center):
    ticket = make_ticket(tenant.project_id, message="Where do I download my invoices?")
    customer_message = thread(client, tenant, ticket["id"])[0]
    not_draft = client.post(tenant.url(f"tickets/{ticket['id']}/messages/{customer_message['id']}/send_draft"),
                            headers=tenant.headers)
    assert not_draft.status_code == 404
    reader = {"Authorization": f"Bearer {make_key(tenant, ['ticket:read'])}"}
    assert client.post(tenant.url(f"tickets/{ticket['id']}/ai/draft"), headers=reader).status_code == 403


def test_a_draft_for_a_question_the_help_center_cannot_answer_is_422(client, tenant, help_center):
    ticket = make_ticket(tenant.project_id, message="Do you ship to Antarctica?")
    response = client.post(tenant.url(f"tickets/{ticket['id']}/ai/draft"), headers=tenant.headers)
    assert response.status_code == 422 and response.json()["code"] == "no_answer"


def test_a_confident_auto_answer_is_posted_and_accepted_by_the_customer(client, tenant, help_center):
    enable_auto_answer(client, tenant)
    ticket = make_ticket(tenant.project_id, message="How do I reset my password?", channel_source="widget",
                         channel_detail="widget_embedded")
    outcome = ai_tickets.process_new_ticket(ticket_id=ticket["id"])
    assert outcome["answer"] == "answered" and outcome["triage"]["category"] == "account"
    messages = thread(client, tenant, ticket["id"])
    answer = messages[-1]
    assert answer["author_type"] == "AI" and answer["is_private"] is False and answer["author_name"] == "AI assistant"
    assert "Forgot password" in answer["content"] and answer["delivery_status"] == "pending"
    assert client.get(tenant.url(f"tickets/{ticket['id']}"), headers=tenant.headers).json()["status"] == "pending"

    assert customer_replies(tenant, ticket["id"], "Thanks, that worked!") == "accepted"
    body = client.get(tenant.url(f"tickets/{ticket['id']}"), headers=tenant.headers).json()
    assert body["ai_resolved"] is True and body["status"] == "resolved" and body["escalation_reason"] is None


def test_an_auto_answer_the_customer_rejects_escalates_to_the_team(client, tenant, help_center):
    enable_auto_answer(client, tenant)
    ticket = make_ticket(tenant.project_id, message="How do I reset my password?", channel_source="email",
                         channel_detail=None, customer_email="carla@example.test")
    assert ai_tickets.auto_answer(project_id=tenant.project_id, ticket_ref=ticket["id"]) == "answered"
    assert customer_replies(tenant, ticket["id"], "No, the link still doesn't arrive.") == "escalated"
    body = client.get(tenant.url(f"tickets/{ticket['id']}"), headers=tenant.headers).json()
    assert body["ai_resolved"] is False and body["status"] == "open"
    assert body["escalation_reason"] == "The customer was not satisfied with the AI answer."
    # Later customer messages are the team's business.
    assert customer_replies(tenant, ticket["id"], "thanks") is None


def test_a_question_the_agent_cannot_answer_is_escalated_with_a_reason(client, tenant, help_center):
    enable_auto_answer(client, tenant)
    ticket = make_ticket(tenant.project_id, message="Do you ship to Antarctica?")
    response = client.post(tenant.url(f"tickets/{ticket['id']}/ai/auto_answer"), headers=tenant.headers)
    assert response.status_code == 200
    body = response.json()
    assert body["outcome"] == "escalated" and "nothing in the help center" in body["ticket"]["escalation_reason"]
    assert [m["author_type"] for m in thread(client, tenant, ticket["id"])] == ["customer"]
    again = client.post(tenant.url(f"tickets/{ticket['id']}/ai/auto_answer"), headers=tenant.headers).json()
    assert again["outcome"] == "skipped"


def test_a_weak_answer_is_left_as_a_draft_and_escalated(client, tenant, help_center):
    enable_auto_answer(client, tenant, answer_confidence=0.99)
    ticket = make_ticket(tenant.project_id, message="My password reset link expired")
    assert ai_tickets.auto_answer(project_id=tenant.project_id, ticket_ref=ticket["id"]) == "escalated"
    body = client.get(tenant.url(f"tickets/{ticket['id']}"), headers=tenant.headers).json()
    assert "not confident enough" in body["escalation_reason"] and body["status"] == "new"
    messages = thread(client, tenant, ticket["id"])
    assert messages[-1]["message_type"] == "ai_draft" and messages[-1]["is_private"] is True


def test_a_new_ticket_is_handed_to_the_workers_for_triage_after_commit(tenant, dispatched):
    with session_scope() as session:
        ticket = ticket_service.create_ticket(session=session, project_id=tenant.project_id, channel_source="email")
        message = add_customer_message(session=session, ticket=ticket, content="Where is my refund?")
        assert ai_tickets.on_customer_message(session=session, ticket=ticket, message=message, new_ticket=True) is None
        assert dispatched == []
    assert dispatched == [("ai_ticket", str(ticket.id))]


def test_auto_answers_are_off_by_default_and_limited_to_their_channels(client, tenant, help_center):
    ticket = make_ticket(tenant.project_id, message="How do I reset my password?")
    assert ai_tickets.process_new_ticket(ticket_id=ticket["id"])["answer"] == "skipped"
    enable_auto_answer(client, tenant)
    slack = make_ticket(tenant.project_id, message="How do I reset my password?", channel_source="slack",
                        channel_detail="slack_channel_message")
    assert ai_tickets.process_new_ticket(ticket_id=slack["id"])["answer"] == "skipped"


def test_the_ai_settings_api_validates_its_fields(client, tenant):
    defaults = client.get(tenant.url("ai_settings/"), headers=tenant.headers).json()
    assert defaults == {"auto_triage": True, "auto_answer": False, "auto_answer_channels": ["widget", "email"],
                        "answer_confidence": 0.6}
    bad = client.patch(tenant.url("ai_settings"), json={"auto_answer_channels": ["fax"]}, headers=tenant.headers)
    assert bad.status_code == 400 and bad.json()["attr"] == "auto_answer_channels"
    bad = client.patch(tenant.url("ai_settings"), json={"answer_confidence": 2}, headers=tenant.headers)
    assert bad.status_code == 400 and bad.json()["attr"] == "answer_confidence"


@pytest.mark.parametrize(("text", "verdict"), [
    ("Thanks, that worked!", True), ("perfect, solved", True), ("Danke!", True), ("yes", True),
    ("No, still broken", False), ("thanks but it doesn't help", False), ("Can I talk to a human?", False),
    ("Also, my invoice shows the wrong VAT number", False), ("I have another issue with exports", None),
])
def test_a_customer_reply_is_read_as_accepting_or_not(text, verdict):
    assert ai_tickets.classify_reply(text) is verdict
