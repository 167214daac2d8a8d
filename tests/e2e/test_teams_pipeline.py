"""Microsoft Teams end to end in one process: signed activities → the ingest worker → rows; replies →
the Bot Connector.

Each fixture in tests/teams/fixtures is POSTed to `/webhooks/teams/{project}/messages` with a
Bot Framework JWT from the fake's `TokenIssuer` (its JWKS served by the fake's OpenID
metadata endpoint), then processed by Dramatiq's real Worker on the StubBroker. Replies go to
the fake Bot Connector; for them, a test derives the activity with the fake's `serviceUrl`
(the token's `serviceurl` claim then names it too). Fixtures stay byte-for-byte.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import select

from channels.registry import CHANNELS
from channels.teams import RATE_LIMIT_PER_THREAD_PER_SECOND, TokenIssuer
from core.db import session_scope
from models import Delivery, Ticket
from tests.e2e.support import drain, wait_for
from tests.fakes.http import Reply
from tests.fakes.teams_api import APP_ID, APP_PASSWORD, KEYS_PATH, METADATA_PATH, TENANT_ID, FakeTeams

FIXTURES = Path(__file__).resolve().parent.parent / "teams" / "fixtures"
BUNDLE = "bundle__channel_mention_card_action_message_reaction.json"
DAVE_AAD = "6b703ce3-6d14-4fe6-b90c-dc5f03657ae4"
GENERAL = "19:097e6717fd7245bdbeba6baa13840db8@thread.skype"
SUPPORT = "19:9d3c71104f8c49128368b23a5eaeb86d@thread.skype"
ROOT = "1571540169848"
THREAD = f"{GENERAL};messageid={ROOT}"
CONNECTOR = r"/amer/v3/conversations/"


# -- harness -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def teams_server() -> Iterator[FakeTeams]:
    # One server (and one RSA key) for the module; `teams` resets it per test.
    with FakeTeams(issuer=TokenIssuer()) as fake:
        yield fake


@pytest.fixture
def teams(teams_server: FakeTeams) -> Iterator[FakeTeams]:
    teams_server.reset()
    teams_server.add_user(DAVE_AAD, mail="dave@contoso.example", name="Dave T.")
    yield teams_server
    teams_server.reset()


def settings(teams: FakeTeams, **overrides: Any) -> dict[str, Any]:
    return {
        "app_id": APP_ID,
        "app_password": APP_PASSWORD,
        "tenant_id": TENANT_ID,
        "openid_metadata_url": f"{teams.url}{METADATA_PATH}",
        "token_url": f"{teams.url}/botframework.com/oauth2/v2.0/token",
        "graph_base_url": f"{teams.url}/v1.0",
        **overrides,
    }


@pytest.fixture
def project(client: Any, tenant: Any, teams: FakeTeams) -> Any:
    response = client.put(tenant.url("integrations/teams"), json=settings(teams, channel_ids=[SUPPORT]),
                          headers=tenant.headers)
    assert response.status_code == 200, response.text
    assert "app_password" not in json.dumps(response.json()["settings"])
    return tenant


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def fixture_json(name: str, key: str | None = None) -> dict[str, Any]:
    data = json.loads(fixture_bytes(name))
    return copy.deepcopy(data[key] if key else data)


def post(client: Any, tenant: Any, teams: FakeTeams, body: bytes | dict[str, Any], **token: Any) -> Any:
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = teams.issuer.sign(payload, audience=token.pop("audience", APP_ID), **token)
    return client.post(f"/webhooks/teams/{tenant.project_id}/messages", content=payload,
                       headers={**headers, "Content-Type": "application/json"})


def post_ok(client: Any, tenant: Any, teams: FakeTeams, body: bytes | dict[str, Any]) -> Any:
    response = post(client, tenant, teams, body)
    assert response.status_code == 200, response.text
    return response


def at_fake(activity: dict[str, Any], teams: FakeTeams) -> dict[str, Any]:
    """The activity as the fake's Bot Connector would send it (its serviceUrl)."""
    return activity | {"serviceUrl": teams.service_url}


def as_thread_reply(activity: dict[str, Any], reply_id: str, text: str, timestamp: str | None = None) -> dict[str, Any]:
    """A plain reply in the activity's thread: same conversation id, no mention, a new id."""
    reply = copy.deepcopy(activity)
    reply.update(id=reply_id, text=text)
    if timestamp:
        reply.update(timestamp=timestamp, localTimestamp=timestamp)
    reply["entities"] = [e for e in reply.get("entities", []) if e.get("type") != "mention"]
    reply.pop("attachments", None)
    return reply


def tickets(client: Any, tenant: Any) -> list[dict[str, Any]]:
    return client.get(tenant.url("tickets?channel_source=teams"), headers=tenant.headers).json()["results"]


