"""Every router the app mounts besides the tickets router, in one explicit list."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI

ROUTERS: list[Callable[[FastAPI], None]] = []
