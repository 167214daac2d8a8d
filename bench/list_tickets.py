"""Ticket list benchmark: seed N tickets into SQLite and PostgreSQL, serve the real app, time it.

    .venv/bin/python bench/list_tickets.py                     # 1,000,000 tickets, both databases
    .venv/bin/python bench/list_tickets.py --tickets 200000 --databases sqlite
    .venv/bin/python bench/list_tickets.py --reuse             # keep the seeded SQLite file / PG cluster
    .venv/bin/python bench/list_tickets.py --reuse --postgres-url postgresql+psycopg://…/postgres --prewarm
                                       # a server you run (e.g. shared_buffers = 2GB), its cache warmed first

What it does, per database:
1. Seeds one project with N tickets (0-4 messages each, 0-3 tags each, persons for the
   distinct ids) by bulk insert: `executemany` on the raw sqlite3 connection, `COPY` through
   psycopg on PostgreSQL. Secondary indexes, the FTS triggers and the trigram indexes are
   dropped before the load and rebuilt after it (the usual bulk-load recipe); the report
   gives the insert rate and the rebuild time separately.
2. Serves the real app (`uvicorn api.app:create_app --factory`) in a subprocess: SQLite in
   the embedded mode (in-process caches), PostgreSQL with Redis (the production mode).
3. Times sequential HTTP requests (httpx, one connection) for each scenario and, in the same
   run and through the same driver, the scenario's page SELECT alone (the SQL the service
   builds, executed on a raw DBAPI connection) as the baseline.

PostgreSQL and Redis are started with tests/services.py unless --postgres-url/--redis-url
are given. Nothing here is run by the test suite.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from tests.services import free_port, start_postgres, start_redis  # noqa: E402

SEED = 20261127
USERS = 20
ROLES = 5
TAGS = [
    "billing", "bug", "feature-request", "login", "refund", "urgent", "vip", "onboarding", "api", "mobile",
    "ios", "android", "sso", "export", "import", "invoice", "security", "performance", "slow", "crash",
    "docs", "question", "churn-risk", "enterprise", "trial", "webhooks", "email", "slack", "teams", "github",
    "widget", "gdpr", "data-deletion", "pricing", "upgrade", "downgrade", "integration", "dashboard", "alerts",
    "feedback",
]
# Zipf-like popularity: the first tag is on ~15% of tickets, the last on well under 1%.
TAG_WEIGHTS = [1.0 / (i + 1) ** 1.1 for i in range(len(TAGS))]
FIRST = [
    "Ada", "Grace", "Alan", "Linus", "Margaret", "Ken", "Barbara", "Dennis", "Frances", "John", "Radia",
    "Edsger", "Donald", "Leslie", "Tim", "Vint", "Hedy", "Katherine", "Mary", "Guido", "Bjarne", "Anders",
    "Sophie", "Yukihiro", "Brendan", "Rasmus", "James", "Niklaus", "Alonzo", "Kurt",
]
LAST = [f"{a}{b}" for a in ("Lov", "Hop", "Tur", "Torv", "Ham", "Thom", "Lisk", "Ritch", "Allen", "Back",
                            "Perl", "Dijk", "Knu", "Lamp", "Bern", "Cerf", "Lam", "John", "Jack", "Ross")
        for b in ("elace", "per", "ington", "alds", "ilton", "pson", "ov", "ieson", "by", "us")]
WORDS = (
    "the a to and of in it is my i we you for on with this that not can cannot when after before please "
    "help issue problem error account login password reset email invoice billing charge refund payment card "
    "plan upgrade downgrade cancel subscription trial export import data dashboard chart report query slow "
    "timeout crash app mobile ios android browser chrome firefox safari page load button click settings "
    "team member invite role permission access denied token api key webhook integration slack github teams "
    "feature request would like thanks hello hi regards urgent asap today yesterday week month customer "
    "support ticket reply update still working broken again since version release deploy server region"
).split()
STATUSES = ["resolved"] * 70 + ["open"] * 12 + ["new"] * 5 + ["pending"] * 8 + ["on_hold"] * 5
PRIORITIES = [None, None, "low", "medium", "medium", "high", "critical"]
CHANNELS = [("widget", "widget_embedded")] * 4 + [("widget", "widget_api"), ("email", None), ("email", None),
            ("slack", "slack_channel_message"), ("slack", "slack_bot_mention"), ("github", "github_issue"),
            ("teams", "teams_bot_mention")]

TICKET_COLUMNS = [
    "id", "project_id", "ticket_number", "channel_source", "channel_detail", "distinct_id", "status", "priority",
    "assignee_user_id", "assignee_role_id", "ai_resolved", "created_at", "updated_at", "message_count",
    "last_message_at", "last_message_text", "unread_team_count", "unread_customer_count", "sla_due_at",
    "customer_name", "customer_email", "email_subject", "email_from", "thread_key",
]
MESSAGE_COLUMNS = [
    "id", "project_id", "ticket_id", "message_type", "author_type", "author_name", "is_private", "content",
    "version", "created_at", "updated_at",
]


# -- data generation ---------------------------------------------------------------------------

@dataclass
class Dataset:
    """What the generator decided, so scenarios can ask questions with known answers."""

    n: int
    now: datetime
    project_id: int = 0
    user_ids: list[int] = field(default_factory=list)
    role_ids: list[uuid.UUID] = field(default_factory=list)
    tag_ids: dict[str, uuid.UUID] = field(default_factory=dict)
    rare_tokens: list[str] = field(default_factory=list)


def _uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def _sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choices(WORDS, k=words)).capitalize() + "."


def generate(ds: Dataset, chunk: int = 20_000) -> Iterator[tuple[list[tuple[Any, ...]], list[tuple[Any, ...]],
                                                               list[tuple[Any, ...]]]]:
    """Yield (tickets, messages, ticket_tags) rows in chunks, as Python values (UUIDs, datetimes)."""
    rng = random.Random(SEED)
    persons = max(1, ds.n // 5)
    span = timedelta(days=365).total_seconds()
    tag_names = list(ds.tag_ids)
    tickets: list[tuple[Any, ...]] = []
    messages: list[tuple[Any, ...]] = []
    links: list[tuple[Any, ...]] = []
    for number in range(1, ds.n + 1):
        tid = _uuid(rng)
        created = ds.now - timedelta(seconds=span * (1 - number / (ds.n + 1)))
        updated = min(ds.now, created + timedelta(seconds=rng.random() * 14 * 86400))
        source, detail = rng.choice(CHANNELS)
        k = rng.randrange(persons)
        first, last = FIRST[k % len(FIRST)], LAST[(k // len(FIRST)) % len(LAST)]
        name = f"{first} {last}"
        email = f"{first}.{last}{k}@example.com".lower()
        status = rng.choice(STATUSES)
        roll = rng.random()
        user_id = ds.user_ids[rng.randrange(USERS)] if roll < 0.6 else None
        role_id = ds.role_ids[rng.randrange(ROLES)] if 0.6 <= roll < 0.75 else None
        sla = None
        if rng.random() < 0.3:
            sla = ds.now + timedelta(seconds=rng.uniform(-30 * 86400, 7 * 86400))
        unread = rng.randint(1, 3) if status != "resolved" and rng.random() < 0.1 else 0
        n_messages = rng.choice((0, 1, 1, 2, 2, 3, 4))
        last_text = None
        for index in range(n_messages):
            text = _sentence(rng, rng.randint(6, 24))
            if rng.random() < 0.05:
                token = f"ORD{rng.randrange(10**8):08d}"
                text += f" Order {token}."
                if len(ds.rare_tokens) < 500:
                    ds.rare_tokens.append(token)
            at = created + timedelta(seconds=index * 60)
            customer = index % 2 == 0
            messages.append((
                _uuid(rng), ds.project_id, tid, "customer_message" if customer else "sent_reply",
                "customer" if customer else "support", name if customer else "Agent", False, text, 1, at, at,
            ))
            last_text = text[:500]
        is_email = source == "email"
        tickets.append((
            tid, ds.project_id, number, source, detail, None if is_email else f"user-{k}", status,
            rng.choice(PRIORITIES), user_id, role_id, False, created, updated, n_messages,
            created + timedelta(seconds=max(0, n_messages - 1) * 60) if n_messages else None, last_text, unread, 0,
            sla, name, email, _sentence(rng, 5) if is_email else None, email if is_email else None,
            f"bench:{number}",
        ))
        tag_ids = [ds.tag_ids[name_] for name_ in
                   {rng.choices(tag_names, TAG_WEIGHTS)[0] for _ in range(rng.choice((0, 0, 1, 1, 1, 2, 3)))}]
        for tag_id in tag_ids:
            # With the ticket's list order and all its tag ids, which ticket_tags carries for
            # tag filters (the triggers of 0007_tag_order_index fill them in when not given).
            links.append((tid, tag_id, updated, number, tuple(tag_ids)))
        if len(tickets) >= chunk:
            yield tickets, messages, links
            tickets, messages, links = [], [], []
    if tickets:
        yield tickets, messages, links


# -- database plumbing ---------------------------------------------------------------------------

def _use_database(url: str, redis_url: str | None) -> None:
    """Point this process's settings/engine/cache at `url` (as the test fixtures do)."""
    from core import cache, db, settings

    os.environ["DATABASE_URL"] = url
    if redis_url:
        os.environ["REDIS_URL"] = redis_url
    else:
        os.environ.pop("REDIS_URL", None)
    settings.get_settings.cache_clear()
    db.reset_engine()
    cache.reset_cache()


