"""The email channel: inbound mail (SMTP listener, signed HTTP endpoint, IMAP) and SMTP replies."""

from channels.email.adapter import EmailAdapter, EmailConfig, raw_from_postmark, raw_from_sendgrid
from channels.email.parse import ParsedEmail, parse_email

__all__ = [
    "EmailAdapter",
    "EmailConfig",
    "ParsedEmail",
    "parse_email",
    "raw_from_postmark",
    "raw_from_sendgrid",
]
