"""The `ticketwire` command: processes (serve, worker, scheduler, smtp, dev), migrate, admin."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import typer

app = typer.Typer(help="ticketwire: a multichannel support inbox back end.", no_args_is_help=True)
admin = typer.Typer(help="Administration: projects, users, API keys.", no_args_is_help=True)
app.add_typer(admin, name="admin")


def _default_port() -> int:
    return int(os.environ.get("PORT", "8000"))


@app.command()
def migrate() -> None:
    """Apply database migrations (DATABASE_URL, default SQLite in var/)."""
    from core.migrate import migrate as run

    run()
    typer.echo("migrations applied")


@app.command()
def serve(host: str = typer.Option("127.0.0.1", "--host"), port: int = typer.Option(None, "--port"),
          workers: int = typer.Option(1, "--workers")) -> None:
    """Serve the HTTP API with uvicorn."""
    import uvicorn

    from core.logs import configure

    configure()

    uvicorn.run("api.app:create_app", factory=True, host=host, port=port or _default_port(), workers=workers,
                log_level="info", access_log=False)


@app.command()
def dev(host: str = typer.Option("127.0.0.1", "--host"), port: int = typer.Option(None, "--port")) -> None:
    """All in one process (embedded mode): migrations, API, worker threads and periodic jobs."""
    import uvicorn

    from core.logs import configure
    from core.migrate import migrate as run

    configure()
    run()
    os.environ.setdefault("TICKETWIRE_EMBEDDED_WORKERS", "1")
    uvicorn.run("api.app:create_app", factory=True, host=host, port=port or _default_port(), log_level="info")


# Threads per worker process: ingest and triage are CPU-bound, and on the measured 2-core
# machine 4 beat 8 on every pipeline target (bench/RESULTS.md, "Worker threads, re-measured").
DEFAULT_WORKER_THREADS = 4


@app.command()
def worker(processes: int = typer.Option(1, "--processes"),
           threads: int = typer.Option(DEFAULT_WORKER_THREADS, "--threads"),
           nice: int = typer.Option(5, "--nice", envvar="TICKETWIRE_WORKER_NICE",
                                    help="CPU priority below the web server's (0 = the same)."),
           queues: str = typer.Option("", "--queues",
                                      help="Comma-separated queues to consume (default: all).")) -> None:
    """Dramatiq worker(s) on Redis (REDIS_URL): ingest, deliver, agent runs."""
    import signal
    import subprocess
    import threading

    import workers.actors  # noqa: F401  (declares the queues)
    from workers.broker import broker

    chosen = [q.strip() for q in queues.split(",") if q.strip()]
    declared = broker.get_declared_queues()
    unknown = sorted(set(chosen) - declared)
    if unknown:  # a typo would start a worker that consumes nothing, silently
        known = ", ".join(sorted(q for q in declared if not q.endswith(".DQ")))
        raise typer.BadParameter(f"unknown queue {', '.join(unknown)} (the queues are {known})",
                                 param_hint="'--queues'")
    # On a machine shared with `serve`, a burst of ingest work must not starve the webhook
    # acknowledgements (vendors time out and retry within seconds); the queue absorbs the
    # burst and the workers catch up when the web server is idle.
    if nice > 0:
        os.nice(nice)
    children = [
        subprocess.Popen([sys.executable, "-m", "cli", "worker", "--processes", "1", "--threads", str(threads),
                          "--nice", "0", "--queues", queues])
        for _ in range(processes - 1)
    ]
    from core.logs import configure
    from workers.broker import make_worker

    configure()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    w = make_worker(threads, queues=chosen)
    w.start()
    typer.echo(f"worker started ({threads} threads)", err=True)
    stop.wait()
    w.stop()
    for child in children:
        child.terminate()


@app.command()
def scheduler() -> None:
    """Periodic jobs (sweeper, snooze, purge); one active instance per deployment (a lease row in the database)."""
    import workers.actors  # noqa: F401
    from core.logs import configure

    configure()
    from core.heap import freeze_startup_objects
    from workers.periodic import Scheduler

    freeze_startup_objects()

    Scheduler().run_forever()


@app.command()
def smtp(
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(2525, "--port"),
    tls_cert: str = typer.Option(None, "--tls-cert", envvar="TICKETWIRE_SMTP_TLS_CERT"),
    tls_key: str = typer.Option(None, "--tls-key", envvar="TICKETWIRE_SMTP_TLS_KEY"),
    hostname: str = typer.Option(None, "--hostname", help="Name in the banner and in Received lines."),
) -> None:
    """Inbound SMTP listener for the email configs' inbound addresses (STARTTLS with a certificate)."""
    import workers.actors  # noqa: F401  (stored mail is handed to the ingest workers after commit)
    from channels.email.listener import serve as serve_smtp
    from core.logs import configure
    from services.email_inbound import SmtpMailbox

    configure()
    typer.echo(f"SMTP listener on {host}:{port} (STARTTLS {'on' if tls_cert else 'off'})", err=True)
    serve_smtp(SmtpMailbox(), host=host, port=port, cert_file=tls_cert, key_file=tls_key, hostname=hostname)


