"""Inbound email: store raw mail from every path, thread it onto the right ticket, handle loops.

Three paths (the SMTP listener, the signed HTTP endpoint and its provider variants, IMAP
polling) store the raw message first with `store_email`; the ingest worker then parses it
with the email config's adapter and calls `apply_email`.

Threading, in order (SPEC "Email", issue 5):
1. the Message-ID is already stored → nothing new (the same mail by two paths, a replay);
2. In-Reply-To, then References (newest first), against the Message-IDs of the project's
   email tickets' messages, ours included (outbound stores our Message-ID as the message's
   external id);
3. the ticket token: our reply address `<inbound local part>+t<token>@domain` or `[#123]` in
   the subject;
4. otherwise a new ticket.
Steps 2 and 3 only accept a ticket when the sender is one of its participants (the customer,
the address we reply to, or a Cc participant): a stranger's mail never lands on another
customer's ticket, even when it shares an In-Reply-To with it (a newsletter everyone
answered), and a Cc or Bcc recipient never becomes a ticket's customer.

Automatic mail: auto-replies become a private `system` note on the ticket they thread to
(never a ticket, never answered); a bounce marks the delivery of the message it reports
failed (services.deliveries.fail: the message shows the reason, a note says so, the ticket
reopens); mail from any of the project's own addresses is ignored.
"""

from __future__ import annotations

import hmac
import re
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from email import policy
from email.parser import BytesHeaderParser
from email.utils import getaddresses
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from channels.base import InboundMessage
from channels.base import RawEvent as AdapterEvent
from channels.email import EmailAdapter, parse_email
from channels.email import EmailConfig as AdapterEmailConfig
from channels.email.addresses import transport_form, unicode_domain
from channels.email.listener import ReceivedMail
from channels.email.parse import message_id_of
from channels.errors import ChannelNotConfiguredError
from core.clock import now
from core.crypto import hmac_sha256_hex
from core.db import session_scope
from core.settings import get_settings
from models import Delivery, EmailConfig, Message, Person, PersonDistinctId, RawEvent, Ticket
from services import ai_tickets, deliveries, email_configs, inbound
from services import tickets as ticket_service
from services.attachments import stored_file
from services.ingest import Applied, add_customer_message
from services.persons import upsert_person
from services.replies import add_team_message

CHANNEL = "email"
# Set on the stored raw event (never taken from the mail): which config received it, and how.
CONFIG_HEADER = "x-ticketwire-email-config"
SOURCE_HEADER = "x-ticketwire-source"  # smtp, http, sendgrid, postmark or imap
# How far back a bounce without the original Message-ID may match a delivery by recipient.
BOUNCE_MATCH_WINDOW = timedelta(days=7)
_MAX_THREAD_IDS = 50
_TOKEN = re.compile(r"^(?P<number>\d{1,12})(?:x(?P<mac>[0-9a-f]{10}))?$", re.IGNORECASE)


# -- addresses and configs --------------------------------------------------------------------

def normalize_address(address: str | None) -> str | None:
    """`<Carla+Work@Customer.test>` → `carla+work@customer.test`: how a person is compared
    (a plus part stays: only the mailbox's owner may treat it as the same address). An IDN
    domain compares in Unicode: `jose@xn--exmple-cua.com` is `jose@exämple.com`."""
    if not address:
        return None
    clean = unicode_domain(address.strip().strip("<>").strip().lower())
    local, at, domain = clean.rpartition("@")
    if not at or not local or not domain:
        return None
    return clean


def base_address(address: str | None) -> str | None:
    """`Help+t12x…@Inbound.Acme.test` → `help@inbound.acme.test`: one of our own addresses
    with its reply token removed (the `+` part is ours on our addresses)."""
    clean = normalize_address(address)
    if clean is None:
        return None
    local, _, domain = clean.rpartition("@")
    return f"{local.partition('+')[0]}@{domain}"


def config_for_recipient(*, session: Session, address: str) -> EmailConfig | None:
    """The email config whose inbound address receives `address` (plus-addresses included)."""
    base = base_address(address)
    if base is None:
        return None
    # Inbound addresses are stored in ASCII: an IDN domain in its `xn--` form.
    return email_configs.find_by_inbound_address(session=session, address=transport_form(base)[0])


