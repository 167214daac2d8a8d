"""The GitHub channel: issues and issue comments in, issue comments out."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from github import Github

from channels.base import (
    DeliveryResult,
    InboundMessage,
    KeyValueCache,
    MemoryCache,
    OutboundReply,
    RawEvent,
    RawRequest,
    RawResponse,
)
from channels.errors import ChannelNotConfiguredError, DeliveryError, MalformedPayloadError
from channels.github import outbound
from channels.github.client import CachedInstallationAuth, build_github
from channels.github.inbound import HANDLED_EVENTS, IGNORED_EVENTS, parse_payload, repository_name
from channels.github.signature import SIGNATURE_HEADER, verify_signature

DEFAULT_API_BASE_URL = "https://api.github.com"
EVENT_HEADER = "x-github-event"
DELIVERY_HEADER = "x-github-delivery"


@dataclass(frozen=True)
class GitHubConfig:
    """A project's GitHub integration settings (DESIGN.md, "Integrations API").

    Auth is either `token` (a fine-grained or classic personal access token) or a GitHub App
    installation (`app_id`, `private_key`, `installation_id`), which wins when complete.
    `repositories` are `owner/repo` full names (matched case-insensitively, as GitHub does);
    empty means every repository the webhook reports.
    """

    token: str = field(default="", repr=False)
    webhook_secret: str = field(default="", repr=False)
    repositories: tuple[str, ...] = ()
    api_base_url: str = DEFAULT_API_BASE_URL
    app_id: str | None = None
    private_key: str | None = field(default=None, repr=False)
    installation_id: int | None = None
    # PyGithub takes whole seconds. GitHub itself answers in well under this.
    timeout_seconds: int = 10
    # GitHub Enterprise Server: the content-creation limits the admins configured, as
    # (period_seconds, max_operations) windows; None = github.com's published ones
    # (`outbound.CONTENT_CREATION_LIMITS`), () = not paced (rate limiting turned off).
    rate_limits: tuple[tuple[float, int], ...] | None = None

    def __post_init__(self) -> None:
        if not self.webhook_secret:
            raise ChannelNotConfiguredError("github integration needs webhook_secret")
        app_parts = (self.app_id, self.private_key, self.installation_id)
        if any(part not in (None, "") for part in app_parts) and not self.uses_app_auth:
            raise ChannelNotConfiguredError("github app auth needs app_id, private_key and installation_id")
        if not self.token and not self.uses_app_auth:
            raise ChannelNotConfiguredError("github integration needs token (or GitHub App settings)")
        if urlsplit(self.api_base_url).scheme not in ("http", "https"):
            raise ChannelNotConfiguredError("github api_base_url must be an http(s) URL")
        for name in self.repositories:
            if name.count("/") != 1 or not all(name.split("/")):
                raise ChannelNotConfiguredError(f"github repository {name!r} is not owner/repo")
        if self.rate_limits is not None:
            _check_rate_limits(self.rate_limits)

    @property
    def uses_app_auth(self) -> bool:
        return bool(self.app_id) and bool(self.private_key) and self.installation_id is not None

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> GitHubConfig:
        """Build from stored integration settings; unknown keys are ignored."""
        repositories = settings.get("repositories") or ()
        if isinstance(repositories, str):
            repositories = repositories.split(",")
        installation_id = settings.get("installation_id")
        app_id = settings.get("app_id")
        try:
            return cls(
                token=settings.get("token") or "",
                webhook_secret=settings.get("webhook_secret") or "",
                repositories=tuple(str(r).strip() for r in repositories if str(r).strip()),
                api_base_url=settings.get("api_base_url") or DEFAULT_API_BASE_URL,
                app_id=str(app_id) if app_id not in (None, "") else None,
                private_key=settings.get("private_key") or None,
                installation_id=int(installation_id) if installation_id not in (None, "") else None,
                timeout_seconds=int(settings.get("timeout_seconds") or 10),
                rate_limits=parse_rate_limits(settings.get("rate_limits")),
            )
        except (TypeError, ValueError) as exc:
            raise ChannelNotConfiguredError(f"github settings are invalid: {exc}") from exc


MAX_RATE_WINDOWS = 5
MAX_RATE_PERIOD_SECONDS = 86_400
MAX_RATE_OPERATIONS = 100_000


def parse_rate_limits(value: Any) -> tuple[tuple[float, int], ...] | None:
    """The `rate_limits` setting: `[{"period_seconds": 60, "max": 80}, ...]`, or None when unset.

    An empty list turns pacing off (a GitHub Enterprise Server without rate limiting)."""
    if value is None:
        return None
    if not isinstance(value, list | tuple):
        raise ChannelNotConfiguredError('github rate_limits must be a list of {"period_seconds", "max"} objects')
    windows = []
    for item in value:
        if not isinstance(item, Mapping) or set(item) != {"period_seconds", "max"}:
            raise ChannelNotConfiguredError(
                'each github rate_limits entry must be an object with exactly "period_seconds" and "max"'
            )
        period, limit = item["period_seconds"], item["max"]
        if isinstance(period, bool) or not isinstance(period, int | float):
            raise ChannelNotConfiguredError("github rate_limits period_seconds must be a number")
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise ChannelNotConfiguredError("github rate_limits max must be a whole number")
        windows.append((float(period), limit))
    result = tuple(windows)
    _check_rate_limits(result)
    return result


def _check_rate_limits(windows: tuple[tuple[float, int], ...]) -> None:
    if len(windows) > MAX_RATE_WINDOWS:
        raise ChannelNotConfiguredError(f"github rate_limits takes at most {MAX_RATE_WINDOWS} windows")
    for period, limit in windows:
        if not 0 < period <= MAX_RATE_PERIOD_SECONDS:
            raise ChannelNotConfiguredError(
                f"github rate_limits period_seconds must be above 0 and at most {MAX_RATE_PERIOD_SECONDS}"
            )
        if not 1 <= limit <= MAX_RATE_OPERATIONS:
            raise ChannelNotConfiguredError(f"github rate_limits max must be between 1 and {MAX_RATE_OPERATIONS}")


def _header(headers: Mapping[str, str], name: str) -> str | None:
    # RawRequest lower-cases header names; a stored RawEvent may not have.
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return value


def webhook_payload(event: RawEvent | RawRequest) -> Mapping[str, Any]:
    """The JSON object of a delivery, whichever content type the hook was set up with.

    GitHub docs, "Creating webhooks": a repository hook defaults to
    `application/x-www-form-urlencoded`, which sends the JSON as the form field `payload`;
    `application/json` sends it as the body. The signature covers the raw body either way.
    """
    content_type = (_header(event.headers, "content-type") or "").split(";")[0].strip().lower()
    if content_type == "application/x-www-form-urlencoded":
        try:
            fields = parse_qs(event.body.decode(), strict_parsing=True)
            payload = json.loads(fields["payload"][0])
        except (UnicodeDecodeError, ValueError, KeyError) as exc:
            raise MalformedPayloadError(f"form body has no JSON payload field: {exc}") from exc
    else:
        payload = event.json()
    if not isinstance(payload, Mapping):
        raise MalformedPayloadError("github payload is not a JSON object")
    return payload


class GitHubAdapter:
    """Verifies and parses GitHub webhooks; posts replies as issue comments with PyGithub."""

    name = "github"

    def __init__(
        self,
        config: GitHubConfig,
        *,
        cache: KeyValueCache | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.config = config
        self._cache: KeyValueCache = cache if cache is not None else MemoryCache()
        # Wall-clock epoch seconds: GitHub's x-ratelimit-reset is an epoch timestamp.
        self._clock = clock or time.time
        self._repositories = frozenset(r.casefold() for r in config.repositories)
        self._local = threading.local()
        if config.uses_app_auth:
            account = f"app:{config.app_id}:{config.installation_id}"
        else:
            account = "token:" + hashlib.sha256(config.token.encode()).hexdigest()
        host = urlsplit(config.api_base_url).netloc
        self._pacing_key = "github:" + hashlib.sha256(f"{host}|{account}".encode()).hexdigest()[:16]

    @property
    def _github(self) -> Github:
        """This thread's PyGithub client, built on first outbound use.

        One adapter serves every worker thread, but a PyGithub client must not be shared:
        its Requester keeps one connection object and stores each request on it
        (`cnx.request(...)`, then `cnx.getresponse()`), so two threads can send each other's
        request — one reply posted twice, another never, both reported delivered.
        Installation tokens still come from the shared cache, so threads mint no extra ones.
        """
        github: Github | None = getattr(self._local, "github", None)
        if github is None:
            github = build_github(self.config, cache=self._cache, clock=self._clock)
            self._local.github = github
        return github

    # -- inbound ---------------------------------------------------------------------------
    def verify(self, request: RawRequest) -> None:
        verify_signature(request.body, request.header(SIGNATURE_HEADER), self.config.webhook_secret)

    def handshake(self, request: RawRequest) -> RawResponse | None:
        """Answer GitHub's `ping` (sent when a hook is created) with 200.

        GitHub shows the response body under the hook's "Recent Deliveries", so the answer
        names the subscribed events ticketwire will not handle (e.g. "Send me everything").
        """
        if request.header(EVENT_HEADER) != "ping":
            return None
        answer: dict[str, Any] = {"ok": True}
        try:
            hook = webhook_payload(request).get("hook")
        except MalformedPayloadError:
            hook = None
        subscribed = hook.get("events") if isinstance(hook, Mapping) else None
        if isinstance(subscribed, list):
            known = HANDLED_EVENTS | IGNORED_EVENTS
            unhandled = sorted(e for e in subscribed if isinstance(e, str) and e not in known)
            if unhandled:
                answer["unhandled_events"] = unhandled
        return RawResponse(200, json.dumps(answer).encode())

    def event_id(self, request: RawRequest) -> str:
        delivery = request.header(DELIVERY_HEADER)
        if not delivery:
            raise MalformedPayloadError("missing X-GitHub-Delivery header")
        return delivery

    def parse(self, event: RawEvent) -> list[InboundMessage]:
        event_type = _header(event.headers, EVENT_HEADER)
        if not event_type:
            raise MalformedPayloadError("missing X-GitHub-Event header")
        payload = webhook_payload(event)
        if self._outside_repositories(payload):
            return []
        return parse_payload(event_type, payload, event)

    def is_ignored_repository(self, event: RawEvent | RawRequest) -> bool:
        """True when the event belongs to a repository outside `repositories` (parse gives [])."""
        return self._outside_repositories(webhook_payload(event))

    def _outside_repositories(self, payload: Mapping[str, Any]) -> bool:
        name = repository_name(payload)
        return bool(self._repositories) and name is not None and name.casefold() not in self._repositories

    # -- outbound --------------------------------------------------------------------------
    def deliver(self, reply: OutboundReply) -> DeliveryResult:
        """Post the reply as a comment on the ticket's issue, with the delivery marker."""
        try:
            repo, number = outbound.issue_of(reply.thread)
            body = outbound.with_marker(outbound.reply_markdown(reply), reply.delivery_id)
            with outbound.vendor_errors(self._clock):
                comment = outbound.post_comment(self._github, repo, number, body)
                return DeliveryResult.delivered(str(comment.id))
        except DeliveryError as error:
            return self._failure(error)

    def find_delivered(self, reply: OutboundReply) -> DeliveryResult | None:
        """DELIVERED with the comment id if an earlier attempt landed; None if none did.

        When GitHub cannot be asked (rate limit, 5xx, timeout) this returns that RETRYABLE or
        FAILED result rather than None: "not found" would let the caller post a duplicate.
        """
        try:
            repo, number = outbound.issue_of(reply.thread)
            with outbound.vendor_errors(self._clock):
                comment = outbound.find_marked_comment(self._github, repo, number, reply.delivery_id)
                return DeliveryResult.delivered(str(comment.id)) if comment is not None else None
        except DeliveryError as error:
            return self._failure(error)

    def edit_comment(
        self, repo: str, comment_id: int | str, text: str, *, delivery_id: str | None = None
    ) -> DeliveryResult:
        """Replace the text of a comment ticketwire posted (a later edit of a sent reply).

        Pass the reply's `delivery_id` to keep the marker, so the `issue_comment.edited`
        echo is still recognised as ours when posting with a personal access token.
        """
        try:
            repo, number = outbound.comment_of(repo, comment_id)
            body = outbound.with_marker(text, delivery_id) if delivery_id else text
            with outbound.vendor_errors(self._clock):
                data = outbound.update_comment(self._github, repo, number, body)
                return DeliveryResult.delivered(str(data.get("id", number)))
        except DeliveryError as error:
            return self._failure(error)

    def edit_delivered(self, reply: OutboundReply, external_id: str) -> DeliveryResult:
        """Replace the text of a delivered reply: PATCH the comment whose id is `external_id`.

        The new body carries the same delivery marker, so `find_delivered` and the inbound
        echo filter still recognise the comment as ours after the edit.
        """
        try:
            repo, _ = outbound.issue_of(reply.thread)
        except DeliveryError as error:
            return self._failure(error)
        return self.edit_comment(repo, external_id, outbound.reply_markdown(reply), delivery_id=reply.delivery_id)

    def rate_limit_key(self, reply: OutboundReply) -> str:
        """The pacing bucket of a reply: GitHub's content-creation limit is per account.

        Every reply of the same token or App installation on the same GitHub host shares
        the limits in `outbound.CONTENT_CREATION_LIMITS` (or the configured `rate_limits`),
        whatever the repository. The key names the account without revealing the token.
        """
        return self._pacing_key

    @property
    def rate_windows(self) -> tuple[tuple[float, int], ...] | None:
        """The configured content-creation windows (GitHub Enterprise Server), () = unpaced,
        or None: the delivery worker then uses the channel's published ones (registry)."""
        return self.config.rate_limits

    def _failure(self, error: DeliveryError) -> DeliveryResult:
        if error.code == "bad_credentials":
            auth = self._github.requester.auth
            if isinstance(auth, CachedInstallationAuth):
                # The cached installation token was revoked (app reinstalled, suspended):
                # mint a fresh one on the next attempt instead of failing with it again.
                auth.forget()
        return DeliveryResult.from_error(error)
