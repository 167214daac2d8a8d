"""A local stand-in for the Microsoft services the Teams adapter talks to, on one FakeServer.

- Bot Framework OpenID metadata and JWKS (served from a `TokenIssuer`, so keys can rotate);
- the Entra ID token endpoint (`/{tenant}/oauth2/v2.0/token`, client credentials form post);
- the Bot Connector (`/amer/v3/conversations/{id}/activities[/{id}]`, POST and PUT), which
  records posted activities (`channelData` included) and answers `{"id": ...}`;
- Microsoft Graph `GET /v1.0/users/{id}`.

The Bot Connector enforces Microsoft's per bot per thread limits for sending ("Optimize your
bot with rate limiting in Teams": 7 in any 1 s, 8 in any 2 s, 60 in any 30 s, a thread being
the channel or chat, `;messageid=` left out): a post over a limit gets 429 with
`Retry-After`, is not stored, and is counted in `rate_limited`.

Every handler checks what the real service checks first (client secret, bearer token), so a
test sees a 401 where production would.
"""

from __future__ import annotations

import itertools
import math
import re
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from channels.teams import TeamsConfig, TokenIssuer
from tests.fakes.http import Call, FakeServer, Reply, window_wait

APP_ID = "eac5e5c6-ab14-4f50-80cb-49213fe51b1a"
APP_PASSWORD = "s3cret-app-password"
TENANT_ID = "72f988bf-86f1-41af-91ab-2d7cd011db47"

METADATA_PATH = "/botframework/v1/.well-known/openidconfiguration"
KEYS_PATH = "/botframework/v1/.well-known/keys"
CONNECTOR_PREFIX = "/amer/"
# Per bot per thread, "Send to conversation" (the hourly 1800 matters to no test).
SEND_LIMITS: tuple[tuple[float, int], ...] = ((1.0, 7), (2.0, 8), (30.0, 60))


@dataclass
class PostedActivity:
    method: str
    conversation_id: str
    reply_to_id: str | None
    activity: dict[str, Any]
    id: str
    raw_path: str

    @property
    def delivery_id(self) -> str | None:
        """The ticketwire delivery id the activity carries in its channelData, if any."""
        data = (self.activity.get("channelData") or {}).get("ticketwire") or {}
        return data.get("deliveryId")


