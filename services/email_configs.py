"""Email configs: a project's SMTP (and optional IMAP) settings, its inbound address and secret.

Passwords and the inbound secret are encrypted at rest (`core.crypto.encrypt_json`) and never
shown by GET; the inbound secret is shown once, when the config is created.

This module also builds the email adapter the delivery worker uses for a ticket
(`adapter_for_ticket`). That adapter adds what needs the database or the process around the
plain `channels.email.EmailAdapter`:
- the per-config sending rate (`send_rate_per_minute`, default 30: Microsoft 365's SMTP
  submission limit is 30 messages a minute) under the pacing key `email:<config id>`;
- our Message-ID stored on the message before the mail leaves;
- SMTP connections kept open across a burst (`SmtpPool`) instead of one connection per mail;
- after an attempt whose outcome is unknown, a look in the mailbox's Sent folder over IMAP for
  our Message-ID (providers such as Gmail and Microsoft 365 file a copy of what their SMTP
  server accepted), so a crash does not mail the customer twice where the provider allows it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import hashlib
import imaplib
import logging
import os
import re
import secrets
import ssl
import threading
import time
import uuid
from collections.abc import Mapping
from email.message import EmailMessage
from typing import Any

import aiosmtplib
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from channels.base import Attachment, DeliveryResult, DeliveryStatus, KeyValueCache, OutboundReply
from channels.email import outbound
from channels.email.adapter import SMTP_SECURITY, EmailAdapter
from channels.email.adapter import EmailConfig as AdapterEmailConfig
from channels.errors import (
    ChannelNotConfiguredError,
    DeliveryError,
    PermanentDeliveryError,
    RetryableDeliveryError,
)
from core.cache import get_cache
from core.clock import now
from core.crypto import decrypt_json, encrypt_json, new_token
from core.db import session_scope
from core.settings import get_settings
from models import Delivery, EmailConfig, Message
from services.attachments import files_for_delivery
from services.errors import NotFoundError, ValidationError

log = logging.getLogger(__name__)

DEFAULT_INBOUND_DOMAIN = "inbound.ticketwire.local"
DEFAULT_RATE_PER_MINUTE = 30
MAX_RATE_PER_MINUTE = 1_000_000
SECRET_FIELDS = ("smtp_password", "imap_password")
_DEFAULT_SMTP_PORTS = {"starttls": 587, "tls": 465, "none": 25}
_DEFAULT_IMAP_PORTS = {"tls": 993, "starttls": 143, "none": 143}
_STRING_LIMITS = {
    "from_email": 254, "from_name": 200, "smtp_host": 300, "smtp_username": 300, "smtp_password": 1000,
    "imap_host": 300, "imap_username": 300, "imap_password": 1000, "imap_folder": 300, "inbound_address": 254,
}
WRITABLE = (
    "from_email", "from_name", "smtp_host", "smtp_port", "smtp_security", "smtp_username", "smtp_password",
    "imap_host", "imap_port", "imap_security", "imap_username", "imap_password", "imap_folder",
    "inbound_address", "send_rate_per_minute",
)
# What GET shows, echoed back by clients on PATCH: accepted and ignored.
READ_ONLY = ("id", "created_at", "updated_at", "health", "smtp_password_set", "imap_password_set",
             "inbound_secret", "inbound_webhook_url", "project_id")
_ADDRESS = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                      r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$")
_HOST = re.compile(r"^[A-Za-z0-9._:\[\]-]+$")


# --- validation -------------------------------------------------------------------------------


def _is_address(value: str) -> bool:
    return bool(_ADDRESS.match(value)) and ".." not in value.partition("@")[0]


def _string(data: Mapping[str, Any], key: str, *, required: bool = False) -> str | None:
    value = data.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise ValidationError("This field is required.", attr=key)
        return None
    if not isinstance(value, str):
        raise ValidationError("Must be a string.", attr=key)
    if "\r" in value or "\n" in value:
        # These values end up in mail headers and protocol commands: no header injection.
        raise ValidationError("Must be a single line.", attr=key)
    if len(value) > _STRING_LIMITS.get(key, 300):
        raise ValidationError(f"Ensure this field has no more than {_STRING_LIMITS.get(key, 300)} characters.", attr=key)
    return value if key.endswith("password") else value.strip()


def _port(data: Mapping[str, Any], key: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError("A valid integer is required.", attr=key)
    if not 1 <= value <= 65535:
        raise ValidationError("Ensure this value is between 1 and 65535.", attr=key)
    return value


def _security(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or value.lower() not in SMTP_SECURITY:
        raise ValidationError(f"'{value}' is not a valid choice for {key} (one of: {', '.join(SMTP_SECURITY)}).",
                              attr=key)
    return value.lower()


def _rate(data: Mapping[str, Any]) -> int | None:
    value = data.get("send_rate_per_minute")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_RATE_PER_MINUTE:
        raise ValidationError(f"Ensure this value is an integer between 1 and {MAX_RATE_PER_MINUTE}.",
                              attr="send_rate_per_minute")
    return value


def _check_keys(data: Any) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ValidationError("The body must be a JSON object.", attr=None)
    for key in data:
        if key not in WRITABLE and key not in READ_ONLY:
            raise ValidationError(f"Unknown field '{key}'.", attr=str(key))
    return data


def _clean(data: Mapping[str, Any], *, partial: bool) -> dict[str, Any]:
    """The writable fields present in `data`, validated. Secrets stay under their own keys."""
    values: dict[str, Any] = {}
    for key in ("from_email", "smtp_host"):
        if not partial or key in data:
            values[key] = _string(data, key, required=True)
    for key in ("from_name", "smtp_username", "smtp_password", "imap_host", "imap_username", "imap_password",
                "imap_folder", "inbound_address"):
        if key in data:
            values[key] = _string(data, key)
    for key in ("smtp_port", "imap_port"):
        if key in data:
            values[key] = _port(data, key)
    for key in ("smtp_security", "imap_security"):
        if key in data:
            values[key] = _security(data, key)
    if "send_rate_per_minute" in data:
        values["send_rate_per_minute"] = _rate(data)
    if values.get("from_email") is not None and not _is_address(values["from_email"]):
        raise ValidationError("Enter a valid email address.", attr="from_email")
    if values.get("smtp_host") is not None and not _HOST.match(values["smtp_host"]):
        raise ValidationError("Enter a valid host name.", attr="smtp_host")
    if values.get("imap_host") is not None and not _HOST.match(values["imap_host"]):
        raise ValidationError("Enter a valid host name.", attr="imap_host")
    address = values.get("inbound_address")
    if address is not None:
        address = address.lower()
        if not _is_address(address) or "+" in address.partition("@")[0]:
            # `+` is ours: replies carry `<inbound local part>+<ticket token>@domain`.
            raise ValidationError("Enter a valid email address without a '+' part.", attr="inbound_address")
        values["inbound_address"] = address
    return values


def _inbound_domain() -> str:
    return (os.environ.get("TICKETWIRE_INBOUND_DOMAIN") or DEFAULT_INBOUND_DOMAIN).strip().lower()


def _generated_inbound_address(*, session: Session) -> str:
    for _ in range(10):
        candidate = f"support-{secrets.token_hex(4)}@{_inbound_domain()}"
        if session.scalar(select(EmailConfig.id).where(EmailConfig.inbound_address == candidate)) is None:
            return candidate
    raise RuntimeError("could not generate a free inbound address")


def _address_taken(*, session: Session, address: str, config_id: uuid.UUID | None) -> bool:
    query = select(EmailConfig.id).where(func.lower(EmailConfig.inbound_address) == address)
    if config_id is not None:
        query = query.where(EmailConfig.id != config_id)
    return session.scalar(query) is not None


def _validate_whole(row: EmailConfig, stored_secrets: Mapping[str, Any]) -> None:
    """The adapter's own config must accept the result (and IMAP needs a user to log in)."""
    if row.imap_host and not row.imap_username:
        raise ValidationError("imap_username is required with imap_host.", attr="imap_username")
    try:
        adapter_config_from(row, stored_secrets)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"Invalid email settings: {exc}", attr="settings") from None


