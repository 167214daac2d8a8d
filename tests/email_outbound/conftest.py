"""Fixtures for outbound email: a local SMTP server, Dovecot, an in-process worker, a config."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.email_outbound.sink import Dovecot, Sink, smtp_server, start_dovecot


@dataclass
class Smtp:
    sink: Sink
    port: int

    def settings(self, **overrides: Any) -> dict[str, Any]:
        values: dict[str, Any] = {
            "from_email": "support@acme.test", "from_name": "Acme Support", "smtp_host": "127.0.0.1",
            "smtp_port": self.port, "smtp_security": "none", "send_rate_per_minute": 100_000,
        }
        values.update(overrides)
        return values


@pytest.fixture
def smtp() -> Iterator[Smtp]:
    with smtp_server() as (sink, port):
        yield Smtp(sink, port)


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    server = start_dovecot()
    yield server
    server.stop()


@pytest.fixture
def worker(db: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Dramatiq's real Worker on the in-process StubBroker (see tests/e2e/test_slack_pipeline.py)."""
    monkeypatch.setenv("TICKETWIRE_RETRY_BASE_SECONDS", "0.1")
    import workers.actors
    from services.dispatch import install_dispatcher
    from workers.broker import broker, make_worker

    install_dispatcher(workers.actors.dispatch)
    broker.flush_all()
    w = make_worker(threads=2)
    w.start()
    yield broker
    w.stop()
    broker.flush_all()


def drain(broker: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    for queue in ("inbound", "outbound", "inbound", "outbound"):
        broker.join(queue, timeout=int(max(0.1, deadline - time.monotonic()) * 1000), fail_fast=False)


def wait_for(predicate: Any, timeout: float = 15.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def assert_paced(times: list[float], *, interval: float, jitter: float = 0.35) -> None:
    """No k consecutive gaps were shorter than k - 1 intervals, give or take how late one mail
    may reach the server after its slot (the slot is taken before the message is built and
    sent: a few ms, a connection set-up, or a few hundred ms on a busy machine).

    One interval of slack because the pacer grants slots and cannot un-delay a send: a mail
    held up after its slot (a pause of the whole test process, seen once in a full run: 0.9 s)
    reaches the server right before the next one, sent on time. Two mails at once is allowed;
    three within one interval (a pacer letting a burst through) is not."""
    for k in range(2, len(times)):
        for i in range(len(times) - k):
            assert times[i + k] - times[i] >= (k - 1) * interval - jitter, (k, i, times)


@pytest.fixture
def email_config(client: Any, tenant: Any, smtp: Smtp) -> dict[str, Any]:
    response = client.post(tenant.url("email_configs"), json=smtp.settings(), headers=tenant.headers)
    assert response.status_code == 201, response.text
    return dict(response.json())
