"""Every router module the app mounts besides tickets, in one explicit list.

Each module exposes `mount(app: FastAPI) -> None`. Add one line per module.
"""

from __future__ import annotations

import importlib

from fastapi import FastAPI

# Mounted before everything else: Starlette tries routes in order, and the vendors' webhooks
# are the busiest path, answered within the vendors' timeouts.
FIRST_ROUTER_MODULES: list[str] = [
    "api.webhooks",
]

ROUTER_MODULES: list[str] = [
    "api.conversations",
    "api.ops",
    "api.integrations",
    "api.parity",
    "api.identity",
    "api.widget",
    "api.sla",
    "api.email_webhooks",
    "api.email_configs",
    "api.campaigns",
]


def mount_first(app: FastAPI) -> None:
    for name in FIRST_ROUTER_MODULES:
        importlib.import_module(name).mount(app)


def mount_all(app: FastAPI) -> None:
    for name in ROUTER_MODULES:
        importlib.import_module(name).mount(app)
