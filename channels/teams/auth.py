"""Bot Framework request authentication: the JWT that the Bot Connector puts on every activity.

Microsoft "Authentication with the Bot Connector API" (Bot Connector service to bot):

1. `Authorization: Bearer <JWT>`, signed RS256 with a key from the JWKS named by the OpenID
   metadata (`https://login.botframework.com/v1/.well-known/openidconfiguration`).
2. `iss` is `https://api.botframework.com`; `aud` is the bot's app id; `exp`/`nbf` hold with
   at most five minutes of clock skew.
3. The signing key's `endorsements` (a non-standard JWK member) list the activity's
   `channelId` (`msteams`): a key Microsoft endorsed for another channel must not sign Teams
   activities.
4. The `serviceurl` claim (lower case, as all Bot Framework SDKs read it) equals the
   activity's `serviceUrl`. The body is not signed; this check is what lets us trust the
   URL we later send the bot's bearer token to.

GOTCHAS: PyJWT's `PyJWKClient` drops `endorsements`, so we fetch and cache the JWKS ourselves
and build `PyJWK` per key. `TokenIssuer` is the signing side, for tests and local servers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from channels.base import KeyValueCache
from channels.errors import InvalidSignatureError, MalformedPayloadError

log = logging.getLogger(__name__)

BOT_FRAMEWORK_ISSUER = "https://api.botframework.com"
DEFAULT_OPENID_METADATA_URL = "https://login.botframework.com/v1/.well-known/openidconfiguration"
# Only RS256: Microsoft signs with it, and accepting anything else invites `none`/HS256
# confusion attacks.
ALLOWED_ALGORITHMS = ("RS256",)
# Bot Framework SDKs validate with a five-minute clock tolerance.
MAX_CLOCK_SKEW = 300.0
# Bot Framework SDKs refresh the OpenID metadata and keys daily...
KEYS_REFRESH_AFTER = 24 * 3600.0
# ...and we keep the last good copy a few days longer, to ride out a failed refresh.
KEYS_KEEP_FOR = 5 * 24 * 3600.0
# A token naming an unknown `kid` triggers one refresh (Microsoft rotates keys); forged kids
# must not turn every request into two fetches, so such refreshes happen at most this often.
UNKNOWN_KID_REFRESH_COOLDOWN = 300.0
# How long a process trusts its own copy of the shared cache's keys before reading it again
# (a key it has not seen sends it to the shared cache at once).
LOCAL_KEYS_SECONDS = 60.0
SERVICE_URL_CLAIMS = ("serviceurl", "serviceUrl")


def _bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise InvalidSignatureError("missing Authorization header")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidSignatureError("Authorization is not a bearer token")
    return token.strip()


class BotFrameworkTokenVerifier:
    """Validates the Bot Connector's JWT against the OpenID metadata's JWKS (cached)."""

    def __init__(
        self,
        *,
        app_id: str,
        openid_metadata_url: str,
        http: httpx.Client,
        cache: KeyValueCache,
        clock: Callable[[], float],
    ) -> None:
        self._app_id = app_id
        self._metadata_url = openid_metadata_url
        self._http = http
        self._cache = cache
        self._clock = clock
        digest = hashlib.sha256(openid_metadata_url.encode()).hexdigest()[:16]
        self._keys_cache_key = f"teams:openid-keys:{digest}"
        self._refresh_marker_key = f"teams:openid-unknown-kid-refresh:{digest}"
        # The shared cache's keys as this process last read them (when, keys), and each key
        # already turned into a PyJWK: reading and parsing them per request cost more than
        # the RS256 check itself.
        self._local_keys: tuple[float, dict[str, Mapping[str, Any]]] | None = None
        self._parsed: dict[str, tuple[Mapping[str, Any], jwt.PyJWK]] = {}

    # -- public ------------------------------------------------------------------------------
    def verify(self, authorization: str | None, body: bytes) -> dict[str, Any]:
        """Return the token's claims, or raise InvalidSignatureError (MalformedPayloadError
        when the token is valid but the body is not a JSON activity)."""
        token = _bearer_token(authorization)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidSignatureError("token is not a JWT") from exc
        if header.get("alg") not in ALLOWED_ALGORITHMS:
            raise InvalidSignatureError("token algorithm not allowed")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidSignatureError("token names no signing key")
        jwk = self._signing_key(kid)
        claims = self._decode(token, jwk)

        try:
            activity = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise MalformedPayloadError(f"body is not valid JSON: {exc}") from exc
        if not isinstance(activity, Mapping):
            raise MalformedPayloadError("body is not a JSON object")

        service_url = next((claims[c] for c in SERVICE_URL_CLAIMS if claims.get(c)), None)
        if not service_url or service_url != activity.get("serviceUrl"):
            raise InvalidSignatureError("serviceUrl claim does not match the activity")
        channel_id = activity.get("channelId")
        endorsements = jwk.get("endorsements")
        if not channel_id or not isinstance(endorsements, list) or channel_id not in endorsements:
            raise InvalidSignatureError("signing key is not endorsed for the activity's channel")
        return claims

    # -- token -------------------------------------------------------------------------------
    def _decode(self, token: str, jwk: Mapping[str, Any]) -> dict[str, Any]:
        try:
            key = self._pyjwk(jwk)
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key.key,
                algorithms=list(ALLOWED_ALGORITHMS),
                audience=self._app_id,
                issuer=BOT_FRAMEWORK_ISSUER,
                # Time checks below, against the injected clock.
                options={
                    "require": ["exp", "iss", "aud"],
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise InvalidSignatureError(f"token rejected: {type(exc).__name__}") from exc
        now = self._clock()
        exp, nbf = claims.get("exp"), claims.get("nbf")
        if not isinstance(exp, int | float) or now > exp + MAX_CLOCK_SKEW:
            raise InvalidSignatureError("token expired")
        if nbf is not None and (not isinstance(nbf, int | float) or now < nbf - MAX_CLOCK_SKEW):
            raise InvalidSignatureError("token not yet valid")
        return claims

    def _pyjwk(self, jwk: Mapping[str, Any]) -> jwt.PyJWK:
        kid = str(jwk.get("kid"))
        known = self._parsed.get(kid)
        if known is not None and known[0] == jwk:
            return known[1]
        key = jwt.PyJWK(dict(jwk), algorithm=ALLOWED_ALGORITHMS[0])
        self._parsed[kid] = (jwk, key)
        return key

    # -- keys --------------------------------------------------------------------------------
    def _signing_key(self, kid: str) -> Mapping[str, Any]:
        local = self._local_keys
        if local is not None and self._clock() - local[0] < LOCAL_KEYS_SECONDS and kid in local[1]:
            return local[1][kid]
        keys, just_fetched = self._known_keys()
        self._local_keys = (self._clock(), keys)
        jwk = keys.get(kid)
        if jwk is None and not just_fetched and self._may_refresh_for_unknown_kid():
            keys = self._refresh(fallback=keys)
            self._local_keys = (self._clock(), keys)
            jwk = keys.get(kid)
        if jwk is None:
            raise InvalidSignatureError("unknown signing key")
        return jwk

    def _known_keys(self) -> tuple[dict[str, Mapping[str, Any]], bool]:
        """The cached keys (refreshed once a day), and whether they were fetched just now."""
        cached = self._cache.get(self._keys_cache_key)
        if isinstance(cached, Mapping):
            keys = _index(cached.get("keys", ()))
            if self._clock() - float(cached.get("fetched_at", 0)) < KEYS_REFRESH_AFTER:
                return keys, False
            return self._refresh(fallback=keys), True
        return self._refresh(fallback=None), True

    def _may_refresh_for_unknown_kid(self) -> bool:
        if self._cache.get(self._refresh_marker_key):
            return False
        self._cache.set(self._refresh_marker_key, True, UNKNOWN_KID_REFRESH_COOLDOWN)
        return True

    def _refresh(self, *, fallback: dict[str, Mapping[str, Any]] | None) -> dict[str, Mapping[str, Any]]:
        try:
            keys = self._fetch_keys()
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            log.warning("teams: could not fetch Bot Framework signing keys (%s)", type(exc).__name__)
            if fallback is not None:
                # Keep serving the last good keys, and try again after a cool-down rather
                # than on every request while Microsoft's endpoint is down.
                retry_at = self._clock() - KEYS_REFRESH_AFTER + UNKNOWN_KID_REFRESH_COOLDOWN
                self._cache.set(
                    self._keys_cache_key,
                    {"fetched_at": retry_at, "keys": list(fallback.values())},
                    KEYS_KEEP_FOR,
                )
                return fallback
            raise InvalidSignatureError("signing keys unavailable") from exc
        self._cache.set(self._keys_cache_key, {"fetched_at": self._clock(), "keys": keys}, KEYS_KEEP_FOR)
        return _index(keys)

    def _fetch_keys(self) -> list[dict[str, Any]]:
        metadata = self._http.get(self._metadata_url)
        metadata.raise_for_status()
        jwks_uri = metadata.json()["jwks_uri"]
        if not isinstance(jwks_uri, str):
            raise TypeError("jwks_uri is not a string")
        jwks = self._http.get(jwks_uri)
        jwks.raise_for_status()
        keys = jwks.json()["keys"]
        if not isinstance(keys, list):
            raise TypeError("keys is not a list")
        return [k for k in keys if isinstance(k, dict) and isinstance(k.get("kid"), str)]


def _index(keys: Iterable[Any]) -> dict[str, Mapping[str, Any]]:
    return {k["kid"]: k for k in keys if isinstance(k, Mapping) and isinstance(k.get("kid"), str)}


# -- the signing side (tests, local servers) ------------------------------------------------


@dataclass
class _SigningKey:
    kid: str
    private_key: rsa.RSAPrivateKey
    endorsements: tuple[str, ...]
    published: bool


class TokenIssuer:
    """Plays the Bot Connector's signing side: an RSA key set, its JWKS and OpenID metadata,
    and `sign()` for activities. Tests serve `jwks()`/`openid_metadata()` from a fake server.
    """

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._keys: list[_SigningKey] = []
        self._current = self.rotate("key-1")

    @property
    def kid(self) -> str:
        """The key that signs by default."""
        return self._current

    def add_key(self, kid: str, *, endorsements: Iterable[str] = ("msteams",), published: bool = True) -> str:
        """Add a key; an unpublished one signs tokens the JWKS never lists."""
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._keys.append(_SigningKey(kid, private_key, tuple(endorsements), published))
        return kid

    def rotate(self, kid: str | None = None, *, endorsements: Iterable[str] = ("msteams",)) -> str:
        """Publish a new key and sign with it from now on (the old keys stay published)."""
        self._current = self.add_key(kid or f"key-{len(self._keys) + 1}", endorsements=endorsements)
        return self._current

    def jwks(self) -> dict[str, Any]:
        keys = []
        for key in self._keys:
            if not key.published:
                continue
            jwk = RSAAlgorithm.to_jwk(key.private_key.public_key(), as_dict=True)
            keys.append({**jwk, "kid": key.kid, "use": "sig", "endorsements": list(key.endorsements)})
        return {"keys": keys}

    @staticmethod
    def openid_metadata(jwks_uri: str) -> dict[str, Any]:
        """The shape of Bot Framework's `openidconfiguration` document."""
        return {
            "issuer": BOT_FRAMEWORK_ISSUER,
            "authorization_endpoint": "https://invalid.botframework.com",
            "jwks_uri": jwks_uri,
            "id_token_signing_alg_values_supported": list(ALLOWED_ALGORITHMS),
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        }

    def token(
        self,
        *,
        audience: str,
        service_url: str | None,
        issuer: str = BOT_FRAMEWORK_ISSUER,
        issued_at: float | None = None,
        lifetime: float = 3600.0,
        kid: str | None = None,
        extra_claims: Mapping[str, Any] | None = None,
    ) -> str:
        """A JWT as the Bot Connector issues them (`serviceurl` claim, one hour, RS256)."""
        now = int(self.clock() if issued_at is None else issued_at)
        claims: dict[str, Any] = {
            "iss": issuer,
            "aud": audience,
            "iat": now,
            "nbf": now,
            "exp": int(now + lifetime),
        }
        if service_url is not None:
            claims["serviceurl"] = service_url
        claims.update(extra_claims or {})
        key = next(k for k in self._keys if k.kid == (kid or self._current))
        return jwt.encode(claims, key.private_key, algorithm="RS256", headers={"kid": key.kid})

    def sign(self, body: bytes | Mapping[str, Any], *, audience: str, **kwargs: Any) -> dict[str, str]:
        """Headers that authenticate `body` (an activity) for the bot `audience`."""
        activity = json.loads(body) if isinstance(body, bytes | str) else body
        kwargs.setdefault("service_url", activity.get("serviceUrl"))
        return {"Authorization": f"Bearer {self.token(audience=audience, **kwargs)}"}
