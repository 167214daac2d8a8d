"""Inbound behaviour beyond the golden fixtures: signatures, ping, event ids, filtering, errors."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote_plus

import pytest

from channels.base import MessageKind, RawEvent, RawRequest
from channels.errors import (
    ChannelNotConfiguredError,
    InvalidSignatureError,
    MalformedPayloadError,
    UnsupportedEventError,
)
from channels.github import GitHubAdapter, GitHubConfig, sign
from channels.github.inbound import IGNORED_ACTIONS
from tests.github.support import (
    DELIVERY,
    RECEIVED_AT,
    SECRET,
    TOKEN,
    fixture_body,
    fixture_event,
    fixture_payload,
    github_headers,
    make_adapter,
    payload_event,
    signed_request,
)

# -- signatures --------------------------------------------------------------------------------


def test_sign_matches_the_example_in_githubs_validating_deliveries_doc() -> None:
    # GitHub docs, "Validating webhook deliveries" > "Testing the webhook payload validation".
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert sign(b"Hello, World!", SECRET) == expected


def test_a_request_signed_with_the_webhook_secret_is_accepted(webhook_adapter: GitHubAdapter) -> None:
    webhook_adapter.verify(signed_request("issues", fixture_body("issues__opened")))


def test_a_request_without_a_signature_header_is_rejected(webhook_adapter: GitHubAdapter) -> None:
    body = fixture_body("issues__opened")
    request = RawRequest.build(body, {"X-GitHub-Event": "issues", "X-GitHub-Delivery": DELIVERY})
    with pytest.raises(InvalidSignatureError):
        webhook_adapter.verify(request)


def test_a_request_signed_with_another_secret_is_rejected(webhook_adapter: GitHubAdapter) -> None:
    body = fixture_body("issues__opened")
    request = RawRequest.build(body, {"X-Hub-Signature-256": sign(body, "not the secret")})
    with pytest.raises(InvalidSignatureError):
        webhook_adapter.verify(request)


def test_a_body_changed_after_signing_is_rejected(webhook_adapter: GitHubAdapter) -> None:
    body = fixture_body("issues__opened")
    request = RawRequest.build(body + b" ", {"X-Hub-Signature-256": sign(body, SECRET)})
    with pytest.raises(InvalidSignatureError):
        webhook_adapter.verify(request)


@pytest.mark.parametrize(
    "header",
    ["sha1=0123456789abcdef0123456789abcdef01234567", "757107ea0eb2509fc211221cce984b8a37570b6d", "sha256=é"],
)
def test_a_signature_header_of_the_wrong_form_is_rejected(
    webhook_adapter: GitHubAdapter, header: str
) -> None:
    request = RawRequest.build(b"Hello, World!", {"X-Hub-Signature-256": header})
    with pytest.raises(InvalidSignatureError):
        webhook_adapter.verify(request)


def test_an_integration_without_a_webhook_secret_cannot_be_configured() -> None:
    with pytest.raises(ChannelNotConfiguredError):
        GitHubConfig(token=TOKEN, webhook_secret="")


# -- ping and event ids ------------------------------------------------------------------------


def test_ping_is_answered_200_and_names_subscribed_events_that_are_not_handled(
    webhook_adapter: GitHubAdapter,
) -> None:
    # The fixture's hook subscribes to everything ("*"); GitHub shows this answer in the UI.
    request = signed_request("ping", fixture_body("ping__repository_hook"))
    response = webhook_adapter.handshake(request)
    assert response is not None
    assert response.status == 200
    assert json.loads(response.body) == {"ok": True, "unhandled_events": ["*"]}


def test_ping_of_a_hook_subscribed_to_issues_and_comments_is_a_plain_ok(
    webhook_adapter: GitHubAdapter,
) -> None:
    payload = fixture_payload("ping__repository_hook")
    payload["hook"]["events"] = ["issues", "issue_comment"]
    response = webhook_adapter.handshake(signed_request("ping", json.dumps(payload).encode()))
    assert response is not None
    assert json.loads(response.body) == {"ok": True}


def test_events_other_than_ping_need_no_handshake(webhook_adapter: GitHubAdapter) -> None:
    assert webhook_adapter.handshake(signed_request("issues", fixture_body("issues__opened"))) is None


def test_the_event_id_is_the_github_delivery_header(webhook_adapter: GitHubAdapter) -> None:
    request = signed_request("issues", fixture_body("issues__opened"), delivery="abc-123")
    assert webhook_adapter.event_id(request) == "abc-123"


def test_a_request_without_a_delivery_header_is_malformed(webhook_adapter: GitHubAdapter) -> None:
    request = RawRequest.build(b"{}", {"X-GitHub-Event": "issues"})
    with pytest.raises(MalformedPayloadError):
        webhook_adapter.event_id(request)


# -- malformed and unknown events --------------------------------------------------------------


def test_a_stored_event_without_an_event_type_header_is_malformed(webhook_adapter: GitHubAdapter) -> None:
    event = RawEvent(DELIVERY, fixture_body("issues__opened"), {"x-github-delivery": DELIVERY}, RECEIVED_AT)
    with pytest.raises(MalformedPayloadError):
        webhook_adapter.parse(event)


def test_the_event_type_header_is_found_whatever_its_case(webhook_adapter: GitHubAdapter) -> None:
    event = RawEvent(DELIVERY, fixture_body("issues__opened"), {"X-GitHub-Event": "issues"}, RECEIVED_AT)
    assert [m.external_id for m in webhook_adapter.parse(event)] == ["issue:444500041"]


@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe", b"[1, 2]"])
def test_a_body_that_is_not_a_json_object_is_malformed(webhook_adapter: GitHubAdapter, body: bytes) -> None:
    with pytest.raises(MalformedPayloadError):
        webhook_adapter.parse(RawEvent(DELIVERY, body, {"x-github-event": "issues"}, RECEIVED_AT))


def test_an_issue_event_without_the_issue_is_malformed(webhook_adapter: GitHubAdapter) -> None:
    payload = fixture_payload("issues__opened")
    del payload["issue"]
    with pytest.raises(MalformedPayloadError):
        webhook_adapter.parse(payload_event("issues", payload))


def test_an_event_type_the_hook_should_not_send_is_unsupported(webhook_adapter: GitHubAdapter) -> None:
    with pytest.raises(UnsupportedEventError):
        webhook_adapter.parse(payload_event("push", {"ref": "refs/heads/main"}))


@pytest.mark.parametrize("action", sorted(IGNORED_ACTIONS["issues"]))
def test_issue_actions_that_change_nothing_on_the_ticket_are_ignored(
    webhook_adapter: GitHubAdapter, action: str
) -> None:
    payload = fixture_payload("issues__opened")
    payload["action"] = action
    assert webhook_adapter.parse(payload_event("issues", payload)) == []


def test_an_issue_action_github_adds_later_is_unsupported_not_dropped(webhook_adapter: GitHubAdapter) -> None:
    payload = fixture_payload("issues__opened")
    payload["action"] = "teleported"
    with pytest.raises(UnsupportedEventError):
        webhook_adapter.parse(payload_event("issues", payload))


# -- repositories ------------------------------------------------------------------------------


def test_events_of_repositories_outside_the_configured_list_are_ignored() -> None:
    adapter = make_adapter(repositories=("octo-org/support",))
    event = fixture_event("issues__opened")
    assert adapter.parse(event) == []
    assert adapter.is_ignored_repository(event) is True


def test_configured_repositories_match_whatever_their_case() -> None:
    adapter = make_adapter(repositories=("codertocat/hello-world",))
    event = fixture_event("issue_comment__created")
    assert adapter.is_ignored_repository(event) is False
    assert [m.external_id for m in adapter.parse(event)] == ["comment:492700400"]


def test_an_empty_repository_list_accepts_every_repository(webhook_adapter: GitHubAdapter) -> None:
    assert webhook_adapter.is_ignored_repository(fixture_event("issues__closed")) is False


def test_events_without_a_repository_are_not_counted_as_ignored_repositories() -> None:
    adapter = make_adapter(repositories=("octo-org/support",))
    assert adapter.is_ignored_repository(fixture_event("installation__created")) is False


# -- bots and our own comments -----------------------------------------------------------------


def _comment_created(**changes: Any) -> dict[str, Any]:
    payload = fixture_payload("issue_comment__created")
    for path, value in changes.items():
        target = payload
        *parents, leaf = path.split("__")
        for key in parents:
            target = target[key]
        target[leaf] = value
    return payload


BOT = {"login": "dependabot[bot]", "id": 49699333, "type": "Bot"}


@pytest.mark.parametrize(
    "changes",
    [
        {"comment__user": BOT},
        {"comment__performed_via_github_app": {"id": 1, "slug": "some-app", "name": "Some App"}},
        {"sender": BOT},
    ],
    ids=["bot author", "posted through an app", "bot sender"],
)
def test_comments_by_bots_are_ignored(webhook_adapter: GitHubAdapter, changes: dict[str, Any]) -> None:
    for action in ("created", "edited"):
        payload = _comment_created(action=action, **changes)
        assert webhook_adapter.parse(payload_event("issue_comment", payload)) == []


def test_comments_carrying_our_delivery_marker_are_ignored(webhook_adapter: GitHubAdapter) -> None:
    body = "Thanks, fixed in 1.2.3.\n\n<!-- ticketwire:delivery:dlv-0001 -->"
    for action in ("created", "edited"):
        payload = _comment_created(action=action, comment__body=body)
        assert webhook_adapter.parse(payload_event("issue_comment", payload)) == []


def test_a_deleted_comment_is_removed_even_when_a_bot_wrote_it(webhook_adapter: GitHubAdapter) -> None:
    payload = _comment_created(action="deleted", comment__user=BOT)
    [message] = webhook_adapter.parse(payload_event("issue_comment", payload))
    assert message.kind is MessageKind.DELETE


def test_issues_opened_by_bots_are_ignored(webhook_adapter: GitHubAdapter) -> None:
    payload = fixture_payload("issues__opened")
    payload["issue"]["user"] = BOT
    payload["sender"] = BOT
    assert webhook_adapter.parse(payload_event("issues", payload)) == []


def test_an_issue_closed_by_a_bot_still_resolves_the_ticket(webhook_adapter: GitHubAdapter) -> None:
    payload = fixture_payload("issues__closed")
    payload["sender"] = BOT
    [message] = webhook_adapter.parse(payload_event("issues", payload))
    assert (message.kind, message.status) == (MessageKind.STATUS_CHANGE, "resolved")


def test_a_comment_on_an_issue_never_seen_before_can_open_the_ticket(webhook_adapter: GitHubAdapter) -> None:
    [message] = webhook_adapter.parse(fixture_event("issue_comment__created"))
    # Same thread key and ticket fields as issues.opened, so ingest finds-or-creates one ticket.
    [opened] = webhook_adapter.parse(fixture_event("issues__opened"))
    assert message.creates_ticket and message.subject == opened.subject
    assert (message.thread_key, message.ticket_fields) == (opened.thread_key, opened.ticket_fields)


# -- content types -----------------------------------------------------------------------------


def test_a_hook_left_on_githubs_form_encoded_default_parses_like_json(webhook_adapter: GitHubAdapter) -> None:
    json_body = fixture_body("issue_comment__created")
    form_body = ("payload=" + quote_plus(json_body.decode())).encode()
    headers = {
        **github_headers("issue_comment", form_body),
        "Content-Type": "application/x-www-form-urlencoded",
    }
    request = RawRequest.build(form_body, headers)

    webhook_adapter.verify(request)
    event = RawEvent(DELIVERY, request.body, request.headers, RECEIVED_AT)
    assert webhook_adapter.parse(event) == webhook_adapter.parse(fixture_event("issue_comment__created"))


def test_a_form_body_without_a_payload_field_is_malformed(webhook_adapter: GitHubAdapter) -> None:
    headers = {"x-github-event": "issues", "content-type": "application/x-www-form-urlencoded"}
    with pytest.raises(MalformedPayloadError):
        webhook_adapter.parse(RawEvent(DELIVERY, b"zen=hello", headers, RECEIVED_AT))
