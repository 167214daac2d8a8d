"""What PostHog's browser SDK (posthog-js) talks to when a site sets `api_host` to ticketwire.

- the public widget API under /api/conversations/v1/widget/ (header X-Conversations-Token =
  the project's public widget token), with CORS for the project's allowed domains;
- the remote config the SDK loads first: /array/{token}/config.js and /array/{token}/config
  (plus /array/{token}/array.js, the SDK with its config, as PostHog's CDN serves it);
- the SDK's lazily loaded scripts, /static/{name}.js and /static/{version}/{name}.js, served
  from the pinned posthog-js package (scripts/fetch-posthog-js.sh);
- the stubs the SDK calls besides: /flags/ and /decide/ (no flags), /e/ and /i/v0/e/ (events
  are acknowledged and dropped, except `$create_alias`/`$identify`, which link an anonymous
  visitor's tickets to their verified identity, see services/widget);
- a demo page, /widget/demo.

`channel_detail` of a new ticket: `widget_embedded` when the request carries an `Origin`
header (browsers send one on every cross-origin request and on every POST), `widget_api`
when it does not (a server calling the API with the public token).

Rate limits: writes (message, read, restore) 30/min per visitor and 3,600/h per token
(both adjustable in the widget settings); polls 120/min per visitor, which is ample for the
SDK's 5 s cadence, and never per token (1,000 open widgets poll 200 times a second).
Every answer, errors included, carries the CORS headers: otherwise the browser hides the
status and the SDK cannot tell a 429 (back off) from a network failure.
"""

from __future__ import annotations

import base64
import gzip
import html
import json
import math
import os
import re
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.errors import ApiError, error_body
from api.routing import SlashRouter
from channels.widget import POSTHOG_JS_VERSION
from core.cache import get_cache
from core.clock import now
from core.db import session_scope
from core.settings import ROOT
from models import Project
from services import widget as widget_service
from services.errors import ServiceError
from services.widget import MessageIn, Visitor, WidgetProject

WIDGET_PREFIX = "/api/conversations/v1/widget"
TOKEN_HEADER = "x-conversations-token"
# A message (10,000 characters, up to 4 bytes each), 50 traits and 20 context values fit.
MAX_WIDGET_BODY = 256 * 1024
MAX_CAPTURE_BODY = 1024 * 1024
POLLS_PER_SESSION_PER_MINUTE = 120
RESTORE_REQUESTS_PER_EMAIL_PER_HOUR = 5
ALLOW_METHODS = "GET, POST, OPTIONS"
ALLOW_HEADERS = "Content-Type, X-Conversations-Token"
FLAGS_BODY = {"featureFlags": {}, "featureFlagPayloads": {}}
CAPTURE_BODY = {"status": 1}
SCRIPT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\.js$")
VERSION_NAME = re.compile(r"^[0-9][0-9A-Za-z.+-]{0,40}$")

router = SlashRouter(tags=["widget"])
public = APIRouter(tags=["widget"])


def mount(app: FastAPI) -> None:
    app.include_router(router, prefix=WIDGET_PREFIX)
    app.include_router(public)


# -- CORS and errors -------------------------------------------------------------------------

def _cors(origin: str | None, allowed: bool = True) -> dict[str, str]:
    headers = {"Vary": "Origin"}
    if origin and allowed:
        headers.update({
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Expose-Headers": "Retry-After",
        })
    return headers


def _public_cors() -> dict[str, str]:
    return {"Access-Control-Allow-Origin": "*"}


def _error(status: int, type_: str, code: str, detail: str, attr: str | None = None) -> ApiError:
    return ApiError(status, type_, code, detail, attr=attr)


def _rate_limit(bucket: str, limit: int, window: int) -> None:
    """A fixed window counter in the shared cache (Redis when configured), on the one clock."""
    stamp = now().timestamp()
    key = f"wrl:{bucket}:{window}:{int(stamp // window)}"
    if get_cache().incr(key, ttl=window) > limit:
        raise widget_service.RateLimitedError(max(1, math.ceil(window - stamp % window)))


