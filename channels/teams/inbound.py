"""Bot Framework activities from Microsoft Teams → `InboundMessage`s.

A table from activity type to a small `parse_<type>` function, plus `IGNORED_EVENTS`.
Anything else raises `UnsupportedEventError` (stored and logged, never silently dropped).

Teams quirks this module relies on (Microsoft "Channel and group chat conversations with a
bot", "Messages in bot conversations", "Conversation events in your Teams bot"):

- In a channel, `conversation.id` is `19:…@thread.…;messageid=<root>`: the root post's id.
  For the root post itself `<root>` equals the activity `id`; a reply carries its thread's
  root. Older payloads may lack the suffix on a root post.
- A bot sees channel messages only when @mentioned, unless the app has the resource-specific
  consent `ChannelMessage.Read.Group`, which delivers every message of the team.
- The mention arrives as `<at>Bot name</at>` in `text` plus a `mention` entity whose
  `mentioned.id` is the bot (`28:<app id>`); the displayed name may differ from the bot's.
- A `text/html` attachment repeats the text as HTML; it is not a file.
- Edits arrive as `messageUpdate` (`channelData.eventType` `editMessage`, or
  `undeleteMessage`), deletions as `messageDelete` (`softDeleteMessage`); their `id` is the
  id of the message edited or deleted.
- `channelData.teamsChannelId`/`teamsTeamId` are deprecated in favour of
  `channelData.channel.id`/`team.id`; payloads carry either or both.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from channels.base import Attachment, Author, InboundMessage, MessageKind
from channels.errors import MalformedPayloadError, UnsupportedEventError
from channels.teams.client import GraphUser

CHANNEL = "teams"
TEAMS_CHANNEL_ID = "msteams"
MESSAGE_ID_MARKER = ";messageid="

BOT_MENTION = "teams_bot_mention"
CHANNEL_MESSAGE = "teams_channel_message"

# Known activity types we deliberately do nothing with.
IGNORED_EVENTS = frozenset(
    {
        "conversationUpdate",  # members added/removed, channel/team created/renamed/deleted
        "messageReaction",  # likes and other reactions
        "installationUpdate",  # app installed/uninstalled
        "typing",
        "invoke",  # card actions, messaging extensions, sign-in; answered synchronously or not at all
        "event",  # meeting start/end, read receipts
        "endOfConversation",
        "contactRelationUpdate",
    }
)
# `messageUpdate` sub-events we deliberately ignore: a restored message keeps its old
# stored copy (there is no "undelete" kind), so there is nothing new to record.
IGNORED_UPDATE_EVENTS = frozenset({"undeleteMessage"})

_AT_TAG = re.compile(r"<at>(.*?)</at>", re.IGNORECASE | re.DOTALL)
_SPACES = re.compile(r"[ \t]{2,}")
# File attachments of personal chats (Microsoft "Send and receive files using bot").
_FILE_DOWNLOAD_INFO = "application/vnd.microsoft.teams.file.download.info"


@dataclass(frozen=True)
class ParseContext:
    """What the parser needs to know about the project's bot and integration."""

    bot_ids: frozenset[str]
    channel_ids: frozenset[str]
    tenant_id: str
    lookup_user: Callable[[str], GraphUser | None]


@dataclass(frozen=True)
class Thread:
    """Where an activity lives: the ticket's thread key and the coordinates replies need."""

    key: str
    conversation_id: str
    base_conversation_id: str
    root_activity_id: str | None
    is_channel: bool
    is_root: bool


# -- entry points --------------------------------------------------------------------------


def event_id(activity: Mapping[str, Any]) -> str:
    """A stable idempotency key for one delivery of an activity.

    The activity id alone is not enough: ids are per conversation, and an edit or a delete
    carries the id of the message it changes (so does every later edit of it). The key is the
    activity id plus a digest of the conversation, the type and, for edits, the edit time.
    """
    activity = _require_mapping(activity, "activity")
    activity_type = str(activity.get("type") or "")
    activity_id = str(activity.get("id") or "")
    conversation = activity.get("conversation")
    conversation_id = str(conversation.get("id", "")) if isinstance(conversation, Mapping) else ""
    channel_data = activity.get("channelData")
    sub_event = str(channel_data.get("eventType", "")) if isinstance(channel_data, Mapping) else ""
    edit_time = str(activity.get("timestamp", "")) if activity_type == "messageUpdate" else ""
    if not activity_id:
        raise MalformedPayloadError("activity has no id")
    digest = hashlib.sha256(
        "\x1f".join((conversation_id, activity_type, sub_event, edit_time)).encode()
    ).hexdigest()[:24]
    return f"{activity_id}:{digest}"


