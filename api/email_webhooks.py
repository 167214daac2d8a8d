"""Inbound email over HTTP, and the stored original of an email message.

- `POST /webhooks/email/{project_id}/inbound`: the raw RFC 822 message as the body, signed
  `X-Ticketwire-Signature: sha256=<HMAC-SHA256 of the body>` with the inbound secret of any of
  the project's email configs (the one whose secret matches is the receiving config).
- `POST /webhooks/email/{project_id}/inbound/sendgrid`: SendGrid Inbound Parse
  (multipart/form-data; "POST the raw, full MIME message" recommended, the parsed mode is
  rebuilt).
- `POST /webhooks/email/{project_id}/inbound/postmark`: Postmark's inbound JSON
  ("Include raw email content" recommended; rebuilt from the parsed fields otherwise).
  Neither provider can sign with our secret, so both authenticate with the inbound secret in
  the URL they are given: HTTP Basic credentials (`https://any:<secret>@host/...`, which both
  providers support in their webhook URLs) or, for proxies that strip credentials, a
  `?secret=<secret>` query parameter.

The order of checks follows api/webhooks.py: no email config in the project 404, bad
signature or secret 401 (generic body), malformed body 400, duplicate 200. Storing is one
insert; parsing and threading happen in the ingest worker.

- `GET …/tickets/{id}/messages/{message_id}/full_email`: the original as received
  (`message/rfc822`); `GET …/messages/{message_id}/attachments/{index}`: one attachment (of an
  inbound email, or a file the team attached to a reply or note).
- `GET /api/conversations/v1/attachments/{message_id}/{index}/{token}/{filename}`: a file of a
  team reply for its recipient on another channel (no API key; services.attachments).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import uuid
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from api.deps import Principal, require
from api.errors import error_body
from api.routing import SlashRouter, include_project_router
from channels.email import raw_from_postmark, raw_from_sendgrid
from channels.email.listener import MAX_MESSAGE_BYTES
from channels.email.signature import SIGNATURE_HEADER
from channels.email.signature import verify as verify_signature
from channels.errors import InvalidSignatureError, MalformedPayloadError
from core.db import session_scope
from services import attachments, email_configs, email_inbound
from services import tickets as ticket_service
from services.errors import NotFoundError
from workers import metrics

router = APIRouter(tags=["webhooks"])
messages_router = SlashRouter(tags=["tickets"])
READ = require("ticket:read")


class _NoEmailConfig(Exception):
    pass


def _secrets(project_id: int) -> list[tuple[uuid.UUID, str]]:
    with session_scope(read_only=True) as session:
        configs = email_configs.configs_for_project(session=session, project_id=project_id)
        pairs = [(c.id, str(email_configs.load_secrets(c).get("inbound_secret") or "")) for c in configs]
    if not pairs:
        raise _NoEmailConfig
    return pairs


def _config_by_signature(project_id: int, body: bytes, header: str | None) -> uuid.UUID:
    for config_id, secret in _secrets(project_id):
        try:
            verify_signature(body, header, secret)
        except InvalidSignatureError:
            continue
        return config_id
    raise InvalidSignatureError("no inbound secret of this project signed the body")


def _config_by_secret(project_id: int, provided: str | None) -> uuid.UUID:
    pairs = _secrets(project_id)
    if provided:
        for config_id, secret in pairs:
            if secret and hmac.compare_digest(secret.encode(), provided.encode()):
                return config_id
    raise InvalidSignatureError("wrong or missing inbound secret")


def _provided_secret(request: Request) -> str | None:
    """The inbound secret from HTTP Basic credentials (the password) or `?secret=`."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "basic" and value:
        try:
            _user, _, password = base64.b64decode(value.strip()).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            password = ""
        if password:
            return password
    return request.query_params.get("secret") or None


def _store(project_id: int, raw: bytes, config_id: uuid.UUID, source: str) -> bool:
    with session_scope() as session:
        stored = email_inbound.store_email(session=session, project_id=project_id, raw=raw, config_id=config_id,
                                           source=source)
    return stored.created


def _not_found() -> JSONResponse:
    metrics.WEBHOOKS.labels("email", "not_configured").inc()
    return JSONResponse(error_body("invalid_request", "not_found", "Not found."), status_code=404)


def _unauthorized() -> JSONResponse:
    metrics.WEBHOOKS.labels("email", "unauthorized").inc()
    return JSONResponse(error_body("authentication_error", "invalid_signature", "Invalid signature."), status_code=401)


def _malformed(detail: str) -> JSONResponse:
    metrics.WEBHOOKS.labels("email", "malformed").inc()
    return JSONResponse(error_body("validation_error", "malformed", detail), status_code=400)


async def _accept(project_id: int, raw: bytes, config_id: uuid.UUID, source: str) -> Response:
    if not raw.strip():
        return _malformed("empty message")
    created = await run_in_threadpool(_store, project_id, raw, config_id, source)
    metrics.WEBHOOKS.labels("email", "accepted" if created else "duplicate").inc()
    return JSONResponse({"ok": True, "duplicate": not created}, status_code=200)


