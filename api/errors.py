"""Every error answers JSON `{type, code, detail, attr}` (PostHog's shape), with the field in `attr`."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.errors import ServiceError

log = logging.getLogger(__name__)


def error_body(type_: str, code: str, detail: str, attr: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"type": type_, "code": code, "detail": detail, "attr": attr, **extra}


class ApiError(Exception):
    def __init__(self, status: int, type_: str, code: str, detail: str, attr: str | None = None,
                 headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.body, self.headers = status, error_body(type_, code, detail, attr, **extra), headers


def not_authenticated() -> ApiError:
    return ApiError(401, "authentication_error", "not_authenticated", "Authentication credentials were not provided.")


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(ServiceError)
    async def _service_error(_: Request, exc: ServiceError) -> JSONResponse:
        extra = {"error_type": exc.error_type} if hasattr(exc, "error_type") else {}
        return JSONResponse(error_body(exc.type, exc.code, exc.detail, exc.attr, **extra), status_code=exc.status_code)

    @app.exception_handler(DataError)
    async def _data_error(_: Request, exc: DataError) -> JSONResponse:
        # A value the database cannot hold (a NUL character in text on PostgreSQL, a number out
        # of range): bad input, and the unit of work has already been rolled back.
        return JSONResponse(error_body("validation_error", "invalid_input", "A value cannot be stored."), status_code=400)

    @app.exception_handler(Exception)
    async def _server_error(_: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error", exc_info=exc)
        return JSONResponse(error_body("server_error", "error", "A server error occurred."), status_code=500)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        # compose answers 400 `{detail, error_type}` (the seed's shape) on top of our usual keys.
        extra = {"error_type": "invalid_input"} if request.url.path.rstrip("/").endswith("/tickets/compose") else {}
        errors = exc.errors()
        first = errors[0] if errors else {}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path", "header")]
        kind = first.get("type", "")
        if kind == "json_invalid":
            return JSONResponse(error_body("validation_error", "parse_error", "Malformed JSON body.", **extra),
                                status_code=400)
        attr = ".".join(loc) or None
        if kind == "missing" and not loc:
            return JSONResponse(error_body("validation_error", "parse_error", "A JSON body is required.", **extra),
                                status_code=400)
        detail = str(first.get("msg", "Invalid input."))
        return JSONResponse(error_body("validation_error", "invalid_input", detail, attr, **extra), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if type(exc.__cause__).__name__ == "_TooLarge":
            # A streamed (chunked) body went over the limit while FastAPI was reading it; FastAPI
            # wraps any error raised while reading a body into a 400, so unwrap it here.
            limit = exc.__cause__.limit if hasattr(exc.__cause__, "limit") else None
            detail = f"Request body is larger than {limit} bytes." if limit else "Request body is too large."
            return JSONResponse(error_body("invalid_request", "too_large", detail), status_code=413)
        code = {404: "not_found", 405: "method_not_allowed", 401: "not_authenticated", 413: "too_large"}.get(
            exc.status_code, "error"
        )
        return JSONResponse(
            error_body("invalid_request", code, str(exc.detail)), status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )
