"""The one place the Teams adapter talks HTTP: Entra ID tokens, the Bot Connector, Microsoft Graph.

- `ClientCredentialsTokens`: app-only tokens from the token endpoint (OAuth 2.0 client
  credentials grant), cached in the injected `KeyValueCache` until shortly before they expire.
- `BotConnectorClient`: the Bot Connector REST API (`{serviceUrl}v3/conversations/...`) with
  plain httpx. The Bot Framework Python SDK is archived and its successor needs Python 3.12,
  so we speak the few REST calls ourselves (Microsoft "Bot Connector API reference").
- `GraphUserDirectory`: user profiles through msgraph-sdk (async only; run to completion per
  look-up), cached for an hour. Graph cannot post channel replies with an app-only token
  (migration only), so replies always go through the Bot Connector.

Vendor failures surface as `RetryableDeliveryError` / `PermanentDeliveryError` from
`channels.errors`; `deliver` turns them into a `DeliveryResult`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import httpx
from azure.core.credentials import AccessToken

from channels.base import KeyValueCache
from channels.errors import PermanentDeliveryError, RetryableDeliveryError

log = logging.getLogger(__name__)

BOT_CONNECTOR_SCOPE = "https://api.botframework.com/.default"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"

# Refresh a cached access token this long before Entra ID says it expires, so a token never
# dies between the cache read and the Bot Connector reading the header.
TOKEN_EXPIRY_MARGIN = 300.0
# Graph profiles change rarely; an hour keeps look-ups to one per author per hour.
GRAPH_USER_TTL = 3600.0
# A failed look-up (Graph down, permission missing) is remembered briefly so that a burst of
# messages does not wait on Graph once per message.
GRAPH_FAILURE_TTL = 300.0
# Hosts where plain http is acceptable (test servers); everywhere else a bearer token only
# travels over https. msgraph-sdk's kiota auth provider applies the same rule.
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})

# Microsoft "Optimize your bot with rate limiting in Teams": besides 429, the Bot Connector's
# 412, 502 and 504 "must also be retried".
RETRYABLE_STATUSES = frozenset({408, 412, 429})

T = TypeVar("T")


# -- small helpers -----------------------------------------------------------------------


def join_url(base: str, path: str) -> str:
    """Join a base URL and a relative path with exactly one slash between them.

    Bot Framework "Activity schema": `serviceUrl` usually ends with a slash
    (`https://smba.trafficmanager.net/amer/`), but not always; never double it and never drop
    the path prefix (`/amer/<tenant>/`).
    """
    return base.rstrip("/") + "/" + path.lstrip("/")


def encode_path_segment(value: str) -> str:
    """Percent-encode one path segment the way the Bot Framework SDKs do (JS encodeURIComponent).

    Conversation ids carry `:`, `@` and `;messageid=`; the Bot Connector expects them encoded
    (`19%3Aabc%40thread.skype%3Bmessageid%3D123`), not as raw path characters.
    """
    return quote(value, safe="-_.!~*'()")


def require_secure_url(url: str) -> None:
    """Refuse to send a bearer token over plain http to anything but a local test server."""
    parts = urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOCAL_HOSTS):
        return
    raise PermanentDeliveryError("insecure_service_url", "serviceUrl must be https")


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def _error_detail(response: httpx.Response) -> str:
    """The vendor's error code and message (Bot Connector `{"error": {...}}`, Entra `{"error": ...}`)."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(body, Mapping):
        error = body.get("error")
        if isinstance(error, Mapping):
            return f"{error.get('code', '')}: {error.get('message', '')}".strip(": ")[:500]
        if isinstance(error, str):
            # Entra ID: {"error": "invalid_client", "error_description": "AADSTS7000215: ..."};
            # keep the code and the AADSTS number, not the trace ids of the description.
            description = str(body.get("error_description", "")).split(" Trace ID", 1)[0]
            return f"{error}: {description}"[:500]
    return response.text[:300]


