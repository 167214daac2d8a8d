"""Replies into a ticket's Slack thread with chat.postMessage, and the look-up of an earlier post.

Every post carries message metadata (Slack API docs, "Message metadata") naming our delivery
id, so `find_delivered` can tell, after a timeout, whether the post landed before sending again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from channels.base import DeliveryResult, OutboundReply
from channels.errors import DeliveryError, PermanentDeliveryError
from channels.slack.client import SlackClient
from channels.slack.markup import escape, to_mrkdwn

DELIVERY_EVENT_TYPE = "ticketwire_delivery"

# Slack API docs, "Rate limits" (Special tier): "chat.postMessage generally allows posting one
# message per second per channel, while also maintaining a workspace-wide limit." The delivery
# pipeline paces posts with a token bucket per `rate_limit_key`.
RATE_LIMIT_PER_CHANNEL_PER_SECOND = 1.0


def thread_of(reply: OutboundReply) -> tuple[str, str, str]:
    """(team id, channel id, thread root ts) of the ticket, as stored from `ticket_fields`."""
    thread: Mapping[str, Any] = reply.thread or {}
    try:
        return (
            str(thread.get("slack_team_id") or ""),
            str(thread["slack_channel_id"]),
            str(thread["slack_thread_ts"]),
        )
    except KeyError as exc:
        raise PermanentDeliveryError("invalid_thread", f"ticket has no Slack thread ({exc} missing)") from exc


def rate_limit_key(reply: OutboundReply) -> str:
    """The token-bucket key of a reply: one bucket per workspace channel."""
    thread = reply.thread or {}
    return f"slack:{thread.get('slack_team_id', '')}:{thread.get('slack_channel_id', '')}"


def delivery_metadata(delivery_id: str) -> dict[str, Any]:
    return {"event_type": DELIVERY_EVENT_TYPE, "event_payload": {"delivery_id": delivery_id}}


def reply_text(reply: OutboundReply) -> str:
    """The reply as Slack text, its files as links after it (chat.postMessage cannot attach
    files, and an upload would be a second message without our delivery metadata)."""
    text = to_mrkdwn(reply.text)
    links = "\n".join(f"<{a.url}|{escape(a.filename).replace('|', '/')}>" for a in reply.attachments if a.url)
    return "\n\n".join(part for part in (text, links) if part)


def post_reply(client: SlackClient, reply: OutboundReply) -> DeliveryResult:
    """Post the reply in the ticket's thread; DELIVERED with the posted message's ts."""
    try:
        _, channel, thread_ts = thread_of(reply)
        data = client.post_message(
            channel=channel,
            thread_ts=thread_ts,
            text=reply_text(reply),
            # Needs the chat:write.customize scope; without it Slack shows the app's name.
            username=reply.author_name or None,
            metadata=delivery_metadata(reply.delivery_id),
        )
    except DeliveryError as exc:
        return DeliveryResult.from_error(exc)
    return DeliveryResult.delivered(str(data["ts"]))


def find_delivery(client: SlackClient, reply: OutboundReply) -> DeliveryResult | None:
    """DELIVERED with the ts of an earlier post of this delivery in the thread, else None.

    When the thread cannot be read the answer is not "absent" but unknown: a RETRYABLE or
    FAILED result then stops the caller from posting a duplicate.
    """
    try:
        _, channel, thread_ts = thread_of(reply)
        for message in client.thread_messages(channel, thread_ts):
            metadata = message.get("metadata") or {}
            payload = metadata.get("event_payload") or {}
            if (
                metadata.get("event_type") == DELIVERY_EVENT_TYPE
                and payload.get("delivery_id") == reply.delivery_id
            ):
                return DeliveryResult.delivered(str(message["ts"]))
    except DeliveryError as exc:
        return DeliveryResult.from_error(exc)
    return None


def edit_message(client: SlackClient, channel: str, ts: str, text: str) -> DeliveryResult:
    """Replace the text of a message we posted (chat.update); `text` is Slack text already."""
    try:
        data = client.update_message(channel=channel, ts=ts, text=text)
    except DeliveryError as exc:
        return DeliveryResult.from_error(exc)
    return DeliveryResult.delivered(str(data.get("ts") or ts))
