"""Inbound webhooks: verify, store the raw event, acknowledge. Parsing happens in a worker.

The route is one hop into the thread pool (`services.webhook_intake.accept`): the signature
check (HMAC, or RS256 for Teams) and the insert are blocking work, and a synchronous database
write on the event loop would stall every other request on a WAL checkpoint.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from channels.base import RawRequest
from services import webhook_intake
from workers import metrics

router = APIRouter(tags=["webhooks"])


async def receive(channel: str, project_id: int, request: Request) -> Response:
    raw = RawRequest.build(await request.body(), dict(request.headers), dict(request.query_params))
    ack = await run_in_threadpool(_accept, project_id, channel, raw)
    metrics.WEBHOOKS.labels(channel, ack.outcome).inc()
    if ack.raw_body is not None:
        return Response(ack.raw_body, status_code=ack.status, media_type=ack.content_type)
    return JSONResponse(ack.body, status_code=ack.status)


def _accept(project_id: int, channel: str, raw: RawRequest) -> webhook_intake.Acknowledgement:
    return webhook_intake.accept(project_id=project_id, channel=channel, raw=raw)


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
