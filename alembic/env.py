"""Alembic environment: migrates the database named by DATABASE_URL (or the one passed in)."""

from __future__ import annotations

from alembic import context
from core.db import get_engine, make_engine
from models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.attributes.get("url")
    engine = make_engine(url) if url else get_engine()
    with engine.connect() as conn:
        _run(conn)
    if url:
        # Close our own engine: on SQLite the last close also checkpoints the WAL into the file.
        engine.dispose()


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