def own_addresses(configs: Iterable[EmailConfig]) -> set[str]:
    """Every sending and inbound address of these configs, lower-cased."""
    found: set[str] = set()
    for config in configs:
        for address in (config.from_email, config.inbound_address):
            base = base_address(address)
            if base:
                found.add(base)
    return found


def adapter_for_config(config: EmailConfig) -> EmailAdapter:
    settings = email_configs.adapter_config(config)
    if not isinstance(settings, AdapterEmailConfig):
        settings = AdapterEmailConfig.from_settings(dict(settings))
    return EmailAdapter(settings)


def _recipients_of(raw: bytes) -> list[str]:
    """Envelope-ish recipients of stored mail: Delivered-To / X-Original-To, then To and Cc."""
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    try:
        headers = BytesHeaderParser(policy=policy.compat32).parsebytes(head + b"\n\n")
    except Exception:  # noqa: BLE001 - hostile headers: fall back to the project's first config
        return []
    values: list[str] = []
    for name in ("delivered-to", "x-original-to", "envelope-to", "to", "cc"):
        values.extend(str(v) for v in headers.get_all(name) or [])
    return [address for _, address in getaddresses(values) if "@" in address]


def resolve_config(
    *, session: Session, project_id: int, event: AdapterEvent, configs: Sequence[EmailConfig] | None = None
) -> EmailConfig | None:
    """The config a stored mail belongs to: recorded at storage, else by recipient, else the
    project's oldest config (mail replayed from before configs were recorded)."""
    if configs is None:
        configs = email_configs.configs_for_project(session=session, project_id=project_id)
    if not configs:
        return None
    recorded = (event.headers or {}).get(CONFIG_HEADER)
    for config in configs:
        if recorded and str(config.id) == str(recorded):
            return config
    by_address = {base_address(c.inbound_address): c for c in configs}
    for address in _recipients_of(event.body):
        config = by_address.get(base_address(address))
        if config is not None:
            return config
    return sorted(configs, key=lambda c: (c.created_at, str(c.id)))[0]


def adapter_for_event(*, project_id: int, event: AdapterEvent) -> EmailAdapter:
    """The adapter of the config that received this stored mail (the ingest worker's)."""
    with session_scope(read_only=True) as session:
        config = resolve_config(session=session, project_id=project_id, event=event)
        if config is None:
            raise ChannelNotConfiguredError(f"project {project_id} has no email config")
        return adapter_for_config(config)


# -- storing raw mail (every path) ------------------------------------------------------------

def store_email(
    *, session: Session, project_id: int, raw: bytes, config_id: uuid.UUID | None, source: str
) -> inbound.Stored:
    """Store raw RFC 822 mail as the project's raw event (event id = Message-ID, synthesised
    from a content hash when absent); the ingest worker is dispatched after commit."""
    event_id, _synthesized = message_id_of(raw)
    stored = inbound.store_raw_event(
        session=session, project_id=project_id, channel=CHANNEL, event_id=event_id, body=raw, headers={}
    )
    if stored.created:
        marks = {SOURCE_HEADER: source}
        if config_id is not None:
            marks[CONFIG_HEADER] = str(config_id)
        session.execute(update(RawEvent).where(RawEvent.id == stored.id).values(headers=marks))
    return stored


def quarantine_email(
    *, session: Session, project_id: int, config_id: uuid.UUID, event_id: str, raw: bytes, source: str, error: str
) -> inbound.Stored:
    """Record mail that cannot be taken in (unreadable, oversized) as a failed raw event: kept
    for the operator (GET …/inbound_events?status=failed), replayable, blocking nothing."""
    stored = inbound.store_raw_event(
        session=session, project_id=project_id, channel=CHANNEL, event_id=event_id, body=raw, headers={}
    )
    if stored.created:
        session.execute(
            update(RawEvent).where(RawEvent.id == stored.id)
            .values(headers={SOURCE_HEADER: source, CONFIG_HEADER: str(config_id)})
        )
        inbound.finish_raw_event(session=session, raw_event_id=stored.id, status="failed", error=error)
    return stored


