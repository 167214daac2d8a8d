"""Slack Events API payloads → `InboundMessage`s.

`EVENT_PARSERS` maps an event type to its `parse_<event>` function; `IGNORED_ENVELOPES` and
`IGNORED_EVENTS` list what is known and deliberately dropped; anything else raises
`UnsupportedEventError` so it is stored and logged, never silently lost.

Deliberate decisions (see README.md):
- Direct messages (`channel_type` `im`/`mpim`, channel ids starting with `D`) are ignored:
  tickets come from team-visible channels, and a reply in a DM would read as the bot's own chat.
- Interactivity payloads (`block_actions`) are ignored: ticketwire posts no interactive
  components, so a click can only come from another app's message.
- Message subtypes other than plain, `file_share` and `thread_broadcast` are ignored, as are
  messages of any bot (they carry `bot_id`; our own replies too, which stops echo loops).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from channels.base import Attachment, Author, InboundMessage, KeyValueCache, MessageKind
from channels.errors import ChannelError, DeliveryError, MalformedPayloadError, UnsupportedEventError
from channels.slack.client import SlackClient
from channels.slack.markup import to_markdown

log = logging.getLogger(__name__)

CHANNEL = "slack"
USER_CACHE_TTL = 60 * 60  # users.info answers, names and emails change rarely
BOT_CACHE_TTL = 24 * 60 * 60  # auth.test: a token's bot user never changes

# Payload `type`s that are not Events API callbacks.
IGNORED_ENVELOPES = frozenset(
    {
        "url_verification",  # answered by `handshake`; nothing to ingest
        "app_rate_limited",  # Slack tells us it dropped events (Events API docs, "Rate limiting")
        "block_actions",  # interactivity: ticketwire posts no buttons or menus
    }
)

# Event types a Slack app subscription can deliver that carry no ticket content.
IGNORED_EVENTS = frozenset(
    {
        "reaction_removed",
        "member_joined_channel",
        "member_left_channel",
        "channel_left",
        "app_home_opened",
        "app_uninstalled",
        "tokens_revoked",
        "pin_added",
        "pin_removed",
        "link_shared",
        "file_shared",
        "file_created",
        "file_change",
        "file_deleted",
        "file_public",
    }
)

# Message subtypes that are customer content ("" = a plain message). Everything else
# (channel_join, channel_topic, bot_message, pinned_item, …) is ignored, as SPEC.md says.
HANDLED_SUBTYPES = frozenset({"", "file_share", "thread_broadcast"})
DIRECT_CHANNEL_TYPES = frozenset({"im", "mpim"})


class SlackLookupError(ChannelError):
    """A Web API look-up that parsing needs failed in a way that can heal: parse the event again later."""


# -- payload envelope ------------------------------------------------------------------------


def load_payload(body: bytes) -> dict[str, Any]:
    """The JSON object of an Events API body or of a form-encoded interactivity `payload=`."""
    try:
        if body.lstrip().startswith(b"payload="):
            # Slack API docs, "Handling user interaction": interactivity requests are
            # application/x-www-form-urlencoded with the JSON in a `payload` field.
            raw: str | bytes = parse_qs(body.decode())["payload"][0]
        else:
            raw = body
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, KeyError) as exc:
        raise MalformedPayloadError(f"Slack body is not a JSON payload: {type(exc).__name__}") from exc
    if not isinstance(data, dict):
        raise MalformedPayloadError("Slack payload is not a JSON object")
    return data


def event_id_of(payload: Mapping[str, Any]) -> str:
    """Slack's `event_id`, or a stable id derived from the payload when the envelope has none.

    Old envelopes (before 2018, see fixture reaction_added__old_envelope_in_dm.json) and
    interactivity payloads carry no `event_id`; Slack's retries of them repeat the same body,
    so an id built from what identifies the event de-duplicates retries just as well.
    """
    if payload.get("event_id"):
        return str(payload["event_id"])
    kind = str(payload.get("type") or "")
    team = str(payload.get("team_id") or (payload.get("team") or {}).get("id") or "")
    parts: list[str]
    if kind == "event_callback" and isinstance(payload.get("event"), dict):
        event = payload["event"]
        item = event.get("item") if isinstance(event.get("item"), dict) else {}
        event_type = str(event.get("type") or "")
        channel = event.get("channel") or item.get("channel") or ""
        ts = event.get("ts") or item.get("ts") or event.get("event_ts") or ""
        parts = [team, event_type, str(channel), str(ts)]
        if event_type.startswith("reaction_"):
            parts += [str(event.get("reaction") or ""), str(event.get("user") or "")]
    elif kind == "url_verification":
        parts = [kind, str(payload.get("challenge") or "")]
    elif payload.get("trigger_id"):  # interactivity: one trigger_id per user action
        parts = [team, kind, str(payload["trigger_id"])]
    else:
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        parts = [team, kind, hashlib.sha256(canonical).hexdigest()[:32]]
    return "derived:" + ":".join(parts)


# -- look-ups --------------------------------------------------------------------------------


class SlackDirectory:
    """Who is who in the workspace: the bot's own user id (auth.test) and people (users.info), cached."""

    def __init__(
        self, client: SlackClient, cache: KeyValueCache, *, token: str, bot_user_id: str | None = None
    ) -> None:
        self._client = client
        self._cache = cache
        self._bot_user_id = bot_user_id
        # Keyed by a digest of the token, never the token itself.
        self._bot_key = "slack:auth.test:" + hashlib.sha256(token.encode()).hexdigest()[:16]

    def bot_user_id(self) -> str | None:
        """Our bot's user id: from the config, else learned once with auth.test and cached."""
        if self._bot_user_id:
            return self._bot_user_id
        cached = self._cache.get(self._bot_key)
        if cached:
            self._bot_user_id = str(cached)
            return self._bot_user_id
        try:
            user_id = self._client.auth_test().get("user_id")
        except DeliveryError as exc:
            # Our own messages also carry bot_id, which is checked first; without auth.test we
            # only lose the belt-and-braces check, not the echo protection.
            log.warning("Slack auth.test failed (%s); own-user check skipped", exc.code)
            return None
        if user_id:
            self._bot_user_id = str(user_id)
            self._cache.set(self._bot_key, self._bot_user_id, BOT_CACHE_TTL)
        return self._bot_user_id

    def profile(self, team_id: str, user_id: str) -> Mapping[str, str | None]:
        """`{"name", "email"}` of a user from users.info, cached; empty when Slack cannot say."""
        key = f"slack:users.info:{team_id}:{user_id}"
        cached = self._cache.get(key)
        if cached is not None:
            return dict(cached)
        try:
            user = self._client.user_info(user_id)
        except DeliveryError as exc:
            # The message still lands, only without a name; not cached so the next one retries.
            log.warning("Slack users.info failed for %s (%s)", user_id, exc.code)
            return {}
        profile = user.get("profile") or {}
        value = {
            "name": profile.get("real_name")
            or profile.get("display_name")
            or user.get("real_name")
            or user.get("name")
            or None,
            # Needs the users:read.email scope; absent without it.
            "email": profile.get("email") or None,
        }
        self._cache.set(key, value, USER_CACHE_TTL)
        return value

    def author(self, team_id: str, user_id: str) -> Author:
        info = self.profile(team_id, user_id)
        # Whether a workspace member is "support" is the service's decision, not Slack's.
        return Author(
            external_id=user_id,
            name=info.get("name"),
            email=info.get("email"),
            distinct_id=f"slack:{user_id}",
            is_team_member=False,
        )


