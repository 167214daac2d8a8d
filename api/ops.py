"""Operations: /healthz (process up), /readyz (database and broker), /metrics (Prometheus)."""

from __future__ import annotations

from datetime import datetime

from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import REGISTRY, GaugeMetricFamily
from sqlalchemy import func, select, text

from core.clock import as_utc, now
from core.db import session_scope
from core.settings import get_settings
from models import Delivery, EmailConfig, Integration, RawEvent


def _database_ok() -> bool:
    try:
        with session_scope(read_only=True) as session:
            session.execute(text("SELECT 1"))
        return True
    except Exception:
        return False


def _broker_ok() -> bool:
    url = get_settings().redis_url
    if not url:
        return True  # embedded: the broker is in this process
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1).ping())
    except Exception:
        return False


def _age(oldest: datetime | None) -> float:
    oldest = as_utc(oldest)
    return max(0.0, (now() - oldest).total_seconds()) if oldest else 0.0


class DatabaseCollector:
    """Gauges read from the database at scrape time, so every process reports the same truth."""

    def collect(self):  # type: ignore[no-untyped-def]
        try:
            with session_scope(read_only=True) as session:
                deliveries = session.execute(select(Delivery.status, func.count()).group_by(Delivery.status)).all()
                events = session.execute(select(RawEvent.status, func.count()).group_by(RawEvent.status)).all()
                oldest_event = session.scalar(select(func.min(RawEvent.received_at)).where(RawEvent.status.in_(("pending", "processing"))))
                oldest_delivery = session.scalar(select(func.min(Delivery.created_at)).where(Delivery.status.in_(("pending", "sending"))))
                unhealthy = [
                    (channel, health) for channel, health in
                    session.execute(select(Integration.channel, Integration.health)).all() if health
                ] + [("email", h) for h in session.scalars(select(EmailConfig.health)) if h]
        except Exception:
            return
        g = GaugeMetricFamily("ticketwire_deliveries", "Deliveries by status", labels=["status"])
        for status, count in deliveries:
            g.add_metric([status], count)
        yield g
        g = GaugeMetricFamily("ticketwire_raw_events", "Raw inbound events by status", labels=["status"])
        for status, count in events:
            g.add_metric([status], count)
        yield g
        yield GaugeMetricFamily("ticketwire_oldest_pending_raw_event_seconds", "Age of the oldest unprocessed raw event",
                                value=_age(oldest_event))
        yield GaugeMetricFamily("ticketwire_oldest_pending_delivery_seconds", "Age of the oldest undelivered reply",
                                value=_age(oldest_delivery))
        g = GaugeMetricFamily("ticketwire_channel_healthy", "1 when a polled channel answers", labels=["channel"])
        for channel, health in unhealthy:
            g.add_metric([channel], 1.0 if health.get("ok", True) else 0.0)
        yield g
        depth = _queue_depth()
        if depth is not None:
            g = GaugeMetricFamily("ticketwire_queue_depth", "Messages waiting in the broker", labels=["queue"])
            for queue, count in depth.items():
                g.add_metric([queue], count)
            yield g


def _queue_depth() -> dict[str, int] | None:
    url = get_settings().redis_url
    if not url:
        return None
    import redis

    try:
        client = redis.Redis.from_url(url, socket_timeout=1)
        # Every queue an actor uses (workers/*.py); paced deliveries wait in their own.
        return {q: int(client.llen(f"dramatiq:{q}")) for q in ("inbound", "outbound", "outbound_paced", "agent")}
    except Exception:
        return None


_collector = DatabaseCollector()
_registered = False


def mount(app: FastAPI) -> None:
    global _registered
    if not _registered:
        REGISTRY.register(_collector)  # type: ignore[arg-type]
        _registered = True

    @app.get("/healthz", tags=["ops"], summary="The process is up")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"], summary="Database and broker reachable")
    def readyz() -> JSONResponse:
        checks = {"database": _database_ok(), "broker": _broker_ok()}
        return JSONResponse({"ready": all(checks.values()), **checks}, status_code=200 if all(checks.values()) else 503)

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics")
    def metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(REGISTRY).decode(), media_type=CONTENT_TYPE_LATEST)
