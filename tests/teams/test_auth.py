"""The Bot Framework JWT check, case by case, against JWKS served by the fake."""

from __future__ import annotations

import json

import jwt
import pytest

from channels.base import RawRequest
from channels.errors import InvalidSignatureError, MalformedPayloadError
from channels.teams import TeamsAdapter, TokenIssuer
from channels.teams.auth import MAX_CLOCK_SKEW, UNKNOWN_KID_REFRESH_COOLDOWN
from tests.fakes.teams_api import KEYS_PATH, METADATA_PATH, FakeTeams
from tests.teams.conftest import FakeClock, fixture_bytes, signed_request

BODY = fixture_bytes("message__channel_mention_bot.json")
SERVICE_URL = json.loads(BODY)["serviceUrl"]


def bearer(token: str) -> RawRequest:
    return RawRequest.build(BODY, {"Authorization": f"Bearer {token}"})


def test_a_token_signed_by_the_bot_framework_for_this_bot_is_accepted(adapter, teams, issuer, clock):
    adapter.verify(signed_request(issuer, BODY, audience=teams.app_id, issued_at=clock()))


def test_a_token_from_another_issuer_is_rejected(adapter, teams, issuer, clock):
    token = issuer.token(
        audience=teams.app_id, service_url=SERVICE_URL, issued_at=clock(), issuer="https://sts.windows.net/x/"
    )
    with pytest.raises(InvalidSignatureError):
        adapter.verify(bearer(token))


def test_a_token_for_another_bot_is_rejected(adapter, issuer, clock):
    token = issuer.token(audience="another-app-id", service_url=SERVICE_URL, issued_at=clock())
    with pytest.raises(InvalidSignatureError):
        adapter.verify(bearer(token))


def test_a_token_expired_more_than_five_minutes_ago_is_rejected(adapter, teams, issuer, clock):
    token = issuer.token(
        audience=teams.app_id, service_url=SERVICE_URL, issued_at=clock() - 3600 - MAX_CLOCK_SKEW - 1
    )
    with pytest.raises(InvalidSignatureError, match="expired"):
        adapter.verify(bearer(token))


def test_a_token_expired_within_the_allowed_clock_skew_is_accepted(adapter, teams, issuer, clock):
    token = issuer.token(
        audience=teams.app_id, service_url=SERVICE_URL, issued_at=clock() - 3600 - MAX_CLOCK_SKEW + 1
    )
    adapter.verify(bearer(token))


def test_a_token_not_valid_yet_beyond_the_skew_is_rejected(adapter, teams, issuer, clock):
    token = issuer.token(
        audience=teams.app_id, service_url=SERVICE_URL, issued_at=clock() + MAX_CLOCK_SKEW + 5
    )
    with pytest.raises(InvalidSignatureError, match="not yet valid"):
        adapter.verify(bearer(token))


def test_a_token_not_valid_yet_within_the_skew_is_accepted(adapter, teams, issuer, clock):
    adapter.verify(
        bearer(issuer.token(audience=teams.app_id, service_url=SERVICE_URL, issued_at=clock() + 60))
    )


def test_a_token_with_a_forged_signature_is_rejected(adapter, teams, issuer, clock):
    good = issuer.token(audience=teams.app_id, service_url=SERVICE_URL, issued_at=clock())
    other = issuer.token(audience=teams.app_id, service_url="https://evil.example/", issued_at=clock())
    header, payload, _ = good.split(".")
    with pytest.raises(InvalidSignatureError):
        adapter.verify(bearer(f"{header}.{payload}.{other.split('.')[2]}"))


def test_a_token_signed_by_a_key_unknown_to_the_cache_refreshes_the_keys_once_and_passes(clock):
    with FakeTeams(issuer=TokenIssuer()) as teams:
        adapter = TeamsAdapter(teams.config(), clock=clock)
        adapter.verify(signed_request(teams.issuer, BODY, audience=teams.app_id, issued_at=clock()))
        teams.issuer.rotate("key-rotated")
        adapter.verify(signed_request(teams.issuer, BODY, audience=teams.app_id, issued_at=clock()))
        assert len(teams.calls_to(KEYS_PATH)) == 2