# -- parsing ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ParseContext:
    """What the parse functions need: the integration settings and the look-ups of one workspace."""

    channel_ids: frozenset[str]
    ticket_emoji: str
    directory: SlackDirectory
    client: SlackClient
    team_id: str = ""


def ts_to_datetime(ts: str) -> datetime:
    """A Slack `ts` ("1719209506.817929": Unix seconds and microseconds) as an aware datetime."""
    seconds, _, fraction = str(ts).partition(".")
    micros = int((fraction + "000000")[:6])
    return datetime.fromtimestamp(int(seconds), UTC).replace(microsecond=micros)


def _is_direct(event: Mapping[str, Any], channel: str) -> bool:
    return event.get("channel_type") in DIRECT_CHANNEL_TYPES or channel.startswith("D")


def _ignored_sender(message: Mapping[str, Any], ctx: ParseContext) -> bool:
    """Bots (ours included), bot_message posts and messages without a human author."""
    if message.get("bot_id") or message.get("subtype") == "bot_message":
        return True
    user = message.get("user")
    return not user or user == ctx.directory.bot_user_id()


def _attachments(files: Iterable[Mapping[str, Any]] | None) -> tuple[Attachment, ...]:
    # References only: downloading url_private needs the bot token (files:read), which is the
    # service's business, not the parser's.
    return tuple(
        Attachment(
            filename=f.get("name") or f.get("title") or f["id"],
            content_type=f.get("mimetype") or None,
            size=f.get("size"),
            url=f.get("url_private"),
            external_id=f["id"],
        )
        for f in files or ()
        if f.get("id") and f.get("mode") != "tombstone"  # tombstone = a deleted file's placeholder
    )


