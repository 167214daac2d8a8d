"""Caches, counters and locks: Redis when REDIS_URL is set, in-process otherwise.

One small interface (`Cache`) so the unread-count cache, the rate limiters, the reply
de-duplication lock and the adapters' look-up caches work the same in both modes.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from core.settings import get_settings


class Cache:
    def get(self, key: str) -> Any | None:
        raise NotImplementedError

    def set(self, key: str, value: Any, ttl: float) -> None:
        raise NotImplementedError

    def delete(self, *keys: str) -> None:
        raise NotImplementedError

    def add(self, key: str, value: Any, ttl: float) -> bool:
        """Set only if absent; True when this call set it (a lock)."""
        raise NotImplementedError

    def incr(self, key: str, ttl: float) -> int:
        """Increment a counter that expires `ttl` seconds after its first increment."""
        raise NotImplementedError

    def incr_many(self, counters: Sequence[tuple[str, float]], *, also_get: str | None = None,
                  by: int = 1) -> tuple[list[int], Any | None]:
        """Add `by` to each (key, ttl) counter of `counters` (each expiring `ttl` seconds after
        its first increment, as `incr`) and `get(also_get)`, all in ONE round trip on Redis.

        Returns (the counts, in the order given; the value read, None when absent or not asked
        for). The value is read before the counters change.
        """
        raise NotImplementedError

    def ttl(self, key: str) -> float:
        raise NotImplementedError


class MemoryCache(Cache):
    def __init__(self) -> None:
        self._data: dict[str, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def _live(self, key: str) -> tuple[float, Any] | None:
        hit = self._data.get(key)
        if hit and hit[0] < time.monotonic():
            del self._data[key]
            return None
        return hit

    def get(self, key: str) -> Any | None:
        with self._lock:
            hit = self._live(key)
            return hit[1] if hit else None

    def set(self, key: str, value: Any, ttl: float) -> None:
        with self._lock:
            self._data[key] = (time.monotonic() + ttl, value)

    def delete(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._data.pop(key, None)

    def add(self, key: str, value: Any, ttl: float) -> bool:
        with self._lock:
            if self._live(key):
                return False
            self._data[key] = (time.monotonic() + ttl, value)
            return True

    def _incr(self, key: str, ttl: float, by: int) -> int:
        hit = self._live(key)
        expires, value = hit if hit else (time.monotonic() + ttl, 0)
        self._data[key] = (expires, value + by)
        return int(value + by)

    def incr(self, key: str, ttl: float) -> int:
        with self._lock:
            return self._incr(key, ttl, 1)

    def incr_many(self, counters: Sequence[tuple[str, float]], *, also_get: str | None = None,
                  by: int = 1) -> tuple[list[int], Any | None]:
        with self._lock:
            hit = self._live(also_get) if also_get is not None else None
            return [self._incr(key, ttl, by) for key, ttl in counters], (hit[1] if hit else None)

    def ttl(self, key: str) -> float:
        with self._lock:
            hit = self._live(key)
            return max(0.0, hit[0] - time.monotonic()) if hit else 0.0


class RedisCache(Cache):
    def __init__(self, url: str, prefix: str = "tw:") -> None:
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self.prefix = prefix

    def get(self, key: str) -> Any | None:
        raw = self.client.get(self.prefix + key)
        return None if raw is None else json.loads(raw)

    def set(self, key: str, value: Any, ttl: float) -> None:
        self.client.set(self.prefix + key, json.dumps(value), px=max(1, int(ttl * 1000)))

    def delete(self, *keys: str) -> None:
        if keys:
            self.client.delete(*(self.prefix + k for k in keys))

    def add(self, key: str, value: Any, ttl: float) -> bool:
        return bool(self.client.set(self.prefix + key, json.dumps(value), px=max(1, int(ttl * 1000)), nx=True))

    def incr(self, key: str, ttl: float) -> int:
        pipe = self.client.pipeline()
        pipe.incr(self.prefix + key)
        pipe.pexpire(self.prefix + key, max(1, int(ttl * 1000)), nx=True)
        value, _ = pipe.execute()
        return int(value)

    def incr_many(self, counters: Sequence[tuple[str, float]], *, also_get: str | None = None,
                  by: int = 1) -> tuple[list[int], Any | None]:
        # One MULTI/EXEC pipeline: a single round trip, and each INCRBY keeps its PEXPIRE NX
        # (the expiry set by the first increment only) as atomically as `incr` does.
        pipe = self.client.pipeline()
        if also_get is not None:
            pipe.get(self.prefix + also_get)
        for key, ttl in counters:
            pipe.incrby(self.prefix + key, by)
            pipe.pexpire(self.prefix + key, max(1, int(ttl * 1000)), nx=True)
        replies = pipe.execute()
        raw = replies.pop(0) if also_get is not None else None
        return [int(count) for count in replies[::2]], (None if raw is None else json.loads(raw))

    def ttl(self, key: str) -> float:
        ms = self.client.pttl(self.prefix + key)
        return max(0.0, ms / 1000) if ms and ms > 0 else 0.0


class SafeCache(Cache):
    """Wraps a Redis cache so a Redis outage degrades to "no cache" instead of failing requests.

    The database is the source of truth; caches and rate limits are best effort.
    """

    def __init__(self, inner: Cache, fallback: Cache) -> None:
        self.inner, self.fallback = inner, fallback

    def _call(self, name: str, *args: Any) -> Any:
        try:
            return getattr(self.inner, name)(*args)
        except Exception:  # redis.ConnectionError, TimeoutError…
            return getattr(self.fallback, name)(*args)

    def get(self, key: str) -> Any | None:
        return self._call("get", key)

    def set(self, key: str, value: Any, ttl: float) -> None:
        self._call("set", key, value, ttl)

    def delete(self, *keys: str) -> None:
        self._call("delete", *keys)
        self.fallback.delete(*keys)

    def add(self, key: str, value: Any, ttl: float) -> bool:
        return bool(self._call("add", key, value, ttl))

    def incr(self, key: str, ttl: float) -> int:
        return int(self._call("incr", key, ttl))

    def incr_many(self, counters: Sequence[tuple[str, float]], *, also_get: str | None = None,
                  by: int = 1) -> tuple[list[int], Any | None]:
        # As get and incr: with Redis down, both the read and the counts come from the
        # in-process fallback.
        try:
            counts, value = self.inner.incr_many(counters, also_get=also_get, by=by)
        except Exception:  # redis.ConnectionError, TimeoutError…
            counts, value = self.fallback.incr_many(counters, also_get=also_get, by=by)
        return [int(c) for c in counts], value

    def ttl(self, key: str) -> float:
        return float(self._call("ttl", key))


@lru_cache(maxsize=1)
def get_cache() -> Cache:
    url = get_settings().redis_url
    if url:
        return SafeCache(RedisCache(url), MemoryCache())
    return MemoryCache()


def reset_cache() -> None:
    get_cache.cache_clear()