def parse_activity(activity: Any, ctx: ParseContext) -> list[InboundMessage]:
    """Normalise one activity; [] = known and deliberately ignored."""
    activity = _require_mapping(activity, "activity")
    activity_type = activity.get("type")
    if not isinstance(activity_type, str) or not activity_type:
        raise MalformedPayloadError("activity has no type")
    if activity.get("channelId") != TEAMS_CHANNEL_ID:
        # Another Bot Framework channel (Web Chat, Emulator) reached this bot: not ours to read.
        raise UnsupportedEventError(f"channel {activity.get('channelId')!r} is not Microsoft Teams")
    if activity_type in IGNORED_EVENTS:
        return []
    parser = EVENT_PARSERS.get(activity_type)
    if parser is None:
        raise UnsupportedEventError(f"unsupported Teams activity type {activity_type!r}")
    return parser(activity, ctx)


# -- parsers -------------------------------------------------------------------------------


def parse_message(activity: Mapping[str, Any], ctx: ParseContext) -> list[InboundMessage]:
    """A message: a new ticket (mention, configured channel, personal chat) or a thread reply."""
    if _is_bot_sender(activity, ctx):
        return []
    thread = thread_of(activity)
    mentions_bot = _mentions_bot(activity, ctx)
    text = clean_text(str(activity.get("text") or ""), activity, ctx)
    attachments = _attachments(activity)
    if not text and not attachments:
        # Card submits (`value` only, no text), and a bare @mention with nothing to say.
        return []

    conversation_type = _conversation_type(activity)
    if thread.is_channel:
        if mentions_bot:
            detail, creates = BOT_MENTION, True
        elif thread.is_root and _channel_id(activity) in ctx.channel_ids:
            detail, creates = CHANNEL_MESSAGE, True
        elif thread.is_root:
            # A root post in a channel we do not watch (delivered through RSC): not support.
            return []
        else:
            detail, creates = None, False
    elif conversation_type == "personal":
        # Decision: a 1:1 chat with the bot is addressed to the bot just like an @mention, so
        # it opens (or continues) one ticket per personal conversation, as `teams_bot_mention`.
        detail, creates = BOT_MENTION, True
    else:
        # Group chats: an @mention opens a ticket for the chat; other messages (seen with
        # RSC `ChatMessage.Read.Chat`) only join a ticket that exists.
        detail, creates = (BOT_MENTION, True) if mentions_bot else (None, False)

    return [
        InboundMessage(
            channel=CHANNEL,
            external_id=str(activity["id"]),
            thread_key=thread.key,
            author=_author(activity, ctx, look_up=True),
            text=text,
            channel_detail=detail,
            attachments=attachments,
            sent_at=_timestamp(activity),
            kind=MessageKind.NEW,
            creates_ticket=creates,
            ticket_fields=_ticket_fields(activity, thread),
            metadata=_metadata(activity, conversation_type),
        )
    ]


def parse_message_update(activity: Mapping[str, Any], ctx: ParseContext) -> list[InboundMessage]:
    """`messageUpdate`: `editMessage` edits the stored message; `undeleteMessage` is ignored."""
    sub_event = _channel_data(activity).get("eventType")
    if sub_event in IGNORED_UPDATE_EVENTS:
        return []
    if sub_event != "editMessage":
        raise UnsupportedEventError(f"unsupported Teams messageUpdate event {sub_event!r}")
    if _is_bot_sender(activity, ctx):
        return []
    thread = thread_of(activity)
    return [
        InboundMessage(
            channel=CHANNEL,
            external_id=str(activity["id"]),
            thread_key=thread.key,
            author=_author(activity, ctx, look_up=False),
            text=clean_text(str(activity.get("text") or ""), activity, ctx),
            attachments=_attachments(activity),
            sent_at=_timestamp(activity),
            kind=MessageKind.EDIT,
            ticket_fields=_ticket_fields(activity, thread),
            metadata=_metadata(activity, _conversation_type(activity)),
        )
    ]


