"""Compose campaigns: one new `open` email ticket and one delivery per recipient, sent at the rate of
the email config by the ordinary delivery workers.

Each recipient gets their own ticket, whose first message is the campaign's markdown with that
recipient's `{{fields}}` filled in. The message's Message-ID (`<delivery id@from domain>`) is
stored when the campaign is created, so a reply threads back onto the recipient's own ticket by
In-Reply-To like any other email reply. A recipient listed twice gets one mail; an address that
unsubscribed from the project's campaigns (the List-Unsubscribe link, RFC 8058 one-click, or
the API) gets none; an invalid row is reported (with the `field` at fault) and does not stop the rest.
Internationalised addresses (`josé@exämple.com`, `用户@例子.广告`) are valid recipients.

Deliveries are scheduled at the config's sending rate when the campaign is created (the n-th
one `n / rate` after the config's last scheduled campaign mail), so a large campaign is handed
to the workers a little at a time by the sweeper instead of all at once; the pacing limiter in
the delivery worker still holds the rate when replies and campaigns share a config.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.headerregistry import Address
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from channels.email import addresses
from channels.email.outbound import make_message_id
from core.clock import now
from core.crypto import hmac_sha256_hex
from core.settings import get_settings
from models import Campaign, Delivery, EmailConfig, EmailUnsubscribe, Message, Project, Ticket, User
from services import email_configs
from services.dispatch import after_commit
from services.errors import ConflictError, NotFoundError, ValidationError
from services.replies import MAX_REPLY_LENGTH, ReplayGuard
from services.unread import mark_unread_dirty

MAX_RECIPIENTS = 50_000
MAX_RENDERED_LENGTH = 20_000
MAX_REPORTED_ROWS = 1_000
REPLAY_WINDOW = timedelta(minutes=10)
_CHUNK = 500
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*(?:\|\s*([^{}]*?)\s*)?\}\}")
_BUILTIN_FIELDS = ("email", "name", "distinct_id")
_CSV_COLUMNS = {
    "email": ("email", "e_mail", "email_address", "mail", "recipient_email"),
    "name": ("name", "full_name"),
    "distinct_id": ("distinct_id", "recipient_distinct_id"),
}


@dataclass(frozen=True)
class Recipient:
    """One input row: `row` is its position (1-based; a CSV's spreadsheet row, header = 1)."""

    row: int
    email: Any
    name: Any = None
    distinct_id: Any = None
    fields: Any = field(default_factory=dict)


@dataclass(frozen=True)
class CampaignOutcome:
    campaign: Campaign
    replayed: bool


# --- recipients -------------------------------------------------------------------------------


def recipients_from_json(value: Any) -> list[Recipient]:
    """The `recipients` list of a JSON request. Rows that are not objects are kept (and reported)."""
    if not isinstance(value, list) or not value:
        raise ValidationError("Give at least one recipient.", attr="recipients")
    if len(value) > MAX_RECIPIENTS:
        raise ValidationError(f"A campaign takes at most {MAX_RECIPIENTS} recipients.", attr="recipients")
    rows = []
    for index, item in enumerate(value, start=1):
        if isinstance(item, str):
            rows.append(Recipient(index, item))
        elif isinstance(item, Mapping):
            rows.append(Recipient(index, item.get("email"), item.get("name"), item.get("distinct_id"),
                                  item.get("fields") if item.get("fields") is not None else {}))
        else:
            rows.append(Recipient(index, None, fields=None))
    return rows


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Spreadsheet exports on Windows are often Windows-1252.
        return data.decode("cp1252", errors="replace")


def _column_key(name: str) -> str:
    return re.sub(r"[\s-]+", "_", name.strip().lower())


def recipients_from_csv(data: bytes) -> list[Recipient]:
    """Rows of a CSV with a header: an email column (email, e-mail, email address…), optional
    name and distinct_id; every other column becomes a field for `{{column}}`."""
    text = _decode(data)
    if not text.strip():
        raise ValidationError("The CSV file is empty.", attr="file")
    sample = text[:4096]
    try:
        dialect: Any = csv.Sniffer().sniff(sample, delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text), dialect)
    header = next(reader, None) or []
    keys = [_column_key(h) for h in header]
    roles: dict[str, int] = {}
    for role, names in _CSV_COLUMNS.items():
        for index, key in enumerate(keys):
            if key in names and role not in roles:
                roles[role] = index
    if "email" not in roles:
        raise ValidationError("The CSV needs a header row with an email column.", attr="file")
    extra = [(i, header[i].strip()) for i in range(len(header)) if i not in roles.values() and header[i].strip()]
    rows: list[Recipient] = []
    for number, cells in enumerate(reader, start=2):
        if not any(c.strip() for c in cells):
            continue
        if len(rows) >= MAX_RECIPIENTS:
            raise ValidationError(f"A campaign takes at most {MAX_RECIPIENTS} recipients.", attr="file")

        def cell(index: int | None, cells: list[str] = cells) -> str | None:
            if index is None or index >= len(cells):
                return None
            return cells[index].strip() or None

        rows.append(Recipient(
            number, cell(roles["email"]), cell(roles.get("name")), cell(roles.get("distinct_id")),
            {name: cell(i) or "" for i, name in extra},
        ))
    if not rows:
        raise ValidationError("The CSV has no recipients.", attr="file")
    return rows


