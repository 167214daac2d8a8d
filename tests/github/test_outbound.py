"""Replies through the real PyGithub client against the fake GitHub REST server."""

from __future__ import annotations

import dataclasses
import sys
import threading
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from channels.base import Attachment, DeliveryStatus, MemoryCache
from channels.github import GitHubAdapter
from channels.github.outbound import (
    CONTENT_CREATION_LIMIT_PER_HOUR,
    CONTENT_CREATION_LIMIT_PER_MINUTE,
    CONTENT_CREATION_LIMITS,
    marked_delivery_id,
)
from tests.fakes.github_api import FakeGitHub
from tests.fakes.http import FakeServer
from tests.github.support import HELLO_WORLD, TOKEN, make_adapter, payload_event, reply

COMMENTS = r"/issues/1/comments$"
NOW = 1_770_000_000.0


def fixed_clock() -> float:
    return NOW


# -- success -----------------------------------------------------------------------------------


def test_a_reply_is_posted_as_one_issue_comment_with_the_hidden_delivery_marker(
    adapter: GitHubAdapter, github_api: FakeGitHub
) -> None:
    result = adapter.deliver(reply(delivery_id="dlv-0001", text="Fixed in 1.2.3."))

    [comment] = github_api.comments_on(HELLO_WORLD, 1)
    assert result.status is DeliveryStatus.DELIVERED
    assert result.external_id == str(comment["id"])
    assert comment["body"] == "Fixed in 1.2.3.\n\n<!-- ticketwire:delivery:dlv-0001 -->"
    # lazy=True: no GET of the repository or the issue before the POST.
    [call] = github_api.calls
    assert (call.method, call.path) == ("POST", "/repos/Codertocat/Hello-World/issues/1/comments")
    assert call.headers["authorization"] == f"token {TOKEN}"


def test_a_replys_files_are_linked_in_the_comment_before_the_marker(
    adapter: GitHubAdapter, github_api: FakeGitHub
) -> None:
    files = (Attachment(filename="trace [1].log", url="https://tw.example/a/m/0/t/trace.log"),
             Attachment(filename="inline.png"))  # no URL: nothing to link to
    adapter.deliver(dataclasses.replace(reply(delivery_id="dlv-0002", text="See the trace."), attachments=files))
    [comment] = github_api.comments_on(HELLO_WORLD, 1)
    assert comment["body"] == ("See the trace.\n\n- [trace \\[1\\].log](https://tw.example/a/m/0/t/trace.log)"
                               "\n\n<!-- ticketwire:delivery:dlv-0002 -->")


def test_the_webhook_echo_of_our_own_comment_is_ignored(
    adapter: GitHubAdapter, github_api: FakeGitHub
) -> None:
    adapter.deliver(reply())
    [comment] = github_api.comments_on(HELLO_WORLD, 1)
    # The token's user is a person (author_association MEMBER): only the marker tells.
    echo = {
        "action": "created",
        "issue": {"id": 444500041, "number": 1, "title": "Spelling error", "user": comment["user"]},
        "comment": comment,
        "repository": {"full_name": HELLO_WORLD},
        "sender": comment["user"],
    }
    assert adapter.parse(payload_event("issue_comment", echo)) == []


# -- rate limits -------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [403, 429])
def test_a_secondary_rate_limit_with_retry_after_is_retried_after_that_many_seconds(
    adapter: GitHubAdapter, github_api: FakeGitHub, status: int
) -> None:
    github_api.fail_next_with_secondary_rate_limit(status=status, retry_after=37)
    result = adapter.deliver(reply())
    assert (result.status, result.retry_after, result.error_code) == (
        DeliveryStatus.RETRYABLE,
        37.0,
        "secondary_rate_limited",
    )


def test_a_secondary_rate_limit_without_retry_after_waits_at_least_a_minute(
    adapter: GitHubAdapter, github_api: FakeGitHub
) -> None:
    github_api.fail_next_with_secondary_rate_limit(retry_after=None)
    result = adapter.deliver(reply())
    assert (result.status, result.retry_after) == (DeliveryStatus.RETRYABLE, 60.0)


