"""Replies as issue comments: the delivery marker, the REST calls, and GitHub's errors as policy.

Every comment ticketwire posts ends with a hidden HTML comment naming the delivery
(`<!-- ticketwire:delivery:<id> -->`). GitHub renders Markdown and drops HTML comments from
the page, but keeps them in the stored body, so the marker lets `find_delivered` recognise
an earlier attempt whose outcome was unknown, and lets the inbound side drop the webhook
echo of our own comment.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from github import Github, GithubException
from github.IssueComment import IssueComment

from channels.base import OutboundReply
from channels.errors import DeliveryError, PermanentDeliveryError, RetryableDeliveryError

# GitHub docs, "Rate limits for the REST API" > "About secondary rate limits": in general no
# more than 80 content-generating requests per minute and 500 per hour (web UI included).
# Creating or editing a comment is content-generating. Pace per `rate_limit_key()`.
CONTENT_CREATION_LIMIT_PER_MINUTE = 80
CONTENT_CREATION_LIMIT_PER_HOUR = 500
# Both at once, as (period_seconds, max_operations) windows: "at most N in any P seconds".
# GitHub Enterprise Server admins configure their own; the integration's `rate_limits`
# setting replaces these (`GitHubConfig.rate_limits`).
CONTENT_CREATION_LIMITS: tuple[tuple[float, int], ...] = (
    (60.0, CONTENT_CREATION_LIMIT_PER_MINUTE),
    (3600.0, CONTENT_CREATION_LIMIT_PER_HOUR),
)
# Same page, "Exceeding the rate limit": on a secondary limit without `retry-after` or
# `x-ratelimit-remaining: 0`, "wait for at least one minute before retrying".
SECONDARY_RATE_LIMIT_MIN_WAIT_SECONDS = 60.0
# How many of an issue's newest comments `find_delivered` reads looking for a marker.
FIND_DELIVERED_SCAN_LIMIT = 300

_DELIVERY_ID_CHARS = r"[A-Za-z0-9_.:-]+"
MARKER_RE = re.compile(rf"<!-- ticketwire:delivery:({_DELIVERY_ID_CHARS}) -->")
# `.` and `..` are not repository names, and would walk the URL path.
_REPO_RE = re.compile(r"(?!\.\.?/)[A-Za-z0-9_.-]+/(?!\.\.?$)[A-Za-z0-9_.-]+")


# -- marker ----------------------------------------------------------------------------------
def delivery_marker(delivery_id: str) -> str:
    """The hidden HTML comment that names a delivery."""
    if not re.fullmatch(_DELIVERY_ID_CHARS, delivery_id):
        # Anything else could close the HTML comment early and show up on the page.
        raise PermanentDeliveryError("invalid_delivery_id", "delivery id cannot be embedded in a comment")
    return f"<!-- ticketwire:delivery:{delivery_id} -->"


def with_marker(text: str, delivery_id: str) -> str:
    """The comment body: the reply text, then the marker on its own paragraph."""
    return f"{text}\n\n{delivery_marker(delivery_id)}"


def reply_markdown(reply: OutboundReply) -> str:
    """The reply's text with its files as Markdown links after it (an issue comment cannot
    carry uploads through the REST API)."""
    links = "\n".join(f"- [{_link_text(a.filename)}]({a.url})" for a in reply.attachments if a.url)
    return "\n\n".join(part for part in (reply.text, links) if part)


def _link_text(filename: str) -> str:
    return re.sub(r"([\\\[\]])", r"\\\1", filename) or "attachment"


def marked_delivery_id(body: str | None) -> str | None:
    """The delivery id in a comment body that ticketwire posted, else None."""
    match = MARKER_RE.search(body or "")
    return match.group(1) if match else None


# -- thread coordinates ----------------------------------------------------------------------
def issue_of(thread: Mapping[str, Any]) -> tuple[str, int]:
    """(`owner/repo`, issue number) from a ticket's thread fields; FAILED when unusable."""
    repo = thread.get("github_repo")
    number = thread.get("github_issue_number")
    if not isinstance(repo, str) or not _REPO_RE.fullmatch(repo):
        raise PermanentDeliveryError("invalid_thread", "ticket has no usable github_repo")
    try:
        issue_number = int(number)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise PermanentDeliveryError("invalid_thread", "ticket has no usable github_issue_number") from None
    if issue_number <= 0:
        raise PermanentDeliveryError("invalid_thread", "ticket has no usable github_issue_number")
    return repo, issue_number


def comment_of(repo: str, comment_id: int | str) -> tuple[str, int]:
    """(`owner/repo`, comment id) of a posted comment; FAILED when unusable."""
    if not _REPO_RE.fullmatch(repo):
        raise PermanentDeliveryError("invalid_thread", "not an owner/repo name")
    try:
        return repo, int(comment_id)
    except (TypeError, ValueError):
        raise PermanentDeliveryError("invalid_comment_id", "comment ids are numbers") from None


