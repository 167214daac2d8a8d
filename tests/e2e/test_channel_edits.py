"""A team member edits a reply that already reached the channel: the edit reaches it too.

Through the real API (`PATCH tickets/{id}/messages/{message_id}`), the real Dramatiq Worker on
the StubBroker (`workers.edits.edit_delivered_message`) and the vendor fakes: Slack gets
`chat.update`, GitHub a PATCH of the comment (the delivery marker kept), the Bot Connector a
PUT of the activity. Email cannot take a sent message back: nothing is attempted.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from channels.base import DeliveryResult, DeliveryStatus
from channels.github import sign
from channels.github.outbound import delivery_marker
from channels.registry import CHANNELS
from channels.slack import SlackSigner
from channels.teams import TokenIssuer
from core.db import session_scope
from models import Delivery
from services import deliveries, edits
from tests.e2e.support import drain, wait_for
from tests.factories import make_ticket
from tests.fakes.github_api import FakeGitHub
from tests.fakes.slack_api import FakeSlack
from tests.fakes.teams_api import APP_ID, APP_PASSWORD, METADATA_PATH, TENANT_ID, FakeTeams

TESTS = Path(__file__).resolve().parent.parent
SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
SLACK_CHANNEL = "C06NRA6JLER"
GITHUB_SECRET = "It's a Secret to Everybody"
GITHUB_TOKEN = "ghp_fake_token"
HELLO_WORLD = "Codertocat/Hello-World"
ISSUE_COMMENTS = r"/issues/1/comments$"
COMMENT_EDITS = r"/issues/comments/\d+$"


# -- harness -------------------------------------------------------------------------------------


@pytest.fixture
def worker(worker: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The shared worker, with vendor pacing off: a post and its edit follow each other at once."""
    import workers.actors

    assert "edit" in workers.actors.ACTORS
    for channel in ("slack", "github", "teams"):
        monkeypatch.setitem(CHANNELS, channel, dataclasses.replace(CHANNELS[channel], rate_limit=None))
    return worker


def reply(client: Any, tenant: Any, ticket_id: str, text: str) -> dict[str, Any]:
    response = client.post(tenant.url(f"tickets/{ticket_id}/reply"), json={"message": text}, headers=tenant.headers)
    assert response.status_code == 201, response.text
    return response.json()


def edit(client: Any, tenant: Any, ticket_id: str, message_id: str, text: str) -> dict[str, Any]:
    response = client.patch(tenant.url(f"tickets/{ticket_id}/messages/{message_id}"), json={"message": text},
                            headers=tenant.headers)
    assert response.status_code == 200, response.text
    return response.json()


def messages(client: Any, tenant: Any, ticket_id: str) -> list[dict[str, Any]]:
    return client.get(tenant.url(f"tickets/{ticket_id}/messages"), headers=tenant.headers).json()["results"]


def only_ticket(client: Any, tenant: Any) -> dict[str, Any]:
    [ticket] = client.get(tenant.url("tickets"), headers=tenant.headers).json()["results"]
    return ticket


def delivery_of(message_id: str) -> Delivery:
    with session_scope(read_only=True) as session:
        row = session.scalars(select(Delivery).where(Delivery.message_id == uuid.UUID(message_id))).one()
        session.expunge(row)
        return row


def edit_state(message_id: str) -> str | None:
    with session_scope(read_only=True) as session:
        return edits.edit_state(session=session, message_id=uuid.UUID(message_id))


# -- Slack ---------------------------------------------------------------------------------------


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        fake.add_user("U061F7AUR", real_name="Customer Carla", email="carla@customer.test")
        yield fake


@pytest.fixture
def slack_ticket(client: Any, tenant: Any, slack: FakeSlack, worker: Any) -> dict[str, Any]:
    response = client.put(tenant.url("integrations/slack"), headers=tenant.headers, json={
        "bot_token": slack.token, "signing_secret": SLACK_SECRET, "channel_ids": [SLACK_CHANNEL],
        "api_base_url": slack.api_url})
    assert response.status_code == 200, response.text
    body = (TESTS / "slack" / "fixtures" / "message__channel_plain_text.json").read_bytes()
    posted = client.post(f"/webhooks/slack/{tenant.project_id}/events", content=body,
                         headers={**SlackSigner(SLACK_SECRET).sign(body), "Content-Type": "application/json"})
    assert posted.status_code == 200, posted.text
    drain(worker)
    return only_ticket(client, tenant)