class SmtpMailbox:
    """The SMTP listener's mailbox (channels.email.listener.Mailbox) over the database.

    Recipient look-ups are cached for `ttl` seconds (a burst to one address costs one query;
    a new, changed or deleted config applies within that time)."""

    def __init__(self, *, ttl: float = 5.0) -> None:
        self.ttl = ttl
        self._known: dict[str, tuple[float, tuple[uuid.UUID, int] | None]] = {}
        self._lock = threading.Lock()

    def _lookup(self, address: str) -> tuple[uuid.UUID, int] | None:
        """(config id, project id) receiving `address`, or None."""
        base = base_address(address)
        if base is None:
            return None
        with self._lock:
            hit = self._known.get(base)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        with session_scope(read_only=True) as session:
            config = config_for_recipient(session=session, address=base)
            found = (config.id, config.project_id) if config is not None else None
        with self._lock:
            if len(self._known) > 10_000:  # a dictionary attack on RCPT must not grow memory
                self._known.clear()
            self._known[base] = (time.monotonic() + self.ttl, found)
        return found

    def accepts(self, address: str) -> bool:
        return self._lookup(address) is not None

    def store(self, mail: ReceivedMail) -> None:
        """One transaction for every recipient: a failure stores none and the sender retries."""
        targets = [(rcpt, self._lookup(rcpt)) for rcpt in mail.rcpt_tos]
        with session_scope() as session:
            for rcpt, found in targets:
                if found is None:  # removed between RCPT and DATA: the others still count
                    continue
                config_id, project_id = found
                store_email(session=session, project_id=project_id, raw=mail.for_recipient(rcpt),
                            config_id=config_id, source="smtp")


# -- reply tokens ---------------------------------------------------------------------------

def _token_mac(project_id: int, ticket_number: int) -> str:
    message = f"email-reply-token:{project_id}:{ticket_number}".encode()
    return hmac_sha256_hex(get_settings().secret_key, message)[:10]


def reply_token(*, project_id: int, ticket_number: int) -> str:
    """The per-ticket token of our reply address: `<ticket number>x<10 hex of an HMAC>`."""
    return f"{ticket_number}x{_token_mac(project_id, ticket_number)}"


def reply_address(*, inbound_address: str, project_id: int, ticket_number: int) -> str:
    """`support+t<token>@inbound.example.com`, for the Reply-To of our mail when the inbound
    address receives mail directly: a reply that lost its headers still finds its ticket."""
    local, _, domain = inbound_address.partition("@")
    token = reply_token(project_id=project_id, ticket_number=ticket_number)
    return f"{local.partition('+')[0]}+t{token}@{domain}"


def ticket_for_token(*, session: Session, project_id: int, token: str, source: str | None) -> Ticket | None:
    """The ticket a token names: a `[#123]` subject tag, or an address token whose HMAC checks
    out (a bare number in an address counts like a subject tag). The sender is checked later."""
    match = _TOKEN.match(token.strip())
    if match is None:
        return None
    number = int(match["number"])
    mac = match["mac"]
    if source == "address" and mac is not None and not hmac.compare_digest(
        mac.lower(), _token_mac(project_id, number)
    ):
        return None
    return session.scalar(
        select(Ticket).where(
            Ticket.project_id == project_id, Ticket.ticket_number == number, Ticket.channel_source == CHANNEL,
            Ticket.deleted_at.is_(None),
        )
    )


# -- threading --------------------------------------------------------------------------------

def participants(ticket: Ticket) -> set[str]:
    """Who may add mail to a ticket: its customer, the address we reply to, its Cc participants."""
    found = {ticket.customer_email, ticket.email_from}
    found.update(address for _, address in getaddresses([ticket.email_to or ""]))
    found.update(str(a) for a in (ticket.cc_participants or []))
    return {n for n in (normalize_address(a) for a in found if a) if n}


def _thread_ids(metadata: Mapping[str, Any]) -> list[str]:
    ids: list[str] = []
    if metadata.get("in_reply_to"):
        ids.append(metadata["in_reply_to"])
    ids.extend(reversed(list(metadata.get("references") or [])[-_MAX_THREAD_IDS:]))
    return list(dict.fromkeys(i for i in ids if i))


