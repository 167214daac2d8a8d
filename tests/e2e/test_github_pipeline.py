"""GitHub end to end in one process: signed webhooks → the ingest worker → rows; replies → comments.

Every fixture in tests/github/fixtures goes through the real route
(`POST /webhooks/github/{project}`, signed with the webhook secret, `X-GitHub-Event` and
`X-GitHub-Delivery` set) and Dramatiq's real Worker on the StubBroker; replies go out through
PyGithub to the fake GitHub REST server. Variants a test needs (an `opened` for the issue of
the `closed` fixture, an edit that changes the title) are derived in memory; fixtures stay
byte-for-byte.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from channels.github import sign
from channels.github.outbound import CONTENT_CREATION_LIMIT_PER_HOUR, delivery_marker
from channels.registry import CHANNELS
from core.db import session_scope
from models import Delivery, Ticket
from tests.e2e.support import drain, wait_for
from tests.fakes.github_api import FakeGitHub
from tests.github.support import FIXTURES, SECRET, TOKEN, fixture_payload

HELLO_WORLD = "Codertocat/Hello-World"
CLOSED_REPO = "Pritesh-30/test-repo"
PR_REPO = "chhsia0/knative-route-demo"
BOT_REPO = "googleapis/python-docs-samples"
REPOSITORIES = [HELLO_WORLD, CLOSED_REPO, PR_REPO, BOT_REPO]
COMMENTS = r"/issues/\d+/comments$"


# -- harness -------------------------------------------------------------------------------------


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    fake = FakeGitHub(token=TOKEN)
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def unpaced(monkeypatch: pytest.MonkeyPatch) -> None:
    """GitHub's steady pace is one comment per 7.2 s per account: too slow for a retry test."""
    monkeypatch.setitem(CHANNELS, "github", dataclasses.replace(CHANNELS["github"], rate_limit=None))


