"""Files the team attaches to a reply or an internal note: validated, stored, listed, sent.

- Limits: at most 20 files of at most 10 MB each (the inbound limits of issue 5) and 25 MB in
  all. The total is what common providers take in one mail (Gmail and Outlook both stop at
  25 MB of attachments); the API's body limit on the reply path fits it base64-encoded in JSON.
- The bytes live in `message_attachments`, one row per file; the message lists them in
  `attachments` with the same keys as an inbound email's files (`index, filename,
  content_type, size, content_id, inline, url`), and both are served by
  `GET …/tickets/{id}/messages/{message_id}/attachments/{index}`.
- Delivery: email sends the bytes as MIME attachments (services.email_configs). Every other
  channel gets each file as a link (`OutboundReply.attachments` with a `url` and no bytes) to
  `public_link`: an unguessable address (an HMAC of the message id and position under the
  instance's secret key) that lets the customer download that one file without an API key,
  for as long as the message exists.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import mimetypes
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from sqlalchemy import select
from sqlalchemy.orm import Session

from channels.base import Attachment
from channels.email.parse import MAX_ATTACHMENT_BYTES, MAX_ATTACHMENTS
from core.crypto import hmac_sha256_hex
from core.settings import get_settings
from models import Message, MessageAttachment
from services.errors import ServiceError, ValidationError

MAX_FILES = MAX_ATTACHMENTS
MAX_FILE_BYTES = MAX_ATTACHMENT_BYTES
MAX_TOTAL_BYTES = 25 * 1024 * 1024
MAX_FILENAME_LENGTH = 255
ATTR = "attachments"
_MIME_NAME = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$")  # RFC 6838 §4.2
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MB = 1024 * 1024


class AttachmentsTooLargeError(ServiceError):
    """413: the files are over a size limit (named in `attr` = "attachments")."""

    status_code = 413
    type = "invalid_request"
    code = "too_large"


@dataclass(frozen=True)
class Upload:
    """One file as the team sent it, checked."""

    filename: str
    content_type: str
    content: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


def _describe(index: int, name: Any) -> str:
    return f"Attachment {index + 1}" + (f" ({name})" if isinstance(name, str) and name.strip() else "")


def _filename(index: int, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{_describe(index, None)} needs a filename.", attr=ATTR)
    # Browsers and old clients send paths ("C:\\Users\\ann\\invoice.pdf"): the last part is the name.
    name = value.replace("\\", "/").rsplit("/", 1)[-1].strip()
    if not name or name in (".", ".."):
        raise ValidationError(f"{_describe(index, value)} needs a filename.", attr=ATTR)
    if _CONTROL.search(name):
        raise ValidationError(f"{_describe(index, None)}: the filename holds control characters.", attr=ATTR)
    if len(name) > MAX_FILENAME_LENGTH:
        raise ValidationError(f"{_describe(index, None)}: the filename is longer than {MAX_FILENAME_LENGTH} "
                              "characters.", attr=ATTR)
    return name


def _content_type(index: int, name: str, value: Any) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        guessed, _encoding = mimetypes.guess_type(name, strict=False)
        return guessed or "application/octet-stream"
    if not isinstance(value, str):
        raise ValidationError(f"{_describe(index, name)}: content_type must be a string.", attr=ATTR)
    clean = value.partition(";")[0].strip().lower()
    if not _MIME_NAME.match(clean):
        raise ValidationError(f"{_describe(index, name)}: '{value[:100]}' is not a media type such as "
                              "application/pdf.", attr=ATTR)
    return clean


def _check_size(index: int, name: str, size: int) -> None:
    if size > MAX_FILE_BYTES:
        raise AttachmentsTooLargeError(
            f"{_describe(index, name)} is larger than {MAX_FILE_BYTES // _MB} MB.", attr=ATTR)


def check(uploads: Sequence[Upload]) -> list[Upload]:
    """The files of one message, within the limits (400 or 413 naming `attachments`)."""
    if len(uploads) > MAX_FILES:
        raise ValidationError(f"A message takes at most {MAX_FILES} attachments ({len(uploads)} given).", attr=ATTR)
    checked: list[Upload] = []
    total = 0
    for index, upload in enumerate(uploads):
        name = _filename(index, upload.filename)
        _check_size(index, name, len(upload.content))
        total += len(upload.content)
        checked.append(Upload(name, _content_type(index, name, upload.content_type), upload.content))
    if total > MAX_TOTAL_BYTES:
        raise AttachmentsTooLargeError(
            f"The attachments add up to {total / _MB:.1f} MB; a message takes at most {MAX_TOTAL_BYTES // _MB} MB "
            "in all.", attr=ATTR)
    return checked


def from_json(items: Any) -> list[Upload]:
    """`[{filename, content_type?, content_base64}]` of a JSON request → checked uploads."""
    if items is None:
        return []
    if not isinstance(items, list):
        raise ValidationError("Must be a list of {filename, content_type, content_base64} objects.", attr=ATTR)
    if len(items) > MAX_FILES:
        raise ValidationError(f"A message takes at most {MAX_FILES} attachments ({len(items)} given).", attr=ATTR)
    uploads = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise ValidationError(f"{_describe(index, None)} must be an object.", attr=ATTR)
        name = _filename(index, item.get("filename"))
        encoded = item.get("content_base64")
        if not isinstance(encoded, str):
            raise ValidationError(f"{_describe(index, name)} needs content_base64.", attr=ATTR)
        compact = re.sub(r"\s+", "", encoded)
        # Refuse an oversized file before decoding it (4 base64 characters carry 3 bytes).
        _check_size(index, name, len(compact) // 4 * 3 - compact[-2:].count("="))
        try:
            content = base64.b64decode(compact, validate=True)
        except (binascii.Error, ValueError):
            raise ValidationError(f"{_describe(index, name)}: content_base64 is not valid base64 (RFC 4648).",
                                  attr=ATTR) from None
        uploads.append(Upload(name, item.get("content_type"), content))
    return check(uploads)


def fingerprint(uploads: Sequence[Upload]) -> list[tuple[str, str, str]]:
    """What identifies the files of a request for the 120 s replay rule."""
    return [(u.filename, u.content_type, u.sha256) for u in uploads]


def file_url(*, project_id: int, ticket_id: uuid.UUID, message_id: uuid.UUID, index: int) -> str:
    """The API address of one file of a message (team members, API key with ticket:read)."""
    return f"/api/projects/{project_id}/conversations/tickets/{ticket_id}/messages/{message_id}/attachments/{index}"


def store(*, session: Session, message: Message, uploads: Sequence[Upload]) -> None:
    """Write the files of a new team message and list them on it (the caller's transaction)."""
    if not uploads:
        return
    listed = []
    for index, upload in enumerate(uploads):
        session.add(MessageAttachment(
            id=uuid.uuid4(), project_id=message.project_id, message_id=message.id, position=index,
            filename=upload.filename, content_type=upload.content_type, size=len(upload.content),
            sha256=upload.sha256, content=upload.content,
        ))
        listed.append({
            "index": index, "filename": upload.filename, "content_type": upload.content_type,
            "size": len(upload.content), "content_id": None, "inline": False,
            "url": file_url(project_id=message.project_id, ticket_id=message.ticket_id, message_id=message.id,
                            index=index),
        })
    message.attachments = listed


@dataclass(frozen=True)
class StoredFile:
    filename: str
    content_type: str
    content: bytes


def stored_file(*, session: Session, message_id: uuid.UUID, index: int) -> StoredFile | None:
    """File `index` the team attached to a message, or None (an inbound email's files are in
    its raw mail: services.email_inbound.attachment_for)."""
    row = session.scalar(select(MessageAttachment).where(
        MessageAttachment.message_id == message_id, MessageAttachment.position == index))
    return StoredFile(row.filename, row.content_type, bytes(row.content)) if row is not None else None


def files_for_delivery(*, session: Session, message_id: uuid.UUID) -> tuple[Attachment, ...]:
    """The files of a message with their bytes, in order (the email channel sends them)."""
    rows = session.scalars(select(MessageAttachment).where(MessageAttachment.message_id == message_id)
                           .order_by(MessageAttachment.position))
    return tuple(Attachment(filename=r.filename, content_type=r.content_type, size=r.size, content=bytes(r.content))
                 for r in rows)


def _token(message_id: uuid.UUID, index: int) -> str:
    return hmac_sha256_hex(get_settings().secret_key, f"message-attachment:{message_id}:{index}".encode())[:32]


def public_link(*, message_id: uuid.UUID, index: int, filename: str) -> str:
    """The address a customer on Slack, GitHub or Teams downloads one file from."""
    base = get_settings().public_url
    return (f"{base}/api/conversations/v1/attachments/{message_id}/{index}/{_token(message_id, index)}/"
            f"{quote(filename, safe='')}")


def read_public_link(*, session: Session, message_id: uuid.UUID, index: int, token: str) -> StoredFile | None:
    """The file a public link names, when its token is right and the message still exists."""
    if not hmac.compare_digest(token.encode(), _token(message_id, index).encode()):
        return None
    message = session.get(Message, message_id)
    if message is None or message.deleted_at is not None:
        return None
    return stored_file(session=session, message_id=message_id, index=index)


def links_for(message: Message) -> tuple[Attachment, ...]:
    """A team message's files as links (no bytes), for `OutboundReply.attachments`."""
    return links_of(message_id=message.id, listed=message.attachments)


def links_of(*, message_id: uuid.UUID, listed: list[Any] | None) -> tuple[Attachment, ...]:
    """`links_for` from the message's id and `attachments` column (a delivery claim reads
    those columns, not the message)."""
    found = []
    for item in listed or []:
        if not isinstance(item, dict) or item.get("skipped") or "index" not in item:
            continue
        found.append(Attachment(
            filename=str(item.get("filename") or "attachment"), content_type=item.get("content_type"),
            size=item.get("size"),
            url=public_link(message_id=message_id, index=int(item["index"]), filename=str(item.get("filename") or "")),
        ))
    return tuple(found)
