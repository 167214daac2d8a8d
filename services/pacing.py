"""Outbound pacing: stay under each vendor's published rate before it has to say 429.

A GCRA ("theoretical arrival time") limiter per key, shared by every worker process through
Redis (one Lua script, Redis's own clock), or in-process in the embedded mode. `reserve`
either grants a slot, possibly a little in the future (the caller sleeps until then), or says
how long to wait without taking one, so a worker thread never sleeps for long.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from core.cache import RedisCache, SafeCache, get_cache

# KEYS[1] = key; ARGV = interval_ms, max_wait_ms. Returns wait_ms (>= 0: granted after
# that wait; < 0: not granted, retry after -value).
_GCRA = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - now
if wait > tonumber(ARGV[2]) then return -wait end
redis.call('SET', KEYS[1], tat + tonumber(ARGV[1]), 'PX', wait + tonumber(ARGV[1]) + 1000)
return wait
"""


@dataclass(frozen=True)
class Slot:
    granted: bool
    wait: float  # seconds: sleep this long before sending (granted) or retry after (not granted)


class _LocalLimiter:
    def __init__(self) -> None:
        self._tat: dict[str, float] = {}
        self._lock = threading.Lock()

    def reserve(self, key: str, interval: float, max_wait: float) -> Slot:
        with self._lock:
            current = time.monotonic()
            tat = max(self._tat.get(key, current), current)
            wait = tat - current
            if wait > max_wait:
                return Slot(False, wait)
            self._tat[key] = tat + interval
            return Slot(True, wait)


_local = _LocalLimiter()


def reserve(key: str, rate_per_second: float, *, max_wait: float = 2.0) -> Slot:
    interval = 1.0 / rate_per_second
    cache = get_cache()
    inner = cache.inner if isinstance(cache, SafeCache) else cache
    if isinstance(inner, RedisCache):
        try:
            wait_ms = int(inner.client.eval(_GCRA, 1, f"{inner.prefix}pace:{key}", int(interval * 1000), int(max_wait * 1000)))
            return Slot(wait_ms >= 0, abs(wait_ms) / 1000)
        except Exception:  # Redis down: pace per process rather than not at all
            pass
    return _local.reserve(key, interval, max_wait)