# --- the message template ---------------------------------------------------------------------


def placeholders(template: str) -> set[str]:
    return {m.group(1) for m in _PLACEHOLDER.finditer(template or "")}


def render(template: str, values: Mapping[str, Any]) -> str:
    """Fill `{{field}}` (or `{{field | default}}`) from `values`; a missing field renders empty
    or as its default. `fields.x` and `x` name the same field."""

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        key = name[len("fields."):] if name.startswith("fields.") else name
        value = values.get(key)
        if value is None or value == "":
            return match.group(2) or ""
        return str(value)

    return _PLACEHOLDER.sub(fill, template)


def _values(recipient: Recipient, email: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    name = recipient.name if isinstance(recipient.name, str) else None
    values: dict[str, Any] = {str(k): v for k, v in fields.items()}
    values.update({"email": email, "name": name or values.get("name"),
                   "distinct_id": recipient.distinct_id if isinstance(recipient.distinct_id, str) else None})
    first = (name or "").split(" ")[0] if name else None
    values.setdefault("first_name", first)
    return values


def _validate_template(template: str, subject: str, rows: Sequence[Recipient]) -> None:
    known = set(_BUILTIN_FIELDS) | {"first_name"}
    for recipient in rows:
        if isinstance(recipient.fields, Mapping):
            known.update(str(k) for k in recipient.fields)
    for attr, text in (("message", template), ("email_subject", subject)):
        for name in placeholders(text):
            key = name[len("fields."):] if name.startswith("fields.") else name
            if key not in known:
                raise ValidationError(f"No recipient has a field named '{key}' (used as {{{{{name}}}}}).", attr=attr,
                                      code="unknown_field")


# --- unsubscribes -----------------------------------------------------------------------------


def _unsubscribe_key() -> bytes:
    return hashlib.sha256(f"{get_settings().secret_key}:email-unsubscribe".encode()).digest()


def unsubscribe_token(*, project_id: int, email: str, campaign_id: uuid.UUID | None) -> str:
    payload = json.dumps([project_id, email.lower(), campaign_id.hex if campaign_id else None],
                         separators=(",", ":")).encode()
    body = base64.urlsafe_b64encode(payload).decode().rstrip("=")
    return f"{body}.{hmac_sha256_hex(_unsubscribe_key(), body.encode())[:32]}"


def read_unsubscribe_token(token: str) -> tuple[int, str, uuid.UUID | None] | None:
    """(project_id, email, campaign_id) of a token we signed, else None."""
    body, _, signature = (token or "").partition(".")
    if not body or len(signature) != 32:
        return None
    import hmac

    if not hmac.compare_digest(signature, hmac_sha256_hex(_unsubscribe_key(), body.encode())[:32]):
        return None
    try:
        project_id, email, campaign = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        return int(project_id), str(email), uuid.UUID(campaign) if campaign else None
    except (ValueError, TypeError):
        return None


def unsubscribe_url(*, project_id: int, email: str, campaign_id: uuid.UUID | None) -> str:
    """The one-click unsubscribe link a campaign mail carries (List-Unsubscribe)."""
    token = unsubscribe_token(project_id=project_id, email=email, campaign_id=campaign_id)
    return f"{get_settings().public_url}/api/conversations/v1/email/unsubscribe?token={token}"


def add_unsubscribe(*, session: Session, project_id: int, email: Any, source: str = "api",
                    campaign_id: uuid.UUID | None = None) -> EmailUnsubscribe:
    """Record that an address wants no campaign mail from this project (idempotent)."""
    try:
        address = addresses.normalize(email).lower() if isinstance(email, str) else None
    except addresses.InvalidAddressError as exc:
        raise ValidationError(f"Enter a valid email address: {exc.reason}.", attr="email") from None
    if address is None:
        raise ValidationError("Enter a valid email address.", attr="email")
    row = session.get(EmailUnsubscribe, (project_id, address))
    if row is None:
        row = EmailUnsubscribe(project_id=project_id, email=address, source=source, campaign_id=campaign_id,
                               created_at=now())
        session.add(row)
        session.flush()
    return row


def remove_unsubscribe(*, session: Session, project_id: int, email: str) -> None:
    result = session.execute(delete(EmailUnsubscribe).where(
        EmailUnsubscribe.project_id == project_id, EmailUnsubscribe.email == email.strip().lower()))
    if not result.rowcount:  # type: ignore[attr-defined]
        raise NotFoundError("Not found.")


def list_unsubscribes(*, session: Session, project_id: int, limit: int = 100, offset: int = 0) -> tuple[int, list[EmailUnsubscribe]]:
    query = select(EmailUnsubscribe).where(EmailUnsubscribe.project_id == project_id)
    count = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(EmailUnsubscribe.created_at.desc(), EmailUnsubscribe.email)
                           .limit(limit).offset(offset)).all()
    return count, list(rows)


