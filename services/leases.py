"""Database leases: `acquire` is one conditional UPDATE (or the first INSERT), so two processes
never both hold a lease, whatever the cache or broker is doing."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from core.clock import now
from models.lease import Lease


def acquire(*, session: Session, name: str, holder: str, ttl: float) -> bool:
    """Take or renew `name` for `holder` for `ttl` seconds; False if someone else holds it."""
    moment = now()
    expires = moment + timedelta(seconds=ttl)
    taken = session.execute(
        update(Lease)
        .where(Lease.name == name, (Lease.holder == holder) | (Lease.expires_at < moment))
        .values(holder=holder, expires_at=expires)
        .execution_options(synchronize_session=False)
    ).rowcount
    if taken:
        return True
    insert = postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    # RETURNING, not rowcount: psycopg reports -1 for an INSERT that did nothing on conflict.
    created = session.execute(
        insert(Lease).values(name=name, holder=holder, expires_at=expires)
        .on_conflict_do_nothing(index_elements=["name"]).returning(Lease.name)
    ).scalar_one_or_none()
    return created is not None


def release(*, session: Session, name: str, holder: str) -> None:
    session.execute(
        update(Lease).where(Lease.name == name, Lease.holder == holder).values(expires_at=now() - timedelta(seconds=1))
        .execution_options(synchronize_session=False)
    )
