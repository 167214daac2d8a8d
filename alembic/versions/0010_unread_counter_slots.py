"""PostgreSQL: the unread-counter trigger picks its slot by backend, out of 128.

Migration 0007_unread_counters spread a project's unread total over 16 rows, the slot being
`txid_current() % 16`. The row is locked from the ticket change to the commit, so two
transactions that drew the same slot ran one after the other. With 16 ingest threads the
draw collided often: txids are handed to every transaction (claims, ticket numbers, triage),
so concurrent ingests' txids are not consecutive. Sampled in pg_stat_activity during a
webhook drain: ~0.15 sessions waiting on an INSERT INTO tickets at any moment.

Two transactions at the same time are always on two backends, and a pool's backends have
nearby process ids: `pg_backend_pid() % 128` gives them different rows in practice. Reads
sum the project's rows (at most 128; services/unread.py), so nothing else changes, and the
rows already written stay valid: the total is their sum, whichever slot holds what.

Revision ID: 0010_unread_counter_slots
Revises: 0007_unread_counters
"""

from __future__ import annotations

from alembic import op

revision = "0010_unread_counter_slots"
down_revision = "0007_unread_counters"
branch_labels = None
depends_on = None

# The function of 0007 with the slot expression as a parameter; the triggers stay.
FUNCTION = """CREATE OR REPLACE FUNCTION tickets_unread_counter() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        target_slot integer := ({slot})::integer;
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
    END $$"""
SLOT = "pg_backend_pid() % 128"
PREVIOUS_SLOT = "txid_current() % 16"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":  # SQLite has one writer and one slot
        op.execute(FUNCTION.format(slot=SLOT))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(FUNCTION.format(slot=PREVIOUS_SLOT))