def unsubscribed(*, session: Session, project_id: int, emails: Iterable[str]) -> set[str]:
    """Which of these lower-cased addresses unsubscribed."""
    wanted = list(dict.fromkeys(emails))
    found: set[str] = set()
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start:start + _CHUNK]
        found.update(session.scalars(select(EmailUnsubscribe.email).where(
            EmailUnsubscribe.project_id == project_id, EmailUnsubscribe.email.in_(chunk))))
    return found


# --- creating a campaign ------------------------------------------------------------------------


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _config(*, session: Session, project_id: int, email_config_id: Any) -> EmailConfig:
    try:
        return email_configs.get_config(session=session, project_id=project_id, config_id=email_config_id)
    except NotFoundError:
        raise ValidationError("Unknown email config.", attr="email_config_id", code="invalid_email_config") from None


def _schedule_start(*, session: Session, config: EmailConfig, interval: float) -> datetime:
    """When this config's next campaign mail may go: after the ones already scheduled."""
    moment = now()
    if interval <= 0:
        return moment
    last = session.scalar(
        select(func.max(Delivery.next_attempt_at))
        .join(Ticket, Ticket.id == Delivery.ticket_id)
        .where(Ticket.email_config_id == config.id, Delivery.status == "pending", Delivery.campaign_id.is_not(None))
    )
    if last is None:
        return moment
    if last.tzinfo is None:  # SQLite hands back naive UTC
        from datetime import UTC

        last = last.replace(tzinfo=UTC)
    return max(moment, last + timedelta(seconds=interval))