def test_an_edited_slack_reply_is_updated_in_place_with_chat_update(
    client: Any, tenant: Any, slack: FakeSlack, slack_ticket: dict[str, Any], worker: Any
) -> None:
    sent = reply(client, tenant, slack_ticket["id"], "Restart the exporter")
    drain(worker)
    [post] = slack.posts
    edited = edit(client, tenant, slack_ticket["id"], sent["id"], "Restart the **exporter** and the queue")
    assert edited["edit_status"] == "pending_channel_edit" and edited["version"] == 2
    drain(worker)
    assert slack.updates == [{"channel": SLACK_CHANNEL, "ts": post["ts"], "text": "Restart the *exporter* and the queue"}]
    assert len(slack.posts) == 1 and edit_state(sent["id"]) is None
    assert messages(client, tenant, slack_ticket["id"])[-1]["delivery_status"] == "sent"


def test_a_rate_limited_slack_edit_is_retried_until_it_lands_once(
    client: Any, tenant: Any, slack: FakeSlack, slack_ticket: dict[str, Any], worker: Any
) -> None:
    sent = reply(client, tenant, slack_ticket["id"], "First answer")
    drain(worker)
    slack.fail_next_with_rate_limit(retry_after=1, method="chat.update")
    edit(client, tenant, slack_ticket["id"], sent["id"], "Better answer")
    wait_for(lambda: slack.updates)
    drain(worker)
    assert [u["text"] for u in slack.updates] == ["Better answer"]
    assert len(slack.calls_of("chat.update")) == 2 and edit_state(sent["id"]) is None


def test_two_quick_edits_leave_the_newest_text_at_slack(
    client: Any, tenant: Any, slack: FakeSlack, slack_ticket: dict[str, Any], worker: Any
) -> None:
    sent = reply(client, tenant, slack_ticket["id"], "v1")
    drain(worker)
    edit(client, tenant, slack_ticket["id"], sent["id"], "v2")
    edit(client, tenant, slack_ticket["id"], sent["id"], "v3")
    drain(worker)
    assert slack.updates[-1]["text"] == "v3" and edit_state(sent["id"]) is None
    [stored] = slack.messages[SLACK_CHANNEL][-1:]
    assert stored["text"] == "v3"


def test_an_edit_whose_dispatch_was_lost_is_found_by_the_sweeper(
    client: Any, tenant: Any, slack: FakeSlack, slack_ticket: dict[str, Any], worker: Any
) -> None:
    import workers.actors
    from services.dispatch import install_dispatcher
    from workers.periodic import default_jobs

    sent = reply(client, tenant, slack_ticket["id"], "Original")
    drain(worker)
    # The broker is down when the edit commits: the hand-off is lost, the marker is not.
    install_dispatcher(lambda kind, object_id: None)
    edit(client, tenant, slack_ticket["id"], sent["id"], "Edited while the broker was down")
    install_dispatcher(workers.actors.dispatch)
    drain(worker)
    assert slack.updates == [] and edit_state(sent["id"]) == "edit_pending"

    assert "sweep_edits" in [job.name for job in default_jobs()]
    with session_scope() as session:
        assert edits.redispatch_due_edits(session=session, grace=0) == 1
    drain(worker)
    assert [u["text"] for u in slack.updates] == ["Edited while the broker was down"]
    assert edit_state(sent["id"]) is None
    # A late duplicate of the hand-off finds nothing left to do.
    from workers.edits import run_edit

    assert run_edit(uuid.UUID(sent["id"])) == "no_pending_edit" and len(slack.updates) == 1


# -- GitHub --------------------------------------------------------------------------------------


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    fake = FakeGitHub(token=GITHUB_TOKEN)
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def github_ticket(client: Any, tenant: Any, github: FakeGitHub, worker: Any) -> dict[str, Any]:
    response = client.put(tenant.url("integrations/github"), headers=tenant.headers, json={
        "token": GITHUB_TOKEN, "webhook_secret": GITHUB_SECRET, "api_base_url": github.url})
    assert response.status_code == 200, response.text
    body = (TESTS / "github" / "fixtures" / "issues__opened.json").read_bytes()
    posted = client.post(f"/webhooks/github/{tenant.project_id}", content=body, headers={
        "X-GitHub-Event": "issues", "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": sign(body, GITHUB_SECRET), "Content-Type": "application/json"})
    assert posted.status_code == 200, posted.text
    drain(worker)
    return only_ticket(client, tenant)