@router.post("/webhooks/email/{project_id}/inbound", summary="Inbound email: raw RFC 822, signed")
async def inbound_raw(project_id: int, request: Request) -> Response:
    body = await request.body()
    try:
        config_id = await run_in_threadpool(_config_by_signature, project_id, body,
                                            request.headers.get(SIGNATURE_HEADER))
    except _NoEmailConfig:
        return _not_found()
    except InvalidSignatureError:
        return _unauthorized()
    return await _accept(project_id, body, config_id, "http")


async def _authenticated_by_secret(project_id: int, request: Request) -> uuid.UUID | Response:
    try:
        return await run_in_threadpool(_config_by_secret, project_id, _provided_secret(request))
    except _NoEmailConfig:
        return _not_found()
    except InvalidSignatureError:
        return _unauthorized()


@router.post("/webhooks/email/{project_id}/inbound/sendgrid", summary="Inbound email: SendGrid Inbound Parse")
async def inbound_sendgrid(project_id: int, request: Request) -> Response:
    config_id = await _authenticated_by_secret(project_id, request)
    if isinstance(config_id, Response):
        return config_id
    try:
        # The raw message travels as a plain form field; Starlette's default part limit is 1 MB.
        form = await request.form(max_part_size=MAX_MESSAGE_BYTES)
    except Exception as exc:  # noqa: BLE001 - python-multipart / Starlette raise several types
        return _malformed(f"not a multipart/form-data body: {type(exc).__name__}")
    fields: dict[str, str | bytes] = {}
    for name, value in form.multi_items():
        fields[name] = await value.read() if isinstance(value, UploadFile) else value
    await form.close()
    try:
        raw = raw_from_sendgrid(fields)
    except MalformedPayloadError as exc:
        return _malformed(str(exc))
    return await _accept(project_id, raw, config_id, "sendgrid")


@router.post("/webhooks/email/{project_id}/inbound/postmark", summary="Inbound email: Postmark inbound webhook")
async def inbound_postmark(project_id: int, request: Request) -> Response:
    config_id = await _authenticated_by_secret(project_id, request)
    if isinstance(config_id, Response):
        return config_id
    try:
        payload: Any = json.loads(await request.body())
        if not isinstance(payload, dict):
            raise MalformedPayloadError("the body is not a JSON object")
        raw = raw_from_postmark(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        return _malformed(f"body is not valid JSON: {exc}")
    except MalformedPayloadError as exc:
        return _malformed(str(exc))
    return await _accept(project_id, raw, config_id, "postmark")


def _message_uuid(message_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(message_id)
    except ValueError:
        raise NotFoundError("Not found.", attr="message_id") from None


@messages_router.get(
    "/tickets/{ticket_id}/messages/{message_id}/full_email",
    summary="The original email of an inbound message, as received (message/rfc822)",
)
def full_email(project_id: int, ticket_id: str, message_id: str, principal: Principal = Depends(READ)) -> Response:
    with session_scope(read_only=True) as session:
        ticket = ticket_service.get_ticket(session=session, project_id=project_id, ref=ticket_id)
        raw = email_inbound.raw_email_for(session=session, ticket=ticket, message_id=_message_uuid(message_id))
    if raw is None:
        raise NotFoundError("This message has no stored original email.", attr="message_id")
    return Response(raw, media_type="message/rfc822",
                    headers={"Content-Disposition": f'attachment; filename="{message_id}.eml"'})


@messages_router.get(
    "/tickets/{ticket_id}/messages/{message_id}/attachments/{index}",
    summary="One attachment of a message (an inbound email's file, or one the team attached)",
)
def email_attachment(
    project_id: int, ticket_id: str, message_id: str, index: int, principal: Principal = Depends(READ)
) -> Response:
    with session_scope(read_only=True) as session:
        ticket = ticket_service.get_ticket(session=session, project_id=project_id, ref=ticket_id)
        found = email_inbound.attachment_for(session=session, ticket=ticket, message_id=_message_uuid(message_id),
                                             index=index)
    if found is None:
        raise NotFoundError("No such attachment.", attr="index")
    return _download(found.filename, found.content_type, found.content)


@router.get("/api/conversations/v1/attachments/{message_id}/{index}/{token}/{filename:path}", include_in_schema=False)
def public_attachment(message_id: str, index: int, token: str, filename: str) -> Response:
    """A file of a team reply, for its recipient on Slack, GitHub or Teams (the link in the
    posted reply; services.attachments.public_link). No API key: the token is the key."""
    with session_scope(read_only=True) as session:
        found = attachments.read_public_link(session=session, message_id=_message_uuid(message_id), index=index,
                                             token=token)
    if found is None:
        raise NotFoundError("No such attachment.")
    return _download(found.filename, found.content_type, found.content)


def _download(filename: str, content_type: str, content: bytes) -> Response:
    safe_name = filename.replace('"', "").replace("\r", "").replace("\n", "")
    ascii_name = safe_name.encode("ascii", "replace").decode("ascii").replace("?", "_")
    headers = {
        # Always a download, never rendered by the API's origin (an HTML attachment is the
        # sender's content, not ours).
        "Content-Disposition": f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(safe_name)}",
        "X-Content-Type-Options": "nosniff",
    }
    return Response(content, media_type=content_type, headers=headers)


def mount(app: FastAPI) -> None:
    app.include_router(router)
    include_project_router(app, messages_router)