# --- CRUD -------------------------------------------------------------------------------------


def create_config(*, session: Session, project_id: int, data: Any) -> tuple[EmailConfig, str]:
    """Create an email config. Returns it and its inbound secret (shown to the user once)."""
    values = _clean(_check_keys(data), partial=False)
    security = values.get("smtp_security") or "starttls"
    address = values.get("inbound_address")
    if address is not None and _address_taken(session=session, address=address, config_id=None):
        raise ValidationError("This inbound address is already in use.", attr="inbound_address",
                              code="inbound_address_taken")
    inbound_secret = new_token(32)
    stored = {"inbound_secret": inbound_secret}
    for key in SECRET_FIELDS:
        if values.get(key):
            stored[key] = values[key]
    stamp = now()
    row = EmailConfig(
        id=uuid.uuid4(),
        project_id=project_id,
        from_email=values["from_email"],
        from_name=values.get("from_name") or "",
        smtp_host=values["smtp_host"],
        smtp_port=values.get("smtp_port") or _DEFAULT_SMTP_PORTS[security],
        smtp_security=security,
        smtp_username=values.get("smtp_username"),
        imap_host=values.get("imap_host"),
        imap_username=values.get("imap_username"),
        imap_folder=values.get("imap_folder") or ("INBOX" if values.get("imap_host") else None),
        inbound_address=address or _generated_inbound_address(session=session),
        send_rate_per_minute=values.get("send_rate_per_minute") or DEFAULT_RATE_PER_MINUTE,
        created_at=stamp,
        updated_at=stamp,
    )
    if row.imap_host:
        row.imap_security = values.get("imap_security") or "tls"
        row.imap_port = values.get("imap_port") or _DEFAULT_IMAP_PORTS[row.imap_security]
    _validate_whole(row, stored)
    row.secrets_enc = encrypt_json(stored)
    session.add(row)
    session.flush()
    return row, inbound_secret