def tickets_by_message_ids(*, session: Session, project_id: int, ids: Sequence[str]) -> dict[str, Ticket]:
    """Message-ID → the email ticket holding it (inbound messages and our own sent replies)."""
    if not ids:
        return {}
    found: dict[str, Ticket] = {}
    rows = session.execute(
        select(Message.external_id, Ticket)
        .join(Ticket, Ticket.id == Message.ticket_id)
        .where(Message.project_id == project_id, Message.external_id.in_(list(ids)),
               Ticket.channel_source == CHANNEL, Ticket.deleted_at.is_(None))
    ).all()
    for external_id, ticket in rows:
        found.setdefault(external_id, ticket)
    missing = [i for i in ids if i not in found]
    if missing:  # a sent reply whose Message-ID is only on its delivery
        rows = session.execute(
            select(Delivery.external_id, Ticket)
            .join(Ticket, Ticket.id == Delivery.ticket_id)
            .where(Delivery.project_id == project_id, Delivery.external_id.in_(missing),
                   Ticket.channel_source == CHANNEL, Ticket.deleted_at.is_(None))
        ).all()
        for external_id, ticket in rows:
            found.setdefault(external_id, ticket)
    return found


@dataclass(frozen=True)
class ThreadMatch:
    ticket: Ticket | None
    # "in_reply_to" | "references" | "address_token" | "subject_tag" | None (new ticket)
    matched_by: str | None
    # Tickets the mail pointed at whose participants do not include the sender.
    refused: tuple[uuid.UUID, ...] = ()


def find_thread(*, session: Session, project_id: int, message: InboundMessage) -> ThreadMatch:
    """The ticket an inbound mail belongs to, or none (see the module docstring for the order)."""
    metadata = message.metadata
    sender = normalize_address(message.author.email)
    refused: list[uuid.UUID] = []
    ids = _thread_ids(metadata)
    by_id = tickets_by_message_ids(session=session, project_id=project_id, ids=ids)
    for position, message_id in enumerate(ids):
        ticket = by_id.get(message_id)
        if ticket is None:
            continue
        if sender and sender in participants(ticket):
            matched = "in_reply_to" if position == 0 and message_id == metadata.get("in_reply_to") else "references"
            return ThreadMatch(ticket, matched, tuple(refused))
        if ticket.id not in refused:
            refused.append(ticket.id)
    token = metadata.get("ticket_token")
    if token:
        source = metadata.get("ticket_token_source")
        ticket = ticket_for_token(session=session, project_id=project_id, token=str(token), source=source)
        if ticket is not None:
            if sender and sender in participants(ticket):
                return ThreadMatch(ticket, "address_token" if source == "address" else "subject_tag", tuple(refused))
            if ticket.id not in refused:
                refused.append(ticket.id)
    return ThreadMatch(None, None, tuple(refused))


# -- applying parsed mail ---------------------------------------------------------------------

def _message_exists(*, session: Session, project_id: int, external_id: str) -> bool:
    return session.scalar(
        select(Message.id).where(Message.project_id == project_id, Message.external_id == external_id).limit(1)
    ) is not None


def apply_email(
    *,
    session: Session,
    project_id: int,
    event: AdapterEvent,
    messages: list[InboundMessage],
    wait_for_thread: bool = False,
) -> Applied:
    """Apply parsed mail (the ingest worker, channel "email"); `changed` counts mails that
    created or changed something.

    With `wait_for_thread`, a mail that answers a Message-ID still waiting in the raw event
    queue (a customer's quick second mail overtaking the first) is counted as an orphan
    instead of opening a ticket of its own, so the worker retries it shortly; without it
    (the last attempt) an unmatched mail always opens a ticket, so nothing is ever dropped."""
    changed = waiting = 0
    for message in messages:
        outcome = _apply_one(session=session, project_id=project_id, event=event, message=message,
                             wait_for_thread=wait_for_thread)
        changed += outcome == "changed"
        waiting += outcome == "wait"
    session.flush()
    return Applied(changed, waiting)