def configure(client: Any, tenant: Any, github: FakeGitHub, repositories: list[str] = REPOSITORIES) -> None:
    response = client.put(
        tenant.url("integrations/github"),
        json={"token": TOKEN, "webhook_secret": SECRET, "api_base_url": github.url, "repositories": repositories},
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text


@pytest.fixture
def project(client: Any, tenant: Any, github: FakeGitHub) -> Any:
    configure(client, tenant, github)
    return tenant


def post(client: Any, tenant: Any, event: str, body: bytes, delivery: str | None = None,
         *, secret: str = SECRET) -> Any:
    headers = {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-Hub-Signature-256": sign(body, secret),
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/044aadd",
    }
    return client.post(f"/webhooks/github/{tenant.project_id}", content=body, headers=headers)


def post_fixture(client: Any, tenant: Any, name: str, delivery: str | None = None) -> Any:
    response = post(client, tenant, name.split("__")[0], (FIXTURES / f"{name}.json").read_bytes(), delivery)
    assert response.status_code == 200, response.text
    return response


def post_payload(client: Any, tenant: Any, event: str, payload: dict[str, Any], delivery: str | None = None) -> Any:
    response = post(client, tenant, event, json.dumps(payload).encode(), delivery)
    assert response.status_code == 200, response.text
    return response


def tickets(client: Any, tenant: Any) -> list[dict[str, Any]]:
    return client.get(tenant.url("tickets?channel_source=github"), headers=tenant.headers).json()["results"]


def only_ticket(client: Any, tenant: Any) -> dict[str, Any]:
    [ticket] = tickets(client, tenant)
    return ticket


def messages(client: Any, tenant: Any, ticket_id: str) -> list[dict[str, Any]]:
    return client.get(tenant.url(f"tickets/{ticket_id}/messages"), headers=tenant.headers).json()["results"]


def events(client: Any, tenant: Any) -> dict[str, dict[str, Any]]:
    listed = client.get(tenant.url("inbound_events?channel=github"), headers=tenant.headers).json()["results"]
    return {e["event_id"]: e for e in listed}


def reply(client: Any, tenant: Any, ticket_id: str, text: str) -> dict[str, Any]:
    response = client.post(tenant.url(f"tickets/{ticket_id}/reply"), json={"message": text}, headers=tenant.headers)
    assert response.status_code == 201, response.text
    return response.json()


def delivery_of(message_id: str) -> Delivery:
    with session_scope(read_only=True) as session:
        row = session.scalars(select(Delivery).where(Delivery.message_id == uuid.UUID(message_id))).one()
        session.expunge(row)
        return row


# -- inbound -------------------------------------------------------------------------------------


def test_an_opened_issue_becomes_a_ticket_with_its_title_body_author_and_coordinates(
    client: Any, project: Any, worker: Any
) -> None:
    assert post_fixture(client, project, "issues__opened", "d-open").json() == {"ok": True, "duplicate": False}
    drain(worker)
    ticket = only_ticket(client, project)
    issue = fixture_payload("issues__opened")["issue"]
    assert ticket["channel_detail"] == "github_issue"
    assert ticket["email_subject"] == issue["title"] == "Spelling error in the README file"
    assert ticket["distinct_id"] == "github:Codertocat"
    assert (ticket["github_repo"], ticket["github_issue_number"]) == (HELLO_WORLD, 1)
    assert ticket["unread_team_count"] == 1 and ticket["message_count"] == 1
    [first] = messages(client, project, ticket["id"])
    assert (first["message_type"], first["author_type"], first["author_name"]) == (
        "customer_message", "customer", "Codertocat")
    assert first["content"] == issue["body"]
    assert events(client, project)["d-open"]["status"] == "processed"


def test_an_issue_opened_without_a_description_gets_a_ticket_with_an_empty_first_message(
    client: Any, project: Any, worker: Any
) -> None:
    post_fixture(client, project, "issues__opened_null_body")
    drain(worker)
    ticket = only_ticket(client, project)
    assert ticket["email_subject"] == "Spelling error in the README file"
    assert [m["content"] for m in messages(client, project, ticket["id"])] == [""]


def test_closing_an_issue_resolves_its_ticket(client: Any, project: Any, worker: Any) -> None:
    # The fixture closes issue 8 of another repository: open that issue first.
    opened = fixture_payload("issues__closed") | {"action": "opened"}
    post_payload(client, project, "issues", opened)
    drain(worker)
    assert only_ticket(client, project)["status"] == "new"
    post_fixture(client, project, "issues__closed")
    drain(worker)
    ticket = only_ticket(client, project)
    assert (ticket["github_repo"], ticket["github_issue_number"], ticket["status"]) == (CLOSED_REPO, 8, "resolved")


def test_reopening_an_issue_reopens_its_resolved_ticket(client: Any, project: Any, worker: Any) -> None:
    post_fixture(client, project, "issues__opened")
    drain(worker)
    ticket = only_ticket(client, project)
    resolved = client.patch(project.url(f"tickets/{ticket['id']}"), json={"status": "resolved"}, headers=project.headers)
    assert resolved.json()["status"] == "resolved"
    post_fixture(client, project, "issues__reopened")
    drain(worker)
    assert only_ticket(client, project)["status"] == "open"


def test_editing_an_issue_updates_the_ticket_subject_and_its_first_message(
    client: Any, project: Any, worker: Any
) -> None:
    post_fixture(client, project, "issues__opened")
    post_fixture(client, project, "issues__edited", "d-same-text")  # GitHub's example edits nothing visible
    drain(worker)
    assert events(client, project)["d-same-text"]["status"] == "ignored"
    edited = fixture_payload("issues__edited")
    edited["issue"] |= {"title": "Typo in README: 'commmit'", "body": "The README says 'commmit' (three m's)."}
    post_payload(client, project, "issues", edited)
    drain(worker)
    ticket = only_ticket(client, project)
    assert ticket["email_subject"] == "Typo in README: 'commmit'"
    [first] = messages(client, project, ticket["id"])
    assert (first["content"], first["version"]) == ("The README says 'commmit' (three m's).", 2)


def test_comments_are_added_edited_and_removed_on_the_issues_ticket(client: Any, project: Any, worker: Any) -> None:
    post_fixture(client, project, "issues__opened")
    drain(worker)
    post_fixture(client, project, "issue_comment__created")
    drain(worker)
    ticket = only_ticket(client, project)
    assert [m["content"] for m in messages(client, project, ticket["id"])][1:] == [
        "You are totally right! I'll get this fixed right away."]
    assert ticket["message_count"] == 2 and ticket["unread_team_count"] == 2

    post_fixture(client, project, "issue_comment__edited")
    drain(worker)
    comment = messages(client, project, ticket["id"])[1]
    assert (comment["content"], comment["version"]) == ("You are totally right! I'll get this fixed today.", 2)

    post_fixture(client, project, "issue_comment__deleted")
    drain(worker)
    assert len(messages(client, project, ticket["id"])) == 1
    assert only_ticket(client, project)["message_count"] == 1


def test_a_comment_on_a_pull_request_opens_a_ticket_for_the_pull_request(
    client: Any, project: Any, worker: Any
) -> None:
    post_fixture(client, project, "issue_comment__created_on_pull_request", "d-pr")
    drain(worker)
    ticket = only_ticket(client, project)
    assert (ticket["github_repo"], ticket["github_issue_number"]) == (PR_REPO, 3)
    assert ticket["email_subject"] == "Updated to v2." and ticket["distinct_id"] == "github:chhsia0"
    [comment] = messages(client, project, ticket["id"])
    assert comment["content"] == "/build"
    # Marked as a pull-request comment, with a link back to it on GitHub.
    assert comment["channel_metadata"]["is_pull_request"] is True
    assert comment["channel_metadata"]["html_url"].startswith("https://github.com/")
    assert events(client, project)["d-pr"]["status"] == "processed"


def test_one_ticket_per_issue_when_a_comment_overtakes_opened_and_opened_comes_twice(
    client: Any, project: Any, worker: Any
) -> None:
    post_fixture(client, project, "issue_comment__created", "d-comment")
    drain(worker)
    post_fixture(client, project, "issues__opened", "d-open-1")
    post_fixture(client, project, "issues__opened", "d-open-2")  # a redelivery under a new id
    assert post_fixture(client, project, "issues__opened", "d-open-1").json()["duplicate"] is True
    drain(worker)
    ticket = only_ticket(client, project)
    assert ticket["email_subject"] == "Spelling error in the README file"
    # Chronological: the issue body (15:20:18Z) before the comment that arrived first (15:20:21Z).
    assert [m["content"][:20] for m in messages(client, project, ticket["id"])] == [
        "It looks like you ac", "You are totally righ"]
    statuses = {k: v["status"] for k, v in events(client, project).items()}
    assert statuses["d-comment"] == "processed"
    # The two deliveries of `opened` are ingested concurrently: whichever lands first adds the
    # issue body, the other finds it there and is ignored.
    assert sorted([statuses["d-open-1"], statuses["d-open-2"]]) == ["ignored", "processed"]


def test_a_bots_comment_never_becomes_a_customer_message(client: Any, project: Any, worker: Any) -> None:
    created = fixture_payload("issue_comment__edited_bot_authored_comment") | {"action": "created"}
    post_payload(client, project, "issue_comment", created, "d-bot-created")
    post_fixture(client, project, "issue_comment__edited_bot_authored_comment", "d-bot-edited")
    drain(worker)
    assert tickets(client, project) == []
    statuses = {k: v["status"] for k, v in events(client, project).items()}
    assert statuses == {"d-bot-created": "ignored", "d-bot-edited": "ignored"}


def test_the_webhook_echo_of_our_own_reply_is_not_stored_as_a_customer_message(
    client: Any, project: Any, github: FakeGitHub, worker: Any
) -> None:
    post_fixture(client, project, "issues__opened")
    drain(worker)
    ticket = only_ticket(client, project)
    reply(client, project, ticket["id"], "Thanks, fixing it now.")
    drain(worker)
    [posted] = github.comments_on(HELLO_WORLD, 1)
    # What GitHub sends back for the comment we posted (as the token's user, not a bot).
    echo = fixture_payload("issue_comment__created")
    echo["comment"] = posted
    echo["sender"] = posted["user"]
    post_payload(client, project, "issue_comment", echo, "d-echo")
    drain(worker)
    assert events(client, project)["d-echo"]["status"] == "ignored"
    assert [m["message_type"] for m in messages(client, project, ticket["id"])] == ["customer_message", "sent_reply"]
    assert only_ticket(client, project)["unread_team_count"] == 1


def test_ping_is_answered_at_once_and_stores_nothing(client: Any, project: Any, worker: Any) -> None:
    response = post_fixture(client, project, "ping__repository_hook", "d-ping")
    assert response.json()["ok"] is True
    assert events(client, project) == {}


def test_app_installation_events_are_recorded_and_ignored(client: Any, project: Any, worker: Any) -> None:
    post_fixture(client, project, "installation__created", "d-install")
    drain(worker)
    assert events(client, project)["d-install"]["status"] == "ignored"
    assert tickets(client, project) == []


def test_events_of_a_repository_outside_the_integrations_list_are_recorded_as_ignored(
    client: Any, tenant: Any, github: FakeGitHub, worker: Any
) -> None:
    configure(client, tenant, github, repositories=[HELLO_WORLD])
    response = post_fixture(client, tenant, "issue_comment__created_on_pull_request", "d-elsewhere")
    assert response.json() == {"ok": True, "duplicate": False, "ignored": True}
    drain(worker)
    event = events(client, tenant)["d-elsewhere"]
    assert event["status"] == "ignored" and "not in the integration's repositories" in event["error"]
    assert tickets(client, tenant) == []
    # A redelivery is still one recorded event.
    assert post_fixture(client, tenant, "issue_comment__created_on_pull_request", "d-elsewhere").json()["duplicate"]


def test_a_forged_or_missing_signature_is_refused_and_stores_nothing(client: Any, project: Any) -> None:
    body = (FIXTURES / "issues__opened.json").read_bytes()
    assert post(client, project, "issues", body, secret="not the secret").status_code == 401
    unsigned = client.post(f"/webhooks/github/{project.project_id}", content=body,
                           headers={"X-GitHub-Event": "issues", "X-GitHub-Delivery": "d-unsigned"})
    assert unsigned.status_code == 401
    assert unsigned.json()["code"] == "invalid_signature"
    assert events(client, project) == {}


# -- outbound ------------------------------------------------------------------------------------


def test_a_reply_is_posted_as_an_issue_comment_carrying_the_delivery_marker(
    client: Any, project: Any, github: FakeGitHub, worker: Any
) -> None:
    post_fixture(client, project, "issues__opened")
    drain(worker)
    ticket = only_ticket(client, project)
    sent = reply(client, project, ticket["id"], "Thanks, **fixed** in 1.2.3.")
    drain(worker)
    delivery = delivery_of(sent["id"])
    [comment] = github.comments_on(HELLO_WORLD, 1)
    assert comment["body"] == f"Thanks, **fixed** in 1.2.3.\n\n{delivery_marker(str(delivery.id))}"
    assert (delivery.status, delivery.external_id) == ("sent", str(comment["id"]))
    assert messages(client, project, ticket["id"])[-1]["delivery_status"] == "sent"
    assert [(c.method, c.path) for c in github.calls] == [("POST", f"/repos/{HELLO_WORLD}/issues/1/comments")]


def test_a_reply_on_a_pull_request_goes_to_the_pull_requests_conversation(
    client: Any, project: Any, github: FakeGitHub, worker: Any
) -> None:
    post_fixture(client, project, "issue_comment__created_on_pull_request")
    drain(worker)
    reply(client, project, only_ticket(client, project)["id"], "Build started.")
    drain(worker)
    [comment] = github.comments_on(PR_REPO, 3)
    assert comment["body"].startswith("Build started.\n\n<!-- ticketwire:delivery:")


def test_a_secondary_rate_limit_with_retry_after_is_retried_into_exactly_one_comment(
    client: Any, project: Any, github: FakeGitHub, worker: Any, unpaced: None
) -> None:
    post_fixture(client, project, "issues__opened")
    drain(worker)
    ticket = only_ticket(client, project)
    github.fail_next_with_secondary_rate_limit(status=403, retry_after=1, path=COMMENTS)
    sent = reply(client, project, ticket["id"], "Hang on")
    wait_for(lambda: github.comments_on(HELLO_WORLD, 1))
    drain(worker)
    assert [c["body"].split("\n\n")[0] for c in github.comments_on(HELLO_WORLD, 1)] == ["Hang on"]
    assert len(github.calls_to(COMMENTS)) == 2
    delivery = delivery_of(sent["id"])
    assert (delivery.status, delivery.attempts, delivery.last_error_code) == ("sent", 2, "secondary_rate_limited")


def test_a_missing_issue_fails_the_reply_loudly(
    client: Any, project: Any, github: FakeGitHub, worker: Any
) -> None:
    post_fixture(client, project, "issues__opened")
    drain(worker)
    ticket = only_ticket(client, project)
    client.patch(project.url(f"tickets/{ticket['id']}"), json={"status": "pending"}, headers=project.headers)
    github.fail_next_with_status(404, path=COMMENTS)
    sent = reply(client, project, ticket["id"], "Answer")
    drain(worker)
    listed = messages(client, project, ticket["id"])
    failed = next(m for m in listed if m["id"] == sent["id"])
    assert failed["delivery_status"] == "failed" and "not_found" in failed["delivery_error"]
    note = listed[-1]
    assert (note["author_type"], note["is_private"]) == ("system", True) and "github failed" in note["content"]
    assert only_ticket(client, project)["status"] == "open"
    assert github.comments_on(HELLO_WORLD, 1) == [] and len(github.calls_to(COMMENTS)) == 1


def test_replies_are_paced_at_githubs_hourly_content_creation_limit() -> None:
    assert CHANNELS["github"].rate_per_second == CONTENT_CREATION_LIMIT_PER_HOUR / 3600


def test_the_ticket_row_keeps_the_thread_key_delivery_needs(client: Any, project: Any, worker: Any) -> None:
    post_fixture(client, project, "issues__opened")
    drain(worker)
    with session_scope(read_only=True) as session:
        row = session.scalars(select(Ticket)).one()
        assert (row.thread_key, row.channel_source) == (f"{HELLO_WORLD}#1", "github")
