"""Two schedulers started against one database: only one runs jobs; the other takes over when
the first stops renewing its lease."""

from __future__ import annotations

from core.clock import FrozenClock, use_clock
from workers.periodic import Job, Scheduler


def test_only_one_of_two_schedulers_runs_jobs_until_its_lease_lapses(db: str) -> None:
    clock = FrozenClock()
    previous = use_clock(clock)
    try:
        ran: list[str] = []
        first = Scheduler([Job("tick", 0.0, lambda: ran.append("first"))])
        second = Scheduler([Job("tick", 0.0, lambda: ran.append("second"))])
        for _ in range(3):
            for scheduler in (first, second):
                if scheduler.is_leader():
                    scheduler.run_due()
        assert ran == ["first", "first", "first"]
        clock.advance(seconds=Scheduler.LEASE_SECONDS + 1)  # the first one died: no renewal
        assert second.is_leader() and not first.is_leader()
    finally:
        use_clock(previous)


def test_a_leader_keeps_its_lease_by_renewing_it(db: str) -> None:
    clock = FrozenClock()
    previous = use_clock(clock)
    try:
        leader, other = Scheduler([]), Scheduler([])
        assert leader.is_leader()
        for _ in range(5):
            clock.advance(seconds=Scheduler.LEASE_SECONDS / 2)
            assert leader.is_leader() and not other.is_leader()
    finally:
        use_clock(previous)
