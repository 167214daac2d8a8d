"""Golden parse tests: every fixture in tests/github/fixtures and its exact normalised result."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from channels.base import Author, InboundMessage, MessageKind
from channels.github import GitHubAdapter
from tests.github.support import DELIVERY, FIXTURES, RECEIVED_AT, fixture_event

CODERTOCAT = Author(external_id="21031067", name="Codertocat", distinct_id="github:Codertocat")
HELLO_WORLD_1 = {"github_repo": "Codertocat/Hello-World", "github_issue_number": 1}
ISSUE_1_URL = "https://github.com/Codertocat/Hello-World/issues/1"
COMMENT_URL = "https://github.com/Codertocat/Hello-World/issues/1#issuecomment-492700400"
TITLE = "Spelling error in the README file"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


EXPECTED: dict[str, list[InboundMessage]] = {
    "issues__opened": [
        InboundMessage(
            channel="github",
            channel_detail="github_issue",
            external_id="issue:444500041",
            thread_key="Codertocat/Hello-World#1",
            author=CODERTOCAT,
            text="It looks like you accidently spelled 'commit' with two 't's.",
            subject=TITLE,
            sent_at=at("2019-05-15T15:20:18"),
            kind=MessageKind.NEW,
            creates_ticket=True,
            ticket_fields=HELLO_WORLD_1,
            metadata={"html_url": ISSUE_1_URL, "author_association": "OWNER"},
        )
    ],
    "issues__opened_null_body": [
        InboundMessage(
            channel="github",
            channel_detail="github_issue",
            external_id="issue:444500041",
            thread_key="Codertocat/Hello-World#1",
            author=CODERTOCAT,
            text="",
            subject=TITLE,
            sent_at=at("2019-05-15T15:20:18"),
            kind=MessageKind.NEW,
            creates_ticket=True,
            ticket_fields=HELLO_WORLD_1,
            metadata={"html_url": ISSUE_1_URL, "author_association": "OWNER"},
        )
    ],
    "issues__edited": [
        InboundMessage(
            channel="github",
            channel_detail="github_issue",
            external_id="issue:444500041",
            thread_key="Codertocat/Hello-World#1",
            author=CODERTOCAT,
            text="It looks like you accidently spelled 'commit' with two 't's.",
            subject=TITLE,
            sent_at=at("2019-05-15T15:20:18"),
            kind=MessageKind.EDIT,
            creates_ticket=False,
            ticket_fields=HELLO_WORLD_1,
            metadata={"html_url": ISSUE_1_URL, "author_association": "OWNER"},
        )
    ],
    "issues__closed": [
        InboundMessage(
            channel="github",
            channel_detail="github_issue",
            external_id=f"issue:3878718400:closed:{DELIVERY}",
            thread_key="Pritesh-30/test-repo#8",
            author=Author(external_id="190011583", name="Pritesh-30", distinct_id="github:Pritesh-30"),
            text="",
            sent_at=at("2026-01-31T08:11:37"),
            kind=MessageKind.STATUS_CHANGE,
            status="resolved",
            creates_ticket=False,
            ticket_fields={"github_repo": "Pritesh-30/test-repo", "github_issue_number": 8},
            metadata={"state_reason": "completed"},
        )
    ],
    "issues__reopened": [
        InboundMessage(
            channel="github",
            channel_detail="github_issue",
            external_id=f"issue:444500041:reopened:{DELIVERY}",
            thread_key="Codertocat/Hello-World#1",
            author=CODERTOCAT,
            text="",
            sent_at=at("2021-10-11T16:40:56"),
            kind=MessageKind.STATUS_CHANGE,
            status="open",
            creates_ticket=False,
            ticket_fields=HELLO_WORLD_1,
            metadata={},
        )
    ],
    "issue_comment__created": [
        InboundMessage(
            channel="github",
            channel_detail="github_issue",
            external_id="comment:492700400",
            thread_key="Codertocat/Hello-World#1",
            author=CODERTOCAT,
            text="You are totally right! I'll get this fixed right away.",
            subject=TITLE,
            sent_at=at("2019-05-15T15:20:21"),
            kind=MessageKind.NEW,
            creates_ticket=True,
            ticket_fields=HELLO_WORLD_1,
            metadata={"html_url": COMMENT_URL, "author_association": "OWNER"},
        )
    ],
    "issue_comment__created_on_pull_request": [
        InboundMessage(
            channel="github",
            channel_detail="github_issue",
            external_id="comment:546616131",
            thread_key="chhsia0/knative-route-demo#3",
            author=Author(external_id="4643017", name="chhsia0", distinct_id="github:chhsia0"),
            text="/build",
            subject="Updated to v2.",
            sent_at=at("2019-10-26T16:09:23"),
            kind=MessageKind.NEW,
            creates_ticket=True,
            ticket_fields={"github_repo": "chhsia0/knative-route-demo", "github_issue_number": 3},
            metadata={
                "html_url": "https://github.com/chhsia0/knative-route-demo/pull/3#issuecomment-546616131",
                "author_association": "OWNER",
                "is_pull_request": True,
            },
        )
    ],
    "issue_comment__edited": [
        InboundMessage(
            channel="github",
            channel_detail="github_issue",
            external_id="comment:492700400",
            thread_key="Codertocat/Hello-World#1",
            author=CODERTOCAT,
            text="You are totally right! I'll get this fixed today.",
            sent_at=at("2019-05-15T15:20:22"),
            kind=MessageKind.EDIT,
            creates_ticket=False,
            ticket_fields=HELLO_WORLD_1,
            metadata={"html_url": COMMENT_URL, "author_association": "OWNER"},
        )
    ],
    "issue_comment__deleted": [
        InboundMessage(
            channel="github",
            channel_detail="github_issue",
            external_id="comment:492700400",
            thread_key="Codertocat/Hello-World#1",
            author=CODERTOCAT,
            text="",
            sent_at=RECEIVED_AT,
            kind=MessageKind.DELETE,
            creates_ticket=False,
            ticket_fields=HELLO_WORLD_1,
            metadata={"html_url": COMMENT_URL, "author_association": "OWNER"},
        )
    ],
    # comment.user is snippet-bot (type Bot) although the sender is a person.
    "issue_comment__edited_bot_authored_comment": [],
    "installation__created": [],
    "ping__repository_hook": [],
}


def test_every_fixture_has_a_golden_result() -> None:
    assert sorted(p.stem for p in FIXTURES.glob("*.json")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_parses_to_exactly_the_expected_messages(name: str, webhook_adapter: GitHubAdapter) -> None:
    assert webhook_adapter.parse(fixture_event(name)) == EXPECTED[name]