def test_an_edited_github_reply_patches_its_comment_and_keeps_the_marker(
    client: Any, tenant: Any, github: FakeGitHub, github_ticket: dict[str, Any], worker: Any
) -> None:
    sent = reply(client, tenant, github_ticket["id"], "Fixed in 1.2.3")
    drain(worker)
    [comment] = github.comments_on(HELLO_WORLD, 1)
    edit(client, tenant, github_ticket["id"], sent["id"], "Fixed in 1.2.4 (1.2.3 missed a file)")
    drain(worker)
    marker = delivery_marker(str(delivery_of(sent["id"]).id))
    [edited] = github.comments_on(HELLO_WORLD, 1)
    assert edited["id"] == comment["id"]
    assert edited["body"] == f"Fixed in 1.2.4 (1.2.3 missed a file)\n\n{marker}"
    [patch] = github.calls_to(COMMENT_EDITS)
    assert (patch.method, patch.path) == ("PATCH", f"/repos/{HELLO_WORLD}/issues/comments/{comment['id']}")
    assert edit_state(sent["id"]) is None


def test_an_edit_of_a_comment_deleted_at_github_fails_with_a_system_note(
    client: Any, tenant: Any, github: FakeGitHub, github_ticket: dict[str, Any], worker: Any
) -> None:
    sent = reply(client, tenant, github_ticket["id"], "Try version 2")
    drain(worker)
    github.fail_next_with_status(404, path=COMMENT_EDITS)
    edit(client, tenant, github_ticket["id"], sent["id"], "Try version 3")
    drain(worker)
    listed = messages(client, tenant, github_ticket["id"])
    note = listed[-1]
    assert (note["author_type"], note["is_private"], note["message_type"]) == ("system", True, "internal_note")
    assert "could not be updated in github" in note["content"] and "not_found" in note["content"]
    edited = next(m for m in listed if m["id"] == sent["id"])
    assert (edited["content"], edited["delivery_status"]) == ("Try version 3", "sent")
    assert edit_state(sent["id"]) == "edit_failed"
    assert github.comments_on(HELLO_WORLD, 1)[0]["body"].startswith("Try version 2")


def test_an_edit_made_while_the_reply_is_being_posted_is_applied_after_it_lands(
    client: Any, tenant: Any, github: FakeGitHub, github_ticket: dict[str, Any], worker: Any
) -> None:
    github.slow_down_next_comment(1.5)  # the comment is stored; GitHub answers late
    sent = reply(client, tenant, github_ticket["id"], "Posting the original")
    wait_for(lambda: delivery_of(sent["id"]).status == "sending")
    edited = edit(client, tenant, github_ticket["id"], sent["id"], "The edited text")
    assert edited["edit_status"] == "pending_channel_edit" and edited["delivery_status"] == "sending"
    wait_for(lambda: edit_state(sent["id"]) is None and delivery_of(sent["id"]).status == "sent")
    drain(worker)
    [comment] = github.comments_on(HELLO_WORLD, 1)
    assert comment["body"].split("\n\n")[0] == "The edited text"
    assert len(github.calls_to(ISSUE_COMMENTS)) == 1


# -- Microsoft Teams -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def teams_server() -> Iterator[FakeTeams]:
    with FakeTeams(issuer=TokenIssuer()) as fake:
        yield fake


@pytest.fixture
def teams(teams_server: FakeTeams) -> Iterator[FakeTeams]:
    teams_server.reset()
    yield teams_server
    teams_server.reset()


@pytest.fixture
def teams_ticket(client: Any, tenant: Any, teams: FakeTeams, worker: Any) -> dict[str, Any]:
    response = client.put(tenant.url("integrations/teams"), headers=tenant.headers, json={
        "app_id": APP_ID, "app_password": APP_PASSWORD, "tenant_id": TENANT_ID,
        "openid_metadata_url": f"{teams.url}{METADATA_PATH}",
        "token_url": f"{teams.url}/botframework.com/oauth2/v2.0/token", "graph_base_url": f"{teams.url}/v1.0"})
    assert response.status_code == 200, response.text
    activity = json.loads((TESTS / "teams" / "fixtures" / "message__channel_mention_bot.json").read_bytes())
    body = json.dumps(activity | {"serviceUrl": teams.service_url}).encode()
    posted = client.post(f"/webhooks/teams/{tenant.project_id}/messages", content=body,
                         headers={**teams.issuer.sign(body, audience=APP_ID), "Content-Type": "application/json"})
    assert posted.status_code == 200, posted.text
    drain(worker)
    return only_ticket(client, tenant)


