"""The body of POST tickets/{id}/reply: JSON, or multipart/form-data when files are uploaded.

- JSON (`application/json`): `ReplyIn`, files as `attachments: [{filename, content_type?,
  content_base64}]`.
- multipart/form-data: the fields `message`, `is_private` (`true`/`false`) and `rich_content`
  (JSON text), and one file part named `attachments` per file (its filename and Content-Type
  are the file's). No base64, so large files cost a third less. A form without files
  (`application/x-www-form-urlencoded`) takes the same fields.

Both give a `ReplyRequest`. Errors answer like FastAPI's own body validation (400 with the
field in `attr`); the limits on the files are checked by services.attachments (400/413,
`attr` = "attachments"). Base64 is decoded in the handler's worker thread, not here on the
event loop.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pydantic
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from api.schemas import ReplyIn
from services import attachments
from services.errors import ValidationError

FILE_FIELDS = ("attachments", "attachments[]")
# A form without files (what an HTML form or `curl -d` posts) takes the same fields.
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


@dataclass(frozen=True)
class ReplyRequest:
    body: ReplyIn
    # Files of a multipart request; None for JSON, whose files are in body.attachments.
    uploads: list[attachments.Upload] | None = None

    def files(self) -> list[attachments.Upload]:
        """The request's files, decoded and checked (blocking: call from the handler's thread)."""
        if self.uploads is not None:
            return attachments.check(self.uploads)
        items = self.body.attachments
        return attachments.from_json([item.model_dump() for item in items] if items is not None else None)


def _invalid(errors: list[Any]) -> RequestValidationError:
    return RequestValidationError([{**error, "loc": ("body", *error.get("loc", ()))} for error in errors])


def _validate(data: Any) -> ReplyIn:
    try:
        return ReplyIn.model_validate(data)
    except pydantic.ValidationError as exc:
        raise _invalid(exc.errors(include_url=False)) from None


async def _from_form(request: Request) -> ReplyRequest:
    try:
        form = await request.form(max_fields=50)
    except HTTPException as exc:  # Starlette's answer to a body python-multipart cannot parse
        raise ValidationError(f"Malformed multipart/form-data body: {exc.detail}", code="parse_error") from None
    try:
        fields: dict[str, Any] = {}
        uploads: list[attachments.Upload] = []
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                if name not in FILE_FIELDS:
                    raise ValidationError(f"Unexpected file field '{name}': send files as 'attachments'.",
                                          attr=attachments.ATTR)
                # Clients label a file they cannot type application/octet-stream (curl -F does):
                # then the type is guessed from the filename, as for JSON without content_type.
                kind = "" if (value.content_type or "").lower() == "application/octet-stream" else value.content_type
                uploads.append(attachments.Upload(value.filename or "", kind or "", await value.read()))
            elif name in FILE_FIELDS:
                raise ValidationError("'attachments' parts must be files.", attr=attachments.ATTR)
            else:
                fields[name] = value
    finally:
        await form.close()
    data: dict[str, Any] = {key: fields[key] for key in ("message", "is_private") if key in fields}
    rich = fields.get("rich_content")
    if isinstance(rich, str) and rich.strip():
        try:
            data["rich_content"] = json.loads(rich)
        except ValueError:
            raise ValidationError("rich_content must be JSON.", attr="rich_content") from None
    if len(uploads) > attachments.MAX_FILES:
        raise ValidationError(f"A message takes at most {attachments.MAX_FILES} attachments.", attr=attachments.ATTR)
    return ReplyRequest(_validate(data), uploads)


async def reply_request(request: Request) -> ReplyRequest:
    """Dependency: the reply body, JSON or multipart/form-data."""
    if request.headers.get("content-type", "").lower().startswith(FORM_TYPES):
        return await _from_form(request)
    raw = await request.body()
    if not raw.strip():
        raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}])
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestValidationError([{"type": "json_invalid", "loc": ("body", 0), "msg": "JSON decode error",
                                       "input": {}, "ctx": {"error": str(exc)}}]) from None
    return ReplyRequest(_validate(data))


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    """A pydantic JSON schema with its `$defs` inlined (OpenAPI resolves `#/` from the document)."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return walk(dict(defs[ref.rsplit("/", 1)[1]]))
            return {key: walk(value) for key, value in node.items()}
        if isinstance(node, list):
            return [walk(item) for item in node]
        return node

    return dict(walk(schema))


def openapi_extra() -> dict[str, Any]:
    """The request body of the reply operation in the OpenAPI document (both content types)."""
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": _inline(ReplyIn.model_json_schema())},
        "multipart/form-data": {"schema": {
            "type": "object", "required": ["message"],
            "properties": {
                "message": {"type": "string"},
                "is_private": {"type": "boolean", "default": False},
                "rich_content": {"type": "string", "description": "JSON text"},
                "attachments": {"type": "array", "items": {"type": "string", "format": "binary"},
                                "maxItems": attachments.MAX_FILES},
            },
        }},
    }}}
