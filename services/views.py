"""Saved views: a named set of ticket list filters, private to its creator or shared."""

from __future__ import annotations

import secrets
import string
from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from core.clock import now
from models import SavedView
from services import ticket_query
from services.errors import NotFoundError, PermissionDeniedError, ValidationError

SHORT_ID_ALPHABET = string.ascii_letters + string.digits
SHORT_ID_LENGTH = 8
MAX_NAME_LENGTH = 200
MAX_FILTER_VALUES = 100


def new_short_id() -> str:
    """Eight random letters and digits (62^8 ≈ 2·10^14), like PostHog's short ids."""
    return "".join(secrets.choice(SHORT_ID_ALPHABET) for _ in range(SHORT_ID_LENGTH))


def _visible(project_id: int, user_id: int) -> Any:
    return (SavedView.project_id == project_id) & or_(SavedView.shared.is_(True), SavedView.user_id == user_id)


def get_visible_view(*, session: Session, project_id: int, user_id: int, short_id: str) -> SavedView | None:
    """The view if it is shared with the project or belongs to `user_id`."""
    return session.scalar(select(SavedView).where(_visible(project_id, user_id), SavedView.short_id == short_id))


def filters_as_params(filters: Mapping[str, Any]) -> dict[str, Any]:
    """Stored filters as list query parameters (lists become comma lists)."""
    return {
        key: ",".join(str(v) for v in value) if isinstance(value, list) else value
        for key, value in (filters or {}).items()
    }


def apply_view(
    *, session: Session, project_id: int, user_id: int, short_id: str, params: Mapping[str, Any]
) -> dict[str, Any]:
    """The view's filters overlaid by the request's explicit parameters (explicit ones win)."""
    view = get_visible_view(session=session, project_id=project_id, user_id=user_id, short_id=short_id)
    if view is None:
        raise ValidationError(f"Unknown view '{short_id}'.", attr="view", code="invalid_view")
    merged = filters_as_params(view.filters or {})
    merged.update({k: v for k, v in params.items() if k != "view"})
    return merged


def _scalar_ok(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) or value is None


def validate_filters(*, session: Session, project_id: int, user_id: int, filters: Any) -> dict[str, Any]:
    """Keys must be list parameters and values what GET tickets/ accepts for them (400 `filters`)."""
    if filters is None:
        return {}
    if not isinstance(filters, dict):
        raise ValidationError("filters must be an object of list parameters.", attr="filters")
    unknown = sorted(k for k in filters if k not in ticket_query.LIST_PARAMETERS)
    if unknown:
        allowed = ", ".join(ticket_query.LIST_PARAMETERS)
        raise ValidationError(
            f"Unknown filter(s): {', '.join(unknown)}. Filters are list parameters: {allowed}.", attr="filters"
        )
    for key, value in filters.items():
        if isinstance(value, list):
            if len(value) > MAX_FILTER_VALUES or not all(_scalar_ok(v) and v is not None for v in value):
                raise ValidationError(f"filters.{key} must be a value or a list of values.", attr="filters")
        elif not _scalar_ok(value):
            raise ValidationError(f"filters.{key} must be a value or a list of values.", attr="filters")
    # Building (not running) the list query checks the values the way GET tickets/ would:
    # a bad date or an over-long search is refused now rather than on every use of the view.
    try:
        ticket_query.build_query(
            session=session, project_id=project_id, params=filters_as_params(filters), user_id=user_id
        )
    except ValidationError as exc:
        raise ValidationError(exc.detail, attr="filters") from None
    return dict(filters)


def _validate_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValidationError("This field may not be blank.", attr="name")
    if len(name.strip()) > MAX_NAME_LENGTH:
        raise ValidationError(f"Ensure this field has no more than {MAX_NAME_LENGTH} characters.", attr="name")
    return name.strip()


def _validate_shared(shared: Any) -> bool:
    if not isinstance(shared, bool):
        raise ValidationError("Must be a valid boolean.", attr="shared")
    return shared


def create_view(
    *, session: Session, project_id: int, user_id: int, name: Any, filters: Any = None, shared: Any = False
) -> SavedView:
    """A new view owned by `user_id`; private unless `shared`."""
    clean_name = _validate_name(name)
    clean_filters = validate_filters(session=session, project_id=project_id, user_id=user_id, filters=filters)
    is_shared = _validate_shared(shared)
    short_id = new_short_id()
    while session.scalar(select(SavedView.id).where(SavedView.short_id == short_id)) is not None:
        short_id = new_short_id()
    stamp = now()
    view = SavedView(
        project_id=project_id, user_id=user_id, short_id=short_id, name=clean_name, filters=clean_filters,
        shared=is_shared, created_at=stamp, updated_at=stamp,
    )
    session.add(view)
    session.flush()
    return view


def list_views(
    *, session: Session, project_id: int, user_id: int, limit: int, offset: int
) -> tuple[int, list[SavedView]]:
    """Views the user may see, newest first."""
    where = _visible(project_id, user_id)
    count = session.scalar(select(func.count()).select_from(SavedView).where(where)) or 0
    rows = session.scalars(
        select(SavedView).where(where).order_by(SavedView.created_at.desc(), SavedView.id).limit(limit).offset(offset)
    ).all()
    return int(count), list(rows)


def get_view(*, session: Session, project_id: int, user_id: int, short_id: str) -> SavedView:
    """A visible view or 404 (another user's private view is not found, not forbidden)."""
    view = get_visible_view(session=session, project_id=project_id, user_id=user_id, short_id=short_id)
    if view is None:
        raise NotFoundError("Not found.", code="view_not_found")
    return view


def get_own_view(*, session: Session, project_id: int, user_id: int, short_id: str) -> SavedView:
    """A view the user may change: only its creator may (403 for a teammate's shared view)."""
    view = get_view(session=session, project_id=project_id, user_id=user_id, short_id=short_id)
    if view.user_id != user_id:
        raise PermissionDeniedError("Only the creator of a view may change or delete it.", code="not_view_creator")
    return view


def update_view(*, session: Session, view: SavedView, changes: Mapping[str, Any]) -> SavedView:
    """Apply a PATCH: `filters`, when sent, replaces the saved filters wholesale."""
    if "name" in changes:
        view.name = _validate_name(changes["name"])
    if "filters" in changes:
        view.filters = validate_filters(
            session=session, project_id=view.project_id, user_id=view.user_id, filters=changes["filters"]
        )
    if "shared" in changes:
        view.shared = _validate_shared(changes["shared"])
    view.updated_at = now()
    session.flush()
    return view


def delete_view(*, session: Session, view: SavedView) -> None:
    session.delete(view)
    session.flush()