def test_an_edited_teams_reply_updates_the_activity_the_bot_posted(
    client: Any, tenant: Any, teams: FakeTeams, teams_ticket: dict[str, Any], worker: Any
) -> None:
    sent = reply(client, tenant, teams_ticket["id"], "We are on it")
    drain(worker)
    [posted] = teams.activities
    edit(client, tenant, teams_ticket["id"], sent["id"], "We are on it: a fix ships **today**")
    drain(worker)
    post, put = teams.activities
    assert (put.method, put.id, put.conversation_id) == ("PUT", posted.id, posted.conversation_id)
    assert put.raw_path == posted.raw_path.rsplit("/", 1)[0] + f"/{posted.id}"
    assert (put.activity["id"], put.activity["text"]) == (posted.id, "We are on it: a fix ships **today**")
    assert edit_state(sent["id"]) is None


# -- email ---------------------------------------------------------------------------------------


def test_an_edited_email_reply_is_not_sent_again_and_no_channel_edit_is_attempted(client: Any, tenant: Any) -> None:
    from services.dispatch import install_dispatcher
    from workers.edits import run_edit

    handed_off: list[tuple[str, str]] = []
    install_dispatcher(lambda kind, object_id: handed_off.append((kind, object_id)))
    try:
        ticket = make_ticket(tenant.project_id, channel_source="email", channel_detail=None,
                             customer_email="carla@customer.test")
        sent = reply(client, tenant, ticket["id"], "Your refund is on its way")
        delivery_id = delivery_of(sent["id"]).id
        with session_scope() as session:  # sent by email, as the outbound worker would
            assert deliveries.claim(session=session, delivery_id=delivery_id, worker_id="test") is not None
        with session_scope() as session:
            deliveries.record_result(session=session, delivery_id=delivery_id,
                                     result=DeliveryResult.delivered("<reply@ticketwire.test>"))
        edited = edit(client, tenant, ticket["id"], sent["id"], "Your refund arrives Monday")
        assert edited["edit_status"] == "not_supported_by_channel"
        assert [kind for kind, _ in handed_off] == ["deliver"]
        assert edit_state(sent["id"]) is None
        # Even a stray hand-off does nothing for email: no vendor, no second note.
        assert run_edit(uuid.UUID(sent["id"])) == "not_supported_by_channel"
        notes = [m for m in messages(client, tenant, ticket["id"]) if m["author_type"] == "system"]
        assert len(notes) == 1 and "cannot change a sent message" in notes[0]["content"]
    finally:
        import workers.actors

        install_dispatcher(workers.actors.dispatch)


# -- the edit's life cycle, step by step (services.edits, no worker) -----------------------------


@pytest.fixture
def clock() -> Iterator[Any]:
    from core.clock import FrozenClock, use_clock

    frozen = FrozenClock()
    previous = use_clock(frozen)
    yield frozen
    use_clock(previous)


@pytest.fixture
def delivered(client: Any, tenant: Any, clock: Any) -> Iterator[dict[str, Any]]:
    """A Slack reply already delivered, its edits handed to nobody (this test drives them)."""
    import workers.actors
    from services.dispatch import install_dispatcher

    install_dispatcher(lambda kind, object_id: None)
    ticket = make_ticket(tenant.project_id, channel_source="slack", channel_detail="slack_channel_message",
                         slack_team_id="T1", slack_channel_id="C1", slack_thread_ts="1700000000.000100")
    sent = reply(client, tenant, ticket["id"], "v1")
    delivery_id = delivery_of(sent["id"]).id
    with session_scope() as session:
        assert deliveries.claim(session=session, delivery_id=delivery_id, worker_id="test") is not None
    with session_scope() as session:
        deliveries.record_result(session=session, delivery_id=delivery_id,
                                 result=DeliveryResult.delivered("1700000001.000200"))
    yield {"ticket": ticket, "message_id": sent["id"]}
    install_dispatcher(workers.actors.dispatch)


def _claim(message_id: str, worker: str = "w1") -> Any:
    with session_scope() as session:
        return edits.claim_edit(session=session, message_id=uuid.UUID(message_id), worker_id=worker)


def _record(claim: Any, result: DeliveryResult, attempt: int = 1) -> float | None:
    with session_scope() as session:
        return edits.record_edit_result(session=session, claim=claim, result=result, attempt=attempt)


def test_a_claimed_edit_carries_the_current_text_to_the_delivered_message(
    client: Any, tenant: Any, delivered: dict[str, Any]
) -> None:
    edit(client, tenant, delivered["ticket"]["id"], delivered["message_id"], "v2")
    claim = _claim(delivered["message_id"])
    assert isinstance(claim, edits.EditClaim)
    assert (claim.channel, claim.external_id, claim.reply.text) == ("slack", "1700000001.000200", "v2")
    assert claim.reply.thread["slack_channel_id"] == "C1"
    assert claim.reply.delivery_id == str(delivery_of(delivered["message_id"]).id)
    assert _claim(delivered["message_id"], "w2") == edits.Skip("no_pending_edit")  # leased to w1
    assert _record(claim, DeliveryResult.delivered("1700000001.000200")) is None
    assert edit_state(delivered["message_id"]) is None