def parse_message_delete(activity: Mapping[str, Any], ctx: ParseContext) -> list[InboundMessage]:
    """`messageDelete` (`softDeleteMessage`): remove the stored message."""
    sub_event = _channel_data(activity).get("eventType")
    if sub_event not in (None, "softDeleteMessage"):
        raise UnsupportedEventError(f"unsupported Teams messageDelete event {sub_event!r}")
    if _is_bot_sender(activity, ctx):
        return []
    thread = thread_of(activity)
    return [
        InboundMessage(
            channel=CHANNEL,
            external_id=str(activity["id"]),
            thread_key=thread.key,
            author=_author(activity, ctx, look_up=False),
            sent_at=_timestamp(activity),
            kind=MessageKind.DELETE,
            ticket_fields=_ticket_fields(activity, thread),
            metadata=_metadata(activity, _conversation_type(activity)),
        )
    ]


EVENT_PARSERS: dict[str, Callable[[Mapping[str, Any], ParseContext], list[InboundMessage]]] = {
    "message": parse_message,
    "messageUpdate": parse_message_update,
    "messageDelete": parse_message_delete,
}


# -- pieces --------------------------------------------------------------------------------


def thread_of(activity: Mapping[str, Any]) -> Thread:
    """The thread an activity belongs to, normalised so a root post and its replies agree.

    Channel: `<channel conversation id>;messageid=<root id>`, the root being the suffix of the
    conversation id or, when absent, the activity itself. Chats (personal, group) have no
    threads: the conversation id is the thread.
    """
    conversation = _require_mapping(activity.get("conversation"), "conversation")
    conversation_id = conversation.get("id")
    activity_id = activity.get("id")
    if not isinstance(conversation_id, str) or not conversation_id:
        raise MalformedPayloadError("activity has no conversation id")
    if not isinstance(activity_id, str) or not activity_id:
        raise MalformedPayloadError("activity has no id")
    if _conversation_type(activity) != "channel":
        return Thread(
            key=conversation_id,
            conversation_id=conversation_id,
            base_conversation_id=conversation_id,
            root_activity_id=None,
            is_channel=False,
            is_root=True,
        )
    base, _, root = conversation_id.partition(MESSAGE_ID_MARKER)
    root = root or activity_id
    key = f"{base}{MESSAGE_ID_MARKER}{root}"
    return Thread(
        key=key,
        conversation_id=key,
        base_conversation_id=base,
        root_activity_id=root,
        is_channel=True,
        is_root=root == activity_id,
    )


def clean_text(text: str, activity: Mapping[str, Any], ctx: ParseContext) -> str:
    """The message text without the bot's `<at>…</at>` mention; other mentions keep the name."""
    for entity in _bot_mentions(activity, ctx):
        markup = entity.get("text")
        if isinstance(markup, str) and markup:
            text = text.replace(markup, " ")
    text = _AT_TAG.sub(lambda m: m.group(1), text)
    lines = [_SPACES.sub(" ", line).strip() for line in text.splitlines()]
    return "\n".join(lines).strip()


def _mentions_bot(activity: Mapping[str, Any], ctx: ParseContext) -> bool:
    return bool(_bot_mentions(activity, ctx))


def _bot_mentions(activity: Mapping[str, Any], ctx: ParseContext) -> list[Mapping[str, Any]]:
    bot_ids = set(ctx.bot_ids)
    recipient = activity.get("recipient")
    if isinstance(recipient, Mapping) and isinstance(recipient.get("id"), str):
        bot_ids.add(recipient["id"])
    found = []
    for entity in activity.get("entities") or ():
        if not isinstance(entity, Mapping) or entity.get("type") != "mention":
            continue
        mentioned = entity.get("mentioned")
        if isinstance(mentioned, Mapping) and mentioned.get("id") in bot_ids:
            found.append(entity)
    return found


def _is_bot_sender(activity: Mapping[str, Any], ctx: ParseContext) -> bool:
    sender = activity.get("from")
    if not isinstance(sender, Mapping):
        return False
    sender_id = str(sender.get("id") or "")
    # Bot accounts have `28:` ids (users `29:`, `8:orgid:`); newer payloads also set `role`.
    return sender.get("role") == "bot" or sender_id.startswith("28:") or sender_id in ctx.bot_ids


