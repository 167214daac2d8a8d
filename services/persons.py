"""Persons: who a customer is, looked up by distinct id (or by email for email tickets)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from models import Person, PersonDistinctId


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
    person = session.scalar(
        select(Person).join(PersonDistinctId, PersonDistinctId.person_id == Person.id)
        .where(PersonDistinctId.project_id == project_id, PersonDistinctId.distinct_id == distinct_id)
    )
    if person is None:
        person = Person(project_id=project_id, name=name, email=email, properties=dict(properties or {}),
                        is_identified=is_identified)
        session.add(person)
        session.flush()
        session.add(PersonDistinctId(project_id=project_id, distinct_id=distinct_id, person_id=person.id))
        session.flush()
        return person
    if name and not person.name:
        person.name = name
    if email and not person.email:
        person.email = email
    if properties:
        person.properties = {**(person.properties or {}), **properties}
    if is_identified:
        person.is_identified = True
    return person


PERSON_COLUMNS = (Person.id, Person.name, Person.email, Person.properties, Person.is_identified, Person.created_at)


def persons_for_tickets(*, session: Session, tickets: Iterable[Any]) -> dict[uuid.UUID, tuple[Any, list[str]]]:
    """Map ticket id → (person row, the person's distinct ids) for list embedding.

    A ticket's person is found by its distinct_id, or by its customer email when it has none
    (email tickets). One query per project for each way (each also collects all of the
    person's distinct ids through a self-join); rows, not ORM objects, because a page of
    100–1000 tickets is on the hot path. `tickets` may be Ticket objects or rows with the
    same attribute names."""
    tickets = list(tickets)
    by_distinct: dict[tuple[int, str], list[uuid.UUID]] = {}
    by_email: dict[tuple[int, str], list[uuid.UUID]] = {}
    for t in tickets:
        if t.distinct_id:
            by_distinct.setdefault((t.project_id, t.distinct_id), []).append(t.id)
        elif t.customer_email:
            by_email.setdefault((t.project_id, t.customer_email.lower()), []).append(t.id)
    persons: dict[uuid.UUID, Any] = {}
    distinct_ids: dict[uuid.UUID, set[str]] = {}
    tickets_of: dict[uuid.UUID, list[uuid.UUID]] = {}
    alias = aliased(PersonDistinctId)
    for project_id in {p for p, _ in by_distinct}:
        wanted = [d for p, d in by_distinct if p == project_id]
        rows = session.execute(
            select(PersonDistinctId.distinct_id.label("wanted"), alias.distinct_id.label("alias"), *PERSON_COLUMNS)
            .join(Person, Person.id == PersonDistinctId.person_id)
            .join(alias, alias.person_id == Person.id)
            .where(PersonDistinctId.project_id == project_id, PersonDistinctId.distinct_id.in_(wanted))
        ).all()
        for row in rows:
            persons.setdefault(row.id, row)
            distinct_ids.setdefault(row.id, set()).add(row.alias)
            if row.alias == row.wanted:
                tickets_of.setdefault(row.id, []).extend(by_distinct[(project_id, row.wanted)])
    for project_id in {p for p, _ in by_email}:
        wanted = [e for p, e in by_email if p == project_id]
        rows = session.execute(
            select(alias.distinct_id.label("alias"), *PERSON_COLUMNS)
            .outerjoin(alias, alias.person_id == Person.id)
            .where(Person.project_id == project_id, Person.email.in_(wanted))
            .order_by(Person.created_at)
        ).all()
        for row in rows:
            # Several persons may share an address: the oldest one (first row) gets the tickets.
            owned = by_email.pop((project_id, row.email), None)
            if owned is not None:
                persons.setdefault(row.id, row)
                tickets_of.setdefault(row.id, []).extend(owned)
            if row.id in persons and row.alias is not None:
                distinct_ids.setdefault(row.id, set()).add(row.alias)
    result: dict[uuid.UUID, tuple[Any, list[str]]] = {}
    for person_id, ticket_ids in tickets_of.items():
        entry = (persons[person_id], sorted(distinct_ids.get(person_id, ())))
        for ticket_id in ticket_ids:
            result.setdefault(ticket_id, entry)
    return result
