"""Persons: who a customer is, looked up by distinct id (or by email for email tickets)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models import Person, PersonDistinctId

# Built once: every ingested message that opens a ticket looks its author up.
_PERSON_BY_DISTINCT_ID = (
    select(Person).join(PersonDistinctId, PersonDistinctId.person_id == Person.id)
    .where(PersonDistinctId.project_id == bindparam("project_id"),
           PersonDistinctId.distinct_id == bindparam("distinct_id"))
)

def upsert_person(
    *,
    session: Session,
    project_id: int,
    distinct_id: str,
    name: str | None = None,
    email: str | None = None,
    properties: dict[str, Any] | None = None,
    is_identified: bool = False,
) -> Person:
    """Find the person behind `distinct_id` or create one; fill in what we learned."""
    email = email.strip().lower() if email else None
    key = {"project_id": project_id, "distinct_id": distinct_id}
    person = session.scalar(_PERSON_BY_DISTINCT_ID, key)
    if person is None:
        try:
            with session.begin_nested():
                person = Person(project_id=project_id, name=name, email=email, properties=dict(properties or {}),
                                is_identified=is_identified)
                session.add(person)
                session.flush()
                session.add(PersonDistinctId(project_id=project_id, distinct_id=distinct_id, person_id=person.id))
                session.flush()
            return person
        except IntegrityError:
            # A new customer's first two messages ingested at once: the other one created
            # them (and committed: PostgreSQL waits for it before reporting the conflict).
            person = session.scalar(_PERSON_BY_DISTINCT_ID, key)
            if person is None:
                raise
    if name and not person.name:
        person.name = name
    if email and not person.email:
        person.email = email
    if properties:
        person.properties = {**(person.properties or {}), **properties}
    if is_identified:
        person.is_identified = True
    return person
