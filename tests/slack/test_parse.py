"""Golden parse tests: every fixture (and every payload of every bundle) → the exact InboundMessages."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from channels.base import Attachment, Author, InboundMessage, MessageKind
from channels.slack import SlackAdapter
from tests.slack.conftest import fixture_body, raw_event

DANA = Author(
    external_id="U06NU4E26M9", name="Dana Scully", email="dana@example.com", distinct_id="slack:U06NU4E26M9"
)
FOX = Author(
    external_id="U00FAKEUSER1", name="fox", email="fox@example.com", distinct_id="slack:U00FAKEUSER1"
)
WALTER = Author(
    external_id="UXXXXXXXXXX",
    name="Walter Skinner",
    email="walter@example.com",
    distinct_id="slack:UXXXXXXXXXX",
)


def fields(team: str, channel: str, root_ts: str) -> dict[str, str]:
    return {"slack_team_id": team, "slack_channel_id": channel, "slack_thread_ts": root_ts}


def parse(adapter: SlackAdapter, name: str, key: str | None = None) -> list[InboundMessage]:
    return adapter.parse(raw_event(fixture_body(name, key)))


def test_a_plain_message_in_a_support_channel_opens_a_ticket(adapter: SlackAdapter) -> None:
    assert parse(adapter, "message__channel_plain_text.json") == [
        InboundMessage(
            channel="slack",
            external_id="C06NRA6JLER:1719209506.817929",
            thread_key="T06NRA6HM3P:C06NRA6JLER:1719209506.817929",
            author=DANA,
            text="Hello, this is a normal text message",
            channel_detail="slack_channel_message",
            sent_at=datetime(2024, 6, 24, 6, 11, 46, 817929, tzinfo=UTC),
            kind=MessageKind.NEW,
            creates_ticket=True,
            ticket_fields=fields("T06NRA6HM3P", "C06NRA6JLER", "1719209506.817929"),
        )
    ]


def test_a_file_share_with_empty_text_opens_a_ticket_with_the_files_as_attachments(
    adapter: SlackAdapter,
) -> None:
    base = "https://files.slack.com/files-pri/T06NRA6HM3P-"
    assert parse(adapter, "message__file_share_images_empty_text.json") == [
        InboundMessage(
            channel="slack",
            external_id="C06NRA6JLER:1719209815.105159",
            thread_key="T06NRA6HM3P:C06NRA6JLER:1719209815.105159",
            author=DANA,
            text="",
            channel_detail="slack_channel_message",
            attachments=(
                Attachment(
                    filename="5e44bcbc-e43c-4a2e-85de-4be126f392f4.jpg",
                    content_type="image/jpeg",
                    size=3036645,
                    url=base + "F079E4173BL/5e44bcbc-e43c-4a2e-85de-4be126f392f4.jpg",
                    external_id="F079E4173BL",
                ),
                Attachment(
                    filename="notif_bot.png",
                    content_type="image/png",
                    size=45054,
                    url=base + "F079GJ49X4L/notif_bot.png",
                    external_id="F079GJ49X4L",
                ),
                Attachment(
                    filename="books.jpg",
                    content_type="image/jpeg",
                    size=1406170,
                    url=base + "F07A2TA6PPS/books.jpg",
                    external_id="F07A2TA6PPS",
                ),
            ),
            sent_at=datetime(2024, 6, 24, 6, 16, 55, 105159, tzinfo=UTC),
            creates_ticket=True,
            ticket_fields=fields("T06NRA6HM3P", "C06NRA6JLER", "1719209815.105159"),
        )
    ]


def test_a_message_of_an_integration_bot_is_ignored(adapter: SlackAdapter) -> None:
    assert parse(adapter, "message__bot_message_with_attachments.json") == []


def test_message_changed_edits_the_stored_message_with_the_new_text(adapter: SlackAdapter) -> None:
    # The fixture's `text` ("edited message") and `blocks` ("hi!") disagree; `text` is used.
    assert parse(adapter, "message__message_changed.json") == [
        InboundMessage(
            channel="slack",
            external_id="CXXXXXXXXXX:1701735043.989889",
            thread_key="TXXXXXXXXXX:CXXXXXXXXXX:1701735043.989889",
            author=WALTER,
            text="edited message",
            sent_at=datetime(2023, 12, 5, 2, 25, 54, 500, tzinfo=UTC),
            kind=MessageKind.EDIT,
            creates_ticket=False,
            ticket_fields=fields("TXXXXXXXXXX", "CXXXXXXXXXX", "1701735043.989889"),
        )
    ]


def test_message_changed_on_a_bot_message_is_ignored(adapter: SlackAdapter) -> None:
    assert parse(adapter, "message__message_changed_by_bot.json") == []


def test_an_old_envelope_reaction_in_a_direct_message_is_ignored(adapter: SlackAdapter) -> None:
    assert parse(adapter, "reaction_added__old_envelope_in_dm.json") == []


def test_url_verification_has_nothing_to_ingest(adapter: SlackAdapter) -> None:
    assert parse(adapter, "url_verification__challenge.json") == []


# -- bundle: app_mention, reaction_added and block_actions ---------------------------------
ACTIONS_BUNDLE = "bundle__app_mention_reaction_added_block_actions.json"


def test_an_app_mention_opens_a_ticket_as_a_bot_mention(adapter: SlackAdapter) -> None:
    assert parse(adapter, ACTIONS_BUNDLE, "mention") == [
        InboundMessage(
            channel="slack",
            external_id="C00FAKECHAN1:1767326125.870439",
            thread_key="T00FAKE00AA:C00FAKECHAN1:1767326125.870439",
            author=FOX,
            text="@Chat SDK ExampleBot Test",
            channel_detail="slack_bot_mention",
            sent_at=datetime(2026, 1, 2, 3, 55, 25, 870439, tzinfo=UTC),
            creates_ticket=True,
            ticket_fields=fields("T00FAKE00AA", "C00FAKECHAN1", "1767326125.870439"),
        )
    ]


def test_a_reaction_with_another_emoji_is_ignored(adapter: SlackAdapter) -> None:
    assert parse(adapter, ACTIONS_BUNDLE, "reaction") == []


@pytest.mark.parametrize("key", ["action", "staticSelectAction", "radioButtonsAction"])
def test_block_actions_interactivity_payloads_are_ignored(adapter: SlackAdapter, key: str) -> None:
    assert parse(adapter, ACTIONS_BUNDLE, key) == []


# -- bundle: a channel message that mentions the bot, and a thread reply --------------------
THREAD_BUNDLE = "bundle__channel_message_and_thread_reply.json"


def test_a_channel_message_that_mentions_the_bot_opens_a_ticket_as_a_channel_message(
    adapter: SlackAdapter,
) -> None:
    assert parse(adapter, THREAD_BUNDLE, "mention") == [
        InboundMessage(
            channel="slack",
            external_id="C00FAKECHAN1:1767224888.280449",
            thread_key="T00FAKE00AA:C00FAKECHAN1:1767224888.280449",
            author=FOX,
            text="@Chat SDK ExampleBot Hey",
            channel_detail="slack_channel_message",
            sent_at=datetime(2025, 12, 31, 23, 48, 8, 280449, tzinfo=UTC),
            creates_ticket=True,
            ticket_fields=fields("T00FAKE00AA", "C00FAKECHAN1", "1767224888.280449"),
        )
    ]


def test_a_thread_reply_joins_the_ticket_of_its_root(adapter: SlackAdapter) -> None:
    assert parse(adapter, THREAD_BUNDLE, "followUp") == [
        InboundMessage(
            channel="slack",
            external_id="C00FAKECHAN1:1767224901.701849",
            thread_key="T00FAKE00AA:C00FAKECHAN1:1767224888.280449",
            author=FOX,
            text="Hi",
            sent_at=datetime(2025, 12, 31, 23, 48, 21, 701849, tzinfo=UTC),
            creates_ticket=False,
            ticket_fields=fields("T00FAKE00AA", "C00FAKECHAN1", "1767224888.280449"),
        )
    ]


# -- bundle: app_mention, a thread reply and a direct message -------------------------------
DM_BUNDLE = "bundle__app_mention_and_im_messages.json"


def test_an_app_mention_from_the_dm_bundle_opens_a_ticket(adapter: SlackAdapter) -> None:
    assert parse(adapter, DM_BUNDLE, "mention") == [
        InboundMessage(
            channel="slack",
            external_id="C00FAKECHAN1:1767376988.871629",
            thread_key="T00FAKE00AA:C00FAKECHAN1:1767376988.871629",
            author=FOX,
            text="@Chat SDK ExampleBot Hey",
            channel_detail="slack_bot_mention",
            sent_at=datetime(2026, 1, 2, 18, 3, 8, 871629, tzinfo=UTC),
            creates_ticket=True,
            ticket_fields=fields("T00FAKE00AA", "C00FAKECHAN1", "1767376988.871629"),
        )
    ]


def test_a_reply_in_the_mention_thread_joins_that_ticket(adapter: SlackAdapter) -> None:
    assert parse(adapter, DM_BUNDLE, "dmRequest") == [
        InboundMessage(
            channel="slack",
            external_id="C00FAKECHAN1:1767376993.596659",
            thread_key="T00FAKE00AA:C00FAKECHAN1:1767376988.871629",
            author=FOX,
            text="DM me",
            sent_at=datetime(2026, 1, 2, 18, 3, 13, 596659, tzinfo=UTC),
            creates_ticket=False,
            ticket_fields=fields("T00FAKE00AA", "C00FAKECHAN1", "1767376988.871629"),
        )
    ]


def test_a_direct_message_to_the_bot_is_ignored(adapter: SlackAdapter) -> None:
    assert parse(adapter, DM_BUNDLE, "dmMessage") == []
