"""Emails the widget owes its visitors (unread team replies, restore links), sent through the
project's first email config. The scheduler runs `send_visitor_emails` every minute."""

from __future__ import annotations

import logging
from email.message import EmailMessage
from email.utils import formataddr, make_msgid

from channels.base import DeliveryStatus
from channels.email.outbound import send_messages
from core.db import session_scope
from services import email_configs, widget
from services.widget import VisitorEmail

log = logging.getLogger(__name__)


def compose_visitor_email(email: VisitorEmail, *, from_email: str, from_name: str | None) -> EmailMessage:
    message = EmailMessage()
    message["From"] = formataddr((from_name or "", from_email))
    message["To"] = email.recipient_email
    message["Message-ID"] = make_msgid(domain=from_email.partition("@")[2] or None)
    # Never answered by auto-responders, never mistaken for a conversation by our own inbound.
    message["Auto-Submitted"] = "auto-generated"
    if email.kind == "restore_link":
        message["Subject"] = "Continue your conversation"
        message.set_content(
            "Open this link in the browser where you want to continue your support conversation:\n\n"
            f"{email.payload.get('restore_url')}\n\nThe link works once and expires soon. If you did not ask "
            "for it, ignore this email."
        )
        return message
    replies = email.payload.get("replies") or []
    number = email.payload.get("ticket_number")
    message["Subject"] = f"New reply to your conversation [#{number}]" if number else "New reply to your conversation"
    lines = [f"Hi {email.payload.get('customer_name') or 'there'},", "", "You have a new reply:", ""]
    for reply in replies:
        lines += [f"{reply.get('author_name') or 'Support'} wrote:", str(reply.get("content") or ""), ""]
    lines.append("Open the chat on our website to answer.")
    message.set_content("\n".join(lines))
    return message


def send_visitor_emails(limit: int = 100) -> int:
    """Send what is queued; returns how many were sent. A failure stays queued with its error."""
    with session_scope(read_only=True) as session:
        pending = widget.pending_visitor_emails(session=session, limit=limit)
        configs = {}
        for email in pending:
            if email.project_id not in configs:
                rows = email_configs.configs_for_project(session=session, project_id=email.project_id)
                configs[email.project_id] = email_configs.adapter_config(rows[0]) if rows else None
    sent = 0
    for email in pending:
        config = configs.get(email.project_id)
        if config is None:
            outcome, error = False, "the project has no email config to send visitor emails with"
        else:
            mime = compose_visitor_email(email, from_email=config.from_email, from_name=config.from_name)
            (result,) = send_messages(config, [mime])
            outcome = result.status == DeliveryStatus.DELIVERED
            error = f"{result.error_code}: {result.error_detail}" if not outcome else ""
        with session_scope() as session:
            if outcome:
                widget.mark_visitor_email_sent(session=session, notification_id=email.notification_id)
                sent += 1
            else:
                widget.mark_visitor_email_failed(session=session, notification_id=email.notification_id, error=error)
                log.warning("visitor email %s not sent: %s", email.notification_id, error.split(":")[0])
    return sent
