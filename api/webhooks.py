"""Inbound webhooks: verify, store the raw event, acknowledge. Parsing happens in a worker.

The acknowledgement is one hop into the thread pool (`services.webhook_intake.accept`): the
signature check (HMAC, or RS256 for Teams) and the insert are blocking work, and a synchronous
database write on the event loop would stall every other request on a WAL checkpoint.

The vendors' webhooks are the busiest path and must be answered within their timeouts, so
`answer` serves them as a plain ASGI handler ahead of FastAPI: measured with py-spy
under wrk, the middleware stack, routing over the API's routes and dependency solving were
two thirds of an acknowledgement's CPU and the acknowledgement itself one third. The FastAPI
routes below stay for the OpenAPI document and for any request the direct path declines.
"""

from __future__ import annotations

import logging
import re

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from api.errors import error_body
from channels.base import RawRequest
from services import webhook_intake
from workers import metrics

log = logging.getLogger(__name__)

router = APIRouter(tags=["webhooks"])

# The paths of the routes below. Project ids of more digits are left to FastAPI (whose `int`
# path parameter answers exactly as it always has).
_DIRECT_PATHS = re.compile(r"/webhooks/(?:(slack)/([0-9]{1,9})/events|(github)/([0-9]{1,9})|(teams)/([0-9]{1,9})/messages)")


async def acknowledge(channel: str, project_id: int, raw: RawRequest) -> Response:
    ack = await run_in_threadpool(_accept, project_id, channel, raw)
    metrics.WEBHOOKS.labels(channel, ack.outcome).inc()
    if ack.raw_body is not None:
        return Response(ack.raw_body, status_code=ack.status, media_type=ack.content_type)
    return JSONResponse(ack.body, status_code=ack.status)


def _accept(project_id: int, channel: str, raw: RawRequest) -> webhook_intake.Acknowledgement:
    return webhook_intake.accept(project_id=project_id, channel=channel, raw=raw)


def is_direct(scope: Scope) -> bool:
    """A vendor webhook that `answer` serves (anything else is FastAPI's)."""
    return scope["type"] == "http" and scope["method"] == "POST" and _DIRECT_PATHS.fullmatch(scope["path"]) is not None


async def answer(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer a vendor webhook without FastAPI (the app puts its body-size limit around this)."""
    match = _DIRECT_PATHS.fullmatch(scope["path"])
    assert match is not None  # is_direct said so
    channel, project = [group for group in match.groups() if group is not None]
    raw = await raw_request(Request(scope, receive))  # outside the try: BodySizeLimit answers an oversized body
    try:
        response = await acknowledge(channel, int(project), raw)
    except Exception:  # the database or broker failing: the vendor sees a 500 and retries
        log.exception("webhook %s for project %s failed", channel, project)
        response = JSONResponse(error_body("server_error", "error", "A server error occurred."), status_code=500)
    await response(scope, receive, send)


async def raw_request(request: Request) -> RawRequest:
    return RawRequest.build(await request.body(), dict(request.headers), dict(request.query_params))


async def receive_with_fastapi(channel: str, project_id: int, request: Request) -> Response:
    return await acknowledge(channel, project_id, await raw_request(request))


@router.post("/webhooks/slack/{project_id}/events", summary="Slack Events API")
async def slack_events(project_id: int, request: Request) -> Response:
    return await receive_with_fastapi("slack", project_id, request)


@router.post("/webhooks/github/{project_id}", summary="GitHub webhooks")
async def github_webhook(project_id: int, request: Request) -> Response:
    return await receive_with_fastapi("github", project_id, request)


@router.post("/webhooks/teams/{project_id}/messages", summary="Microsoft Teams (Bot Framework) activities")
async def teams_messages(project_id: int, request: Request) -> Response:
    return await receive_with_fastapi("teams", project_id, request)


def mount(app: FastAPI) -> None:
    app.include_router(router)