def _thread_in_flight(*, session: Session, project_id: int, message: InboundMessage, event_id: str) -> bool:
    ids = [i[:500] for i in _thread_ids(message.metadata) if i != event_id]
    if not ids:
        return False
    return session.scalar(
        select(RawEvent.id).where(
            RawEvent.project_id == project_id, RawEvent.channel == CHANNEL, RawEvent.event_id.in_(ids),
            RawEvent.status.in_(("pending", "processing")),
        ).limit(1)
    ) is not None


def _apply_one(
    *, session: Session, project_id: int, event: AdapterEvent, message: InboundMessage, wait_for_thread: bool
) -> str:
    """"changed", "unchanged" or "wait" (see apply_email)."""
    metadata = message.metadata
    configs = email_configs.configs_for_project(session=session, project_id=project_id)
    own = base_address(message.author.email)
    if own and own in own_addresses(configs):
        return "unchanged"  # our own mail coming back (another config's Bcc, an auto-forward)
    if _message_exists(session=session, project_id=project_id, external_id=message.external_id):
        return "unchanged"  # the same mail by another path (SMTP and IMAP), or a resent copy of ours
    bounce = metadata.get("bounce")
    if bounce:
        return _outcome(_apply_bounce(session=session, project_id=project_id, message=message, bounce=bounce))
    if metadata.get("is_auto_reply"):
        return _outcome(_apply_auto_reply(session=session, project_id=project_id, message=message))
    config = resolve_config(session=session, project_id=project_id, event=event, configs=configs)
    match = find_thread(session=session, project_id=project_id, message=message)
    ticket = match.ticket
    if ticket is None:
        if wait_for_thread and _thread_in_flight(session=session, project_id=project_id, message=message,
                                                 event_id=event.event_id):
            return "wait"
        ticket = _open_ticket(session=session, project_id=project_id, message=message, config=config)
    else:
        _merge_participants(ticket=ticket, message=message, own=own_addresses(configs))
        if not ticket.email_subject and message.subject:
            ticket.email_subject = message.subject[:998]
    stored = add_customer_message(
        session=session, ticket=ticket, content=message.text,
        author_name=message.author.name or normalize_address(message.author.email),
        external_id=message.external_id, rich_content=_rich_content(message, match),
        author_external_id=message.author.external_id,
    )
    stored.attachments = _attachment_list(message, ticket=ticket, stored=stored) or None
    # The ingest hook every channel calls: triage / auto-answer a new ticket, settle an AI answer.
    ai_tickets.on_customer_message(session=session, ticket=ticket, message=stored, new_ticket=match.ticket is None)
    lost = structure_warnings(metadata)
    if lost:
        add_team_message(
            session=session, ticket=ticket, author=None, is_private=True, author_type="system",
            content=(
                "This email could not be read completely (" + "; ".join(lost) + "). The text shown is the "
                "best that could be recovered; the original message is kept and can be downloaded with "
                f"GET tickets/{ticket.id}/messages/{stored.id}/full_email."
            ),
        )
    return "changed"


def _outcome(changed: int) -> str:
    return "changed" if changed else "unchanged"


def structure_warnings(metadata: Mapping[str, Any]) -> list[str]:
    """Parse repairs that may have lost structure (charset guesses alone lose nothing visible)."""
    warnings = [str(w) for w in metadata.get("parse_warnings") or []]
    lost = [w for w in warnings if "charset" not in w.lower() or "header" in w.lower()]
    if not metadata.get("headers_ok", True) and not lost:
        lost = ["the headers were damaged"]
    return lost


def _rich_content(message: InboundMessage, match: ThreadMatch) -> dict[str, Any]:
    metadata = message.metadata
    content = dict(message.rich_content or {})
    content["email"] = {
        "message_id": metadata.get("message_id"),
        "message_id_synthesized": bool(metadata.get("message_id_synthesized")),
        "subject": message.subject,
        "date": message.sent_at.isoformat() if message.sent_at else None,
        "to": list(metadata.get("to") or []),
        "cc": list(metadata.get("cc") or []),
        "threaded_by": match.matched_by,
        "parse_warnings": list(metadata.get("parse_warnings") or []),
    }
    return content