@pytest.mark.parametrize("status", [403, 429])
def test_an_exhausted_primary_rate_limit_is_retried_when_the_window_resets(
    github_api: FakeGitHub, status: int
) -> None:
    adapter = make_adapter(github_api, clock=fixed_clock)
    github_api.fail_next_with_primary_rate_limit(status=status, reset_at=int(NOW) + 42)
    result = adapter.deliver(reply())
    assert (result.status, result.retry_after, result.error_code) == (
        DeliveryStatus.RETRYABLE,
        42.0,
        "rate_limited",
    )
    assert result.error_detail == "API rate limit exceeded for user ID 90001."


def test_a_403_that_is_not_a_rate_limit_fails_at_once(adapter: GitHubAdapter, github_api: FakeGitHub) -> None:
    github_api.fail_next_with_status(403, "Resource not accessible by integration")
    result = adapter.deliver(reply())
    assert (result.status, result.error_code, result.error_detail) == (
        DeliveryStatus.FAILED,
        "forbidden",
        "Resource not accessible by integration",
    )


def test_pacing_shares_one_bucket_per_account_whatever_the_repository(github_api: FakeGitHub) -> None:
    adapter = make_adapter(github_api)
    key = adapter.rate_limit_key(reply(repo=HELLO_WORLD))
    assert key == adapter.rate_limit_key(reply(repo="octo-org/other", number=9))
    assert key != make_adapter(github_api, token="ghp_another").rate_limit_key(reply())
    assert TOKEN not in key
    assert (CONTENT_CREATION_LIMIT_PER_MINUTE, CONTENT_CREATION_LIMIT_PER_HOUR) == (80, 500)


def test_the_fake_enforces_githubs_published_content_creation_limits_per_token(github_api: FakeGitHub) -> None:
    assert github_api.content_limits == CONTENT_CREATION_LIMITS == ((60.0, 80), (3600.0, 500))
    github_api.clock = fixed_clock  # every request in one instant, however slow the machine
    adapter = make_adapter(github_api)
    results = [adapter.deliver(reply(delivery_id=f"dlv-{n}")) for n in range(81)]
    assert {r.status for r in results[:80]} == {DeliveryStatus.DELIVERED}
    refused = results[80]
    assert (refused.status, refused.error_code) == (DeliveryStatus.RETRYABLE, "secondary_rate_limited")
    assert 1.0 <= (refused.retry_after or 0) <= 60.0
    assert github_api.secondary_rate_limited == 1 and len(github_api.comments_on(HELLO_WORLD, 1)) == 80
    # Another token has its own windows.
    github_api.pat_tokens.add("ghp_another")
    other = make_adapter(github_api, token="ghp_another").deliver(reply(delivery_id="dlv-other"))
    assert other.status == DeliveryStatus.DELIVERED


@pytest.mark.parametrize("status", [403, 429])
def test_scaled_limits_refuse_comment_creates_and_edits_over_a_window_with_retry_after(status: int) -> None:
    # Every request in one instant, however slow the machine.
    with FakeGitHub(token=TOKEN, content_limits=((1.0, 3),), secondary_limit_status=status, clock=fixed_clock) as api:
        adapter = make_adapter(api)
        posted = [adapter.deliver(reply(delivery_id=f"dlv-{n}")) for n in range(3)]
        edited = adapter.edit_delivered(reply(text="edited"), posted[0].external_id or "")
        assert (edited.status, edited.error_code, edited.retry_after) == (
            DeliveryStatus.RETRYABLE, "secondary_rate_limited", 1.0)
        assert len([c for c in api.calls if c.method == "PATCH"]) == 1
        assert api.secondary_rate_limited == 1
        assert "secondary rate limit" in (edited.error_detail or "")


# -- transient failures ------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503])
def test_a_server_error_surfaces_once_as_retryable_without_retries_inside_pygithub(
    adapter: GitHubAdapter, github_api: FakeGitHub, status: int
) -> None:
    github_api.fail_next_with_status(status, times=20)
    result = adapter.deliver(reply())
    assert (result.status, result.error_code, result.retry_after) == (
        DeliveryStatus.RETRYABLE,
        "server_error",
        None,
    )
    assert len(github_api.calls) == 1