def raise_for_status(response: httpx.Response, *, now: float) -> None:
    """Map an HTTP failure to the error tree: what can heal retries, the rest fails at once."""
    status = response.status_code
    if status < 400:
        return
    detail = _error_detail(response)
    if status == 429:
        raise RetryableDeliveryError(
            "rate_limited", detail, retry_after=parse_retry_after(response.headers.get("retry-after"), now)
        )
    if status in RETRYABLE_STATUSES or status >= 500:
        raise RetryableDeliveryError(
            f"http_{status}", detail, retry_after=parse_retry_after(response.headers.get("retry-after"), now)
        )
    codes = {401: "unauthorized", 403: "forbidden", 404: "not_found"}
    raise PermanentDeliveryError(codes.get(status, f"http_{status}"), detail)


def send(http: httpx.Client, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """One HTTP call; transport failures become retryable errors."""
    try:
        return http.request(method, url, **kwargs)
    except httpx.TimeoutException as exc:
        raise RetryableDeliveryError("timeout", type(exc).__name__) from exc
    except httpx.TransportError as exc:
        raise RetryableDeliveryError("connection_error", type(exc).__name__) from exc


def run_coroutine(factory: Callable[[], Awaitable[T]]) -> T:
    """Run an async call to completion from sync code, even when the caller is inside a loop.

    msgraph-sdk is async only while adapters are sync (they run in Dramatiq workers). When a
    loop already runs in this thread (an async caller), run the coroutine in a helper thread.
    """

    async def main() -> T:
        return await factory()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, main()).result()


# -- Entra ID client-credentials tokens ----------------------------------------------------


class ClientCredentialsTokens:
    """App-only access tokens (client credentials grant), cached per token URL and scope.

    Microsoft "Authentication with the Bot Connector API": the bot asks the token endpoint
    for `scope=https://api.botframework.com/.default` and sends the token as a bearer token.
    """

    def __init__(
        self,
        *,
        http: httpx.Client,
        token_url: str,
        client_id: str,
        client_secret: str,
        cache: KeyValueCache,
        clock: Callable[[], float],
    ) -> None:
        self._http = http
        self._token_url = token_url
        self._client_id = client_id
        self._client_secret = client_secret
        self._cache = cache
        self._clock = clock

    def _cache_key(self, scope: str) -> str:
        digest = hashlib.sha256(f"{self._token_url}|{scope}".encode()).hexdigest()[:16]
        return f"teams:token:{self._client_id}:{digest}"

    def get(self, scope: str) -> AccessToken:
        """A valid token for `scope`, from the cache or freshly fetched."""
        now = self._clock()
        cached = self._cache.get(self._cache_key(scope))
        if isinstance(cached, Mapping) and float(cached.get("expires_on", 0)) - TOKEN_EXPIRY_MARGIN > now:
            return AccessToken(str(cached["access_token"]), int(cached["expires_on"]))
        return self._fetch(scope, now)

    def _fetch(self, scope: str, now: float) -> AccessToken:
        response = send(
            self._http,
            "POST",
            self._token_url,
            data={
                "grant_type": "client_credentials",
                "client_id": self._client_id,
                "client_secret": self._client_secret,
                "scope": scope,
            },
        )
        if response.status_code in (400, 401):
            # Entra ID answers a wrong secret or an unknown app with 400/401 (invalid_client,
            # unauthorized_client): that cannot heal until someone fixes the integration.
            raise PermanentDeliveryError("token_rejected", _error_detail(response))
        raise_for_status(response, now=now)
        try:
            body = response.json()
            token = str(body["access_token"])
            expires_in = float(body.get("expires_in", 3599))
        except (ValueError, KeyError, TypeError) as exc:
            raise RetryableDeliveryError(
                "token_malformed", "token endpoint answered without a token"
            ) from exc
        expires_on = now + expires_in
        ttl = max(1.0, expires_in - TOKEN_EXPIRY_MARGIN)
        self._cache.set(self._cache_key(scope), {"access_token": token, "expires_on": expires_on}, ttl)
        return AccessToken(token, int(expires_on))


