"""The raw baseline for bench/pipeline.py: a bare uvicorn route doing what an ack must do at
minimum — one idempotent INSERT and one Redis LPUSH — and nothing else."""

from __future__ import annotations

import os
import uuid

import psycopg_pool
import redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

pool = psycopg_pool.ConnectionPool(os.environ["BARE_PG_DSN"], min_size=4, max_size=20, open=True)
queue = redis.Redis.from_url(os.environ["BARE_REDIS_URL"])

with pool.connection() as conn:
    conn.execute("CREATE TABLE IF NOT EXISTS bare_events (id uuid PRIMARY KEY, event_id text UNIQUE, body bytea)")


def _store(event_id: str, body: bytes) -> None:
    with pool.connection() as conn:
        row = conn.execute(
            "INSERT INTO bare_events (id, event_id, body) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING RETURNING id",
            (uuid.uuid4(), event_id, body),
        ).fetchone()
    if row:
        queue.lpush("bare:queue", str(row[0]))


async def hook(request: Request) -> JSONResponse:
    from starlette.concurrency import run_in_threadpool

    body = await request.body()
    await run_in_threadpool(_store, request.headers.get("x-event-id", ""), body)
    return JSONResponse({"ok": True})


app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