def test_a_timeout_is_retryable(github_api: FakeGitHub) -> None:
    adapter = make_adapter(github_api, timeout_seconds=1)
    github_api.fail_next_with_timeout(2.5)
    result = adapter.deliver(reply())
    assert (result.status, result.error_code) == (DeliveryStatus.RETRYABLE, "timeout")


def test_a_refused_connection_is_retryable() -> None:
    closed = FakeServer().start()
    url = closed.url
    closed.stop()
    result = make_adapter(api_base_url=url).deliver(reply())
    assert (result.status, result.error_code) == (DeliveryStatus.RETRYABLE, "connection_error")


# -- permanent failures ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code"),
    [(401, "bad_credentials"), (404, "not_found"), (410, "gone"), (422, "validation_failed")],
)
def test_errors_a_retry_cannot_heal_fail_at_once(
    adapter: GitHubAdapter, github_api: FakeGitHub, status: int, code: str
) -> None:
    github_api.fail_next_with_status(status)
    result = adapter.deliver(reply())
    assert (result.status, result.error_code, result.retry_after) == (DeliveryStatus.FAILED, code, None)


def test_a_validation_error_names_what_github_rejected(
    adapter: GitHubAdapter, github_api: FakeGitHub
) -> None:
    github_api.fail_next_with_status(
        422, errors=[{"resource": "IssueComment", "code": "custom", "message": "Body is too long"}]
    )
    result = adapter.deliver(reply())
    assert result.error_detail == "Validation Failed: Body is too long"


@pytest.mark.parametrize(
    "thread",
    [{}, {"github_repo": "Codertocat/Hello-World"}, {"github_repo": "../x", "github_issue_number": 1}],
)
def test_a_ticket_without_usable_github_coordinates_fails_without_calling_github(
    adapter: GitHubAdapter, github_api: FakeGitHub, thread: dict[str, object]
) -> None:
    broken = reply()
    result = adapter.deliver(type(broken)(**{**broken.__dict__, "thread": thread}))
    assert (result.status, result.error_code) == (DeliveryStatus.FAILED, "invalid_thread")
    assert github_api.calls == []


def test_a_delivery_id_that_would_break_the_hidden_comment_fails(adapter: GitHubAdapter) -> None:
    result = adapter.deliver(reply(delivery_id="x --> <b>"))
    assert (result.status, result.error_code) == (DeliveryStatus.FAILED, "invalid_delivery_id")


# -- reconciling an unknown outcome ------------------------------------------------------------


def test_find_delivered_finds_the_earlier_comment_among_many(
    adapter: GitHubAdapter, github_api: FakeGitHub
) -> None:
    delivered = adapter.deliver(reply(delivery_id="dlv-0001"))
    for n in range(230):  # three pages of 100 after ours
        github_api.add_comment(HELLO_WORLD, 1, f"comment {n}")
    github_api.add_comment(HELLO_WORLD, 1, "other\n\n<!-- ticketwire:delivery:dlv-0002 -->")

    found = adapter.find_delivered(reply(delivery_id="dlv-0001"))

    assert found is not None
    assert (found.status, found.external_id) == (DeliveryStatus.DELIVERED, delivered.external_id)


def test_find_delivered_is_none_when_no_attempt_landed(
    adapter: GitHubAdapter, github_api: FakeGitHub
) -> None:
    github_api.add_comment(HELLO_WORLD, 1, "a customer's comment")
    assert adapter.find_delivered(reply(delivery_id="dlv-0001")) is None


def test_find_delivered_reports_a_failed_lookup_instead_of_not_found(
    adapter: GitHubAdapter, github_api: FakeGitHub
) -> None:
    github_api.fail_next_with_status(500)
    found = adapter.find_delivered(reply())
    assert found is not None and found.status is DeliveryStatus.RETRYABLE


def test_a_comment_that_landed_after_the_client_timed_out_is_found_not_posted_twice(
    github_api: FakeGitHub,
) -> None:
    adapter = make_adapter(github_api, timeout_seconds=1)
    github_api.slow_down_next_comment(2.5)

    first = adapter.deliver(reply(delivery_id="dlv-0001"))
    found = adapter.find_delivered(reply(delivery_id="dlv-0001"))

    [comment] = github_api.comments_on(HELLO_WORLD, 1)
    assert first.status is DeliveryStatus.RETRYABLE
    assert found is not None
    assert (found.status, found.external_id) == (DeliveryStatus.DELIVERED, str(comment["id"]))