def get_config(*, session: Session, project_id: int, config_id: Any) -> EmailConfig:
    """One of the project's email configs; 404 for unknown ids and other projects' configs."""
    try:
        key = config_id if isinstance(config_id, uuid.UUID) else uuid.UUID(str(config_id))
    except ValueError:
        raise NotFoundError("Not found.") from None
    row = session.get(EmailConfig, key)
    if row is None or row.project_id != project_id:
        raise NotFoundError("Not found.")
    return row


def list_configs(*, session: Session, project_id: int) -> list[EmailConfig]:
    """The project's email configs, oldest first."""
    return list(session.scalars(
        select(EmailConfig).where(EmailConfig.project_id == project_id).order_by(EmailConfig.created_at, EmailConfig.id)
    ))


def configs_for_project(*, session: Session, project_id: int) -> list[EmailConfig]:
    """Every email config of a project (for the inbound paths: own addresses, IMAP polling)."""
    return list_configs(session=session, project_id=project_id)


def update_config(*, session: Session, project_id: int, config_id: Any, data: Any) -> EmailConfig:
    """PATCH: only the fields given change. A password set to null or "" is removed."""
    row = get_config(session=session, project_id=project_id, config_id=config_id)
    values = _clean(_check_keys(data), partial=True)
    stored = load_secrets(row)
    for key, value in values.items():
        if key in SECRET_FIELDS:
            if value:
                stored[key] = value
            else:
                stored.pop(key, None)
        elif key == "inbound_address":
            if value is None:
                continue  # the address cannot be removed, only changed
            if _address_taken(session=session, address=value, config_id=row.id):
                raise ValidationError("This inbound address is already in use.", attr="inbound_address",
                                      code="inbound_address_taken")
            row.inbound_address = value
        elif key == "from_name":
            row.from_name = value or ""
        elif key == "imap_folder":
            row.imap_folder = value or ("INBOX" if row.imap_host else None)
        else:
            setattr(row, key, value)
    if "smtp_security" in values and "smtp_port" not in values and values["smtp_security"]:
        row.smtp_port = _DEFAULT_SMTP_PORTS[values["smtp_security"]]
    if row.smtp_security is None:
        row.smtp_security = "starttls"
    if row.smtp_port is None:
        row.smtp_port = _DEFAULT_SMTP_PORTS[row.smtp_security]
    if row.send_rate_per_minute is None:
        row.send_rate_per_minute = DEFAULT_RATE_PER_MINUTE
    if row.imap_host:
        row.imap_security = row.imap_security or "tls"
        row.imap_port = row.imap_port or _DEFAULT_IMAP_PORTS[row.imap_security]
        row.imap_folder = row.imap_folder or "INBOX"
    _validate_whole(row, stored)
    row.secrets_enc = encrypt_json(stored)
    row.updated_at = now()
    session.flush()
    forget_adapter(row.id)
    if "send_rate_per_minute" in values:
        from services.campaigns import reschedule

        reschedule(session=session, config=row)  # waiting campaign mails follow the new rate
    return row


def delete_config(*, session: Session, project_id: int, config_id: Any) -> None:
    """Remove a config. Its tickets keep their history; replies on them can no longer be sent."""
    row = get_config(session=session, project_id=project_id, config_id=config_id)
    session.delete(row)
    session.flush()
    forget_adapter(row.id)


def rotate_inbound_secret(*, session: Session, project_id: int, config_id: Any) -> tuple[EmailConfig, str]:
    """A new inbound secret (the old one stops working at once); returned once."""
    row = get_config(session=session, project_id=project_id, config_id=config_id)
    stored = load_secrets(row)
    stored["inbound_secret"] = new_token(32)
    row.secrets_enc = encrypt_json(stored)
    row.updated_at = now()
    session.flush()
    forget_adapter(row.id)
    return row, stored["inbound_secret"]