class ClientCredentialsCredential:
    """An azure-core `TokenCredential` over `ClientCredentialsTokens`, for msgraph-sdk.

    GOTCHAS: kiota's `AzureIdentityAuthenticationProvider` accepts any credential whose
    `get_token()` returns an `AccessToken`; this one reuses our token endpoint and cache
    instead of azure-identity's MSAL stack (which insists on Microsoft's authority hosts).
    """

    def __init__(self, tokens: ClientCredentialsTokens) -> None:
        self._tokens = tokens

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        return self._tokens.get(scopes[0] if scopes else GRAPH_SCOPE)


def graph_token_url(token_url: str, tenant_id: str) -> str:
    """The token endpoint of the customer's tenant, for Graph.

    The Bot Connector token comes from the `botframework.com` tenant for multi-tenant bots,
    but Graph needs a token issued by the tenant whose users we read. When the configured
    token URL names `botframework.com`, swap in the tenant id; a single-tenant bot already
    configures its own tenant's endpoint, which serves both.
    """
    marker = "/botframework.com/"
    if tenant_id and marker in token_url:
        return token_url.replace(marker, f"/{tenant_id}/", 1)
    return token_url


# -- Bot Connector -----------------------------------------------------------------------


class BotConnectorClient:
    """The Bot Connector REST calls the adapter needs: reply, send, update."""

    def __init__(
        self, *, http: httpx.Client, tokens: ClientCredentialsTokens, clock: Callable[[], float]
    ) -> None:
        self._http = http
        self._tokens = tokens
        self._clock = clock

    def _call(self, method: str, url: str, activity: Mapping[str, Any]) -> str | None:
        require_secure_url(url)
        token = self._tokens.get(BOT_CONNECTOR_SCOPE)
        response = send(
            self._http,
            method,
            url,
            json=dict(activity),
            headers={"Authorization": f"Bearer {token.token}"},
        )
        raise_for_status(response, now=self._clock())
        # Bot Connector answers `{"id": "<activity id>"}` (ResourceResponse). When Teams splits
        # a message (text plus attachment) the id may be missing; the post still landed.
        try:
            body = response.json()
        except ValueError:
            return None
        value = body.get("id") if isinstance(body, Mapping) else None
        return str(value) if value else None

    def reply_to_activity(
        self, service_url: str, conversation_id: str, activity_id: str, activity: Mapping[str, Any]
    ) -> str | None:
        """POST {serviceUrl}v3/conversations/{conversationId}/activities/{activityId}."""
        path = f"v3/conversations/{encode_path_segment(conversation_id)}/activities/{encode_path_segment(activity_id)}"
        return self._call("POST", join_url(service_url, path), activity)

    def send_to_conversation(
        self, service_url: str, conversation_id: str, activity: Mapping[str, Any]
    ) -> str | None:
        """POST {serviceUrl}v3/conversations/{conversationId}/activities."""
        path = f"v3/conversations/{encode_path_segment(conversation_id)}/activities"
        return self._call("POST", join_url(service_url, path), activity)

    def update_activity(
        self, service_url: str, conversation_id: str, activity_id: str, activity: Mapping[str, Any]
    ) -> str | None:
        """PUT {serviceUrl}v3/conversations/{conversationId}/activities/{activityId}."""
        path = f"v3/conversations/{encode_path_segment(conversation_id)}/activities/{encode_path_segment(activity_id)}"
        return self._call("PUT", join_url(service_url, path), activity) or activity_id


# -- Microsoft Graph -------------------------------------------------------------------------


@dataclass(frozen=True)
class GraphUser:
    """The bits of a Graph `user` we keep: display name and a mail address."""

    display_name: str | None = None
    email: str | None = None


