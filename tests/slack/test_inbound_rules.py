"""The inbound rules beyond the fixtures: triggers, ignored senders and subtypes, look-ups and caching.

Payloads built here follow Slack's documented event shapes (Events API docs, one page per event
type and message subtype); where a fixture exists it is the starting point.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from channels.base import Author, InboundMessage, MemoryCache, MessageKind
from channels.errors import MalformedPayloadError, UnsupportedEventError
from channels.slack import SlackAdapter
from channels.slack.inbound import IGNORED_EVENTS, SlackLookupError
from tests.fakes.slack_api import FakeSlack, event_envelope
from tests.slack.conftest import MakeAdapter, fixture_json, raw_event

TEAM = "T00FAKE00AA"
CHANNEL = "C00FAKECHAN1"
FOX = Author(
    external_id="U00FAKEUSER1", name="fox", email="fox@example.com", distinct_id="slack:U00FAKEUSER1"
)


def message(text: str = "hello", *, ts: str = "1767000000.000100", **fields: Any) -> dict[str, Any]:
    return {
        "type": "message",
        "user": "U00FAKEUSER1",
        "text": text,
        "ts": ts,
        "channel": CHANNEL,
        "event_ts": ts,
        "channel_type": "channel",
        **fields,
    }


def parse(adapter: SlackAdapter, event: dict[str, Any]) -> list[InboundMessage]:
    return adapter.parse(raw_event(event_envelope(event, team_id=TEAM)))


# -- triggers -----------------------------------------------------------------------------


def test_a_top_level_message_outside_the_support_channels_is_ignored(make_adapter: MakeAdapter) -> None:
    adapter = make_adapter(channel_ids=("C0OTHER",))
    assert adapter.parse(raw_event(fixture_json("message__channel_plain_text.json"))) == []


def test_a_thread_reply_joins_its_ticket_in_any_channel(make_adapter: MakeAdapter) -> None:
    adapter = make_adapter(channel_ids=())
    [reply] = parse(adapter, message("more", ts="1767000000.000200", thread_ts="1767000000.000100"))
    assert reply.creates_ticket is False
    assert reply.thread_key == f"{TEAM}:{CHANNEL}:1767000000.000100"


def test_a_message_whose_thread_ts_is_its_own_ts_is_a_top_level_message(adapter: SlackAdapter) -> None:
    [root] = parse(adapter, message(thread_ts="1767000000.000100"))
    assert root.creates_ticket is True
    assert root.channel_detail == "slack_channel_message"


def test_message_and_app_mention_of_the_same_post_share_external_id_and_thread_key(
    adapter: SlackAdapter,
) -> None:
    # Slack sends both events when a top-level message in a support channel mentions the bot.
    as_message = fixture_json("bundle__channel_message_and_thread_reply.json", "mention")
    as_mention = copy.deepcopy(as_message)
    as_mention["event"]["type"] = "app_mention"
    [from_message] = adapter.parse(raw_event(as_message))
    [from_mention] = adapter.parse(raw_event(as_mention))
    assert from_message.external_id == from_mention.external_id == "C00FAKECHAN1:1767224888.280449"
    assert from_message.thread_key == from_mention.thread_key
    assert (from_message.channel_detail, from_mention.channel_detail) == (
        "slack_channel_message",
        "slack_bot_mention",
    )


def test_an_app_mention_opens_a_ticket_outside_the_support_channels_too(make_adapter: MakeAdapter) -> None:
    adapter = make_adapter(channel_ids=())
    [ticket] = adapter.parse(raw_event(fixture_json("bundle__app_mention_and_im_messages.json", "mention")))
    assert ticket.creates_ticket is True


def test_an_app_mention_inside_a_thread_opens_the_ticket_of_the_threads_root(adapter: SlackAdapter) -> None:
    event = message(
        "<@U00FAKEBOT01> please track this", ts="1767000000.000300", thread_ts="1767000000.000100"
    )
    event["type"] = "app_mention"
    [ticket] = parse(adapter, event)
    assert ticket.creates_ticket is True
    assert ticket.thread_key == f"{TEAM}:{CHANNEL}:1767000000.000100"
    assert ticket.external_id == f"{CHANNEL}:1767000000.000300"


def test_a_thread_broadcast_is_a_reply_in_its_thread(adapter: SlackAdapter) -> None:
    event = message(
        "also to channel", ts="1767000000.000400", thread_ts="1767000000.000100", subtype="thread_broadcast"
    )
    [reply] = parse(adapter, event)
    assert reply.creates_ticket is False
    assert reply.thread_key == f"{TEAM}:{CHANNEL}:1767000000.000100"


# -- reactions --------------------------------------------------------------------------


def ticket_reaction(ts: str, *, reaction: str = "ticket", item_user: str = "U00FAKEUSER1") -> dict[str, Any]:
    # Shape of Slack's reaction_added doc and of the bundle's `.reaction`, with our emoji.
    return {
        "type": "reaction_added",
        "user": "U06NU4E26M9",
        "reaction": reaction,
        "item": {"type": "message", "channel": CHANNEL, "ts": ts},
        "item_user": item_user,
        "event_ts": "1767000100.000100",
    }


def test_the_ticket_emoji_opens_a_ticket_seeded_from_the_reacted_message(
    adapter: SlackAdapter, people: FakeSlack
) -> None:
    people.add_message(
        CHANNEL, "my export is <https://ex.example/job/1|stuck>", user="U00FAKEUSER1", ts="1767000000.000100"
    )
    assert parse(adapter, ticket_reaction("1767000000.000100")) == [
        InboundMessage(
            channel="slack",
            external_id=f"{CHANNEL}:1767000000.000100",
            thread_key=f"{TEAM}:{CHANNEL}:1767000000.000100",
            author=FOX,
            text="my export is [stuck](https://ex.example/job/1)",
            channel_detail="slack_emoji_reaction",
            sent_at=datetime(2025, 12, 29, 9, 20, 0, 100, tzinfo=UTC),
            creates_ticket=True,
            ticket_fields={
                "slack_team_id": TEAM,
                "slack_channel_id": CHANNEL,
                "slack_thread_ts": "1767000000.000100",
            },
            metadata={"slack_reacted_by": "U06NU4E26M9"},
        )
    ]
    [lookup] = people.calls_of("conversations.replies")
    assert lookup.form() == {
        "channel": CHANNEL,
        "ts": "1767000000.000100",
        "oldest": "1767000000.000100",
        "latest": "1767000000.000100",
        "inclusive": "1",
        "limit": "2",
    }


def test_the_ticket_emoji_on_a_thread_reply_opens_the_ticket_of_the_threads_root(
    adapter: SlackAdapter, people: FakeSlack
) -> None:
    people.add_message(CHANNEL, "root", user="U06NU4E26M9", ts="1767000000.000100")
    people.add_message(
        CHANNEL, "the reply", user="U00FAKEUSER1", ts="1767000000.000200", thread_ts="1767000000.000100"
    )
    [ticket] = parse(adapter, ticket_reaction("1767000000.000200"))
    assert (ticket.text, ticket.external_id) == ("the reply", f"{CHANNEL}:1767000000.000200")
    assert ticket.thread_key == f"{TEAM}:{CHANNEL}:1767000000.000100"


def test_a_skin_tone_variant_and_a_colon_wrapped_setting_still_match(
    make_adapter: MakeAdapter, people: FakeSlack
) -> None:
    people.add_message(CHANNEL, "help", user="U00FAKEUSER1", ts="1767000000.000100")
    adapter = make_adapter(ticket_emoji=":raised_hand:")
    assert len(parse(adapter, ticket_reaction("1767000000.000100", reaction="raised_hand::skin-tone-3"))) == 1


def test_the_ticket_emoji_on_one_of_our_own_replies_is_ignored_without_a_look_up(
    make_adapter: MakeAdapter, people: FakeSlack
) -> None:
    adapter = make_adapter(ticket_emoji="+1")
    body = fixture_json("bundle__app_mention_reaction_added_block_actions.json", "reaction")
    assert adapter.parse(raw_event(body)) == []
    assert people.calls_of("conversations.replies") == []


def test_the_ticket_emoji_on_another_bots_message_is_ignored(
    adapter: SlackAdapter, people: FakeSlack
) -> None:
    people.add_message(
        CHANNEL, "deploy done", ts="1767000000.000100", bot_id="B0OTHER", subtype="bot_message"
    )
    assert parse(adapter, ticket_reaction("1767000000.000100", item_user="U0OTHERBOT")) == []


def test_the_ticket_emoji_on_a_message_slack_no_longer_has_is_ignored(
    adapter: SlackAdapter, people: FakeSlack
) -> None:
    people.add_message(CHANNEL, "another message", user="U00FAKEUSER1", ts="1767000000.000900")
    assert parse(adapter, ticket_reaction("1767000000.000100")) == []  # thread_not_found


def test_the_ticket_emoji_while_slack_is_down_asks_to_parse_again_later(
    adapter: SlackAdapter, people: FakeSlack
) -> None:
    people.add_message(CHANNEL, "help", user="U00FAKEUSER1", ts="1767000000.000100")
    people.fail_next_with_server_error(method="conversations.replies")
    with pytest.raises(SlackLookupError):
        parse(adapter, ticket_reaction("1767000000.000100"))


# -- ignored senders and subtypes -------------------------------------------------------


def test_a_message_of_our_own_bot_user_is_ignored(adapter: SlackAdapter) -> None:
    assert parse(adapter, message("echo", user="U00FAKEBOT01")) == []


def test_the_bot_user_id_is_learned_once_with_auth_test_and_cached(
    make_adapter: MakeAdapter, people: FakeSlack
) -> None:
    cache = MemoryCache()
    parse(make_adapter(cache=cache), message("one"))
    parse(make_adapter(cache=cache), message("two", ts="1767000000.000200"))
    assert len(people.calls_of("auth.test")) == 1


def test_a_configured_bot_user_id_needs_no_auth_test(make_adapter: MakeAdapter, people: FakeSlack) -> None:
    adapter = make_adapter(bot_user_id="U0CONFIGURED")
    assert parse(adapter, message("echo", user="U0CONFIGURED")) == []
    assert people.calls_of("auth.test") == []


def test_a_message_with_a_bot_id_is_ignored_even_with_a_user(adapter: SlackAdapter) -> None:
    assert parse(adapter, message("from an app", bot_id="B0123")) == []


@pytest.mark.parametrize(
    "subtype",
    ["channel_join", "channel_leave", "channel_topic", "pinned_item", "me_message", "ekm_access_denied"],
)
def test_other_message_subtypes_are_ignored(adapter: SlackAdapter, subtype: str) -> None:
    assert parse(adapter, message("<@U00FAKEUSER1> has joined the channel", subtype=subtype)) == []


@pytest.mark.parametrize("channel_type", ["im", "mpim"])
def test_messages_in_direct_conversations_are_ignored(adapter: SlackAdapter, channel_type: str) -> None:
    assert parse(adapter, message("psst", channel_type=channel_type, channel="G0MPIM")) == []


def test_an_edit_that_leaves_text_and_files_unchanged_is_ignored(adapter: SlackAdapter) -> None:
    # Slack sends message_changed for link unfurls and reply-count updates too.
    payload = fixture_json("message__message_changed.json")
    payload["event"]["message"]["text"] = payload["event"]["previous_message"]["text"]
    assert adapter.parse(raw_event(payload)) == []


def test_message_deleted_removes_the_message(adapter: SlackAdapter) -> None:
    # No message_deleted fixture exists (fixtures/SOURCES.md, "Gap"); this is the shape of Slack's
    # message_deleted doc, with the previous_message Slack sends along in practice.
    event = {
        "type": "message",
        "subtype": "message_deleted",
        "hidden": True,
        "channel": CHANNEL,
        "ts": "1767000500.000100",
        "deleted_ts": "1767000000.000200",
        "event_ts": "1767000500.000100",
        "channel_type": "channel",
        "previous_message": {
            "type": "message",
            "user": "U00FAKEUSER1",
            "text": "oops",
            "ts": "1767000000.000200",
            "thread_ts": "1767000000.000100",
        },
    }
    assert parse(adapter, event) == [
        InboundMessage(
            channel="slack",
            external_id=f"{CHANNEL}:1767000000.000200",
            thread_key=f"{TEAM}:{CHANNEL}:1767000000.000100",
            author=Author(external_id="U00FAKEUSER1", distinct_id="slack:U00FAKEUSER1"),
            sent_at=datetime(2025, 12, 29, 9, 28, 20, 100, tzinfo=UTC),
            kind=MessageKind.DELETE,
            ticket_fields={
                "slack_team_id": TEAM,
                "slack_channel_id": CHANNEL,
                "slack_thread_ts": "1767000000.000100",
            },
        )
    ]


def test_message_deleted_of_a_bot_message_is_ignored(adapter: SlackAdapter) -> None:
    # Built from Slack's message_deleted doc shape, like the test above.
    event = {
        "type": "message",
        "subtype": "message_deleted",
        "hidden": True,
        "channel": CHANNEL,
        "ts": "1767000500.000100",
        "deleted_ts": "1767000000.000200",
        "previous_message": {
            "type": "message",
            "bot_id": "B00FAKEBOT01",
            "text": "reply",
            "ts": "1767000000.000200",
        },
    }
    assert parse(adapter, event) == []


# -- envelopes and errors ---------------------------------------------------------------


@pytest.mark.parametrize("event_type", sorted(IGNORED_EVENTS))
def test_known_events_without_ticket_content_are_ignored(adapter: SlackAdapter, event_type: str) -> None:
    assert parse(adapter, {"type": event_type, "user": "U00FAKEUSER1", "event_ts": "1767000000.000100"}) == []


def test_an_app_rate_limited_notice_is_ignored(adapter: SlackAdapter) -> None:
    # Events API docs, "Rate limiting": the body Slack sends when it drops events.
    body = {
        "token": "x",
        "type": "app_rate_limited",
        "team_id": TEAM,
        "minute_rate_limited": 1767000000,
        "api_app_id": "A1",
    }
    assert adapter.parse(raw_event(body)) == []


def test_an_unknown_event_type_is_unsupported(adapter: SlackAdapter) -> None:
    with pytest.raises(UnsupportedEventError, match="channel_created"):
        parse(adapter, {"type": "channel_created", "channel": {"id": "C9"}, "event_ts": "1.2"})


def test_an_unknown_payload_type_is_unsupported(adapter: SlackAdapter) -> None:
    with pytest.raises(UnsupportedEventError, match="view_submission"):
        adapter.parse(raw_event({"type": "view_submission", "team": {"id": TEAM}}))


def test_a_body_that_is_not_json_is_malformed(adapter: SlackAdapter) -> None:
    with pytest.raises(MalformedPayloadError):
        adapter.parse(raw_event(b"{not json"))


def test_a_message_event_without_ts_is_malformed(adapter: SlackAdapter) -> None:
    event = message()
    del event["ts"]
    with pytest.raises(MalformedPayloadError, match="ts"):
        parse(adapter, event)


# -- users.info ---------------------------------------------------------------------------


def test_authors_are_looked_up_once_and_then_served_from_the_cache(
    make_adapter: MakeAdapter, people: FakeSlack
) -> None:
    cache = MemoryCache()
    first = parse(make_adapter(cache=cache), message("one"))
    second = parse(make_adapter(cache=cache), message("two", ts="1767000000.000200"))
    assert first[0].author == second[0].author == FOX
    assert [c.form()["user"] for c in people.calls_of("users.info")] == ["U00FAKEUSER1"]


def test_a_cached_author_expires_after_an_hour(make_adapter: MakeAdapter, people: FakeSlack) -> None:
    now = [0.0]
    cache = MemoryCache(clock=lambda: now[0])
    adapter = make_adapter(cache=cache)
    parse(adapter, message("one"))
    now[0] = 3601.0
    parse(adapter, message("two", ts="1767000000.000200"))
    assert len(people.calls_of("users.info")) == 2


def test_an_author_slack_cannot_describe_keeps_only_their_id(adapter: SlackAdapter) -> None:
    [msg] = parse(adapter, message("hi", user="U0UNKNOWN"))
    assert msg.author == Author(external_id="U0UNKNOWN", distinct_id="slack:U0UNKNOWN")


def test_mentions_are_resolved_to_names_with_the_same_cache(adapter: SlackAdapter, people: FakeSlack) -> None:
    [msg] = parse(adapter, message("ping <@U06NU4E26M9> and <@U06NU4E26M9> in <#C123|support> &amp; co"))
    assert msg.text == "ping @Dana Scully and @Dana Scully in #support & co"
    assert sorted(c.form()["user"] for c in people.calls_of("users.info")) == ["U00FAKEUSER1", "U06NU4E26M9"]
