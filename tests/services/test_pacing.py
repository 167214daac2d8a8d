"""services.pacing: several windows per key ("at most N in any P seconds"), shared by every
thread and process, in Redis and in-process; bookings hand a backlog out in order."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import cache as cache_module
from core import settings as settings_module
from services import pacing

ROOT = Path(__file__).resolve().parents[2]
# Both bind: 4 in any 0.2 s, and 12 in any second.
WINDOWS: tuple[tuple[float, int], ...] = ((0.2, 4), (1.0, 12))


@pytest.fixture(params=["in-process", "redis"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if request.param == "redis":
        request.getfixturevalue("redis_url")
    else:
        monkeypatch.delenv("REDIS_URL", raising=False)
        settings_module.get_settings.cache_clear()
        cache_module.reset_cache()
    pacing.clear_local()
    yield request.param
    pacing.clear_local()
    settings_module.get_settings.cache_clear()
    cache_module.reset_cache()


def key() -> str:
    return f"test:{uuid.uuid4().hex}"


def ideal_count(windows: Sequence[tuple[float, int]], duration: float) -> int:
    """How many operations the windows allow in `duration` seconds, sent as early as allowed."""
    times: list[float] = []
    while True:
        at = times[-1] if times else 0.0
        for period, limit in windows:
            if len(times) >= limit:
                at = max(at, times[-limit] + period)
        if at > duration + 1e-9:
            return len(times)
        times.append(at)


def assert_windows_kept(ats: Sequence[float], windows: Sequence[tuple[float, int]]) -> None:
    """No window of P seconds holds more than N slots: any N+1 in a row span at least P."""
    ordered = sorted(ats)
    for period, limit in windows:
        for i in range(len(ordered) - limit):
            span = ordered[i + limit] - ordered[i]
            assert span >= period - 1e-6, f"{limit + 1} slots within {span:.6f} s (window {limit}/{period} s)"


def hammer(windows: Sequence[tuple[float, int]], *, threads: int, seconds: float, booking: bool,
           bucket: str, max_wait: float = 0.5, extra: Sequence[pacing.Bucket] = ()) -> list[float]:
    """Threads asking for slots as fast as they may for `seconds`; the slots they were granted."""
    pacing.reserve_windows(f"warm-up:{bucket}", windows)  # connected, the script loaded
    granted: list[float] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def work() -> None:
        while time.monotonic() < deadline:
            ticket = uuid.uuid4().hex if booking else None
            while True:
                slot = pacing.reserve_buckets([(bucket, windows), *extra], max_wait=max_wait, booking=ticket)
                if slot.granted:
                    break
                # Put the work aside until shortly before the slot (booked) or the earliest one.
                time.sleep(max(0.0, slot.wait - (0.1 if booking else 0.0)))
            with lock:
                granted.append(slot.at)
            time.sleep(slot.wait)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return granted


def assert_reaches_the_limits(ats: Sequence[float], windows: Sequence[tuple[float, int]], measured: float) -> None:
    first = min(ats)
    inside = [at for at in ats if at <= first + measured]
    allowed = ideal_count(windows, measured)
    assert len(inside) >= 0.9 * allowed, f"{len(inside)} slots in {measured} s, {allowed} allowed"


# -- the invariant and the throughput ---------------------------------------------------------------


@pytest.mark.parametrize("booking", [False, True], ids=["refused-and-retried", "booked"])
def test_threads_hammering_one_key_never_exceed_a_window_and_reach_the_limits(backend: str, booking: bool) -> None:
    ats = hammer(WINDOWS, threads=8, seconds=1.8, booking=booking, bucket=key())
    assert_windows_kept(ats, WINDOWS)
    assert_reaches_the_limits(ats, WINDOWS, 1.5)


_CHILD = """
import json, sys, threading, time, uuid
sys.path.insert(0, sys.argv[1])
from services import pacing
windows = json.loads(sys.argv[2]); bucket = sys.argv[3]; seconds = float(sys.argv[4])
pacing.reserve_windows("warm-up:" + bucket, windows)  # connected and the script loaded
print("ready", flush=True)
start = float(sys.stdin.readline())
granted, lock = [], threading.Lock()
def work():
    while time.time() < start:
        time.sleep(0.005)
    while time.time() < start + seconds:
        ticket = uuid.uuid4().hex
        while True:
            slot = pacing.reserve_windows(bucket, windows, max_wait=0.5, booking=ticket)
            if slot.granted:
                break
            time.sleep(max(0.0, slot.wait - 0.1))
        with lock:
            granted.append(slot.at)
        time.sleep(slot.wait)
