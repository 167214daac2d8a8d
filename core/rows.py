"""INSERT a new ORM object with one prebuilt Core statement instead of the unit of work.

For the ingest workers' hot path: `session.add` + `flush` of one plain row costs its unit of
work (dependency sort, per-attribute history, event dispatch) about as much Python as the
rest of the INSERT together (bench/ingest_cpu.py; bench/RESULTS.md, sixth session: 4.21 →
3.29 ms of Python per ingested event). Here every column is bound, its default filled in on the object as the ORM would,
so each table's statement compiles once; the object is then attached to the session as if
it had been loaded, and later changes to it are flushed as UPDATEs as usual.

Only for mapped classes that are one table, without relationships and without mapper
events (Ticket, Message): nothing here runs `before_insert` hooks or cascades.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import Insert, Table, insert
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.orm.base import instance_state


@cache
def _columns(mapper: Any) -> tuple[tuple[str, Any], ...]:
    """(attribute key, Column) of every mapped column."""
    return tuple((prop.key, prop.columns[0]) for prop in mapper.column_attrs)


@cache
def _statement(table: Table, dialect: str, conflict_columns: tuple[str, ...]) -> Insert:
    if not conflict_columns:
        return insert(table)
    dialect_insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    return (dialect_insert(table).on_conflict_do_nothing(index_elements=list(conflict_columns))
            .returning(*table.primary_key.columns))


def _default(column: Any) -> Any:
    default = column.default
    # SQLAlchemy wraps a zero-argument callable default into one that takes the context.
    return default.arg(None) if default.is_callable else default.arg


def _has_python_default(column: Any) -> bool:
    return column.default is not None and (column.default.is_scalar or column.default.is_callable)


def insert_row(session: Session, obj: Any, *, unless_conflict_on: tuple[str, ...] = ()) -> bool:
    """Write `obj` (new, or pending in `session`) now and keep it in `session` as persistent.

    As the unit of work would: attributes set on `obj` are written (None included, which a
    JSON column stores as JSON null), unset ones get their column's Python default, and the
    rest are left out of the INSERT (SQL NULL) and read as None afterwards.

    `unless_conflict_on` names the columns of a unique constraint: a row that would break it
    is not written (INSERT … ON CONFLICT DO NOTHING), False is returned and `obj` is left out
    of the session. Build `obj` under `session.no_autoflush`: a query that autoflushed it
    first would leave nothing for this to insert.
    """
    state = instance_state(obj)
    if not (state.transient or state.pending):
        raise ValueError(f"insert_row writes new objects, not a {state.mapper.class_.__name__} already in the database")
    if state.pending:
        session.expunge(obj)
    values = state.dict
    row = {}
    left_out = []
    for key, column in _columns(state.mapper):
        if key in values:
            row[column.key] = values[key]
        elif _has_python_default(column):
            row[column.key] = values[key] = _default(column)
        elif column.server_default is None:
            left_out.append(key)
    connection = session.connection()
    statement = _statement(state.mapper.local_table, connection.dialect.name, unless_conflict_on)
    result = connection.execute(statement, row)
    if unless_conflict_on and result.first() is None:
        return False
    for key in left_out:
        values[key] = None
    make_transient_to_detached(obj)
    session.add(obj)
    return True