# -- edits -------------------------------------------------------------------------------------


def test_editing_a_sent_reply_patches_the_comment_and_keeps_the_marker(
    adapter: GitHubAdapter, github_api: FakeGitHub
) -> None:
    sent = adapter.deliver(reply(delivery_id="dlv-0001"))
    assert sent.external_id is not None

    result = adapter.edit_comment(HELLO_WORLD, sent.external_id, "Fixed in 1.2.4.", delivery_id="dlv-0001")

    [comment] = github_api.comments_on(HELLO_WORLD, 1)
    assert (result.status, result.external_id) == (DeliveryStatus.DELIVERED, sent.external_id)
    assert comment["body"] == "Fixed in 1.2.4.\n\n<!-- ticketwire:delivery:dlv-0001 -->"
    assert [(c.method, c.path) for c in github_api.calls][-1] == (
        "PATCH",
        f"/repos/Codertocat/Hello-World/issues/comments/{sent.external_id}",
    )


def test_edit_delivered_patches_the_reply_comment_with_the_new_text_and_the_same_marker(
    adapter: GitHubAdapter, github_api: FakeGitHub
) -> None:
    sent = adapter.deliver(reply(delivery_id="dlv-0007"))
    assert sent.external_id is not None

    result = adapter.edit_delivered(reply(delivery_id="dlv-0007", text="Fixed in 1.2.5."), sent.external_id)

    [comment] = github_api.comments_on(HELLO_WORLD, 1)
    assert (result.status, result.external_id) == (DeliveryStatus.DELIVERED, sent.external_id)
    assert comment["body"] == "Fixed in 1.2.5.\n\n<!-- ticketwire:delivery:dlv-0007 -->"
    assert marked_delivery_id(comment["body"]) == "dlv-0007"


def test_edit_delivered_is_retryable_on_a_secondary_rate_limit(
    adapter: GitHubAdapter, github_api: FakeGitHub
) -> None:
    sent = adapter.deliver(reply())
    assert sent.external_id is not None
    github_api.fail_next_with_secondary_rate_limit(retry_after=5, path=r"/issues/comments/")
    result = adapter.edit_delivered(reply(text="later"), sent.external_id)
    assert (result.status, result.retry_after) == (DeliveryStatus.RETRYABLE, 5.0)


def test_edit_delivered_of_a_ticket_without_a_repository_fails_without_calling_github(
    adapter: GitHubAdapter, github_api: FakeGitHub
) -> None:
    result = adapter.edit_delivered(reply(repo="not a repo"), "2000000001")
    assert (result.status, result.error_code) == (DeliveryStatus.FAILED, "invalid_thread")
    assert github_api.calls == []


def test_editing_a_comment_that_no_longer_exists_fails(adapter: GitHubAdapter) -> None:
    result = adapter.edit_comment(HELLO_WORLD, 123, "new text")
    assert (result.status, result.error_code) == (DeliveryStatus.FAILED, "not_found")


def test_editing_with_a_comment_id_that_is_not_a_number_fails_without_calling_github(
    adapter: GitHubAdapter, github_api: FakeGitHub
) -> None:
    result = adapter.edit_comment(HELLO_WORLD, "comment:12", "new text")
    assert (result.status, result.error_code) == (DeliveryStatus.FAILED, "invalid_comment_id")
    assert github_api.calls == []


# -- GitHub App auth ---------------------------------------------------------------------------

APP_ID = "123456"
INSTALLATION_ID = 7654321


@pytest.fixture(scope="module")
def app_key() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private_pem, public_pem


@pytest.fixture
def app_api(app_key: tuple[str, str]) -> Iterator[FakeGitHub]:
    api = FakeGitHub(app_id=APP_ID, app_public_key=app_key[1], installation_id=INSTALLATION_ID)
    api.start()
    yield api
    api.stop()


