"""Declarative base and column helpers shared by every table."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, MetaData, Uuid
from sqlalchemy.orm import DeclarativeBase, mapped_column

from core.clock import now

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {
        datetime: DateTime(timezone=True),
        dict[str, Any]: JSON,
        list[Any]: JSON,
        uuid.UUID: Uuid,
    }


def uuid_pk() -> Any:
    return mapped_column(Uuid, primary_key=True, default=uuid.uuid4)


def created_at_col() -> Any:
    return mapped_column(DateTime(timezone=True), default=now, nullable=False)


def updated_at_col() -> Any:
    return mapped_column(DateTime(timezone=True), default=now, onupdate=now, nullable=False)
