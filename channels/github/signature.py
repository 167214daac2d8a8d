"""GitHub webhook signatures: `X-Hub-Signature-256: sha256=<hex>`.

GitHub docs, "Validating webhook deliveries": the header is the HMAC-SHA256 hex digest of the
raw request body keyed with the webhook secret, prefixed `sha256=`, and must be compared in
constant time. There is no timestamp in the signature, so (unlike Slack) there is no replay
window to check: replays are caught by the unique `X-GitHub-Delivery` event id instead.
The older `X-Hub-Signature` (SHA-1) header is ignored.
"""

from __future__ import annotations

import hashlib
import hmac

from channels.errors import InvalidSignatureError

SIGNATURE_HEADER = "x-hub-signature-256"
_PREFIX = "sha256="


def sign(body: bytes, secret: str) -> str:
    """The `X-Hub-Signature-256` value GitHub would send for `body` (tests sign with this)."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return _PREFIX + digest


def verify_signature(body: bytes, signature: str | None, secret: str) -> None:
    """Raise InvalidSignatureError unless `signature` is GitHub's signature of `body`."""
    if not secret:
        # An HMAC keyed with "" is something anyone can compute: never accept it.
        raise InvalidSignatureError("no webhook secret configured")
    if not signature:
        raise InvalidSignatureError(f"missing {SIGNATURE_HEADER} header")
    if not signature.startswith(_PREFIX):
        raise InvalidSignatureError(f"{SIGNATURE_HEADER} is not a sha256= signature")
    expected = sign(body, secret).encode()
    # Header values may hold any bytes a client sent; compare bytes so non-ASCII input is
    # simply a mismatch (hmac.compare_digest refuses non-ASCII str).
    if not hmac.compare_digest(expected, signature.encode("utf-8", "surrogateescape")):
        raise InvalidSignatureError("signature mismatch")