def app_adapter(api: FakeGitHub, private_key: str, cache: MemoryCache) -> GitHubAdapter:
    return make_adapter(
        api,
        token="",
        app_id=APP_ID,
        private_key=private_key,
        installation_id=INSTALLATION_ID,
        cache=cache,
    )


def test_a_github_app_replies_with_an_installation_token_minted_from_its_jwt(
    app_api: FakeGitHub, app_key: tuple[str, str]
) -> None:
    result = app_adapter(app_api, app_key[0], MemoryCache()).deliver(reply())

    assert result.status is DeliveryStatus.DELIVERED
    assert [(c.method, c.path) for c in app_api.calls] == [
        ("POST", f"/app/installations/{INSTALLATION_ID}/access_tokens"),
        ("POST", "/repos/Codertocat/Hello-World/issues/1/comments"),
    ]
    assert app_api.calls[1].headers["authorization"] == "token ghs_fake_installation_1"
    [comment] = app_api.comments_on(HELLO_WORLD, 1)
    assert comment["user"]["type"] == "Bot"


def test_adapters_sharing_a_cache_reuse_one_installation_token(
    app_api: FakeGitHub, app_key: tuple[str, str]
) -> None:
    cache = MemoryCache()
    for n in range(3):
        assert (
            app_adapter(app_api, app_key[0], cache).deliver(reply(delivery_id=f"d{n}")).status == "delivered"
        )
    assert app_api.installation_tokens == ["ghs_fake_installation_1"]


def test_a_revoked_installation_token_fails_once_and_is_minted_again(
    app_api: FakeGitHub, app_key: tuple[str, str]
) -> None:
    cache = MemoryCache()
    app_adapter(app_api, app_key[0], cache).deliver(reply(delivery_id="d1"))
    app_api.revoke_installation_tokens()

    failed = app_adapter(app_api, app_key[0], cache).deliver(reply(delivery_id="d2"))
    retried = app_adapter(app_api, app_key[0], cache).deliver(reply(delivery_id="d2"))

    assert (failed.status, failed.error_code) == (DeliveryStatus.FAILED, "bad_credentials")
    assert retried.status is DeliveryStatus.DELIVERED
    assert app_api.installation_tokens == ["ghs_fake_installation_1", "ghs_fake_installation_2"]


def test_a_comment_posted_as_the_app_is_ignored_even_without_its_marker(
    app_api: FakeGitHub, app_key: tuple[str, str]
) -> None:
    adapter = app_adapter(app_api, app_key[0], MemoryCache())
    adapter.deliver(reply())
    [comment] = app_api.comments_on(HELLO_WORLD, 1)
    echo = {
        "action": "created",
        "issue": {"id": 1, "number": 1, "title": "t", "user": {"login": "someone", "type": "User"}},
        "comment": {**comment, "body": "no marker here"},
        "repository": {"full_name": HELLO_WORLD},
        "sender": comment["user"],
    }
    assert adapter.parse(payload_event("issue_comment", echo)) == []


# -- concurrency -------------------------------------------------------------------------------


def test_replies_delivered_from_many_worker_threads_each_land_once_on_their_own_issue(
    adapter: GitHubAdapter, github_api: FakeGitHub
) -> None:
    # One adapter serves all worker threads. A PyGithub client shared between threads can
    # swap requests (one reply posted twice, another lost); switching threads as often as
    # possible makes that likely to show up here if the adapter ever shares one again.
    threads, per_thread = 8, 25
    github_api.content_limits = ()  # 200 comments at once: the secondary limits are not the point
    results: dict[str, str | None] = {}

    def work(n: int) -> None:
        for i in range(per_thread):
            delivery_id = f"t{n}-{i}"
            results[delivery_id] = adapter.deliver(reply(delivery_id=delivery_id, number=n + 1)).external_id

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    finally:
        sys.setswitchinterval(interval)

    for n in range(threads):
        posted = sorted(
            marked_delivery_id(c["body"]) or "" for c in github_api.comments_on(HELLO_WORLD, n + 1)
        )
        assert posted == sorted(f"t{n}-{i}" for i in range(per_thread))
    assert len(set(results.values())) == threads * per_thread
