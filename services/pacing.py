"""Outbound pacing: stay under each vendor's published limits before it has to say 429.

Vendors publish several windows at once ("80 per minute and 500 per hour"; "7 per second,
8 per 2 s and 60 per 30 s"), each meaning *at most N operations in any P seconds*. A pacing
key keeps a sliding log of the slots it granted (a Redis sorted set shared by every worker
process, updated by one Lua script on Redis's own clock; an in-process copy in the embedded
mode or while Redis is down), and a new slot goes at the earliest time from now on that
keeps every window with every slot already in the log, future ones included. A time t is
ruled out by N logged slots e_i <= ... <= e_(i+N-1) when e_(i+N-1) - P < t < e_i + P (some
P-second window would hold all of them and t), so the earliest slot is found by a sweep over
those intervals (only groups of N spanning less than P rule anything out); for a log that
only grows at its end this is `max(now, N-th latest + P)`.

A slot within `max_wait` is granted at once (the caller sleeps until it, so it may lie a
little in the future, and other workers see it immediately). A slot further out is either
refused with the time to wait (nothing recorded), or, when the caller names a `booking`
(the delivery id), booked: the caller puts its work aside until shortly before the slot and
asks again with the same booking, which is then granted. A backlog of 500 replies is thus
handed out in order, one round trip each, instead of every waiting delivery coming back at
once whenever a window frees. A booking not claimed on time (its delivery came back late,
or never) is given back and the caller gets a new slot: sending late could put more than N
requests in one of the vendor's windows.

Several keys can be reserved together (`reserve_buckets`), e.g. a Teams conversation and
the app's tenant-wide limit: the slot keeps every window of every key. A conversation whose
backlog is booked far ahead does not hold the others back: they use the free room of the
shared key before those bookings.

`margin` widens every window a little when pacing against a vendor: the vendor counts
requests when they arrive, and a request sent at its slot still arrives some milliseconds
after it, by a varying amount.
"""

from __future__ import annotations

import bisect
import math
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from core.cache import RedisCache, SafeCache, get_cache

Window = tuple[float, int]  # (period_seconds, max_operations): at most N in any P seconds
Bucket = tuple[str, Sequence[Window]]

# Extra seconds added to every vendor window (see the module docstring). Measured here, a
# request reached a local fake vendor up to ~0.25 s after its slot on a 2-core machine loaded
# well past its cores (the worker thread waking late, the GIL, the fake's own scheduling); a
# real network adds its own jitter. Two requests N apart stay P apart at the vendor while
# their delays differ by less than the margin.
VENDOR_MARGIN_SECONDS = 0.3
# ...but never more than this share of a window: a fixed 0.3 s on Slack's one-second window
# would give away 23 % of the allowed rate (measured: a 300-reply backlog at 77 %); 8 % keeps
# a short window above 90 % of its rate.
MAX_MARGIN_SHARE = 0.08
# How late (as a share of the margin) a booked slot may still be used as booked; later, the
# booking is given back and the slot searched for again (a late send eats into the margin).
LATE_BOOKING_SHARE = 1 / 3

# KEYS = the logs; ARGV = max_wait_us, booking ('' = none), a unique token, tolerance_us,
# then per key: the number of windows and (period_us, max) pairs. Returns {granted 0|1,
# wait_us, at_us}. Members: 's:<token>' a granted slot, 'b:<booking>' a booked one.
# (Numbers go to Redis as arguments, never through Lua's tostring, which keeps 14 digits.)
_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local max_wait = tonumber(ARGV[1])
local booking = ARGV[2]
local sent = 's:' .. ARGV[3]
local tolerance = tonumber(ARGV[4])
local windows = {}
local longest = {}
local pos = 5
for i, key in ipairs(KEYS) do
  local n = tonumber(ARGV[pos])
  pos = pos + 1
  local list = {}
  local l = 0
  for j = 1, n do
    local p = tonumber(ARGV[pos])
    list[j] = {p, tonumber(ARGV[pos + 1])}
    if p > l then l = p end
    pos = pos + 2
  end
  windows[i] = list
  longest[i] = l
  -- a slot at or before now - longest constrains nothing from now on
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - l)
end
if booking ~= '' then
  local mine = 'b:' .. booking
  local b = redis.call('ZSCORE', KEYS[1], mine)
  if b then
    b = tonumber(b)
    if b >= now - tolerance then
      if b - now > max_wait then return {0, b - now, b} end
      for _, key in ipairs(KEYS) do
        redis.call('ZREM', key, mine)
        redis.call('ZADD', key, b, sent)
      end
      return {1, math.max(b - now, 0), b}
    end
    for _, key in ipairs(KEYS) do redis.call('ZREM', key, mine) end
  end