def create_campaign(
    *,
    session: Session,
    project_id: int,
    author: User,
    email_config_id: Any,
    email_subject: Any,
    message: Any,
    recipients: Sequence[Recipient],
) -> CampaignOutcome:
    """Validate, de-duplicate, drop unsubscribed addresses, then write every ticket, message and
    delivery in this transaction. The caller commits, then calls `replies.release_guards`."""
    config = _config(session=session, project_id=project_id, email_config_id=email_config_id)
    subject = email_subject.strip() if isinstance(email_subject, str) else ""
    if not subject:
        raise ValidationError("An email subject is required.", attr="email_subject", code="missing_subject")
    if len(subject) > 998 or "\n" in subject or "\r" in subject:
        raise ValidationError("The subject must be one line of at most 998 characters.", attr="email_subject")
    if not isinstance(message, str) or not message.strip():
        raise ValidationError("The message may not be empty.", attr="message", code="empty_message")
    if len(message) > MAX_REPLY_LENGTH:
        raise ValidationError(f"Ensure this field has no more than {MAX_REPLY_LENGTH} characters.", attr="message")
    if not recipients:
        raise ValidationError("Give at least one recipient.", attr="recipients")
    if len(recipients) > MAX_RECIPIENTS:
        raise ValidationError(f"A campaign takes at most {MAX_RECIPIENTS} recipients.", attr="recipients")
    _validate_template(message, subject, recipients)

    fingerprint = _fingerprint("campaign", author.id, project_id, str(config.id), subject, message,
                               [(r.email, r.name, r.distinct_id, r.fields) for r in recipients])
    guard = ReplayGuard(fingerprint)
    session.info.setdefault("replay_guards", []).append(guard)
    existing = session.scalar(select(Campaign).where(
        Campaign.project_id == project_id, Campaign.request_fingerprint == fingerprint,
        Campaign.created_at >= now() - REPLAY_WINDOW).limit(1))
    if existing is not None:
        return CampaignOutcome(existing, replayed=True)
    if not guard.held:
        raise ConflictError("An identical campaign is already being created.", code="duplicate_in_flight")

    invalid: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    accepted: list[tuple[Recipient, str, dict[str, Any]]] = []
    seen: set[str] = set()
    for recipient in recipients:
        raw = recipient.email
        shown = raw if isinstance(raw, str) else None
        if recipient.fields is None:
            invalid.append({"row": recipient.row, "email": None, "reason": "not_an_object", "field": None})
            continue
        if not isinstance(raw, str) or not raw.strip():
            invalid.append({"row": recipient.row, "email": shown, "reason": "missing_email", "field": "email"})
            continue
        try:
            # Internationalised addresses are valid (RFC 6531); stored with a Unicode domain.
            address = addresses.normalize(raw)
        except addresses.InvalidAddressError as exc:
            invalid.append({"row": recipient.row, "email": shown, "reason": "invalid_email", "field": "email",
                            "detail": exc.reason})
            continue
        bad_field = next((name for name, ok in (
            ("fields", isinstance(recipient.fields, Mapping)),
            ("name", recipient.name is None or isinstance(recipient.name, str)),
            ("distinct_id", recipient.distinct_id is None or isinstance(recipient.distinct_id, str)),
        ) if not ok), None)
        if bad_field:
            invalid.append({"row": recipient.row, "email": shown, "reason": "invalid_fields", "field": bad_field})
            continue
        key = address.lower()
        if key in seen:
            skipped.append({"row": recipient.row, "email": address, "reason": "duplicate"})
            continue
        seen.add(key)
        accepted.append((recipient, address, dict(recipient.fields)))
    gone = unsubscribed(session=session, project_id=project_id, emails=[a.lower() for _, a, _ in accepted])
    if gone:
        skipped.extend({"row": r.row, "email": a, "reason": "unsubscribed"} for r, a, _ in accepted if a.lower() in gone)
        accepted = [item for item in accepted if item[1].lower() not in gone]

    rendered: list[tuple[Recipient, str, str, str]] = []
    for recipient, address, fields in accepted:
        values = _values(recipient, address, fields)
        body = render(message, values)
        line = re.sub(r"[\r\n]+", " ", render(subject, values)).strip() or subject
        if len(body) > MAX_RENDERED_LENGTH or len(line) > 998:
            invalid.append({"row": recipient.row, "email": address, "reason": "message_too_long", "field": "message"})
            continue
        rendered.append((recipient, address, body, line))

    stamp = now()
    campaign = Campaign(
        id=uuid.uuid4(), project_id=project_id, email_config_id=config.id, created_by_user_id=author.id,
        email_subject=subject, message=message, recipients=len(recipients), queued=len(rendered),
        invalid=sorted(invalid, key=lambda r: r["row"])[:MAX_REPORTED_ROWS],
        skipped=sorted(skipped, key=lambda r: r["row"])[:MAX_REPORTED_ROWS],
        request_fingerprint=fingerprint, created_at=stamp,
    )
    session.add(campaign)
    session.flush()
    if rendered:
        _write_tickets(session=session, campaign=campaign, config=config, author=author, rendered=rendered)
    return CampaignOutcome(campaign, replayed=False)


