"""Shared pieces of the Teams tests: fixtures on disk, a settable clock, the fake, the adapter."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from channels.base import RawEvent, RawRequest
from channels.teams import TeamsAdapter, TokenIssuer
from tests.fakes.teams_api import FakeTeams

FIXTURES = Path(__file__).parent / "fixtures"
NOW = 1_700_000_000.0
RECEIVED_AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


class FakeClock:
    """Epoch seconds that only move when a test says so."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def fixture_json(name: str, key: str | None = None) -> dict[str, Any]:
    data = json.loads(fixture_bytes(name))
    return data[key] if key else data


def raw_event(body: bytes | dict[str, Any]) -> RawEvent:
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    return RawEvent(event_id="evt", body=payload, headers={}, received_at=RECEIVED_AT)


def signed_request(
    issuer: TokenIssuer, body: bytes, *, audience: str, issued_at: float, **kwargs: Any
) -> RawRequest:
    headers = issuer.sign(body, audience=audience, issued_at=issued_at, **kwargs)
    return RawRequest.build(body, headers)


@pytest.fixture(scope="session")
def issuer() -> TokenIssuer:
    # RSA key generation is the slow part; tests that rotate keys build their own issuer.
    return TokenIssuer()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def teams_server(issuer: TokenIssuer) -> Iterator[FakeTeams]:
    with FakeTeams(issuer=issuer) as fake:
        yield fake


@pytest.fixture
def teams(teams_server: FakeTeams) -> Iterator[FakeTeams]:
    teams_server.reset()
    yield teams_server
    teams_server.reset()


@pytest.fixture
def adapter(teams: FakeTeams, clock: FakeClock) -> Iterator[TeamsAdapter]:
    built = TeamsAdapter(teams.config(), clock=clock, http_timeout=0.5)
    yield built
    built.close()
