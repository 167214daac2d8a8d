"""Raw RFC 822 bytes → `ParsedEmail`, whatever the sender's software did to them.

Mail in the wild lies about its charset, forgets boundaries, puts raw 8-bit bytes in headers
and mixes line endings. The rule here: never raise. Each repair leaves a line in
`parse_warnings`, and in the worst case `text` is the best-effort decode of the raw body.

- Parsing uses `email.policy.default` (RFC 6532 headers, RFC 2231 parameters). Header values
  are read from `raw_items()` and decoded here, so a header the policy cannot parse falls back
  to the compat32-style path (our RFC 2047 decoder, `email.utils.getaddresses`).
- Text parts are decoded by `decode_bytes`: the declared charset, else UTF-8, else a guess by
  charset-normalizer among common mail charsets, else Latin-1; ISO-8859-1 is read as
  Windows-1252 like every browser does (WHATWG Encoding Standard).
- A multipart whose boundary is missing or wrong is re-split on the delimiter lines actually
  present; headers pushed into the body by a stray blank line are put back.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import hashlib
import mimetypes
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.message import Message
from email.parser import BytesHeaderParser, BytesParser
from email.utils import getaddresses, parsedate_to_datetime
from typing import Any

from channels.base import Attachment
from channels.email import loops
from channels.email.addresses import unicode_domain
from channels.email.quotes import display_text as _display_text
from channels.email.quotes import html_to_text

MAX_ATTACHMENTS = 20
MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024
SYNTHETIC_ID_DOMAIN = "ticketwire.invalid"
_MAX_DEPTH = 30

Warn = Callable[[str], None]


@dataclass(frozen=True)
class ParsedEmail:
    """One inbound email, decoded. `text` is the full body; `display_text` is the new part."""

    message_id: str
    in_reply_to: str | None
    references: list[str]
    subject: str
    from_name: str | None
    from_email: str | None
    to: list[str]
    cc: list[str]
    reply_to: str | None
    date: datetime | None
    text: str
    html: str | None
    display_text: str
    attachments: list[Attachment]
    is_auto_reply: bool
    auto_reply_reason: str | None
    bounce: dict[str, Any] | None
    parse_warnings: list[str]
    headers_ok: bool
    message_id_synthesized: bool = False
    text_from_html: bool = False
    skipped_attachments: list[dict[str, Any]] = field(default_factory=list)
    headers: Mapping[str, list[str]] = field(default_factory=dict)


class _Notes:
    """Collects parse warnings (de-duplicated, in order) and whether the headers were sound."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self.header_problem = False

    def add(self, note: str) -> None:
        if note not in self.items:
            self.items.append(note)

    def header(self, note: str) -> None:
        self.header_problem = True
        self.add(note)


# --- charsets -----------------------------------------------------------------------------------

# Declared charset → the superset real senders mean by it (WHATWG Encoding Standard mappings).
_SUPERSETS = {
    "latin_1": "cp1252",
    "iso8859-1": "cp1252",
    "iso8859-9": "cp1254",
    "iso8859-11": "cp874",
    "tis-620": "cp874",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "shift_jis": "cp932",
    "euc_kr": "cp949",
    "big5": "big5hkscs",
}
# Candidates for guessing undeclared or lying 8-bit text (what mail actually uses).
_GUESS_CANDIDATES = [
    "cp1252",
    "cp1251",
    "cp1250",
    "koi8_r",
    "iso8859_2",
    "iso8859_15",
    "cp1253",
    "cp1254",
    "cp1255",
    "cp1256",
    "cp1257",
    "gb18030",
    "big5",
    "shift_jis",
    "euc_jp",
    "euc_kr",
    "cp874",
]
_SINGLE_BYTE = re.compile(r"^(?:ascii|latin_1|iso8859-\d+|cp12\d\d|cp874|koi8.*|mac.*|cp8\d\d)$")
_KNOWN_IN_LABEL = re.compile(
    r"(utf-?8|iso[-_]?2022[-_]?jp|iso[-_]?8859[-_]?\d{1,2}|windows[-_]?125\d|koi8[-_]?[ru]|gb2312|gb18030|gbk"
    r"|big5|shift[-_]?jis|euc[-_]?jp|euc[-_]?kr|us-ascii)",
    re.IGNORECASE,
)


