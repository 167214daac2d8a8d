"""The widget adapter: settings, the allowed-domains rule, identity hashes, delivery."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from channels.base import DeliveryStatus, OutboundReply, RawEvent, RawRequest
from channels.errors import ChannelNotConfiguredError, InvalidSignatureError, UnsupportedEventError
from channels.widget import WidgetAdapter, WidgetConfig, origin_matches, sign_identity, verify_identity

SECRET = "s3cret-identity-key-0001"


def test_settings_are_read_tolerantly_with_the_specs_defaults():
    config = WidgetConfig.from_settings({"allowed_domains": "shop.example.com, *.example.org", "unknown": 1,
                                         "public_token": "phc_x", "identity_secret": SECRET})
    assert config.allowed_domains == ("shop.example.com", "*.example.org")
    assert config.enabled and config.widget_enabled and not config.require_email and not config.collect_name
    assert config.identity_secret == SECRET and SECRET not in repr(config)
    assert WidgetConfig.from_settings({}) == WidgetConfig()


@pytest.mark.parametrize(
    "settings",
    [
        {"color": "red"},
        {"color": "#12345"},
        {"widget_position": "center"},
        {"greeting_text": "x" * 501},
        {"allowed_domains": ["not a host"]},
        {"require_email": "yes"},
        {"rate_limit_per_session_per_minute": 0},
        {"unread_notification_minutes": "soon"},
        {"identity_secret": "short"},
    ],
)
def test_invalid_settings_are_refused(settings):
    with pytest.raises(ChannelNotConfiguredError):
        WidgetConfig.from_settings(settings)


@pytest.mark.parametrize(
    ("origin", "domains", "allowed"),
    [
        ("https://shop.example.com", ["shop.example.com"], True),
        ("http://shop.example.com:8080", ["shop.example.com"], True),  # a bare host allows any port
        ("https://www.shop.example.com", ["shop.example.com"], False),
        ("https://eu.example.org", ["*.example.org"], True),
        ("https://example.org", ["*.example.org"], True),
        ("https://example.org.evil.net", ["*.example.org"], False),
        ("https://badexample.org", ["*.example.org"], False),
        ("https://shop.example.com", ["https://shop.example.com"], True),
        ("https://shop.example.com:8443", ["https://shop.example.com"], False),
        ("http://shop.example.com", ["https://shop.example.com"], False),
        ("null", ["shop.example.com"], False),
        (None, ["shop.example.com"], False),
        ("file://shop.example.com", ["shop.example.com"], False),
    ],
)
def test_origins_match_the_allowed_domains_as_posthog_js_does(origin, domains, allowed):
    assert origin_matches(origin, domains) is allowed


def test_no_allowed_domains_means_every_origin():
    assert WidgetConfig().origin_allowed("https://anything.example") is True


def test_the_identity_hash_is_the_hex_hmac_sha256_of_the_distinct_id():
    expected = hmac.new(SECRET.encode(), b"user-42", hashlib.sha256).hexdigest()
    assert sign_identity(SECRET, "user-42") == expected
    verify_identity(SECRET, "user-42", expected)
    verify_identity(SECRET, "user-42", expected.upper())  # hex case does not matter
    with pytest.raises(InvalidSignatureError):
        verify_identity(SECRET, "user-43", expected)
    with pytest.raises(InvalidSignatureError):
        verify_identity("", "user-42", expected)  # no secret configured: nothing verifies


def test_verify_checks_claimed_identities_and_lets_anonymous_requests_pass():
    adapter = WidgetAdapter(WidgetConfig(identity_secret=SECRET))
    anonymous = RawRequest.build(json.dumps({"widget_session_id": "s" * 20}).encode())
    adapter.verify(anonymous)
    good = {"identity_distinct_id": "u", "identity_hash": sign_identity(SECRET, "u")}
    adapter.verify(RawRequest.build(json.dumps(good).encode()))
    adapter.verify(RawRequest.build(b"", query=good))
    with pytest.raises(InvalidSignatureError):
        adapter.verify(RawRequest.build(json.dumps({**good, "identity_distinct_id": "v"}).encode()))


def test_a_reply_is_delivered_the_moment_it_is_stored():
    adapter = WidgetAdapter(WidgetConfig())
    reply = OutboundReply(delivery_id="dlv-1", ticket_id="t", ticket_number=7, text="hello", thread={})
    result = adapter.deliver(reply)
    assert result.status == DeliveryStatus.DELIVERED and result.external_id == "widget:dlv-1"
    found = adapter.find_delivered(reply)
    assert found is not None and found.status == DeliveryStatus.DELIVERED


def test_widget_messages_never_come_through_the_raw_event_queue():
    adapter = WidgetAdapter(WidgetConfig())
    with pytest.raises(UnsupportedEventError):
        adapter.parse(RawEvent(event_id="e", body=b"{}", headers={}, received_at=None))  # type: ignore[arg-type]
    assert adapter.handshake(RawRequest.build(b"{}")) is None
    assert adapter.event_id(RawRequest.build(b"{}")).startswith("widget:")
