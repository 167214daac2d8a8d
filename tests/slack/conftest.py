"""Shared pieces of the Slack tests: the fake Web API, an adapter pointed at it, fixture loading."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from channels.base import KeyValueCache, MemoryCache, RawEvent, RawRequest
from channels.slack import SlackAdapter, SlackConfig, SlackSigner
from tests.fakes.slack_api import FakeSlack

FIXTURES = Path(__file__).parent / "fixtures"
# The example signing secret of Slack's "Verifying requests from Slack" doc.
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
NOW = 1_767_400_000.0  # 2026-01-03, after every fixture was recorded
SUPPORT_CHANNELS = ("C06NRA6JLER", "C00FAKECHAN1", "CXXXXXXXXXX")
CLIENT_TIMEOUT = 0.5  # seconds; the fake's timeouts sleep longer than this


def fixture_body(name: str, key: str | None = None) -> bytes:
    """A fixture's bytes as stored, or one payload of a bundle re-serialised (bundles are not bodies)."""
    raw = (FIXTURES / name).read_bytes()
    return raw if key is None else json.dumps(json.loads(raw)[key]).encode()


def fixture_json(name: str, key: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(fixture_body(name, key))
    return data


def raw_event(body: bytes | dict[str, Any], event_id: str = "Ev-test") -> RawEvent:
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    return RawEvent(event_id=event_id, body=data, headers={}, received_at=datetime.fromtimestamp(NOW, UTC))


def signed_request(body: bytes, *, timestamp: int | None = None, secret: str = SIGNING_SECRET) -> RawRequest:
    headers = SlackSigner(secret, clock=lambda: NOW).sign(body, timestamp=timestamp)
    return RawRequest.build(body, {"Content-Type": "application/json", **headers})


@pytest.fixture(scope="session")
def slack_server() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def fake_slack(slack_server: FakeSlack) -> FakeSlack:
    """The running fake Slack Web API (tests/fakes/slack_api.py) with an empty workspace."""
    slack_server.reset()
    return slack_server


@pytest.fixture
def people(fake_slack: FakeSlack) -> FakeSlack:
    """The fake workspace with the people the fixtures talk about."""
    fake_slack.add_user("U06NU4E26M9", real_name="Dana Scully", display_name="dana", email="dana@example.com")
    fake_slack.add_user("U00FAKEUSER1", real_name="", display_name="fox", email="fox@example.com")
    fake_slack.add_user("UXXXXXXXXXX", real_name="Walter Skinner", email="walter@example.com")
    fake_slack.add_user("U00FAKEBOT01", real_name="Chat SDK ExampleBot", is_bot=True)
    return fake_slack


MakeAdapter = Callable[..., SlackAdapter]


@pytest.fixture
def make_adapter(people: FakeSlack) -> MakeAdapter:
    """Build a SlackAdapter against the fake; keyword arguments override SlackConfig fields."""

    def make(
        *, cache: KeyValueCache | None = None, timeout: float = CLIENT_TIMEOUT, **overrides: Any
    ) -> SlackAdapter:
        settings: dict[str, Any] = {
            "bot_token": people.token,
            "signing_secret": SIGNING_SECRET,
            "channel_ids": SUPPORT_CHANNELS,
            "api_base_url": people.api_url,
            **overrides,
        }
        return SlackAdapter(
            SlackConfig(**settings), cache=cache or MemoryCache(), clock=lambda: NOW, timeout=timeout
        )

    return make


@pytest.fixture
def adapter(make_adapter: MakeAdapter) -> SlackAdapter:
    return make_adapter()