# -- REST calls (lazy PyGithub objects: no GET of the repository or issue first) --------------
def post_comment(gh: Github, repo: str, number: int, body: str) -> IssueComment:
    """POST /repos/{owner}/{repo}/issues/{number}/comments (pull requests included)."""
    return gh.get_repo(repo).get_issue(number).create_comment(body)


def find_marked_comment(gh: Github, repo: str, number: int, delivery_id: str) -> IssueComment | None:
    """The newest comment on the issue carrying the delivery's marker, scanning newest first."""
    marker = delivery_marker(delivery_id)
    comments = gh.get_repo(repo).get_issue(number).get_comments()
    # The issue comments endpoint has no sort order parameter (oldest first); PyGithub's
    # `reversed` jumps to the `last` page of the Link header and walks back, so the attempt
    # we are looking for (recent by nature) is found in one or two pages.
    for seen, comment in enumerate(comments.reversed):
        if seen >= FIND_DELIVERED_SCAN_LIMIT:
            return None
        if marker in (comment.body or ""):
            return comment
    return None


def update_comment(gh: Github, repo: str, comment_id: int, body: str) -> dict[str, Any]:
    """PATCH /repos/{owner}/{repo}/issues/comments/{comment_id}; returns GitHub's comment JSON."""
    # PyGithub only reaches this endpoint through a completed Issue or a GET of the comment;
    # its requester (documented for endpoints PyGithub does not wrap) does it in one call.
    _, data = gh.requester.requestJsonAndCheck(
        "PATCH", f"/repos/{repo}/issues/comments/{comment_id}", input={"body": body}
    )
    return data


# -- errors as policy ------------------------------------------------------------------------
@contextmanager
def vendor_errors(clock: Callable[[], float]) -> Iterator[None]:
    """Turn PyGithub/requests failures inside the block into typed DeliveryErrors."""
    try:
        yield
    except GithubException as exc:
        raise error_from_response(exc.status, exc.headers or {}, exc.data, now=clock()) from exc
    except requests.Timeout as exc:
        # The request may have landed: the pipeline reconciles with find_delivered first.
        raise RetryableDeliveryError("timeout", type(exc).__name__) from exc
    except requests.ConnectionError as exc:
        raise RetryableDeliveryError("connection_error", type(exc).__name__) from exc
    except requests.RequestException as exc:
        raise RetryableDeliveryError("transport_error", type(exc).__name__) from exc


def error_from_response(status: int, headers: Mapping[str, Any], data: Any, *, now: float) -> DeliveryError:
    """GitHub's answer as a retry policy (GitHub docs, "Rate limits for the REST API")."""
    headers = {str(k).lower(): str(v) for k, v in headers.items()}
    message = _message(data)
    if status in (403, 429):
        wait = rate_limit_wait(headers, now=now)
        primary = headers.get("x-ratelimit-remaining") == "0"
        lowered = message.lower()
        if primary or wait is not None or status == 429 or "rate limit" in lowered or "abuse" in lowered:
            return RetryableDeliveryError(
                "rate_limited" if primary else "secondary_rate_limited",
                message,
                retry_after=wait if wait is not None else SECONDARY_RATE_LIMIT_MIN_WAIT_SECONDS,
            )
        # Missing permission ("Resource not accessible by integration"), locked issue,
        # archived repository, blocked user: nothing a retry can change.
        return PermanentDeliveryError("forbidden", message)
    if status >= 500:
        return RetryableDeliveryError("server_error", f"{status} {message}".strip())
    code = {
        401: "bad_credentials",
        404: "not_found",  # also what GitHub answers when the token cannot see a private repo
        410: "gone",  # issues disabled on the repository, or the issue was deleted
        422: "validation_failed",  # e.g. a body over 65536 characters
    }.get(status, f"http_{status}")
    return PermanentDeliveryError(code, message)


def rate_limit_wait(headers: Mapping[str, str], *, now: float) -> float | None:
    """Seconds to wait from `retry-after`, else from `x-ratelimit-reset` when remaining is 0."""
    retry_after = headers.get("retry-after")
    if retry_after:
        try:
            return max(float(retry_after), 0.0)
        except ValueError:
            try:
                return max(parsedate_to_datetime(retry_after).timestamp() - now, 0.0)
            except (TypeError, ValueError):
                pass
    if headers.get("x-ratelimit-remaining") == "0" and headers.get("x-ratelimit-reset"):
        try:
            # UTC epoch seconds; never retry before it (and never "0 seconds").
            return max(float(headers["x-ratelimit-reset"]) - now, 1.0)
        except ValueError:
            return None
    return None


def _message(data: Any) -> str:
    if isinstance(data, dict):
        message = str(data.get("message") or "")
        errors = data.get("errors")
        if isinstance(errors, list):
            details = [str(e.get("message") or e.get("code") or "") for e in errors if isinstance(e, dict)]
            details = [d for d in details if d]
            if details:
                message = f"{message}: {'; '.join(details)}" if message else "; ".join(details)
        return message
    if isinstance(data, str):
        return data[:200]
    return ""
