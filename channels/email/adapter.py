"""The email channel: config, the adapter tying parse/quotes/loops/outbound, provider webhooks.

Inbound mail arrives three ways (SMTP listener, signed HTTP endpoint, IMAP polling); each hands
the raw RFC 822 bytes to the same `parse`. Threading by In-Reply-To / References / ticket token
needs the database, so it lives in services; `parse` puts what it needs in `metadata`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import getaddresses
from typing import Any

from channels.base import (
    Attachment,
    Author,
    DeliveryResult,
    InboundMessage,
    KeyValueCache,
    MemoryCache,
    OutboundReply,
    RawEvent,
    RawRequest,
    RawResponse,
)
from channels.email import outbound, signature
from channels.email.addresses import unicode_domain
from channels.email.loops import OWN_MESSAGE_HEADER
from channels.email.parse import ParsedEmail, decode_bytes, message_id_of, normalize_message_id, parse_email
from channels.errors import DeliveryError, MalformedPayloadError, PermanentDeliveryError

SMTP_SECURITY = ("starttls", "tls", "none")
_DEFAULT_PORTS = {"starttls": 587, "tls": 465, "none": 25}
_IMAP_DEFAULT_PORTS = {"tls": 993, "starttls": 143, "none": 143}


@dataclass(frozen=True)
class EmailConfig:
    """A project's email config (`.../conversations/email_configs`)."""

    from_email: str
    from_name: str | None = None
    smtp_host: str = "localhost"
    smtp_port: int = 587
    smtp_security: str = "starttls"
    smtp_username: str | None = None
    smtp_password: str | None = None
    inbound_secret: str = ""
    inbound_address: str | None = None
    imap_host: str | None = None
    imap_port: int | None = None
    imap_security: str | None = None
    imap_username: str | None = None
    imap_password: str | None = None
    imap_folder: str = "INBOX"
    smtp_timeout: float = 30.0

    def __post_init__(self) -> None:
        if self.smtp_security not in SMTP_SECURITY:
            raise ValueError(f"smtp_security must be one of {', '.join(SMTP_SECURITY)}")
        if self.imap_security is not None and self.imap_security not in SMTP_SECURITY:
            raise ValueError(f"imap_security must be one of {', '.join(SMTP_SECURITY)}")
        if "@" not in self.from_email:
            raise ValueError("from_email must be an email address")

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> EmailConfig:
        """Build from stored settings; unknown keys are ignored, ports default by security."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in settings.items() if k in known and v is not None}
        security = str(values.get("smtp_security") or "starttls").lower()
        values["smtp_security"] = security
        values["smtp_port"] = int(values.get("smtp_port") or _DEFAULT_PORTS.get(security, 587))
        if values.get("imap_host"):
            imap_security = str(values.get("imap_security") or "tls").lower()
            values["imap_security"] = imap_security
            values["imap_port"] = int(values.get("imap_port") or _IMAP_DEFAULT_PORTS.get(imap_security, 993))
        if "smtp_timeout" in values:
            values["smtp_timeout"] = float(values["smtp_timeout"])
        return cls(**values)

    @property
    def own_addresses(self) -> frozenset[str]:
        """Our sending and inbound addresses (lower-cased), never a customer or a Cc."""
        return frozenset(a.lower() for a in (self.from_email, self.inbound_address) if a)


_PLUS_TOKEN = re.compile(r"^(?P<base>[^@+]+)\+t(?P<token>[A-Za-z0-9_-]+)@(?P<domain>.+)$", re.IGNORECASE)
_SUBJECT_TAG = re.compile(r"\[#(\d{1,12})\]")


def ticket_token(parsed: ParsedEmail, inbound_address: str | None = None) -> tuple[str | None, str | None]:
    """The ticket token a reply carries: `support+t<token>@…` in a recipient, else `[#123]`.

    Returns (token, "address" | "subject") or (None, None). With an inbound address configured,
    only plus-addresses of that mailbox count. The service trusts it only when the sender is
    the ticket's customer.
    """
    candidates = [*parsed.to, *parsed.cc]
    for name in ("delivered-to", "x-original-to", "envelope-to"):
        candidates.extend(parsed.headers.get(name, []))
    wanted = None
    if inbound_address and "@" in inbound_address:
        # Compared with IDN domains in Unicode, as parse_email reports recipients.
        local, _, domain = unicode_domain(inbound_address.lower()).partition("@")
        wanted = (local.partition("+")[0], domain)
    for candidate in candidates:
        address = candidate.strip().strip("<>")
        match = _PLUS_TOKEN.match(address)
        if not match:
            continue
        if wanted and (match["base"].lower(), match["domain"].lower()) != wanted:
            continue
        return match["token"], "address"
    tag = _SUBJECT_TAG.search(parsed.subject or "")
    if tag:
        return tag.group(1), "subject"
    return None, None


class EmailAdapter:
    """The email channel adapter for one project."""

    name = "email"

    def __init__(
        self,
        config: EmailConfig,
        *,
        cache: KeyValueCache | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.config = config
        self.cache = cache or MemoryCache()
        self.clock = clock  # no timestamps in the email scheme; kept for the shared constructor

    # --- inbound ---------------------------------------------------------------------------

    def verify(self, request: RawRequest) -> None:
        signature.verify(request.body, request.header(signature.SIGNATURE_HEADER), self.config.inbound_secret)

    def handshake(self, request: RawRequest) -> RawResponse | None:
        return None

    def event_id(self, request: RawRequest) -> str:
        if not request.body.strip():
            raise MalformedPayloadError("empty message")
        return message_id_of(request.body)[0]

    def parse(self, event: RawEvent) -> list[InboundMessage]:
        if not event.body.strip():
            raise MalformedPayloadError("empty message")
        parsed = parse_email(event.body)
        if self._is_own_message(parsed):
            return []  # our own reply coming back (Bcc, auto-forward): answering it would loop
        return [self.to_inbound(parsed)]

    def _is_own_message(self, parsed: ParsedEmail) -> bool:
        own = self.config.own_addresses
        if parsed.from_email and parsed.from_email.lower() in own:
            return True
        our_domain = self.config.from_email.rpartition("@")[2].lower()
        for marker in parsed.headers.get(OWN_MESSAGE_HEADER.lower(), []):
            marker_id = normalize_message_id(marker) or ""
            if marker_id.rstrip(">").rpartition("@")[2].lower() == our_domain:
                return True
        return False

    def to_inbound(self, parsed: ParsedEmail) -> InboundMessage:
        """The normalised message of a parsed email (also used by the SMTP and IMAP paths)."""
        email = parsed.from_email
        author = Author(
            external_id=email.lower() if email else None,
            name=parsed.from_name,
            email=email,
            distinct_id=email.lower() if email else None,
        )
        token, token_source = ticket_token(parsed, self.config.inbound_address)
        own = self.config.own_addresses
        cc_participants = [
            a for a in parsed.cc if a.lower() not in own and a.lower() != (email or "").lower()
        ]
        metadata: dict[str, Any] = {
            "message_id": parsed.message_id,
            "message_id_synthesized": parsed.message_id_synthesized,
            "in_reply_to": parsed.in_reply_to,
            "references": list(parsed.references),
            "to": list(parsed.to),
            "cc": list(parsed.cc),
            "reply_to": parsed.reply_to,
            "ticket_token": token,
            "ticket_token_source": token_source,
            "is_auto_reply": parsed.is_auto_reply,
            "auto_reply_reason": parsed.auto_reply_reason,
            "bounce": dict(parsed.bounce) if parsed.bounce else None,
            "parse_warnings": list(parsed.parse_warnings),
            "headers_ok": parsed.headers_ok,
            "skipped_attachments": [dict(s) for s in parsed.skipped_attachments],
        }
        return InboundMessage(
            channel=self.name,
            channel_detail=None,
            external_id=parsed.message_id,
            thread_key=parsed.message_id,
            author=author,
            text=parsed.display_text or parsed.text,
            rich_content={"full_text": parsed.text, "html_available": parsed.html is not None},
            attachments=tuple(parsed.attachments),
            sent_at=parsed.date,
            creates_ticket=True,
            subject=parsed.subject or None,
            ticket_fields={
                "email_to": parsed.reply_to or email,
                "email_subject": parsed.subject,
                "cc_participants": cc_participants,
            },
            metadata=metadata,
        )

    # --- outbound --------------------------------------------------------------------------

    def build_reply(self, reply: OutboundReply) -> EmailMessage:
        """The MIME message for a reply; `reply.thread` holds email_to, email_subject,
        email_message_id, in_reply_to, references and cc_participants (reply_to optional)."""
        thread = reply.thread
        message_id = normalize_message_id(thread.get("email_message_id")) or outbound.make_message_id(
            reply.delivery_id, self.config.from_email
        )
        own = self.config.own_addresses
        cc = [a for a in outbound._address_list(thread.get("cc_participants")) if a.lower() not in own]
        text = reply.text or ""
        links = [f"{a.filename}: {a.url}" for a in reply.attachments if a.content is None and a.url]
        if links:  # files we only have a link to travel as links
            text = text.rstrip() + "\n\n" + "\n".join(links)
        return outbound.build_reply_mime(
            from_email=self.config.from_email,
            from_name=self.config.from_name,
            to=thread.get("email_to") or "",
            subject=thread.get("email_subject"),
            text=text,
            message_id=message_id,
            in_reply_to=thread.get("in_reply_to"),
            references=thread.get("references"),
            cc=cc,
            reply_to=thread.get("reply_to"),
            attachments=[a for a in reply.attachments if a.content is not None],
        )

    def deliver(self, reply: OutboundReply) -> DeliveryResult:
        try:
            message = self.build_reply(reply)
        except DeliveryError as error:
            return DeliveryResult.from_error(error)
        except (ValueError, TypeError) as exc:  # a header the email package refuses
            return DeliveryResult.from_error(PermanentDeliveryError("invalid_message", str(exc)))
        return outbound.send_messages(self.config, [message])[0]

    def find_delivered(self, reply: OutboundReply) -> DeliveryResult | None:
        """Always None: SMTP offers no way to ask whether a message was delivered.

        After an unknown outcome the pipeline re-sends; the re-sent mail carries the same
        Message-ID (derived from the delivery id and stored before the first attempt), so mail
        clients and our own inbound de-duplication recognise the copy.
        """
        return None


# --- provider webhooks --------------------------------------------------------------------------

_STRUCTURAL_HEADERS = frozenset(
    {"content-type", "content-transfer-encoding", "mime-version", "content-disposition"}
)
_HEADER_NAME = re.compile(r"^[!-9;-~]+$")


def _text_field(value: str | bytes | None, charset: str | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return decode_bytes(value, charset or "utf-8", lambda _note: None, "form field")
    return value


def _strip_mime_headers(block: bytes) -> bytes:
    """Drop Content-Type / CTE / MIME-Version (with continuation lines) from a header block."""
    kept: list[bytes] = []
    dropping = False
    for line in re.split(rb"\r?\n", block.strip(b"\r\n")):
        if line[:1] in (b" ", b"\t"):
            if not dropping:
                kept.append(line)
            continue
        name = line.split(b":", 1)[0].strip().lower().decode("ascii", "replace")
        dropping = name in _STRUCTURAL_HEADERS
        if not dropping:
            kept.append(line)
    return b"\r\n".join(kept)


def _body_message(text: str | None, html: str | None, attachments: Sequence[Attachment]) -> EmailMessage:
    body = EmailMessage()
    if text is not None or html is None:
        body.set_content(text or "", subtype="plain", charset="utf-8")
        if html is not None:
            body.add_alternative(html, subtype="html", charset="utf-8")
    else:
        body.set_content(html, subtype="html", charset="utf-8")
    for attachment in attachments:
        maintype, _, subtype = (attachment.content_type or "application/octet-stream").partition("/")
        extra: dict[str, Any] = {"filename": attachment.filename}
        if attachment.content_id:
            extra["cid"] = f"<{attachment.content_id.strip('<>')}>"
            extra["disposition"] = "inline"
        body.add_attachment(
            attachment.content or b"", maintype=maintype, subtype=subtype or "octet-stream", **extra
        )
    return body


def _join(head: bytes, body: EmailMessage) -> bytes:
    serialized = body.as_bytes(policy=policy.SMTP)
    return head.rstrip(b"\r\n") + b"\r\n" + serialized if head.strip() else serialized


def raw_from_sendgrid(form: Mapping[str, str | bytes]) -> bytes:
    """RFC 822 bytes from a SendGrid Inbound Parse POST (multipart/form-data fields).

    "Send raw" mode puts the whole message in the `email` field: it is returned as is. The
    default (parsed) mode sends the original header block in `headers`, the bodies in `text`
    and `html` (charsets in the `charsets` JSON) and files as `attachment1…N` described by
    `attachment-info`; those are rebuilt into one MIME message under the original headers.
    (SendGrid docs: "Inbound Parse Webhook", "Default Parameters" / "Raw Parameters".)
    """
    raw = form.get("email")
    if raw:
        return raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogateescape")
    headers = form.get("headers")
    if not headers:
        raise MalformedPayloadError("SendGrid inbound parse form has neither `email` nor `headers`")
    try:
        charsets = json.loads(_text_field(form.get("charsets"), "utf-8") or "{}")
    except ValueError:
        charsets = {}
    head = headers if isinstance(headers, bytes) else headers.encode("utf-8", "surrogateescape")
    text = _text_field(form.get("text"), charsets.get("text"))
    html = _text_field(form.get("html"), charsets.get("html"))
    try:
        info = json.loads(_text_field(form.get("attachment-info"), "utf-8") or "{}")
    except ValueError:
        info = {}
    attachments = []
    for key in sorted((k for k in form if re.fullmatch(r"attachment\d+", k)), key=lambda k: int(k[10:])):
        content = form[key]
        meta = info.get(key, {}) if isinstance(info, dict) else {}
        attachments.append(
            Attachment(
                filename=str(meta.get("filename") or meta.get("name") or key),
                content_type=str(meta.get("type") or "application/octet-stream"),
                content=content if isinstance(content, bytes) else content.encode("utf-8"),
                content_id=meta.get("content-id") or None,
            )
        )
    return _join(_strip_mime_headers(head), _body_message(text, html, attachments))


def _address_header(full: Any, plain: Any) -> str | None:
    """Postmark's `FromFull` / `ToFull` (objects or lists of {Email, Name}) or the plain string."""
    entries = full if isinstance(full, list) else [full] if isinstance(full, dict) else []
    rendered = []
    for entry in entries:
        email = str(entry.get("Email") or "").strip()
        if "@" not in email:
            continue
        rendered.append(str(Address(display_name=str(entry.get("Name") or "").strip(), addr_spec=email)))
    if rendered:
        return ", ".join(rendered)
    if isinstance(plain, str) and plain.strip():
        return (
            ", ".join(
                str(Address(display_name=name, addr_spec=address))
                for name, address in getaddresses([plain])
                if "@" in address
            )
            or None
        )
    return None


def raw_from_postmark(payload: Mapping[str, Any]) -> bytes:
    """RFC 822 bytes from a Postmark inbound webhook JSON.

    With "Include raw email content" enabled Postmark sends the message in `RawEmail`, which is
    returned as is. Otherwise (as in Postmark's documented sample) only parsed fields exist:
    the message is rebuilt from FromFull/ToFull/CcFull, Subject, Date, ReplyTo, `Headers`
    (which carry Message-ID, In-Reply-To, References and the auto-reply headers), TextBody,
    HtmlBody and base64 `Attachments`. `MessageID` is Postmark's own id, used only when no
    RFC Message-ID header came along. (Postmark docs: "Inbound webhook", "Parse an email".)
    """
    raw = payload.get("RawEmail")
    if isinstance(raw, str) and raw.strip():
        return raw.encode("utf-8", "surrogateescape")
    if not isinstance(payload, Mapping) or not any(k in payload for k in ("FromFull", "From", "Headers")):
        raise MalformedPayloadError("not a Postmark inbound payload")
    message = EmailMessage()
    set_names: set[str] = set()

    def put(name: str, value: str | None) -> None:
        if not value:
            return
        clean = re.sub(r"[\r\n]+", " ", str(value)).strip()
        if not clean:
            return
        try:
            message[name] = clean
        except (ValueError, TypeError, IndexError):  # a value the header class cannot hold
            return
        set_names.add(name.lower())

    put("From", _address_header(payload.get("FromFull"), payload.get("From")))
    put("To", _address_header(payload.get("ToFull"), payload.get("To")))
    put("Cc", _address_header(payload.get("CcFull"), payload.get("Cc")))
    put("Reply-To", _address_header(None, payload.get("ReplyTo")))
    put("Subject", payload.get("Subject"))
    put("Date", payload.get("Date"))
    if payload.get("OriginalRecipient"):
        put("Delivered-To", payload.get("OriginalRecipient"))
    for header in payload.get("Headers") or []:
        if not isinstance(header, Mapping):
            continue
        name = str(header.get("Name") or "").strip()
        if not _HEADER_NAME.match(name) or name.lower() in _STRUCTURAL_HEADERS or name.lower() in set_names:
            continue
        put(name, header.get("Value"))
    if "message-id" not in set_names and payload.get("MessageID"):
        put("Message-ID", f"<{payload['MessageID']}@inbound.postmarkapp.com>")
    attachments = []
    for item in payload.get("Attachments") or []:
        if not isinstance(item, Mapping):
            continue
        try:
            content = base64.b64decode(str(item.get("Content") or ""), validate=False)
        except (binascii.Error, ValueError):
            continue
        attachments.append(
            Attachment(
                filename=str(item.get("Name") or "attachment"),
                content_type=str(item.get("ContentType") or "application/octet-stream"),
                content=content,
                content_id=str(item.get("ContentID") or "") or None,
            )
        )
    text = payload.get("TextBody")
    html = payload.get("HtmlBody")
    body = _body_message(
        text if isinstance(text, str) and text else None,
        html if isinstance(html, str) and html else None,
        attachments,
    )
    # Serialise the headers alone with the SMTP policy: folded, non-ASCII as encoded-words.
    head = message.as_bytes(policy=policy.SMTP).split(b"\r\n\r\n", 1)[0]
    return _join(head, body)
