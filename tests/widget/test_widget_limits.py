"""Limits and abuse: message, traits and context sizes, body size, rate limits (429 + Retry-After)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from core.clock import FrozenClock, use_clock
from tests.widget.support import (
    SITE,
    WIDGET,
    configure_widget,
    mark_read,
    messages,
    new_session_id,
    send,
    widget_headers,
)


def test_a_message_of_ten_thousand_characters_is_accepted_and_one_more_is_refused(client, tenant):
    assert send(client, tenant, new_session_id(), "x" * 10_000).status_code == 200
    response = send(client, tenant, new_session_id(), "x" * 10_001)
    assert response.status_code == 400
    assert response.json()["attr"] == "message" and "10000" in response.json()["detail"]


def test_a_blank_or_missing_message_is_refused(client, tenant):
    assert send(client, tenant, new_session_id(), "   ").json()["attr"] == "message"
    body = {"widget_session_id": new_session_id(), "distinct_id": "d"}
    assert client.post(f"{WIDGET}/message", json=body, headers=widget_headers(tenant)).status_code == 400


def test_fifty_traits_are_accepted_and_fifty_one_are_refused_naming_the_limit(client, tenant):
    fifty = {f"trait_{i}": str(i) for i in range(50)}
    assert send(client, tenant, new_session_id(), traits=fifty).status_code == 200
    response = send(client, tenant, new_session_id(), traits={**fifty, "one_more": "x"})
    assert response.status_code == 400
    assert response.json()["attr"] == "traits" and "limit is 50" in response.json()["detail"]


def test_twenty_session_context_keys_are_accepted_and_twenty_one_are_refused(client, tenant):
    twenty = {f"key_{i}": i for i in range(20)}
    assert send(client, tenant, new_session_id(), session_context=twenty).status_code == 200
    response = send(client, tenant, new_session_id(), session_context={**twenty, "extra": 1})
    assert response.status_code == 400
    assert response.json()["attr"] == "session_context" and "limit is 20" in response.json()["detail"]


def test_traits_that_are_not_an_object_are_refused(client, tenant):
    assert send(client, tenant, new_session_id(), traits=["a"]).json()["attr"] == "traits"


def test_nested_trait_values_are_dropped_and_long_ones_cut(client, tenant):
    response = send(client, tenant, new_session_id(), traits={"name": "N" * 900, "plan": {"tier": "pro"}, "seats": 3})
    ticket = client.get(tenant.url(f"tickets/{response.json()['ticket_id']}"), headers=tenant.headers).json()
    assert ticket["anonymous_traits"] == {"name": "N" * 500, "seats": 3}


def test_an_oversized_body_is_refused_with_413(client, tenant):
    response = client.post(f"{WIDGET}/message", content=b"{" + b" " * 300_000 + b"}",
                           headers={**widget_headers(tenant), "Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.headers["access-control-allow-origin"] == SITE


def test_malformed_json_is_a_400(client, tenant):
    response = client.post(f"{WIDGET}/message", content=b"{not json",
                           headers={**widget_headers(tenant), "Content-Type": "application/json"})
    assert response.status_code == 400 and response.json()["code"] == "parse_error"


@pytest.fixture
def frozen() -> Iterator[FrozenClock]:
    """Rate limits count in fixed windows: hold the clock so a test never straddles two."""
    clock = FrozenClock(datetime(2025, 3, 4, 10, 0, 5, tzinfo=UTC))
    previous = use_clock(clock)
    yield clock
    use_clock(previous)


def test_the_thirty_first_message_in_a_minute_from_one_session_is_throttled(client, tenant, frozen):
    session_id = new_session_id()
    ticket_id = send(client, tenant, session_id).json()["ticket_id"]
    for _ in range(29):
        assert send(client, tenant, session_id, ticket_id=ticket_id).status_code == 200
    throttled = send(client, tenant, session_id, ticket_id=ticket_id)
    assert throttled.status_code == 429
    assert 1 <= int(throttled.headers["retry-after"]) <= 60
    assert throttled.headers["access-control-allow-origin"] == SITE
    assert "quota_limited" not in throttled.text and "quotaLimited" not in throttled.text
    # Marking read is a write too; another visitor is not affected.
    assert mark_read(client, tenant, ticket_id, session_id).status_code == 429
    assert send(client, tenant, new_session_id()).status_code == 200
    # Polling has its own budget, so the visitor still sees replies.
    assert messages(client, tenant, ticket_id, session_id).status_code == 200
    # The next minute brings a new budget.
    frozen.advance(seconds=60)
    assert send(client, tenant, session_id, ticket_id=ticket_id).status_code == 200


def test_the_token_wide_hourly_limit_throttles_every_session(client, tenant, frozen):
    configure_widget(tenant, rate_limit_per_token_per_hour=5)
    for _ in range(5):
        assert send(client, tenant, new_session_id()).status_code == 200
    throttled = send(client, tenant, new_session_id())
    assert throttled.status_code == 429
    assert int(throttled.headers["retry-after"]) == 3600 - 5  # the hour's window ends at 11:00


@pytest.mark.usefixtures("redis_url")
def test_rate_limits_are_shared_through_redis_when_it_is_configured(client, tenant, frozen):
    configure_widget(tenant, rate_limit_per_session_per_minute=3)
    session_id = new_session_id()
    for _ in range(3):
        assert send(client, tenant, session_id).status_code == 200
    assert send(client, tenant, session_id).status_code == 429


def test_polling_beyond_its_budget_is_throttled_too(client, tenant, frozen):
    session_id = new_session_id()
    ticket_id = send(client, tenant, session_id).json()["ticket_id"]
    statuses = [messages(client, tenant, ticket_id, session_id).status_code for _ in range(121)]
    assert statuses[:120] == [200] * 120 and statuses[120] == 429