def _sqlite_dt(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%d %H:%M:%S.%f") if value is not None else None


@dataclass
class SeedReport:
    rows: int
    insert_seconds: float   # inside executemany / COPY only
    wall_seconds: float     # including generating the rows in Python
    rebuild_seconds: float  # indexes, FTS, ANALYZE

    @property
    def rate(self) -> float:
        return self.rows / self.insert_seconds if self.insert_seconds else 0.0

    @property
    def wall_rate(self) -> float:
        return self.rows / self.wall_seconds if self.wall_seconds else 0.0


def _prepare_project(ds: Dataset) -> str:
    """Project, users (members), roles, tags and an API key through the services. Returns the key."""
    from core.db import session_scope
    from models import Role, Tag
    from services import accounts

    with session_scope() as session:
        project, _ = accounts.get_or_create_project(session=session, name="Bench")
        ds.project_id = project.id
        ds.user_ids = []
        for i in range(USERS):
            user = accounts.get_or_create_user(session=session, email=f"agent{i}@bench.test", first_name=f"Agent{i}")
            accounts.add_member(session=session, project=project, user=user)
            ds.user_ids.append(user.id)
        from sqlalchemy import select

        roles = list(session.scalars(select(Role).where(Role.project_id == project.id).order_by(Role.name)))
        if not roles:
            roles = [Role(id=uuid.uuid4(), project_id=project.id, name=f"Tier {i}") for i in range(ROLES)]
            session.add_all(roles)
        ds.role_ids = [r.id for r in roles]
        tags = {t.name: t.id for t in session.scalars(select(Tag).where(Tag.project_id == project.id))}
        for name in TAGS:
            if name not in tags:
                tag = Tag(id=uuid.uuid4(), project_id=project.id, name=name)
                session.add(tag)
                tags[name] = tag.id
        ds.tag_ids = {name: tags[name] for name in TAGS}
        user = accounts.get_or_create_user(session=session, email="agent0@bench.test")
        key = accounts.create_api_key(session=session, user=user, scopes=["*"], label="bench").secret
        session.flush()
    return key


def _persons_rows(ds: Dataset) -> Iterator[tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]]:
    rng = random.Random(SEED + 1)
    persons, links = [], []
    for k in range(max(1, ds.n // 5)):
        first, last = FIRST[k % len(FIRST)], LAST[(k // len(FIRST)) % len(LAST)]
        pid = _uuid(rng)
        persons.append((pid, ds.project_id, f"{first} {last}", f"{first}.{last}{k}@example.com".lower(),
                        ds.now - timedelta(days=400)))
        links.append((ds.project_id, f"user-{k}", pid))
        if len(persons) >= 50_000:
            yield persons, links
            persons, links = [], []
    if persons:
        yield persons, links


def seed_sqlite(path: Path, ds: Dataset) -> SeedReport:
    conn = sqlite3.connect(path, isolation_level=None)
    # A fresh file: no journal while loading (a crash means re-seeding), WAL again afterwards.
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-1000000")
    # Drop what slows a bulk load (secondary indexes and the FTS triggers); rebuild afterwards.
    saved = conn.execute(
        "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL AND "
        "((type='index' AND tbl_name IN ('tickets','messages','ticket_tags','persons','person_distinct_ids')) OR "
        "(type='trigger' AND name LIKE '%_fts_%'))"
    ).fetchall()
    for kind, name, _ in saved:
        conn.execute(f"DROP {kind.upper()} {name}")
    rows = 0
    inserting = 0.0
    start = time.perf_counter()
    conn.execute("BEGIN")

    def insert(sql: str, values: list[tuple[Any, ...]]) -> None:
        nonlocal rows, inserting
        began = time.perf_counter()
        conn.executemany(sql, values)
        inserting += time.perf_counter() - began
        rows += len(values)

    for persons, links in _persons_rows(ds):
        insert("INSERT INTO persons (id, project_id, name, email, created_at, properties, is_identified) "
               "VALUES (?, ?, ?, ?, ?, '{}', 0)", [(p[0].hex, p[1], p[2], p[3], _sqlite_dt(p[4])) for p in persons])
        insert("INSERT INTO person_distinct_ids (project_id, distinct_id, person_id) VALUES (?, ?, ?)",
               [(p, d, i.hex) for p, d, i in links])
    ticket_sql = (f"INSERT INTO tickets ({', '.join(TICKET_COLUMNS)}) "
                  f"VALUES ({', '.join('?' * len(TICKET_COLUMNS))})")
    message_sql = (f"INSERT INTO messages ({', '.join(MESSAGE_COLUMNS)}) "
                   f"VALUES ({', '.join('?' * len(MESSAGE_COLUMNS))})")
    for tickets, messages, links in generate(ds):
        insert(ticket_sql, [
            (t[0].hex, *t[1:8], t[8], t[9].hex if t[9] else None, int(t[10]), _sqlite_dt(t[11]), _sqlite_dt(t[12]),
             t[13], _sqlite_dt(t[14]), *t[15:18], _sqlite_dt(t[18]), *t[19:])
            for t in tickets
        ])
        insert(message_sql, [
            (m[0].hex, m[1], m[2].hex, *m[3:6], int(m[6]), m[7], m[8], _sqlite_dt(m[9]), _sqlite_dt(m[10]))
            for m in messages
        ])
        insert("INSERT INTO ticket_tags (ticket_id, tag_id, updated_at, ticket_number, tag_set) VALUES (?, ?, ?, ?, ?)",
               [(a.hex, b.hex, _sqlite_dt(at), n, ",".join(t.hex for t in tags)) for a, b, at, n, tags in links])
    conn.execute("UPDATE projects SET ticket_seq = ? WHERE id = ?", (ds.n, ds.project_id))
    conn.execute("COMMIT")
    wall = time.perf_counter() - start
    start = time.perf_counter()
    for kind, _, sql in saved:
        if kind == "index":
            conn.execute(sql)
    conn.execute("INSERT INTO message_fts(message_fts) VALUES ('rebuild')")
    conn.execute("INSERT INTO ticket_fts(ticket_fts) VALUES ('rebuild')")
    for kind, _, sql in saved:
        if kind == "trigger":
            conn.execute(sql)
    conn.execute("ANALYZE")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.close()
    return SeedReport(rows, inserting, wall, time.perf_counter() - start)


def seed_postgres(url: str, ds: Dataset) -> SeedReport:
    import psycopg

    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        saved = conn.execute(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.schemaname = 'public' AND i.tablename IN "
            "('tickets','messages','ticket_tags','persons','person_distinct_ids') AND NOT EXISTS "
            "(SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)"
        ).fetchall()
        for name, _ in saved:
            conn.execute(f'DROP INDEX "{name}"')
        rows = 0
        inserting = 0.0
        start = time.perf_counter()
        with conn.transaction(), conn.cursor() as cur:

            def copy_rows(sql: str, values: list[tuple[Any, ...]]) -> None:
                nonlocal rows, inserting
                began = time.perf_counter()
                with cur.copy(sql) as copy:
                    for value in values:
                        copy.write_row(value)
                inserting += time.perf_counter() - began
                rows += len(values)

            for persons, links in _persons_rows(ds):
                copy_rows("COPY persons (id, project_id, name, email, created_at, properties, is_identified) "
                          "FROM STDIN", [(*p, "{}", False) for p in persons])
                copy_rows("COPY person_distinct_ids (project_id, distinct_id, person_id) FROM STDIN", links)
            for tickets, messages, links in generate(ds):
                copy_rows(f"COPY tickets ({', '.join(TICKET_COLUMNS)}) FROM STDIN", tickets)
                copy_rows(f"COPY messages ({', '.join(MESSAGE_COLUMNS)}) FROM STDIN", messages)
                copy_rows("COPY ticket_tags (ticket_id, tag_id, updated_at, ticket_number, tag_set) FROM STDIN",
                          [(a, b, at, n, ",".join(str(t) for t in tags)) for a, b, at, n, tags in links])
            cur.execute("UPDATE projects SET ticket_seq = %s WHERE id = %s", (ds.n, ds.project_id))
        wall = time.perf_counter() - start
        start = time.perf_counter()
        conn.execute("SET maintenance_work_mem = '1GB'")
        conn.execute("SET max_parallel_maintenance_workers = 2")
        for _, definition in saved:
            conn.execute(definition)
        conn.execute("VACUUM ANALYZE")
    return SeedReport(rows, inserting, wall, time.perf_counter() - start)


def prewarm_postgres(url: str) -> str:
    """pg_prewarm the tables and indexes the list reads (not messages: text search only)."""
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
        buffers = conn.execute("SHOW shared_buffers").fetchone()[0]
        relations = [r[0] for r in conn.execute(
            "SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "LEFT JOIN pg_index i ON i.indexrelid = c.oid LEFT JOIN pg_class t ON t.oid = i.indrelid "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'i') AND COALESCE(t.relname, c.relname) IN "
            "('tickets', 'ticket_tags', 'tags', 'persons', 'person_distinct_ids', 'users', 'roles', 'unread_counters')"
        )]
        pages = sum(conn.execute("SELECT pg_prewarm(%s)", (r,)).fetchone()[0] for r in relations)
    return f"postgres: prewarmed {len(relations)} tables and indexes, {pages * 8 // 1024:,} MB (shared_buffers {buffers})"


def count_tickets(url: str) -> int:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM tickets")).scalar_one())
    except Exception:
        return -1
    finally:
        engine.dispose()


# -- serving and measuring -----------------------------------------------------------------------

@contextlib.contextmanager
def serve(url: str, redis_url: str | None, workdir: Path) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "DATABASE_URL": url, "TICKETWIRE_VAR_DIR": str(workdir / "var"),
           "TICKETWIRE_SECRET_KEY": "bench-secret", "TICKETWIRE_RATE_LIMIT_PER_MINUTE": "100000000",
           "TICKETWIRE_RATE_LIMIT_PER_HOUR": "100000000", "PYTHONPATH": str(ROOT)}
    env.pop("REDIS_URL", None)
    if redis_url:
        env["REDIS_URL"] = redis_url
    log = open(workdir / f"uvicorn-{port}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning", "--no-access-log"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/openapi.json", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start; see {log.name}")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def percentile(samples: list[float], pct: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))
    return ordered[index]


@dataclass
class Scenario:
    name: str
    target_ms: float | None
    params: Callable[[random.Random], dict[str, str]] | None = None   # a list request
    path: Callable[[random.Random], str] | None = None                 # any other GET
    before: Callable[[httpx.Client, random.Random], None] | None = None  # untimed preparation


@dataclass
class Result:
    name: str
    target_ms: float | None
    p50: float
    p99: float
    base_p50: float | None
    base_p99: float | None
    count: int | None


def scenarios(ds: Dataset, prefix: str) -> list[Scenario]:
    common_tag = TAGS[0]
    sla_kinds = ["breached", "at-risk", "on-track"]
    touched = {"n": 0}

    def invalidate_unread(client: httpx.Client, rng: random.Random) -> None:
        # A status change is one of the changes that invalidate the cached unread count.
        touched["n"] += 1
        status = "open" if touched["n"] % 2 else "pending"
        response = client.patch(f"{prefix}/tickets/{ds.n}", json={"status": status})
        response.raise_for_status()

    return [
        Scenario("default list (-updated_at)", 20, params=lambda r: {}),
        Scenario("status + assignee", 20,
                 params=lambda r: {"status": "open", "assignee": f"user:{r.choice(ds.user_ids)}"}),
        Scenario("status list + assignee=me,unassigned", 20,
                 params=lambda r: {"status": "new,open,pending", "assignee": "me,unassigned"}),
        Scenario(f"tag filter (common: {common_tag})", 20, params=lambda r: {"tags": common_tag}),
        Scenario("tag filter (any of 40 tags)", 20, params=lambda r: {"tags": r.choice(TAGS)}),
        Scenario("tags_all + tags_exclude", 20,
                 params=lambda r: {"tags_all": json.dumps([TAGS[0], TAGS[1]]), "tags_exclude": TAGS[2]}),
        Scenario("sla (breached / at-risk / on-track)", 20, params=lambda r: {"sla": r.choice(sla_kinds)}),
        Scenario("search=#<n>", 20, params=lambda r: {"search": f"#{r.randint(1, ds.n)}"}),
        Scenario("text search: customer surname", 100, params=lambda r: {"search": r.choice(LAST)}),
        Scenario("text search: rare token in a message", 100,
                 params=lambda r: {"search": r.choice(ds.rare_tokens or ["ORD0000"])}),
        Scenario("text search: common word (worst case)", None,
                 params=lambda r: {"search": r.choice(["invoice", "password", "webhook"])}),
        Scenario("GET tickets/<number>", 20, path=lambda r: f"{prefix}/tickets/{r.randint(1, ds.n)}"),
        Scenario("unread_count (cached)", 10, path=lambda r: f"{prefix}/tickets/unread_count"),
        Scenario("unread_count (after invalidation)", 10, path=lambda r: f"{prefix}/tickets/unread_count",
                 before=invalidate_unread),
        Scenario("default list, offset 5000", 20, params=lambda r: {"offset": "5000"}),
    ]


def _baseline_sql(url: str, ds: Dataset, params: dict[str, str], user_id: int) -> tuple[str, Any]:
    """The page SELECT the service runs for `params` (the deferred join of
    ticket_query.page_query with the embedded assignee, person, tags and count; without the
    look-ups that build it: tag ids, text-index candidates, selectivity probes), compiled for
    the raw driver."""
    from core.db import get_engine, new_session
    from services import ticket_query

    engine = get_engine()
    with new_session(read_only=True) as session:
        built = ticket_query.build_list_query(session=session, project_id=ds.project_id, params=params,
                                              user_id=user_id)
        query = ticket_query.page_query(session, built.page, params.get("order_by"), ticket_query.DEFAULT_LIMIT + 1,
                                        int(params.get("offset", 0)), built.count)
    compiled = query.compile(dialect=engine.dialect, compile_kwargs={"render_postcompile": True})
    processors = compiled._bind_processors

    def value(name: str) -> Any:
        raw = compiled.params[name]
        if name in processors:
            return processors[name](raw)
        if isinstance(raw, uuid.UUID) and engine.dialect.name == "sqlite":
            return raw.hex  # how the Uuid type stores it on SQLite
        return raw

    if engine.dialect.name == "sqlite":
        return str(compiled), tuple(value(name) for name in compiled.positiontup or [])
    return str(compiled), {name: value(name) for name in compiled.params}


def measure(url: str, redis_url: str | None, ds: Dataset, api_key: str, workdir: Path, samples: int,
            only: str | None) -> list[Result]:
    results: list[Result] = []
    prefix = f"/api/projects/{ds.project_id}/conversations"
    is_sqlite = url.startswith("sqlite")
    raw = sqlite3.connect(url[len("sqlite:///"):]) if is_sqlite else None
    if raw is None:
        import psycopg

        raw = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)
    with serve(url, redis_url, workdir) as base, httpx.Client(
        base_url=base, headers={"Authorization": f"Bearer {api_key}"}, timeout=60
    ) as client:
        for scenario in scenarios(ds, prefix):
            if only and only not in scenario.name:
                continue
            rng = random.Random(SEED)
            timings: list[float] = []
            baseline: list[float] = []
            count = None
            for i in range(samples + 10):
                params = scenario.params(rng) if scenario.params else None
                path = scenario.path(rng) if scenario.path else f"{prefix}/tickets/"
                if scenario.before:
                    scenario.before(client, rng)
                start = time.perf_counter()
                response = client.get(path, params=params)
                elapsed = (time.perf_counter() - start) * 1000
                if response.status_code != 200:
                    raise RuntimeError(f"{scenario.name}: {response.status_code} {response.text[:300]}")
                if i >= 10:
                    timings.append(elapsed)
                if params is not None:
                    count = response.json()["count"]
                    sql, args = _baseline_sql(url, ds, params, ds.user_ids[0])
                    start = time.perf_counter()
                    raw.execute(sql, args).fetchall()
                    if i >= 10:
                        baseline.append((time.perf_counter() - start) * 1000)
            results.append(Result(
                scenario.name, scenario.target_ms, statistics.median(timings), percentile(timings, 99),
                statistics.median(baseline) if baseline else None,
                percentile(baseline, 99) if baseline else None, count,
            ))
            r = results[-1]
            base_text = f"  baseline p50 {r.base_p50:.2f} p99 {r.base_p99:.2f}" if r.base_p50 is not None else ""
            print(f"  {r.name:45s} p50 {r.p50:7.2f} ms  p99 {r.p99:7.2f} ms{base_text}", flush=True)
        # The bare indexed SELECT: 100 rows of the default order, no ORM, no HTTP.
        timings = []
        sql = (f"SELECT * FROM tickets WHERE project_id = {ds.project_id} AND deleted_at IS NULL "
               "ORDER BY updated_at DESC, ticket_number DESC LIMIT 100")
        for i in range(samples + 10):
            start = time.perf_counter()
            raw.execute(sql).fetchall()
            if i >= 10:
                timings.append((time.perf_counter() - start) * 1000)
        results.append(Result("bare indexed SELECT (100 rows, raw driver)", None, statistics.median(timings),
                              percentile(timings, 99), None, None, None))
    raw.close()
    return results


def table(db: str, results: list[Result]) -> str:
    lines = [f"| {db} | p50 ms | p99 ms | target p99 | page SELECT p50 / p99 ms | count |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in results:
        target = f"≤ {r.target_ms:g}" if r.target_ms else "—"
        verdict = "" if not r.target_ms else (" ✓" if r.p99 <= r.target_ms else " ✗")
        base = f"{r.base_p50:.2f} / {r.base_p99:.2f}" if r.base_p50 is not None else "—"
        lines.append(f"| {r.name} | {r.p50:.2f} | {r.p99:.2f} | {target}{verdict} | {base} | "
                     f"{'' if r.count is None else r.count} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tickets", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--databases", default="sqlite,postgres")
    parser.add_argument("--workdir", type=Path, default=ROOT / "bench" / "out")
    parser.add_argument("--reuse", action="store_true", help="keep a seeded database of the same size")
    parser.add_argument("--postgres-url", help="an existing server (postgresql+psycopg://…/postgres)")
    parser.add_argument("--redis-url", help="an existing Redis")
    parser.add_argument("--only", help="run only scenarios whose name contains this")
    parser.add_argument("--seed-only", action="store_true", help="seed (or check) the databases, measure nothing")
    parser.add_argument("--prewarm", action="store_true",
                        help="PostgreSQL: load the list's tables and indexes into shared_buffers first (pg_prewarm), "
                             "as on a server that has been running; worth it when shared_buffers holds them (≥ 2 GB)")
    args = parser.parse_args()

    workdir: Path = args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TICKETWIRE_SECRET_KEY", "bench-secret")
    os.environ["TICKETWIRE_VAR_DIR"] = str(workdir / "var")
    from core.migrate import migrate

    started: list[Any] = []
    # PostgreSQL runs as the `postgres` user when we are root: keep its files under /tmp.
    servers_dir = Path(tempfile.mkdtemp(prefix="ticketwire-bench-"))
    report: list[str] = [f"{args.tickets:,} tickets, {args.samples} sequential samples per scenario, "
                         f"{datetime.now(UTC):%Y-%m-%d}, {os.cpu_count()} CPUs\n"]
    try:
        for db in args.databases.split(","):
            ds = Dataset(n=args.tickets, now=datetime.now(UTC).replace(microsecond=0))
            redis_url = None
            if db == "sqlite":
                path = workdir / f"bench-{args.tickets}.db"
                url = f"sqlite:///{path}"
                fresh = not (args.reuse and path.exists() and count_tickets(url) == args.tickets)
                if fresh:
                    for suffix in ("", "-wal", "-shm"):
                        Path(f"{path}{suffix}").unlink(missing_ok=True)
            else:
                server_url = args.postgres_url
                if not server_url:
                    pg = start_postgres(servers_dir / "pg")
                    started.append(pg)
                    server_url = pg.url
                redis_url = args.redis_url
                if not redis_url:
                    redis_server = start_redis(servers_dir / "redis")
                    started.append(redis_server)
                    redis_url = redis_server.url
                url = server_url.rsplit("/", 1)[0] + f"/bench_{args.tickets}"
                fresh = not (args.reuse and count_tickets(url) == args.tickets)
                if fresh:
                    from sqlalchemy import create_engine, text

                    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
                    with admin.connect() as conn:
                        conn.execute(text(f"DROP DATABASE IF EXISTS bench_{args.tickets}"))
                        conn.execute(text(f"CREATE DATABASE bench_{args.tickets}"))
                    admin.dispose()
            print(f"== {db}: {url}", flush=True)
            migrate(url)  # also brings a reused database up to the newest migrations
            _use_database(url, None)
            if fresh:
                # The generator needs the ids of users, roles and tags first.
                api_key = _prepare_project(ds)
                from core.db import reset_engine

                reset_engine()  # close our pooled connections: the loader switches the journal mode
                seeder = seed_sqlite if db == "sqlite" else seed_postgres
                seeded = seeder(Path(url[len("sqlite:///"):]) if db == "sqlite" else url, ds)  # type: ignore[arg-type]
                line = (f"{db}: seeded {seeded.rows:,} rows: bulk insert {seeded.rate:,.0f} rows/s "
                        f"({seeded.insert_seconds:.1f} s in executemany/COPY; {seeded.wall_rate:,.0f} rows/s "
                        f"counting the Python that generates them); index/FTS rebuild + ANALYZE "
                        f"{seeded.rebuild_seconds:.1f} s")
            else:
                ds.now = datetime.now(UTC)
                api_key = _prepare_project(ds)
                _collect_rare_tokens(ds)
                line = f"{db}: reused the seeded database"
            print(line, flush=True)
            report.append(line)
            if args.seed_only:
                continue
            if args.prewarm and db != "sqlite":
                line = prewarm_postgres(url)
                print(line, flush=True)
                report.append(line)
            results = measure(url, redis_url, ds, api_key, workdir, args.samples, args.only)
            report.append("\n" + table(db, results) + "\n")
    finally:
        for server in reversed(started):
            server.stop()
        shutil.rmtree(servers_dir, ignore_errors=True)
    print("\n".join(report))
    (workdir / f"results-{args.tickets}.md").write_text("\n".join(report) + "\n")


def _collect_rare_tokens(ds: Dataset) -> None:
    """On a reused database, pick rare tokens from the stored messages."""
    from sqlalchemy import select

    from core.db import new_session
    from models import Message

    with new_session(read_only=True) as session:
        rows = session.scalars(select(Message.content).where(Message.content.like("%Order ORD%")).limit(500))
        for content in rows:
            start = content.find("ORD")
            ds.rare_tokens.append(content[start:start + 11])


if __name__ == "__main__":
    main()