def test_a_key_still_unknown_after_the_refresh_is_rejected_and_does_not_refresh_again(clock):
    with FakeTeams(issuer=TokenIssuer()) as teams:
        adapter = TeamsAdapter(teams.config(), clock=clock)
        adapter.verify(signed_request(teams.issuer, BODY, audience=teams.app_id, issued_at=clock()))
        teams.issuer.add_key("ghost", published=False)
        for _ in range(3):
            with pytest.raises(InvalidSignatureError, match="unknown signing key"):
                adapter.verify(
                    signed_request(teams.issuer, BODY, audience=teams.app_id, issued_at=clock(), kid="ghost")
                )
        assert len(teams.calls_to(KEYS_PATH)) == 2
        clock.advance(UNKNOWN_KID_REFRESH_COOLDOWN + 1)
        with pytest.raises(InvalidSignatureError):
            adapter.verify(
                signed_request(teams.issuer, BODY, audience=teams.app_id, issued_at=clock(), kid="ghost")
            )
        assert len(teams.calls_to(KEYS_PATH)) == 3


def test_a_service_url_claim_that_differs_from_the_activity_is_rejected(adapter, teams, issuer, clock):
    request = signed_request(
        issuer, BODY, audience=teams.app_id, issued_at=clock(), service_url="https://evil.example/"
    )
    with pytest.raises(InvalidSignatureError, match="serviceUrl"):
        adapter.verify(request)


def test_a_token_without_a_service_url_claim_is_rejected(adapter, teams, issuer, clock):
    with pytest.raises(InvalidSignatureError, match="serviceUrl"):
        adapter.verify(bearer(issuer.token(audience=teams.app_id, service_url=None, issued_at=clock())))


def test_a_key_not_endorsed_for_msteams_is_rejected(clock):
    with FakeTeams(issuer=TokenIssuer()) as teams:
        teams.issuer.rotate("webchat-only", endorsements=("webchat",))
        adapter = TeamsAdapter(teams.config(), clock=clock)
        with pytest.raises(InvalidSignatureError, match="endorsed"):
            adapter.verify(signed_request(teams.issuer, BODY, audience=teams.app_id, issued_at=clock()))


@pytest.mark.parametrize("algorithm", ["HS256", "none"])
def test_tokens_signed_with_other_algorithms_are_rejected(adapter, teams, issuer, clock, algorithm):
    claims = {
        "iss": "https://api.botframework.com",
        "aud": teams.app_id,
        "exp": int(clock()) + 600,
        "serviceurl": SERVICE_URL,
    }
    key = "a-shared-secret-that-is-long-enough-for-hs256" if algorithm == "HS256" else None
    token = jwt.encode(claims, key, algorithm=algorithm, headers={"kid": issuer.kid})
    with pytest.raises(InvalidSignatureError, match="algorithm"):
        adapter.verify(bearer(token))


@pytest.mark.parametrize("authorization", [None, "", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer not-a-jwt"])
def test_a_missing_or_malformed_authorization_header_is_rejected(adapter, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    with pytest.raises(InvalidSignatureError):
        adapter.verify(RawRequest.build(BODY, headers))


def test_a_valid_token_on_a_body_that_is_not_json_is_a_malformed_payload(adapter, teams, issuer, clock):
    token = issuer.token(audience=teams.app_id, service_url=SERVICE_URL, issued_at=clock())
    with pytest.raises(MalformedPayloadError):
        adapter.verify(RawRequest.build(b"{not json", {"Authorization": f"Bearer {token}"}))


def test_metadata_and_keys_are_fetched_once_and_served_from_the_cache(adapter, teams, issuer, clock):
    for _ in range(3):
        adapter.verify(signed_request(issuer, BODY, audience=teams.app_id, issued_at=clock()))
    assert len(teams.calls_to(METADATA_PATH)) == 1
    assert len(teams.calls_to(KEYS_PATH)) == 1


def test_keys_are_refreshed_after_a_day_and_the_old_copy_serves_while_the_refresh_fails(
    adapter, teams, issuer, clock
):
    adapter.verify(signed_request(issuer, BODY, audience=teams.app_id, issued_at=clock()))
    clock.advance(24 * 3600 + 1)
    teams.fail_next_server_error(503, path=METADATA_PATH)
    adapter.verify(signed_request(issuer, BODY, audience=teams.app_id, issued_at=clock()))
    adapter.verify(signed_request(issuer, BODY, audience=teams.app_id, issued_at=clock()))
    assert len(teams.calls_to(METADATA_PATH)) == 2
    clock.advance(UNKNOWN_KID_REFRESH_COOLDOWN + 1)
    adapter.verify(signed_request(issuer, BODY, audience=teams.app_id, issued_at=clock()))
    assert len(teams.calls_to(METADATA_PATH)) == 3


def test_unreachable_signing_keys_reject_the_request(teams, issuer):
    clock = FakeClock()
    adapter = TeamsAdapter(teams.config(), clock=clock)
    teams.fail_next_server_error(500, path=METADATA_PATH)
    with pytest.raises(InvalidSignatureError, match="unavailable"):
        adapter.verify(signed_request(issuer, BODY, audience=teams.app_id, issued_at=clock()))
