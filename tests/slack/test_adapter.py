"""Configuration, handshake and event ids of the Slack adapter."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest

from channels.base import ChannelAdapter, RawRequest
from channels.errors import ChannelNotConfiguredError, MalformedPayloadError
from channels.slack import SlackAdapter, SlackConfig
from tests.fakes.slack_api import event_envelope
from tests.slack.conftest import fixture_body, fixture_json, signed_request


def test_the_adapter_fulfils_the_channel_adapter_contract(adapter: SlackAdapter) -> None:
    assert isinstance(adapter, ChannelAdapter)
    assert adapter.name == "slack"


def test_config_from_settings_takes_the_integration_settings_and_ignores_other_keys() -> None:
    config = SlackConfig.from_settings(
        {"bot_token": "xoxb-1", "signing_secret": "s", "channel_ids": ["C1", "C2"], "enabled": True}
    )
    assert config == SlackConfig(bot_token="xoxb-1", signing_secret="s", channel_ids=("C1", "C2"))
    assert config.ticket_emoji == "ticket"
    assert config.api_base_url == "https://slack.com/api/"
    assert config.bot_user_id is None


def test_config_from_settings_accepts_channel_ids_as_a_comma_list() -> None:
    config = SlackConfig.from_settings({"bot_token": "t", "signing_secret": "s", "channel_ids": "C1, C2,"})
    assert config.channel_ids == ("C1", "C2")


@pytest.mark.parametrize("missing", ["bot_token", "signing_secret"])
def test_config_without_a_secret_setting_is_not_configured(missing: str) -> None:
    settings = {"bot_token": "t", "signing_secret": "s", missing: ""}
    with pytest.raises(ChannelNotConfiguredError, match=missing):
        SlackConfig.from_settings(settings)


def test_the_config_never_shows_its_secrets_in_its_repr() -> None:
    text = repr(SlackConfig(bot_token="xoxb-secret-token", signing_secret="signing-secret"))
    assert "xoxb-secret-token" not in text and "signing-secret" not in text


def test_url_verification_is_answered_with_the_challenge(adapter: SlackAdapter) -> None:
    response = adapter.handshake(signed_request(fixture_body("url_verification__challenge.json")))
    assert response is not None
    assert response.status == 200
    assert response.content_type == "application/json"
    assert json.loads(response.body) == {"challenge": "valid_challenge_token"}


def test_an_event_callback_needs_no_handshake(adapter: SlackAdapter) -> None:
    assert adapter.handshake(signed_request(fixture_body("message__channel_plain_text.json"))) is None


def test_a_body_that_is_not_json_is_malformed(adapter: SlackAdapter) -> None:
    with pytest.raises(MalformedPayloadError):
        adapter.handshake(signed_request(b"<xml/>"))
    with pytest.raises(MalformedPayloadError):
        adapter.event_id(signed_request(b"[1, 2]"))


def test_the_event_id_is_the_envelopes_event_id(adapter: SlackAdapter) -> None:
    assert (
        adapter.event_id(signed_request(fixture_body("message__channel_plain_text.json"))) == "Ev079SP4TP1P"
    )


def test_an_old_envelope_without_event_id_gets_an_id_from_team_event_channel_ts_reaction_and_user(
    adapter: SlackAdapter,
) -> None:
    body = fixture_body("reaction_added__old_envelope_in_dm.json")
    assert (
        adapter.event_id(signed_request(body))
        == "derived:T0JFD6M53:reaction_added:D2AQCJCQ2:1477958101.000004:grinning:U27FFLNF4"
    )


def test_a_derived_event_id_is_stable_across_retries_and_tells_reactions_apart(adapter: SlackAdapter) -> None:
    payload = fixture_json("reaction_added__old_envelope_in_dm.json")
    first = adapter.event_id(signed_request(json.dumps(payload).encode()))
    retry = adapter.event_id(signed_request(json.dumps(payload, indent=2).encode()))
    payload["event"]["reaction"] = "ticket"
    other = adapter.event_id(signed_request(json.dumps(payload).encode()))
    assert first == retry
    assert other != first


def test_an_old_message_envelope_gets_an_id_from_team_event_channel_and_ts(adapter: SlackAdapter) -> None:
    event = {"type": "message", "user": "U1", "text": "hi", "channel": "C1", "ts": "1.000001"}
    body = json.dumps(event_envelope(event, team_id="T1", event_id=None)).encode()
    assert adapter.event_id(signed_request(body)) == "derived:T1:message:C1:1.000001"


def test_an_interactivity_payload_is_identified_by_its_trigger_id(adapter: SlackAdapter) -> None:
    payload = fixture_json("bundle__app_mention_reaction_added_block_actions.json", "action")
    # Slack posts interactivity as a form with the JSON in `payload` ("Handling user interaction").
    body = urlencode({"payload": json.dumps(payload)}).encode()
    assert adapter.event_id(signed_request(body)) == (
        "derived:T00FAKE00AA:block_actions:10215325802133.3901254001572.2e2548aa918b35fd85829545c2d4ae2b"
    )
    assert adapter.handshake(RawRequest.build(body)) is None
