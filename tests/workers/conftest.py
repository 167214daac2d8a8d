"""The `stack` fixture: a deployment's processes on a flushed Redis and a truncated PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.workers.support import Stack


@pytest.fixture
def stack(services: dict[str, Any], postgres_url: str, tmp_path: Path) -> Iterator[Stack]:
    from tests.conftest import _truncate_postgres

    _truncate_postgres(postgres_url)
    import redis

    redis.Redis.from_url(services["redis"]).flushdb()
    env = {
        **os.environ, "DATABASE_URL": postgres_url, "REDIS_URL": services["redis"],
        "TICKETWIRE_SECRET_KEY": "test-secret-key-not-for-production", "TICKETWIRE_VAR_DIR": str(tmp_path),
        "TICKETWIRE_DELIVERY_LEASE_SECONDS": "3", "TICKETWIRE_INGEST_LEASE_SECONDS": "3",
        "TICKETWIRE_RETRY_BASE_SECONDS": "0.2",
    }
    env.pop("TICKETWIRE_EMBEDDED_WORKERS", None)
    s = Stack(env, tmp_path)
    yield s
    s.stop_all()
