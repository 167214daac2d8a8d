"""Helpers for the widget tests: the calls posthog-js makes, with its headers and fields."""

from __future__ import annotations

import uuid
from typing import Any

from core.db import session_scope
from services import integrations

WIDGET = "/api/conversations/v1/widget"
SITE = "https://shop.example.com"
IDENTITY_SECRET = "identity-secret-for-tests-0123456789"


def new_session_id() -> str:
    """What the SDK keeps in localStorage (a UUIDv7 there; any UUID will do here)."""
    return str(uuid.uuid4())


def widget_headers(tenant: Any, origin: str | None = SITE) -> dict[str, str]:
    headers = {"X-Conversations-Token": tenant.widget_token}
    if origin:
        headers["Origin"] = origin
    return headers


def send(client: Any, tenant: Any, widget_session: str | None, message: str = "Hello, I need help", *,
         ticket_id: str | None = None, origin: str | None = SITE, **fields: Any) -> Any:
    body: dict[str, Any] = {
        "message": message,
        "traits": fields.pop("traits", {"name": None, "email": None}),
        "ticket_id": ticket_id,
        "distinct_id": fields.pop("distinct_id", "anon-distinct-1"),
    }
    if widget_session is not None:
        body["widget_session_id"] = widget_session
    body.update(fields)
    return client.post(f"{WIDGET}/message", json=body, headers=widget_headers(tenant, origin))


def messages(client: Any, tenant: Any, ticket_id: str, widget_session: str | None, *, origin: str | None = SITE,
             **params: Any) -> Any:
    query = {"limit": "50", **params}
    if widget_session is not None:
        query["widget_session_id"] = widget_session
    return client.get(f"{WIDGET}/messages/{ticket_id}", params=query, headers=widget_headers(tenant, origin))


def tickets(client: Any, tenant: Any, widget_session: str | None, *, origin: str | None = SITE, **params: Any) -> Any:
    query = {"limit": "20", "offset": "0", **params}
    if widget_session is not None:
        query["widget_session_id"] = widget_session
    return client.get(f"{WIDGET}/tickets", params=query, headers=widget_headers(tenant, origin))


def mark_read(client: Any, tenant: Any, ticket_id: str, widget_session: str | None, *, origin: str | None = SITE,
              **fields: Any) -> Any:
    body = {"widget_session_id": widget_session, **fields} if widget_session else dict(fields)
    return client.post(f"{WIDGET}/messages/{ticket_id}/read", json=body, headers=widget_headers(tenant, origin))


def reply(client: Any, tenant: Any, ticket_id: str, text: str, *, private: bool = False) -> dict[str, Any]:
    response = client.post(tenant.url(f"tickets/{ticket_id}/reply"), json={"message": text, "is_private": private},
                           headers=tenant.headers)
    assert response.status_code == 201, response.text
    return response.json()


def rest_ticket(client: Any, tenant: Any, ticket_id: str) -> dict[str, Any]:
    """The ticket as the REST API lists it (a list call, so unread_team_count is not reset)."""
    body = client.get(tenant.url("tickets/"), headers=tenant.headers).json()
    return next(t for t in body["results"] if t["id"] == ticket_id)


def configure_widget(tenant: Any, **settings: Any) -> None:
    """PUT the widget integration through the integrations service (as the API does)."""
    with session_scope() as session:
        integrations.put_integration(session=session, project_id=tenant.project_id, channel="widget", values=settings)
        from services.widget import invalidate_project_cache

        invalidate_project_cache(session=session, project_id=tenant.project_id)
