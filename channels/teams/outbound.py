"""Replies to Teams: the activity we post, where we post it, and how fast we may.

Microsoft "Send and receive messages" / Bot Connector API reference: a reply in a channel
thread is `POST {serviceUrl}v3/conversations/{conversationId}/activities/{rootActivityId}`
with the thread's conversation id (`…;messageid=<root>`); in a chat there are no threads
and we post to `…/conversations/{conversationId}/activities`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from channels.base import OutboundReply
from channels.errors import PermanentDeliveryError
from channels.teams.inbound import MESSAGE_ID_MARKER


class RateWindow(NamedTuple):
    """At most `max_operations` calls in any `period_seconds`."""

    period_seconds: float
    max_operations: int


# Microsoft "Optimize your bot with rate limiting in Teams", per bot per thread, "Send to
# conversation" (a thread being a 1:1 chat, a group chat or a whole channel in a team).
# The doc warns the values "are for estimation only": 429 + Retry-After stays the authority.
SEND_RATE_LIMITS: tuple[RateWindow, ...] = (
    RateWindow(1, 7),
    RateWindow(2, 8),
    RateWindow(30, 60),
    RateWindow(3600, 1800),
)
# What the delivery pipeline paces with per `rate_limit_key` (all windows at once, shared by
# every worker: services/pacing.py): the 1 s, 2 s and 30 s windows. The hourly window "applies
# only if multiple bot messages are sent to a single user" (same doc) and is left to
# 429 + Retry-After.
PACING_WINDOWS: tuple[RateWindow, ...] = SEND_RATE_LIMITS[:3]
# The steady rate those windows allow (the 30 s window binds: 60 per 30 s).
RATE_LIMIT_PER_THREAD_PER_SECOND = 60 / 30
# The same doc, per thread for all bots together.
ALL_BOTS_SEND_RATE_LIMITS: tuple[RateWindow, ...] = (RateWindow(1, 14), RateWindow(2, 16))
# The same doc: the global limit per app per tenant (the page now says 50 RPS; 30 is the
# earlier, stricter figure, kept). Paced too, across all of a tenant's conversations.
GLOBAL_REQUESTS_PER_SECOND_PER_TENANT = 30
TENANT_PACING_WINDOWS: tuple[RateWindow, ...] = (RateWindow(1, GLOBAL_REQUESTS_PER_SECOND_PER_TENANT),)
# The key under which an activity carries its delivery id in `channelData` (our namespace:
# Teams passes unknown channelData members through and ignores them).
CHANNEL_DATA_KEY = "ticketwire"


@dataclass(frozen=True)
class ReplyTarget:
    """Where a reply goes, read from the ticket fields the inbound parse stored."""

    service_url: str
    conversation_id: str
    root_activity_id: str | None

    @property
    def base_conversation_id(self) -> str:
        """The conversation without `;messageid=…`: the channel or chat the limits apply to."""
        return self.conversation_id.partition(MESSAGE_ID_MARKER)[0]


def reply_target(thread: Mapping[str, Any]) -> ReplyTarget:
    """The ticket's coordinates; a ticket without them cannot be answered through Teams."""
    service_url = thread.get("teams_service_url")
    conversation_id = thread.get("teams_conversation_id")
    root = thread.get("teams_root_activity_id")
    if not isinstance(service_url, str) or not service_url:
        raise PermanentDeliveryError("missing_thread_fields", "ticket has no teams_service_url")
    if not isinstance(conversation_id, str) or not conversation_id:
        raise PermanentDeliveryError("missing_thread_fields", "ticket has no teams_conversation_id")
    return ReplyTarget(service_url, conversation_id, str(root) if root else None)


def build_activity(reply: OutboundReply, target: ReplyTarget, *, bot_id: str) -> dict[str, Any]:
    """The message activity for a reply.

    Attachments with a URL go in as links in the text: an activity with both text and an
    attachment is split by Teams into two messages and then answers without an id (Microsoft
    "Messages in bot conversations"), which would leave the delivery without a message id.
    """
    text = reply.text
    links = [f"[{a.filename}]({a.url})" for a in reply.attachments if a.url]
    if links:
        text = "\n\n".join([text, *links]) if text else "\n\n".join(links)
    activity: dict[str, Any] = {
        "type": "message",
        "text": text,
        "textFormat": "markdown",
        "from": {"id": bot_id},
        "conversation": {"id": target.conversation_id},
        # Bot Framework "Activity schema": channelData carries channel-specific content. The
        # delivery id travels with the post (SPEC "Delivery": a marker in the posted message).
        "channelData": {CHANNEL_DATA_KEY: {"deliveryId": reply.delivery_id}},
    }
    if target.root_activity_id:
        activity["replyToId"] = target.root_activity_id
    return activity


def rate_limit_key(reply: OutboundReply, *, app_id: str) -> str:
    """The bucket the per-bot-per-thread limits count in: this bot in this channel or chat."""
    conversation_id = reply.thread.get("teams_conversation_id") or reply.ticket_id
    return f"teams:{app_id}:{str(conversation_id).partition(MESSAGE_ID_MARKER)[0]}"


def tenant_rate_limit_key(reply: OutboundReply, *, app_id: str) -> str:
    """The bucket of the global limit per app per tenant (the customer's Teams tenant)."""
    return f"teams-tenant:{app_id}:{reply.thread.get('teams_tenant_id') or '-'}"
