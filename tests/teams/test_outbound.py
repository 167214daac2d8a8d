"""Replies through the Bot Connector fake: where they go, what they carry, how failures map."""

from __future__ import annotations

from email.utils import formatdate
from typing import Any

import pytest

from channels.base import Attachment, ChannelAdapter, DeliveryStatus, MemoryCache, OutboundReply
from channels.errors import ChannelNotConfiguredError
from channels.registry import CHANNELS
from channels.teams import TeamsAdapter, TeamsConfig
from channels.teams.client import join_url, parse_retry_after
from channels.teams.outbound import (
    GLOBAL_REQUESTS_PER_SECOND_PER_TENANT,
    PACING_WINDOWS,
    RATE_LIMIT_PER_THREAD_PER_SECOND,
    SEND_RATE_LIMITS,
    TENANT_PACING_WINDOWS,
    RateWindow,
)
from tests.fakes.http import Reply
from tests.fakes.teams_api import APP_ID, TENANT_ID, FakeTeams
from tests.teams.conftest import NOW, FakeClock

GENERAL = "19:097e6717fd7245bdbeba6baa13840db8@thread.skype"
THREAD = f"{GENERAL};messageid=1571540169848"
ENCODED_THREAD = "19%3A097e6717fd7245bdbeba6baa13840db8%40thread.skype%3Bmessageid%3D1571540169848"
CONNECTOR = r"/amer/v3/conversations/"


def thread_fields(teams: FakeTeams, **overrides: Any) -> dict[str, Any]:
    fields = {
        "teams_service_url": teams.service_url,
        "teams_conversation_id": THREAD,
        "teams_channel_id": GENERAL,
        "teams_team_id": GENERAL,
        "teams_tenant_id": TENANT_ID,
        "teams_root_activity_id": "1571540169848",
    }
    fields.update(overrides)
    return fields


def a_reply(teams: FakeTeams, delivery_id: str = "dlv-1", **thread: Any) -> OutboundReply:
    return OutboundReply(
        delivery_id=delivery_id,
        ticket_id="t-1",
        ticket_number=7,
        text="We are on it.",
        thread=thread_fields(teams, **thread),
        author_name="Ada (support)",
    )


# -- success ------------------------------------------------------------------------------------


def test_a_reply_is_posted_to_the_thread_root_with_a_bot_connector_token(teams, adapter):
    result = adapter.deliver(a_reply(teams))
    [posted] = teams.activities
    assert result.status == DeliveryStatus.DELIVERED
    assert result.external_id == posted.id
    assert posted.raw_path == f"/amer/v3/conversations/{ENCODED_THREAD}/activities/1571540169848"
    assert posted.activity == {
        "type": "message",
        "text": "We are on it.",
        "textFormat": "markdown",
        "from": {"id": f"28:{APP_ID}"},
        "conversation": {"id": THREAD},
        "channelData": {"ticketwire": {"deliveryId": "dlv-1"}},
        "replyToId": "1571540169848",
    }
    assert posted.delivery_id == "dlv-1"
    [token_call] = teams.calls_to("/oauth2/v2.0/token")
    assert token_call.path == "/botframework.com/oauth2/v2.0/token"
    assert token_call.form() == {
        "grant_type": "client_credentials",
        "client_id": APP_ID,
        "client_secret": teams.app_password,
        "scope": "https://api.botframework.com/.default",
    }


@pytest.mark.parametrize("suffix", ["/", ""])
def test_the_service_url_is_joined_with_exactly_one_slash(teams, adapter, suffix):
    service_url = teams.service_url.rstrip("/") + suffix
    assert adapter.deliver(a_reply(teams, teams_service_url=service_url)).status == DeliveryStatus.DELIVERED
    assert teams.activities[0].raw_path.startswith("/amer/v3/conversations/")


@pytest.mark.parametrize(
    ("base", "path", "joined"),
    [
        (
            "https://smba.trafficmanager.net/amer/",
            "v3/conversations",
            "https://smba.trafficmanager.net/amer/v3/conversations",
        ),
        (
            "https://smba.trafficmanager.net/amer",
            "v3/conversations",
            "https://smba.trafficmanager.net/amer/v3/conversations",
        ),
        ("https://smba.trafficmanager.net/amer/t1/", "/v3/x", "https://smba.trafficmanager.net/amer/t1/v3/x"),
        ("https://smba.trafficmanager.net/amer//", "v3/x", "https://smba.trafficmanager.net/amer/v3/x"),
    ],
)
def test_join_url_keeps_the_path_prefix_and_never_doubles_a_slash(base, path, joined):
    assert join_url(base, path) == joined