def _email_of(mail: str | None, user_principal_name: str | None) -> str | None:
    if mail:
        return mail
    # A guest's userPrincipalName looks like `jane_example.com#EXT#@contoso.onmicrosoft.com`:
    # not an address anyone can write to (Microsoft Graph "user resource type").
    if user_principal_name and "#EXT#" not in user_principal_name.upper() and "@" in user_principal_name:
        return user_principal_name
    return None


class GraphUserDirectory:
    """`GET /users/{id}` through msgraph-sdk, cached; a failed look-up returns None."""

    def __init__(
        self,
        *,
        base_url: str,
        tenant_id: str,
        credential: ClientCredentialsCredential,
        cache: KeyValueCache,
        timeout: float,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._tenant_id = tenant_id
        self._credential = credential
        self._cache = cache
        self._timeout = timeout

    def _cache_key(self, user_id: str) -> str:
        return f"teams:graph-user:{self._tenant_id}:{user_id}"

    def lookup(self, user_id: str) -> GraphUser | None:
        """The user's name and email, or None when Graph does not know or cannot answer."""
        key = self._cache_key(user_id)
        cached = self._cache.get(key)
        if isinstance(cached, Mapping):
            return GraphUser(**cached) if cached else None
        try:
            user = run_coroutine(lambda: self._fetch(user_id))
        except Exception as exc:  # noqa: BLE001 - a profile look-up must never fail the parse
            status = getattr(exc, "response_status_code", None)
            if status == 404:
                self._cache.set(key, {}, GRAPH_USER_TTL)
            else:
                log.warning("teams: Graph user look-up failed (%s, status %s)", type(exc).__name__, status)
                self._cache.set(key, {}, GRAPH_FAILURE_TTL)
            return None
        self._cache.set(key, {"display_name": user.display_name, "email": user.email}, GRAPH_USER_TTL)
        return user

    async def _fetch(self, user_id: str) -> GraphUser:
        # Imported here: msgraph-sdk is large and only the ingest path needs it.
        from kiota_abstractions.base_request_configuration import RequestConfiguration
        from kiota_authentication_azure.azure_identity_authentication_provider import (
            AzureIdentityAuthenticationProvider,
        )
        from kiota_http.middleware.options import RetryHandlerOption
        from msgraph.generated.users.item.user_item_request_builder import UserItemRequestBuilder
        from msgraph.graph_request_adapter import GraphRequestAdapter
        from msgraph.graph_service_client import GraphServiceClient
        from msgraph_core import GraphClientFactory

        # No SDK retries: the look-up is best effort, and a retry loop (3 x up to 180 s on
        # 429/503) would stall the ingest worker far longer than the profile is worth.
        options = {
            RetryHandlerOption.get_key(): RetryHandlerOption(delay=0, max_retries=0, should_retry=False)
        }
        async with httpx.AsyncClient(timeout=self._timeout) as http:
            client = GraphClientFactory.create_with_default_middleware(client=http, options=options)
            # Pin the scope: kiota otherwise derives it from the request host, which for a
            # test server or a sovereign cloud is not Graph's resource id.
            auth = AzureIdentityAuthenticationProvider(self._credential, scopes=[GRAPH_SCOPE])
            adapter = GraphRequestAdapter(auth, client=client)
            adapter.base_url = self._base_url
            graph = GraphServiceClient(request_adapter=adapter)
            query = UserItemRequestBuilder.UserItemRequestBuilderGetQueryParameters(
                select=["displayName", "mail", "userPrincipalName"]
            )
            user = await graph.users.by_user_id(user_id).get(
                request_configuration=RequestConfiguration(query_parameters=query)
            )
        if user is None:
            return GraphUser()
        return GraphUser(display_name=user.display_name, email=_email_of(user.mail, user.user_principal_name))


def build_http_client(timeout: float) -> httpx.Client:
    """The adapter's one sync HTTP client (OpenID metadata, JWKS, tokens, Bot Connector)."""
    return httpx.Client(timeout=timeout, headers={"User-Agent": "ticketwire-teams"}, follow_redirects=False)
