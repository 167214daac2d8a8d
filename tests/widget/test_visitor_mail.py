"""Queued visitor emails really leave through the project's email config (aiosmtpd here)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from core.db import session_scope
from services.visitor_mail import send_visitor_emails
from services.widget import notify_unread_replies, pending_visitor_emails
from tests.email_outbound.conftest import Smtp, smtp  # noqa: F401  (the SMTP sink fixture)
from tests.widget.support import reply
from tests.widget.test_notifications import _ticket_with_email, clock  # noqa: F401


def test_an_unread_reply_email_reaches_the_visitor_once(client: Any, tenant: Any, clock: Any, smtp: Smtp) -> None:  # noqa: F811
    created = client.post(tenant.url("email_configs"), json=smtp.settings(), headers=tenant.headers)
    assert created.status_code == 201, created.text
    ticket_id, _ = _ticket_with_email(client, tenant)
    reply(client, tenant, ticket_id, "We shipped a replacement.")
    clock.advance(hours=1)
    with session_scope() as session:
        assert len(notify_unread_replies(session=session, older_than=timedelta(minutes=30))) == 1
    assert send_visitor_emails() == 1
    assert send_visitor_emails() == 0  # sent once, never again
    (mail,) = smtp.sink.mails
    assert mail.rcpt_tos == ["grace@example.com"]
    assert mail.message["Auto-Submitted"] == "auto-generated"
    assert "[#1]" in mail.message["Subject"]
    assert "We shipped a replacement." in mail.message.get_body(("plain",)).get_content()
    with session_scope(read_only=True) as session:
        assert pending_visitor_emails(session=session) == []


def test_without_an_email_config_the_email_stays_queued_with_the_reason(client: Any, tenant: Any, clock: Any) -> None:  # noqa: F811
    ticket_id, _ = _ticket_with_email(client, tenant)
    reply(client, tenant, ticket_id, "answer")
    clock.advance(hours=1)
    with session_scope() as session:
        notify_unread_replies(session=session, older_than=timedelta(minutes=30))
    assert send_visitor_emails() == 0
    with session_scope(read_only=True) as session:
        assert len(pending_visitor_emails(session=session)) == 1
