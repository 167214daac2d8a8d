"""Tag filters page and count through one index in list order: ticket_tags carries the ticket's
sort key and soft delete.

A tag filter used to be answered from the tag's links (≤ 10,000: fetch, check and sort them
all) or by walking the whole list in order and probing each ticket for the tag (a tag on 1 %
of tickets probes ~10,000 tickets for a page of 100): 10–30 ms of SQL at 1M tickets for tags
on 0.5–3 % of tickets, plus a count that probed a ticket per counted link. With the ticket's
`updated_at`, `ticket_number` and `deleted_at` copied into `ticket_tags` and indexed after
the tag, a page of one tag is the first 100 live entries of `ix_ticket_tags_tag_order`, and
its count reads at most COUNT_CAP entries of the same index, neither reading a ticket
(services/ticket_query.py `_Builder.tags_in_list_order`).

Each link also carries `tag_set`, all of its ticket's tag ids (NULL past TAG_SET_MAX = 16
tags), at the end of the same index: `tags_all`/`tags_exclude` terms on the walked tag are
checked against it (a LIKE on the index entry) instead of a primary-key look-up per link, which
made counting the intersection of two common tags cost ~16,000 look-ups (12 ms on SQLite).

Triggers keep the copies exact whatever writes the tables: a new link takes the values from its
ticket (when not given: the bench's bulk load gives them), a change of the ticket's
`updated_at`, `ticket_number` or `deleted_at` is copied to its links, and adding or removing a
link rewrites the tag_set of the ticket's links.

Mirror in models/ticket.py `TicketTag`.

Revision ID: 0007_tag_order_index
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0007_tag_order_index"
down_revision = "0002"
branch_labels = None
depends_on = None

COPIED = ("updated_at", "ticket_number", "deleted_at", "tag_set")
TAG_SET_MAX = 16  # models.ticket.TAG_SET_MAX
_SQLITE_SET = (f"(SELECT CASE WHEN count(*) <= {TAG_SET_MAX} THEN group_concat(s.tag_id, ',') END "
               "FROM ticket_tags s WHERE s.ticket_id = {ticket})")

SQLITE_UP = [
    """CREATE TRIGGER ticket_tags_order_ai AFTER INSERT ON ticket_tags
       WHEN new.updated_at IS NULL OR new.ticket_number IS NULL BEGIN
         UPDATE ticket_tags SET updated_at = t.updated_at, ticket_number = t.ticket_number, deleted_at = t.deleted_at
         FROM tickets t WHERE t.id = new.ticket_id AND ticket_tags.ticket_id = new.ticket_id
           AND ticket_tags.tag_id = new.tag_id;
       END""",
    """CREATE TRIGGER tickets_tag_order_au AFTER UPDATE OF updated_at, ticket_number, deleted_at ON tickets
       WHEN old.updated_at IS NOT new.updated_at OR old.ticket_number IS NOT new.ticket_number
         OR old.deleted_at IS NOT new.deleted_at BEGIN
         UPDATE ticket_tags SET updated_at = new.updated_at, ticket_number = new.ticket_number,
                                deleted_at = new.deleted_at
         WHERE ticket_id = new.id;
       END""",
    f"""CREATE TRIGGER ticket_tags_set_ai AFTER INSERT ON ticket_tags WHEN new.tag_set IS NULL BEGIN
         UPDATE ticket_tags SET tag_set = {_SQLITE_SET.format(ticket="new.ticket_id")} WHERE ticket_id = new.ticket_id;
       END""",
    f"""CREATE TRIGGER ticket_tags_set_ad AFTER DELETE ON ticket_tags BEGIN
         UPDATE ticket_tags SET tag_set = {_SQLITE_SET.format(ticket="old.ticket_id")} WHERE ticket_id = old.ticket_id;
       END""",
]
POSTGRES_UP = [
    """CREATE FUNCTION ticket_tags_fill_order() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        SELECT t.updated_at, t.ticket_number, t.deleted_at INTO NEW.updated_at, NEW.ticket_number, NEW.deleted_at
        FROM tickets t WHERE t.id = NEW.ticket_id;
        RETURN NEW;
    END $$""",
    """CREATE TRIGGER ticket_tags_fill_order BEFORE INSERT ON ticket_tags FOR EACH ROW
       WHEN (NEW.updated_at IS NULL OR NEW.ticket_number IS NULL) EXECUTE FUNCTION ticket_tags_fill_order()""",
    """CREATE FUNCTION tickets_sync_tag_order() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE ticket_tags SET updated_at = NEW.updated_at, ticket_number = NEW.ticket_number,
                               deleted_at = NEW.deleted_at
        WHERE ticket_id = NEW.id;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER tickets_sync_tag_order AFTER UPDATE OF updated_at, ticket_number, deleted_at ON tickets
       FOR EACH ROW WHEN (OLD.updated_at IS DISTINCT FROM NEW.updated_at
         OR OLD.ticket_number IS DISTINCT FROM NEW.ticket_number OR OLD.deleted_at IS DISTINCT FROM NEW.deleted_at)
       EXECUTE FUNCTION tickets_sync_tag_order()""",
    # AFTER row triggers run once the statement is done, so each sees all of its links.
    f"""CREATE FUNCTION ticket_tags_sync_set() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        target uuid;
    BEGIN
        IF TG_OP = 'DELETE' THEN target := OLD.ticket_id; ELSE target := NEW.ticket_id; END IF;
        UPDATE ticket_tags SET tag_set = (
            SELECT CASE WHEN count(*) <= {TAG_SET_MAX} THEN string_agg(s.tag_id::text, ',') END
            FROM ticket_tags s WHERE s.ticket_id = target
        ) WHERE ticket_id = target;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER ticket_tags_set_ai AFTER INSERT ON ticket_tags FOR EACH ROW WHEN (NEW.tag_set IS NULL)
       EXECUTE FUNCTION ticket_tags_sync_set()""",
    """CREATE TRIGGER ticket_tags_set_ad AFTER DELETE ON ticket_tags FOR EACH ROW
       EXECUTE FUNCTION ticket_tags_sync_set()""",
]
# UPDATE … FROM: SQLite ≥ 3.33 and PostgreSQL.
BACKFILL = """UPDATE ticket_tags SET updated_at = t.updated_at, ticket_number = t.ticket_number,
    deleted_at = t.deleted_at FROM tickets t WHERE t.id = ticket_tags.ticket_id"""
SQLITE_BACKFILL_SET = f"""UPDATE ticket_tags SET tag_set = s.tag_set FROM (
    SELECT ticket_id, CASE WHEN count(*) <= {TAG_SET_MAX} THEN group_concat(tag_id, ',') END AS tag_set
    FROM ticket_tags GROUP BY ticket_id) s WHERE s.ticket_id = ticket_tags.ticket_id"""
POSTGRES_BACKFILL_SET = f"""UPDATE ticket_tags SET tag_set = s.tag_set FROM (
    SELECT ticket_id, CASE WHEN count(*) <= {TAG_SET_MAX} THEN string_agg(tag_id::text, ',') END AS tag_set
    FROM ticket_tags GROUP BY ticket_id) s WHERE s.ticket_id = ticket_tags.ticket_id"""


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.add_column("ticket_tags", sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("ticket_tags", sa.Column("ticket_number", sa.Integer(), nullable=True))
    op.add_column("ticket_tags", sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("ticket_tags", sa.Column("tag_set", sa.Text(), nullable=True))
    # Triggers, then the copy, in one transaction (PostgreSQL: CREATE TRIGGER blocks writers
    # of both tables until the commit) or under the migration's write lock (SQLite).
    for statement in SQLITE_UP if sqlite else POSTGRES_UP:
        op.execute(statement)
    op.execute(BACKFILL)
    op.execute(SQLITE_BACKFILL_SET if sqlite else POSTGRES_BACKFILL_SET)
    op.create_index("ix_ticket_tags_tag_order", "ticket_tags",
                    ["tag_id", "deleted_at", "updated_at", "ticket_number", "ticket_id", "tag_set"])
    if sqlite and op.get_bind().exec_driver_sql("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'").first():
        op.execute("ANALYZE ix_ticket_tags_tag_order")  # a database with statistics gets this index's too


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.drop_index("ix_ticket_tags_tag_order", table_name="ticket_tags")
    if sqlite:
        for name in ("ticket_tags_order_ai", "tickets_tag_order_au", "ticket_tags_set_ai", "ticket_tags_set_ad"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    else:
        op.execute("DROP TRIGGER IF EXISTS ticket_tags_fill_order ON ticket_tags")
        op.execute("DROP TRIGGER IF EXISTS tickets_sync_tag_order ON tickets")
        op.execute("DROP TRIGGER IF EXISTS ticket_tags_set_ai ON ticket_tags")
        op.execute("DROP TRIGGER IF EXISTS ticket_tags_set_ad ON ticket_tags")
        for function in ("ticket_tags_fill_order", "tickets_sync_tag_order", "ticket_tags_sync_set"):
            op.execute(f"DROP FUNCTION IF EXISTS {function}()")
    with op.batch_alter_table("ticket_tags") as batch:
        for column in reversed(COPIED):
            batch.drop_column(column)