def config_view(row: EmailConfig, *, inbound_secret: str | None = None) -> dict[str, Any]:
    """What the API shows: every setting but the secrets, which it only says are set."""
    stored = load_secrets(row)
    view: dict[str, Any] = {
        "id": str(row.id),
        "from_email": row.from_email,
        "from_name": row.from_name or "",
        "smtp_host": row.smtp_host,
        "smtp_port": row.smtp_port,
        "smtp_security": row.smtp_security,
        "smtp_username": row.smtp_username,
        "smtp_password_set": bool(stored.get("smtp_password")),
        "imap_host": row.imap_host,
        "imap_port": row.imap_port,
        "imap_security": row.imap_security,
        "imap_username": row.imap_username,
        "imap_password_set": bool(stored.get("imap_password")),
        "imap_folder": row.imap_folder,
        "inbound_address": row.inbound_address,
        "inbound_webhook_url": f"{get_settings().public_url}/webhooks/email/{row.project_id}/inbound",
        "send_rate_per_minute": row.send_rate_per_minute,
        "health": row.health,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }
    if inbound_secret is not None:
        view["inbound_secret"] = inbound_secret
    return view


def load_secrets(config: EmailConfig) -> dict[str, Any]:
    """The decrypted secrets: smtp_password, imap_password, inbound_secret (None when unset)."""
    stored = decrypt_json(config.secrets_enc)
    return {"smtp_password": None, "imap_password": None, "inbound_secret": None, **stored}


def adapter_config_from(config: EmailConfig, stored_secrets: Mapping[str, Any]) -> AdapterEmailConfig:
    return AdapterEmailConfig.from_settings({
        "from_email": config.from_email,
        "from_name": config.from_name or None,
        "smtp_host": config.smtp_host,
        "smtp_port": config.smtp_port,
        "smtp_security": config.smtp_security,
        "smtp_username": config.smtp_username,
        "smtp_password": stored_secrets.get("smtp_password"),
        "inbound_secret": stored_secrets.get("inbound_secret") or "",
        "inbound_address": config.inbound_address,
        "imap_host": config.imap_host,
        "imap_port": config.imap_port,
        "imap_security": config.imap_security,
        "imap_username": config.imap_username,
        "imap_password": stored_secrets.get("imap_password"),
        "imap_folder": config.imap_folder,
    })


def adapter_config(config: EmailConfig) -> AdapterEmailConfig:
    """The channel's frozen EmailConfig (secrets included) for this row."""
    return adapter_config_from(config, load_secrets(config))


def find_by_inbound_address(*, session: Session, address: str) -> EmailConfig | None:
    """The config whose inbound address this is: case-insensitive, `local+token@domain` too."""
    value = (address or "").strip().strip("<>").strip().lower()
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain:
        return None
    base = f"{local.partition('+')[0]}@{domain}"
    return session.scalar(select(EmailConfig).where(func.lower(EmailConfig.inbound_address) == base))


def set_health(*, session: Session, config_id: Any, ok: bool, detail: str | None, source: str = "imap") -> None:
    """Record a check's outcome (IMAP polling by default; "smtp" for the test button).

    `health` keeps the last result per source and an overall `ok` / `detail`, which the API
    shows and `/metrics` can export."""
    row = session.get(EmailConfig, config_id if isinstance(config_id, uuid.UUID) else uuid.UUID(str(config_id)))
    if row is None:
        return
    health = dict(row.health or {})
    parts = dict(health.get("sources") or {})
    parts[source] = {"ok": bool(ok), "detail": detail, "checked_at": now().isoformat()}
    failing = [p for p in parts.values() if not p["ok"]]
    row.health = {
        "ok": not failing,
        "detail": failing[0]["detail"] if failing else None,
        "checked_at": parts[source]["checked_at"],
        "sources": parts,
    }


def test_smtp(config: AdapterEmailConfig) -> dict[str, Any]:
    """Open an SMTP connection with the config (EHLO, TLS, login) and report the server's answer.

    Call it outside any transaction (it may wait for the server up to the config's timeout),
    then record the outcome with `set_health(..., source="smtp")`."""
    report = outbound.test_connection(config)
    if report.get("ok"):
        parts = [report.get("banner"), report.get("login")]
        detail = " / ".join(p for p in parts if p) or "connected"
    else:
        detail = str(report.get("error") or "connection failed")
    return {**report, "ok": bool(report.get("ok")), "detail": detail}


test_smtp.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


# --- the sending rate ------------------------------------------------------------------------


