"""The fake Slack answers slack-sdk's WebClient the way Slack does (what the adapter tests build on)."""

from __future__ import annotations

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from tests.fakes.slack_api import FakeSlack


@pytest.fixture
def web(fake_slack: FakeSlack) -> WebClient:
    return WebClient(token=fake_slack.token, base_url=fake_slack.api_url, retry_handlers=[])


def test_auth_test_names_the_bot_user_and_team(web: WebClient, fake_slack: FakeSlack) -> None:
    data = web.auth_test().data
    assert isinstance(data, dict)
    assert (data["ok"], data["user_id"], data["bot_id"], data["team_id"]) == (
        True,
        fake_slack.bot_user_id,
        fake_slack.bot_id,
        fake_slack.team_id,
    )


def test_a_wrong_token_is_refused_with_invalid_auth(fake_slack: FakeSlack) -> None:
    with pytest.raises(SlackApiError) as caught:
        WebClient(token="xoxb-wrong", base_url=fake_slack.api_url).auth_test()
    assert caught.value.response["error"] == "invalid_auth"


def test_history_lists_top_level_messages_newest_first_within_the_time_range(
    web: WebClient, fake_slack: FakeSlack
) -> None:
    for ts in ("100.000001", "100.000002", "100.000003"):
        fake_slack.add_message("C1", f"m{ts[-1]}", user="U1", ts=ts)
    fake_slack.add_message("C1", "a reply", user="U1", ts="100.000004", thread_ts="100.000001")
    all_top = web.conversations_history(channel="C1")["messages"]
    assert [m["text"] for m in all_top] == ["m3", "m2", "m1"]
    one = web.conversations_history(channel="C1", latest="100.000002", inclusive=True, limit=1)["messages"]
    assert [m["text"] for m in one] == ["m2"]


def test_replies_put_the_parent_first_and_count_the_replies(web: WebClient, fake_slack: FakeSlack) -> None:
    fake_slack.add_message("C1", "root", user="U1", ts="100.000001")
    fake_slack.add_message("C1", "r1", user="U2", ts="100.000002", thread_ts="100.000001")
    fake_slack.add_message("C1", "r2", user="U1", ts="100.000003", thread_ts="100.000001")
    messages = web.conversations_replies(channel="C1", ts="100.000003", oldest="100.000003", inclusive=True)[
        "messages"
    ]
    assert [m["text"] for m in messages] == ["root", "r2"]
    assert messages[0]["reply_count"] == 2


def test_metadata_is_returned_only_when_asked_for(web: WebClient, fake_slack: FakeSlack) -> None:
    fake_slack.add_message("C1", "root", user="U1", ts="100.000001")
    metadata = {"event_type": "x", "event_payload": {"k": "v"}}
    posted = web.chat_postMessage(channel="C1", thread_ts="100.000001", text="hi", metadata=metadata)
    plain = web.conversations_replies(channel="C1", ts="100.000001")["messages"]
    full = web.conversations_replies(channel="C1", ts="100.000001", include_all_metadata=True)["messages"]
    assert "metadata" not in plain[1]
    assert full[1]["metadata"] == metadata
    assert full[1]["ts"] == posted["ts"]


def test_an_unknown_method_is_answered_like_slack(web: WebClient) -> None:
    with pytest.raises(SlackApiError) as caught:
        web.api_call("chat.teleport")
    assert caught.value.response["error"] == "unknown_method"


def test_reset_forgets_the_workspace_and_pending_failures(web: WebClient, fake_slack: FakeSlack) -> None:
    fake_slack.add_user("U1", real_name="Dana")
    fake_slack.fail_next_with_error("channel_not_found")
    fake_slack.reset()
    assert fake_slack.users == {} and fake_slack.calls == []
    assert web.auth_test()["ok"] is True
