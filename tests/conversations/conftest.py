"""Shared pieces of the AI conversation tests: URLs, a second user, a recording dispatcher,
a small help center, and scripted runtimes."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from core.db import session_scope
from services import accounts
from services.agent import knowledge
from services.agent.base import AgentRequest, AnswerEnd, TokenEvent, TriageRequest
from services.dispatch import install_dispatcher

# A small help center whose answers the offline runtime must find (see test_offline_runtime).
ARTICLES: list[dict[str, Any]] = [
    {"title": "Resetting your password",
     "body": "To reset your password, open the login page and click 'Forgot password'. We email you a reset "
             "link that is valid for 30 minutes. Reset links can be used only once. If the email does not "
             "arrive, check your spam folder.",
     "url": "https://help.example.test/password", "tags": ["account"]},
    {"title": "Refund policy",
     "body": "We refund annual plans within 14 days of purchase. Monthly plans are not refunded, but you can "
             "cancel at any time and keep access until the end of the billing period. Refunds reach your "
             "card within 5 to 10 business days.",
     "url": "https://help.example.test/refunds", "tags": ["billing"]},
    {"title": "Setting up single sign-on (SAML SSO)",
     "body": "Single sign-on is available on the Enterprise plan. In Settings, open Authentication, choose SAML "
             "and paste your identity provider's metadata URL. Okta, Azure AD and Google Workspace are "
             "supported. Enforce SSO only after testing a login.",
     "url": "https://help.example.test/sso", "tags": ["account", "enterprise"]},
    {"title": "API rate limits",
     "body": "The REST API allows 480 requests per minute and 4800 requests per hour for each personal API key. "
             "When you exceed a limit the API answers 429 with a Retry-After header telling you how many "
             "seconds to wait.",
     "url": "https://help.example.test/rate-limits", "tags": ["api"]},
    {"title": "Exporting your data",
     "body": "You can export all tickets as CSV from Settings, Data, Export. Exports include messages and tags. "
             "Large exports are emailed to you as a download link when they are ready.",
     "url": None, "tags": ["data"]},
    {"title": "Deleting your account",
     "body": "Account owners can delete the organization from Settings, Organization, Danger zone. Deletion is "
             "permanent after 7 days; until then support can restore it.",
     "url": None, "tags": ["account"]},
    {"title": "Downloading invoices",
     "body": "Invoices are available under Billing, Invoices. Each invoice can be downloaded as a PDF and "
             "includes your VAT number when you have added one to the billing details.",
     "url": None, "tags": ["billing"]},
    {"title": "Configuring webhooks",
     "body": "Webhooks send an HTTP POST to your endpoint when a ticket is created or updated. Each request is "
             "signed with HMAC-SHA256 in the X-Signature header; verify it with your webhook secret.",
     "url": None, "tags": ["api"]},
]


def conv_url(tenant: Any, conversation_id: uuid.UUID | str, suffix: str = "") -> str:
    return tenant.url(f"{conversation_id}/{suffix}".rstrip("/")) if suffix else tenant.url(str(conversation_id))


@pytest.fixture(autouse=True)
def _fresh_knowledge() -> Iterator[None]:
    knowledge.forget()
    yield
    knowledge.forget()


@pytest.fixture
def dispatched() -> Iterator[list[tuple[str, str]]]:
    """Everything services hand to the workers after commit, in order (no worker runs)."""
    from services import dispatch

    sent: list[tuple[str, str]] = []
    previous = dispatch._dispatcher
    install_dispatcher(lambda kind, object_id: sent.append((kind, object_id)))
    yield sent
    install_dispatcher(previous)


@pytest.fixture
def teammate(tenant: Any) -> Any:
    """Another user of the same project, with their own key."""
    from models import Project
    from tests.conftest import Tenant

    with session_scope() as session:
        project = session.get_one(Project, tenant.project_id)
        user = accounts.get_or_create_user(session=session, email="bob@acme.test", first_name="Bob")
        accounts.add_member(session=session, project=project, user=user)
        issued = accounts.create_api_key(session=session, user=user, scopes=["*"], label="bob")
        return Tenant(tenant.project_id, issued.secret, user.id, tenant.widget_token)


@pytest.fixture
def help_center(client: Any, tenant: Any) -> list[dict[str, Any]]:
    created = []
    for article in ARTICLES:
        response = client.post(tenant.url("articles/"), json=article, headers=tenant.headers)
        assert response.status_code == 201, response.text
        created.append(response.json())
    return created


class ScriptedRuntime:
    """Streams the given tokens, `delay` seconds apart (slow enough to cancel)."""

    name = "scripted"

    def __init__(self, tokens: list[str], *, delay: float = 0.0, fail_with: Exception | None = None) -> None:
        self.tokens, self.delay, self.fail_with = tokens, delay, fail_with
        self.started = threading.Event()
        self.questions: list[str] = []
        self.histories: list[list[Any]] = []

    def stream(self, request: AgentRequest) -> Iterator[Any]:
        self.questions.append(request.question)
        self.histories.append(list(request.history))
        self.started.set()
        for token in self.tokens:
            if self.delay:
                time.sleep(self.delay)
            yield TokenEvent(token)
        if self.fail_with is not None:
            raise self.fail_with
        yield AnswerEnd(citations=[], confidence=0.9, declined=False)

    def triage(self, request: TriageRequest) -> dict[str, Any]:
        return {"category": "question", "urgency": "normal", "language": "en", "suggested_priority": "medium",
                "suggested_tags": [], "confidence": 0.5}