workers = [threading.Thread(target=work) for _ in range(3)]
for w in workers: w.start()
for w in workers: w.join()
print(json.dumps(granted))
"""


def test_worker_processes_sharing_redis_keep_every_window_together_and_reach_the_limits(redis_url: str) -> None:
    bucket = key()
    env = {**os.environ, "REDIS_URL": redis_url}
    procs = [
        subprocess.Popen([sys.executable, "-c", _CHILD, str(ROOT), json.dumps(WINDOWS), bucket, "1.8"],
                         env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT, text=True)
        for _ in range(3)
    ]
    for proc in procs:  # every process up before the race starts
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    start = time.time() + 0.2
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(f"{start}\n")
        proc.stdin.flush()
    per_process = [json.loads(proc.communicate(timeout=30)[0]) for proc in procs]
    assert all(per_process), "every process was granted slots"
    ats = [at for granted in per_process for at in granted]
    assert_windows_kept(ats, WINDOWS)
    assert_reaches_the_limits(ats, WINDOWS, 1.5)


def test_a_slot_keeps_the_windows_of_every_bucket_it_counts_in(backend: str) -> None:
    # Two conversations at 4 per 0.2 s each, and one tenant-wide bucket of 5 per 0.2 s.
    tenant = (key(), ((0.2, 5),))
    first, second = key(), key()
    results: list[list[float]] = [[], []]

    def run(index: int, bucket: str) -> None:
        results[index] = hammer(((0.2, 4),), threads=4, seconds=1.2, booking=True, bucket=bucket, extra=[tenant])

    workers = [threading.Thread(target=run, args=(i, b)) for i, b in enumerate((first, second))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert_windows_kept(results[0], ((0.2, 4),))
    assert_windows_kept(results[1], ((0.2, 4),))
    assert_windows_kept(results[0] + results[1], ((0.2, 5),))
    assert_reaches_the_limits(results[0] + results[1], ((0.2, 5),), 0.9)


# -- the rules -------------------------------------------------------------------------------------


def test_slots_within_max_wait_are_granted_in_the_future_and_others_are_refused_unrecorded(backend: str) -> None:
    bucket = key()
    slots = [pacing.reserve_windows(bucket, ((1.0, 2),), max_wait=1.5) for _ in range(6)]
    assert [s.granted for s in slots] == [True, True, True, True, False, False]
    assert [round(s.wait, 1) for s in slots[:4]] == [0.0, 0.0, 1.0, 1.0]
    assert all(1.9 < s.wait <= 2.0 for s in slots[4:])  # nothing recorded for them: both see 2 s


def test_a_booking_holds_a_slot_beyond_max_wait_for_the_caller_who_comes_back(backend: str) -> None:
    bucket = key()
    windows = ((0.3, 1),)
    now = pacing.reserve_windows(bucket, windows, max_wait=0.1)
    booked = pacing.reserve_windows(bucket, windows, max_wait=0.1, booking="dlv-1")
    assert now.granted and not booked.granted and 0.25 < booked.wait <= 0.3
    # Someone else asking now lines up behind the booking.
    behind = pacing.reserve_windows(bucket, windows, max_wait=0.1, booking="dlv-2")
    assert round(behind.at - booked.at, 3) == 0.3
    # Asking again early: still the same slot, still not yet.
    again = pacing.reserve_windows(bucket, windows, max_wait=0.1, booking="dlv-1")
    assert (again.granted, again.at) == (False, booked.at)
    time.sleep(booked.wait - 0.05)
    mine = pacing.reserve_windows(bucket, windows, max_wait=0.1, booking="dlv-1")
    assert mine.granted and mine.at == booked.at and mine.wait <= 0.1
    # Used: the same booking id asks for a new slot (a retry of that delivery), after the others.
    retry = pacing.reserve_windows(bucket, windows, max_wait=0.1, booking="dlv-1")
    assert not retry.granted and round(retry.at - behind.at, 3) == 0.3


def test_a_booking_missed_by_more_than_a_third_of_the_margin_is_given_back_and_searched_again(backend: str) -> None:
    bucket = key()
    windows = ((0.2, 1),)
    pacing.reserve_windows(bucket, windows, max_wait=0.05, margin=0.02)
    booked = pacing.reserve_windows(bucket, windows, max_wait=0.05, booking="late", margin=0.02)
    assert not booked.granted
    time.sleep(booked.wait + 0.1)  # came back too late: sending now could crowd a window
    again = pacing.reserve_windows(bucket, windows, max_wait=0.05, booking="late", margin=0.02)
    assert again.at > booked.at and again.granted


def test_a_booking_claimed_a_little_late_is_still_granted_at_once(backend: str) -> None:
    bucket = key()
    windows = ((0.2, 1),)
    pacing.reserve_windows(bucket, windows, max_wait=0.05, margin=0.3)
    booked = pacing.reserve_windows(bucket, windows, max_wait=0.05, booking="slightly-late", margin=0.3)
    time.sleep(booked.wait + 0.03)  # late by less than a third of the margin
    again = pacing.reserve_windows(bucket, windows, max_wait=0.05, booking="slightly-late", margin=0.3)
    assert (again.granted, again.wait, again.at) == (True, 0.0, booked.at)


def test_the_margin_widens_every_window(backend: str) -> None:
    bucket = key()
    first = pacing.reserve_windows(bucket, ((5.0, 1),), margin=0.1, max_wait=10)
    second = pacing.reserve_windows(bucket, ((5.0, 1),), margin=0.1, max_wait=10)
    assert round(second.at - first.at, 3) == 5.1


def test_the_margin_is_capped_at_a_share_of_a_short_window(backend: str) -> None:
    # Slack's one-second window keeps more than 90 % of its rate however large the margin.
    bucket = key()
    first = pacing.reserve_windows(bucket, ((1.0, 1),), margin=0.3)
    second = pacing.reserve_windows(bucket, ((1.0, 1),), margin=0.3)
    assert round(second.at - first.at, 3) == 1 + pacing.MAX_MARGIN_SHARE


def test_a_single_rate_is_one_window_of_one_operation(backend: str) -> None:
    bucket = key()
    slots = [pacing.reserve(bucket, 4.0, max_wait=1.0) for _ in range(6)]
    assert [round(s.wait, 2) for s in slots if s.granted] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert not slots[5].granted


def test_no_windows_means_unpaced(backend: str) -> None:
    assert pacing.reserve_windows(key(), ()) == pacing.Slot(True, 0.0, 0.0)


def test_the_redis_log_expires_once_its_slots_can_no_longer_matter(redis_url: str) -> None:
    import redis

    bucket = key()
    pacing.reserve_windows(bucket, ((2.0, 5), (60.0, 80)))
    client = redis.Redis.from_url(redis_url)
    ttl = client.pttl(f"tw:pacelog:{bucket}")
    assert 60_000 < ttl <= 62_000


def test_ideal_count_of_the_test_windows_makes_both_of_them_bind() -> None:
    # 4 at 0, 0.2 and 0.4; the second window then waits for 1.0: 12 + 12 + 4 by 2.0 s.
    assert ideal_count(WINDOWS, 2.0) == 28


def test_a_key_booked_far_ahead_does_not_hold_back_another_key_sharing_a_bucket(backend: str) -> None:
    tenant = (key(), ((1.0, 10),))
    busy, quiet = key(), key()
    booked = [pacing.reserve_buckets([(busy, ((1.0, 1),)), tenant], max_wait=0.5, booking=f"b{n}") for n in range(4)]
    assert booked[0].granted and all(s.booked for s in booked[1:]) and round(booked[3].wait) == 3
    other = pacing.reserve_buckets([(quiet, ((1.0, 1),)), tenant], max_wait=0.5)
    assert other.granted and other.wait == 0


@settings(max_examples=300, deadline=None)
@given(
    buckets=st.lists(
        st.tuples(st.lists(st.integers(0, 60), max_size=12),
                  st.lists(st.tuples(st.integers(1, 20), st.integers(1, 4)), min_size=1, max_size=3)),
        min_size=1, max_size=2),
    now=st.integers(0, 40),
)
def test_the_earliest_slot_keeps_every_window_of_every_bucket_and_nothing_earlier_would(
    buckets: list[tuple[list[int], list[tuple[int, int]]]], now: int
) -> None:
    def keeps(times: list[int], windows: list[tuple[int, int]]) -> bool:
        ordered = sorted(times)
        return all(ordered[i + n] - ordered[i] >= p for p, n in windows for i in range(len(ordered) - n))

    logs: list[list[int]] = []
    for slots, windows in buckets:  # logs the pacer could have written: they keep their windows
        log: list[int] = []
        for slot in sorted(slots):
            if keeps([*log, slot], windows):
                log.append(slot)
        logs.append(log)
    all_windows = [windows for _, windows in buckets]
    at = pacing.earliest_slot(now, logs, all_windows)

    def fits(t: int) -> bool:
        return all(keeps([*log, t], windows) for log, windows in zip(logs, all_windows, strict=True))

    assert at >= now and fits(at)
    assert not any(fits(t) for t in range(now, at))
