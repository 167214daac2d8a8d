"""Compose campaigns (beyond the seed), email unsubscribes, and the public unsubscribe link."""

from __future__ import annotations

import html
import json
from typing import Any

from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.datastructures import UploadFile

from api.deps import Principal, enforce_rate_limit, require
from api.routing import SlashRouter, include_project_router
from api.schemas import iso
from core.db import session_scope
from models import Campaign, EmailUnsubscribe, Project
from services import campaigns, replies
from services.errors import ValidationError

router = SlashRouter(tags=["campaigns"])
public = SlashRouter(tags=["campaigns"])
READ = require("ticket:read")
WRITE = require("ticket:write")


def _created_out(campaign: Campaign) -> dict[str, Any]:
    return {
        "id": str(campaign.id),
        "email_config_id": str(campaign.email_config_id) if campaign.email_config_id else None,
        "email_subject": campaign.email_subject,
        "recipients": campaign.recipients,
        "queued": campaign.queued,
        "invalid": list(campaign.invalid or []),
        "skipped": list(campaign.skipped or []),
        "created_at": iso(campaign.created_at),
        "cancelled_at": iso(campaign.cancelled_at),
    }


async def _campaign_input(request: Request) -> dict[str, Any]:
    """JSON `{email_config_id, email_subject, message, recipients}` or multipart with a CSV `file`."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data") or content_type.startswith("application/x-www-form-urlencoded"):
        form = await request.form()
        upload = form.get("file") or form.get("csv")
        if not isinstance(upload, UploadFile):
            raise ValidationError("Attach the recipients as a CSV file in the `file` field.", attr="file")
        data = await upload.read()

        def text(name: str) -> Any:
            value = form.get(name)
            return value if isinstance(value, str) else None

        return {"email_config_id": text("email_config_id"), "email_subject": text("email_subject"),
                "message": text("message"), "recipients": campaigns.recipients_from_csv(data)}
    try:
        body = json.loads(await request.body() or b"null")
    except ValueError:
        raise ValidationError("Malformed JSON body.", code="parse_error") from None
    if not isinstance(body, dict):
        raise ValidationError("The body must be a JSON object.")
    return {"email_config_id": body.get("email_config_id"), "email_subject": body.get("email_subject"),
            "message": body.get("message"), "recipients": campaigns.recipients_from_json(body.get("recipients"))}


@router.post("/campaigns", status_code=201,
             summary="Send one email to many: one open ticket and delivery per distinct valid recipient")
async def create_campaign(project_id: int, request: Request, principal: Principal = Depends(WRITE)) -> Response:
    enforce_rate_limit(f"user-campaign:{principal.user.id}", ((10, 60), (100, 3600)))
    values = await _campaign_input(request)
    from starlette.concurrency import run_in_threadpool

    def write() -> tuple[dict[str, Any], bool]:
        session = None
        try:
            with session_scope() as session:
                outcome = campaigns.create_campaign(session=session, project_id=project_id, author=principal.user,
                                                    **values)
                return _created_out(outcome.campaign), outcome.replayed
        finally:
            if session is not None:
                replies.release_guards(session)

    body, replayed = await run_in_threadpool(write)
    return JSONResponse(body, status_code=200 if replayed else 201)


@router.get("/campaigns", summary="The project's campaigns, newest first")
def list_campaigns(project_id: int, limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0),
                   principal: Principal = Depends(READ)) -> dict[str, Any]:
    with session_scope(read_only=True) as session:
        total, rows = campaigns.list_campaigns(session=session, project_id=project_id, limit=limit, offset=offset)
        results = [{**_created_out(row), **campaigns.counts(session=session, campaign_id=row.id)} for row in rows]
    return {"count": total, "results": results}


@router.get("/campaigns/{campaign_id}",
            summary="A campaign's progress (queued, sent, failed, replied) and its tickets")
def get_campaign(project_id: int, campaign_id: str, limit: int = Query(100, ge=1, le=1000),
                 offset: int = Query(0, ge=0), delivery_status: str | None = Query(None),
                 principal: Principal = Depends(READ)) -> dict[str, Any]:
    if delivery_status is not None and delivery_status not in ("queued", "pending", "sending", "sent", "failed"):
        raise ValidationError("delivery_status is one of queued, pending, sending, sent, failed.",
                              attr="delivery_status")
    with session_scope(read_only=True) as session:
        row = campaigns.get_campaign(session=session, project_id=project_id, campaign_id=campaign_id)
        progress = campaigns.counts(session=session, campaign_id=row.id)
        total, tickets = campaigns.campaign_tickets(session=session, campaign_id=row.id, limit=limit, offset=offset,
                                                    delivery_status=delivery_status)
        out = {**_created_out(row), "message": row.message, "total": row.queued}
    out.update(progress)
    out["tickets"] = [{**t, "sent_at": iso(t["sent_at"])} for t in tickets]
    out["tickets_count"] = total
    return out


@router.post("/campaigns/{campaign_id}/cancel",
             summary="Withdraw the mails not sent yet (their tickets are deleted); mails in flight finish")
def cancel_campaign(project_id: int, campaign_id: str, principal: Principal = Depends(WRITE)) -> dict[str, Any]:
    with session_scope() as session:
        cancelled = campaigns.cancel_campaign(session=session, project_id=project_id, campaign_id=campaign_id)
        row = campaigns.get_campaign(session=session, project_id=project_id, campaign_id=campaign_id)
        return {**_created_out(row), **campaigns.counts(session=session, campaign_id=row.id), "withdrawn": cancelled}


def _unsubscribe_out(row: EmailUnsubscribe) -> dict[str, Any]:
    return {"email": row.email, "source": row.source,
            "campaign_id": str(row.campaign_id) if row.campaign_id else None, "created_at": iso(row.created_at)}


@router.get("/email_unsubscribes", summary="Addresses that get no campaign mail")
def list_unsubscribes(project_id: int, limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0),
                      principal: Principal = Depends(READ)) -> dict[str, Any]:
    with session_scope(read_only=True) as session:
        total, rows = campaigns.list_unsubscribes(session=session, project_id=project_id, limit=limit, offset=offset)
        return {"count": total, "results": [_unsubscribe_out(r) for r in rows]}


@router.post("/email_unsubscribes", status_code=201, summary="Stop campaign mail to an address")
def add_unsubscribe(project_id: int, body: dict[str, Any], principal: Principal = Depends(WRITE)) -> dict[str, Any]:
    with session_scope() as session:
        row = campaigns.add_unsubscribe(session=session, project_id=project_id, email=body.get("email"), source="api")
        return _unsubscribe_out(row)


@router.delete("/email_unsubscribes/{email}", status_code=204, summary="Allow campaign mail to an address again")
def remove_unsubscribe(project_id: int, email: str, principal: Principal = Depends(WRITE)) -> Response:
    with session_scope() as session:
        campaigns.remove_unsubscribe(session=session, project_id=project_id, email=email)
    return Response(status_code=204)


# --- the link in List-Unsubscribe -----------------------------------------------------------------

_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>{title}</title></head>
<body style="font-family: sans-serif; max-width: 32em; margin: 4em auto;">{body}</body></html>
"""


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(_PAGE.format(title=html.escape(title), body=body), status_code=status)


