"""A fake of the GitHub REST API slice ticketwire uses, spoken to the real PyGithub client.

Issue comments (create, list with Link pagination, get, edit), the repository and issue GETs a
non-lazy client would make, and GitHub App installation tokens (the app JWT is verified with
the app's public key). Failures come in the shapes GitHub documents in "Rate limits for the
REST API": secondary limits (403/429 with or without `retry-after`), the primary limit (403
with `x-ratelimit-remaining: 0` and `x-ratelimit-reset`), 5xx, and permanent 4xx answers.

The secondary content-creation limits are enforced as GitHub publishes them: per credential,
at most 80 content-creating requests (comment creates and edits) in any 60 s and 500 in any
hour (`content_limits` scales them for tests). A request over a limit is refused with 403 and
`retry-after` (the seconds until the window frees), is not stored, and is counted in
`secondary_rate_limited`.
"""

from __future__ import annotations

import itertools
import math
import re
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import jwt

from tests.fakes.http import Call, FakeServer, Reply, window_wait

DOCS = "https://docs.github.com/rest"
REPO = r"(?P<repo>[^/]+/[^/]+)"
# GitHub docs, "Rate limits for the REST API" > "About secondary rate limits".
CONTENT_LIMITS: tuple[tuple[float, int], ...] = ((60.0, 80), (3600.0, 500))
SECONDARY_LIMIT_MESSAGE = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
)
PAT_USER = {"login": "ticketwire-support", "id": 90001, "type": "User", "site_admin": False}
APP_USER = {"login": "ticketwire[bot]", "id": 90002, "type": "Bot", "site_admin": False}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeGitHub(FakeServer):
    """`FakeGitHub(token=...)`; for GitHub App auth also `app_id`, `app_public_key`, `installation_id`."""

    def __init__(
        self,
        *,
        token: str = "ghp_fake_token",
        app_id: str | None = None,
        app_public_key: str | None = None,
        installation_id: int | None = None,
        content_limits: tuple[tuple[float, int], ...] = CONTENT_LIMITS,
        secondary_limit_status: int = 403,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        # What the content windows are measured with; a test that counts requests against a
        # window freezes it, so a slow machine cannot spread them over two windows.
        self.clock = clock
        self.content_limits = content_limits
        self.secondary_limit_status = secondary_limit_status
        self.secondary_rate_limited = 0  # content-creating requests refused over a limit
        self.content_requests: list[float] = []  # monotonic arrival of each accepted one
        self.content_refused: list[float] = []  # and of each refused one
        self._created_at: dict[str, deque[float]] = defaultdict(deque)  # per credential
        self.pat_tokens = {token}
        self.app_id = app_id
        self.app_public_key = app_public_key
        self.installation_id = installation_id
        self.installation_tokens: list[str] = []  # minted, in order
        self.revoked_tokens: set[str] = set()
        self.comments: dict[int, dict[str, Any]] = {}
        self._issue_of: dict[int, tuple[str, int]] = {}
        self._ids = itertools.count(2_000_000_001)
        self._slow_creates: list[float] = []
        self._state_lock = threading.Lock()

        self.route("POST", rf"/repos/{REPO}/issues/(?P<number>\d+)/comments", self._create_comment)
        self.route("GET", rf"/repos/{REPO}/issues/(?P<number>\d+)/comments", self._list_comments)
        self.route("GET", rf"/repos/{REPO}/issues/comments/(?P<id>\d+)", self._get_comment)
        self.route("PATCH", rf"/repos/{REPO}/issues/comments/(?P<id>\d+)", self._edit_comment)
        self.route("GET", rf"/repos/{REPO}/issues/(?P<number>\d+)", self._get_issue)
        self.route("GET", rf"/repos/{REPO}", self._get_repo)
        self.route("POST", r"/app/installations/(?P<id>\d+)/access_tokens", self._create_installation_token)

    def start(self) -> FakeGitHub:
        super().start()
        return self

    # -- seeding and inspection ------------------------------------------------------------
    def add_comment(self, repo: str, number: int, body: str, *, user: dict[str, Any] | None = None) -> int:
        """Store a comment as if someone had posted it; returns its id."""
        return self._store_comment(repo, number, body, user or {"login": "someone", "id": 1, "type": "User"})

    def comments_on(self, repo: str, number: int) -> list[dict[str, Any]]:
        with self._state_lock:
            return [self.comments[i] for i, key in self._issue_of.items() if key == (repo, number)]

    def revoke_installation_tokens(self) -> None:
        """What uninstalling and reinstalling the app does to tokens already minted."""
        with self._state_lock:
            self.revoked_tokens.update(self.installation_tokens)

    # -- failure helpers -------------------------------------------------------------------
    def fail_next_with_secondary_rate_limit(
        self, *, status: int = 403, retry_after: int | None = 60, times: int = 1, path: str | None = None
    ) -> None:
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        body = {
            "message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
            "documentation_url": f"{DOCS}/using-the-rest-api/rate-limits-for-the-rest-api",
        }
        self.fail_next(Reply(status, body, headers), times, path=path)

    def fail_next_with_primary_rate_limit(
        self, *, reset_at: int, status: int = 403, times: int = 1, path: str | None = None
    ) -> None:
        headers = {
            "X-RateLimit-Limit": "5000",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Used": "5000",
            "X-RateLimit-Reset": str(reset_at),
            "X-RateLimit-Resource": "core",
        }
        body = {
            "message": "API rate limit exceeded for user ID 90001.",
            "documentation_url": f"{DOCS}/overview/resources-in-the-rest-api#rate-limiting",
        }
        self.fail_next(Reply(status, body, headers), times, path=path)

    def fail_next_with_status(
        self, status: int, message: str = "", *, times: int = 1, path: str | None = None, **extra: Any
    ) -> None:
        """Any GitHub error answer: 500/502/503, 401, 403, 404, 410, 422…"""
        default = {
            401: "Bad credentials",
            403: "Resource not accessible by integration",
            404: "Not Found",
            410: "Issues are disabled for this repo",
            422: "Validation Failed",
            500: "Internal Server Error",
            502: "Server Error",
            503: "Service Unavailable",
        }.get(status, "Error")
        body = {"message": message or default, "documentation_url": DOCS, **extra}
        self.fail_next(Reply(status, body), times, path=path)

    def fail_next_with_timeout(self, seconds: float, *, times: int = 1, path: str | None = None) -> None:
        """Hold the next answer past the client's timeout (nothing is stored)."""
        self.fail_next(Reply(504, {"message": "too late"}, delay=seconds), times, path=path)

    def slow_down_next_comment(self, seconds: float) -> None:
        """Store the next created comment, then answer only after `seconds` (outcome unknown)."""
        with self._state_lock:
            self._slow_creates.append(seconds)

    # -- secondary rate limits -------------------------------------------------------------
    def _over_content_limit(self, call: Call) -> Reply | None:
        """Count a content-creating request against its credential's windows, or refuse it."""
        credential = call.headers.get("authorization", "").partition(" ")[2]
        now = self.clock()
        with self._state_lock:
            times = self._created_at[credential]
            wait = window_wait(times, self.content_limits, now)
            if wait > 0:
                self.secondary_rate_limited += 1
                self.content_refused.append(now)
                headers = {
                    "Retry-After": str(max(1, math.ceil(wait))),
                    "X-RateLimit-Limit": "5000",
                    "X-RateLimit-Remaining": "4321",
                    "X-RateLimit-Reset": str(int(time.time()) + 3600),
                    "X-RateLimit-Resource": "core",
                }
                body = {
                    "message": SECONDARY_LIMIT_MESSAGE,
                    "documentation_url": f"{DOCS}/using-the-rest-api/rate-limits-for-the-rest-api"
                    "#about-secondary-rate-limits",
                }
                return Reply(self.secondary_limit_status, body, headers)
            times.append(now)
            self.content_requests.append(now)
        return None

    # -- handlers ----------------------------------------------------------------------------
    def _authenticated_user(self, call: Call) -> dict[str, Any] | None:
        scheme, _, credential = call.headers.get("authorization", "").partition(" ")
        if scheme.lower() not in ("token", "bearer"):
            return None
        if credential in self.pat_tokens:
            return PAT_USER
        if credential in self.installation_tokens and credential not in self.revoked_tokens:
            return APP_USER
        return None

    @staticmethod
    def _bad_credentials() -> Reply:
        return Reply(401, {"message": "Bad credentials", "documentation_url": DOCS})

    def _store_comment(self, repo: str, number: int, body: str, user: dict[str, Any]) -> int:
        with self._state_lock:
            comment_id = next(self._ids)
            now = _now()
            self.comments[comment_id] = {
                "url": f"{self.url}/repos/{repo}/issues/comments/{comment_id}",
                "html_url": f"https://github.com/{repo}/issues/{number}#issuecomment-{comment_id}",
                "issue_url": f"{self.url}/repos/{repo}/issues/{number}",
                "id": comment_id,
                "node_id": f"IC_fake{comment_id}",
                "user": user,
                "created_at": now,
                "updated_at": now,
                "author_association": "MEMBER" if user is PAT_USER else "NONE",
                "body": body,
                "performed_via_github_app": (
                    {"id": int(self.app_id or 0), "slug": "ticketwire", "name": "ticketwire"}
                    if user is APP_USER
                    else None
                ),
            }
            self._issue_of[comment_id] = (repo, number)
            return comment_id

    def _create_comment(self, call: Call, match: re.Match[str]) -> Reply:
        user = self._authenticated_user(call)
        if user is None:
            return self._bad_credentials()
        body = (call.json() or {}).get("body")
        if not isinstance(body, str) or not body:
            return Reply(422, {"message": "Validation Failed", "errors": [{"code": "missing_field"}]})
        refused = self._over_content_limit(call)
        if refused is not None:
            return refused
        comment_id = self._store_comment(match["repo"], int(match["number"]), body, user)
        with self._state_lock:
            delay = self._slow_creates.pop(0) if self._slow_creates else 0.0
        return Reply(201, self.comments[comment_id], {"Location": self.comments[comment_id]["url"]}, delay)

    def _list_comments(self, call: Call, match: re.Match[str]) -> Reply:
        if self._authenticated_user(call) is None:
            return self._bad_credentials()
        items = self.comments_on(match["repo"], int(match["number"]))
        if "since" in call.query:
            items = [c for c in items if c["updated_at"] >= call.query["since"]]
        per_page = min(int(call.query.get("per_page", 30)), 100)
        page = max(int(call.query.get("page", 1)), 1)
        last = max((len(items) + per_page - 1) // per_page, 1)
        headers = {}
        if last > 1:
            # GitHub docs, "Using pagination in the REST API": absolute URLs in a Link header.
            def link(p: int) -> str:
                query = {k: v for k, v in call.query.items() if k not in ("page", "per_page")}
                query.update(per_page=str(per_page), page=str(p))
                return f"<{self.url}{call.path}?{urlencode(query)}>"

            rels = []
            if page > 1:
                rels += [f'{link(page - 1)}; rel="prev"', f'{link(1)}; rel="first"']
            if page < last:
                rels += [f'{link(page + 1)}; rel="next"', f'{link(last)}; rel="last"']
            headers["Link"] = ", ".join(rels)
        return Reply(200, items[(page - 1) * per_page : page * per_page], headers)

    def _get_comment(self, call: Call, match: re.Match[str]) -> Reply:
        if self._authenticated_user(call) is None:
            return self._bad_credentials()
        comment = self.comments.get(int(match["id"]))
        return (
            Reply(200, comment)
            if comment
            else Reply(404, {"message": "Not Found", "documentation_url": DOCS})
        )

    def _edit_comment(self, call: Call, match: re.Match[str]) -> Reply:
        if self._authenticated_user(call) is None:
            return self._bad_credentials()
        body = (call.json() or {}).get("body")
        with self._state_lock:
            known = int(match["id"]) in self.comments
        refused = self._over_content_limit(call) if known else None
        if refused is not None:
            return refused
        with self._state_lock:
            comment = self.comments.get(int(match["id"]))
            if comment is None:
                return Reply(404, {"message": "Not Found", "documentation_url": DOCS})
            comment.update(body=body, updated_at=_now())
            return Reply(200, dict(comment))

    def _get_repo(self, call: Call, match: re.Match[str]) -> Reply:
        if self._authenticated_user(call) is None:
            return self._bad_credentials()
        owner, name = match["repo"].split("/")
        return Reply(
            200,
            {
                "id": 186853002,
                "name": name,
                "full_name": match["repo"],
                "owner": {"login": owner, "type": "User"},
                "url": f"{self.url}/repos/{match['repo']}",
                "has_issues": True,
            },
        )

    def _get_issue(self, call: Call, match: re.Match[str]) -> Reply:
        if self._authenticated_user(call) is None:
            return self._bad_credentials()
        number = int(match["number"])
        return Reply(
            200,
            {
                "id": 444500000 + number,
                "number": number,
                "title": f"Issue {number}",
                "state": "open",
                "url": f"{self.url}/repos/{match['repo']}/issues/{number}",
                "comments_url": f"{self.url}/repos/{match['repo']}/issues/{number}/comments",
            },
        )

    def _create_installation_token(self, call: Call, match: re.Match[str]) -> Reply:
        # GitHub docs, "Generating a JSON Web Token (JWT) for a GitHub App": RS256, iss = app id.
        scheme, _, token = call.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not self.app_public_key:
            return Reply(401, {"message": "A JSON web token could not be decoded", "documentation_url": DOCS})
        try:
            claims = jwt.decode(token, self.app_public_key, algorithms=["RS256"])
        except jwt.PyJWTError:
            return Reply(401, {"message": "A JSON web token could not be decoded", "documentation_url": DOCS})
        if str(claims.get("iss")) != str(self.app_id):
            return Reply(
                401, {"message": "'Issuer' claim ('iss') must be an Integer", "documentation_url": DOCS}
            )
        if int(match["id"]) != self.installation_id:
            return Reply(404, {"message": "Not Found", "documentation_url": DOCS})
        with self._state_lock:
            token = f"ghs_fake_installation_{len(self.installation_tokens) + 1}"
            self.installation_tokens.append(token)
        expires_at = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        return Reply(
            201,
            {
                "token": token,
                "expires_at": expires_at,
                "permissions": {"issues": "write", "metadata": "read"},
                "repository_selection": "selected",
            },
        )