def _limit_writes(project: WidgetProject, visitor: Visitor) -> None:
    _rate_limit(f"s:{project.project_id}:{visitor.rate_key}", project.config.rate_limit_per_session_per_minute, 60)
    _rate_limit(f"t:{project.project_id}", project.config.rate_limit_per_token_per_hour, 3600)


def _limit_polls(project: WidgetProject, visitor: Visitor) -> None:
    _rate_limit(f"p:{project.project_id}:{visitor.rate_key}", POLLS_PER_SESSION_PER_MINUTE, 60)


async def _read_json(request: Request) -> dict[str, Any]:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_WIDGET_BODY:
        raise _error(413, "invalid_request", "too_large", f"Request body is larger than {MAX_WIDGET_BODY} bytes.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_WIDGET_BODY:
            raise _error(413, "invalid_request", "too_large", f"Request body is larger than {MAX_WIDGET_BODY} bytes.")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise _error(400, "validation_error", "parse_error", "Malformed JSON body.") from None
    if not isinstance(data, dict):
        raise _error(400, "validation_error", "parse_error", "The body must be a JSON object.")
    return data


Work = Callable[[Session, WidgetProject, dict[str, Any], Request], dict[str, Any]]


async def _widget_call(request: Request, work: Work, *, write: bool) -> Response:
    """Token → project, Origin rule, body, then `work` in a unit of work; errors keep CORS."""
    origin = request.headers.get("origin")
    allowed = True
    try:
        data = await _read_json(request) if request.method == "POST" else dict(request.query_params)

        def run() -> tuple[dict[str, Any], bool]:
            with session_scope(read_only=True) as lookup:
                project = widget_service.project_for_token(session=lookup, token=request.headers.get(TOKEN_HEADER))
            if project is None:
                raise _error(401, "authentication_error", "authentication_failed", "Invalid or missing widget token.")
            # With allowed domains, writes need an allowed Origin (a server call has none) and a
            # foreign page may not read either; without them any origin may use the widget.
            if origin:
                origin_ok = project.config.origin_allowed(origin)
            else:
                origin_ok = not (write and project.config.allowed_domains)
            if not origin_ok:
                raise _error(403, "authentication_error", "origin_not_allowed",
                             "This origin may not use the widget of this project.")
            with session_scope(read_only=not write) as session:
                return work(session, project, data, request), origin_ok

        body, allowed = await run_in_threadpool(run)
        return JSONResponse(body, status_code=200, headers=_cors(origin, allowed))
    except ApiError as exc:
        if exc.body.get("code") == "origin_not_allowed":
            allowed = False
        return JSONResponse(exc.body, status_code=exc.status, headers={**_cors(origin, allowed), **(exc.headers or {})})
    except widget_service.RateLimitedError as exc:
        return JSONResponse(error_body(exc.type, exc.code, exc.detail), status_code=429,
                            headers={**_cors(origin, allowed), "Retry-After": str(exc.retry_after)})
    except ServiceError as exc:
        return JSONResponse(error_body(exc.type, exc.code, exc.detail, exc.attr), status_code=exc.status_code,
                            headers=_cors(origin, allowed))


def _visitor(project: WidgetProject, data: dict[str, Any]) -> Visitor:
    return widget_service.resolve_visitor(
        project=project,
        widget_session_id=data.get("widget_session_id"),
        identity_distinct_id=data.get("identity_distinct_id"),
        identity_hash=data.get("identity_hash"),
    )


# -- the widget API --------------------------------------------------------------------------

@router.api_route("/{rest:path}", methods=["OPTIONS"], include_in_schema=False)
def preflight(request: Request, rest: str) -> Response:
    """Every widget call is preflighted (custom header). A preflight carries no token, so it
    is answered for any origin; the call itself is then held to the project's domains."""
    origin = request.headers.get("origin")
    headers = _cors(origin)
    if origin:
        headers.update({
            "Access-Control-Allow-Methods": ALLOW_METHODS,
            "Access-Control-Allow-Headers": ALLOW_HEADERS,
            "Access-Control-Max-Age": "86400",
        })
    return Response(status_code=204, headers=headers)


def _post_message(session: Session, project: WidgetProject, data: dict[str, Any], request: Request) -> dict[str, Any]:
    visitor = _visitor(project, data)
    _limit_writes(project, visitor)
    return widget_service.post_message(
        session=session,
        project=project,
        visitor=visitor,
        data=MessageIn(
            message=data.get("message"), ticket_id=data.get("ticket_id"), traits=data.get("traits"),
            distinct_id=data.get("distinct_id"), session_id=data.get("session_id"),
            session_context=data.get("session_context"),
        ),
        embedded=bool(request.headers.get("origin")),
    )


@router.post("/message", summary="Widget: send a message (a new ticket when ticket_id is null)")
async def post_message(request: Request) -> Response:
    # 200, not 201: posthog-js reads the JSON of a 200 answer only.
    return await _widget_call(request, _post_message, write=True)


def _get_tickets(session: Session, project: WidgetProject, data: dict[str, Any], request: Request) -> dict[str, Any]:
    visitor = _visitor(project, data)
    _limit_polls(project, visitor)
    return widget_service.list_tickets(session=session, project=project, visitor=visitor, status=data.get("status"),
                                       limit=data.get("limit"), offset=data.get("offset"))


@router.get("/tickets", summary="Widget: the visitor's tickets")
async def get_tickets(request: Request) -> Response:
    return await _widget_call(request, _get_tickets, write=False)


def _get_messages(session: Session, project: WidgetProject, data: dict[str, Any], request: Request) -> dict[str, Any]:
    visitor = _visitor(project, data)
    _limit_polls(project, visitor)
    return widget_service.list_messages(session=session, project=project, visitor=visitor,
                                        ticket_id=request.path_params["ticket_id"], after=data.get("after"),
                                        limit=data.get("limit"))


@router.get("/messages/{ticket_id}", summary="Widget: a ticket's public messages after a timestamp")
async def get_messages(request: Request, ticket_id: str) -> Response:
    return await _widget_call(request, _get_messages, write=False)


def _mark_read(session: Session, project: WidgetProject, data: dict[str, Any], request: Request) -> dict[str, Any]:
    visitor = _visitor(project, data)
    _limit_writes(project, visitor)
    return widget_service.mark_read(session=session, project=project, visitor=visitor,
                                    ticket_id=request.path_params["ticket_id"])


@router.post("/messages/{ticket_id}/read", summary="Widget: the visitor read the replies")
async def mark_read(request: Request, ticket_id: str) -> Response:
    return await _widget_call(request, _mark_read, write=True)


def _restore_request(session: Session, project: WidgetProject, data: dict[str, Any], request: Request) -> dict[str, Any]:
    _rate_limit(f"s:{project.project_id}:restore-ip:{request.client.host if request.client else '-'}",
                 project.config.rate_limit_per_session_per_minute, 60)
    _rate_limit(f"t:{project.project_id}", project.config.rate_limit_per_token_per_hour, 3600)
    email = data.get("email")
    if isinstance(email, str):
        _rate_limit(f"restore-email:{project.project_id}:{email.strip().lower()}", RESTORE_REQUESTS_PER_EMAIL_PER_HOUR, 3600)
    return widget_service.request_restore_link(session=session, project=project, email=email,
                                               request_url=data.get("request_url"),
                                               origin=request.headers.get("origin"))


@router.post("/restore/request", summary="Widget: email a link that moves my conversations to another browser")
async def restore_request(request: Request) -> Response:
    return await _widget_call(request, _restore_request, write=True)


def _restore(session: Session, project: WidgetProject, data: dict[str, Any], request: Request) -> dict[str, Any]:
    session_id = data.get("widget_session_id")
    _rate_limit(f"s:{project.project_id}:restore:{session_id}", project.config.rate_limit_per_session_per_minute, 60)
    _rate_limit(f"t:{project.project_id}", project.config.rate_limit_per_token_per_hour, 3600)
    return widget_service.redeem_restore_token(session=session, project=project, restore_token=data.get("restore_token"),
                                               widget_session_id=session_id)


@router.post("/restore", summary="Widget: redeem a restore link")
async def restore(request: Request) -> Response:
    return await _widget_call(request, _restore, write=True)


# -- remote config ---------------------------------------------------------------------------

def remote_config(project: WidgetProject) -> dict[str, Any]:
    """What `/array/{token}/config` tells the SDK: conversations on, every other product off."""
    config = project.config
    return {
        "token": project.token,
        "supportedCompression": ["gzip", "gzip-js"],
        "hasFeatureFlags": False,
        "captureDeadClicks": False,
        "capturePerformance": False,
        "autocapture_opt_out": True,
        "autocaptureExceptions": False,
        "analytics": {"endpoint": "/i/v0/e/"},
        "elementsChainAsString": True,
        "errorTracking": {"autocaptureExceptions": False, "suppressionRules": []},
        "logs": {"captureConsoleLogs": False},
        "sessionRecording": False,
        "heatmaps": False,
        "conversations": config.remote_config(project.token) if config.enabled else False,
        "surveys": False,
        "productTours": False,
        "defaultIdentifiedOnly": True,
        "siteApps": [],
    }


def _js_literal(value: Any) -> str:
    # JSON is valid JavaScript; escaping "<" keeps a "</script>" in a greeting inert.
    return json.dumps(value, separators=(",", ":")).replace("<", "\\u003c")


def remote_config_js(project: WidgetProject) -> str:
    token = _js_literal(project.token)
    return (
        "(function() {\n"
        "  window._POSTHOG_REMOTE_CONFIG = window._POSTHOG_REMOTE_CONFIG || {};\n"
        f"  window._POSTHOG_REMOTE_CONFIG[{token}] = {{\n"
        f"    config: {_js_literal(remote_config(project))},\n"
        "    siteApps: []\n"
        "  }\n"
        "})();\n"
    )


def _project_or_none(token: str) -> WidgetProject | None:
    with session_scope(read_only=True) as session:
        return widget_service.project_for_token(session=session, token=token)


CONFIG_CACHE = "public, max-age=60"


@public.get("/array/{token}/config", summary="SDK remote config (JSON)")
def get_remote_config(token: str) -> Response:
    project = _project_or_none(token)
    if project is None:
        return JSONResponse(error_body("invalid_request", "not_found", "Unknown token."), status_code=404,
                            headers=_public_cors())
    return JSONResponse(remote_config(project), headers={**_public_cors(), "Cache-Control": CONFIG_CACHE})


@public.get("/array/{token}/config.js", summary="SDK remote config (script)")
def get_remote_config_js(token: str) -> Response:
    project = _project_or_none(token)
    if project is None:
        return Response("/* unknown token */\n", status_code=404, media_type="application/javascript",
                        headers=_public_cors())
    return Response(remote_config_js(project), media_type="application/javascript",
                    headers={**_public_cors(), "Cache-Control": CONFIG_CACHE})


@public.get("/array/{token}/array.js", summary="The SDK with the project's remote config")
def get_array_js(token: str) -> Response:
    project = _project_or_none(token)
    if project is None:
        return Response("/* unknown token */\n", status_code=404, media_type="application/javascript",
                        headers=_public_cors())
    path = _script_path("array.js")
    return Response(remote_config_js(project) + path.read_text(encoding="utf-8"), media_type="application/javascript",
                    headers={**_public_cors(), "Cache-Control": CONFIG_CACHE})


# -- the SDK's scripts -----------------------------------------------------------------------

def posthog_js_dist() -> Path:
    """The pinned posthog-js package's dist/ (TICKETWIRE_POSTHOG_JS_DIR overrides var/posthog-js)."""
    base = Path(os.environ.get("TICKETWIRE_POSTHOG_JS_DIR") or ROOT / "var" / "posthog-js")
    return base / POSTHOG_JS_VERSION / "package" / "dist"


def _script_path(name: str) -> Path:
    if not SCRIPT_NAME.match(name):
        raise _error(404, "invalid_request", "not_found", "Not found.")
    dist = posthog_js_dist()
    if not dist.is_dir():
        raise _error(503, "server_error", "sdk_missing",
                     f"posthog-js {POSTHOG_JS_VERSION} is not installed: run scripts/fetch-posthog-js.sh.")
    path = dist / name
    if not path.is_file():
        raise _error(404, "invalid_request", "not_found", "Not found.")
    return path


def _serve_script(name: str, cache_control: str) -> Response:
    try:
        path = _script_path(name)
    except ApiError as exc:
        return JSONResponse(exc.body, status_code=exc.status, headers=_public_cors())
    # Loaded with crossOrigin="anonymous": without Access-Control-Allow-Origin the browser
    # refuses to run it.
    return FileResponse(path, media_type="application/javascript", headers={
        **_public_cors(), "Cache-Control": cache_control, "X-PostHog-JS-Version": POSTHOG_JS_VERSION,
    })


@public.get("/static/{name}", summary="posthog-js script (current pinned version)")
def get_script(name: str) -> Response:
    return _serve_script(name, "public, max-age=3600")


@public.get("/static/{version}/{name}", summary="posthog-js script by version")
def get_versioned_script(version: str, name: str) -> Response:
    # Whatever version a page asks for, it gets the pinned one's file (the header says which).
    if not VERSION_NAME.match(version):
        return JSONResponse(error_body("invalid_request", "not_found", "Not found."), status_code=404,
                            headers=_public_cors())
    cache = "public, max-age=31536000, immutable" if version == POSTHOG_JS_VERSION else "public, max-age=3600"
    return _serve_script(name, cache)


# -- stubs -----------------------------------------------------------------------------------

def _stub_preflight(request: Request) -> Response:
    headers = {
        **_public_cors(),
        "Access-Control-Allow-Methods": ALLOW_METHODS,
        "Access-Control-Allow-Headers": request.headers.get("access-control-request-headers") or "Content-Type",
        "Access-Control-Max-Age": "86400",
    }
    return Response(status_code=204, headers=headers)


async def _flags(request: Request) -> Response:
    if request.method == "OPTIONS":
        return _stub_preflight(request)
    # No feature flags, and never a `quotaLimited`/`quota_limited` key: the SDK would stop
    # sending for a while.
    return JSONResponse(FLAGS_BODY, headers=_public_cors())


for _path in ("/flags", "/flags/", "/decide", "/decide/"):
    # Stubs for the SDK, not an API for people: kept out of the OpenAPI schema.
    public.add_api_route(_path, _flags, methods=["GET", "POST", "OPTIONS"], include_in_schema=False)


def decode_capture_body(raw: bytes, content_type: str, compression: str | None) -> list[Any]:
    """The events in a posthog-js capture request: JSON, gzip (`gzip-js`), or base64 form data."""
    data: Any = raw
    if raw[:2] == b"\x1f\x8b" or compression in ("gzip", "gzip-js"):
        data = gzip.decompress(raw)
    elif compression == "lz64":
        return []
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    if "application/x-www-form-urlencoded" in content_type or text.startswith("data="):
        encoded = parse_qs(text).get("data", [""])[0]
        text = base64.b64decode(encoded + "=" * (-len(encoded) % 4)).decode("utf-8") if compression == "base64" else encoded
    body = json.loads(text)
    if isinstance(body, dict) and isinstance(body.get("batch"), list):
        events = body["batch"]
        token = body.get("api_key")
    elif isinstance(body, list):
        events, token = body, None
    elif isinstance(body, dict):
        events, token = [body], body.get("api_key")
    else:
        return []
    if token:
        for event in events:
            if isinstance(event, dict):
                event.setdefault("api_key", token)
    return events


def _capture_token(events: list[Any]) -> str | None:
    for event in events:
        if not isinstance(event, dict):
            continue
        props = event.get("properties") if isinstance(event.get("properties"), dict) else {}
        token = event.get("api_key") or props.get("token") or event.get("token")
        if isinstance(token, str):
            return token
    return None


def _record_identity(raw: bytes, content_type: str, compression: str | None) -> None:
    try:
        events = decode_capture_body(raw, content_type, compression)
    except (ValueError, OSError, EOFError, zlib.error, UnicodeDecodeError):
        return
    if not widget_service.identity_pairs(events):
        return
    token = _capture_token(events)
    if token is None:
        return
    with session_scope() as session:
        project = widget_service.project_for_token(session=session, token=token)
        if project is not None:
            widget_service.record_identity_events(session=session, project=project, events=events)


async def _capture(request: Request) -> Response:
    if request.method == "OPTIONS":
        return _stub_preflight(request)
    if request.method == "POST":
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > MAX_CAPTURE_BODY:
                raw = b""
                break
        if raw:
            await run_in_threadpool(_record_identity, raw, request.headers.get("content-type", ""),
                                    request.query_params.get("compression"))
    # Events are not stored; `{"status": 1}` is what PostHog answers, and no `quota_limited`.
    return JSONResponse(CAPTURE_BODY, headers=_public_cors())


for _path in ("/e", "/e/", "/i/v0/e", "/i/v0/e/"):
    public.add_api_route(_path, _capture, methods=["GET", "POST", "OPTIONS"], include_in_schema=False)


@public.api_route("/array/{rest:path}", methods=["OPTIONS"], include_in_schema=False)
@public.api_route("/static/{rest:path}", methods=["OPTIONS"], include_in_schema=False)
def asset_preflight(request: Request, rest: str) -> Response:
    return _stub_preflight(request)


# -- demo ------------------------------------------------------------------------------------

DEMO_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ticketwire widget demo</title>
<style>
  body {{ font-family: -apple-system, BlinkMacSystemFont, "Segoe UI", Roboto, sans-serif; max-width: 46rem;
         margin: 3rem auto; padding: 0 1.5rem; color: #1f2937; line-height: 1.55; }}
  code, pre {{ background: #f3f4f6; border-radius: 6px; }}
  code {{ padding: .1rem .3rem; }}
  pre {{ padding: 1rem; overflow-x: auto; font-size: .85rem; }}
  .note {{ color: #6b7280; font-size: .9rem; }}
</style>
</head>
<body>
<h1>ticketwire widget demo</h1>
<p>This page loads PostHog's browser SDK (<code>posthog-js</code> {version}) from this ticketwire
and points it at ticketwire. The chat bubble in the corner is PostHog's own support widget:
write a message and it becomes a ticket in project <strong>{project_name}</strong>
(<code>GET /api/projects/{project_id}/conversations/tickets/</code>); reply through the API and
the answer shows up here within five seconds.</p>
{body}
<p class="note">Another project? <code>/widget/demo?token=&lt;widget token&gt;</code></p>
</body>
</html>
"""

DEMO_SNIPPET = """<h2>On your own site</h2>
<pre>&lt;script src="{base}/static/array.js"&gt;&lt;/script&gt;
&lt;script&gt;
  posthog.init({token_js}, {{ api_host: {base_js} }})
&lt;/script&gt;</pre>
<script src="{base}/static/array.js"></script>
<script>
  posthog.init({token_js}, {{
    api_host: {base_js},
    autocapture: false,
    capture_pageview: false,
    disable_session_recording: true,
    disable_surveys: true
  }})
</script>
"""


@public.get("/widget/demo", response_class=HTMLResponse, summary="A page with the widget of a project")
def demo_page(request: Request, token: str | None = None) -> HTMLResponse:
    with session_scope(read_only=True) as session:
        query = select(Project).order_by(Project.id).limit(1)
        if token:
            query = select(Project).where(Project.widget_token == token)
        project = session.scalar(query)
        found = (project.id, project.name, project.widget_token) if project else None
    base = str(request.base_url).rstrip("/")
    if found is None:
        body = ("<p><strong>No project yet.</strong> Run <code>make run</code> (it creates the demo project) "
                "or <code>ticketwire admin bootstrap</code>.</p>") if not token else "<p><strong>Unknown token.</strong></p>"
        return HTMLResponse(DEMO_PAGE.format(version=POSTHOG_JS_VERSION, project_name="?", project_id="{project_id}",
                                             body=body), status_code=404 if token else 200)
    project_id, name, widget_token = found
    snippet = DEMO_SNIPPET.format(base=html.escape(base), base_js=_js_literal(base), token_js=_js_literal(widget_token))
    return HTMLResponse(DEMO_PAGE.format(version=POSTHOG_JS_VERSION, project_name=html.escape(name),
                                         project_id=project_id, body=snippet))
