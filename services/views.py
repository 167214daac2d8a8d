"""Saved views: a named set of ticket list filters, private to its creator or shared."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from models import SavedView
from services.errors import ValidationError


def get_visible_view(*, session: Session, project_id: int, user_id: int, short_id: str) -> SavedView | None:
    return session.scalar(
        select(SavedView).where(
            SavedView.project_id == project_id,
            SavedView.short_id == short_id,
            or_(SavedView.shared.is_(True), SavedView.user_id == user_id),
        )
    )


def apply_view(
    *, session: Session, project_id: int, user_id: int, short_id: str, params: Mapping[str, Any]
) -> dict[str, Any]:
    """The view's filters overlaid by the request's explicit parameters (explicit ones win)."""
    view = get_visible_view(session=session, project_id=project_id, user_id=user_id, short_id=short_id)
    if view is None:
        raise ValidationError(f"Unknown view '{short_id}'.", attr="view", code="invalid_view")
    merged: dict[str, Any] = {}
    for key, value in (view.filters or {}).items():
        merged[key] = ",".join(str(v) for v in value) if isinstance(value, list) else value
    merged.update({k: v for k, v in params.items() if k != "view"})
    return merged