def test_a_reply_in_a_personal_chat_is_sent_to_the_conversation(teams, adapter):
    result = adapter.deliver(
        a_reply(
            teams, teams_conversation_id="a:1VF4K2uXl", teams_root_activity_id=None, teams_channel_id=None
        )
    )
    [posted] = teams.activities
    assert result.status == DeliveryStatus.DELIVERED
    assert posted.raw_path == "/amer/v3/conversations/a%3A1VF4K2uXl/activities"
    assert "replyToId" not in posted.activity


def test_the_token_is_cached_until_shortly_before_it_expires(teams, adapter, clock):
    adapter.deliver(a_reply(teams, "d1"))
    adapter.deliver(a_reply(teams, "d2"))
    assert len(teams.calls_to("/oauth2/v2.0/token")) == 1
    clock.advance(3599 - 299)
    adapter.deliver(a_reply(teams, "d3"))
    assert len(teams.calls_to("/oauth2/v2.0/token")) == 2
    assert len(teams.activities) == 3


def test_attachment_links_are_appended_to_the_text(teams, adapter):
    reply = a_reply(teams)
    reply = OutboundReply(
        **{
            **reply.__dict__,
            "attachments": (Attachment("log.txt", url="https://files.example/log.txt"), Attachment("x.bin")),
        }
    )
    adapter.deliver(reply)
    assert teams.activities[0].activity["text"] == "We are on it.\n\n[log.txt](https://files.example/log.txt)"


def test_update_activity_puts_the_new_text_on_the_posted_message(teams, adapter):
    result = adapter.update_activity(a_reply(teams), "1700000000123")
    [put] = teams.activities
    assert (result.status, result.external_id) == (DeliveryStatus.DELIVERED, "1700000000123")
    assert put.method == "PUT"
    assert put.raw_path == f"/amer/v3/conversations/{ENCODED_THREAD}/activities/1700000000123"
    assert put.activity["id"] == "1700000000123"
    assert put.activity["text"] == "We are on it."


def test_edit_delivered_puts_the_edited_reply_on_the_activity_it_posted(teams, adapter):
    posted = adapter.deliver(a_reply(teams))
    edited = OutboundReply(**{**a_reply(teams).__dict__, "text": "Fixed, **really**."})
    result = adapter.edit_delivered(edited, posted.external_id)
    post, put = teams.activities
    assert (result.status, result.external_id) == (DeliveryStatus.DELIVERED, post.id)
    assert put.method == "PUT"
    assert put.raw_path == f"/amer/v3/conversations/{ENCODED_THREAD}/activities/{post.id}"
    assert (put.activity["id"], put.activity["text"]) == (post.id, "Fixed, **really**.")


def test_edit_delivered_is_retryable_when_the_bot_connector_answers_429(teams, adapter):
    teams.fail_next_rate_limited("4", path=CONNECTOR)
    result = adapter.edit_delivered(a_reply(teams), "1700000000123")
    assert (result.status, result.error_code, result.retry_after) == (DeliveryStatus.RETRYABLE, "rate_limited", 4.0)
    assert teams.activities == []


def test_edit_delivered_of_an_activity_the_bot_connector_does_not_know_fails(teams, adapter):
    teams.server.fail_next(Reply(404, {"error": {"code": "NotFound", "message": "Activity not found"}}),
                           path=CONNECTOR)
    result = adapter.edit_delivered(a_reply(teams), "1700000000123")
    assert (result.status, result.error_code) == (DeliveryStatus.FAILED, "not_found")


# -- failures -----------------------------------------------------------------------------------


def test_a_429_is_retryable_after_the_retry_after_seconds(teams, adapter):
    teams.fail_next_rate_limited("7", path=CONNECTOR)
    result = adapter.deliver(a_reply(teams))
    assert (result.status, result.error_code, result.retry_after) == (
        DeliveryStatus.RETRYABLE,
        "rate_limited",
        7.0,
    )
    assert "TooManyRequests" in (result.error_detail or "")


def test_a_retry_after_date_is_turned_into_seconds():
    assert parse_retry_after(formatdate(NOW + 30, usegmt=True), NOW) == 30.0
    assert parse_retry_after("1.5", NOW) == 1.5
    assert parse_retry_after("soon", NOW) is None
    assert parse_retry_after(None, NOW) is None


@pytest.mark.parametrize("status", [500, 502, 503, 504, 412])
def test_server_errors_and_precondition_failures_are_retryable(teams, adapter, status):
    teams.fail_next_server_error(status, path=CONNECTOR)
    result = adapter.deliver(a_reply(teams))
    assert (result.status, result.error_code) == (DeliveryStatus.RETRYABLE, f"http_{status}")


