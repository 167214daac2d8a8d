"""Per-project channel integrations: settings, secrets encrypted at rest, adapters built from them."""

from __future__ import annotations

import threading
import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from channels.base import ChannelAdapter
from channels.errors import ChannelNotConfiguredError
from channels.registry import CHANNELS, get_spec
from core.cache import get_cache
from core.clock import now
from core.crypto import decrypt_json, encrypt_json
from core.db import session_scope
from models import Integration, Project
from services.errors import NotFoundError, ValidationError

MAX_SETTINGS = 50


def _spec(channel: str) -> Any:
    spec = get_spec(channel)
    if spec is None:
        raise NotFoundError(f"Unknown channel '{channel}'. Known: {', '.join(sorted(CHANNELS))}.", attr="channel")
    return spec


def put_integration(*, session: Session, project_id: int, channel: str, values: dict[str, Any]) -> Integration:
    """Create or update. Secrets left out of the request keep their stored value."""
    spec = _spec(channel)
    if not isinstance(values, dict) or len(values) > MAX_SETTINGS:
        raise ValidationError("The body must be an object of settings.", attr="settings")
    row = session.scalar(select(Integration).where(Integration.project_id == project_id, Integration.channel == channel))
    secrets = decrypt_json(row.secrets_enc) if row else {}
    public = dict(row.settings) if row else {}
    for key, value in values.items():
        if key in spec.secret_fields:
            if value is None or value == "":
                secrets.pop(key, None)
            elif not isinstance(value, str):
                raise ValidationError(f"{key} must be a string.", attr=key)
            else:
                secrets[key] = value
        else:
            public[key] = value
    merged = {**public, **secrets}
    try:  # the adapter's config validates names and types
        _load_config(spec, merged)
    except (TypeError, ValueError, ChannelNotConfiguredError) as exc:
        raise ValidationError(f"Invalid {channel} settings: {exc}", attr="settings") from None
    if row is None:
        row = Integration(project_id=project_id, channel=channel, created_at=now())
        session.add(row)
    row.settings = public
    row.secrets_enc = encrypt_json(secrets) if secrets else None
    row.updated_at = now()
    session.flush()
    _forget(project_id, channel)
    _widget_settings_changed(session=session, project_id=project_id, channel=channel)
    return row


def _widget_settings_changed(*, session: Session, project_id: int, channel: str) -> None:
    if channel == "widget":  # the widget API caches settings per project for a few seconds
        from services.widget import invalidate_project_cache

        invalidate_project_cache(session=session, project_id=project_id)


def _load_config(spec: Any, merged: dict[str, Any]) -> Any:
    module, _, attr = spec.config_path.partition(":")
    import importlib

    return getattr(importlib.import_module(module), attr).from_settings(merged)


def integration_view(*, session: Session, row: Integration) -> dict[str, Any]:
    """What GET shows: settings without secrets, which secrets are set, and public tokens."""
    spec = _spec(row.channel)
    secrets = decrypt_json(row.secrets_enc)
    view: dict[str, Any] = {
        "channel": row.channel,
        "settings": dict(row.settings or {}),
        "secrets_set": sorted(k for k in spec.secret_fields if secrets.get(k)),
        "health": row.health,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }
    if row.channel == "widget":
        project = session.get_one(Project, row.project_id)
        view["settings"]["public_token"] = project.widget_token
    return view


def get_integration(*, session: Session, project_id: int, channel: str) -> Integration:
    _spec(channel)
    row = session.scalar(select(Integration).where(Integration.project_id == project_id, Integration.channel == channel))
    if row is None:
        raise NotFoundError(f"No {channel} integration in this project.", attr="channel")
    return row


def delete_integration(*, session: Session, project_id: int, channel: str) -> None:
    session.delete(get_integration(session=session, project_id=project_id, channel=channel))
    _forget(project_id, channel)
    _widget_settings_changed(session=session, project_id=project_id, channel=channel)


def load_settings(*, session: Session, project_id: int, channel: str) -> dict[str, Any] | None:
    row = session.scalar(select(Integration).where(Integration.project_id == project_id, Integration.channel == channel))
    if row is None:
        return None
    return {**(row.settings or {}), **decrypt_json(row.secrets_enc)}


# -- adapters, cached briefly per process -------------------------------------------------
# Building an adapter creates vendor HTTP clients (a TLS context each: ~25 ms); a webhook
# burst should not pay for that on every request. Entries are re-checked against the stored
# settings every few seconds, so a change made through another process applies quickly; an
# unchanged integration keeps its adapter (and its in-process caches, such as the Teams
# signing keys). Every PUT/DELETE in this process drops the entry at once.
_ADAPTER_TTL = 5.0


class _CachedAdapter:
    __slots__ = ("adapter", "expires", "settings")

    def __init__(self, adapter: ChannelAdapter | None, settings: dict[str, Any] | None) -> None:
        self.adapter, self.settings, self.expires = adapter, settings, time.monotonic() + _ADAPTER_TTL


_adapters: dict[tuple[int, str], _CachedAdapter] = {}
_adapters_lock = threading.Lock()
# One re-check per (project, channel) at a time: when an entry expires under load, the other
# requests keep using it instead of all rebuilding the same adapter at once.
_refreshing: dict[tuple[int, str], threading.Lock] = {}


def _forget(project_id: int, channel: str) -> None:
    with _adapters_lock:
        _adapters.pop((project_id, channel), None)


def adapter_for(*, project_id: int, channel: str) -> ChannelAdapter:
    """The project's adapter for `channel`; ChannelNotConfiguredError when there is none."""
    key = (project_id, channel)
    hit = _adapters.get(key)
    if hit is None or hit.expires <= time.monotonic():
        hit = _recheck(key, hit)
    if hit.adapter is None:
        raise ChannelNotConfiguredError(f"project {project_id} has no {channel} integration")
    return hit.adapter


def _recheck(key: tuple[int, str], stale: _CachedAdapter | None) -> _CachedAdapter:
    project_id, channel = key
    spec = get_spec(channel)
    if spec is None:
        raise ChannelNotConfiguredError(f"unknown channel {channel}")
    with _adapters_lock:
        lock = _refreshing.setdefault(key, threading.Lock())
    if stale is not None and not lock.acquire(blocking=False):
        return stale  # another thread is re-checking it right now
    if stale is None:
        lock.acquire()
    try:
        current = _adapters.get(key)
        if current is not None and current is not stale and current.expires > time.monotonic():
            return current  # rebuilt while we waited
        with session_scope(read_only=True) as session:
            settings = load_settings(session=session, project_id=project_id, channel=channel)
        if settings is None and channel == "widget":
            settings = {}
        if current is not None and current.settings == settings:
            adapter = current.adapter
        else:
            adapter = spec.build(settings, cache=get_cache()) if settings is not None else None
        entry = _CachedAdapter(adapter, settings)
        with _adapters_lock:
            _adapters[key] = entry
        return entry
    finally:
        lock.release()


def clear_adapter_cache() -> None:
    with _adapters_lock:
        _adapters.clear()
