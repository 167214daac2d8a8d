"""The built-in runtime on a small help center: questions with known answers, and questions
it must decline."""

from __future__ import annotations

from typing import Any

import pytest

from core.db import session_scope
from models import User
from services import replies
from services import tickets as ticket_service
from services.agent.base import AgentRequest, Turn, collect
from services.agent.bm25 import BM25Index
from services.agent.offline import DONT_KNOW_CUSTOMER, DONT_KNOW_TEAM, OfflineRuntime, best_passage
from services.agent.text import guess_language, stem, terms
from services.agent.tools import TicketwireToolbox
from tests.factories import make_ticket

ANSWERABLE = [
    ("How do I reset my password?", "Resetting your password", "Forgot password"),
    ("Can I get a refund on my annual plan?", "Refund policy", "within 14 days"),
    ("How do I set up SAML login with Okta?", "Setting up single sign-on (SAML SSO)", "metadata URL"),
    ("What is the API rate limit per minute?", "API rate limits", "480 requests per minute"),
    ("How can I export my tickets to CSV?", "Exporting your data", "Settings, Data, Export"),
    ("Where can I download invoices as PDF?", "Downloading invoices", "downloaded as a PDF"),
    ("How do I verify the webhook signature?", "Configuring webhooks", "HMAC-SHA256"),
    ("I want to delete our organization", "Deleting your account", "Danger zone"),
    ("password reset link expired", "Resetting your password", "30 minutes"),
]

UNANSWERABLE = [
    "What's the weather in Paris tomorrow?",
    "How do I bake sourdough bread?",
    "Do you have an office in Tokyo?",
    "Which football team won the league last season?",
    "Does the mobile app support dark mode?",
]


def ask(tenant: Any, question: str, *, audience: str = "team", history: list[Turn] | None = None) -> Any:
    toolbox = TicketwireToolbox(project_id=tenant.project_id, scopes=["*"], audience=audience)  # type: ignore[arg-type]
    request = AgentRequest(project_id=tenant.project_id, question=question, toolbox=toolbox, history=history or [],
                           audience=audience)  # type: ignore[arg-type]
    return collect(OfflineRuntime().stream(request))


@pytest.mark.parametrize(("question", "title", "phrase"), ANSWERABLE)
def test_a_question_the_help_center_answers_is_answered_from_the_right_article(tenant, help_center, question,
                                                                               title, phrase):
    answer = ask(tenant, question)
    assert not answer.declined, answer.text
    assert answer.citations[0].title == title
    assert phrase in answer.text
    assert answer.confidence >= 0.55


@pytest.mark.parametrize("question", UNANSWERABLE)
def test_a_question_the_help_center_does_not_answer_is_declined_plainly(tenant, help_center, question):
    answer = ask(tenant, question)
    assert answer.declined and answer.citations == [] and answer.text == DONT_KNOW_TEAM


def test_a_greeting_without_a_question_asks_for_more(tenant, help_center):
    answer = ask(tenant, "Hi there, thanks!")
    assert answer.declined and "tell me a little more" in answer.text


def test_a_short_follow_up_is_understood_with_the_previous_question(tenant, help_center):
    history = [Turn("user", "How do I reset my password?"), Turn("assistant", "…")]
    answer = ask(tenant, "and how long is the link valid?", history=history)
    assert answer.citations[0].title == "Resetting your password" and "30 minutes" in answer.text


def _resolved_ticket(tenant: Any, question: str, reply: str) -> int:
    created = make_ticket(tenant.project_id, message=question, tags=["android", "crash"])
    with session_scope() as session:
        ticket = ticket_service.get_ticket(session=session, project_id=tenant.project_id, ref=created["id"])
        author = session.get_one(User, tenant.user_id)
        replies.add_team_message(session=session, ticket=ticket, author=author, content=reply, is_private=False)
        ticket.status = "resolved"
    return int(created["ticket_number"])