def _write_tickets(*, session: Session, campaign: Campaign, config: EmailConfig, author: User,
                   rendered: Sequence[tuple[Recipient, str, str, str]]) -> None:
    """Bulk inserts: one ticket number range, then tickets, messages and deliveries in chunks."""
    count = len(rendered)
    last_number = session.execute(
        update(Project).where(Project.id == campaign.project_id)
        .values(ticket_seq=Project.ticket_seq + count).returning(Project.ticket_seq)
    ).scalar_one()
    first_number = int(last_number) - count + 1
    per_minute = email_configs.rate_per_minute(config.send_rate_per_minute)
    interval = 60.0 / per_minute if per_minute else 0.0
    start = _schedule_start(session=session, config=config, interval=interval)
    stamp = now()
    author_name = author.display_name
    due_now: list[uuid.UUID] = []
    for offset in range(0, count, _CHUNK):
        tickets, messages, deliveries = [], [], []
        for index, (recipient, address, body, line) in enumerate(rendered[offset:offset + _CHUNK], start=offset):
            ticket_id, message_id, delivery_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
            due = start + timedelta(seconds=index * interval)
            name = re.sub(r"[\r\n\t]+", " ", recipient.name).strip()[:200] if isinstance(recipient.name, str) \
                and recipient.name.strip() else None
            tickets.append({
                "id": ticket_id, "project_id": campaign.project_id, "ticket_number": first_number + index,
                "channel_source": "email", "channel_detail": None,
                "distinct_id": recipient.distinct_id.strip()[:400] if isinstance(recipient.distinct_id, str)
                and recipient.distinct_id.strip() else None,
                "status": "open", "ai_resolved": False, "created_at": stamp, "updated_at": stamp,
                "message_count": 1, "last_message_at": stamp, "last_message_text": body[:500],
                "unread_team_count": 0, "unread_customer_count": 1, "first_response_at": stamp,
                "customer_name": name, "customer_email": address.lower(), "email_subject": line,
                "email_from": address, "email_to": _mailbox(name, address) if name else address,
                "email_config_id": config.id, "cc_participants": [],
            })
            messages.append({
                "id": message_id, "project_id": campaign.project_id, "ticket_id": ticket_id,
                "message_type": "sent_reply", "author_type": "support", "author_name": author_name,
                "author_user_id": author.id, "is_private": False, "content": body,
                # Stored before sending: the customer's answer threads by In-Reply-To.
                "external_id": make_message_id(str(delivery_id), config.from_email),
                "delivery_status": "pending", "version": 1, "created_at": stamp, "updated_at": stamp,
            })
            deliveries.append({
                "id": delivery_id, "project_id": campaign.project_id, "ticket_id": ticket_id,
                "message_id": message_id, "channel": "email", "status": "pending", "attempts": 0,
                "next_attempt_at": due, "outcome_unknown": False, "campaign_id": campaign.id,
                # The 24 h retry budget counts from when the mail is due, not from when a long
                # campaign was queued.
                "created_at": due, "updated_at": stamp,
            })
            if due <= stamp:
                due_now.append(delivery_id)
        session.execute(insert(Ticket), tickets)
        session.execute(insert(Message), messages)
        session.execute(insert(Delivery), deliveries)
    mark_unread_dirty(session, campaign.project_id)
    # The rest become due later and reach the workers through the sweeper.
    for delivery_id in due_now:
        after_commit(session, "deliver", delivery_id)


def _mailbox(name: str, address: str) -> str:
    """`"Zoë" <zoë@exämple.com>` (formataddr refuses a non-ASCII address: it predates RFC 6532)."""
    local, _, domain = address.rpartition("@")
    return str(Address(display_name=name, username=local, domain=domain))


def reschedule(*, session: Session, config: EmailConfig) -> int:
    """Space the config's waiting campaign mails at its (new) rate, in their order. Mails being
    retried keep their backoff. Returns how many were moved."""
    per_minute = email_configs.rate_per_minute(config.send_rate_per_minute)
    interval = 60.0 / per_minute if per_minute else 0.0
    waiting = list(session.scalars(
        select(Delivery.id).join(Ticket, Ticket.id == Delivery.ticket_id)
        .where(Ticket.email_config_id == config.id, Delivery.status == "pending", Delivery.attempts == 0,
               Delivery.campaign_id.is_not(None))
        .order_by(Delivery.next_attempt_at, Delivery.id)
    ))
    start = now()
    for offset in range(0, len(waiting), _CHUNK):
        rows = []
        for index, delivery_id in enumerate(waiting[offset:offset + _CHUNK], start=offset):
            due = start + timedelta(seconds=index * interval)
            rows.append({"id": delivery_id, "next_attempt_at": due, "created_at": due})
        session.execute(update(Delivery), rows)
    return len(waiting)


