"""Apply Alembic migrations programmatically (used by `ticketwire migrate`, `dev` and tests)."""

from __future__ import annotations

from alembic.config import Config

from alembic import command
from core.settings import ROOT


def alembic_config(url: str | None = None) -> Config:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "alembic"))
    if url:
        cfg.attributes["url"] = url
    return cfg


def migrate(url: str | None = None) -> None:
    # "heads": feature migrations branch from the ticket store and Alembic applies them all.
    command.upgrade(alembic_config(url), "heads")