def test_the_team_gets_answers_from_resolved_tickets_but_customers_never_do(tenant, help_center):
    number = _resolved_ticket(tenant, "The Android app crashes when I upload a photo from the gallery",
                              "This is fixed in app version 3.2.1: please update from the Play Store.")
    team = ask(tenant, "Android app crashes when uploading a photo")
    assert not team.declined and team.citations[0].kind == "ticket"
    assert team.citations[0].title.startswith(f"Ticket #{number}") and "3.2.1" in team.text
    customer = ask(tenant, "Android app crashes when uploading a photo", audience="customer")
    assert customer.declined and customer.text == DONT_KNOW_CUSTOMER


def test_an_edited_article_is_answered_from_at_once(client, tenant, help_center):
    refunds = next(a for a in help_center if a["title"] == "Refund policy")
    assert "within 14 days" in ask(tenant, "refund annual plan").text
    client.patch(tenant.url(f"articles/{refunds['id']}"), json={"body": "We refund annual plans within 30 days."},
                 headers=tenant.headers)
    assert "within 30 days" in ask(tenant, "refund annual plan").text
    client.delete(tenant.url(f"articles/{refunds['id']}"), headers=tenant.headers)
    assert ask(tenant, "refund annual plan").declined


def test_unpublished_articles_are_not_used(client, tenant, help_center):
    sso = next(a for a in help_center if "SSO" in a["title"])
    client.patch(tenant.url(f"articles/{sso['id']}"), json={"published": False}, headers=tenant.headers)
    assert ask(tenant, "How do I set up SAML login with Okta?").declined


def test_the_articles_api_lists_searches_and_validates(client, tenant, help_center):
    listed = client.get(tenant.url("articles?limit=3"), headers=tenant.headers).json()
    assert listed["count"] == len(help_center) and len(listed["results"]) == 3 and listed["next"]
    found = client.get(tenant.url("articles/?search=webhook"), headers=tenant.headers).json()
    assert [a["title"] for a in found["results"]] == ["Configuring webhooks"]
    bad = client.post(tenant.url("articles"), json={"title": " "}, headers=tenant.headers)
    assert bad.status_code == 400 and bad.json()["attr"] == "title"
    assert client.get(tenant.url("articles/not-an-id"), headers=tenant.headers).status_code == 404


# -- the pieces ------------------------------------------------------------------------------

def test_the_stemmer_folds_common_english_endings():
    assert {stem(w) for w in ("reset", "resets", "resetting", "reseted")} == {"reset"}
    assert stem("invoices") == stem("invoice") and stem("charges") == stem("charge")
    assert stem("passwords") == "password" and stem("class") == "class"
    assert terms("How do I reset my password?") == ["reset", "password"]


def test_bm25_ranks_the_document_that_matches_rare_terms_first_and_measures_coverage():
    index = BM25Index([terms("the cat sat on the mat"), terms("a dog chased the cat"), terms("quantum physics")])
    hits = index.search(terms("dog and cat"))
    assert [h.index for h in hits] == [1, 0] and hits[0].coverage == 1.0 and hits[1].coverage < 0.5
    assert index.search(terms("unrelated words")) == []


def test_the_passage_is_the_part_of_a_long_article_that_matches():
    text = " ".join(f"Filler sentence number {i} about nothing in particular." for i in range(30))
    text += " To rotate an API key open Settings and click Rotate. " + text
    passage = best_passage(text, frozenset(terms("rotate api key")), limit=200)
    assert "To rotate an API key" in passage and len(passage) <= 200


def test_the_language_is_guessed_from_function_words():
    assert guess_language("Hallo, ich kann mich nicht einloggen und das Passwort ist falsch")[0] == "de"
    assert guess_language("Bonjour, je ne peux pas me connecter avec mon mot de passe")[0] == "fr"
    assert guess_language("Hola, no puedo entrar a mi cuenta, por favor ayuda")[0] == "es"
    assert guess_language("Hi, I cannot log in to my account")[0] == "en"