def cancel_campaign(*, session: Session, project_id: int, campaign_id: Any) -> int:
    """Withdraw the mails not yet sent: their deliveries become `cancelled` and their tickets are
    deleted (a ticket whose only message never went out has nothing to show). Mails in flight
    finish. Returns how many were withdrawn."""
    campaign = get_campaign(session=session, project_id=project_id, campaign_id=campaign_id)
    stamp = now()
    withdrawn = session.execute(
        update(Delivery).where(Delivery.campaign_id == campaign.id, Delivery.status == "pending")
        .values(status="cancelled", next_attempt_at=None, last_error="campaign cancelled", updated_at=stamp)
        .returning(Delivery.ticket_id, Delivery.message_id)
        .execution_options(synchronize_session=False)
    ).all()
    tickets = [row[0] for row in withdrawn]
    for start in range(0, len(tickets), _CHUNK):
        chunk = tickets[start:start + _CHUNK]
        session.execute(update(Ticket).where(Ticket.id.in_(chunk)).values(deleted_at=stamp)
                        .execution_options(synchronize_session=False))
        session.execute(update(Message).where(Message.id.in_([row[1] for row in withdrawn[start:start + _CHUNK]]))
                        .values(delivery_status=None).execution_options(synchronize_session=False))
    campaign.cancelled_at = campaign.cancelled_at or stamp
    if tickets:
        mark_unread_dirty(session, project_id)
    return len(tickets)


# --- progress ---------------------------------------------------------------------------------


def get_campaign(*, session: Session, project_id: int, campaign_id: Any) -> Campaign:
    try:
        key = campaign_id if isinstance(campaign_id, uuid.UUID) else uuid.UUID(str(campaign_id))
    except ValueError:
        raise NotFoundError("Not found.") from None
    row = session.get(Campaign, key)
    if row is None or row.project_id != project_id:
        raise NotFoundError("Not found.")
    return row


def _customer_replied() -> Any:
    return (
        select(Message.ticket_id)
        .where(Message.author_type == "customer", Message.deleted_at.is_(None))
    )


def counts(*, session: Session, campaign_id: uuid.UUID) -> dict[str, int]:
    """queued (pending or sending), sent, failed, replied (tickets with a customer message)."""
    by_status = dict(session.execute(
        select(Delivery.status, func.count()).where(Delivery.campaign_id == campaign_id).group_by(Delivery.status)
    ).all())
    replied = session.scalar(
        select(func.count(func.distinct(Message.ticket_id)))
        .join(Delivery, Delivery.ticket_id == Message.ticket_id)
        .where(Delivery.campaign_id == campaign_id, Message.author_type == "customer", Message.deleted_at.is_(None))
    ) or 0
    return {
        "queued": int(by_status.get("pending", 0) + by_status.get("sending", 0)),
        "sent": int(by_status.get("sent", 0)),
        "failed": int(by_status.get("failed", 0)),
        "cancelled": int(by_status.get("cancelled", 0)),
        "replied": int(replied),
    }


def campaign_tickets(*, session: Session, campaign_id: uuid.UUID, limit: int, offset: int,
                     delivery_status: str | None = None) -> tuple[int, list[dict[str, Any]]]:
    """The campaign's tickets by number, with their delivery's state and whether they answered."""
    query = (
        select(Ticket.id, Ticket.ticket_number, Ticket.customer_email, Ticket.customer_name, Ticket.status,
               Delivery.status, Delivery.last_error, Delivery.sent_at, Delivery.message_id)
        .join(Delivery, Delivery.ticket_id == Ticket.id)
        .where(Delivery.campaign_id == campaign_id, Ticket.deleted_at.is_(None))
    )
    if delivery_status:
        wanted = ["pending", "sending"] if delivery_status == "queued" else [delivery_status]
        query = query.where(Delivery.status.in_(wanted))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.execute(query.order_by(Ticket.ticket_number).limit(limit).offset(offset)).all()
    answered = set(session.scalars(
        _customer_replied().where(Message.ticket_id.in_([r[0] for r in rows])).distinct()
    )) if rows else set()
    return total, [
        {
            "id": str(ticket_id), "ticket_number": number, "email": email, "name": name, "status": status,
            "message_id": str(message_id), "delivery_status": d_status,
            "delivery_error": error, "sent_at": sent_at, "replied": ticket_id in answered,
        }
        for ticket_id, number, email, name, status, d_status, error, sent_at, message_id in rows
    ]


