"""Golden parses of every Teams fixture, and the thread, edit and ignore rules around them."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from channels.base import Attachment, Author, InboundMessage, MessageKind, RawRequest
from channels.errors import MalformedPayloadError, UnsupportedEventError
from channels.teams import TeamsAdapter
from tests.fakes.teams_api import TENANT_ID, FakeTeams
from tests.teams.conftest import FakeClock, fixture_bytes, fixture_json, raw_event

BUNDLE = "bundle__channel_mention_card_action_message_reaction.json"
DAVE_AAD = "6b703ce3-6d14-4fe6-b90c-dc5f03657ae4"
DAVE_TEAMS_ID = "29:1CFIxRJBLjT_io3iNsDZxMk_4YPWQmr3DZUM1I6ihf5L2ocCDqg9S1vkHK6kRdGfK1P_2LFE2nQqFIvdu-GBOZA"
DAVE = Author(
    external_id=DAVE_AAD, name="Dave Taniguchi", email="dave@example.com", distinct_id=f"teams:{DAVE_AAD}"
)
GENERAL = "19:097e6717fd7245bdbeba6baa13840db8@thread.skype"
SUPPORT = "19:9d3c71104f8c49128368b23a5eaeb86d@thread.skype"
SMBA = "https://smba.trafficmanager.net/amer/"


@pytest.fixture
def teams_with_users(teams: FakeTeams) -> FakeTeams:
    teams.add_user(DAVE_AAD, mail="dave@example.com", upn="dave@contoso.example", name="Dave T.")
    return teams


def build(teams: FakeTeams, clock: FakeClock, **overrides: Any) -> TeamsAdapter:
    return TeamsAdapter(teams.config(**overrides), clock=clock, http_timeout=0.5)


def without_mention(activity: dict[str, Any], text: str) -> dict[str, Any]:
    """The same activity as a plain post: no mention entity, no `<at>` markup."""
    plain = copy.deepcopy(activity)
    plain["text"] = text
    plain["entities"] = [e for e in plain.get("entities", []) if e.get("type") != "mention"]
    plain.pop("attachments", None)
    return plain


def as_reply(activity: dict[str, Any], reply_id: str, text: str) -> dict[str, Any]:
    reply = without_mention(activity, text)
    reply["id"] = reply_id
    return reply


# -- golden parses, one per fixture -----------------------------------------------------------


def test_a_channel_message_mentioning_the_bot_opens_a_ticket_without_the_mention_markup(
    teams_with_users, adapter
):
    [message] = adapter.parse(raw_event(fixture_bytes("message__channel_mention_bot.json")))
    assert message == InboundMessage(
        channel="teams",
        external_id="1571540169848",
        thread_key=f"{GENERAL};messageid=1571540169848",
        author=DAVE,
        text="show members",
        channel_detail="teams_bot_mention",
        sent_at=datetime(2019, 10, 20, 2, 56, 9, 879000, tzinfo=UTC),
        kind=MessageKind.NEW,
        creates_ticket=True,
        ticket_fields={
            "teams_service_url": SMBA,
            "teams_conversation_id": f"{GENERAL};messageid=1571540169848",
            "teams_channel_id": GENERAL,
            "teams_team_id": GENERAL,
            "teams_tenant_id": TENANT_ID,
            "teams_root_activity_id": "1571540169848",
        },
        metadata={
            "teams_activity_type": "message",
            "teams_conversation_type": "channel",
            "teams_from_id": DAVE_TEAMS_ID,
        },
    )


def test_a_mention_with_a_link_in_another_channel_keeps_the_link_and_drops_the_html_copy(
    teams_with_users, adapter
):
    [message] = adapter.parse(raw_event(fixture_bytes("message__channel_mention_bot_with_link.json")))
    assert message.text == "https://foo.com"
    assert message.attachments == ()
    assert message.channel_detail == "teams_bot_mention"
    assert message.creates_ticket is True
    assert message.thread_key == f"{SUPPORT};messageid=1571508491752"
    assert message.author == DAVE
    assert message.sent_at == datetime(2019, 10, 19, 18, 8, 11, 810000, tzinfo=UTC)
    assert message.ticket_fields == {
        "teams_service_url": SMBA,
        "teams_conversation_id": f"{SUPPORT};messageid=1571508491752",
        "teams_channel_id": SUPPORT,
        "teams_team_id": GENERAL,
        "teams_tenant_id": TENANT_ID,
        "teams_root_activity_id": "1571508491752",
    }


def test_a_personal_chat_message_opens_a_ticket_keyed_by_the_chat(teams, adapter):
    activity = fixture_json("message__personal_chat.json")
    conversation_id = activity["conversation"]["id"]
    [message] = adapter.parse(raw_event(fixture_bytes("message__personal_chat.json")))
    aad = "6d415fdd-f97e-4f70-ac45-e69601e4ecb2"
    assert message == InboundMessage(
        channel="teams",
        external_id="1571691217375",
        thread_key=conversation_id,
        # Graph does not know this user (404): the name from the activity, no email.
        author=Author(external_id=aad, name="Tien Suwandy", email=None, distinct_id=f"teams:{aad}"),
        text="file",
        channel_detail="teams_bot_mention",
        sent_at=datetime(2019, 10, 21, 20, 53, 37, 385000, tzinfo=UTC),
        creates_ticket=True,
        ticket_fields={
            "teams_service_url": SMBA,
            "teams_conversation_id": conversation_id,
            "teams_channel_id": None,
            "teams_team_id": None,
            "teams_tenant_id": TENANT_ID,
            "teams_root_activity_id": None,
        },
        metadata={
            "teams_activity_type": "message",
            "teams_conversation_type": "personal",
            "teams_from_id": activity["from"]["id"],
        },
    )


def test_the_bundled_mention_from_another_tenant_opens_a_ticket_without_asking_graph(teams, adapter):
    [message] = adapter.parse(raw_event(fixture_json(BUNDLE, "mention")))
    channel = "19:d441d38c655c47a085215b2726e76927@thread.tacv2"
    aad = "00000000-1111-2222-3333-444444444444"
    assert message == InboundMessage(
        channel="teams",
        external_id="1767326091220",
        thread_key=f"{channel};messageid=1767326091220",
        author=Author(external_id=aad, name="Test User", email=None, distinct_id=f"teams:{aad}"),
        text="Test",
        channel_detail="teams_bot_mention",
        sent_at=None,
        creates_ticket=True,
        ticket_fields={
            "teams_service_url": "https://smba.trafficmanager.net/amer/a1b2c3d4-e5f6-7890-abcd-ef1234567890/",
            "teams_conversation_id": f"{channel};messageid=1767326091220",
            "teams_channel_id": channel,
            "teams_team_id": "19:8j-Mnacwmq2QFDbzykeQH5v55m6cN1X3QJ5viHvGIIQ1@thread.tacv2",
            "teams_tenant_id": "a1b2c3d4-e5f6-7890-abcd-ef1234567890",
            "teams_root_activity_id": "1767326091220",
        },
        metadata={
            "teams_activity_type": "message",
            "teams_conversation_type": "channel",
            "teams_from_id": "29:1xXxFakeUserBase64IdStringForTeamsPlatformAbcDeFgHiJkLmNoPqRsTuVwXyZ012345ABCDEF",
        },
    )
    assert teams.calls_to("/v1.0/users") == []


@pytest.mark.parametrize("key", ["action", "reaction"])
def test_the_bundled_card_action_and_reaction_are_ignored(adapter, key):
    assert adapter.parse(raw_event(fixture_json(BUNDLE, key))) == []


@pytest.mark.parametrize(
    "name",
    [
        "message__card_submit_no_text.json",
        "conversation_update__channel_created.json",
        "conversation_update__group_chat_members_added.json",
        "conversation_update__team_member_added.json",
    ],
)
def test_card_submits_and_conversation_updates_are_known_and_ignored(teams, adapter, name):
    assert adapter.parse(raw_event(fixture_bytes(name))) == []
    assert teams.calls_to("/v1.0/users") == []


# -- channel triggers and threads -------------------------------------------------------------


def test_a_top_level_message_in_a_configured_channel_opens_a_channel_message_ticket(teams_with_users, clock):
    activity = without_mention(
        fixture_json("message__channel_mention_bot_with_link.json"), "Printer on 3rd floor is down"
    )
    [message] = build(teams_with_users, clock, channel_ids=[SUPPORT]).parse(raw_event(activity))
    assert message.channel_detail == "teams_channel_message"
    assert message.creates_ticket is True
    assert message.text == "Printer on 3rd floor is down"
    assert message.thread_key == f"{SUPPORT};messageid=1571508491752"


def test_a_mention_in_a_configured_channel_is_a_bot_mention(teams_with_users, clock):
    adapter = build(teams_with_users, clock, channel_ids=[SUPPORT])
    [message] = adapter.parse(raw_event(fixture_bytes("message__channel_mention_bot_with_link.json")))
    assert message.channel_detail == "teams_bot_mention"


def test_a_top_level_message_in_a_channel_that_is_not_configured_is_ignored(teams_with_users, adapter):
    activity = without_mention(fixture_json("message__channel_mention_bot_with_link.json"), "lunch anyone?")
    assert adapter.parse(raw_event(activity)) == []


def test_a_thread_reply_joins_the_root_posts_thread_without_opening_a_ticket(teams_with_users, clock):
    adapter = build(teams_with_users, clock, channel_ids=[SUPPORT])
    root = fixture_json("message__channel_mention_bot_with_link.json")
    [opened] = adapter.parse(raw_event(root))
    [reply] = adapter.parse(raw_event(as_reply(root, "1571508500000", "Any update?")))
    assert reply.thread_key == opened.thread_key
    assert reply.external_id == "1571508500000"
    assert reply.creates_ticket is False
    assert reply.channel_detail is None
    assert reply.ticket_fields["teams_root_activity_id"] == "1571508491752"
    assert reply.ticket_fields["teams_conversation_id"] == opened.ticket_fields["teams_conversation_id"]


def test_a_reply_that_mentions_the_bot_opens_a_ticket_on_its_thread(teams_with_users, adapter):
    root = fixture_json("message__channel_mention_bot_with_link.json")
    reply = copy.deepcopy(root)
    reply["id"] = "1571508599999"
    [message] = adapter.parse(raw_event(reply))
    assert message.creates_ticket is True
    assert message.channel_detail == "teams_bot_mention"
    assert message.thread_key == f"{SUPPORT};messageid=1571508491752"


def test_a_root_post_whose_conversation_id_lacks_the_message_id_gets_the_same_thread_key(
    teams_with_users, adapter
):
    root = fixture_json("message__channel_mention_bot.json")
    root["conversation"]["id"] = GENERAL
    [message] = adapter.parse(raw_event(root))
    assert message.thread_key == f"{GENERAL};messageid=1571540169848"
    assert message.ticket_fields["teams_conversation_id"] == f"{GENERAL};messageid=1571540169848"


def test_other_peoples_mentions_keep_their_names_and_only_the_bot_mention_goes(teams_with_users, adapter):
    activity = fixture_json("message__channel_mention_bot.json")
    activity["text"] = "<at>My Combined</at>  please ask <at>Jane Doe</at> about\n<at>Bob</at>'s laptop \n"
    activity["entities"].append(
        {"type": "mention", "text": "<at>Jane Doe</at>", "mentioned": {"id": "29:jane"}}
    )
    [message] = adapter.parse(raw_event(activity))
    assert message.text == "please ask Jane Doe about\nBob's laptop"


def test_a_bare_mention_with_nothing_to_say_is_ignored(teams_with_users, adapter):
    activity = fixture_json("message__channel_mention_bot.json")
    activity["text"] = "<at>My Combined</at>\n"
    assert adapter.parse(raw_event(activity)) == []


@pytest.mark.parametrize(
    "sender",
    [
        {"id": "28:eac5e5c6-ab14-4f50-80cb-49213fe51b1a", "name": "teams2"},
        {"id": "28:another-bot", "name": "Other bot"},
        {"id": "29:some-id", "name": "Workflow", "role": "bot"},
    ],
)
def test_messages_from_bots_are_ignored(adapter, sender):
    activity = fixture_json("message__channel_mention_bot.json")
    activity["from"] = sender
    assert adapter.parse(raw_event(activity)) == []


def test_a_group_chat_mention_opens_a_ticket_for_the_chat_and_later_messages_join_it(
    teams_with_users, adapter
):
    activity = fixture_json("message__channel_mention_bot.json")
    activity["conversation"] = {
        "isGroup": True,
        "conversationType": "groupChat",
        "tenantId": TENANT_ID,
        "id": "19:chat@thread.v2",
    }
    activity["channelData"] = {"tenant": {"id": TENANT_ID}}
    [opened] = adapter.parse(raw_event(activity))
    [follow_up] = adapter.parse(raw_event(as_reply(activity, "1571540170000", "still broken")))
    assert (opened.thread_key, opened.creates_ticket, opened.channel_detail) == (
        "19:chat@thread.v2",
        True,
        "teams_bot_mention",
    )
    assert (follow_up.thread_key, follow_up.creates_ticket) == ("19:chat@thread.v2", False)


def test_files_and_inline_images_become_attachments(teams, adapter):
    activity = fixture_json("message__personal_chat.json")
    activity["attachments"] = [
        {"contentType": "text/html", "content": "<div>file</div>"},
        {
            "contentType": "application/vnd.microsoft.teams.file.download.info",
            "name": "report.pdf",
            "content": {
                "downloadUrl": "https://contoso.example/dl/report.pdf",
                "uniqueId": "abc-1",
                "fileType": "pdf",
            },
        },
        {"contentType": "image/png", "contentUrl": "https://smba.example/v3/attachments/1/views/original"},
        {"contentType": "application/vnd.microsoft.card.adaptive", "content": {"type": "AdaptiveCard"}},
    ]
    [message] = adapter.parse(raw_event(activity))
    assert message.attachments == (
        Attachment(
            filename="report.pdf",
            content_type="pdf",
            url="https://contoso.example/dl/report.pdf",
            external_id="abc-1",
        ),
        Attachment(
            filename="attachment",
            content_type="image/png",
            url="https://smba.example/v3/attachments/1/views/original",
        ),
    )


# -- edits, deletes, unknown events -----------------------------------------------------------


def test_an_edited_message_becomes_an_edit_of_the_stored_message(teams_with_users, adapter):
    edit = as_reply(
        fixture_json("message__channel_mention_bot_with_link.json"), "1571508500000", "Any update? (edited)"
    )
    edit["type"] = "messageUpdate"
    edit["channelData"]["eventType"] = "editMessage"
    [message] = adapter.parse(raw_event(edit))
    assert message.kind == MessageKind.EDIT
    assert message.external_id == "1571508500000"
    assert message.text == "Any update? (edited)"
    assert message.thread_key == f"{SUPPORT};messageid=1571508491752"
    assert message.creates_ticket is False
    assert teams_with_users.calls_to("/v1.0/users") == []


def test_a_soft_deleted_message_becomes_a_delete(adapter):
    deleted = as_reply(fixture_json("message__channel_mention_bot_with_link.json"), "1571508500000", "")
    deleted["type"] = "messageDelete"
    deleted["channelData"]["eventType"] = "softDeleteMessage"
    [message] = adapter.parse(raw_event(deleted))
    assert (message.kind, message.external_id, message.text) == (MessageKind.DELETE, "1571508500000", "")
    assert message.thread_key == f"{SUPPORT};messageid=1571508491752"


def test_an_undeleted_message_is_ignored(adapter):
    restored = fixture_json("message__channel_mention_bot.json")
    restored["type"] = "messageUpdate"
    restored["channelData"]["eventType"] = "undeleteMessage"
    assert adapter.parse(raw_event(restored)) == []


def test_an_unknown_message_update_event_is_unsupported(adapter):
    update = fixture_json("message__channel_mention_bot.json")
    update["type"] = "messageUpdate"
    update["channelData"]["eventType"] = "somethingNew"
    with pytest.raises(UnsupportedEventError):
        adapter.parse(raw_event(update))


def test_an_unknown_activity_type_is_unsupported(adapter):
    activity = fixture_json("message__channel_mention_bot.json")
    activity["type"] = "suggestion"
    with pytest.raises(UnsupportedEventError):
        adapter.parse(raw_event(activity))


def test_activities_from_other_bot_framework_channels_are_unsupported(adapter):
    activity = fixture_json("message__channel_mention_bot.json")
    activity["channelId"] = "webchat"
    with pytest.raises(UnsupportedEventError):
        adapter.parse(raw_event(activity))


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'{"id": "1"}'])
def test_bodies_that_are_not_activities_are_malformed(adapter, body):
    with pytest.raises(MalformedPayloadError):
        adapter.parse(raw_event(body))


# -- event ids --------------------------------------------------------------------------------


def event_id_of(adapter: TeamsAdapter, activity: dict[str, Any]) -> str:
    return adapter.event_id(RawRequest.build(json.dumps(activity).encode()))


def test_the_event_id_is_the_activity_id_qualified_by_its_conversation(adapter):
    activity = fixture_json("message__channel_mention_bot.json")
    event_id = adapter.event_id(RawRequest.build(fixture_bytes("message__channel_mention_bot.json")))
    assert event_id.startswith("1571540169848:")
    assert event_id == event_id_of(adapter, activity)
    elsewhere = copy.deepcopy(activity)
    elsewhere["conversation"]["id"] = f"{SUPPORT};messageid=1571540169848"
    assert event_id_of(adapter, elsewhere) != event_id


def test_each_edit_of_a_message_has_its_own_event_id(adapter):
    message = fixture_json("message__channel_mention_bot.json")
    first_edit = {**message, "type": "messageUpdate", "timestamp": "2019-10-20T03:00:00.000Z"}
    first_edit["channelData"] = {**message["channelData"], "eventType": "editMessage"}
    second_edit = {**first_edit, "timestamp": "2019-10-20T03:05:00.000Z"}
    ids = {event_id_of(adapter, message), event_id_of(adapter, first_edit), event_id_of(adapter, second_edit)}
    assert len(ids) == 3


def test_an_activity_without_an_id_has_no_event_id(adapter):
    with pytest.raises(MalformedPayloadError):
        event_id_of(adapter, {"type": "message"})