def test_a_timeout_is_retryable(teams, adapter):
    teams.fail_next_timeout(1.0, path=CONNECTOR)
    result = adapter.deliver(a_reply(teams))
    assert (result.status, result.error_code) == (DeliveryStatus.RETRYABLE, "timeout")


def test_a_refused_connection_is_retryable(teams, adapter):
    result = adapter.deliver(a_reply(teams, teams_service_url="http://127.0.0.1:9/amer/"))
    assert (result.status, result.error_code) == (DeliveryStatus.RETRYABLE, "connection_error")


@pytest.mark.parametrize(
    ("status", "code"), [(401, "unauthorized"), (403, "forbidden"), (404, "not_found"), (400, "http_400")]
)
def test_permanent_errors_fail_the_delivery(teams, adapter, status, code):
    if status == 401:
        teams.fail_next_unauthorized(path=CONNECTOR)
    else:
        body = {
            "error": {"code": "BotNotInConversationRoster", "message": "The bot is not part of the roster."}
        }
        teams.server.fail_next(Reply(status, body), path=CONNECTOR)
    result = adapter.deliver(a_reply(teams))
    assert (result.status, result.error_code) == (DeliveryStatus.FAILED, code)


def test_a_rejected_app_password_fails_the_delivery(teams, clock):
    adapter = TeamsAdapter(teams.config(app_password="wrong"), clock=clock)
    result = adapter.deliver(a_reply(teams))
    assert (result.status, result.error_code) == (DeliveryStatus.FAILED, "token_rejected")
    assert "AADSTS7000215" in (result.error_detail or "")
    assert "Trace ID" not in (result.error_detail or "")
    assert teams.activities == []


def test_a_token_endpoint_outage_is_retryable(teams, adapter):
    teams.fail_next_server_error(503, path="/oauth2/")
    result = adapter.deliver(a_reply(teams))
    assert (result.status, result.error_code) == (DeliveryStatus.RETRYABLE, "http_503")


def test_a_ticket_without_teams_coordinates_fails_at_once(teams, adapter):
    result = adapter.deliver(a_reply(teams, teams_service_url=None))
    assert (result.status, result.error_code) == (DeliveryStatus.FAILED, "missing_thread_fields")


def test_the_bot_token_is_never_sent_over_plain_http_to_a_remote_host(teams, adapter):
    result = adapter.deliver(a_reply(teams, teams_service_url="http://smba.example.net/amer/"))
    assert (result.status, result.error_code) == (DeliveryStatus.FAILED, "insecure_service_url")
    assert teams.calls_to("/oauth2/") == []


# -- reconciliation and pacing ----------------------------------------------------------------


def test_find_delivered_finds_a_delivery_this_deployment_posted(teams, clock):
    cache = MemoryCache(clock=clock)
    first = TeamsAdapter(teams.config(), cache=cache, clock=clock)
    reply = a_reply(teams, "dlv-42")
    delivered = first.deliver(reply)
    # A new worker process sharing the cache (Redis in production) sees the marker.
    second = TeamsAdapter(teams.config(), cache=cache, clock=clock)
    assert second.find_delivered(reply) == delivered
    assert delivered.status == DeliveryStatus.DELIVERED


def test_without_a_marker_an_unknown_outcome_fails_visibly_instead_of_posting_again(teams, adapter):
    # Teams cannot be asked what was posted: no marker is not "not posted".
    result = adapter.find_delivered(a_reply(teams, "dlv-43"))
    assert (result.status, result.error_code) == (DeliveryStatus.FAILED, "outcome_unknown")
    assert "could not check" in result.error_detail and "Retry" in result.error_detail
    assert teams.activities == []


def test_a_post_held_open_past_the_timeout_is_stored_and_reported_as_a_timeout(teams, adapter):
    teams.hold_next_post(1.0)
    reply = a_reply(teams, "dlv-44")
    result = adapter.deliver(reply)
    assert (result.status, result.error_code) == (DeliveryStatus.RETRYABLE, "timeout")
    [posted] = teams.activities
    assert posted.delivery_id == "dlv-44"
    assert adapter.find_delivered(reply).error_code == "outcome_unknown"


def test_a_failed_delivery_leaves_no_marker(teams, adapter):
    teams.fail_next_server_error(500, path=CONNECTOR)
    reply = a_reply(teams)
    assert adapter.deliver(reply).error_code == "http_500"
    assert adapter.find_delivered(reply).status == DeliveryStatus.FAILED


def test_a_token_endpoint_timeout_is_a_known_non_delivery(teams, adapter):
    teams.fail_next_timeout(1.0, path="/oauth2/")
    result = adapter.deliver(a_reply(teams))
    # Not "timeout": the pipeline reconciles only unknown outcomes, and nothing was posted.
    assert (result.status, result.error_code) == (DeliveryStatus.RETRYABLE, "token_timeout")
    assert teams.calls_to(CONNECTOR) == []


