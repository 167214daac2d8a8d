"""Persons: who a customer is, looked up by distinct id (or by email for email tickets)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Person, PersonDistinctId, Ticket


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
    link = session.get(PersonDistinctId, (project_id, distinct_id))
    person = session.get(Person, link.person_id) if link else None
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


def persons_for_tickets(*, session: Session, tickets: Iterable[Ticket]) -> dict[uuid.UUID, tuple[Person, list[str]]]:
    """Map ticket id → (person, distinct ids) in two queries, for list embedding."""
    tickets = list(tickets)
    by_distinct: dict[tuple[int, str], list[Ticket]] = {}
    by_email: dict[tuple[int, str], list[Ticket]] = {}
    for t in tickets:
        if t.distinct_id:
            by_distinct.setdefault((t.project_id, t.distinct_id), []).append(t)
        elif t.customer_email:
            by_email.setdefault((t.project_id, t.customer_email), []).append(t)
    result: dict[uuid.UUID, tuple[Person, list[str]]] = {}
    person_ids: dict[uuid.UUID, list[Ticket]] = {}
    if by_distinct:
        links = session.execute(
            select(PersonDistinctId.project_id, PersonDistinctId.distinct_id, PersonDistinctId.person_id).where(
                PersonDistinctId.project_id.in_({p for p, _ in by_distinct}),
                PersonDistinctId.distinct_id.in_({d for _, d in by_distinct}),
            )
        ).all()
        for project_id, distinct_id, person_id in links:
            person_ids.setdefault(person_id, []).extend(by_distinct.get((project_id, distinct_id), []))
    if by_email:
        rows = session.execute(
            select(Person.id, Person.project_id, Person.email).where(
                Person.project_id.in_({p for p, _ in by_email}), Person.email.in_({e for _, e in by_email})
            )
        ).all()
        for person_id, project_id, email in rows:
            person_ids.setdefault(person_id, []).extend(by_email.get((project_id, email), []))
    if not person_ids:
        return result
    persons = {p.id: p for p in session.scalars(select(Person).where(Person.id.in_(person_ids)))}
    distinct_ids: dict[uuid.UUID, list[str]] = {}
    for person_id, distinct_id in session.execute(
        select(PersonDistinctId.person_id, PersonDistinctId.distinct_id).where(
            PersonDistinctId.person_id.in_(person_ids)
        )
    ):
        distinct_ids.setdefault(person_id, []).append(distinct_id)
    for person_id, ts in person_ids.items():
        person = persons.get(person_id)
        if person is None:
            continue
        for t in ts:
            result.setdefault(t.id, (person, sorted(distinct_ids.get(person_id, []))))
    return result
