"""The inbound endpoint's `X-Ticketwire-Signature: sha256=<hex>` check."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from channels.email.signature import SIGNATURE_HEADER, sign, verify
from channels.errors import InvalidSignatureError

BODY = b"From: a@example.com\r\nSubject: hi\r\n\r\nhello\r\n"
SECRET = "inbound-secret"


def test_sign_is_the_hmac_sha256_of_the_raw_body() -> None:
    expected = hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()
    assert sign(BODY, SECRET) == f"sha256={expected}"


def test_a_correct_signature_verifies_in_any_hex_case() -> None:
    verify(BODY, sign(BODY, SECRET), SECRET)
    verify(BODY, sign(BODY, SECRET).upper().replace("SHA256=", "sha256="), SECRET)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "sha256=deadbeef",
        "sha1=" + hashlib.sha1(BODY).hexdigest(),
        sign(BODY + b"tampered", SECRET),
        sign(BODY, "another-secret"),
        "sha256=ünicode",
    ],
)
def test_a_missing_wrong_or_foreign_signature_is_refused(header: str | None) -> None:
    with pytest.raises(InvalidSignatureError):
        verify(BODY, header, SECRET)


def test_an_empty_secret_never_verifies() -> None:
    with pytest.raises(InvalidSignatureError):
        verify(BODY, sign(BODY, ""), "")


def test_the_header_name_is_the_documented_one() -> None:
    assert SIGNATURE_HEADER == "X-Ticketwire-Signature"