def test_replies_in_one_channel_share_a_rate_limit_bucket_and_other_channels_do_not(teams, adapter):
    first = a_reply(teams)
    other_thread = a_reply(teams, teams_conversation_id=f"{GENERAL};messageid=1571540999999")
    other_channel = a_reply(teams, teams_conversation_id="19:other@thread.skype;messageid=1")
    assert (
        adapter.rate_limit_key(first) == adapter.rate_limit_key(other_thread) == f"teams:{APP_ID}:{GENERAL}"
    )
    assert adapter.rate_limit_key(other_channel) != adapter.rate_limit_key(first)


def test_the_pacing_follows_microsofts_per_bot_per_thread_limits():
    assert SEND_RATE_LIMITS == (
        RateWindow(1, 7),
        RateWindow(2, 8),
        RateWindow(30, 60),
        RateWindow(3600, 1800),
    )
    assert TeamsAdapter.rate_limits == SEND_RATE_LIMITS
    # The pipeline paces with the windows up to 30 s, all at once, shared by every worker.
    assert CHANNELS["teams"].rate_windows == PACING_WINDOWS == SEND_RATE_LIMITS[:3]
    # Their steady rate: the 30 s window binds.
    assert CHANNELS["teams"].rate_per_second == RATE_LIMIT_PER_THREAD_PER_SECOND == 2.0


def test_every_reply_of_a_tenant_also_counts_in_the_apps_tenant_wide_bucket(teams, adapter):
    first = a_reply(teams)
    other_channel = a_reply(teams, teams_conversation_id="19:other@thread.skype;messageid=1")
    other_tenant = a_reply(teams, teams_tenant_id="another-tenant")
    [(key, windows)] = adapter.shared_rate_limits(first)
    assert windows == TENANT_PACING_WINDOWS == (RateWindow(1, GLOBAL_REQUESTS_PER_SECOND_PER_TENANT),)
    assert key == f"teams-tenant:{APP_ID}:{TENANT_ID}" == adapter.shared_rate_limits(other_channel)[0][0]
    assert adapter.shared_rate_limits(other_tenant)[0][0] != key


def test_the_fake_bot_connector_answers_429_past_seven_posts_a_second_in_one_thread(teams, adapter):
    teams.clock = lambda: 1000.0  # all eight posts in one instant, however slow the machine
    results = [adapter.deliver(a_reply(teams, f"dlv-{n}")) for n in range(8)]
    assert [r.status for r in results[:7]] == [DeliveryStatus.DELIVERED] * 7
    assert (results[7].status, results[7].error_code) == (DeliveryStatus.RETRYABLE, "rate_limited")
    assert results[7].retry_after == 1.0
    assert (teams.rate_limited, len(teams.activities)) == (1, 7)
    # Another channel is another thread: its own windows.
    other = adapter.deliver(a_reply(teams, "dlv-x", teams_conversation_id="19:other@thread.skype;messageid=1"))
    assert other.status == DeliveryStatus.DELIVERED


# -- configuration ------------------------------------------------------------------------------


def test_settings_build_a_config_with_defaults_and_ignore_extra_keys():
    config = TeamsConfig.from_settings(
        {"app_id": "a", "app_password": "p", "tenant_id": "t", "channel_ids": "19:a, 19:b", "enabled": True}
    )
    assert config == TeamsConfig(app_id="a", app_password="p", tenant_id="t", channel_ids=("19:a", "19:b"))
    assert config.openid_metadata_url == "https://login.botframework.com/v1/.well-known/openidconfiguration"
    assert config.token_url == "https://login.microsoftonline.com/botframework.com/oauth2/v2.0/token"
    assert config.graph_base_url == "https://graph.microsoft.com/v1.0"
    assert config.bot_account_id == "28:a"
    assert (
        TeamsConfig.from_settings(
            {**config.__dict__, "channel_ids": ["19:a"], "bot_id": "28:x"}
        ).bot_account_id
        == "28:x"
    )


def test_settings_without_app_credentials_are_not_a_configured_integration():
    with pytest.raises(ChannelNotConfiguredError):
        TeamsConfig.from_settings({"app_id": "a", "tenant_id": "t"})


def test_the_adapter_meets_the_channel_contract(teams):
    adapter = TeamsAdapter(teams.config(), clock=FakeClock())
    assert isinstance(adapter, ChannelAdapter)
    assert adapter.name == "teams"
    assert adapter.handshake(None) is None  # type: ignore[arg-type]
