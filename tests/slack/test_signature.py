"""Slack v0 request signatures: what verify accepts and what it refuses."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from slack_sdk.signature import SignatureVerifier

from channels.base import RawRequest
from channels.errors import InvalidSignatureError
from channels.slack import SlackAdapter, SlackSigner, sign
from channels.slack.signature import SIGNATURE_HEADER, TIMESTAMP_HEADER
from tests.slack.conftest import NOW, SIGNING_SECRET, fixture_body, signed_request

BODY = fixture_body("message__channel_plain_text.json")


def test_sign_reproduces_the_example_of_slacks_verifying_requests_doc() -> None:
    body = (
        b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
        b"&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
        b"&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
        b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
    )
    assert (
        sign(body, "8f742231b10e8888abcd99yyyzzz85a5", 1531420618)
        == "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
    )


# slack-sdk decodes the body as UTF-8 first (Slack bodies are UTF-8); ours signs the bytes as they came.
@given(text=st.text(max_size=300), timestamp=st.integers(min_value=0, max_value=2**31))
def test_sign_agrees_with_slack_sdks_own_signature_verifier(text: str, timestamp: int) -> None:
    body = text.encode()
    verifier = SignatureVerifier(SIGNING_SECRET)
    assert sign(body, SIGNING_SECRET, timestamp) == verifier.generate_signature(
        timestamp=str(timestamp), body=body
    )


def test_a_request_signed_now_with_the_signing_secret_is_accepted(adapter: SlackAdapter) -> None:
    adapter.verify(signed_request(BODY))


def test_a_request_signed_with_another_secret_is_refused(adapter: SlackAdapter) -> None:
    with pytest.raises(InvalidSignatureError):
        adapter.verify(signed_request(BODY, secret="not-the-signing-secret"))


def test_a_body_changed_after_signing_is_refused(adapter: SlackAdapter) -> None:
    request = signed_request(BODY)
    tampered = RawRequest.build(BODY.replace(b"normal", b"forged"), dict(request.headers))
    with pytest.raises(InvalidSignatureError):
        adapter.verify(tampered)


@pytest.mark.parametrize("age", [301, -301, 3600])
def test_a_timestamp_more_than_five_minutes_from_now_is_refused(adapter: SlackAdapter, age: int) -> None:
    with pytest.raises(InvalidSignatureError, match="stale"):
        adapter.verify(signed_request(BODY, timestamp=int(NOW) - age))


def test_a_timestamp_exactly_five_minutes_old_is_still_accepted(adapter: SlackAdapter) -> None:
    adapter.verify(signed_request(BODY, timestamp=int(NOW) - 300))


@pytest.mark.parametrize("missing", [SIGNATURE_HEADER, TIMESTAMP_HEADER])
def test_a_request_without_a_signature_header_is_refused(adapter: SlackAdapter, missing: str) -> None:
    headers = {k: v for k, v in signed_request(BODY).headers.items() if k != missing}
    with pytest.raises(InvalidSignatureError, match="missing"):
        adapter.verify(RawRequest.build(BODY, headers))


def test_a_timestamp_that_is_not_a_number_is_refused(adapter: SlackAdapter) -> None:
    headers = {TIMESTAMP_HEADER: "yesterday", SIGNATURE_HEADER: sign(BODY, SIGNING_SECRET, "yesterday")}
    with pytest.raises(InvalidSignatureError):
        adapter.verify(RawRequest.build(BODY, headers))


def test_the_signer_reads_headers_whatever_their_case() -> None:
    signer = SlackSigner(SIGNING_SECRET, clock=lambda: NOW)
    headers = {
        "X-Slack-Signature": sign(BODY, SIGNING_SECRET, int(NOW)),
        "X-Slack-Request-Timestamp": str(int(NOW)),
    }
    signer.verify(BODY, headers)


def test_the_signer_signs_with_its_clock_when_no_timestamp_is_given() -> None:
    headers = SlackSigner(SIGNING_SECRET, clock=lambda: NOW).sign(BODY)
    assert headers == {
        TIMESTAMP_HEADER: str(int(NOW)),
        SIGNATURE_HEADER: sign(BODY, SIGNING_SECRET, int(NOW)),
    }