@app.command("imap-poll")
def imap_poll(
    every: float = typer.Option(30.0, "--every", help="Seconds between two polls of the mailboxes."),
    once: bool = typer.Option(False, "--once", help="Poll every IMAP mailbox once and exit."),
) -> None:
    """Poll the IMAP mailboxes of email configs into tickets (the scheduler does it too)."""
    import signal
    import threading

    import workers.actors  # noqa: F401
    from services import imap_poll as poller

    if once:
        for config_id in poller.imap_config_ids():
            result = poller.poll_mailbox(config_id=config_id)
            typer.echo(f"{config_id}: {'ok' if result.ok else 'failed'}: {result.detail}")
        return
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    poller.run_poller(every=every, stop=stop)


@app.command()
def compose(
    csv_file: Path = typer.Option(..., "--csv", exists=True, dir_okay=False, readable=True,
                                  help="Recipients: a header row with an email column; name, distinct_id and any other column as {{fields}}."),
    project_name: str = typer.Option(..., "--project-name"),
    email_config_id: str = typer.Option(..., "--email-config-id"),
    subject: str = typer.Option(..., "--subject", help="May use {{fields}} too."),
    message_file: Path = typer.Option(..., "--message-file", exists=True, dir_okay=False, readable=True,
                                      help="The message in markdown, with {{name}}-style fields."),
    email: str = typer.Option(None, "--email", help="Send as this team member (default: the project's first member)."),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Follow the sending with a progress bar."),
    timeout: float = typer.Option(0.0, "--timeout", help="Stop following after this many seconds (0: until done)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Send a compose campaign: one email ticket per CSV row, sent at the email config's rate."""
    from services.campaigns import run_compose_cli

    raise typer.Exit(run_compose_cli(
        csv_path=str(csv_file), project_name=project_name, email_config_id=email_config_id, subject=subject,
        message_file=str(message_file), user_email=email, wait=wait, timeout=timeout, as_json=as_json,
    ))


@app.command()
def mcp(transport: str = typer.Option("stdio", "--transport", help="stdio or http"),
        host: str = typer.Option("127.0.0.1", "--host"), port: int = typer.Option(8765, "--port")) -> None:
    """MCP server for AI assistants (key in TICKETWIRE_API_KEY; HTTP serves /mcp with Bearer keys)."""
    from api.mcp_server import main as serve_mcp

    serve_mcp(transport=transport, host=host, port=port)


def _print(data: dict[str, object], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(data))
    else:
        for key, value in data.items():
            typer.echo(f"{key}: {value}")


@admin.command("bootstrap")
def bootstrap(
    project_name: str = typer.Option("Demo", "--project-name"),
    email: str = typer.Option("admin@example.com", "--email"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Create (or reuse) a project, a user and an API key with every scope."""
    from core.db import session_scope
    from core.migrate import migrate as run
    from services import accounts

    run()
    with session_scope() as session:
        data = accounts.bootstrap(session=session, project_name=project_name, email=email)
    _print(data, as_json)


@admin.command("create-user")
def create_user(
    email: str = typer.Option(..., "--email"),
    project_name: str = typer.Option(None, "--project-name"),
    first_name: str = typer.Option("", "--first-name"),
    last_name: str = typer.Option("", "--last-name"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Create a user (idempotent by email), optionally as a member of a project."""
    from core.db import session_scope
    from services import accounts
    from services.errors import ServiceError

    try:
        with session_scope() as session:
            user = accounts.get_or_create_user(session=session, email=email, first_name=first_name, last_name=last_name)
            if project_name:
                project, _ = accounts.get_or_create_project(session=session, name=project_name)
                accounts.add_member(session=session, project=project, user=user)
            data = {"user_id": user.id, "uuid": str(user.uuid), "email": user.email}
    except ServiceError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(2) from None
    _print(data, as_json)


@admin.command("create-api-key")
def create_api_key(
    project_name: str = typer.Option(..., "--project-name"),
    scopes: str = typer.Option("*", "--scopes"),
    email: str = typer.Option(None, "--email", help="The key's user (default: the project's first member)."),
    label: str = typer.Option("", "--label"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Create a personal API key limited to one project and the given scopes."""
    from sqlalchemy import select

    from core.db import session_scope
    from models import ProjectMember, User
    from services import accounts
    from services.errors import ServiceError

    try:
        with session_scope() as session:
            parsed = accounts.parse_scopes(scopes)
            project, _ = accounts.get_or_create_project(session=session, name=project_name)
            if email:
                user = accounts.get_or_create_user(session=session, email=email)
            else:
                user = session.scalar(
                    select(User).join(ProjectMember, ProjectMember.user_id == User.id)
                    .where(ProjectMember.project_id == project.id).order_by(User.id).limit(1)
                ) or accounts.get_or_create_user(session=session, email=f"admin+{project.id}@example.com")
            accounts.add_member(session=session, project=project, user=user)
            issued = accounts.create_api_key(session=session, user=user, scopes=parsed, label=label or f"{project_name} key",
                                             scoped_projects=[project.id])
            data = {"api_key": issued.secret, "scopes": parsed, "project_id": project.id, "user_id": user.id}
    except ServiceError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(2) from None
    _print(data, as_json)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
