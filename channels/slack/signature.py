"""Slack request signing, version v0 (Slack API docs, "Verifying requests from Slack").

Slack signs every Events API and interactivity request: `X-Slack-Signature` is `v0=` followed by
the hex HMAC-SHA256 of `v0:{X-Slack-Request-Timestamp}:{raw body}` keyed with the app's signing
secret. The raw bytes must be used as received: re-serialised JSON would not match.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping

from channels.errors import InvalidSignatureError

VERSION = "v0"
SIGNATURE_HEADER = "x-slack-signature"
TIMESTAMP_HEADER = "x-slack-request-timestamp"
# Slack's doc recommends rejecting requests older than five minutes to stop replay attacks;
# slack_sdk's SignatureVerifier uses the same window in both directions.
MAX_AGE_SECONDS = 5 * 60


def sign(body: bytes, secret: str, timestamp: int | str) -> str:
    """The `X-Slack-Signature` value for `body` sent at `timestamp` (Unix seconds)."""
    base = f"{VERSION}:{timestamp}:".encode() + body
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return f"{VERSION}={digest}"


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return value


class SlackSigner:
    """Signs and verifies Slack requests with one signing secret and an injectable clock."""

    def __init__(self, signing_secret: str, *, clock: Callable[[], float] | None = None) -> None:
        self._secret = signing_secret
        self._clock = clock or time.time

    def sign(self, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
        """The two headers Slack would send with `body` (timestamp defaults to the clock's now)."""
        ts = int(self._clock()) if timestamp is None else timestamp
        return {TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: sign(body, self._secret, ts)}

    def verify(self, body: bytes, headers: Mapping[str, str]) -> None:
        """Raise InvalidSignatureError unless Slack signed `body` within the last five minutes."""
        timestamp = _header(headers, TIMESTAMP_HEADER)
        signature = _header(headers, SIGNATURE_HEADER)
        if not timestamp or not signature:
            raise InvalidSignatureError("missing Slack signature headers")
        try:
            sent_at = int(timestamp)
        except ValueError:
            raise InvalidSignatureError("malformed Slack request timestamp") from None
        if abs(self._clock() - sent_at) > MAX_AGE_SECONDS:
            raise InvalidSignatureError("stale Slack request timestamp")
        expected = sign(body, self._secret, timestamp)
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            raise InvalidSignatureError("Slack signature mismatch")