def rate_per_minute(config_rate: int | None) -> float | None:
    """Mails per minute for a config, or None for unpaced.

    TICKETWIRE_EMAIL_RATE_PER_MINUTE overrides every config (0 = unpaced: benchmarks and
    load tests against a local server)."""
    value = float(config_rate or DEFAULT_RATE_PER_MINUTE)
    override = os.environ.get("TICKETWIRE_EMAIL_RATE_PER_MINUTE")
    if override:
        try:
            value = float(override)
        except ValueError:
            log.warning("TICKETWIRE_EMAIL_RATE_PER_MINUTE=%r is not a number; ignored", override)
    return value if value > 0 else None


# --- the adapter the delivery worker uses -------------------------------------------------------


class UnfoldedHeader(str):
    """A header value written on one line, as given.

    The email package folds long header lines at 78 characters and, where a line has no
    whitespace to fold at (a long URL), turns it into RFC 2047 encoded-words, which mail clients
    do not read as a List-Unsubscribe URL (RFC 2369 §2: nothing may be inserted inside the
    angle brackets). RFC 5322 §2.1.1 allows lines up to 998 characters; the email package keeps
    a header object's own `fold()`."""

    name: str

    def __new__(cls, name: str, value: str) -> UnfoldedHeader:
        if "\r" in value or "\n" in value or len(name) + len(value) + 2 > 998:
            raise ValueError(f"{name} must be one line of at most 998 characters")
        header = super().__new__(cls, value)
        header.name = name
        return header

    def fold(self, *, policy: Any) -> str:
        return f"{self.name}: {self}{policy.linesep}"



class ConfiguredEmailAdapter(EmailAdapter):
    """The email adapter of one stored config (see the module docstring)."""

    def __init__(
        self,
        config: AdapterEmailConfig,
        *,
        config_id: uuid.UUID,
        project_id: int,
        send_rate_per_minute: int,
        cache: KeyValueCache | None = None,
    ) -> None:
        super().__init__(config, cache=cache)
        self.config_id = config_id
        self.project_id = project_id
        self.send_rate_per_minute = send_rate_per_minute

    @property
    def rate_per_second(self) -> float | None:
        """The pacing rate the delivery worker applies per `rate_limit_key` (None: unpaced)."""
        per_minute = rate_per_minute(self.send_rate_per_minute)
        return per_minute / 60.0 if per_minute else None

    def rate_limit_key(self, reply: OutboundReply) -> str:
        return f"email:{self.config_id}"

    def build_reply(self, reply: OutboundReply) -> EmailMessage:
        message = super().build_reply(reply)
        thread = reply.thread
        if not thread.get("in_reply_to") and not thread.get("references"):
            # Nothing to answer yet (compose, campaigns): the subject as the agent wrote it.
            subject = re.sub(r"[\r\n]+", " ", thread.get("email_subject") or "").strip() or "(no subject)"
            message.replace_header("Subject", subject)
        unsubscribe = thread.get("list_unsubscribe")
        if unsubscribe:
            # RFC 2369 + RFC 8058 one-click: required by Gmail and Yahoo for bulk senders.
            message["List-Unsubscribe"] = UnfoldedHeader("List-Unsubscribe", f"<{unsubscribe}>")
            message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        return message

    def deliver(self, reply: OutboundReply) -> DeliveryResult:
        message_id = outbound.make_message_id(reply.delivery_id, self.config.from_email)
        try:
            extra = _prepare_delivery(reply, message_id)
            files = _stored_files(reply)
        except Exception:  # the database is briefly away: the pipeline retries the attempt
            log.warning("could not prepare email delivery %s", reply.delivery_id, exc_info=True)
            return DeliveryResult(DeliveryStatus.RETRYABLE, error_code="database_unavailable",
                                  error_detail="could not store the Message-ID before sending")
        if files:  # the team's files travel as MIME attachments, not as the links other channels get
            reply = dataclasses.replace(reply, attachments=files)
        reply_to = reply_to_for(inbound_address=self.config.inbound_address,
                                project_id=int(reply.metadata["project_id"]), ticket_number=reply.ticket_number)
        if reply_to:
            extra = {**extra, "reply_to": reply_to}
        if extra:
            reply = dataclasses.replace(reply, thread={**reply.thread, **extra})
        try:
            mime = self.build_reply(reply)
        except DeliveryError as error:
            return DeliveryResult.from_error(error)
        except (ValueError, TypeError) as exc:  # a header the email package refuses
            return DeliveryResult.from_error(PermanentDeliveryError("invalid_message", str(exc)))
        return smtp_pool().send(self.config, mime)

    def find_delivered(self, reply: OutboundReply) -> DeliveryResult | None:
        """After an unknown outcome: is our Message-ID in the mailbox's Sent folder?

        Needs IMAP settings and a provider that files what its SMTP server accepted (Gmail,
        Microsoft 365, Fastmail do). Without them, or when the mailbox cannot be asked, None:
        the pipeline sends again with the same Message-ID, which mail clients and our own
        inbound de-duplication recognise as the same mail.
        """
        if not self.config.imap_host or not self.config.imap_username:
            return None
        message_id = _stored_message_id(reply) or outbound.make_message_id(reply.delivery_id, self.config.from_email)
        try:
            found = find_sent_copy(self.config, message_id)
        except (OSError, imaplib.IMAP4.error, TimeoutError, ssl.SSLError) as exc:
            log.warning("could not look for a sent copy of delivery %s: %s", reply.delivery_id, type(exc).__name__)
            return None
        return DeliveryResult.delivered(message_id) if found else None


