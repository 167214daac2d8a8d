"""Outbound email: the reply's MIME message and its delivery over SMTP with aiosmtplib.

A reply carries our own Message-ID, `<delivery-id@domain-of-from>`, which the caller stores
before sending: threading of the customer's answer (In-Reply-To / References) and recognising
a duplicate after an unknown outcome both rely on it. The body is the agent's markdown as the
text/plain part and the same markdown rendered to HTML (markdown-it-py, raw HTML disabled, so
whatever the agent typed is escaped).

Internationalised addresses (RFC 6530): a domain is sent in its IDNA ASCII form whenever the
local part is ASCII, which any server accepts; a non-ASCII local part needs SMTPUTF8 (RFC 6531).
When the server does not offer it, a customer (To) with such an address fails permanently with
`smtputf8_unsupported`, and a Cc participant with one is left out of that mail (the customer
still gets it, as when a server refuses a Cc). Mail that ends up 7-bit also leaves out
Message-IDs holding UTF-8 (from a customer's SMTPUTF8 mail): a 7-bit header cannot carry them.

SMTP outcomes map to the delivery policy: connection errors, timeouts and 4xx answers are
RETRYABLE (RFC 5321 §4.2.1: 4yz is a transient negative completion), 5xx answers are FAILED
with the server's text as `error_detail`. SMTP has no Retry-After, so `retry_after` stays None
and the pipeline's backoff decides.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import re
import ssl
from collections.abc import Coroutine, Sequence
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses
from functools import lru_cache
from typing import TYPE_CHECKING, Any, TypeVar

import aiosmtplib
from markdown_it import MarkdownIt

from channels.base import Attachment, DeliveryResult
from channels.email.addresses import transport_form, unicode_domain
from channels.email.loops import OWN_MESSAGE_HEADER
from channels.errors import DeliveryError, PermanentDeliveryError, RetryableDeliveryError

if TYPE_CHECKING:
    from channels.email.adapter import EmailConfig

T = TypeVar("T")
log = logging.getLogger(__name__)

# Reply prefixes of common clients: English, German (AW), Nordic (SV, VS), Dutch (Antw),
# Polish (Odp), Italian (Rif), Portuguese (Res), Chinese. "Re[2]:" counts too.
_REPLY_PREFIX = re.compile(
    r"^\s*(?:(?:re|aw|sv|vs|antw|odp|rif|res|回复|答复)\s*(?:\[\d+\])?\s*[:：]\s*)+", re.I
)
_LINE_BREAKS = re.compile(r"[\r\n]+")
_MAX_REFERENCES = 20


def reply_subject(subject: str | None) -> str:
    """`Re: <subject>` without stacking prefixes (`Re: Re: x`, `AW: x` → `Re: x`)."""
    base = _LINE_BREAKS.sub(" ", subject or "").strip()
    base = _REPLY_PREFIX.sub("", base).strip()
    return f"Re: {base}" if base else "Re: (no subject)"


def make_message_id(delivery_id: str, from_email: str) -> str:
    """`<delivery-id@domain-of-from>`: ours, stable across retries of one delivery."""
    domain = from_email.rpartition("@")[2].strip().lower() or "ticketwire.invalid"
    if not domain.isascii():  # an IDN from-domain: its ASCII form keeps the id 7-bit
        domain = transport_form(f"x@{domain}")[0].rpartition("@")[2]
    local = re.sub(r"[^A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]", "-", delivery_id) or "delivery"
    return f"<{local}@{domain}>"


@lru_cache(maxsize=1)
def _markdown() -> MarkdownIt:
    # commonmark with raw HTML off: "<script>" typed by an agent is shown, not run;
    # markdown-it's validateLink already refuses javascript:, vbscript:, file: and data: links.
    return MarkdownIt("commonmark", {"html": False, "breaks": True, "linkify": False}).enable(
        ["strikethrough", "table"]
    )


def render_markdown(text: str) -> str:
    """The HTML part of a reply: paragraphs, line breaks, links, emphasis, code; HTML escaped."""
    body = _markdown().render(text or "")
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"></head>\n'
        f'<body style="font-family: sans-serif; line-height: 1.45;">\n{body}</body></html>\n'
    )


def _one_line(value: str | None) -> str:
    return _LINE_BREAKS.sub(" ", value or "").strip()


def _address_list(values: str | Sequence[str] | None) -> list[str]:
    if not values:
        return []
    items = [values] if isinstance(values, str) else list(values)
    result: list[str] = []
    seen: set[str] = set()
    for _, address in getaddresses([_one_line(v) for v in items if v]):
        address = address.strip()
        if "@" in address and _same(address) not in seen:
            seen.add(_same(address))
            result.append(address)
    return result


def _same(address: str) -> str:
    """The comparison key of an address: `jose@xn--exmple-cua.com` is `jose@exämple.com`."""
    return unicode_domain(address).lower()


def _ids(values: str | Sequence[str] | None) -> list[str]:
    if not values:
        return []
    text = values if isinstance(values, str) else " ".join(v for v in values if v)
    found = re.findall(r"<[^<>\s]+>", text)
    if not found:
        found = [f"<{token.strip('<>')}>" for token in text.split() if token.strip("<>")]
    return list(dict.fromkeys(found))


def build_reply_mime(
    *,
    from_email: str,
    from_name: str | None,
    to: str | Sequence[str],
    subject: str | None,
    text: str,
    message_id: str,
    in_reply_to: str | None = None,
    references: str | Sequence[str] | None = None,
    cc: str | Sequence[str] | None = None,
    reply_to: str | None = None,
    attachments: Sequence[Attachment] = (),
    html: str | None = None,
    is_reply: bool = True,
    date: datetime | None = None,
) -> EmailMessage:
    """The MIME message of a public reply.

    multipart/alternative (text/plain = the markdown, text/html = it rendered), wrapped in
    multipart/mixed when there are attachments (inline when they have a content id).
    """
    recipients = _address_list(to)
    if not recipients:
        raise PermanentDeliveryError("missing_recipient", "the ticket has no customer email address")
    own = _same(from_email)
    cc_list = [a for a in _address_list(cc) if _same(a) != own and _same(a) not in {_same(r) for r in recipients}]
    message = EmailMessage()
    message["From"] = Address(display_name=_one_line(from_name), addr_spec=transport_form(from_email)[0])
    message["To"] = ", ".join(transport_form(a)[0] for a in recipients)
    if cc_list:
        message["Cc"] = ", ".join(transport_form(a)[0] for a in cc_list)
    if reply_to:
        message["Reply-To"] = _one_line(reply_to)
    message["Subject"] = reply_subject(subject) if is_reply else (_one_line(subject) or "(no subject)")
    message["Date"] = format_datetime(date or datetime.now(UTC))
    message["Message-ID"] = message_id
    parent = _ids(in_reply_to)[:1]
    if parent:
        message["In-Reply-To"] = parent[0]
    chain = list(dict.fromkeys([*_ids(references), *parent]))
    if len(chain) > _MAX_REFERENCES:
        # RFC 5322 §3.6.4 allows trimming; keep the root and the most recent ids.
        chain = [chain[0], *chain[-(_MAX_REFERENCES - 1) :]]
    if chain:
        message["References"] = " ".join(chain)
    message[OWN_MESSAGE_HEADER] = message_id
    message.set_content(text or "", subtype="plain", charset="utf-8")
    message.add_alternative(
        html if html is not None else render_markdown(text), subtype="html", charset="utf-8"
    )
    for attachment in attachments:
        if attachment.content is None:
            continue
        maintype, subtype = attachment_type(attachment.content_type)
        # A non-ASCII file name goes out as an RFC 2231 parameter (`filename*=utf-8''K%C3%A4se.pdf`),
        # or as raw UTF-8 when the mail travels with SMTPUTF8 (RFC 6532).
        extra: dict[str, Any] = {"filename": _one_line(attachment.filename) or "attachment"}
        if attachment.content_id:
            extra["cid"] = f"<{attachment.content_id.strip('<>')}>"
            extra["disposition"] = "inline"
        message.add_attachment(attachment.content, maintype=maintype, subtype=subtype, **extra)
    return message


_MIME_TOKEN = re.compile(r"^[A-Za-z0-9!#$&^_.+-]{1,127}$")  # RFC 6838 §4.2 type and subtype names


def attachment_type(content_type: str | None) -> tuple[str, str]:
    """(maintype, subtype) to send a file as. multipart/* and message/* parts cannot be
    base64-encoded (RFC 2046 §5.1, §5.2.1: only 7bit, 8bit or binary), so such files, and
    anything that is not `type/subtype`, travel as application/octet-stream."""
    maintype, _, subtype = (content_type or "").strip().lower().partition("/")
    subtype = subtype.partition(";")[0].strip()
    if not (_MIME_TOKEN.match(maintype) and _MIME_TOKEN.match(subtype)) or maintype in ("multipart", "message"):
        return "application", "octet-stream"
    return maintype, subtype


# --- sending --------------------------------------------------------------------------------


class _ConnectionLost(Exception):
    def __init__(self, error: DeliveryError) -> None:
        super().__init__(str(error))
        self.error = error


def _response_error(code: int, message: str) -> DeliveryError:
    detail = f"{code} {message}".strip()
    if 500 <= code < 600:
        return PermanentDeliveryError(f"smtp_{code}", detail)
    return RetryableDeliveryError(f"smtp_{code}", detail)


def _connection_error(exc: BaseException) -> DeliveryError:
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return _response_error(exc.code, exc.message)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return PermanentDeliveryError("smtp_tls_certificate", str(exc))
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | asyncio.TimeoutError | TimeoutError):
        return RetryableDeliveryError("smtp_timeout", str(exc) or "timed out")
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected | aiosmtplib.SMTPConnectError | OSError):
        return RetryableDeliveryError("smtp_connection_error", str(exc) or type(exc).__name__)
    # A plain SMTPException here is a capability the config needs and the server lacks
    # (STARTTLS, AUTH): retrying will not make it appear.
    return PermanentDeliveryError("smtp_error", str(exc) or type(exc).__name__)


def _client(config: EmailConfig, *, login: bool = True) -> aiosmtplib.SMTP:
    security = config.smtp_security
    return aiosmtplib.SMTP(
        hostname=config.smtp_host,
        port=config.smtp_port,
        use_tls=security == "tls",
        start_tls=True if security == "starttls" else False,
        username=(config.smtp_username or None) if login else None,
        password=(config.smtp_password or None) if login else None,
        timeout=config.smtp_timeout,
    )


async def _connect(config: EmailConfig) -> aiosmtplib.SMTP:
    smtp = _client(config)
    try:
        await smtp.connect()
    except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
        smtp.close()
        raise _connection_error(exc) from exc
    return smtp


def _recipients(message: EmailMessage) -> list[str]:
    values = [str(v) for name in ("To", "Cc", "Bcc") for v in (message.get_all(name) or [])]
    return [address for _, address in getaddresses(values) if "@" in address]


async def _fit_to_server(smtp: aiosmtplib.SMTP, config: EmailConfig, message: EmailMessage) -> str:
    """Make `message` sendable by this server (see the module docstring on SMTPUTF8); returns
    the envelope sender. Raises PermanentDeliveryError when the customer cannot be reached."""
    sender, sender_utf8 = transport_form(config.from_email)
    needs_utf8 = sender_utf8 or any(not a.isascii() for a in _recipients(message))
    if needs_utf8:
        if smtp.is_ehlo_or_helo_needed:
            await smtp.ehlo()
        if smtp.supports_extension("smtputf8"):
            return sender
        server = f"{config.smtp_host}:{config.smtp_port}"
        if sender_utf8:
            raise PermanentDeliveryError(
                "smtputf8_unsupported",
                f"the sending address {config.from_email} has a non-ASCII local part, which needs SMTPUTF8 "
                f"(RFC 6531), and the SMTP server {server} does not offer it",
            )
        customers = [a for name in ("To", "Bcc") for a in _header_addresses(message, name) if not a.isascii()]
        if customers:
            raise PermanentDeliveryError(
                "smtputf8_unsupported",
                f"{customers[0]} has a non-ASCII local part (an internationalised address, RFC 6531): it can "
                f"only be reached through a server offering SMTPUTF8, and the SMTP server {server} does not",
            )
        kept = [a for a in _header_addresses(message, "Cc") if a.isascii()]
        log.info("left %d Cc recipient(s) needing SMTPUTF8 out of a mail", len(_header_addresses(message, "Cc")) - len(kept))
        del message["Cc"]
        if kept:
            message["Cc"] = ", ".join(kept)
    for name in ("In-Reply-To", "References"):
        # A 7-bit header cannot carry a UTF-8 Message-ID: the email package would write it as an
        # encoded-word, which no client matches against the id it knows.
        value = message.get(name)
        if value is not None and not str(value).isascii():
            ids = [i for i in _ids(str(value)) if i.isascii()]
            del message[name]
            if ids:
                message[name] = " ".join(ids)
    return sender


def _header_addresses(message: EmailMessage, name: str) -> list[str]:
    return [a for _, a in getaddresses([str(v) for v in message.get_all(name) or []]) if "@" in a]


async def _send_one(smtp: aiosmtplib.SMTP, config: EmailConfig, message: EmailMessage) -> DeliveryResult:
    try:
        sender = await _fit_to_server(smtp, config, message)
    except DeliveryError as error:
        return DeliveryResult.from_error(error)
    except aiosmtplib.SMTPResponseException as exc:
        return DeliveryResult.from_error(_response_error(exc.code, exc.message))
    except (TimeoutError, aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError) as exc:
        raise _ConnectionLost(_connection_error(exc)) from exc
    recipients = _recipients(message)
    primary = {a.lower() for _, a in getaddresses([str(v) for v in message.get_all("To") or []])}
    try:
        refused, _answer = await smtp.send_message(message, sender=sender, recipients=recipients)
    except aiosmtplib.SMTPRecipientsRefused as exc:
        codes = [r.code for r in exc.recipients]
        detail = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
        code = next((c for c in codes if 400 <= c < 500), codes[0] if codes else 550)
        return DeliveryResult.from_error(_response_error(code, detail))
    except aiosmtplib.SMTPResponseException as exc:
        return DeliveryResult.from_error(_response_error(exc.code, exc.message))
    except (TimeoutError, aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError) as exc:
        raise _ConnectionLost(_connection_error(exc)) from exc
    except aiosmtplib.SMTPException as exc:
        return DeliveryResult.from_error(PermanentDeliveryError("smtp_error", str(exc)))
    except ValueError as exc:  # an address aiosmtplib refuses to put on the wire
        return DeliveryResult.from_error(PermanentDeliveryError("invalid_address", str(exc)))
    failed_primary = {
        address: response for address, response in refused.items() if address.lower() in primary
    }
    if failed_primary:
        # The customer did not get it even though a Cc did: that is not a delivery.
        address, response = next(iter(failed_primary.items()))
        return DeliveryResult.from_error(_response_error(response.code, f"{address}: {response.message}"))
    return DeliveryResult.delivered(str(message["Message-ID"]) if message["Message-ID"] else None)


async def asend_messages(config: EmailConfig, messages: Sequence[EmailMessage]) -> list[DeliveryResult]:
    """Send a burst over one SMTP connection; one DeliveryResult per message, in order.

    A dropped connection fails only the message in flight (RETRYABLE) and is reopened for the
    rest; if it cannot be reopened, every remaining message is RETRYABLE.
    """
    results: list[DeliveryResult] = []
    smtp: aiosmtplib.SMTP | None = None
    try:
        for index, message in enumerate(messages):
            if smtp is None:
                try:
                    smtp = await _connect(config)
                except DeliveryError as error:
                    results.extend(DeliveryResult.from_error(error) for _ in messages[index:])
                    return results
            try:
                results.append(await _send_one(smtp, config, message))
            except _ConnectionLost as lost:
                results.append(DeliveryResult.from_error(lost.error))
                smtp.close()
                smtp = None
        return results
    finally:
        if smtp is not None:
            await _quit(smtp)


async def _quit(smtp: aiosmtplib.SMTP) -> None:
    try:
        await smtp.quit()
    except (TimeoutError, aiosmtplib.SMTPException, OSError):
        smtp.close()


async def atest_connection(config: EmailConfig) -> dict[str, Any]:
    """Open the SMTP connection the config describes, EHLO, log in if configured; report."""
    smtp = _client(config, login=False)
    report: dict[str, Any] = {
        "ok": False,
        "host": config.smtp_host,
        "port": config.smtp_port,
        "security": config.smtp_security,
    }
    try:
        banner = await smtp.connect()
        report["banner"] = f"{banner.code} {banner.message}".strip()
        if smtp.last_ehlo_response is None:
            await smtp.ehlo()
        ehlo = smtp.last_ehlo_response
        if ehlo is not None:
            report["ehlo"] = f"{ehlo.code} {ehlo.message}".strip()
        report["tls"] = smtp.get_transport_info("sslcontext") is not None
        report["extensions"] = sorted(smtp.esmtp_extensions)
        if config.smtp_username:
            answer = await smtp.login(config.smtp_username, config.smtp_password or "")
            report["login"] = f"{answer.code} {answer.message}".strip()
        report["ok"] = True
    except aiosmtplib.SMTPResponseException as exc:
        report["error"] = f"{exc.code} {exc.message}".strip()
        report["code"] = exc.code
    except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
        report["error"] = str(exc) or type(exc).__name__
    finally:
        if smtp.is_connected:
            await _quit(smtp)
    return report


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine from sync code, also when the caller is itself inside an event loop
    (an async web handler or actor): then it runs on a fresh loop in a worker thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def send_messages(config: EmailConfig, messages: Sequence[EmailMessage]) -> list[DeliveryResult]:
    """Sync form of `asend_messages` (the delivery actor is sync)."""
    return run_sync(asend_messages(config, messages))


def test_connection(config: EmailConfig) -> dict[str, Any]:
    """Sync form of `atest_connection`, for the integrations API's "test" button."""
    return run_sync(atest_connection(config))


test_connection.__test__ = False  # type: ignore[attr-defined]  # not a pytest test
