"""Author profiles through msgraph-sdk against the fake Graph: found, cached, and failing softly."""

from __future__ import annotations

import pytest

from channels.teams.client import GRAPH_FAILURE_TTL, GRAPH_USER_TTL, GraphUser
from tests.fakes.teams_api import TENANT_ID
from tests.teams.conftest import fixture_bytes, raw_event

DAVE_AAD = "6b703ce3-6d14-4fe6-b90c-dc5f03657ae4"
MENTION = "message__channel_mention_bot.json"
USERS = r"/v1\.0/users/"


def test_a_users_mail_comes_from_graph_with_a_tenant_token_for_graph(teams, adapter):
    teams.add_user(DAVE_AAD, mail="dave@example.com", upn="dave@contoso.example", name="Dave T.")
    assert adapter.lookup_user(DAVE_AAD) == GraphUser(display_name="Dave T.", email="dave@example.com")
    [call] = teams.calls_to(USERS)
    assert call.path == f"/v1.0/users/{DAVE_AAD}"
    assert set(call.query["$select"].split(",")) == {"displayName", "mail", "userPrincipalName"}
    [token_call] = teams.calls_to("/oauth2/v2.0/token")
    # The Graph token comes from the customer's tenant, not from botframework.com.
    assert token_call.path == f"/{TENANT_ID}/oauth2/v2.0/token"
    assert token_call.form()["scope"] == "https://graph.microsoft.com/.default"


def test_without_a_mail_the_user_principal_name_is_the_email(teams, adapter):
    teams.add_user(DAVE_AAD, mail=None, upn="dave@contoso.example")
    assert adapter.lookup_user(DAVE_AAD) == GraphUser(email="dave@contoso.example")


def test_a_guests_external_principal_name_is_not_an_email(teams, adapter):
    teams.add_user(DAVE_AAD, mail=None, upn="dave_example.com#EXT#@contoso.onmicrosoft.com", name="Dave")
    assert adapter.lookup_user(DAVE_AAD) == GraphUser(display_name="Dave", email=None)


def test_profiles_are_cached_for_an_hour(teams, adapter, clock):
    teams.add_user(DAVE_AAD, mail="dave@example.com")
    for _ in range(3):
        [message] = adapter.parse(raw_event(fixture_bytes(MENTION)))
        assert message.author.email == "dave@example.com"
    assert len(teams.calls_to(USERS)) == 1
    clock.advance(GRAPH_USER_TTL + 1)
    adapter.parse(raw_event(fixture_bytes(MENTION)))
    assert len(teams.calls_to(USERS)) == 2


def test_an_unknown_user_is_remembered_as_unknown(teams, adapter, clock):
    assert adapter.lookup_user(DAVE_AAD) is None
    assert adapter.lookup_user(DAVE_AAD) is None
    assert len(teams.calls_to(USERS)) == 1


@pytest.mark.parametrize("failure", ["server_error", "rate_limited", "unauthorized", "timeout"])
def test_a_graph_failure_keeps_the_name_from_the_activity_and_does_not_fail_the_parse(
    teams, adapter, failure
):
    teams.add_user(DAVE_AAD, mail="dave@example.com")
    if failure == "timeout":
        teams.fail_next_timeout(1.5, path=USERS)
    else:
        getattr(teams, f"fail_next_{failure}")(path=USERS)
    [message] = adapter.parse(raw_event(fixture_bytes(MENTION)))
    assert (message.author.name, message.author.email) == ("Dave Taniguchi", None)
    assert message.author.distinct_id == f"teams:{DAVE_AAD}"
    # The SDK's own retry handler is off: one call, not a retry loop.
    assert len(teams.calls_to(USERS)) == 1


def test_after_a_failure_graph_is_asked_again_a_few_minutes_later(teams, adapter, clock):
    teams.add_user(DAVE_AAD, mail="dave@example.com")
    teams.fail_next_server_error(503, path=USERS)
    assert adapter.lookup_user(DAVE_AAD) is None
    assert adapter.lookup_user(DAVE_AAD) is None
    clock.advance(GRAPH_FAILURE_TTL + 1)
    assert adapter.lookup_user(DAVE_AAD) == GraphUser(email="dave@example.com")
    assert len(teams.calls_to(USERS)) == 2


def test_a_rejected_app_secret_leaves_the_author_without_email(teams, clock):
    from channels.teams import TeamsAdapter

    teams.add_user(DAVE_AAD, mail="dave@example.com")
    adapter = TeamsAdapter(teams.config(app_password="wrong"), clock=clock)
    [message] = adapter.parse(raw_event(fixture_bytes(MENTION)))
    assert message.author.email is None
    assert teams.calls_to(USERS) == []
