"""The error tree every adapter raises. The type of the error sets the policy (HTTP status, retry)."""

from __future__ import annotations


class ChannelError(Exception):
    """Base class of every adapter error."""


class InvalidSignatureError(ChannelError):
    """The request was not signed by the vendor (or is too old): answered 401 with a generic body."""


class MalformedPayloadError(ChannelError):
    """The body cannot be read (bad JSON, missing required header): answered 400."""


class UnsupportedEventError(ChannelError):
    """An event type the adapter does not know. Stored and logged, never silently dropped."""


class ChannelNotConfiguredError(ChannelError):
    """The project has no integration for this channel (or it lacks a required setting)."""


class DeliveryError(ChannelError):
    """Raised inside an adapter's outbound code; `deliver` turns it into a DeliveryResult."""

    def __init__(self, code: str, detail: str = "", *, retryable: bool, retry_after: float | None = None):
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail
        self.retryable = retryable
        self.retry_after = retry_after


class RetryableDeliveryError(DeliveryError):
    """A failure that can heal: 429, 5xx, timeouts, connection errors."""

    def __init__(self, code: str, detail: str = "", *, retry_after: float | None = None):
        super().__init__(code, detail, retryable=True, retry_after=retry_after)


class PermanentDeliveryError(DeliveryError):
    """A failure that cannot heal: revoked token, unknown channel, rejected mailbox."""

    def __init__(self, code: str, detail: str = ""):
        super().__init__(code, detail, retryable=False)
