"""Factories that build rows through the services (so counters and numbering stay true)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from core.db import session_scope
from services import accounts
from services import tickets as ticket_service
from services.ingest import add_customer_message
from services.persons import upsert_person


def make_tenant(name: str, *, email: str = "agent@acme.test", scopes: list[str] | None = None) -> Any:
    from tests.conftest import Tenant

    with session_scope() as session:
        project, _ = accounts.get_or_create_project(session=session, name=name)
        user = accounts.get_or_create_user(session=session, email=email, first_name="Ada", last_name="Agent")
        accounts.add_member(session=session, project=project, user=user)
        issued = accounts.create_api_key(session=session, user=user, scopes=scopes or ["*"], label=f"{name} key")
        return Tenant(project.id, issued.secret, user.id, project.widget_token)


def make_key(tenant: Any, scopes: list[str], *, scoped_projects: list[int] | None = None) -> str:
    from models import User

    with session_scope() as session:
        user = session.get_one(User, tenant.user_id)
        return accounts.create_api_key(session=session, user=user, scopes=scopes, scoped_projects=scoped_projects).secret


def make_ticket(
    project_id: int,
    *,
    message: str | None = "Hello, I need help",
    tags: list[str] | None = None,
    distinct_id: str | None = None,
    customer_name: str | None = None,
    customer_email: str | None = None,
    updated_at: datetime | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A ticket with one customer message; returns {id, ticket_number}."""
    with session_scope() as session:
        if distinct_id:
            upsert_person(session=session, project_id=project_id, distinct_id=distinct_id, name=customer_name,
                          email=customer_email)
        ticket = ticket_service.create_ticket(
            session=session, project_id=project_id, distinct_id=distinct_id, customer_name=customer_name,
            customer_email=customer_email.lower() if customer_email else None,
            channel_source=fields.pop("channel_source", "widget"),
            channel_detail=fields.pop("channel_detail", "widget_api"), **fields,
        )
        if message:
            add_customer_message(session=session, ticket=ticket, content=message, author_name=customer_name)
        if tags:
            ticket_service.set_tags(session=session, ticket=ticket, names=tags)
        if updated_at is not None:
            ticket.updated_at = updated_at
        session.flush()
        return {"id": str(ticket.id), "ticket_number": ticket.ticket_number}
