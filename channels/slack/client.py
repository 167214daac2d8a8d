"""The one Slack Web API client setup: slack-sdk's `WebClient` and the translation of its failures.

Every Web API call of the adapter goes through `SlackClient`, which turns slack-sdk exceptions
into `RetryableDeliveryError` / `PermanentDeliveryError`, so inbound look-ups and outbound
delivery share one rule for what can heal.
"""

from __future__ import annotations

import http.client
import re
import urllib.error
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web import SlackResponse

from channels.errors import DeliveryError, PermanentDeliveryError, RetryableDeliveryError

DEFAULT_TIMEOUT = 10.0
_ERROR_CODE = re.compile(r"[a-z][a-z0-9_]*")

# Slack API docs list these `error` strings on most methods as conditions that heal by themselves
# ("The server could not complete your operation(s) without encountering an error, likely due to
# a transient issue on our end"); `ratelimited` can also arrive with HTTP 200.
TRANSIENT_ERRORS = frozenset(
    {"ratelimited", "rate_limited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)


def build_web_client(*, token: str, base_url: str, timeout: float = DEFAULT_TIMEOUT) -> WebClient:
    """A `WebClient` pointed at `base_url` that never retries by itself.

    slack-sdk retries connection errors once by default (`default_retry_handlers()`); retries are
    the delivery pipeline's job (it honours Retry-After and keeps the attempt count), so none here.
    """
    return WebClient(token=token, base_url=base_url, timeout=timeout, retry_handlers=[])  # type: ignore[arg-type]


def _retry_after(headers: Mapping[str, Any]) -> float | None:
    for key, value in headers.items():
        if key.lower() == "retry-after":
            if isinstance(value, list):  # some slack-sdk code paths keep header values in lists
                value = value[0] if value else None
            try:
                return max(0.0, float(value))
            except (TypeError, ValueError):
                return None
    return None


def translate_error(method: str, exc: Exception) -> DeliveryError:
    """Classify a failed Web API call: 429, 5xx, transient Slack errors, timeouts → retryable."""
    if isinstance(exc, SlackApiError):
        response: SlackResponse = exc.response
        status = response.status_code
        data = response.data if isinstance(response.data, dict) else {}
        # Slack's error codes are snake_case words; anything else is slack-sdk's description of a
        # non-JSON body (an HTML error page), which must not become an error code.
        error = str(data.get("error") or "")
        error = error if _ERROR_CODE.fullmatch(error) else ""
        retry_after = _retry_after(response.headers or {})
        if status == 429:
            return RetryableDeliveryError(
                "ratelimited", f"{method}: HTTP 429 from Slack", retry_after=retry_after
            )
        if status >= 500:
            return RetryableDeliveryError(f"http_{status}", f"{method}: HTTP {status} from Slack")
        code = error or f"http_{status}"
        detail = f"{method}: {code}"
        if data.get("needed"):  # missing_scope names the scope to add to the app
            detail += f" (needed scope: {data['needed']})"
        if code in TRANSIENT_ERRORS:
            return RetryableDeliveryError(code, detail, retry_after=retry_after)
        return PermanentDeliveryError(code, detail)
    if isinstance(exc, TimeoutError) or (
        isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, TimeoutError)
    ):
        return RetryableDeliveryError("timeout", f"{method}: no answer from Slack in time")
    if isinstance(exc, http.client.HTTPException | OSError):  # URLError, ConnectionError, …
        return RetryableDeliveryError("connection_error", f"{method}: {type(exc).__name__}")
    if isinstance(exc, SlackClientError):
        return PermanentDeliveryError("client_error", f"{method}: {exc}")
    raise exc


class SlackClient:
    """The Web API methods ticketwire uses, each raising a DeliveryError subclass on failure."""

    def __init__(self, web: WebClient) -> None:
        self.web = web

    def _call(self, method: str, fn: Callable[..., SlackResponse], **kwargs: Any) -> dict[str, Any]:
        try:
            response = fn(**kwargs)
        except Exception as exc:  # translate_error re-raises what it does not know
            raise translate_error(method, exc) from exc
        return dict(response.data) if isinstance(response.data, dict) else {}

    def auth_test(self) -> dict[str, Any]:
        return self._call("auth.test", self.web.auth_test)

    def user_info(self, user_id: str) -> dict[str, Any]:
        return self._call("users.info", self.web.users_info, user=user_id).get("user") or {}

    def message_at(self, channel: str, ts: str) -> dict[str, Any] | None:
        """The message at `ts` in `channel`, thread reply or not; None when Slack has none.

        Slack API docs, "Retrieving messages": conversations.history only holds top-level
        messages, conversations.replies takes the ts of any message in a thread. Slack puts the
        thread's parent first whatever the time range, so the range is pinned to `ts` exactly
        and the message is picked by its ts.
        """
        data = self._call(
            "conversations.replies",
            self.web.conversations_replies,
            channel=channel,
            ts=ts,
            oldest=ts,
            latest=ts,
            inclusive=True,
            limit=2,
        )
        return next((m for m in data.get("messages", []) if m.get("ts") == ts), None)

    def thread_messages(
        self, channel: str, thread_ts: str, *, page_size: int = 200
    ) -> Iterator[dict[str, Any]]:
        """Every message of a thread with its metadata, following conversations.replies cursors."""
        cursor: str | None = None
        while True:
            data = self._call(
                "conversations.replies",
                self.web.conversations_replies,
                channel=channel,
                ts=thread_ts,
                include_all_metadata=True,
                limit=page_size,
                cursor=cursor,
            )
            yield from data.get("messages", [])
            cursor = (data.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                return

    def post_message(self, **kwargs: Any) -> dict[str, Any]:
        return self._call("chat.postMessage", self.web.chat_postMessage, **kwargs)

    def update_message(self, **kwargs: Any) -> dict[str, Any]:
        return self._call("chat.update", self.web.chat_update, **kwargs)
