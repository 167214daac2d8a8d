"""Replies through chat.postMessage against the fake Slack, and how each vendor failure is classified."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from channels.base import Attachment, DeliveryResult, DeliveryStatus, OutboundReply
from channels.slack import RATE_LIMIT_PER_CHANNEL_PER_SECOND, SlackAdapter, rate_limit_key
from tests.fakes.http import Reply
from tests.fakes.slack_api import FakeSlack
from tests.slack.conftest import CLIENT_TIMEOUT, MakeAdapter

TEAM = "T00FAKE00AA"
CHANNEL = "C00FAKECHAN1"
ROOT_TS = "1767000000.000100"


@pytest.fixture
def thread(people: FakeSlack) -> dict[str, str]:
    people.add_message(CHANNEL, "my export is stuck", user="U00FAKEUSER1", ts=ROOT_TS)
    return {"slack_team_id": TEAM, "slack_channel_id": CHANNEL, "slack_thread_ts": ROOT_TS}


def reply_to(thread: dict[str, str], delivery_id: str = "dlv-1", **fields: Any) -> OutboundReply:
    values: dict[str, Any] = {
        "delivery_id": delivery_id,
        "ticket_id": "tkt-1",
        "ticket_number": 7,
        "text": "Fixed in **v2** & rolled out",
        "thread": thread,
        "author_name": "Ada (Support)",
        **fields,
    }
    return OutboundReply(**values)


def test_a_reply_is_posted_in_the_thread_under_the_agents_name_with_the_delivery_marker(
    adapter: SlackAdapter, people: FakeSlack, thread: dict[str, str]
) -> None:
    result = adapter.deliver(reply_to(thread))
    [post] = people.posts
    assert result == DeliveryResult.delivered(post["ts"])
    assert post == {
        "channel": CHANNEL,
        "thread_ts": ROOT_TS,
        "text": "Fixed in *v2* &amp; rolled out",
        "username": "Ada (Support)",
        "metadata": {"event_type": "ticketwire_delivery", "event_payload": {"delivery_id": "dlv-1"}},
        "ts": post["ts"],
    }


def test_a_replys_files_are_posted_as_links_after_its_text(
    adapter: SlackAdapter, people: FakeSlack, thread: dict[str, str]
) -> None:
    files = (
        Attachment(filename="log <1>.txt", url="https://tw.example/a/m1/0/t/log.txt"),
        Attachment(filename="no link.png"),  # nothing to link to: left out, not a broken link
        Attachment(filename="a|b.pdf", url="https://tw.example/a/m1/2/t/a.pdf"),
    )
    adapter.deliver(reply_to(thread, attachments=files))
    [post] = people.posts
    assert post["text"] == (
        "Fixed in *v2* &amp; rolled out\n\n"
        "<https://tw.example/a/m1/0/t/log.txt|log &lt;1&gt;.txt>\n<https://tw.example/a/m1/2/t/a.pdf|a/b.pdf>"
    )


def test_an_edited_reply_keeps_its_file_links(adapter: SlackAdapter, people: FakeSlack, thread: dict[str, str]) -> None:
    files = (Attachment(filename="log.txt", url="https://tw.example/a/m1/0/t/log.txt"),)
    posted = adapter.deliver(reply_to(thread, attachments=files))
    assert posted.external_id is not None
    adapter.edit_delivered(reply_to(thread, text="Fixed in v3", attachments=files), posted.external_id)
    assert people.updates[-1]["text"] == "Fixed in v3\n\n<https://tw.example/a/m1/0/t/log.txt|log.txt>"


def test_a_reply_without_an_author_name_posts_under_the_apps_name(
    adapter: SlackAdapter, people: FakeSlack, thread: dict[str, str]
) -> None:
    adapter.deliver(reply_to(thread, author_name=None))
    assert "username" not in people.posts[0]


def test_rate_limiting_is_retryable_after_slacks_retry_after(
    adapter: SlackAdapter, people: FakeSlack, thread: dict[str, str]
) -> None:
    people.fail_next_with_rate_limit(retry_after=42, method="chat.postMessage")
    result = adapter.deliver(reply_to(thread))
    assert (result.status, result.retry_after, result.error_code) == (
        DeliveryStatus.RETRYABLE,
        42.0,
        "ratelimited",
    )
    # No retry inside the client: the pipeline owns retries.
    assert len(people.calls_of("chat.postMessage")) == 1
    assert people.posts == []


def test_ratelimited_in_an_ok_false_answer_is_retryable_too(
    adapter: SlackAdapter, people: FakeSlack, thread: dict[str, str]
) -> None:
    people.fail_next_with_error("ratelimited")
    result = adapter.deliver(reply_to(thread))
    assert (result.status, result.error_code) == (DeliveryStatus.RETRYABLE, "ratelimited")


@pytest.mark.parametrize("status", [500, 502, 503])
def test_a_server_error_is_retryable(
    adapter: SlackAdapter, people: FakeSlack, thread: dict[str, str], status: int
) -> None:
    people.fail_next_with_server_error(status=status)
    result = adapter.deliver(reply_to(thread))
    assert (result.status, result.error_code) == (DeliveryStatus.RETRYABLE, f"http_{status}")
    assert len(people.calls_of("chat.postMessage")) == 1


def test_a_timeout_is_retryable(adapter: SlackAdapter, people: FakeSlack, thread: dict[str, str]) -> None:
    people.fail_next_with_timeout(delay=CLIENT_TIMEOUT * 3)
    result = adapter.deliver(reply_to(thread))
    assert (result.status, result.error_code) == (DeliveryStatus.RETRYABLE, "timeout")


def test_a_refused_connection_is_retryable(make_adapter: MakeAdapter, thread: dict[str, str]) -> None:
    with socket.socket() as sock:  # a port nobody listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    adapter = make_adapter(api_base_url=f"http://127.0.0.1:{port}/api/")
    result = adapter.deliver(reply_to(thread))
    assert (result.status, result.error_code) == (DeliveryStatus.RETRYABLE, "connection_error")


@pytest.mark.parametrize(
    "error",
    [
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "token_revoked",
        "account_inactive",
        "invalid_auth",
    ],
)
def test_a_permanent_slack_error_fails_with_slacks_error_code(
    adapter: SlackAdapter, people: FakeSlack, thread: dict[str, str], error: str
) -> None:
    people.fail_next_with_error(error, method="chat.postMessage")
    result = adapter.deliver(reply_to(thread))
    assert (result.status, result.error_code) == (DeliveryStatus.FAILED, error)
    assert result.error_detail == f"chat.postMessage: {error}"


def test_a_wrong_bot_token_fails_with_invalid_auth(make_adapter: MakeAdapter, thread: dict[str, str]) -> None:
    result = make_adapter(bot_token="xoxb-revoked").deliver(reply_to(thread))
    assert (result.status, result.error_code) == (DeliveryStatus.FAILED, "invalid_auth")


def test_a_reply_longer_than_slack_accepts_fails_with_msg_too_long(
    adapter: SlackAdapter, thread: dict[str, str]
) -> None:
    result = adapter.deliver(reply_to(thread, text="x" * 40_001))
    assert (result.status, result.error_code) == (DeliveryStatus.FAILED, "msg_too_long")


def test_a_missing_scope_names_the_scope_to_add(
    adapter: SlackAdapter, people: FakeSlack, thread: dict[str, str]
) -> None:
    people.fail_next(
        Reply(200, {"ok": False, "error": "missing_scope", "needed": "chat:write", "provided": "users:read"})
    )
    result = adapter.deliver(reply_to(thread))
    assert (result.status, result.error_code) == (DeliveryStatus.FAILED, "missing_scope")
    assert result.error_detail == "chat.postMessage: missing_scope (needed scope: chat:write)"


def test_a_ticket_without_slack_thread_coordinates_fails_without_calling_slack(
    adapter: SlackAdapter, people: FakeSlack
) -> None:
    result = adapter.deliver(reply_to({"slack_team_id": TEAM}))
    assert (result.status, result.error_code) == (DeliveryStatus.FAILED, "invalid_thread")
    assert people.calls_of("chat.postMessage") == []


# -- find_delivered --------------------------------------------------------------------


def test_find_delivered_finds_the_post_carrying_the_delivery_marker(
    adapter: SlackAdapter, people: FakeSlack, thread: dict[str, str]
) -> None:
    adapter.deliver(reply_to(thread, delivery_id="dlv-other"))
    delivered = adapter.deliver(reply_to(thread, delivery_id="dlv-1"))
    assert adapter.find_delivered(reply_to(thread, delivery_id="dlv-1")) == delivered
    [lookup] = people.calls_of("conversations.replies")
    assert lookup.form()["include_all_metadata"] == "1"


def test_find_delivered_is_none_when_the_delivery_never_landed(
    adapter: SlackAdapter, people: FakeSlack, thread: dict[str, str]
) -> None:
    adapter.deliver(reply_to(thread, delivery_id="dlv-other"))
    people.add_message(CHANNEL, "thanks!", user="U00FAKEUSER1", thread_ts=ROOT_TS)
    assert adapter.find_delivered(reply_to(thread, delivery_id="dlv-1")) is None


def test_a_post_whose_answer_timed_out_is_found_instead_of_posted_twice(
    adapter: SlackAdapter, people: FakeSlack, thread: dict[str, str]
) -> None:
    people.fail_next_with_timeout(delay=CLIENT_TIMEOUT * 3, method="chat.postMessage", after_processing=True)
    reply = reply_to(thread)
    assert adapter.deliver(reply).status == DeliveryStatus.RETRYABLE
    assert adapter.find_delivered(reply) == DeliveryResult.delivered(people.posts[0]["ts"])


def test_find_delivered_follows_the_cursor_through_a_long_thread(
    adapter: SlackAdapter, people: FakeSlack, thread: dict[str, str]
) -> None:
    for _ in range(250):
        people.add_message(CHANNEL, "chatter", user="U00FAKEUSER1", thread_ts=ROOT_TS)
    delivered = adapter.deliver(reply_to(thread))
    assert adapter.find_delivered(reply_to(thread)) == delivered
    assert len(people.calls_of("conversations.replies")) == 2


def test_find_delivered_reports_an_unreadable_thread_instead_of_saying_absent(
    adapter: SlackAdapter, people: FakeSlack, thread: dict[str, str]
) -> None:
    people.fail_next_with_server_error(method="conversations.replies")
    assert adapter.find_delivered(reply_to(thread)) == DeliveryResult(
        DeliveryStatus.RETRYABLE,
        error_code="http_500",
        error_detail="conversations.replies: HTTP 500 from Slack",
    )
    gone = {**thread, "slack_channel_id": "C0DELETED"}
    result = adapter.find_delivered(reply_to(gone))
    assert result is not None and (result.status, result.error_code) == (
        DeliveryStatus.FAILED,
        "channel_not_found",
    )


# -- edits and pacing ---------------------------------------------------------------------


def test_edit_message_replaces_the_text_of_our_post(
    adapter: SlackAdapter, people: FakeSlack, thread: dict[str, str]
) -> None:
    posted = adapter.deliver(reply_to(thread))
    assert posted.external_id is not None
    result = adapter.edit_message(CHANNEL, posted.external_id, "Fixed in v3 <soon>")
    assert result == DeliveryResult.delivered(posted.external_id)
    assert people.updates == [
        {"channel": CHANNEL, "ts": posted.external_id, "text": "Fixed in v3 &lt;soon&gt;"}
    ]


def test_edit_message_of_an_unknown_message_fails(adapter: SlackAdapter, thread: dict[str, str]) -> None:
    result = adapter.edit_message(CHANNEL, "1.000001", "nope")
    assert (result.status, result.error_code) == (DeliveryStatus.FAILED, "message_not_found")


def test_edit_delivered_updates_the_posted_reply_in_its_channel_with_the_new_text(
    adapter: SlackAdapter, people: FakeSlack, thread: dict[str, str]
) -> None:
    posted = adapter.deliver(reply_to(thread))
    assert posted.external_id is not None
    edited = reply_to(thread, text="Fixed in **v3**")
    result = adapter.edit_delivered(edited, posted.external_id)
    assert result == DeliveryResult.delivered(posted.external_id)
    assert people.updates == [{"channel": CHANNEL, "ts": posted.external_id, "text": "Fixed in *v3*"}]


def test_edit_delivered_is_retryable_when_slack_rate_limits_chat_update(
    adapter: SlackAdapter, people: FakeSlack, thread: dict[str, str]
) -> None:
    posted = adapter.deliver(reply_to(thread))
    assert posted.external_id is not None
    people.fail_next_with_rate_limit(retry_after=3, method="chat.update")
    result = adapter.edit_delivered(reply_to(thread, text="again"), posted.external_id)
    assert (result.status, result.retry_after) == (DeliveryStatus.RETRYABLE, 3.0)
    assert people.updates == []


def test_edit_delivered_of_a_ticket_without_a_slack_thread_fails_without_calling_slack(
    adapter: SlackAdapter, people: FakeSlack
) -> None:
    result = adapter.edit_delivered(reply_to({}), "1767000000.000200")
    assert (result.status, result.error_code) == (DeliveryStatus.FAILED, "invalid_thread")
    assert people.calls_of("chat.update") == []


def test_replies_are_paced_per_workspace_channel_at_one_per_second(
    adapter: SlackAdapter, thread: dict[str, str]
) -> None:
    assert RATE_LIMIT_PER_CHANNEL_PER_SECOND == 1.0
    assert rate_limit_key(reply_to(thread)) == f"slack:{TEAM}:{CHANNEL}"
    # The delivery worker asks the adapter (workers/outbound.py `_pacing_key`).
    assert adapter.rate_limit_key(reply_to(thread, delivery_id="dlv-2")) == f"slack:{TEAM}:{CHANNEL}"
