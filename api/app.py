"""The FastAPI application factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import tickets, webhooks
from api.errors import error_body, install_error_handlers
from api.routing import include_project_router
from core.db import DATABASE_POOL_SIZE
from core.heap import freeze_startup_objects
from core.settings import get_settings
from services.attachments import MAX_FILE_BYTES, MAX_FILES, MAX_TOTAL_BYTES

log = logging.getLogger(__name__)


class BodySizeLimit:
    """Answer 413 before reading more than `limit` bytes (Content-Length or streamed)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await self._reject(scope, receive, send, limit)
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge()
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _TooLarge:
            await self._reject(scope, receive, send, limit)

    def limit_for(self, path: str) -> int:
        # Raw email may carry 20 attachments of up to 10 MB each.
        if path.startswith("/webhooks/email/"):
            return 25 * 1024 * 1024
        # A campaign's CSV upload holds up to 50,000 recipients.
        if path.rstrip("/").endswith("/conversations/campaigns"):
            return 20 * 1024 * 1024
        if _is_reply(path):
            return REPLY_BODY_LIMIT
        return self.limit

    async def _reject(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        detail, attr = f"Request body is larger than {limit} bytes.", None
        if _is_reply(scope["path"]):
            detail += (f" A reply's attachments may add up to {MAX_TOTAL_BYTES // 2**20} MB (at most "
                       f"{MAX_FILES} files of {MAX_FILE_BYTES // 2**20} MB each).")
            attr = "attachments"
        response = JSONResponse(error_body("invalid_request", "too_large", detail, attr), status_code=413)
        await response(scope, receive, send)


# A reply's files (services.attachments: 25 MB in all) base64-encoded in JSON (+1/3), plus the
# text: 36 MB. Not 20 files × 10 MB: JSON bodies are read whole, and mail providers refuse
# messages over 25–35 MB anyway. Multipart uploads carry the same files in less.
REPLY_BODY_LIMIT = 36 * 1024 * 1024


def _is_reply(path: str) -> bool:
    return path.rstrip("/").endswith("/reply") and "/conversations/tickets/" in path


class _TooLarge(Exception):
    pass


def _embedded_workers_enabled() -> bool:
    """Worker threads and periodic jobs inside the web process: the embedded mode (no Redis),
    unless TICKETWIRE_EMBEDDED_WORKERS=0 (tests that drive workers themselves)."""
    import os

    return not get_settings().redis_url and os.environ.get("TICKETWIRE_EMBEDDED_WORKERS", "1") != "0"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    import workers.actors
    from services.dispatch import install_dispatcher

    install_dispatcher(workers.actors.dispatch)
    # Blocking handlers run in anyio's thread pool (40 threads by default); more threads than
    # pooled database connections only makes the pool open and close overflow connections.
    from anyio import to_thread

    to_thread.current_default_thread_limiter().total_tokens = DATABASE_POOL_SIZE

    worker = scheduler = None
    if _embedded_workers_enabled():
        from workers.broker import make_worker
        from workers.periodic import Scheduler

        worker = make_worker(threads=4)
        worker.start()
        scheduler = Scheduler()
        scheduler.start_thread()
        log.info("embedded mode: worker threads and periodic jobs run in this process")
    freeze_startup_objects()
    try:
        yield
    finally:
        if scheduler is not None:
            scheduler.stop()
        if worker is not None:
            worker.stop()


class App(FastAPI):
    """FastAPI, with the vendors' webhooks answered ahead of its middleware and routing
    (`api.webhooks` says why), inside the same body-size limit."""

    direct_webhooks: ASGIApp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if webhooks.is_direct(scope):
            await self.direct_webhooks(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def create_app() -> FastAPI:
    settings = get_settings()
    app = App(
        title="ticketwire",
        version="0.1.0",
        description="A multichannel support inbox back end with PostHog's conversations API.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    from api import registry

    registry.mount_first(app)
    include_project_router(app, tickets.router)
    _include_optional_routers(app)
    app.add_middleware(BodySizeLimit, limit=settings.max_body_bytes)
    app.direct_webhooks = BodySizeLimit(webhooks.answer, limit=settings.max_body_bytes)
    return app


def _include_optional_routers(app: FastAPI) -> None:
    """Routers that live in their own modules (ops, webhooks, integrations, …)."""
    from api import registry

    registry.mount_all(app)