def reply_to_for(*, inbound_address: str | None, project_id: int, ticket_number: int) -> str | None:
    """The per-ticket reply address (`support+t<token>@…`) for our mail's Reply-To, so an answer
    that lost its threading headers still finds its ticket.

    Only when the operator set TICKETWIRE_INBOUND_DOMAIN (mail to that domain reaches
    `ticketwire smtp` or a provider route) and the config's inbound address is in it: a Reply-To
    pointing at a domain nobody receives would lose the customer's answer.
    """
    domain = (os.environ.get("TICKETWIRE_INBOUND_DOMAIN") or "").strip().lower()
    if not domain or not inbound_address or not inbound_address.lower().endswith("@" + domain):
        return None
    from services.email_inbound import reply_address

    return reply_address(inbound_address=inbound_address, project_id=project_id, ticket_number=ticket_number)


def _prepare_delivery(reply: OutboundReply, message_id: str) -> dict[str, Any]:
    """Store our Message-ID on the message before the mail leaves (a reply may come back before
    the worker records the result, or the worker may die in between), and find the campaign
    the delivery belongs to (its mails carry List-Unsubscribe)."""
    message_uuid = uuid.UUID(str(reply.metadata["message_id"]))
    with session_scope(read_only=True) as session:
        row = session.execute(
            select(Message.external_id, Delivery.campaign_id)
            .join(Delivery, Delivery.message_id == Message.id)
            .where(Message.id == message_uuid)
        ).first()
    if row is None:
        return {}
    external_id, campaign_id = row
    if external_id is None:  # campaigns store it when they are created; replies and compose here
        with session_scope() as session:
            session.execute(
                update(Message).where(Message.id == message_uuid, Message.external_id.is_(None))
                .values(external_id=message_id).execution_options(synchronize_session=False)
            )
    elif external_id.startswith("<"):
        message_id = external_id  # the one stored first wins (the from address may have changed since)
    extra: dict[str, Any] = {"email_message_id": message_id}
    if campaign_id is not None:
        from services.campaigns import unsubscribe_url

        email = str(reply.thread.get("customer_email") or reply.thread.get("email_to") or "")
        extra["list_unsubscribe"] = unsubscribe_url(project_id=int(reply.metadata["project_id"]), email=email,
                                                    campaign_id=campaign_id)
    return extra


def _stored_files(reply: OutboundReply) -> tuple[Attachment, ...]:
    """The files the team attached to the message, with their bytes (services.attachments)."""
    with session_scope(read_only=True) as session:
        return files_for_delivery(session=session, message_id=uuid.UUID(str(reply.metadata["message_id"])))


def _stored_message_id(reply: OutboundReply) -> str | None:
    with session_scope(read_only=True) as session:
        value = session.scalar(select(Message.external_id).where(Message.id == uuid.UUID(str(reply.metadata["message_id"]))))
    return value if value and value.startswith("<") else None


_ADAPTER_TTL = 5.0
_adapters: dict[uuid.UUID, tuple[float, ConfiguredEmailAdapter]] = {}
_adapters_lock = threading.Lock()


def forget_adapter(config_id: uuid.UUID) -> None:
    with _adapters_lock:
        _adapters.pop(config_id, None)


def adapter_for(config: EmailConfig) -> ConfiguredEmailAdapter:
    """The adapter of a stored config (built fresh)."""
    return ConfiguredEmailAdapter(
        adapter_config(config), config_id=config.id, project_id=config.project_id,
        send_rate_per_minute=config.send_rate_per_minute or DEFAULT_RATE_PER_MINUTE, cache=get_cache(),
    )


def adapter_for_ticket(*, thread: Mapping[str, Any]) -> ConfiguredEmailAdapter:
    """The adapter for an email ticket's config (`thread["email_config_id"]`), cached a few seconds.

    Raises ChannelNotConfiguredError when the ticket has no config or it was deleted."""
    raw = thread.get("email_config_id")
    if not raw:
        raise ChannelNotConfiguredError("the ticket has no email config")
    try:
        config_id = uuid.UUID(str(raw))
    except ValueError:
        raise ChannelNotConfiguredError("the ticket's email config id is not valid") from None
    with _adapters_lock:
        hit = _adapters.get(config_id)
    if hit and hit[0] > time.monotonic():
        return hit[1]
    with session_scope(read_only=True) as session:
        row = session.get(EmailConfig, config_id)
        if row is None:
            raise ChannelNotConfiguredError("the ticket's email config was deleted")
        adapter = adapter_for(row)
    with _adapters_lock:
        _adapters[config_id] = (time.monotonic() + _ADAPTER_TTL, adapter)
    return adapter


# --- SMTP connections kept open across a burst ---------------------------------------------------


def _pool_key(config: AdapterEmailConfig) -> tuple[Any, ...]:
    password = hashlib.sha256((config.smtp_password or "").encode()).hexdigest()
    return (config.smtp_host, config.smtp_port, config.smtp_security, config.smtp_username, password,
            config.smtp_timeout)


class SmtpPool:
    """Open SMTP connections per server and login, shared by a process's worker threads.

    One event loop in a daemon thread owns every connection; a worker thread hands it a message
    and waits for the DeliveryResult. A connection goes back to the pool only after a mail it
    carried was accepted; one idle for a moment is checked with NOOP before reuse (servers drop
    idle clients: RFC 5321 §4.5.3.2 lets them after 5 minutes, many do sooner), one idle for
    `idle_seconds` is closed, and each carries at most `messages_per_connection` mails (Exchange
    receive connectors, for one, cap messages per connection).
    """

    def __init__(
        self,
        *,
        max_connections: int | None = None,
        idle_seconds: float = 30.0,
        check_after: float = 1.0,
        messages_per_connection: int | None = None,
    ) -> None:
        self.max_connections = max_connections or int(os.environ.get("TICKETWIRE_EMAIL_MAX_CONNECTIONS", "4"))
        self.messages_per_connection = messages_per_connection or int(
            os.environ.get("TICKETWIRE_EMAIL_MESSAGES_PER_CONNECTION", "100"))
        self.idle_seconds = idle_seconds
        self.check_after = check_after
        self.connections_opened = 0
        self._idle: dict[tuple[Any, ...], list[tuple[aiosmtplib.SMTP, float, int]]] = {}
        self._slots: dict[tuple[Any, ...], asyncio.Semaphore] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._start_lock:
            if self._loop is None or self._thread is None or not self._thread.is_alive():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=self._run, args=(loop,), name="ticketwire-smtp-pool", daemon=True)
                thread.start()
                self._idle.clear()
                self._slots.clear()
                self._loop, self._thread = loop, thread
            return self._loop

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        loop.create_task(self._reap_forever())
        loop.run_forever()

    def send(self, config: AdapterEmailConfig, message: EmailMessage) -> DeliveryResult:
        """Send one mail over a pooled connection; never raises for SMTP or network failures."""
        future = asyncio.run_coroutine_threadsafe(self._send(config, message), self._ensure_loop())
        # connect + EHLO + STARTTLS + AUTH + MAIL/RCPT/DATA each have smtp_timeout; the whole
        # exchange must also end well inside the delivery's lease, or another worker could
        # take the delivery over while this one is still talking to the server.
        from services.deliveries import LEASE

        try:
            return future.result(timeout=min(config.smtp_timeout * 6 + 5, LEASE.total_seconds() * 0.8))
        except concurrent.futures.TimeoutError:
            future.cancel()
            # The server may have the mail: "timeout" makes the pipeline reconcile first.
            return DeliveryResult.from_error(RetryableDeliveryError("timeout", "the SMTP exchange timed out"))

    def close(self) -> None:
        """Quit every idle connection (benchmarks, tests, shutdown)."""
        if self._loop is None:
            return
        with contextlib.suppress(concurrent.futures.TimeoutError):
            asyncio.run_coroutine_threadsafe(self._close_all(), self._loop).result(timeout=10)

    async def _send(self, config: AdapterEmailConfig, message: EmailMessage) -> DeliveryResult:
        key = _pool_key(config)
        slots = self._slots.setdefault(key, asyncio.Semaphore(self.max_connections))
        async with slots:
            try:
                smtp, sent = await self._checkout(key, config)
            except DeliveryError as error:
                return DeliveryResult.from_error(error)
            try:
                result = await outbound._send_one(smtp, config, message)
            except outbound._ConnectionLost as lost:
                smtp.close()
                return DeliveryResult.from_error(lost.error)
            except BaseException:
                smtp.close()
                raise
            if result.status is DeliveryStatus.DELIVERED and smtp.is_connected \
                    and sent + 1 < self.messages_per_connection:
                self._idle.setdefault(key, []).append((smtp, time.monotonic(), sent + 1))
            else:
                await _quit(smtp)
            return result

    async def _checkout(self, key: tuple[Any, ...], config: AdapterEmailConfig) -> tuple[aiosmtplib.SMTP, int]:
        idle = self._idle.get(key, [])
        while idle:
            smtp, since, sent = idle.pop()
            age = time.monotonic() - since
            if not smtp.is_connected or age > self.idle_seconds:
                await _quit(smtp)
                continue
            if age > self.check_after:
                try:
                    await smtp.noop()
                except (aiosmtplib.SMTPException, OSError, TimeoutError):
                    smtp.close()
                    continue
            return smtp, sent
        smtp = await outbound._connect(config)
        self.connections_opened += 1
        return smtp, 0

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(5.0)
            limit = time.monotonic() - self.idle_seconds
            for key, idle in list(self._idle.items()):
                stale = [entry for entry in idle if entry[1] < limit]
                self._idle[key] = [entry for entry in idle if entry[1] >= limit]
                for smtp, _since, _sent in stale:
                    await _quit(smtp)

    async def _close_all(self) -> None:
        for key, idle in list(self._idle.items()):
            self._idle[key] = []
            for smtp, _since, _sent in idle:
                await _quit(smtp)


