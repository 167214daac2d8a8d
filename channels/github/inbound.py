"""GitHub webhook payloads → normalised `InboundMessage`s.

One ticket per issue (or pull request): thread key `owner/repo#number`. Every event is either
handled (`PARSERS`, keyed by `(X-GitHub-Event, action)`), deliberately ignored
(`IGNORED_EVENTS`, `IGNORED_ACTIONS`), or unsupported (raises, so it is stored and logged,
never silently dropped). Payload shapes: GitHub docs, "Webhook events and payloads".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from channels.base import Author, InboundMessage, MessageKind, RawEvent
from channels.errors import MalformedPayloadError, UnsupportedEventError
from channels.github.outbound import marked_delivery_id

CHANNEL = "github"
CHANNEL_DETAIL = "github_issue"

# Events GitHub delivers whether or not the hook subscribed to them (GitHub docs, "Webhook
# events and payloads": ping on hook creation; installation events to every GitHub App).
IGNORED_EVENTS = frozenset(
    {
        "ping",
        "installation",
        "installation_repositories",
        "installation_target",
        "github_app_authorization",
        "meta",
    }
)

# Actions of handled events that change nothing a support ticket shows.
IGNORED_ACTIONS: Mapping[str, frozenset[str]] = {
    "issues": frozenset(
        {
            "assigned",
            "unassigned",
            "labeled",
            "unlabeled",
            "locked",
            "unlocked",
            "milestoned",
            "demilestoned",
            "pinned",
            "unpinned",
            "typed",
            "untyped",
            # A transfer re-announces the issue as `opened` in the new repository; a deleted
            # issue leaves the ticket and its history as they are.
            "transferred",
            "deleted",
        }
    ),
}

Payload = Mapping[str, Any]
Parser = Callable[[Payload, RawEvent], list[InboundMessage]]


# -- payload access (a missing required field is a malformed payload, answered 400) -----------
def _obj(data: Payload, key: str) -> Payload:
    value = data.get(key)
    if not isinstance(value, Mapping):
        raise MalformedPayloadError(f"payload has no {key!r} object")
    return value


def _int(data: Payload, key: str) -> int:
    value = data.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise MalformedPayloadError(f"payload has no integer {key!r}")
    return value


def _str(data: Payload, key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise MalformedPayloadError(f"payload has no {key!r}")
    return value


def _text(data: Payload, key: str) -> str:
    # GitHub sends `"body": null` for an issue opened with an empty description.
    value = data.get(key)
    return value if isinstance(value, str) else ""


def _time(data: Payload, key: str) -> datetime | None:
    value = data.get(key)
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)  # GitHub: "2019-05-15T15:20:18Z"
    except ValueError:
        return None


def repository_name(payload: Payload) -> str | None:
    """`owner/repo` of the event, or None for account-level events (installation)."""
    repo = payload.get("repository")
    name = repo.get("full_name") if isinstance(repo, Mapping) else None
    return name if isinstance(name, str) else None


def _repo(payload: Payload) -> str:
    name = repository_name(payload)
    if not name:
        raise MalformedPayloadError("payload has no repository.full_name")
    return name


# -- who wrote it -----------------------------------------------------------------------------
def _author(user: Payload) -> Author:
    login = _str(user, "login")
    user_id = user.get("id")
    return Author(
        external_id=str(user_id) if user_id is not None else None,
        name=login,
        distinct_id=f"github:{login}",
    )


def _is_bot(user: Any) -> bool:
    return isinstance(user, Mapping) and user.get("type") == "Bot"


def _by_bot(payload: Payload, item: Payload) -> bool:
    """Written or changed by a bot or a GitHub App (ours included when it posts as an App)."""
    return (
        _is_bot(item.get("user"))
        or bool(item.get("performed_via_github_app"))
        or _is_bot(payload.get("sender"))
    )


# -- the pieces every message of an issue shares ----------------------------------------------
def _thread(payload: Payload) -> tuple[str, Payload, dict[str, Any]]:
    repo = _repo(payload)
    issue = _obj(payload, "issue")
    number = _int(issue, "number")
    return f"{repo}#{number}", issue, {"github_repo": repo, "github_issue_number": number}


def _metadata(issue: Payload, item: Payload) -> dict[str, Any]:
    metadata: dict[str, Any] = {}
    if isinstance(item.get("html_url"), str):
        metadata["html_url"] = item["html_url"]
    if isinstance(item.get("author_association"), str):
        metadata["author_association"] = item["author_association"]
    # Pull requests are issues to this API: same numbers, same comments endpoint.
    if issue.get("pull_request"):
        metadata["is_pull_request"] = True
    return metadata


def _message(**fields: Any) -> InboundMessage:
    return InboundMessage(channel=CHANNEL, channel_detail=CHANNEL_DETAIL, **fields)


# -- issues ----------------------------------------------------------------------------------
def _issue_text(payload: Payload, kind: MessageKind) -> list[InboundMessage]:
    """The issue's own title and body: the ticket's first message (NEW) or its edit."""
    thread_key, issue, fields = _thread(payload)
    if _by_bot(payload, issue):
        return []
    new = kind is MessageKind.NEW
    return [
        _message(
            external_id=f"issue:{_int(issue, 'id')}",
            thread_key=thread_key,
            author=_author(_obj(issue, "user")),
            text=_text(issue, "body"),
            subject=_text(issue, "title"),
            sent_at=_time(issue, "created_at" if new else "updated_at"),
            kind=kind,
            creates_ticket=new,
            ticket_fields=fields,
            metadata=_metadata(issue, issue),
        )
    ]


def parse_issue_opened(payload: Payload, event: RawEvent) -> list[InboundMessage]:
    return _issue_text(payload, MessageKind.NEW)


def parse_issue_edited(payload: Payload, event: RawEvent) -> list[InboundMessage]:
    return _issue_text(payload, MessageKind.EDIT)


def _status_change(payload: Payload, event: RawEvent, status: str) -> list[InboundMessage]:
    thread_key, issue, fields = _thread(payload)
    action = _str(payload, "action")
    metadata: dict[str, Any] = {}
    if isinstance(issue.get("state_reason"), str):
        metadata["state_reason"] = issue["state_reason"]  # completed, not_planned, duplicate…
    return [
        _message(
            # A close/reopen is not a stored message of its own; the delivery id keeps each
            # one distinct (a redelivery of the same event keeps its X-GitHub-Delivery).
            external_id=f"issue:{_int(issue, 'id')}:{action}:{event.event_id}",
            thread_key=thread_key,
            author=_author(_obj(payload, "sender")),
            sent_at=_time(issue, "updated_at"),
            kind=MessageKind.STATUS_CHANGE,
            status=status,
            ticket_fields=fields,
            metadata=metadata,
        )
    ]


def parse_issue_closed(payload: Payload, event: RawEvent) -> list[InboundMessage]:
    return _status_change(payload, event, "resolved")


def parse_issue_reopened(payload: Payload, event: RawEvent) -> list[InboundMessage]:
    return _status_change(payload, event, "open")


# -- issue comments (on issues and pull requests) ----------------------------------------------
def _comment(payload: Payload, event: RawEvent, kind: MessageKind) -> list[InboundMessage]:
    thread_key, issue, fields = _thread(payload)
    comment = _obj(payload, "comment")
    new, deleted = kind is MessageKind.NEW, kind is MessageKind.DELETE
    # Our own replies come back as webhooks: as a Bot when posted with GitHub App auth, as
    # the token's user otherwise, so the delivery marker is what identifies them. A deletion
    # is passed on whoever wrote the comment: removing what was never stored is harmless.
    if not deleted and (_by_bot(payload, comment) or marked_delivery_id(_text(comment, "body"))):
        return []
    return [
        _message(
            external_id=f"comment:{_int(comment, 'id')}",
            thread_key=thread_key,
            author=_author(_obj(comment, "user")),
            text="" if deleted else _text(comment, "body"),
            # A comment may arrive before (or without) `issues.opened`: on an issue older
            # than the integration, or out of order. It carries what opening the ticket
            # needs; ingest finds or creates the one ticket by thread key.
            subject=_text(issue, "title") if new else None,
            # The payload has no deletion time (updated_at is the last edit): use arrival.
            sent_at=event.received_at if deleted else _time(comment, "created_at" if new else "updated_at"),
            kind=kind,
            creates_ticket=new,
            ticket_fields=fields,
            metadata=_metadata(issue, comment),
        )
    ]


def parse_comment_created(payload: Payload, event: RawEvent) -> list[InboundMessage]:
    return _comment(payload, event, MessageKind.NEW)


def parse_comment_edited(payload: Payload, event: RawEvent) -> list[InboundMessage]:
    return _comment(payload, event, MessageKind.EDIT)


def parse_comment_deleted(payload: Payload, event: RawEvent) -> list[InboundMessage]:
    return _comment(payload, event, MessageKind.DELETE)


PARSERS: Mapping[tuple[str, str], Parser] = {
    ("issues", "opened"): parse_issue_opened,
    ("issues", "edited"): parse_issue_edited,
    ("issues", "closed"): parse_issue_closed,
    ("issues", "reopened"): parse_issue_reopened,
    ("issue_comment", "created"): parse_comment_created,
    ("issue_comment", "edited"): parse_comment_edited,
    ("issue_comment", "deleted"): parse_comment_deleted,
}
HANDLED_EVENTS = frozenset(event_type for event_type, _ in PARSERS)


def parse_payload(event_type: str, payload: Payload, event: RawEvent) -> list[InboundMessage]:
    """Dispatch one webhook payload by `X-GitHub-Event` and `action`."""
    if event_type in IGNORED_EVENTS:
        return []
    if event_type not in HANDLED_EVENTS:
        raise UnsupportedEventError(f"github event {event_type!r} is not handled")
    action = payload.get("action")
    if not isinstance(action, str):
        raise MalformedPayloadError(f"github {event_type} payload has no action")
    parser = PARSERS.get((event_type, action))
    if parser is not None:
        return parser(payload, event)
    if action in IGNORED_ACTIONS.get(event_type, ()):
        return []
    raise UnsupportedEventError(f"github event {event_type}.{action} is not handled")
