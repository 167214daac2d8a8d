"""Emails to widget visitors about team replies they have not read."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from core.clock import FrozenClock, use_clock
from core.db import session_scope
from services.widget import mark_visitor_email_sent, notify_unread_replies, pending_visitor_emails
from tests.widget.support import configure_widget, mark_read, new_session_id, reply, send

THRESHOLD = timedelta(minutes=30)


@pytest.fixture
def clock() -> Iterator[FrozenClock]:
    frozen = FrozenClock(datetime(2025, 5, 6, 9, 0, tzinfo=UTC))
    previous = use_clock(frozen)
    yield frozen
    use_clock(previous)


def _notify() -> list:
    with session_scope() as session:
        return notify_unread_replies(session=session, older_than=THRESHOLD)


def _ticket_with_email(client, tenant, email="grace@example.com") -> tuple[str, str]:
    session_id = new_session_id()
    body = send(client, tenant, session_id, "help please", traits={"name": "Grace", "email": email}).json()
    return body["ticket_id"], session_id


def test_an_unread_reply_older_than_the_threshold_is_emailed_once(client, tenant, clock):
    ticket_id, _ = _ticket_with_email(client, tenant)
    clock.advance(minutes=1)
    reply(client, tenant, ticket_id, "We shipped a replacement.")
    clock.advance(minutes=29)
    assert _notify() == []  # 29 minutes: not yet
    clock.advance(minutes=2)
    [email] = _notify()
    assert email.kind == "unread_reply" and email.recipient_email == "grace@example.com"
    assert str(email.ticket_id) == ticket_id and email.project_id == tenant.project_id
    assert email.payload["ticket_number"] == 1 and email.payload["customer_name"] == "Grace"
    assert [r["content"] for r in email.payload["replies"]] == ["We shipped a replacement."]
    assert email.payload["replies"][0]["author_name"] == "Ada Agent"
    # Running again, or later, queues nothing more.
    assert _notify() == []
    clock.advance(hours=5)
    assert _notify() == []
    with session_scope(read_only=True) as session:
        assert [e.notification_id for e in pending_visitor_emails(session=session)] == [email.notification_id]


def test_one_email_covers_every_unread_reply_and_a_later_one_gets_its_own(client, tenant, clock):
    ticket_id, _ = _ticket_with_email(client, tenant)
    reply(client, tenant, ticket_id, "first")
    clock.advance(minutes=1)
    reply(client, tenant, ticket_id, "second")
    clock.advance(minutes=31)
    [email] = _notify()
    assert [r["content"] for r in email.payload["replies"]] == ["first", "second"]
    clock.advance(minutes=5)
    reply(client, tenant, ticket_id, "third")
    clock.advance(minutes=10)
    assert _notify() == []  # the new reply is only 10 minutes old
    clock.advance(minutes=25)
    [later] = _notify()
    assert [r["content"] for r in later.payload["replies"]] == ["third"]


def test_read_replies_private_notes_and_visitors_without_email_are_not_emailed(client, tenant, clock):
    read_ticket, read_session = _ticket_with_email(client, tenant, "read@example.com")
    reply(client, tenant, read_ticket, "answer")
    mark_read(client, tenant, read_ticket, read_session)
    noted_ticket, _ = _ticket_with_email(client, tenant, "noted@example.com")
    reply(client, tenant, noted_ticket, "internal only", private=True)
    anonymous_ticket = send(client, tenant, new_session_id(), "no email").json()["ticket_id"]
    reply(client, tenant, anonymous_ticket, "answer")
    clock.advance(hours=2)
    assert _notify() == []


def test_a_project_sets_its_own_delay(client, tenant, clock):
    configure_widget(tenant, unread_notification_minutes=120)
    ticket_id, _ = _ticket_with_email(client, tenant)
    reply(client, tenant, ticket_id, "answer")
    clock.advance(minutes=90)
    assert _notify() == []
    clock.advance(minutes=31)
    assert len(_notify()) == 1


def test_a_sent_email_leaves_the_pending_list(client, tenant, clock):
    ticket_id, _ = _ticket_with_email(client, tenant)
    reply(client, tenant, ticket_id, "answer")
    clock.advance(hours=1)
    [email] = _notify()
    with session_scope() as session:
        mark_visitor_email_sent(session=session, notification_id=email.notification_id)
    with session_scope(read_only=True) as session:
        assert pending_visitor_emails(session=session) == []