def messages(client: Any, tenant: Any, ticket_id: str) -> list[dict[str, Any]]:
    return client.get(tenant.url(f"tickets/{ticket_id}/messages"), headers=tenant.headers).json()["results"]


def event_statuses(client: Any, tenant: Any) -> list[str]:
    listed = client.get(tenant.url("inbound_events?channel=teams"), headers=tenant.headers).json()["results"]
    return [e["status"] for e in listed]


def ticket_row(ticket_id: str) -> Ticket:
    with session_scope(read_only=True) as session:
        row = session.get_one(Ticket, uuid.UUID(ticket_id))
        session.expunge(row)
        return row


def reply(client: Any, tenant: Any, ticket_id: str, text: str) -> dict[str, Any]:
    response = client.post(tenant.url(f"tickets/{ticket_id}/reply"), json={"message": text}, headers=tenant.headers)
    assert response.status_code == 201, response.text
    return response.json()


# -- inbound -------------------------------------------------------------------------------------


def test_a_channel_message_mentioning_the_bot_becomes_a_ticket_with_its_thread_coordinates(
    client: Any, project: Any, teams: FakeTeams, worker: Any
) -> None:
    assert post_ok(client, project, teams, fixture_bytes("message__channel_mention_bot.json")).json() == {
        "ok": True, "duplicate": False}
    drain(worker)
    [ticket] = tickets(client, project)
    assert ticket["channel_detail"] == "teams_bot_mention"
    assert ticket["distinct_id"] == f"teams:{DAVE_AAD}"
    [first] = messages(client, project, ticket["id"])
    assert (first["content"], first["author_name"], first["author_type"]) == (
        "show members", "Dave Taniguchi", "customer")
    row = ticket_row(ticket["id"])
    assert (row.thread_key, row.teams_conversation_id, row.teams_root_activity_id) == (THREAD, THREAD, ROOT)
    assert (row.teams_channel_id, row.teams_team_id, row.teams_tenant_id) == (GENERAL, GENERAL, TENANT_ID)
    assert row.teams_service_url == "https://smba.trafficmanager.net/amer/"
    # The author's address comes from Microsoft Graph (/users/{aadObjectId}).
    assert row.customer_email == "dave@contoso.example"
    assert teams.calls_to(rf"/v1\.0/users/{DAVE_AAD}")


def test_every_mention_fixture_opens_its_own_ticket(client: Any, project: Any, teams: FakeTeams, worker: Any) -> None:
    post_ok(client, project, teams, fixture_bytes("message__channel_mention_bot.json"))
    post_ok(client, project, teams, fixture_bytes("message__channel_mention_bot_with_link.json"))
    post_ok(client, project, teams, fixture_json(BUNDLE, "mention"))
    drain(worker)
    found = {t["id"]: messages(client, project, t["id"])[0]["content"] for t in tickets(client, project)}
    assert sorted(found.values()) == ["Test", "https://foo.com", "show members"]
    assert {t["channel_detail"] for t in tickets(client, project)} == {"teams_bot_mention"}


def test_a_top_level_post_in_a_configured_channel_opens_a_channel_message_ticket(
    client: Any, project: Any, teams: FakeTeams, worker: Any
) -> None:
    post_in_support = as_thread_reply(fixture_json("message__channel_mention_bot_with_link.json"),
                                      "1571508491752", "Exports are stuck")
    post_ok(client, project, teams, post_in_support)
    drain(worker)
    [ticket] = tickets(client, project)
    assert ticket["channel_detail"] == "teams_channel_message"
    assert [m["content"] for m in messages(client, project, ticket["id"])] == ["Exports are stuck"]


def test_a_personal_chat_with_the_bot_opens_a_ticket(client: Any, project: Any, teams: FakeTeams, worker: Any) -> None:
    post_ok(client, project, teams, fixture_bytes("message__personal_chat.json"))
    drain(worker)
    [ticket] = tickets(client, project)
    assert ticket["channel_detail"] == "teams_bot_mention"
    assert [m["content"] for m in messages(client, project, ticket["id"])] == ["file"]


def test_replies_in_the_thread_become_messages_on_its_ticket_once_each(
    client: Any, project: Any, teams: FakeTeams, worker: Any
) -> None:
    mention = fixture_json("message__channel_mention_bot.json")
    post_ok(client, project, teams, mention)
    drain(worker)
    follow_up = as_thread_reply(mention, "1571540200001", "It lists nobody at all", "2019-10-20T02:58:00.000Z")
    for _ in range(3):  # Bot Framework retries: one message
        post_ok(client, project, teams, follow_up)
    drain(worker)
    [ticket] = tickets(client, project)
    assert [m["content"] for m in messages(client, project, ticket["id"])] == ["show members", "It lists nobody at all"]
    assert ticket["message_count"] == 2 and ticket["unread_team_count"] == 2


