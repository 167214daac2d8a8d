"""The one PyGithub client setup of the GitHub channel.

Settings that matter, each checked against PyGithub 2.x:
- `lazy=True`: `get_repo()` / `get_issue()` return objects without a preliminary GET, so a
  reply is exactly one `POST .../comments` (without it every lookup costs a request and a
  chance to fail).
- `retry=None`: PyGithub's default urllib3 retry re-sends a 5xx up to 10 times inside one
  call and then raises `requests.exceptions.RetryError` instead of `GithubException`. Retries
  belong to the delivery pipeline (backoff, the database as the source of truth), so a 502
  must surface once.
- `seconds_between_requests=None`, `seconds_between_writes=None`: PyGithub otherwise sleeps
  0.25 s before every request and 1 s before every write, inside the worker. Pacing is done
  outside the adapter with `rate_limit_key()` and the limits in `outbound.py`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from github import Auth, Github, GithubIntegration
from github.Requester import Requester, WithRequester

from channels.base import KeyValueCache

if TYPE_CHECKING:
    from channels.github.adapter import GitHubConfig

USER_AGENT = "ticketwire"
# GitHub pages lists at 30 by default and at most 100 ("Using pagination in the REST API").
PER_PAGE = 100
# Refresh an installation token this long before GitHub says it expires.
TOKEN_REFRESH_MARGIN_SECONDS = 300.0


class CachedInstallationAuth(Auth.Auth, WithRequester["CachedInstallationAuth"]):
    """GitHub App installation auth whose token is shared through the adapter's cache.

    PyGithub's `Auth.AppAuth(...).get_installation_auth(...)` keeps the installation token in
    the auth object, so every adapter built for a project would mint a fresh one. GitHub docs,
    "Generating an installation access token for a GitHub App": a token is valid for one hour,
    so this keeps it in the `KeyValueCache` (Redis in production) until shortly before then,
    and every worker reuses it. The JWT and the token request are PyGithub's own
    (`Auth.AppAuth`, `GithubIntegration.get_access_token`).
    """

    def __init__(
        self,
        app_auth: Auth.AppAuth,
        installation_id: int,
        *,
        cache: KeyValueCache,
        cache_key: str,
        clock: Callable[[], float],
    ) -> None:
        super().__init__()
        self._app_auth = app_auth
        self._installation_id = installation_id
        self._cache = cache
        self._cache_key = cache_key
        self._clock = clock
        self._integration: GithubIntegration | None = None

    def withRequester(self, requester: Requester) -> CachedInstallationAuth:
        super().withRequester(requester)
        # Same base URL, timeout and retry policy as the client, authenticated with the JWT.
        self._integration = GithubIntegration(**requester.withAuth(self._app_auth).kwargs)
        return self

    @property
    def token_type(self) -> str:
        return "token"

    @property
    def token(self) -> str:
        cached = self._cache.get(self._cache_key)
        if isinstance(cached, str) and cached:
            return cached
        assert self._integration is not None, "withRequester() must be called first"
        authorization = self._integration.get_access_token(self._installation_id)
        now = datetime.fromtimestamp(self._clock(), UTC)
        ttl = (authorization.expires_at - now).total_seconds() - TOKEN_REFRESH_MARGIN_SECONDS
        if ttl > 0:
            self._cache.set(self._cache_key, authorization.token, ttl)
        return authorization.token

    def forget(self) -> None:
        """Drop the cached token (GitHub answered 401: the installation's token was revoked)."""
        self._cache.set(self._cache_key, None, 1.0)

    @property
    def _masked_token(self) -> str:
        return "token (installation token removed)"


def build_auth(config: GitHubConfig, *, cache: KeyValueCache, clock: Callable[[], float]) -> Auth.Auth:
    """A personal/fine-grained token, or GitHub App installation auth when the app is configured."""
    if config.uses_app_auth:
        assert config.app_id and config.private_key and config.installation_id is not None
        host = urlsplit(config.api_base_url).netloc
        # The key names the installation, never the secret.
        scope = hashlib.sha256(f"{host}:{config.app_id}".encode()).hexdigest()[:16]
        return CachedInstallationAuth(
            Auth.AppAuth(config.app_id, config.private_key),
            config.installation_id,
            cache=cache,
            cache_key=f"github:installation-token:{scope}:{config.installation_id}",
            clock=clock,
        )
    return Auth.Token(config.token)


def build_github(config: GitHubConfig, *, cache: KeyValueCache, clock: Callable[[], float]) -> Github:
    """The PyGithub client for one project's integration."""
    return Github(
        base_url=config.api_base_url.rstrip("/"),
        auth=build_auth(config, cache=cache, clock=clock),
        timeout=config.timeout_seconds,
        user_agent=USER_AGENT,
        per_page=PER_PAGE,
        retry=None,
        seconds_between_requests=None,
        seconds_between_writes=None,
        lazy=True,
    )