end
local ruled_out = {}
for i, key in ipairs(KEYS) do
  local flat = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
  local slots = {}
  for j = 2, #flat, 2 do slots[#slots + 1] = tonumber(flat[j]) end
  for _, w in ipairs(windows[i]) do
    local p, n = w[1], w[2]
    for j = 1, #slots - n + 1 do
      if slots[j] + p > now and slots[j + n - 1] - slots[j] < p then
        ruled_out[#ruled_out + 1] = {slots[j + n - 1] - p, slots[j] + p}
      end
    end
  end
end
table.sort(ruled_out, function(a, b) return a[1] < b[1] end)
local at = now
for _, span in ipairs(ruled_out) do
  if span[1] < at and at < span[2] then at = span[2] end
end
local wait = at - now
local granted = wait <= max_wait
if not granted and booking == '' then return {0, wait, at} end
local member = sent
if not granted then member = 'b:' .. booking end
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, at, member)
  local ttl = math.floor((wait + longest[i]) / 1000) + 1000
  if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
end
if granted then return {1, wait, at} end
return {0, wait, at}
"""


@dataclass(frozen=True)
class Slot:
    granted: bool
    # Seconds: sleep this long before sending (granted), or come back after it (not granted;
    # with a booking the slot is held for the caller until then).
    wait: float
    # The slot's time on the pacer's clock (Redis TIME, or this process's monotonic clock).
    at: float = 0.0
    # Not granted, but held for the caller's booking until `wait` has passed.
    booked: bool = False


def _micros(seconds: float) -> int:
    return max(0, math.ceil(seconds * 1_000_000))


def widened(period: float, margin: float) -> float:
    """A vendor window as paced: the period plus the margin, capped at MAX_MARGIN_SHARE of it."""
    return period + min(margin, period * MAX_MARGIN_SHARE)


def _normalise(windows: Sequence[Window], margin: float) -> list[tuple[int, int]]:
    """Windows in whole microseconds, widened by `margin` (at most MAX_MARGIN_SHARE of each);
    empty or zero periods dropped."""
    out = []
    for period, limit in windows:
        if period > 0 and int(limit) >= 1:
            out.append((_micros(widened(float(period), margin)), int(limit)))
    return out


def earliest_slot(now: int, logs: Sequence[Sequence[int]], windows: Sequence[Sequence[tuple[int, int]]]) -> int:
    """The earliest time from `now` that keeps every window with the sorted slots of every log."""
    ruled_out = []
    for slots, limits in zip(logs, windows, strict=True):
        for period, limit in limits:
            for j in range(len(slots) - limit + 1):
                # N slots within one window (spanning less than P): t joins them when it lies
                # less than P from both ends.
                if slots[j] + period > now and slots[j + limit - 1] - slots[j] < period:
                    ruled_out.append((slots[j + limit - 1] - period, slots[j] + period))
    ruled_out.sort()
    at = now
    for low, high in ruled_out:
        if low < at < high:
            at = high
    return at


@dataclass
class _Log:
    times: list[int] = field(default_factory=list)  # every slot, sorted (bookings included)
    booked: dict[str, int] = field(default_factory=dict)  # booking -> its slot in `times`

    def trim(self, before: int) -> None:
        cut = bisect.bisect_right(self.times, before)
        if cut:
            del self.times[:cut]
            self.booked = {k: v for k, v in self.booked.items() if v > before}

    def remove(self, at: int) -> None:
        i = bisect.bisect_left(self.times, at)
        if i < len(self.times) and self.times[i] == at:
            del self.times[i]


class _LocalPacer:
    """The same algorithm as `_SCRIPT`, for one process."""

    def __init__(self) -> None:
        self._logs: dict[str, _Log] = {}
        self._lock = threading.Lock()

    def reserve(self, buckets: list[tuple[str, list[tuple[int, int]]]], max_wait: int, booking: str,
                tolerance: int) -> tuple[bool, int, int]:
        with self._lock:
            now = int(time.monotonic() * 1_000_000)
            logs = []
            for key, windows in buckets:
                log = self._logs.setdefault(key, _Log())
                log.trim(now - max((p for p, _ in windows), default=0))
                logs.append(log)
            if booking and booking in logs[0].booked:
                b = logs[0].booked[booking]
                if b >= now - tolerance:
                    if b - now > max_wait:
                        return False, b - now, b
                    for log in logs:
                        log.booked.pop(booking, None)
                    return True, max(b - now, 0), b
                for log in logs:
                    if log.booked.pop(booking, None) is not None:
                        log.remove(b)
            at = earliest_slot(now, [log.times for log in logs], [windows for _, windows in buckets])
            wait = at - now
            granted = wait <= max_wait
            if not granted and not booking:
                return False, wait, at
            for log in logs:
                bisect.insort(log.times, at)
                if not granted:
                    log.booked[booking] = at
            return granted, wait, at

    def clear(self) -> None:
        with self._lock:
            self._logs.clear()


_local = _LocalPacer()


def _redis_reserve(inner: RedisCache, buckets: list[tuple[str, list[tuple[int, int]]]], max_wait: int,
                   booking: str, tolerance: int) -> tuple[bool, int, int]:
    script = getattr(inner, "_pacing_script", None)
    if script is None:  # EVALSHA from then on, EVAL once after a Redis restart (redis-py does it)
        script = inner.client.register_script(_SCRIPT)
        inner._pacing_script = script  # type: ignore[attr-defined]
    args: list[object] = [max_wait, booking, uuid.uuid4().hex, tolerance]
    for _, windows in buckets:
        args.append(len(windows))
        for period, limit in windows:
            args += [period, limit]
    keys = [f"{inner.prefix}pacelog:{key}" for key, _ in buckets]
    granted, wait, at = script(keys=keys, args=args)  # type: ignore[operator]
    return bool(granted), int(wait), int(at)


def reserve_buckets(buckets: Sequence[Bucket], *, max_wait: float = 2.0, booking: str | None = None,
                    margin: float = 0.0) -> Slot:
    """One slot that keeps every window of every bucket (key, windows). See the module docstring."""
    prepared = [(key, _normalise(windows, margin)) for key, windows in buckets]
    prepared = [(key, windows) for key, windows in prepared if windows]
    if not prepared:
        return Slot(True, 0.0, 0.0)
    args = (prepared, _micros(max_wait), booking or "", _micros(margin * LATE_BOOKING_SHARE))
    cache = get_cache()
    inner = cache.inner if isinstance(cache, SafeCache) else cache
    granted, wait, at = _local_or_redis(inner, args)
    return Slot(granted, wait / 1_000_000, at / 1_000_000, booked=not granted and bool(booking))


def _local_or_redis(inner: object, args: tuple[list[tuple[str, list[tuple[int, int]]]], int, str, int]
                    ) -> tuple[bool, int, int]:
    if isinstance(inner, RedisCache):
        try:
            return _redis_reserve(inner, *args)
        except Exception:  # Redis down: pace per process rather than not at all
            pass
    return _local.reserve(*args)


def reserve_windows(key: str, windows: Sequence[Window], *, max_wait: float = 2.0, booking: str | None = None,
                    margin: float = 0.0) -> Slot:
    """A slot for `key` that keeps every window: at most N operations in any P seconds."""
    return reserve_buckets([(key, windows)], max_wait=max_wait, booking=booking, margin=margin)


def reserve(key: str, rate_per_second: float, *, max_wait: float = 2.0) -> Slot:
    """One steady rate (email's sending rate): one operation per 1/rate seconds."""
    return reserve_windows(key, ((1.0 / rate_per_second, 1),), max_wait=max_wait)


def clear_local() -> None:
    """Forget the in-process logs (tests)."""
    _local.clear()