def _file_ids(message: Mapping[str, Any]) -> list[str]:
    return [f.get("id", "") for f in message.get("files") or ()]


def _identity(ctx: ParseContext, channel: str, ts: str, root_ts: str) -> dict[str, Any]:
    """external_id, thread_key and ticket_fields of the message `ts` in the thread `root_ts`."""
    return {
        # The same ts reaches us as `message` and as `app_mention` when a top-level message in a
        # support channel mentions the bot: one external id lets the ingest service keep one.
        "external_id": f"{channel}:{ts}",
        "thread_key": f"{ctx.team_id}:{channel}:{root_ts}",
        "ticket_fields": {
            "slack_team_id": ctx.team_id,
            "slack_channel_id": channel,
            "slack_thread_ts": root_ts,
        },
    }


def _to_inbound(
    ctx: ParseContext,
    channel: str,
    message: Mapping[str, Any],
    *,
    detail: str | None,
    creates_ticket: bool,
    kind: MessageKind = MessageKind.NEW,
    sent_ts: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> InboundMessage:
    ts = str(message["ts"])
    root = str(message.get("thread_ts") or ts)
    team = ctx.team_id
    return InboundMessage(
        channel=CHANNEL,
        **_identity(ctx, channel, ts, root),
        author=ctx.directory.author(team, str(message["user"])),
        # `text` is Slack's own rendering of the message; `blocks` may lag behind it on edits
        # (fixture message__message_changed.json: text "edited message", blocks "hi!").
        text=to_markdown(
            str(message.get("text") or ""),
            user_name=lambda user_id: ctx.directory.profile(team, user_id).get("name"),
        ),
        channel_detail=detail,
        attachments=_attachments(message.get("files")),
        sent_at=ts_to_datetime(sent_ts or ts),
        kind=kind,
        creates_ticket=creates_ticket,
        metadata=dict(metadata or {}),
    )


def parse_message(event: Mapping[str, Any], ctx: ParseContext) -> list[InboundMessage]:
    """`message`: a support-channel post opens a ticket, a thread reply joins one, edits and deletes follow."""
    channel = str(event["channel"])
    if _is_direct(event, channel):
        return []
    subtype = str(event.get("subtype") or "")
    if subtype == "message_changed":
        return _parse_message_changed(event, ctx, channel)
    if subtype == "message_deleted":
        return _parse_message_deleted(event, ctx, channel)
    if subtype not in HANDLED_SUBTYPES or _ignored_sender(event, ctx):
        return []
    ts, thread_ts = str(event["ts"]), event.get("thread_ts")
    if thread_ts and thread_ts != ts:  # a thread reply (thread_broadcast included)
        return [_to_inbound(ctx, channel, event, detail=None, creates_ticket=False)]
    if channel not in ctx.channel_ids:
        return []
    return [_to_inbound(ctx, channel, event, detail="slack_channel_message", creates_ticket=True)]


def _parse_message_changed(event: Mapping[str, Any], ctx: ParseContext, channel: str) -> list[InboundMessage]:
    new = event.get("message") or {}
    old = event.get("previous_message") or {}
    if str(new.get("subtype") or "") not in HANDLED_SUBTYPES or _ignored_sender(new, ctx):
        return []
    # Slack also sends message_changed when it unfurls a link or a thread's reply count moves;
    # the text and files are unchanged then, and there is nothing to edit.
    if old and new.get("text") == old.get("text") and _file_ids(new) == _file_ids(old):
        return []
    return [
        _to_inbound(
            ctx,
            channel,
            new,
            detail=None,
            creates_ticket=False,
            kind=MessageKind.EDIT,
            sent_ts=str(event.get("ts") or new["ts"]),
        )
    ]


def _parse_message_deleted(event: Mapping[str, Any], ctx: ParseContext, channel: str) -> list[InboundMessage]:
    old = event.get("previous_message") or {}
    deleted_ts = str(event.get("deleted_ts") or old.get("ts") or "")
    if not deleted_ts:
        raise MalformedPayloadError("Slack message_deleted without deleted_ts")
    if old and _ignored_sender(old, ctx):
        return []
    user = old.get("user")
    root = str(old.get("thread_ts") or deleted_ts)
    return [
        InboundMessage(
            channel=CHANNEL,
            **_identity(ctx, channel, deleted_ts, root),
            author=Author(external_id=user, distinct_id=f"slack:{user}") if user else Author(),
            sent_at=ts_to_datetime(str(event.get("ts") or deleted_ts)),
            kind=MessageKind.DELETE,
        )
    ]


def parse_app_mention(event: Mapping[str, Any], ctx: ParseContext) -> list[InboundMessage]:
    """`app_mention`: someone mentioned the bot in any channel it is in → a ticket."""
    channel = str(event["channel"])
    if _is_direct(event, channel) or _ignored_sender(event, ctx):
        return []
    return [_to_inbound(ctx, channel, event, detail="slack_bot_mention", creates_ticket=True)]


def parse_reaction_added(event: Mapping[str, Any], ctx: ParseContext) -> list[InboundMessage]:
    """`reaction_added` with the ticket emoji → a ticket seeded from the reacted message."""
    item = event.get("item") or {}
    # Skin tones arrive as "ticket::skin-tone-2".
    reaction = str(event.get("reaction") or "").split("::", 1)[0]
    if item.get("type") != "message" or reaction != ctx.ticket_emoji:
        return []
    channel, ts = str(item["channel"]), str(item["ts"])
    if _is_direct(event, channel):
        return []
    bot = ctx.directory.bot_user_id()
    if bot and bot in (event.get("user"), event.get("item_user")):
        return []  # our own reaction, or a reaction on one of our replies
    try:
        message = ctx.client.message_at(channel, ts)
    except DeliveryError as exc:
        if exc.retryable:
            raise SlackLookupError(f"could not fetch the reacted Slack message: {exc.code}") from exc
        log.warning("reacted Slack message %s:%s not readable (%s)", channel, ts, exc.code)
        return []
    if message is None:
        return []
    if str(message.get("subtype") or "") not in HANDLED_SUBTYPES or _ignored_sender(message, ctx):
        return []
    return [
        _to_inbound(
            ctx,
            channel,
            message,
            detail="slack_emoji_reaction",
            creates_ticket=True,
            metadata={"slack_reacted_by": event.get("user")},
        )
    ]


Parser = Callable[[Mapping[str, Any], ParseContext], list[InboundMessage]]

EVENT_PARSERS: dict[str, Parser] = {
    "message": parse_message,
    "app_mention": parse_app_mention,
    "reaction_added": parse_reaction_added,
}


def parse_payload(payload: Mapping[str, Any], ctx: ParseContext) -> list[InboundMessage]:
    """Normalise one Slack payload; [] when it is known and ignored."""
    kind = payload.get("type")
    if kind in IGNORED_ENVELOPES:
        return []
    if kind != "event_callback":
        raise UnsupportedEventError(f"Slack payload type {kind!r}")
    event = payload.get("event")
    team_id = payload.get("team_id")
    if not isinstance(event, dict) or not team_id:
        raise MalformedPayloadError("Slack event_callback without event or team_id")
    event_type = event.get("type")
    parser = EVENT_PARSERS.get(str(event_type))
    if parser is None:
        if event_type in IGNORED_EVENTS:
            return []
        raise UnsupportedEventError(f"Slack event type {event_type!r}")
    try:
        return parser(event, dataclasses.replace(ctx, team_id=str(team_id)))
    except KeyError as exc:
        raise MalformedPayloadError(f"Slack {event_type} event lacks {exc}") from exc
