"""Which windows the delivery worker paces a reply with (workers/outbound.py `reserve_slot`)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from channels.base import OutboundReply
from channels.github import GitHubAdapter, GitHubConfig
from channels.teams import TeamsAdapter, TeamsConfig
from core import cache as cache_module
from core import settings as settings_module
from services import pacing
from workers.outbound import BOOKING_LEAD_SECONDS, come_back_in, reserve_slot

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


@pytest.fixture(autouse=True)
def in_process_pacer(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("REDIS_URL", raising=False)
    settings_module.get_settings.cache_clear()
    cache_module.reset_cache()
    pacing.clear_local()
    yield
    pacing.clear_local()


def a_reply(**thread: Any) -> OutboundReply:
    return OutboundReply(delivery_id=str(uuid.uuid4()), ticket_id="t", ticket_number=1, text="Hi", thread=thread)


def github(**settings: Any) -> GitHubAdapter:
    return GitHubAdapter(GitHubConfig.from_settings({"token": f"ghp_{uuid.uuid4().hex}", "webhook_secret": "s",
                                                     **settings}))


def slots(adapter: Any, channel: str, replies: list[OutboundReply]) -> list[pacing.Slot | None]:
    return [reserve_slot(adapter, channel, r, adapter.rate_limit_key(r), booking=r.delivery_id) for r in replies]


def test_github_replies_go_out_at_80_at_once_then_wait_for_the_minute_window() -> None:
    adapter = github()
    taken = slots(adapter, "github", [a_reply() for _ in range(81)])
    assert all(s is not None and s.granted and s.wait == 0 for s in taken[:80])
    last = taken[80]
    assert last is not None and last.booked and 60 < last.wait <= 60 + 2 * pacing.VENDOR_MARGIN_SECONDS
    # Put aside until shortly before its booked slot.
    assert come_back_in(last) == pytest.approx(last.wait - BOOKING_LEAD_SECONDS)


def test_a_github_enterprise_servers_configured_windows_replace_githubs() -> None:
    adapter = github(rate_limits=[{"period_seconds": 10, "max": 2}])
    first, second, third = slots(adapter, "github", [a_reply() for _ in range(3)])
    assert first and second and first.granted and second.granted
    assert third and third.booked and 10 < third.wait <= 10.5


def test_an_empty_list_of_github_rate_limits_means_unpaced() -> None:
    assert slots(github(rate_limits=[]), "github", [a_reply()]) == [None]


def test_teams_replies_keep_the_threads_windows_and_the_apps_tenant_wide_limit() -> None:
    adapter = TeamsAdapter(TeamsConfig(app_id="app", app_password="p", tenant_id=TENANT))
    try:
        one_thread = [a_reply(teams_conversation_id="19:a@thread.skype;messageid=1", teams_tenant_id=TENANT)
                      for _ in range(8)]
        taken = slots(adapter, "teams", one_thread)
        # 7 in any second: the eighth waits for the next second (and the margin).
        assert [s.wait == 0 for s in taken if s] == [True] * 7 + [False]
        many_threads = [a_reply(teams_conversation_id=f"19:c{n}@thread.skype;messageid=1", teams_tenant_id=TENANT)
                        for n in range(30)]
        spread = slots(adapter, "teams", many_threads)
        # The other threads are not held back by the first one's slot a second out: up to 30 a
        # second for the whole tenant go now, the rest wait.
        immediate = sum(1 for s in spread if s and s.granted and s.wait == 0)
        assert 22 <= immediate <= 23
        ats = sorted(s.at for s in [*taken, *spread] if s)
        window = pacing.widened(1.0, pacing.VENDOR_MARGIN_SECONDS)
        assert all(ats[i + 30] - ats[i] >= window - 1e-6 for i in range(len(ats) - 30))
    finally:
        adapter.close()


def test_email_keeps_its_single_sending_rate_and_comes_back_at_the_earliest_slot() -> None:
    class Mailer:
        rate_per_second = 1.0

    first, second, third, fourth = (reserve_slot(Mailer(), "email", a_reply(), "email:cfg", booking=str(n))
                                    for n in range(4))
    assert [s.granted for s in (first, second, third, fourth) if s] == [True, True, True, False]
    assert fourth is not None and not fourth.booked and come_back_in(fourth) == fourth.wait
