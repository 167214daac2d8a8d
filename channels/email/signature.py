"""The signature of the HTTP inbound endpoint (`POST /webhooks/email/{project_id}/inbound`).

Signed like GitHub webhooks: `X-Ticketwire-Signature: sha256=<hex>`, the HMAC-SHA256 of the
raw request body (the RFC 822 message, byte for byte) keyed with the project's inbound secret.
There is no timestamp in the scheme, so no clock: a replayed request is harmless because the
raw event is de-duplicated by Message-ID.
"""

from __future__ import annotations

import hashlib
import hmac

from channels.errors import InvalidSignatureError

SIGNATURE_HEADER = "X-Ticketwire-Signature"
_PREFIX = "sha256="


def sign(body: bytes, secret: str) -> str:
    """The header value for `body`: `sha256=<hex digest>`."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return f"{_PREFIX}{digest}"


def verify(body: bytes, header_value: str | None, secret: str) -> None:
    """Raise InvalidSignatureError unless `header_value` is the signature of `body` with `secret`."""
    if not secret:
        # An empty secret would make every forged request "valid": refuse instead.
        raise InvalidSignatureError("inbound secret is not configured")
    if not header_value:
        raise InvalidSignatureError(f"missing {SIGNATURE_HEADER} header")
    value = header_value.strip()
    if not value.lower().startswith(_PREFIX):
        raise InvalidSignatureError("unsupported signature scheme")
    expected = sign(body, secret)
    provided = _PREFIX + value[len(_PREFIX) :].lower()
    if not hmac.compare_digest(expected.encode("ascii"), provided.encode("ascii", "replace")):
        raise InvalidSignatureError("signature mismatch")