def _author(activity: Mapping[str, Any], ctx: ParseContext, *, look_up: bool) -> Author:
    sender = _mapping(activity.get("from"))
    aad_id = sender.get("aadObjectId") if isinstance(sender.get("aadObjectId"), str) else None
    teams_id = sender.get("id") if isinstance(sender.get("id"), str) else None
    name = sender.get("name") if isinstance(sender.get("name"), str) and sender.get("name") else None
    email = None
    # Graph answers only for users of the tenant our app-only token is for; a guest or a user
    # of another tenant that installed the app keeps the name from the activity.
    if look_up and aad_id and _tenant_id(activity) in (None, ctx.tenant_id):
        profile = ctx.lookup_user(aad_id)
        if profile is not None:
            email = profile.email
            name = name or profile.display_name
    user_id = aad_id or teams_id
    return Author(
        external_id=user_id,
        name=name,
        email=email,
        distinct_id=f"teams:{user_id}" if user_id else None,
    )


def _attachments(activity: Mapping[str, Any]) -> tuple[Attachment, ...]:
    found = []
    for item in activity.get("attachments") or ():
        if not isinstance(item, Mapping):
            continue
        content_type = str(item.get("contentType") or "")
        content = _mapping(item.get("content"))
        name = item.get("name") if isinstance(item.get("name"), str) else None
        if content_type == _FILE_DOWNLOAD_INFO:
            found.append(
                Attachment(
                    filename=name or "attachment",
                    content_type=str(content.get("fileType") or "") or None,
                    url=content.get("downloadUrl"),
                    external_id=content.get("uniqueId"),
                )
            )
        elif isinstance(item.get("contentUrl"), str) and item["contentUrl"]:
            # Inline images (`image/*`) and channel files (`reference` to SharePoint).
            found.append(
                Attachment(
                    filename=name or "attachment", content_type=content_type or None, url=item["contentUrl"]
                )
            )
        # `text/html` repeats the text; cards carry no file: neither is an attachment.
    return tuple(found)


def _ticket_fields(activity: Mapping[str, Any], thread: Thread) -> dict[str, Any]:
    return {
        "teams_service_url": activity.get("serviceUrl"),
        "teams_conversation_id": thread.conversation_id,
        "teams_channel_id": _channel_id(activity),
        "teams_team_id": _team_id(activity),
        "teams_tenant_id": _tenant_id(activity),
        "teams_root_activity_id": thread.root_activity_id,
    }


def _metadata(activity: Mapping[str, Any], conversation_type: str | None) -> dict[str, Any]:
    sender = _mapping(activity.get("from"))
    return {
        "teams_activity_type": activity.get("type"),
        "teams_conversation_type": conversation_type,
        "teams_from_id": sender.get("id"),
    }


def _conversation_type(activity: Mapping[str, Any]) -> str | None:
    conversation = activity.get("conversation")
    declared = conversation.get("conversationType") if isinstance(conversation, Mapping) else None
    if isinstance(declared, str) and declared:
        return declared
    # Old payloads omit conversationType; a channel is recognisable by its channelData.
    return "channel" if _channel_id(activity) else None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _channel_data(activity: Mapping[str, Any]) -> Mapping[str, Any]:
    return _mapping(activity.get("channelData"))


def _nested_id(data: Mapping[str, Any], key: str) -> str | None:
    value = _mapping(data.get(key)).get("id")
    return value if isinstance(value, str) else None


def _channel_id(activity: Mapping[str, Any]) -> str | None:
    data = _channel_data(activity)
    value = data.get("teamsChannelId") or _nested_id(data, "channel")
    return str(value) if value else None


def _team_id(activity: Mapping[str, Any]) -> str | None:
    data = _channel_data(activity)
    value = data.get("teamsTeamId") or _nested_id(data, "team")
    return str(value) if value else None


def _tenant_id(activity: Mapping[str, Any]) -> str | None:
    conversation = activity.get("conversation")
    value = conversation.get("tenantId") if isinstance(conversation, Mapping) else None
    value = value or _nested_id(_channel_data(activity), "tenant")
    return str(value) if value else None


def _timestamp(activity: Mapping[str, Any]) -> datetime | None:
    value = activity.get("timestamp")
    if not isinstance(value, str) or not value:
        return None
    try:
        # Teams writes up to seven fractional digits (`…18.9534472Z`); Python 3.11 takes them.
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _require_mapping(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise MalformedPayloadError(f"{what} is not a JSON object")
    return value