class FakeTeams:
    """Start with `with FakeTeams() as teams:`; `teams.config()` points an adapter at it."""

    def __init__(
        self,
        *,
        issuer: TokenIssuer | None = None,
        app_id: str = APP_ID,
        app_password: str = APP_PASSWORD,
        send_limits: tuple[tuple[float, int], ...] = SEND_LIMITS,
    ):
        self.issuer = issuer or TokenIssuer()
        self.send_limits = send_limits
        self.rate_limited = 0  # posts refused with 429 over a per-thread limit
        # What the send windows are measured with; a test that counts posts against a window
        # freezes it, so a slow machine cannot spread the posts over two windows.
        self.clock: Callable[[], float] = time.monotonic
        self._sent_at: dict[str, deque[float]] = defaultdict(deque)  # per thread, monotonic
        self._held: list[float] = []
        self.app_id = app_id
        self.app_password = app_password
        self.server = FakeServer()
        self.users: dict[str, dict[str, Any]] = {}
        self.activities: list[PostedActivity] = []
        self.issued_tokens: dict[str, dict[str, str]] = {}
        self._ids = itertools.count(1_700_000_000_001)
        self._lock = threading.Lock()
        s = self.server
        s.route("GET", re.escape(METADATA_PATH), self._metadata)
        s.route("GET", re.escape(KEYS_PATH), lambda call, m: Reply(200, self.issuer.jwks()))
        s.route("POST", r"/(?P<tenant>[^/]+)/oauth2/v2\.0/token", self._token)
        s.route(
            "POST", r"/amer/v3/conversations/(?P<conv>[^/]+)/activities/(?P<act>[^/]+)", self._post_activity
        )
        s.route("POST", r"/amer/v3/conversations/(?P<conv>[^/]+)/activities", self._post_activity)
        s.route(
            "PUT", r"/amer/v3/conversations/(?P<conv>[^/]+)/activities/(?P<act>[^/]+)", self._put_activity
        )
        s.route("GET", r"/v1\.0/users/(?P<user>[^/]+)", self._graph_user)

    # -- lifecycle -----------------------------------------------------------------------
    def __enter__(self) -> FakeTeams:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def service_url(self) -> str:
        """A Bot Connector service URL on this fake, with the usual trailing slash."""
        return f"{self.url}{CONNECTOR_PREFIX}"

    def config(self, **overrides: Any) -> TeamsConfig:
        settings: dict[str, Any] = {
            "app_id": self.app_id,
            "app_password": self.app_password,
            "tenant_id": TENANT_ID,
            "openid_metadata_url": f"{self.url}{METADATA_PATH}",
            "token_url": f"{self.url}/botframework.com/oauth2/v2.0/token",
            "graph_base_url": f"{self.url}/v1.0",
        }
        settings.update(overrides)
        return TeamsConfig.from_settings(settings)

    # -- test controls ---------------------------------------------------------------------
    def reset(self) -> None:
        """Forget users, posts, tokens, recorded calls and pending failures (one server, many tests).

        Stopping a FakeServer waits out `serve_forever`'s 0.5 s poll, so the Teams tests share
        one server and reset it between tests instead.
        """
        with self._lock:
            self.users.clear()
            self.activities.clear()
            self.issued_tokens.clear()
            self._sent_at.clear()
            self._held.clear()
            self.rate_limited = 0
            self.clock = time.monotonic
        with self.server._lock:
            self.server.calls.clear()
            self.server._failures.clear()

    def add_user(
        self, user_id: str, *, mail: str | None = None, upn: str | None = None, name: str | None = None
    ) -> None:
        self.users[user_id] = {"id": user_id, "displayName": name, "mail": mail, "userPrincipalName": upn}

    def fail_next_rate_limited(
        self, retry_after: str = "7", *, times: int = 1, path: str | None = None
    ) -> None:
        body = {"error": {"code": "TooManyRequests", "message": "Too many requests"}}
        self.server.fail_next(Reply(429, body, headers={"Retry-After": retry_after}), times, path=path)

    def fail_next_server_error(self, status: int = 500, *, times: int = 1, path: str | None = None) -> None:
        body = {"error": {"code": "ServiceError", "message": "Unknown error"}}
        self.server.fail_next(Reply(status, body), times, path=path)

    def fail_next_timeout(self, delay: float, *, times: int = 1, path: str | None = None) -> None:
        self.server.fail_next(Reply(200, {}, delay=delay), times, path=path)

    def hold_next_post(self, seconds: float) -> None:
        """Store the next posted activity, then keep the request open for `seconds` before
        answering (the outcome a client killed or timed out meanwhile cannot know)."""
        with self._lock:
            self._held.append(seconds)

    def fail_next_unauthorized(self, *, times: int = 1, path: str | None = None) -> None:
        body = {"message": "Authorization has been denied for this request."}
        self.server.fail_next(Reply(401, body), times, path=path)

    def calls_to(self, path_regex: str) -> list[Call]:
        return self.server.calls_to(path_regex)

    # -- handlers --------------------------------------------------------------------------
    def _metadata(self, call: Call, match: re.Match[str]) -> Reply:
        return Reply(200, TokenIssuer.openid_metadata(f"{self.url}{KEYS_PATH}"))

    def _token(self, call: Call, match: re.Match[str]) -> Reply:
        form = call.form()
        if form.get("grant_type") != "client_credentials":
            return Reply(400, {"error": "unsupported_grant_type"})
        if form.get("client_id") != self.app_id or form.get("client_secret") != self.app_password:
            return Reply(
                401,
                {
                    "error": "invalid_client",
                    "error_description": "AADSTS7000215: Invalid client secret provided. Trace ID: x",
                },
            )
        with self._lock:
            token = f"fake-access-token-{len(self.issued_tokens) + 1}"
            self.issued_tokens[token] = {"tenant": match["tenant"], "scope": form.get("scope", "")}
        return Reply(
            200, {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token}
        )

    def _authorized(self, call: Call, scope: str) -> bool:
        scheme, _, token = call.headers.get("authorization", "").partition(" ")
        issued = self.issued_tokens.get(token)
        return scheme == "Bearer" and issued is not None and issued["scope"] == scope

    def _over_send_limit(self, conversation_id: str) -> Reply | None:
        """Count a post against its thread's windows, or refuse it with 429 + Retry-After."""
        thread = conversation_id.split(";messageid=")[0]
        now = self.clock()
        with self._lock:
            times = self._sent_at[thread]
            wait = window_wait(times, self.send_limits, now)
            if wait > 0:
                self.rate_limited += 1
                body = {"error": {"code": "TooManyRequests", "message": "Too many requests"}}
                return Reply(429, body, headers={"Retry-After": str(max(1, math.ceil(wait)))})
            times.append(now)
        return None

    def _post_activity(self, call: Call, match: re.Match[str]) -> Reply:
        if not self._authorized(call, "https://api.botframework.com/.default"):
            return Reply(401, {"message": "Authorization has been denied for this request."})
        groups = match.groupdict()
        refused = self._over_send_limit(unquote(groups["conv"]))
        if refused is not None:
            return refused
        activity_id = str(next(self._ids))
        posted = PostedActivity(
            method="POST",
            conversation_id=unquote(groups["conv"]),
            reply_to_id=unquote(groups["act"]) if groups.get("act") else None,
            activity=call.json(),
            id=activity_id,
            raw_path=call.path,
        )
        with self._lock:
            self.activities.append(posted)
            delay = self._held.pop(0) if self._held else 0.0
        return Reply(201, {"id": activity_id}, delay=delay)

    def _put_activity(self, call: Call, match: re.Match[str]) -> Reply:
        if not self._authorized(call, "https://api.botframework.com/.default"):
            return Reply(401, {"message": "Authorization has been denied for this request."})
        activity_id = unquote(match["act"])
        posted = PostedActivity("PUT", unquote(match["conv"]), None, call.json(), activity_id, call.path)
        with self._lock:
            self.activities.append(posted)
        return Reply(200, {"id": activity_id})

    def _graph_user(self, call: Call, match: re.Match[str]) -> Reply:
        if not self._authorized(call, "https://graph.microsoft.com/.default"):
            return Reply(
                401, {"error": {"code": "InvalidAuthenticationToken", "message": "Access token is empty."}}
            )
        user = self.users.get(unquote(match["user"]))
        if user is None:
            return Reply(
                404,
                {"error": {"code": "Request_ResourceNotFound", "message": "Resource does not exist."}},
            )
        return Reply(200, {"@odata.context": f"{self.url}/v1.0/$metadata#users/$entity", **user})
