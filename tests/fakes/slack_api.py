"""A local Slack Web API that the real slack-sdk `WebClient` talks to (point `base_url` at `api_url`).

It speaks Slack's shapes: every method answers HTTP 200 with `{"ok": true, ...}` or
`{"ok": false, "error": "<code>"}`; parameters are read from the query string, a form body or
a JSON body, whichever the client used (slack-sdk POSTs forms for most methods and JSON for
chat.postMessage / chat.update). Implemented: auth.test, users.info, chat.postMessage,
chat.update, conversations.replies, conversations.history.

Usage::

    with FakeSlack() as slack:
        slack.add_user("U1", real_name="Dana Scully", email="dana@example.com")
        root = slack.add_message("C1", "printer on fire", user="U1")
        adapter = SlackAdapter(SlackConfig(bot_token=slack.token, signing_secret="s",
                                           api_base_url=slack.api_url))
        ...
        slack.posts  # what chat.postMessage received, metadata included

Suites share one running server and call `reset()` between tests (see tests/slack/conftest.py).

Failures: `fail_next_with_rate_limit`, `fail_next_with_server_error`, `fail_next_with_timeout`
(optionally after the call took effect: the "unknown outcome" case) and `fail_next_with_error`.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from tests.fakes.http import Call, FakeServer, Reply

SlackMethod = Callable[[dict[str, Any]], dict[str, Any]]

# Slack API docs, chat.postMessage: "msg_too_long: Message text is too long" past 40,000 characters.
MAX_TEXT = 40_000


def _truthy(value: Any) -> bool:
    return str(value).lower() in {"1", "true"}


def _ok(**fields: Any) -> dict[str, Any]:
    return {"ok": True, **fields}


def _error(code: str, **fields: Any) -> dict[str, Any]:
    return {"ok": False, "error": code, **fields}


def _method_path(method: str | None) -> str | None:
    return rf"/api/{re.escape(method)}$" if method else None


def event_envelope(
    event: Mapping[str, Any], *, team_id: str = "T00FAKE00AA", event_id: str | None = "Ev00000001"
) -> dict[str, Any]:
    """An Events API `event_callback` body around `event`, as Slack sends it today."""
    body: dict[str, Any] = {
        "token": "verification-token-unused",
        "team_id": team_id,
        "api_app_id": "A00FAKEAPP01",
        "event": dict(event),
        "type": "event_callback",
        "event_time": int(Decimal(str(event.get("event_ts") or event.get("ts") or "0"))),
    }
    if event_id is not None:
        body["event_id"] = event_id
    return body


class FakeSlack(FakeServer):
    """A Slack workspace with users, channels' messages and a bot, reachable over HTTP."""

    def __init__(
        self,
        *,
        token: str = "xoxb-fake-token",
        team_id: str = "T00FAKE00AA",
        bot_user_id: str = "U00FAKEBOT01",
        bot_id: str = "B00FAKEBOT01",
    ) -> None:
        super().__init__()
        self.token = token
        self.team_id = team_id
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.users: dict[str, dict[str, Any]] = {}
        self.messages: dict[str, list[dict[str, Any]]] = {}
        self.posts: list[dict[str, Any]] = []  # parameters of each accepted chat.postMessage
        self.updates: list[dict[str, Any]] = []  # parameters of each accepted chat.update
        self._state = threading.RLock()
        self._slow: list[tuple[str | None, float]] = []
        self._seq = 0
        self._epoch = int(time.time())
        self._methods: dict[str, SlackMethod] = {
            "auth.test": self._auth_test,
            "users.info": self._users_info,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "conversations.replies": self._conversations_replies,
            "conversations.history": self._conversations_history,
        }
        for verb in ("GET", "POST"):
            self.route(verb, r"/api/(?P<method>[\w.]+)", self._handle)

    def __enter__(self) -> FakeSlack:
        self.start()
        return self

    @property
    def api_url(self) -> str:
        """The `base_url` to give `WebClient` (ends with a slash, like https://slack.com/api/)."""
        return self.url + "/api/"

    def reset(self) -> None:
        """Forget users, messages, recorded calls and pending failures; keep serving.

        Starting and stopping a server costs about half a second (`serve_forever` polls for
        shutdown every 0.5 s), so test suites share one server and reset it between tests.
        """
        with self._state, self._lock:
            self.users.clear()
            self.messages.clear()
            self.posts.clear()
            self.updates.clear()
            self._slow.clear()
            self.calls.clear()
            self._failures.clear()

    def calls_of(self, method: str) -> list[Call]:
        """Recorded calls of one Web API method, e.g. `calls_of("users.info")`."""
        return self.calls_to(_method_path(method) or "")

    # -- workspace state -----------------------------------------------------------------
    def add_user(
        self,
        user_id: str,
        *,
        real_name: str = "",
        display_name: str = "",
        email: str | None = None,
        is_bot: bool = False,
        team_id: str | None = None,
    ) -> dict[str, Any]:
        """Register a user as users.info returns it (Slack API docs, users.info)."""
        profile: dict[str, Any] = {"real_name": real_name, "display_name": display_name}
        if email is not None:
            profile["email"] = email
        user = {
            "id": user_id,
            "team_id": team_id or self.team_id,
            "name": (display_name or real_name or user_id).lower().replace(" ", "."),
            "deleted": False,
            "real_name": real_name,
            "is_bot": is_bot,
            "is_app_user": False,
            "profile": profile,
        }
        with self._state:
            self.users[user_id] = user
        return user

    def add_message(
        self,
        channel: str,
        text: str = "",
        *,
        user: str | None = None,
        ts: str | None = None,
        thread_ts: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """Store a message in `channel` as if someone had posted it; returns the stored message."""
        with self._state:
            message: dict[str, Any] = {"type": "message", "text": text, "ts": ts or self._next_ts(), **fields}
            if user is not None:
                message["user"] = user
            if thread_ts is not None:
                message["thread_ts"] = thread_ts
            self._store(channel, message)
            return message

    def _next_ts(self) -> str:
        self._seq += 1
        return f"{self._epoch + self._seq // 1_000_000}.{self._seq % 1_000_000:06d}"

    def _store(self, channel: str, message: dict[str, Any]) -> None:
        thread_ts = message.get("thread_ts")
        if thread_ts and thread_ts != message["ts"]:
            parent = self._find(channel, thread_ts)
            if parent is not None:  # Slack marks the parent once a thread starts
                parent["thread_ts"] = parent["ts"]
                parent["reply_count"] = parent.get("reply_count", 0) + 1
        self.messages.setdefault(channel, []).append(message)

    def _find(self, channel: str, ts: str) -> dict[str, Any] | None:
        return next((m for m in self.messages.get(channel, []) if m["ts"] == ts), None)

    # -- failures ------------------------------------------------------------------------
    def fail_next_with_rate_limit(
        self, *, retry_after: int = 30, times: int = 1, method: str | None = None
    ) -> None:
        """HTTP 429 with Retry-After, as Slack's rate limiter answers (Slack API docs, "Rate limits")."""
        reply = Reply(429, _error("ratelimited"), headers={"Retry-After": str(retry_after)})
        self.fail_next(reply, times, path=_method_path(method))

    def fail_next_with_server_error(
        self, *, status: int = 500, times: int = 1, method: str | None = None
    ) -> None:
        """A 5xx with an HTML body, as a load balancer in front of Slack answers."""
        reply = Reply(status, "<html><body>Service Unavailable</body></html>", {"Content-Type": "text/html"})
        self.fail_next(reply, times, path=_method_path(method))

    def fail_next_with_timeout(
        self,
        *,
        delay: float = 2.0,
        times: int = 1,
        method: str | None = None,
        after_processing: bool = False,
    ) -> None:
        """Answer only after `delay` seconds (make it longer than the client's timeout).

        With `after_processing=True` the call takes effect first (a post is stored) and only the
        answer is late: the outcome a client cannot know, which `find_delivered` reconciles.
        """
        if after_processing:
            with self._state:
                self._slow.extend([(method, delay)] * times)
        else:
            self.fail_next(Reply(200, _ok(), delay=delay), times, path=_method_path(method))

    def fail_next_with_error(
        self, error: str, *, times: int = 1, method: str | None = None, status: int = 200
    ) -> None:
        """`{"ok": false, "error": error}`, e.g. channel_not_found, invalid_auth, ratelimited."""
        self.fail_next(Reply(status, _error(error)), times, path=_method_path(method))

    # -- dispatch ------------------------------------------------------------------------
    def _params(self, call: Call) -> dict[str, Any]:
        params: dict[str, Any] = dict(call.query)
        content_type = call.headers.get("content-type", "")
        if call.body and content_type.startswith("application/json"):
            params.update(call.json())
        elif call.body:
            params.update(call.form())
        return params

    def _authorised(self, call: Call, params: dict[str, Any]) -> str | None:
        auth = call.headers.get("authorization", "")
        token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else params.pop("token", None)
        if not token:
            return "not_authed"
        return None if token == self.token else "invalid_auth"

    def _handle(self, call: Call, match: re.Match[str]) -> Reply:
        method = match.group("method")
        handler = self._methods.get(method)
        if handler is None:
            return Reply(404, _error("unknown_method", req_method=method))
        params = self._params(call)
        auth_error = self._authorised(call, params)
        if auth_error:
            return Reply(200, _error(auth_error))
        with self._state:
            body = handler(params)
            delay = 0.0
            for i, (slow_method, slow_delay) in enumerate(self._slow):
                if slow_method in (None, method):
                    delay = slow_delay
                    del self._slow[i]
                    break
        return Reply(200, body, delay=delay)

    # -- methods -------------------------------------------------------------------------
    def _auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return _ok(
            url="https://fake-workspace.slack.com/",
            team="Fake Workspace",
            user="ticketwire",
            team_id=self.team_id,
            user_id=self.bot_user_id,
            bot_id=self.bot_id,
            is_enterprise_install=False,
        )

    def _users_info(self, params: dict[str, Any]) -> dict[str, Any]:
        user = self.users.get(str(params.get("user", "")))
        return _ok(user=user) if user else _error("user_not_found")

    def _render(self, message: dict[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
        # Metadata is only returned when asked for (Slack API docs, "Message metadata").
        if _truthy(params.get("include_all_metadata")):
            return dict(message)
        return {k: v for k, v in message.items() if k != "metadata"}

    def _chat_post_message(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = str(params.get("channel") or "")
        if not channel:
            return _error("channel_not_found")
        text = str(params.get("text") or "")
        if not (text or params.get("blocks") or params.get("attachments")):
            return _error("no_text")
        if len(text) > MAX_TEXT:
            return _error("msg_too_long")
        metadata = params.get("metadata")
        if isinstance(metadata, str):  # form bodies carry metadata as a JSON string
            metadata = json.loads(metadata)
        message: dict[str, Any] = {
            "type": "message",
            "user": self.bot_user_id,
            "bot_id": self.bot_id,
            "app_id": "A00FAKEAPP01",
            "team": self.team_id,
            "text": text,
            "ts": self._next_ts(),
        }
        if params.get("username"):
            message["username"] = params["username"]
        if params.get("thread_ts"):
            message["thread_ts"] = str(params["thread_ts"])
        if metadata:
            message["metadata"] = metadata
        self._store(channel, message)
        self.posts.append({**params, "metadata": metadata, "ts": message["ts"]})
        return _ok(channel=channel, ts=message["ts"], message=self._render(message, {}))

    def _chat_update(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = str(params.get("channel") or "")
        if channel not in self.messages:
            return _error("channel_not_found")
        message = self._find(channel, str(params.get("ts") or ""))
        if message is None:
            return _error("message_not_found")
        if message.get("user") != self.bot_user_id:
            return _error("cant_update_message")
        message["text"] = str(params.get("text") or "")
        message["edited"] = {"user": self.bot_user_id, "ts": self._next_ts()}
        self.updates.append(dict(params))
        return _ok(channel=channel, ts=message["ts"], text=message["text"], message=self._render(message, {}))

    def _page(
        self, messages: list[dict[str, Any]], params: Mapping[str, Any], default_limit: int
    ) -> dict[str, Any]:
        cursor = str(params.get("cursor") or "")
        offset = int(base64.b64decode(cursor).decode().split(":")[1]) if cursor else 0
        limit = int(params.get("limit") or default_limit)
        page = messages[offset : offset + limit]
        more = offset + limit < len(messages)
        next_cursor = base64.b64encode(f"offset:{offset + limit}".encode()).decode() if more else ""
        return _ok(
            messages=[self._render(m, params) for m in page],
            has_more=more,
            response_metadata={"next_cursor": next_cursor},
        )

    @staticmethod
    def _in_range(ts: str, params: Mapping[str, Any]) -> bool:
        inclusive = _truthy(params.get("inclusive"))
        value = Decimal(ts)
        if params.get("oldest"):
            oldest = Decimal(str(params["oldest"]))
            if value < oldest or (value == oldest and not inclusive):
                return False
        if params.get("latest"):
            latest = Decimal(str(params["latest"]))
            if value > latest or (value == latest and not inclusive):
                return False
        return True

    def _conversations_replies(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = str(params.get("channel") or "")
        if channel not in self.messages:
            return _error("channel_not_found")
        target = self._find(channel, str(params.get("ts") or ""))
        if target is None:
            return _error("thread_not_found")
        root_ts = target.get("thread_ts") or target["ts"]
        parent = self._find(channel, root_ts) or target
        replies = sorted(
            (
                m
                for m in self.messages[channel]
                if m.get("thread_ts") == root_ts and m["ts"] != root_ts and self._in_range(m["ts"], params)
            ),
            key=lambda m: Decimal(m["ts"]),
        )
        # Slack puts the parent first whatever the time range.
        return self._page([parent, *replies], params, default_limit=1000)

    def _conversations_history(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = str(params.get("channel") or "")
        if channel not in self.messages:
            return _error("channel_not_found")
        top_level = sorted(
            (
                m
                for m in self.messages[channel]
                if (m.get("thread_ts") in (None, m["ts"]) or m.get("subtype") == "thread_broadcast")
                and self._in_range(m["ts"], params)
            ),
            key=lambda m: Decimal(m["ts"]),
            reverse=True,  # newest first
        )
        return self._page(top_level, params, default_limit=100)
