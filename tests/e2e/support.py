"""Waiting helpers shared by the end-to-end tests."""

from __future__ import annotations

import time
from typing import Any


def drain(broker: Any, timeout: float = 30.0) -> None:
    """Wait until inbound and outbound queues are empty, twice over (ingest can enqueue
    deliveries and deliveries can enqueue edits)."""
    deadline = time.monotonic() + timeout
    for queue in ("inbound", "outbound", "inbound", "outbound"):
        broker.join(queue, timeout=int(max(0.1, deadline - time.monotonic()) * 1000), fail_fast=False)


def wait_for(predicate: Any, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")