@public.get("/api/conversations/v1/email/unsubscribe", include_in_schema=False)
def unsubscribe_page(token: str = Query("")) -> HTMLResponse:
    # A GET never unsubscribes: mail scanners open every link (RFC 8058 §1).
    found = campaigns.read_unsubscribe_token(token)
    if found is None:
        return _page("Invalid link", "<p>This unsubscribe link is not valid.</p>", status=400)
    project_id, email, _campaign = found
    with session_scope(read_only=True) as session:
        project = session.get(Project, project_id)
        name = project.name if project else "this team"
    return _page("Unsubscribe", (
        f"<p>Stop emails from {html.escape(name)} to <b>{html.escape(email)}</b>?</p>"
        f'<form method="post"><input type="hidden" name="token" value="{html.escape(token)}">'
        '<button type="submit">Unsubscribe</button></form>'
    ))


@public.post("/api/conversations/v1/email/unsubscribe", include_in_schema=False)
async def unsubscribe(request: Request, token: str = Query("")) -> Response:
    """RFC 8058 one-click (`List-Unsubscribe=One-Click` posted by the mail client) or the form."""
    form = await request.form()
    value = token or str(form.get("token") or "")
    found = campaigns.read_unsubscribe_token(value)
    if found is None:
        return _page("Invalid link", "<p>This unsubscribe link is not valid.</p>", status=400)
    project_id, email, campaign_id = found
    source = "one_click" if form.get("List-Unsubscribe") == "One-Click" else "link"
    from starlette.concurrency import run_in_threadpool

    def write() -> None:
        with session_scope() as session:
            if session.get(Project, project_id) is not None:
                campaigns.add_unsubscribe(session=session, project_id=project_id, email=email, source=source,
                                          campaign_id=campaign_id)

    await run_in_threadpool(write)
    return _page("Unsubscribed", f"<p><b>{html.escape(email)}</b> will get no more of these emails.</p>")


def mount(app: FastAPI) -> None:
    include_project_router(app, router)
    app.include_router(public)