async def _quit(smtp: aiosmtplib.SMTP) -> None:
    if not smtp.is_connected:
        smtp.close()
        return
    try:
        await asyncio.wait_for(smtp.quit(), timeout=5)
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        smtp.close()


_pool: SmtpPool | None = None
_pool_lock = threading.Lock()


def smtp_pool() -> SmtpPool:
    """The process's SMTP connection pool."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = SmtpPool()
        return _pool


# --- the Sent folder, for reconciliation ---------------------------------------------------------

_LIST_LINE = re.compile(rb'^\((?P<flags>[^)]*)\) (?P<delimiter>"(?:[^"\\]|\\.)*"|NIL) (?P<name>.+)$')
# Sent folders by name, for servers without SPECIAL-USE (RFC 6154) attributes.
_SENT_NAMES = ("sent", "sent items", "sent messages", "sent mail", "[gmail]/sent mail", "inbox.sent", "gesendet",
               "gesendete elemente", "envoyés", "elementos enviados")


def _imap_client(config: AdapterEmailConfig) -> imaplib.IMAP4:
    host, port = config.imap_host or "", int(config.imap_port or 993)
    timeout = config.smtp_timeout
    if config.imap_security == "tls":
        return imaplib.IMAP4_SSL(host, port, ssl_context=ssl.create_default_context(), timeout=timeout)
    client = imaplib.IMAP4(host, port, timeout=timeout)
    if config.imap_security == "starttls":
        client.starttls(ssl.create_default_context())
    return client


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def sent_folders(client: imaplib.IMAP4) -> list[str]:
    """The mailbox's Sent folders: those flagged \\Sent first, then the usual names."""
    status, lines = client.list()
    if status != "OK":
        return []
    flagged: list[str] = []
    named: list[str] = []
    for line in lines or []:
        if not isinstance(line, bytes):
            continue
        match = _LIST_LINE.match(line)
        if not match:
            continue
        name = match["name"].decode("utf-8", "replace").strip()
        if name.startswith('"') and name.endswith('"'):
            name = name[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        flags = match["flags"].decode("ascii", "replace").lower().split()
        if "\\noselect" in flags:
            continue
        if "\\sent" in flags:
            flagged.append(name)
        elif name.lower() in _SENT_NAMES:
            named.append(name)
    return flagged + [n for n in named if n not in flagged]


def find_sent_copy(config: AdapterEmailConfig, message_id: str) -> bool:
    """Whether a message with this Message-ID is in the mailbox's Sent folder (IMAP SEARCH)."""
    client = _imap_client(config)
    try:
        client.login(config.imap_username or "", config.imap_password or "")
        for folder in sent_folders(client):
            status, _ = client.select(_quote(folder), readonly=True)
            if status != "OK":
                continue
            status, data = client.uid("SEARCH", "HEADER", "Message-ID", _quote(message_id))
            if status == "OK" and data and data[0] and data[0].split():
                return True
        return False
    finally:
        with contextlib.suppress(OSError, imaplib.IMAP4.error):
            client.logout()