def test_an_edit_made_while_an_earlier_edit_is_in_flight_goes_out_when_that_one_returns(
    client: Any, tenant: Any, delivered: dict[str, Any]
) -> None:
    edit(client, tenant, delivered["ticket"]["id"], delivered["message_id"], "v2")
    first = _claim(delivered["message_id"])
    edit(client, tenant, delivered["ticket"]["id"], delivered["message_id"], "v3")
    assert _claim(delivered["message_id"], "w2") == edits.Skip("not_due")  # waits for the one in flight
    assert _record(first, DeliveryResult.delivered("1700000001.000200")) == 0.0  # "send again now"
    second = _claim(delivered["message_id"], "w2")
    assert isinstance(second, edits.EditClaim) and second.reply.text == "v3"


def test_an_edit_waiting_out_a_rate_limit_keeps_its_wait_when_edited_again(
    client: Any, tenant: Any, delivered: dict[str, Any], clock: Any
) -> None:
    edit(client, tenant, delivered["ticket"]["id"], delivered["message_id"], "v2")
    limited = DeliveryResult(DeliveryStatus.RETRYABLE, retry_after=60.0, error_code="ratelimited")
    assert _record(_claim(delivered["message_id"]), limited) == 60.0
    edit(client, tenant, delivered["ticket"]["id"], delivered["message_id"], "v3")
    assert _claim(delivered["message_id"]) == edits.Skip("not_due")
    clock.advance(seconds=61)
    retry = _claim(delivered["message_id"])
    assert isinstance(retry, edits.EditClaim) and retry.reply.text == "v3"


def test_an_edit_whose_worker_died_is_taken_over_after_its_lease_and_the_late_answer_is_ignored(
    client: Any, tenant: Any, delivered: dict[str, Any], clock: Any
) -> None:
    edit(client, tenant, delivered["ticket"]["id"], delivered["message_id"], "v2")
    lost = _claim(delivered["message_id"])
    with session_scope(read_only=True) as session:
        assert edits.due_edits(session=session, grace=0) == []
    clock.advance(seconds=edits.LEASE.total_seconds() + 1)
    with session_scope(read_only=True) as session:
        assert edits.due_edits(session=session, grace=0) == [uuid.UUID(delivered["message_id"])]
    taken_over = _claim(delivered["message_id"], "w2")
    assert isinstance(taken_over, edits.EditClaim)
    assert _record(lost, DeliveryResult.delivered("1700000001.000200")) is None
    assert edit_state(delivered["message_id"]) == "edit_sending"
    assert _record(taken_over, DeliveryResult.delivered("1700000001.000200")) is None
    assert edit_state(delivered["message_id"]) is None


def test_retryable_failures_give_up_after_the_last_attempt_with_a_system_note(
    client: Any, tenant: Any, delivered: dict[str, Any], clock: Any
) -> None:
    edit(client, tenant, delivered["ticket"]["id"], delivered["message_id"], "v2")
    down = DeliveryResult(DeliveryStatus.RETRYABLE, error_code="http_503", error_detail="Service Unavailable")
    delay = _record(_claim(delivered["message_id"]), down, attempt=1)
    assert delay is not None and 12 <= delay <= 18  # deliveries' backoff: 15 s ± 20 % jitter first
    clock.advance(seconds=delay + 1)
    assert _record(_claim(delivered["message_id"]), down, attempt=edits.MAX_EDIT_ATTEMPTS) is None
    assert edit_state(delivered["message_id"]) == "edit_failed"
    note = messages(client, tenant, delivered["ticket"]["id"])[-1]
    assert note["author_type"] == "system" and "could not be updated in slack: http_503" in note["content"]


def test_a_reply_not_delivered_yet_needs_no_channel_edit(client: Any, tenant: Any, clock: Any) -> None:
    import workers.actors
    from services.dispatch import install_dispatcher

    install_dispatcher(lambda kind, object_id: None)
    try:
        ticket = make_ticket(tenant.project_id, channel_source="github", channel_detail="github_issue",
                             github_repo=HELLO_WORLD, github_issue_number=1)
        sent = reply(client, tenant, ticket["id"], "v1")
        assert edit(client, tenant, ticket["id"], sent["id"], "v2")["edit_status"] == "not_delivered_yet"
        assert _claim(sent["id"]) == edits.Skip("not_delivered_yet") and edit_state(sent["id"]) is None
    finally:
        install_dispatcher(workers.actors.dispatch)