def _attachment_list(message: InboundMessage, *, ticket: Ticket, stored: Message) -> list[dict[str, Any]]:
    """What the message lists; the bytes stay in the stored raw mail (one copy, in the
    database, on every machine) and are served by GET …/attachments/{index}."""
    base = f"/api/projects/{ticket.project_id}/conversations/tickets/{ticket.id}/messages/{stored.id}"
    listed: list[dict[str, Any]] = []
    for index, attachment in enumerate(message.attachments):
        size = attachment.size if attachment.size is not None else len(attachment.content or b"")
        listed.append({
            "index": index,
            "filename": attachment.filename,
            "content_type": attachment.content_type,
            "size": size,
            "content_id": attachment.content_id,
            "inline": bool(attachment.content_id),
            "url": f"{base}/attachments/{index}",
        })
    for skipped in message.metadata.get("skipped_attachments") or []:
        listed.append({**{k: v for k, v in dict(skipped).items() if k != "content"}, "skipped": True})
    return listed


def _customer_distinct_id(*, session: Session, project_id: int, email: str | None, name: str | None) -> str | None:
    """The person behind an address: an existing person with that email keeps their distinct
    id (a widget user writing by mail is one person); otherwise the address is the id."""
    if not email:
        return None
    existing = session.scalar(
        select(PersonDistinctId.distinct_id)
        .join(Person, Person.id == PersonDistinctId.person_id)
        .where(Person.project_id == project_id, Person.email == email)
        .order_by(PersonDistinctId.distinct_id)
        .limit(1)
    )
    if existing:
        return existing
    upsert_person(session=session, project_id=project_id, distinct_id=email, name=name, email=email)
    return email


def _open_ticket(*, session: Session, project_id: int, message: InboundMessage, config: EmailConfig | None) -> Ticket:
    sender = normalize_address(message.author.email)
    fields = dict(message.ticket_fields)
    distinct_id = _customer_distinct_id(session=session, project_id=project_id, email=sender, name=message.author.name)
    return ticket_service.create_ticket(
        session=session, project_id=project_id, channel_source=CHANNEL, channel_detail=None,
        thread_key=message.external_id[:500], distinct_id=distinct_id,
        customer_name=(message.author.name or "")[:300] or None, customer_email=sender,
        email_subject=(message.subject or "")[:998] or None,
        email_from=sender, email_to=(fields.get("email_to") or sender or None),
        cc_participants=list(fields.get("cc_participants") or []),
        email_config_id=config.id if config is not None else None,
    )


def _merge_participants(*, ticket: Ticket, message: InboundMessage, own: set[str]) -> None:
    """Cc'd people of a later mail join the conversation (never as its customer)."""
    customer = {normalize_address(ticket.customer_email), normalize_address(ticket.email_from)}
    current = list(ticket.cc_participants or [])
    seen = {normalize_address(a) for a in current}
    sender = normalize_address(message.author.email)
    for address in message.metadata.get("cc") or []:
        key = normalize_address(address)
        if not key or key in seen or base_address(key) in own or key in customer or key == sender:
            continue
        current.append(address)
        seen.add(key)
    if current != list(ticket.cc_participants or []):
        ticket.cc_participants = current


def _apply_auto_reply(*, session: Session, project_id: int, message: InboundMessage) -> int:
    """An out-of-office or other automatic reply: a system note, never a ticket, never answered."""
    match = find_thread(session=session, project_id=project_id, message=message)
    if match.ticket is None:
        return 0  # automatic mail about nothing we track: kept as an ignored raw event only
    reason = message.metadata.get("auto_reply_reason") or "automatic reply"
    who = message.author.name or normalize_address(message.author.email) or "unknown sender"
    text = (message.text or "").strip()
    note = add_team_message(
        session=session, ticket=match.ticket, author=None, is_private=True, author_type="system",
        content=f"Automatic reply from {who} ({reason}); not answered." + (f"\n\n{text}" if text else ""),
        rich_content=_rich_content(message, match),
    )
    note.external_id = message.external_id
    return 1


def _delivery_for_message_id(*, session: Session, project_id: int, message_id: str) -> Delivery | None:
    delivery = session.scalar(
        select(Delivery).where(Delivery.project_id == project_id, Delivery.external_id == message_id).limit(1)
    )
    if delivery is not None:
        return delivery
    return session.scalar(
        select(Delivery).join(Message, Message.id == Delivery.message_id)
        .where(Message.project_id == project_id, Message.external_id == message_id).limit(1)
    )