def list_campaigns(*, session: Session, project_id: int, limit: int, offset: int) -> tuple[int, list[Campaign]]:
    query = select(Campaign).where(Campaign.project_id == project_id)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(Campaign.created_at.desc(), Campaign.id).limit(limit).offset(offset)).all()
    return total, list(rows)


# --- `ticketwire compose --csv FILE ...` ----------------------------------------------------------


def run_compose_cli(
    *,
    csv_path: str,
    project_name: str,
    email_config_id: str,
    subject: str,
    message_file: str,
    user_email: str | None = None,
    wait: bool = True,
    timeout: float = 0.0,
    as_json: bool = False,
    poll_seconds: float = 0.5,
    echo: Callable[[str], None] | None = None,
) -> int:
    """The body of `ticketwire compose`: create a campaign from a CSV, then follow it with a
    progress bar until every mail is sent or failed. Returns the exit code: 0 done, 1 some failed
    or still queued when `timeout` ran out, 2 bad input."""
    import typer

    from core.db import session_scope
    from models import ProjectMember
    from services import accounts, replies
    from services.errors import ServiceError

    say = echo or (lambda text: typer.echo(text))
    try:
        with open(csv_path, "rb") as handle:
            rows = recipients_from_csv(handle.read())
        with open(message_file, encoding="utf-8") as handle:
            template = handle.read()
    except (OSError, ServiceError) as exc:
        say(f"error: {getattr(exc, 'detail', exc)}")
        return 2
    settings = get_settings()
    if settings.redis_url:
        import workers.actors  # noqa: F401  (installs the dispatcher: deliveries go straight to Redis)
    session = None
    try:
        with session_scope() as session:
            project = session.scalar(select(Project).where(Project.name == project_name))
            if project is None:
                say(f"error: no project named {project_name!r}")
                return 2
            if user_email:
                author = session.scalar(select(User).where(func.lower(User.email) == user_email.lower()))
            else:
                author = session.scalar(
                    select(User).join(ProjectMember, ProjectMember.user_id == User.id)
                    .where(ProjectMember.project_id == project.id).order_by(User.id).limit(1))
            if author is None or project.id not in accounts.user_project_ids(session=session, user=author):
                say("error: no team member of this project to send as (use --email)")
                return 2
            outcome = create_campaign(
                session=session, project_id=project.id, author=author, email_config_id=email_config_id,
                email_subject=subject, message=template, recipients=rows,
            )
            campaign_id, project_id = outcome.campaign.id, project.id
            summary: dict[str, Any] = {
                "id": str(campaign_id), "recipients": outcome.campaign.recipients, "queued": outcome.campaign.queued,
                "invalid": list(outcome.campaign.invalid or []), "skipped": list(outcome.campaign.skipped or []),
                "replayed": outcome.replayed,
            }
    except ServiceError as exc:
        say(f"error: {exc.attr + ': ' if exc.attr else ''}{exc.detail}")
        return 2
    finally:
        if session is not None:
            replies.release_guards(session)
    if not as_json:
        say(f"campaign {summary['id']}: {summary['queued']} queued of {summary['recipients']} rows, "
            f"{len(summary['invalid'])} invalid, {len(summary['skipped'])} skipped")
        if summary["replayed"]:
            say("  (the same campaign was already submitted in the last 10 minutes: nothing new was queued)")
        for item in summary["invalid"][:20]:
            say(f"  row {item['row']}: {item['reason']} ({item['email']})")
    progress = {"queued": summary["queued"], "sent": 0, "failed": 0, "replied": 0}
    if wait and summary["queued"]:
        deadline = time.monotonic() + timeout if timeout > 0 else None
        with typer.progressbar(length=summary["queued"], label="Sending", show_pos=True,
                               file=None if not as_json else io.StringIO()) as bar:
            done = 0
            while True:
                with session_scope(read_only=True) as session:
                    progress = counts(session=session, campaign_id=campaign_id)
                finished = progress["sent"] + progress["failed"]
                if finished > done:
                    bar.update(finished - done)
                    done = finished
                if progress["queued"] == 0 or (deadline is not None and time.monotonic() > deadline):
                    break
                time.sleep(poll_seconds)
    summary.update(progress)
    summary["project_id"] = project_id
    if as_json:
        say(json.dumps(summary))
    else:
        say(f"sent {progress['sent']}, failed {progress['failed']}, still queued {progress['queued']}")
    return 1 if progress["failed"] or (wait and progress["queued"]) else 0