def _codec(label: str | None) -> str | None:
    """Python's codec name for a MIME charset label, or None when unknown or not a text codec."""
    if not label:
        return None
    clean = label.strip().strip("\"'").strip().lower()
    if not clean or clean in ("unknown-8bit", "x-unknown", "unknown", "default", "8bit", "binary"):
        return None
    try:
        info = codecs.lookup(clean)
    except (LookupError, ValueError):
        return None
    try:
        b"x".decode(info.name)
    except LookupError:  # base64, rot13, zlib… are codecs but not text encodings
        return None
    except UnicodeDecodeError:
        pass
    return info.name


def _try(data: bytes, codec: str) -> str | None:
    try:
        return data.decode(codec)
    except (UnicodeDecodeError, LookupError):
        return None


def _valid_utf8_with_multibyte(data: bytes) -> bool:
    if not re.search(rb"[\x80-\xff]", data):
        return False
    return _try(data, "utf-8") is not None


def _guess(data: bytes, extra: list[str] | None = None) -> str | None:
    """The most plausible charset for 8-bit bytes (charset-normalizer over mail charsets)."""
    try:
        from charset_normalizer import from_bytes
    except ImportError:  # pragma: no cover - it is a declared dependency
        return None
    candidates = list(dict.fromkeys([*(extra or []), *_GUESS_CANDIDATES]))
    results = from_bytes(data, cp_isolation=candidates)
    best = results.best()
    if best is None:
        return None
    # Ties are common on short or repetitive text (cp1250 and cp1252 read French equally
    # well): prefer the charset earlier in our list, i.e. the more common one in mail.
    # A match lists every charset that decodes the bytes to the same text (could_be_from_charset).
    tied = [
        name
        for match in results
        if match.chaos == best.chaos and match.coherence == best.coherence
        for name in [match.encoding, *match.could_be_from_charset]
    ]
    order = {name: rank for rank, name in enumerate(candidates)}
    return min(tied, key=lambda name: order.get(name, len(order)))


def decode_bytes(data: bytes, label: str | None, warn: Warn, what: str = "text") -> str:
    """Decode `data` declared as charset `label`, repairing lies; never raises."""
    if not data:
        return ""
    codec = _codec(label)
    shown = (label or "").strip().strip("\"'") or None
    if codec is not None and not (codec == "ascii" and re.search(rb"[\x80-\xff]", data)):
        if _SINGLE_BYTE.match(codec) and _valid_utf8_with_multibyte(data):
            # Valid multi-byte UTF-8 is almost never meaningful single-byte text.
            warn(f"{what}: charset {shown or codec} does not match the bytes, decoded as utf-8")
            return data.decode("utf-8")
        superset = _SUPERSETS.get(codec)
        order = [superset, codec] if superset and _SINGLE_BYTE.match(codec) else [codec]
        for name in order:
            if name and (decoded := _try(data, name)) is not None:
                return decoded
        if (decoded := _try(data, "utf-8")) is not None:
            warn(f"{what}: charset {shown or codec} does not match the bytes, decoded as utf-8")
            return decoded
        if superset and (decoded := _try(data, superset)) is not None:
            return decoded
        guessed = _guess(data, [codec])
        if guessed and (decoded := _try(data, guessed)) is not None:
            warn(f"{what}: charset {shown or codec} does not match the bytes, decoded as {guessed}")
            return decoded
        warn(f"{what}: undecodable bytes in charset {shown or codec}, replaced")
        return data.decode(codec, "replace")

    # No usable label: unknown name, none at all (RFC 2045 says us-ascii), or 8-bit "us-ascii".
    if codec == "ascii":
        problem = f"charset {shown or 'us-ascii'} does not match the bytes"
    elif shown:
        problem = f"unknown charset {shown}"
        salvaged = _KNOWN_IN_LABEL.search(shown)  # "_iso-2022-jp$ESC" still names iso-2022-jp
        inner = _codec(salvaged.group(1)) if salvaged else None
        if inner and (decoded := _try(data, inner)) is not None:
            warn(f"{what}: {problem}, decoded as {inner}")
            return decoded
    else:
        problem = "8-bit text without a charset"
    if (decoded := _try(data, "utf-8")) is not None:
        if shown or codec == "ascii":
            warn(f"{what}: {problem}, decoded as utf-8")
        return decoded
    guessed = _guess(data)
    if guessed and (decoded := _try(data, guessed)) is not None:
        warn(f"{what}: {problem}, decoded as {guessed}")
        return decoded
    warn(f"{what}: {problem}, decoded as latin-1")
    return data.decode("latin-1")


