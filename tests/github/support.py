"""Shared helpers of the GitHub channel tests: fixtures as stored events, signed requests, replies."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from channels.base import KeyValueCache, OutboundReply, RawEvent, RawRequest
from channels.github import GitHubAdapter, GitHubConfig, sign
from tests.fakes.github_api import FakeGitHub

FIXTURES = Path(__file__).parent / "fixtures"
SECRET = "It's a Secret to Everybody"
TOKEN = "ghp_fake_token"
DELIVERY = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
RECEIVED_AT = datetime(2026, 2, 1, 12, 0, 0, tzinfo=UTC)
HELLO_WORLD = "Codertocat/Hello-World"


def fixture_body(name: str) -> bytes:
    """The fixture's bytes exactly as GitHub (or its source) wrote them."""
    return (FIXTURES / f"{name}.json").read_bytes()


def fixture_payload(name: str) -> dict[str, Any]:
    """A fixture as a dict, for tests that derive a variant in memory (fixtures stay untouched)."""
    return json.loads(fixture_body(name))


def github_headers(event_type: str, body: bytes, *, delivery: str = DELIVERY) -> dict[str, str]:
    return {
        "X-GitHub-Event": event_type,
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": sign(body, SECRET),
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/044aadd",
    }


def stored_event(event_type: str, body: bytes, *, delivery: str = DELIVERY) -> RawEvent:
    """The raw event as the web layer stores it (lower-cased headers)."""
    request = signed_request(event_type, body, delivery=delivery)
    return RawEvent(event_id=delivery, body=body, headers=request.headers, received_at=RECEIVED_AT)


def fixture_event(name: str, *, delivery: str = DELIVERY) -> RawEvent:
    """A fixture named `<event>__<variant>` as a stored event of type `<event>`."""
    return stored_event(name.split("__")[0], fixture_body(name), delivery=delivery)


def payload_event(event_type: str, payload: dict[str, Any], *, delivery: str = DELIVERY) -> RawEvent:
    return stored_event(event_type, json.dumps(payload).encode(), delivery=delivery)


def signed_request(event_type: str, body: bytes, *, delivery: str = DELIVERY) -> RawRequest:
    return RawRequest.build(
        body, github_headers(event_type, body, delivery=delivery), received_at=RECEIVED_AT
    )


def make_adapter(
    api: FakeGitHub | None = None,
    *,
    clock: Callable[[], float] | None = None,
    cache: KeyValueCache | None = None,
    **settings: Any,
) -> GitHubAdapter:
    config: dict[str, Any] = {"token": TOKEN, "webhook_secret": SECRET}
    if api is not None:
        config["api_base_url"] = api.url
    config.update(settings)
    return GitHubAdapter(GitHubConfig(**config), cache=cache, clock=clock)


def reply(
    *,
    delivery_id: str = "dlv-0001",
    text: str = "Thanks for the report, a fix is on its way.",
    repo: str = HELLO_WORLD,
    number: int = 1,
) -> OutboundReply:
    return OutboundReply(
        delivery_id=delivery_id,
        ticket_id="7b0d2a0e-6f1c-4a43-9a55-0d6b1c1f5e21",
        ticket_number=42,
        text=text,
        thread={"github_repo": repo, "github_issue_number": number},
        author_name="Ada from Support",
    )
