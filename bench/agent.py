"""Agent benchmark: the built-in offline runtime over 10,000 help articles.

    .venv/bin/python bench/agent.py                      # 10,000 articles, 300 runs
    .venv/bin/python bench/agent.py --articles 2000 --runs 100

What it does (SQLite, the embedded default; a fresh migrated database in a temp dir):
1. Seeds one project with N synthetic help articles (~150 words each, drawn from a fixed
   support vocabulary so terms overlap the way real help centers do), 100 of them with a
   distinctive topic the questions ask about.
2. Builds the project's BM25 index once (reported: cold build time).
3. Runs R conversation turns end to end: `open` through the real FastAPI app (auth, the run
   row, the user message, commit, dispatch) executed by the embedded Dramatiq worker threads
   (`--worker embedded`, as `make run`) or by `execute_run` right after the open
   (`--worker inline`): claim, retrieval, answer streamed into run events and the assistant
   message, finish. Half the questions are answerable, half must be declined.
   - open-to-first-token: one turn at a time on an idle system, from the open request until
     the first token event is committed (`first_token_at`): what a client on the SSE stream
     waits for, before its own poll interval (100 ms);
   - runs/s: all R turns opened at once (separate conversations), until the last finished.
4. Baseline, same run, same questions: the raw BM25 search alone (tokenise + score on the
   in-memory index), i.e. the floor any runtime built on this index pays.

Nothing here is run by the test suite.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SEED = 20261127
TOPICS = [
    "password", "invoice", "refund", "export", "webhook", "sso", "saml", "okta", "api", "token", "rate", "limit",
    "billing", "plan", "upgrade", "downgrade", "seat", "team", "invite", "role", "permission", "dashboard",
    "report", "chart", "filter", "email", "notification", "slack", "integration", "mobile", "android", "ios",
    "browser", "cookie", "session", "timezone", "language", "import", "csv", "backup", "restore", "delete",
    "account", "organization", "domain", "dns", "certificate", "security", "audit", "log", "retention", "gdpr",
]
FILLER = (
    "you can open settings and choose the option that fits your workspace then save the change and it applies "
    "to every member of the team within a few minutes when something looks wrong contact support with the "
    "details and a screenshot so we can help faster this works on every plan unless stated otherwise"
).split()
OFF_TOPIC = [
    "What is the weather in Lisbon tomorrow?", "How do I bake a sourdough loaf?", "Who won the chess olympiad?",
    "Recommend a good hiking trail near Zurich", "How many moons does Jupiter have?",
]


def article(rng: random.Random, index: int, special: str | None) -> dict[str, str]:
    topics = rng.sample(TOPICS, 3)
    words = [rng.choice(FILLER if rng.random() < 0.7 else topics) for _ in range(150)]
    title = f"{topics[0].title()} and {topics[1]} guide {index}"
    if special:
        title = f"How to configure {special}"
        words[:0] = f"To configure {special} open the {special} page and follow the wizard.".split()
    return {"title": title, "body": " ".join(words)}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--articles", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--worker", choices=("embedded", "inline"), default="embedded",
                        help="embedded: Dramatiq worker threads in the web process (make run); "
                             "inline: execute_run called right after open")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="ticketwire-bench-agent-"))
    os.environ["DATABASE_URL"] = f"sqlite:///{workdir / 'bench.db'}"
    os.environ["TICKETWIRE_VAR_DIR"] = str(workdir / "var")
    os.environ.setdefault("TICKETWIRE_SECRET_KEY", "bench-secret")
    os.environ["TICKETWIRE_RATE_LIMIT_PER_MINUTE"] = "1000000"
    os.environ["TICKETWIRE_RATE_LIMIT_PER_HOUR"] = "1000000"
    for name in ("TICKETWIRE_AGENT_BASE_URL", "REDIS_URL"):
        os.environ.pop(name, None)

    from fastapi.testclient import TestClient
    from sqlalchemy import select

    from api.app import create_app
    from core.clock import as_utc
    from core.db import session_scope
    from core.migrate import migrate
    from models import AgentRun, ConversationMessage, HelpArticle
    from services import accounts, conversations
    from services.agent import knowledge
    from services.agent.offline import OfflineRuntime
    from services.agent.text import terms

    migrate()
    rng = random.Random(SEED)
    specials = [f"{rng.choice(TOPICS)}-{word}" for word in
                (f"feature{n:03d}" for n in range(100))]
    with session_scope() as session:
        data = accounts.bootstrap(session=session, project_name="bench", email="bench@example.test")
    project_id, key = int(data["project_id"]), str(data["api_key"])

    started = time.perf_counter()
    with session_scope() as session:
        stamp = datetime.now(UTC)
        session.add_all(
            HelpArticle(id=uuid.uuid4(), project_id=project_id, url=None, tags=[], published=True,
                        created_at=stamp, updated_at=stamp,
                        **article(rng, i, specials[i] if i < len(specials) else None))
            for i in range(args.articles)
        )
    seed_seconds = time.perf_counter() - started

    started = time.perf_counter()
    index = knowledge.get_index(project_id)
    build_seconds = time.perf_counter() - started

    answerable = [f"How do I configure {s}?" for s in specials]
    questions = [answerable[i % len(answerable)] if i % 2 == 0 else OFF_TOPIC[i % len(OFF_TOPIC)]
                 for i in range(args.runs)]

    # Baseline: the raw BM25 search alone, on the same index and questions.
    started = time.perf_counter()
    for question in questions:
        index.bm25.search(terms(question), limit=5)
    baseline_seconds = time.perf_counter() - started

    if args.worker == "inline":
        os.environ["TICKETWIRE_EMBEDDED_WORKERS"] = "0"
    app = create_app()
    headers = {"Authorization": f"Bearer {key}"}
    runtime = OfflineRuntime()

    def open_turn(client: TestClient, question: str) -> tuple[uuid.UUID, str]:
        cid = uuid.uuid4()
        response = client.post(f"/api/projects/{project_id}/conversations/{cid}/open", json={"content": question},
                               headers=headers)
        response.raise_for_status()
        run_id = response.json()["run_id"]
        if args.worker == "inline":
            assert conversations.execute_run(run_id, runtime=runtime) == "completed"
        return cid, run_id

    def wait_finished(run_ids: list[str]) -> list[AgentRun]:
        wanted = [uuid.UUID(r) for r in run_ids]
        while True:
            with session_scope(read_only=True) as session:
                runs = list(session.scalars(select(AgentRun).where(AgentRun.id.in_(wanted))))
            if len(runs) == len(wanted) and all(r.status in ("completed", "failed", "cancelled") for r in runs):
                return runs
            time.sleep(0.005)

    latencies: list[float] = []
    declined = correct = 0
    with TestClient(app) as client:
        # 1. Latency: one turn at a time on an idle system.
        for number, question in enumerate(questions):
            opened_at = datetime.now(UTC)
            cid, run_id = open_turn(client, question)
            (run,) = wait_finished([run_id])
            assert run.status == "completed", (run.status, run.error)
            first = as_utc(run.first_token_at)
            assert first is not None
            latencies.append((first - opened_at).total_seconds() * 1000)
            with session_scope(read_only=True) as session:
                content = session.get_one(ConversationMessage, run.assistant_message_id).content
            if number % 2 == 0:
                correct += specials[number % len(specials)] in content
            else:
                declined += content.startswith("I don't know")
        # 2. Throughput: every turn opened at once (separate conversations), drained by the workers.
        started = time.perf_counter()
        opened = [open_turn(client, question)[1] for question in questions]
        finished = wait_finished(opened)
        total_seconds = time.perf_counter() - started
        assert all(r.status == "completed" for r in finished)

    runs = len(questions)
    print(f"articles: {args.articles:,}  runs: {runs}  worker: {args.worker}  (database: SQLite, {workdir})")
    print(f"seed {args.articles:,} articles: {seed_seconds:.2f} s; cold index build: {build_seconds:.2f} s "
          f"({len(index.bm25.postings):,} terms)")
    print(f"throughput: {runs / total_seconds:.1f} runs/s ({runs} turns opened at once, drained in "
          f"{total_seconds:.2f} s)")
    print(f"open-to-first-token: p50 {statistics.median(latencies):.1f} ms, p95 {percentile(latencies, 0.95):.1f} ms,"
          f" p99 {percentile(latencies, 0.99):.1f} ms, max {max(latencies):.1f} ms")
    print(f"baseline raw BM25 search: {runs / baseline_seconds:.0f} searches/s "
          f"({baseline_seconds / runs * 1000:.2f} ms per search)")
    print(f"answers: {correct}/{(runs + 1) // 2} answerable questions cited the right article; "
          f"{declined}/{runs // 2} off-topic questions declined")


if __name__ == "__main__":
    main()
