"""The migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from models.base import Base


def _outside_the_orm(diff: tuple[Any, ...]) -> bool:
    """Text search is built by raw SQL in 0002 and read by services.ticket_query: SQLite FTS5
    virtual tables (with their shadow tables) and PostgreSQL trigram GIN indexes."""
    name = str(getattr(diff[1], "name", "")) if len(diff) > 1 else ""
    return name.startswith(("ticket_fts", "message_fts")) or name.endswith("_trgm")


def test_the_migrated_schema_matches_the_models(db: str) -> None:
    engine = create_engine(db)
    try:
        with engine.connect() as conn:
            differences = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    assert [str(d)[:300] for d in differences if not _outside_the_orm(d)] == []