def _recent_delivery_to(*, session: Session, project_id: int, recipient: str) -> Delivery | None:
    """A bounce that does not quote our Message-ID (some DSNs drop the original headers):
    the latest email delivery to that recipient sent within BOUNCE_MATCH_WINDOW."""
    return session.scalar(
        select(Delivery).join(Ticket, Ticket.id == Delivery.ticket_id)
        .where(Delivery.project_id == project_id, Delivery.channel == CHANNEL, Delivery.status == "sent",
               Delivery.sent_at >= now() - BOUNCE_MATCH_WINDOW, Ticket.customer_email == recipient)
        .order_by(Delivery.sent_at.desc()).limit(1)
    )


def bounce_reason(bounce: Mapping[str, Any]) -> str:
    status = bounce.get("status")
    detail = (bounce.get("diagnostic") or bounce.get("action") or "").strip()
    recipient = bounce.get("recipient") or bounce.get("original_recipient")
    head = "the recipient's mail server returned the message"
    if recipient:
        head += f" for {recipient}"
    if status:
        head += f" ({status}{', temporary' if bounce.get('permanent') is False else ''})"
    return (f"{head}: {detail}" if detail else head)[:1000]


def _apply_bounce(*, session: Session, project_id: int, message: InboundMessage, bounce: Mapping[str, Any]) -> int:
    """A delivery status notification: the reported delivery fails with the server's reason."""
    original = bounce.get("original_message_id")
    delivery = _delivery_for_message_id(session=session, project_id=project_id, message_id=original) if original else None
    if delivery is None and not original:
        # Original-Recipient is the address we sent to; Final-Recipient may be an alias of it.
        for candidate in (bounce.get("original_recipient"), bounce.get("recipient")):
            recipient = normalize_address(candidate)
            if recipient and delivery is None:
                delivery = _recent_delivery_to(session=session, project_id=project_id, recipient=recipient)
    if delivery is None:
        return 0  # a bounce of mail we did not send (or long gone): kept as an ignored raw event
    if delivery.status == "failed":
        return 0
    failed_message = session.get_one(Message, delivery.message_id)
    deliveries.fail(session=session, delivery=delivery, message=failed_message, reason=bounce_reason(bounce))
    delivery.last_error_code = "bounced"
    delivery.last_error = bounce_reason(bounce)
    return 1


# -- reading the original back ----------------------------------------------------------------

def raw_email_for(*, session: Session, ticket: Ticket, message_id: uuid.UUID) -> bytes | None:
    """The stored original of an inbound email message, byte for byte, or None."""
    message = session.get(Message, message_id)
    if message is None or message.ticket_id != ticket.id or message.deleted_at is not None or not message.external_id:
        return None
    body = session.scalar(
        select(RawEvent.body).where(
            RawEvent.project_id == ticket.project_id, RawEvent.channel == CHANNEL,
            RawEvent.event_id == message.external_id[:500],
        )
    )
    return bytes(body) if body is not None else None


@dataclass(frozen=True)
class AttachmentFile:
    filename: str
    content_type: str
    content: bytes


def attachment_for(*, session: Session, ticket: Ticket, message_id: uuid.UUID, index: int) -> AttachmentFile | None:
    """Attachment `index` of a message: a file the team attached (services.attachments), else
    one of an inbound email, re-read from the stored original."""
    message = session.get(Message, message_id)
    if message is None or message.ticket_id != ticket.id or message.deleted_at is not None:
        return None
    uploaded = stored_file(session=session, message_id=message_id, index=index)
    if uploaded is not None:
        return AttachmentFile(uploaded.filename, uploaded.content_type, uploaded.content)
    raw = raw_email_for(session=session, ticket=ticket, message_id=message_id)
    if raw is None:
        return None
    attachments = parse_email(raw).attachments
    if not 0 <= index < len(attachments) or attachments[index].content is None:
        return None
    found = attachments[index]
    return AttachmentFile(found.filename, found.content_type or "application/octet-stream", found.content or b"")
