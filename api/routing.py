"""Routers that accept a path with or without its trailing slash, under both PostHog prefixes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, FastAPI

PROJECT_PREFIXES = ("/api/projects/{project_id}/conversations", "/api/environments/{project_id}/conversations")


class SlashRouter(APIRouter):
    """Registers `path` and `path/` (the second hidden from the schema), so POST clients that
    add or drop the slash never meet a redirect."""

    def api_route(self, path: str, **kwargs: Any) -> Callable[..., Any]:  # type: ignore[override]
        def decorator(func: Callable[..., Any]) -> Callable[..., Any]:
            base = path.rstrip("/")
            self.add_api_route(base or "/", func, **kwargs)
            hidden = {**kwargs, "include_in_schema": False}
            hidden.pop("operation_id", None)
            self.add_api_route(base + "/", func, **hidden)
            return func

        return decorator

    def get(self, path: str, **kwargs: Any) -> Callable[..., Any]:  # type: ignore[override]
        return self.api_route(path, methods=["GET"], **kwargs)

    def post(self, path: str, **kwargs: Any) -> Callable[..., Any]:  # type: ignore[override]
        return self.api_route(path, methods=["POST"], **kwargs)

    def patch(self, path: str, **kwargs: Any) -> Callable[..., Any]:  # type: ignore[override]
        return self.api_route(path, methods=["PATCH"], **kwargs)

    def put(self, path: str, **kwargs: Any) -> Callable[..., Any]:  # type: ignore[override]
        return self.api_route(path, methods=["PUT"], **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Callable[..., Any]:  # type: ignore[override]
        return self.api_route(path, methods=["DELETE"], **kwargs)


def include_project_router(app: FastAPI, router: APIRouter) -> None:
    """Mount under /api/projects/… (documented) and /api/environments/… (PostHog clients)."""
    app.include_router(router, prefix=PROJECT_PREFIXES[0])
    app.include_router(router, prefix=PROJECT_PREFIXES[1], include_in_schema=False)
