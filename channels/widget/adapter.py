"""The website widget channel: PostHog's own support widget (posthog-js `conversations`).

Unlike the other channels the widget has no vendor to call back: a visitor's message is
stored synchronously by the public widget API (the SDK needs the new ticket id in the
response), and a team reply is "delivered" the moment it is stored, because the visitor's
browser reads it through `GET /api/conversations/v1/widget/messages/{ticket_id}` (the SDK
polls every 5 s while the widget is open, 15 s while it is closed).

What is left for the adapter: the project's widget settings (`WidgetConfig`), the identity
verification posthog-js relies on (`sign_identity` / `verify_identity`: hex HMAC-SHA256 of
the distinct id with the project's identity secret, compared in constant time), the
allowed-domains rule (`origin_allowed`), and `deliver`, which reports DELIVERED at once.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from channels.base import (
    DeliveryResult,
    InboundMessage,
    KeyValueCache,
    OutboundReply,
    RawEvent,
    RawRequest,
    RawResponse,
)
from channels.errors import ChannelNotConfiguredError, InvalidSignatureError, UnsupportedEventError

WIDGET_POSITIONS = ("bottom_right", "bottom_left", "top_right", "top_left")
_COLOR = re.compile(r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")
_TEXT_LIMITS = {
    "greeting_text": 500,
    "placeholder_text": 200,
    "identification_form_title": 200,
    "identification_form_description": 500,
}


@dataclass(frozen=True)
class WidgetConfig:
    """A project's widget settings (DESIGN.md "Integrations API", channel `widget`).

    Everything here is public (it is what `/array/{token}/config` tells the SDK) except
    `identity_secret`, which is stored encrypted and never returned. Defaults follow
    SPEC.md: enabled, no email or name required, no domain restriction.
    """

    allowed_domains: tuple[str, ...] = ()
    enabled: bool = True
    widget_enabled: bool = True
    greeting_text: str = "Hey, how can I help you today?"
    color: str = "#1d4aff"
    placeholder_text: str = "Type your message..."
    require_email: bool = False
    collect_name: bool = False
    identification_form_title: str = "Before we start..."
    identification_form_description: str = "Please provide your details so we can help you better."
    widget_position: str = "bottom_right"
    identity_secret: str = field(default="", repr=False)
    # posthog-js sends only identity_distinct_id + identity_hash once a site calls
    # posthog.setIdentity(); the link to the anonymous session's tickets comes from the
    # `$create_alias` / `$identify` event it captures at the same time (see services/widget).
    link_anonymous_on_identify: bool = True
    # Minutes a team reply may stay unread before the visitor (if they left an email) is
    # told by email; None = the scheduler's default.
    unread_notification_minutes: int | None = None
    rate_limit_per_session_per_minute: int = 30
    rate_limit_per_token_per_hour: int = 3600

    def __post_init__(self) -> None:
        if not _COLOR.match(self.color):
            # The SDK writes the colour into a stylesheet: only plain hex colours are safe.
            raise ChannelNotConfiguredError("widget color must be a hex colour such as #1d4aff")
        if self.widget_position not in WIDGET_POSITIONS:
            raise ChannelNotConfiguredError(f"widget_position must be one of {', '.join(WIDGET_POSITIONS)}")
        for name, limit in _TEXT_LIMITS.items():
            if len(getattr(self, name)) > limit:
                raise ChannelNotConfiguredError(f"widget {name} is longer than {limit} characters")
        for domain in self.allowed_domains:
            if not _domain_host(domain):
                raise ChannelNotConfiguredError(f"allowed domain {domain!r} is not a host name or URL")
        if self.unread_notification_minutes is not None and self.unread_notification_minutes < 1:
            raise ChannelNotConfiguredError("unread_notification_minutes must be at least 1")
        if self.identity_secret and len(self.identity_secret) < 16:
            raise ChannelNotConfiguredError("identity_secret must be at least 16 characters")
        if self.rate_limit_per_session_per_minute < 1 or self.rate_limit_per_token_per_hour < 1:
            raise ChannelNotConfiguredError("widget rate limits must be positive")

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], secrets: Mapping[str, Any] | None = None) -> WidgetConfig:
        """Build from stored integration settings (and decrypted secrets); unknown keys are ignored."""
        data = dict(settings or {})
        domains = data.get("allowed_domains") or ()
        if isinstance(domains, str):
            domains = domains.split(",")
        if not isinstance(domains, list | tuple) or not all(isinstance(d, str) for d in domains):
            raise ChannelNotConfiguredError("allowed_domains must be a list of host names")
        kwargs: dict[str, Any] = {"allowed_domains": tuple(d.strip() for d in domains if d.strip())}
        for name in ("enabled", "widget_enabled", "require_email", "collect_name", "link_anonymous_on_identify"):
            if data.get(name) is not None:
                if not isinstance(data[name], bool):
                    raise ChannelNotConfiguredError(f"widget {name} must be true or false")
                kwargs[name] = data[name]
        for name in (*_TEXT_LIMITS, "color", "widget_position"):
            if data.get(name) is not None:
                if not isinstance(data[name], str):
                    raise ChannelNotConfiguredError(f"widget {name} must be a string")
                if data[name].strip():
                    kwargs[name] = data[name].strip()
        for name in ("rate_limit_per_session_per_minute", "rate_limit_per_token_per_hour", "unread_notification_minutes"):
            if data.get(name) is not None:
                if not isinstance(data[name], int) or isinstance(data[name], bool):
                    raise ChannelNotConfiguredError(f"widget {name} must be a whole number")
                kwargs[name] = data[name]
        # The integrations service passes secrets merged into `settings`; both forms work.
        secret = (secrets or {}).get("identity_secret", data.get("identity_secret"))
        if isinstance(secret, str):
            kwargs["identity_secret"] = secret
        return cls(**kwargs)

    def remote_config(self, token: str) -> dict[str, Any]:
        """The `conversations` block of the SDK's remote config (PostHog's key names)."""
        return {
            "enabled": self.enabled,
            "widgetEnabled": self.widget_enabled,
            "token": token,
            "greetingText": self.greeting_text,
            "color": self.color,
            "placeholderText": self.placeholder_text,
            "requireEmail": self.require_email,
            "collectName": self.collect_name,
            "identificationFormTitle": self.identification_form_title,
            "identificationFormDescription": self.identification_form_description,
            "domains": list(self.allowed_domains),
            "widgetPosition": self.widget_position,
        }

    def origin_allowed(self, origin: str | None) -> bool:
        """Whether a browser Origin may use the widget. No domains configured = any origin."""
        if not self.allowed_domains:
            return True
        return origin_matches(origin, self.allowed_domains)


def _domain_host(domain: str) -> str:
    text = domain.strip().lower()
    if "://" in text:
        return urlsplit(text).hostname or ""
    host = text.split("/")[0].split(":")[0]
    return host if re.fullmatch(r"(\*\.)?[a-z0-9.-]+", host) else ""


def origin_matches(origin: str | None, domains: tuple[str, ...] | list[str]) -> bool:
    """posthog-js's own rule (`isCurrentDomainAllowed`): a bare host matches that host on any
    port and scheme, `*.example.com` matches example.com and its subdomains; an entry written
    as a URL (`https://shop.example.com:8443`) must match scheme, host and port exactly."""
    if not origin or origin == "null":
        return False
    parts = urlsplit(origin.strip().lower())
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host:
        return False
    default_port = 443 if parts.scheme == "https" else 80
    for entry in domains:
        text = entry.strip().lower()
        if "://" in text:
            allowed = urlsplit(text)
            allowed_port = allowed.port or (443 if allowed.scheme == "https" else 80)
            if allowed.scheme == parts.scheme and allowed.hostname == host and allowed_port == (parts.port or default_port):
                return True
            continue
        allowed_host = _domain_host(text)
        if allowed_host.startswith("*."):
            base = allowed_host[2:]
            if host == base or host.endswith("." + base):
                return True
        elif allowed_host and host == allowed_host:
            return True
    return False


def sign_identity(secret: str, distinct_id: str) -> str:
    """The `identity_hash` a site computes on its server for `posthog.setIdentity(id, hash)`."""
    return hmac.new(secret.encode(), distinct_id.encode(), hashlib.sha256).hexdigest()


def verify_identity(secret: str, distinct_id: str, identity_hash: str) -> None:
    """Raise InvalidSignatureError unless `identity_hash` is the HMAC of `distinct_id`."""
    if not secret:
        raise InvalidSignatureError("identity verification is not configured for this project")
    expected = sign_identity(secret, distinct_id)
    # Constant-time: the comparison must not tell an attacker how many leading hex digits match.
    if not hmac.compare_digest(expected, identity_hash.strip().lower()):
        raise InvalidSignatureError("identity hash does not match")


class WidgetAdapter:
    """The widget's side of the adapter contract."""

    name = "widget"

    def __init__(
        self, config: WidgetConfig, *, cache: KeyValueCache | None = None, clock: Callable[[], float] | None = None
    ) -> None:
        self.config = config
        self.cache = cache
        self.clock = clock

    def verify(self, request: RawRequest) -> None:
        """Check a verified identity when the request claims one; anonymous requests pass.

        The public widget token only names the project; who the visitor is comes from the
        random `widget_session_id` or from `identity_distinct_id` + `identity_hash`.
        """
        body = request.json() if request.body else {}
        claims = dict(request.query)
        if isinstance(body, dict):
            claims.update({k: v for k, v in body.items() if isinstance(v, str)})
        distinct_id, identity_hash = claims.get("identity_distinct_id"), claims.get("identity_hash")
        if distinct_id or identity_hash:
            verify_identity(self.config.identity_secret, distinct_id or "", identity_hash or "")

    def handshake(self, request: RawRequest) -> RawResponse | None:
        return None

    def event_id(self, request: RawRequest) -> str:
        """The widget has no vendor event id; a message is stored once, synchronously."""
        return "widget:" + hashlib.sha256(request.body).hexdigest()

    def parse(self, event: RawEvent) -> list[InboundMessage]:
        # Widget messages never go through the raw-event queue: the SDK needs the ticket id in
        # the response of POST message, so services/widget stores them in the request.
        raise UnsupportedEventError("widget messages are stored by the widget API, not queued")

    def deliver(self, reply: OutboundReply) -> DeliveryResult:
        """A reply is stored already and the visitor's widget reads it on its next poll."""
        return DeliveryResult.delivered(f"widget:{reply.delivery_id}")

    def find_delivered(self, reply: OutboundReply) -> DeliveryResult | None:
        return DeliveryResult.delivered(f"widget:{reply.delivery_id}")
