"""Unread counters kept by triggers: GET tickets/unread_count reads a few rows, not every unread ticket.

Before, a cache miss summed `unread_team_count` over the partial index ix_tickets_unread:
~30,000 index entries for a project with 1M tickets, 3 % of them unread (2–4 ms, growing
with the backlog). Triggers on `tickets` keep the sum per project in `unread_counters`
(models/unread.py), so the read is O(1) whatever writes the tickets (services, workers, raw
SQL). The 30 s cache in services/unread.py stays in front of it.

Revision ID: 0007_unread_counters
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0007_unread_counters"
down_revision = "0002"
branch_labels = None
depends_on = None

# A ticket's part of its project's unread total.
_OLD = "(CASE WHEN old.deleted_at IS NULL AND old.status <> 'resolved' THEN old.unread_team_count ELSE 0 END)"
_NEW = "(CASE WHEN new.deleted_at IS NULL AND new.status <> 'resolved' THEN new.unread_team_count ELSE 0 END)"
# SQLite: one writer at a time, so one slot. (`WHERE` also settles the upsert-after-SELECT
# parsing ambiguity SQLite documents.)
_SQLITE_ADD = ("INSERT INTO unread_counters (project_id, slot, total) SELECT {project}, 0, {delta} WHERE {cond} "
               "ON CONFLICT (project_id, slot) DO UPDATE SET total = total + excluded.total;")
SQLITE_UP = [
    f"""CREATE TRIGGER tickets_unread_ai AFTER INSERT ON tickets WHEN {_NEW} <> 0 BEGIN
          {_SQLITE_ADD.format(project="new.project_id", delta=_NEW, cond="1")}
        END""",
    f"""CREATE TRIGGER tickets_unread_au AFTER UPDATE OF unread_team_count, status, deleted_at, project_id
        ON tickets WHEN {_OLD} <> {_NEW} OR old.project_id <> new.project_id BEGIN
          {_SQLITE_ADD.format(project="new.project_id", delta=f"{_NEW} - {_OLD}",
                              cond="old.project_id = new.project_id")}
          {_SQLITE_ADD.format(project="old.project_id", delta=f"-{_OLD}", cond="old.project_id <> new.project_id")}
          {_SQLITE_ADD.format(project="new.project_id", delta=_NEW, cond="old.project_id <> new.project_id")}
        END""",
    f"""CREATE TRIGGER tickets_unread_ad AFTER DELETE ON tickets WHEN {_OLD} <> 0 BEGIN
          {_SQLITE_ADD.format(project="old.project_id", delta=f"-{_OLD}", cond="1")}
        END""",
]
# PostgreSQL: a transaction adds to slot txid % 16, so concurrent writers of one project
# rarely queue on one counter row (and each transaction locks at most one per project).
POSTGRES_UP = [
    """CREATE FUNCTION tickets_unread_counter() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        target_slot integer := (txid_current() % 16)::integer;
        was integer := 0;
        now_ integer := 0;
    BEGIN
        IF TG_OP <> 'INSERT' THEN
            IF OLD.deleted_at IS NULL AND OLD.status <> 'resolved' THEN was := OLD.unread_team_count; END IF;
        END IF;
        IF TG_OP <> 'DELETE' THEN
            IF NEW.deleted_at IS NULL AND NEW.status <> 'resolved' THEN now_ := NEW.unread_team_count; END IF;
        END IF;
        IF TG_OP = 'UPDATE' AND OLD.project_id = NEW.project_id THEN
            now_ := now_ - was;
            was := 0;
        END IF;
        IF was <> 0 THEN
            INSERT INTO unread_counters AS c (project_id, slot, total) VALUES (OLD.project_id, target_slot, -was)
            ON CONFLICT (project_id, slot) DO UPDATE SET total = c.total + EXCLUDED.total;
        END IF;
        IF now_ <> 0 THEN
            INSERT INTO unread_counters AS c (project_id, slot, total) VALUES (NEW.project_id, target_slot, now_)
            ON CONFLICT (project_id, slot) DO UPDATE SET total = c.total + EXCLUDED.total;
        END IF;
        RETURN NULL;
    END $$""",
    f"""CREATE TRIGGER tickets_unread_ai AFTER INSERT ON tickets FOR EACH ROW
        WHEN ({_NEW.replace("new.", "NEW.")} <> 0) EXECUTE FUNCTION tickets_unread_counter()""",
    f"""CREATE TRIGGER tickets_unread_au AFTER UPDATE OF unread_team_count, status, deleted_at, project_id
        ON tickets FOR EACH ROW
        WHEN ({_OLD.replace("old.", "OLD.")} <> {_NEW.replace("new.", "NEW.")} OR OLD.project_id <> NEW.project_id)
        EXECUTE FUNCTION tickets_unread_counter()""",
    f"""CREATE TRIGGER tickets_unread_ad AFTER DELETE ON tickets FOR EACH ROW
        WHEN ({_OLD.replace("old.", "OLD.")} <> 0) EXECUTE FUNCTION tickets_unread_counter()""",
]
BACKFILL = """INSERT INTO unread_counters (project_id, slot, total)
    SELECT project_id, 0, sum(unread_team_count) FROM tickets
    WHERE unread_team_count > 0 AND deleted_at IS NULL AND status <> 'resolved' GROUP BY project_id"""


def upgrade() -> None:
    op.create_table(
        "unread_counters",
        sa.Column("project_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("slot", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("project_id", "slot", name=op.f("pk_unread_counters")),
    )
    # Triggers first, then the backfill, in one transaction (PostgreSQL) or under the
    # migration's write lock (SQLite): no ticket change falls between the two.
    for statement in SQLITE_UP if op.get_bind().dialect.name == "sqlite" else POSTGRES_UP:
        op.execute(statement)
    op.execute(BACKFILL)


def downgrade() -> None:
    for name in ("tickets_unread_ai", "tickets_unread_au", "tickets_unread_ad"):
        if op.get_bind().dialect.name == "sqlite":
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON tickets")
    if op.get_bind().dialect.name != "sqlite":
        op.execute("DROP FUNCTION IF EXISTS tickets_unread_counter()")
    op.drop_table("unread_counters")