def test_conversation_updates_card_submits_and_reactions_are_recorded_and_ignored(
    client: Any, project: Any, teams: FakeTeams, worker: Any
) -> None:
    for name in ("conversation_update__channel_created.json", "conversation_update__group_chat_members_added.json",
                 "conversation_update__team_member_added.json", "message__card_submit_no_text.json"):
        post_ok(client, project, teams, fixture_bytes(name))
    post_ok(client, project, teams, fixture_json(BUNDLE, "action"))
    post_ok(client, project, teams, fixture_json(BUNDLE, "reaction"))
    drain(worker)
    assert event_statuses(client, project) == ["ignored"] * 6
    assert tickets(client, project) == []


def test_an_activity_without_a_valid_bot_framework_token_is_refused_and_stores_nothing(
    client: Any, project: Any, teams: FakeTeams
) -> None:
    body = fixture_bytes("message__channel_mention_bot.json")
    url = f"/webhooks/teams/{project.project_id}/messages"
    assert client.post(url, content=body).status_code == 401
    assert client.post(url, content=body, headers={"Authorization": "Bearer not-a-jwt"}).status_code == 401
    assert post(client, project, teams, body, audience="another-bot").status_code == 401
    assert post(client, project, teams, body, service_url="https://evil.example/").status_code == 401
    expired = post(client, project, teams, body, issued_at=time.time() - 3600 - 301 - 5)
    assert expired.status_code == 401 and expired.json()["code"] == "invalid_signature"
    assert event_statuses(client, project) == []
    assert teams.calls_to(KEYS_PATH)  # the signing keys were really consulted


# -- outbound ------------------------------------------------------------------------------------


def test_a_reply_is_posted_to_the_bot_connector_in_the_tickets_thread(
    client: Any, project: Any, teams: FakeTeams, worker: Any
) -> None:
    post_ok(client, project, teams, at_fake(fixture_json("message__channel_mention_bot.json"), teams))
    drain(worker)
    [ticket] = tickets(client, project)
    sent = reply(client, project, ticket["id"], "We are **on it**.")
    drain(worker)
    [posted] = teams.activities
    assert posted.method == "POST"
    assert posted.raw_path == f"/amer/v3/conversations/{quote(THREAD, safe='')}/activities/{ROOT}"
    assert (posted.conversation_id, posted.reply_to_id) == (THREAD, ROOT)
    assert posted.activity["text"] == "We are **on it**." and posted.activity["textFormat"] == "markdown"
    with session_scope(read_only=True) as session:
        delivery = session.scalars(select(Delivery).where(Delivery.message_id == uuid.UUID(sent["id"]))).one()
        assert (delivery.status, delivery.external_id) == ("sent", posted.id)
    assert messages(client, project, ticket["id"])[-1]["delivery_status"] == "sent"


def test_a_429_from_the_bot_connector_is_retried_until_the_reply_is_posted_once(
    client: Any, project: Any, teams: FakeTeams, worker: Any
) -> None:
    post_ok(client, project, teams, at_fake(fixture_json("message__channel_mention_bot.json"), teams))
    drain(worker)
    [ticket] = tickets(client, project)
    teams.fail_next_rate_limited("1", path=CONNECTOR)
    reply(client, project, ticket["id"], "Hang on")
    wait_for(lambda: teams.activities)
    drain(worker)
    assert [a.activity["text"] for a in teams.activities] == ["Hang on"]
    assert len(teams.calls_to(CONNECTOR)) == 2


def test_a_reply_to_a_thread_the_bot_connector_does_not_know_fails_loudly(
    client: Any, project: Any, teams: FakeTeams, worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(CHANNELS, "teams", dataclasses.replace(CHANNELS["teams"], rate_limit=None))
    post_ok(client, project, teams, at_fake(fixture_json("message__channel_mention_bot.json"), teams))
    drain(worker)
    [ticket] = tickets(client, project)
    not_found = {"error": {"code": "ConversationNotFound", "message": "Conversation not found."}}
    teams.server.fail_next(Reply(404, not_found), path=CONNECTOR)
    sent = reply(client, project, ticket["id"], "Anyone there?")
    drain(worker)
    listed = messages(client, project, ticket["id"])
    failed = next(m for m in listed if m["id"] == sent["id"])
    assert failed["delivery_status"] == "failed" and "ConversationNotFound" in failed["delivery_error"]
    assert listed[-1]["author_type"] == "system" and teams.activities == []


def test_replies_are_paced_at_the_bot_frameworks_per_thread_rate() -> None:
    assert CHANNELS["teams"].rate_per_second == RATE_LIMIT_PER_THREAD_PER_SECOND == 60 / 30
