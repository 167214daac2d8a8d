"""A `tags_all` filter in list order walks the links of one required tag and checks the others
on each link (ticket_query._Builder.tags_in_list_order). The walk should be driven by the tag
that is rarer where the walk goes, found from where its DENSITY_PROBE-th link lies."""

from __future__ import annotations

from datetime import timedelta

import pytest

from core.clock import now
from core.db import session_scope
from services import accounts, ticket_query
from tests.factories import make_ticket


def _driver(project_id: int, tags_all: list[str], ascending: bool = False) -> str | None:
    with session_scope(read_only=True) as session:
        builder = ticket_query._Builder(session, project_id)
        builder.look_up_tags(tags_all, probe=ticket_query.required_tags([], tags_all), ascending=ascending)
        assert builder.tags_in_list_order([], tags_all)
        names = {tag_id: name for name, tag_id in builder.tag_id_of.items()}
        return names.get(builder.tag_driver)


def test_the_tag_rarer_along_the_walk_drives_it(db, monkeypatch):
    monkeypatch.setattr(ticket_query, "DENSITY_PROBE", 3)
    with session_scope() as session:
        project_id = accounts.get_or_create_project(session=session, name="Drivers")[0].id
    start = now() - timedelta(days=30)
    # "both" is on all ten tickets, "old" on the five oldest, "sparse" on every third (0, 3, 6, 9).
    for i in range(10):
        tags = ["both"] + (["old"] if i < 5 else []) + (["sparse"] if i % 3 == 0 else [])
        make_ticket(project_id, tags=tags, updated_at=start + timedelta(hours=i))

    # Newest first the third links are: both at 7, sparse at 3, old at 2 (furthest: rarest here).
    assert _driver(project_id, ["both", "old"]) == "old"
    assert _driver(project_id, ["both", "sparse"]) == "sparse"
    assert _driver(project_id, ["old", "sparse"]) == "old"
    # Oldest first: both and old at 2, sparse at 6.
    assert _driver(project_id, ["both", "sparse"], ascending=True) == "sparse"
    assert _driver(project_id, ["old", "sparse"], ascending=True) == "sparse"

def test_a_tag_with_fewer_links_than_the_probe_drives(db, monkeypatch):
    monkeypatch.setattr(ticket_query, "DENSITY_PROBE", 3)
    with session_scope() as session:
        project_id = accounts.get_or_create_project(session=session, name="Few")[0].id
    for i in range(6):
        make_ticket(project_id, tags=["many", "few"] if i in (2, 4) else ["many"])
    assert _driver(project_id, ["many", "few"]) == "few"
    assert _driver(project_id, ["many", "few"], ascending=True) == "few"


@pytest.mark.parametrize("ascending", [False, True])
def test_one_statement_looks_up_every_tag_of_the_request(db, ascending):
    with session_scope() as session:
        project_id = accounts.get_or_create_project(session=session, name="Lookup")[0].id
    make_ticket(project_id, tags=["a", "b", "c"])
    with session_scope(read_only=True) as session:
        builder = ticket_query._Builder(session, project_id)
        builder.look_up_tags(["a", "b", "c", "missing"], probe=["a", "b"], ascending=ascending)
        assert set(builder.tag_id_of) == {"a", "b", "c"}
        assert set(builder.density_of) == {"a", "b"}
        assert builder.tag_ids(["c", "missing"]) == [builder.tag_id_of["c"]]
