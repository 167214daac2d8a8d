"""Inbound webhooks: verify, store the raw event, acknowledge. Parsing happens in a worker.

The order of checks follows Sentry's GitHub webhook: unknown project or channel 404, bad
signature 401 (generic body), handshake answered, malformed body 400, duplicate 200.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from api.errors import error_body
from channels.base import ChannelAdapter, RawRequest
from channels.errors import ChannelNotConfiguredError, InvalidSignatureError, MalformedPayloadError
from core.db import session_scope
from services import inbound, integrations
from workers import metrics

log = logging.getLogger(__name__)
router = APIRouter(tags=["webhooks"])


IGNORED_REPOSITORY = "ignored: the repository is not in the integration's repositories"


def _store(project_id: int, channel: str, event_id: str, raw: RawRequest, ignored: str | None = None) -> bool:
    with session_scope() as session:
        stored = inbound.store_raw_event(session=session, project_id=project_id, channel=channel, event_id=event_id,
                                         body=raw.body, headers=dict(raw.headers))
        if ignored and stored.created:
            # Recorded for the operator (and replayable once the list changes), never parsed:
            # the ingest message queued by the insert finds the event finished and does nothing.
            inbound.finish_raw_event(session=session, raw_event_id=stored.id, status="ignored", error=ignored)
    return stored.created


async def receive(channel: str, project_id: int, request: Request) -> Response:
    raw = RawRequest.build(await request.body(), dict(request.headers), dict(request.query_params))
    try:
        adapter: ChannelAdapter = await run_in_threadpool(integrations.adapter_for, project_id=project_id, channel=channel)
    except ChannelNotConfiguredError:
        metrics.WEBHOOKS.labels(channel, "not_configured").inc()
        return JSONResponse(error_body("invalid_request", "not_found", "Not found."), status_code=404)
    try:
        adapter.verify(raw)
    except InvalidSignatureError:
        metrics.WEBHOOKS.labels(channel, "unauthorized").inc()
        return JSONResponse(error_body("authentication_error", "invalid_signature", "Invalid signature."), status_code=401)
    except MalformedPayloadError as exc:
        metrics.WEBHOOKS.labels(channel, "malformed").inc()
        return JSONResponse(error_body("validation_error", "malformed", str(exc)), status_code=400)
    try:
        handshake = adapter.handshake(raw)
        if handshake is not None:
            metrics.WEBHOOKS.labels(channel, "handshake").inc()
            return Response(handshake.body, status_code=handshake.status, media_type=handshake.content_type)
        event_id = adapter.event_id(raw)
        # GitHub: an organisation hook reports every repository; events of those outside the
        # integration's list are answered 200 (anything else lists as a failed delivery under
        # the hook's Recent Deliveries) and recorded as ignored with the reason.
        is_ignored = getattr(adapter, "is_ignored_repository", None)
        ignored = IGNORED_REPOSITORY if callable(is_ignored) and is_ignored(raw) else None
    except MalformedPayloadError as exc:
        metrics.WEBHOOKS.labels(channel, "malformed").inc()
        return JSONResponse(error_body("validation_error", "malformed", str(exc)), status_code=400)
    created = await run_in_threadpool(_store, project_id, channel, event_id, raw, ignored)
    metrics.WEBHOOKS.labels(channel, "ignored" if ignored else "accepted" if created else "duplicate").inc()
    answer: dict[str, Any] = {"ok": True, "duplicate": not created}
    if ignored:
        answer["ignored"] = True
    return JSONResponse(answer, status_code=200)


@router.post("/webhooks/slack/{project_id}/events", summary="Slack Events API")
async def slack_events(project_id: int, request: Request) -> Response:
    return await receive("slack", project_id, request)


@router.post("/webhooks/github/{project_id}", summary="GitHub webhooks")
async def github_webhook(project_id: int, request: Request) -> Response:
    return await receive("github", project_id, request)


@router.post("/webhooks/teams/{project_id}/messages", summary="Microsoft Teams (Bot Framework) activities")
async def teams_messages(project_id: int, request: Request) -> Response:
    return await receive("teams", project_id, request)


def mount(app: FastAPI) -> None:
    app.include_router(router)