def _decode_8bit_header(data: bytes) -> str:
    """Raw 8-bit header bytes (RFC 6532 UTF-8, or a legacy charset sent unencoded)."""
    if (decoded := _try(data, "utf-8")) is not None:
        return decoded
    loose = data.decode("utf-8", "replace")
    bad = loose.count("\ufffd")
    good = sum(1 for ch in loose if ord(ch) > 127 and ch != "\ufffd")
    if good and good >= 2 * bad:  # mostly UTF-8 with a stray byte: keep the UTF-8 reading
        return loose
    guessed = _guess(data)
    if guessed and (decoded := _try(data, guessed)) is not None:
        return decoded
    return data.decode("cp1252", "replace")


# --- headers ----------------------------------------------------------------------------------

_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_SURROGATES = re.compile(r"[\ud800-\udfff]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _has_surrogates(value: str) -> bool:
    return bool(_SURROGATES.search(value))


def _to_bytes(value: str) -> bytes:
    """A str from the bytes parser back to its bytes (8-bit bytes travel as surrogates)."""
    try:
        return value.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogateescape")


def _clean(value: str) -> str:
    """No NUL or lone surrogates: databases refuse both."""
    return _SURROGATES.sub("\ufffd", value.replace("\x00", ""))


def decode_encoded_words(value: str, warn: Warn) -> str:
    """RFC 2047 encoded-words → text. Adjacent words of one charset are decoded together, since
    senders split multi-byte characters across words; unknown charsets fall back like bodies."""
    pieces: list[str] = []
    position = 0
    pending: list[bytes] = []
    pending_charset: str | None = None

    def flush() -> None:
        nonlocal pending, pending_charset
        if pending:
            pieces.append(decode_bytes(b"".join(pending), pending_charset, warn, "header"))
        pending, pending_charset = [], None

    for match in _ENCODED_WORD.finditer(value):
        between = value[position : match.start()]
        charset = match.group(1).split("*", 1)[0]  # RFC 2231 language suffix: =?utf-8*en?Q?…?=
        encoding = match.group(2).lower()
        payload = match.group(3)
        try:
            if encoding == "b":
                data = base64.b64decode(payload + "=" * (-len(payload) % 4))
            else:
                data = binascii.a2b_qp(payload.encode("ascii", "replace"), header=True)
        except (binascii.Error, ValueError):
            flush()
            pieces.append(value[position : match.end()])
            position = match.end()
            continue
        if between.strip():
            flush()
            pieces.append(between)
        elif pending_charset is not None and charset.lower() != pending_charset.lower():
            flush()  # whitespace between encoded-words is dropped even across charsets
        elif not pending:
            pieces.append(between)
        # whitespace between two encoded-words is dropped (RFC 2047 §6.2)
        pending.append(data)
        pending_charset = charset
        position = match.end()
    flush()
    pieces.append(value[position:])
    return "".join(pieces)


def _unfold(value: str) -> str:
    return re.sub(r"\r?\n(?=[ \t])|\r(?=[ \t])", "", value).strip()


def decode_header_value(name: str, raw: str, notes: _Notes) -> str:
    """Decode one raw header value: unfold, repair raw 8-bit bytes, decode encoded-words."""
    value = _unfold(raw)
    if _has_surrogates(value):
        data = _to_bytes(value)
        utf8 = _try(data, "utf-8")
        if utf8 is not None:
            value = utf8  # RFC 6532 allows raw UTF-8 in headers: nothing to repair
        else:
            value = _decode_8bit_header(data)
            notes.header(f"raw 8-bit bytes in the {name} header, decoded best-effort")
    if "=?" in value:
        value = decode_encoded_words(value, notes.add)
    return _clean(_CONTROL.sub("", value.replace("\t", " ")))


def _decoded_headers(msg: Message, notes: _Notes) -> dict[str, list[str]]:
    headers: dict[str, list[str]] = {}
    for name, raw in msg.raw_items():
        key = str(name).strip().lower()
        try:
            value = decode_header_value(str(name).strip(), str(raw), notes)
        except Exception:  # noqa: BLE001 - one hostile header must not lose the mail
            value = _clean(str(raw))
            notes.header(f"undecodable {name} header kept raw")
        headers.setdefault(key, []).append(value)
    return headers


_MESSAGE_ID = re.compile(r"<[^<>\s]+>")


def normalize_message_id(value: str | None) -> str | None:
    """`<id@host>` from a Message-ID-like header value, angle brackets added when missing."""
    if not value:
        return None
    match = _MESSAGE_ID.search(value)
    if match:
        return match.group(0)
    token = value.strip().strip("<>").strip()
    if token and not re.search(r"\s", token):
        return f"<{token}>"
    return None


def message_ids(value: str | None) -> list[str]:
    """All `<…>` ids of a References / In-Reply-To value, in order, without duplicates."""
    if not value:
        return []
    return list(dict.fromkeys(_MESSAGE_ID.findall(value)))


def _addresses(value: str | None) -> list[tuple[str | None, str]]:
    """(display name, address) pairs of an address header; groups flattened, junk dropped."""
    if not value:
        return []
    pairs: list[tuple[str | None, str]] = []
    try:
        header: Any = policy.default.header_factory("to", value)
        for address in header.addresses:
            pairs.append((address.display_name or None, address.addr_spec))
    except Exception:  # noqa: BLE001 - fall back to the lenient compat32 parser below
        pairs = []
    if not any("@" in spec for _, spec in pairs):
        pairs = [(name or None, spec) for name, spec in getaddresses([value])]
    result = []
    for name, spec in pairs:
        spec = spec.strip().strip("<>").strip()
        if "@" not in spec or re.search(r"\s", spec):
            continue
        # An IDN domain in its ASCII form (`xn--…`) is shown and compared in Unicode, like the
        # same domain written in UTF-8 (RFC 6532) by another client of the same customer.
        result.append(((name or "").strip().strip('"').strip() or None, unicode_domain(spec)))
    return result


def _parse_date(value: str | None, notes: _Notes) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        notes.header("unparseable Date header")
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


# --- the raw message ---------------------------------------------------------------------------

_HEAD_END = re.compile(rb"\r?\n\r?\n")
_MIME_HEADER_AT_START = re.compile(
    rb"^(?:content-type|content-transfer-encoding|content-disposition)[ \t]*:", re.I
)
_HAS_CONTENT_TYPE = re.compile(rb"(?:^|\n)content-type[ \t]*:", re.I)


def _split_head(data: bytes) -> tuple[bytes, bytes, bytes]:
    """(header block, separator, body) at the first empty line."""
    if data.startswith((b"\n", b"\r\n")):
        newline = b"\r\n" if data.startswith(b"\r\n") else b"\n"
        return b"", newline, data[len(newline) :]
    match = _HEAD_END.search(data)
    if match is None:
        return data, b"", b""
    return data[: match.start()], data[match.start() : match.end()], data[match.end() :]


def _recover_headers(raw: bytes) -> tuple[bytes, bool]:
    """Put back MIME headers that a stray blank line pushed into the body.

    Seen in spam and broken mailers: `Subject: …`, an empty line, then `Content-Type: …`. The
    message would otherwise read as text/plain us-ascii with its headers as text.
    """
    head, separator, body = _split_head(raw)
    if not head or not separator or _HAS_CONTENT_TYPE.search(head):
        return raw, False
    if not _MIME_HEADER_AT_START.match(body):
        return raw, False
    newline = b"\r\n" if separator.startswith(b"\r\n") else b"\n"
    return head + newline + body, True


def _synthetic_message_id(headers: list[tuple[str, str]], body: bytes) -> str:
    """`<sha256@ticketwire.invalid>` over the parts of the mail that survive relaying.

    Received/Delivered-To headers differ between the SMTP, IMAP and HTTP paths, so only From,
    To, Cc, Date, Subject and the body go in: the same mail gets the same id whichever way it
    arrives.
    """
    digest = hashlib.sha256()
    for name, value in headers:
        if name.lower() in ("from", "to", "cc", "date", "subject"):
            digest.update(name.lower().encode("ascii", "replace") + b":")
            digest.update(_to_bytes(_unfold(value)) + b"\n")
    digest.update(b"\n")
    digest.update(body.replace(b"\r\n", b"\n").rstrip(b"\n"))
    return f"<{digest.hexdigest()}@{SYNTHETIC_ID_DOMAIN}>"


def message_id_of(raw: bytes) -> tuple[str, bool]:
    """The Message-ID of raw mail (synthesised when absent) and whether it was synthesised.

    Reads the header block only, so the webhook can compute the event id cheaply; `parse_email`
    uses the same function, so both always agree.
    """
    data, _ = _recover_headers(raw)
    head, _separator, body = _split_head(data)
    items = list(BytesHeaderParser(policy=policy.compat32).parsebytes(head + b"\n\n").raw_items())
    for name, value in items:
        if name.lower() == "message-id":
            found = normalize_message_id(_unfold(str(value)))
            if found and _has_surrogates(found):
                # RFC 6532 §3.2: an SMTPUTF8 client may write UTF-8 in the id (`<m1@例子.广告>`);
                # other 8-bit bytes give no stable id, and a synthetic one is used instead.
                found = _try(_to_bytes(found), "utf-8")
            if found:
                return found, False
            break
    return _synthetic_message_id([(str(n), str(v)) for n, v in items], body), True


def _parse_bytes(data: bytes, notes: _Notes) -> Message:
    try:
        return BytesParser(policy=policy.default).parsebytes(data)
    except Exception:  # noqa: BLE001 - the feed parser is lenient; this is the last resort
        notes.add("the default email policy failed; parsed with compat32")
        return BytesParser(policy=policy.compat32).parsebytes(data)


# --- bodies and attachments ---------------------------------------------------------------------

_DEFECTS = {
    "CloseBoundaryNotFoundDefect": "missing closing boundary",
    "StartBoundaryNotFoundDefect": "multipart boundary not found in the body",
    "NoBoundaryInMultipartDefect": "multipart without boundary parameter",
    "FirstHeaderLineIsContinuationDefect": "first header line is a continuation line",
    "MisplacedEnvelopeHeaderDefect": "misplaced envelope (From ) header",
    "MissingHeaderBodySeparatorDefect": "missing blank line between headers and body",
    "InvalidMultipartContentTransferEncodingDefect": "transfer encoding on a multipart part",
    "InvalidBase64PaddingDefect": "invalid base64 padding",
    "InvalidBase64CharactersDefect": "invalid characters in base64",
    "InvalidBase64LengthDefect": "invalid base64 length",
    "UndecodableBytesDefect": "undecodable bytes",
}
_HEADER_DEFECTS = frozenset(
    {
        "FirstHeaderLineIsContinuationDefect",
        "MisplacedEnvelopeHeaderDefect",
        "MissingHeaderBodySeparatorDefect",
    }
)
_HEADER_LINE = re.compile(rb"^[!-9;-~]+[ \t]*:")
_DELIMITER = re.compile(rb"^--\S{2,}?\s*$")


@dataclass
class _Body:
    plain: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class _Limits:
    max_attachments: int
    max_attachment_bytes: int


def _content_type(part: Message) -> str:
    try:
        return part.get_content_type()
    except Exception:  # noqa: BLE001
        return "application/octet-stream"


def _param(part: Message, name: str) -> str | None:
    try:
        value = part.get_param(name)
    except Exception:  # noqa: BLE001
        return None
    if isinstance(value, tuple):  # RFC 2231 (charset, language, value)
        value = value[2]
    return str(value) if value is not None else None


def _header(part: Message, name: str) -> str | None:
    for key, value in part.raw_items():
        if key.lower() == name:
            return _unfold(str(value))
    return None


def _filename(part: Message, notes: _Notes) -> str | None:
    try:
        name = part.get_filename()
    except Exception:  # noqa: BLE001
        name = None
    if not name:
        name = _param(part, "name")
    if not name:
        return None
    name = str(name)
    if _has_surrogates(name):
        name = _decode_8bit_header(_to_bytes(name))
    if "=?" in name:  # an encoded-word inside a quoted parameter (not allowed, but common)
        name = decode_encoded_words(name, notes.add)
    name = _CONTROL.sub("", name.replace("\\", "/").rsplit("/", 1)[-1]).strip()
    return _clean(name)[:255] or None


def _payload_bytes(part: Message, notes: _Notes, *, is_text: bool) -> bytes:
    payload = part.get_payload()
    if isinstance(payload, list):
        return b""
    encoding = (_header(part, "content-transfer-encoding") or "").strip().lower()
    if encoding == "base64" and isinstance(payload, str):
        compact = re.sub(r"\s+", "", payload)
        try:
            return base64.b64decode(compact, validate=True)
        except (binascii.Error, ValueError):
            pass
        if is_text and (not re.fullmatch(r"[A-Za-z0-9+/=]*", compact) or len(compact.rstrip("=")) % 4 == 1):
            # "Content-Transfer-Encoding: base64" on text that was never encoded
            notes.add("text part declared base64 is not base64; kept its raw text")
            return _to_bytes(payload)
        notes.add("invalid base64 decoded leniently")
    try:
        data = part.get_payload(decode=True)
    except Exception:  # noqa: BLE001
        data = None
    if isinstance(data, bytes):
        return data
    return _to_bytes(payload) if isinstance(payload, str) else b""


def _unflow(text: str, delsp: bool) -> str:
    """RFC 3676 format=flowed: join soft-broken lines (trailing space), undo space-stuffing."""
    out: list[str] = []
    current: str | None = None
    current_depth = 0
    for line in text.split("\n"):
        stripped = line.lstrip(">")
        depth = len(line) - len(stripped)
        if stripped.startswith(" "):
            stripped = stripped[1:]
        is_signature = stripped == "-- "
        flowed = stripped.endswith(" ") and not is_signature
        if flowed and delsp:
            stripped = stripped[:-1]
        if current is not None and depth == current_depth:
            current += stripped
        else:
            if current is not None:
                out.append(_quote_prefix(current_depth) + current)
            current, current_depth = stripped, depth
        if not flowed:
            out.append(_quote_prefix(current_depth) + current)
            current = None
    if current is not None:
        out.append(_quote_prefix(current_depth) + current)
    return "\n".join(out)


def _quote_prefix(depth: int) -> str:
    return ">" * depth + (" " if depth else "")


def _normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _add_text_part(part: Message, body: _Body, notes: _Notes, content_type: str) -> None:
    data = _payload_bytes(part, notes, is_text=True)
    label = _param(part, "charset")
    text = _normalize_newlines(decode_bytes(data, label, notes.add, content_type))
    if content_type == "text/plain" and (_param(part, "format") or "").lower() == "flowed":
        text = _unflow(text, (_param(part, "delsp") or "").lower() == "yes")
    text = _clean(text)
    if not text.strip():
        return
    (body.plain if content_type == "text/plain" else body.html).append(text)


def _add_attachment(
    body: _Body,
    limits: _Limits,
    *,
    filename: str | None,
    content_type: str,
    content: bytes,
    content_id: str | None,
) -> None:
    index = len(body.attachments) + len(body.skipped) + 1
    if not filename:
        extension = mimetypes.guess_extension(content_type) or ".bin"
        stem = "image" if content_type.startswith("image/") else "attachment"
        filename = f"{stem}-{index}{extension}"
    reason = None
    if len(content) > limits.max_attachment_bytes:
        reason = f"larger than {limits.max_attachment_bytes} bytes"
    elif len(body.attachments) >= limits.max_attachments:
        reason = f"more than {limits.max_attachments} attachments"
    if reason:
        body.skipped.append(
            {"filename": filename, "content_type": content_type, "size": len(content), "reason": reason}
        )
        return
    body.attachments.append(
        Attachment(
            filename=filename,
            content_type=content_type,
            size=len(content),
            content=content,
            content_id=content_id,
        )
    )


def _message_part_bytes(part: Message) -> bytes:
    inner = part.get_payload()
    if isinstance(inner, list) and inner and isinstance(inner[0], Message):
        try:
            return inner[0].as_bytes(policy=policy.compat32)
        except Exception:  # noqa: BLE001
            return _to_bytes(inner[0].as_string(policy=policy.compat32))
    if isinstance(inner, str):
        return _to_bytes(inner)
    return b""


def _walk(part: Message, body: _Body, notes: _Notes, limits: _Limits, depth: int = 0) -> None:
    if depth > _MAX_DEPTH:
        notes.add("MIME nesting too deep; deeper parts ignored")
        return
    for defect in getattr(part, "defects", []):
        name = type(defect).__name__
        text = _DEFECTS.get(name)
        if text and name in _HEADER_DEFECTS and depth == 0:
            notes.header(text)
        elif text:
            notes.add(text)
    content_type = _content_type(part)
    maintype = content_type.split("/", 1)[0]

    if content_type in loops.REPORT_PART_TYPES:
        return  # machine-readable report parts: read by loops.find_bounce, not shown
    if maintype == "message":
        filename = _filename(part, notes) or "forwarded-message.eml"
        _add_attachment(
            body,
            limits,
            filename=filename,
            content_type=content_type,
            content=_message_part_bytes(part),
            content_id=None,
        )
        return
    if part.is_multipart():
        children = [child for child in part.get_payload() if isinstance(child, Message)]
        if content_type == "multipart/report" and children:
            # RFC 6522: the first part is for people, the rest (status, returned mail) for machines.
            _walk(children[0], body, notes, limits, depth + 1)
            return
        for child in children:
            _walk(child, body, notes, limits, depth + 1)
        epilogue = part.epilogue
        if epilogue and re.search(r"(?m)^--\S", epilogue):
            _salvage(
                epilogue, body, notes, limits, depth, note="parts after the closing boundary were recovered"
            )
        return
    if maintype == "multipart":
        payload = part.get_payload()
        text = payload if isinstance(payload, str) else ""
        note = "multipart boundary did not match; parts recovered from the delimiter lines present"
        if text.strip() and not _salvage(text, body, notes, limits, depth, note=note):
            notes.add("multipart without a usable boundary; read its body as plain text")
            data = _to_bytes(text)
            decoded = decode_bytes(data, _param(part, "charset"), notes.add, "text/plain")
            decoded = _clean(_normalize_newlines(decoded))
            if decoded.strip():
                body.plain.append(decoded)
        return

    disposition = None
    try:
        disposition = part.get_content_disposition()
    except Exception:  # noqa: BLE001
        disposition = None
    filename = _filename(part, notes)
    if content_type in ("text/plain", "text/html") and disposition != "attachment" and not filename:
        _add_text_part(part, body, notes, content_type)
        return
    content_id = _header(part, "content-id")
    if content_id:
        content_id = content_id.strip().strip("<>").strip() or None
    _add_attachment(
        body,
        limits,
        filename=filename,
        content_type=content_type,
        content=_payload_bytes(part, notes, is_text=maintype == "text"),
        content_id=content_id,
    )


def _salvage(payload: str, body: _Body, notes: _Notes, limits: _Limits, depth: int, *, note: str) -> bool:
    """Re-split a multipart on the delimiter lines really present (wrong or missing boundary).

    A delimiter candidate is a `--something` line followed by a header line; every part found
    is parsed on its own. Returns False when there is nothing that looks like a part.
    """
    lines = _to_bytes(payload).split(b"\n")
    starts = [
        index
        for index, line in enumerate(lines[:-1])
        if _DELIMITER.match(line.rstrip(b"\r")) and _HEADER_LINE.match(lines[index + 1])
    ]
    if not starts:
        return False
    notes.add(note)
    delimiters = {index for index, line in enumerate(lines) if _DELIMITER.match(line.rstrip(b"\r"))}
    for start in starts:
        end = next((i for i in sorted(delimiters) if i > start), len(lines))
        chunk = b"\n".join(lines[start + 1 : end])
        _walk(_parse_bytes(chunk, notes), body, notes, limits, depth + 1)
    return True


# --- the whole message --------------------------------------------------------------------------


def _first(headers: Mapping[str, list[str]], name: str) -> str | None:
    values = headers.get(name)
    return values[0] if values else None


def parse_email(
    raw: bytes,
    *,
    max_attachments: int = MAX_ATTACHMENTS,
    max_attachment_bytes: int = MAX_ATTACHMENT_BYTES,
) -> ParsedEmail:
    """Parse raw RFC 822 bytes. Never raises on malformed mail; see `parse_warnings`."""
    raw = bytes(raw)
    notes = _Notes()
    limits = _Limits(max_attachments, max_attachment_bytes)
    try:
        return _parse(raw, notes, limits)
    except Exception as exc:  # noqa: BLE001 - hostile mail must still become a message
        notes.header(f"parser error ({type(exc).__name__}); kept the raw body as text")
        return _fallback(raw, notes)


def _parse(raw: bytes, notes: _Notes, limits: _Limits) -> ParsedEmail:
    data, recovered = _recover_headers(raw)
    if recovered:
        notes.header("blank line inside the header block; the headers after it were recovered")
    msg = _parse_bytes(data, notes)
    headers = _decoded_headers(msg, notes)
    message_id, synthesized = message_id_of(raw)

    subject = _first(headers, "subject") or ""
    senders = _addresses(_first(headers, "from"))
    if not senders:
        notes.header("missing or unparseable From header")
    from_name, from_email = senders[0] if senders else (None, None)
    reply_to = next(iter(_addresses(_first(headers, "reply-to"))), (None, None))[1]
    to = _unique([spec for values in headers.get("to", []) for _, spec in _addresses(values)])
    cc = _unique([spec for values in headers.get("cc", []) for _, spec in _addresses(values)])
    in_reply_to = next(iter(message_ids(_first(headers, "in-reply-to"))), None)
    references = message_ids(" ".join(headers.get("references", [])))
    date = _parse_date(_first(headers, "date"), notes)

    body = _Body()
    _walk(msg, body, notes, limits)
    if body.plain:
        text, text_from_html = "\n\n".join(p.strip("\n") for p in body.plain).rstrip(), False
    elif body.html:
        text, text_from_html = "\n\n".join(html_to_text(h) for h in body.html).strip("\n").rstrip(), True
    else:
        text, text_from_html = "", False
    html = "\n".join(body.html) if body.html else None
    if body.skipped:
        notes.add(
            f"{len(body.skipped)} attachment(s) skipped (at most {limits.max_attachments}, "
            f"{limits.max_attachment_bytes} bytes each)"
        )

    reason = loops.auto_reply_reason(headers, subject)
    bounce = loops.find_bounce(msg, headers, subject, text)
    if bounce is not None:
        reason = reason or "Delivery status notification (failure)"
    elif loops.delayed_report(msg):
        reason = reason or "Delivery status notification (delayed)"
    elif loops.report_type(msg) == "disposition-notification":
        reason = reason or "Read receipt (disposition notification)"
    elif reason is None and loops.has_null_return_path(headers):
        reason = "Return-Path: <>"

    shown = _display_text(text, html, text_from_html=text_from_html) if text else ""
    return ParsedEmail(
        message_id=message_id,
        in_reply_to=in_reply_to,
        references=references,
        subject=subject,
        from_name=from_name,
        from_email=from_email,
        to=to,
        cc=cc,
        reply_to=reply_to,
        date=date,
        text=text,
        html=html,
        display_text=shown,
        attachments=body.attachments,
        is_auto_reply=reason is not None,
        auto_reply_reason=reason,
        bounce=bounce,
        parse_warnings=notes.items,
        headers_ok=not notes.header_problem,
        message_id_synthesized=synthesized,
        text_from_html=text_from_html,
        skipped_attachments=body.skipped,
        headers=headers,
    )


def _unique(addresses: list[str]) -> list[str]:
    seen: set[str] = set()
    result = []
    for address in addresses:
        if address.lower() not in seen:
            seen.add(address.lower())
            result.append(address)
    return result


def _fallback(raw: bytes, notes: _Notes) -> ParsedEmail:
    """The last resort: the raw body decoded as text, the Subject if it can be found."""
    head, _separator, body_bytes = _split_head(raw)
    try:
        message_id, synthesized = message_id_of(raw)
    except Exception:  # noqa: BLE001
        message_id = f"<{hashlib.sha256(raw).hexdigest()}@{SYNTHETIC_ID_DOMAIN}>"
        synthesized = True
    subject_match = re.search(rb"(?im)^subject:[ \t]*(.*(?:\r?\n[ \t].*)*)", head)
    subject = ""
    if subject_match:
        subject = decode_header_value(
            "Subject", subject_match.group(1).decode("ascii", "surrogateescape"), notes
        )
    text = _clean(_normalize_newlines(decode_bytes(body_bytes, None, notes.add, "body")))
    return ParsedEmail(
        message_id=message_id,
        in_reply_to=None,
        references=[],
        subject=subject,
        from_name=None,
        from_email=None,
        to=[],
        cc=[],
        reply_to=None,
        date=None,
        text=text,
        html=None,
        display_text=text,
        attachments=[],
        is_auto_reply=False,
        auto_reply_reason=None,
        bounce=None,
        parse_warnings=notes.items,
        headers_ok=False,
        message_id_synthesized=synthesized,
    )
