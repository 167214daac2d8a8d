"""Full-text search indexes: FTS5 trigram tables on SQLite, pg_trgm GIN indexes on PostgreSQL.

The ticket list's `search` is a case-insensitive substring match over the customer's name and
email, the email subject and every message. `LIKE '%x%'` scans cost 80–500 ms at 1M tickets;
trigram indexes answer the same substring question from an index on both databases.

SQLite note: the FTS5 tables are external-content tables keyed by the implicit rowid of
`messages`/`tickets`. `VACUUM` may renumber those rowids, so after a VACUUM run
`INSERT INTO message_fts(message_fts) VALUES('rebuild')` (and the same for ticket_fts).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SQLITE_UP = [
    "CREATE VIRTUAL TABLE message_fts USING fts5(content, content='messages', content_rowid='rowid', tokenize='trigram')",
    """CREATE TRIGGER messages_fts_ai AFTER INSERT ON messages BEGIN
         INSERT INTO message_fts(rowid, content) VALUES (new.rowid, new.content);
       END""",
    """CREATE TRIGGER messages_fts_ad AFTER DELETE ON messages BEGIN
         INSERT INTO message_fts(message_fts, rowid, content) VALUES ('delete', old.rowid, old.content);
       END""",
    """CREATE TRIGGER messages_fts_au AFTER UPDATE OF content ON messages BEGIN
         INSERT INTO message_fts(message_fts, rowid, content) VALUES ('delete', old.rowid, old.content);
         INSERT INTO message_fts(rowid, content) VALUES (new.rowid, new.content);
       END""",
    "CREATE VIRTUAL TABLE ticket_fts USING fts5(customer_name, customer_email, email_subject,"
    " content='tickets', content_rowid='rowid', tokenize='trigram')",
    """CREATE TRIGGER tickets_fts_ai AFTER INSERT ON tickets BEGIN
         INSERT INTO ticket_fts(rowid, customer_name, customer_email, email_subject)
         VALUES (new.rowid, new.customer_name, new.customer_email, new.email_subject);
       END""",
    """CREATE TRIGGER tickets_fts_ad AFTER DELETE ON tickets BEGIN
         INSERT INTO ticket_fts(ticket_fts, rowid, customer_name, customer_email, email_subject)
         VALUES ('delete', old.rowid, old.customer_name, old.customer_email, old.email_subject);
       END""",
    """CREATE TRIGGER tickets_fts_au AFTER UPDATE OF customer_name, customer_email, email_subject ON tickets BEGIN
         INSERT INTO ticket_fts(ticket_fts, rowid, customer_name, customer_email, email_subject)
         VALUES ('delete', old.rowid, old.customer_name, old.customer_email, old.email_subject);
         INSERT INTO ticket_fts(rowid, customer_name, customer_email, email_subject)
         VALUES (new.rowid, new.customer_name, new.customer_email, new.email_subject);
       END""",
]

POSTGRES_UP = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX ix_messages_content_trgm ON messages USING gin (content gin_trgm_ops)",
    "CREATE INDEX ix_tickets_customer_name_trgm ON tickets USING gin (customer_name gin_trgm_ops)",
    "CREATE INDEX ix_tickets_customer_email_trgm ON tickets USING gin (customer_email gin_trgm_ops)",
    "CREATE INDEX ix_tickets_email_subject_trgm ON tickets USING gin (email_subject gin_trgm_ops)",
]


def upgrade() -> None:
    statements = SQLITE_UP if op.get_bind().dialect.name == "sqlite" else POSTGRES_UP
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in ("messages_fts_ai", "messages_fts_ad", "messages_fts_au", "tickets_fts_ai", "tickets_fts_ad", "tickets_fts_au"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS message_fts")
        op.execute("DROP TABLE IF EXISTS ticket_fts")
    else:
        for name in ("ix_messages_content_trgm", "ix_tickets_customer_name_trgm", "ix_tickets_customer_email_trgm", "ix_tickets_email_subject_trgm"):
            op.execute(f"DROP INDEX IF EXISTS {name}")
