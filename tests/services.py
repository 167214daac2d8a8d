"""Start the real servers the tests need (Redis, PostgreSQL) on free private ports.

Used by `make test` (through tests/conftest.py). Each server lives in a temp dir and is
stopped by PID at the end. Set TICKETWIRE_TEST_REDIS_URL / TICKETWIRE_TEST_POSTGRES_URL to
use servers you run yourself instead.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not start")


@dataclass
class RedisServer:
    port: int
    proc: subprocess.Popen[bytes]
    workdir: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def restart(self) -> None:
        """Start again on the same port (after `stop`), for outage tests."""
        self.proc = _spawn_redis(self.port, self.workdir)
        _wait_for_port(self.port)


def _spawn_redis(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    return subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir), "--daemonize", "no", "--loglevel", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def start_redis(workdir: Path) -> RedisServer:
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc = _spawn_redis(port, workdir)
    _wait_for_port(port)
    return RedisServer(port, proc, workdir)


def _pg_bin(name: str) -> str:
    for base in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (base / name).exists():
            return str(base / name)
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} is not installed (apt-get install postgresql)")
    return found


@dataclass
class PostgresServer:
    port: int
    datadir: Path
    as_postgres: bool

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        cmd = list(args)
        if self.as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        pidfile = self.datadir / "postmaster.pid"
        if pidfile.exists():
            pid = int(pidfile.read_text().split()[0])
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGINT)  # PostgreSQL's "fast shutdown"
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and pidfile.exists():
                time.sleep(0.1)


def start_postgres(workdir: Path) -> PostgresServer:
    """initdb + postgres as the `postgres` user when we are root (PostgreSQL refuses root)."""
    as_postgres = os.geteuid() == 0
    workdir.mkdir(parents=True, exist_ok=True)
    datadir = workdir / "pgdata"
    port = free_port()
    server = PostgresServer(port, datadir, as_postgres)
    if as_postgres:
        uid = pwd.getpwnam("postgres").pw_uid
        os.chmod(workdir, 0o777)
        for parent in workdir.parents:
            if str(parent) in ("/", "/tmp"):
                break
            with contextlib.suppress(PermissionError):
                os.chmod(parent, os.stat(parent).st_mode | 0o711)
        datadir.mkdir()
        os.chown(datadir, uid, -1)
    server._run(_pg_bin("initdb"), "-D", str(datadir), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
    conf = datadir / "postgresql.conf"
    with conf.open("a") as fh:
        fh.write(
            f"\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{workdir}'\n"
            "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 300\n"
            "shared_buffers = 128MB\n"
        )
    subprocess.Popen(
        (["runuser", "-u", "postgres", "--"] if as_postgres else [])
        + [_pg_bin("postgres"), "-D", str(datadir)],
        stdout=subprocess.DEVNULL, stderr=open(workdir / "postgres.log", "wb"),  # noqa: SIM115
        start_new_session=True,
    )
    _wait_for_port(port)
    # The port answers a moment before connections are accepted.
    deadline = time.monotonic() + 30
    import psycopg

    while True:
        try:
            psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=postgres").close()
            break
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    return server


@contextlib.contextmanager
def test_services() -> Iterator[dict[str, str]]:
    """Yield {"redis": url, "postgres": url}, starting whatever is not given in the env."""
    urls: dict[str, str] = {}
    started: list[object] = []
    tmp = Path(tempfile.mkdtemp(prefix="ticketwire-test-"))
    try:
        urls["redis"] = os.environ.get("TICKETWIRE_TEST_REDIS_URL") or ""
        if not urls["redis"]:
            redis_server = start_redis(tmp / "redis")
            started.append(redis_server)
            urls["redis"] = redis_server.url
            urls["redis_server"] = redis_server  # type: ignore[assignment]
        urls["postgres"] = os.environ.get("TICKETWIRE_TEST_POSTGRES_URL") or ""
        if not urls["postgres"]:
            pg = start_postgres(tmp / "pg")
            started.append(pg)
            urls["postgres"] = pg.url
        yield urls
    finally:
        for server in reversed(started):
            server.stop()  # type: ignore[attr-defined]
        shutil.rmtree(tmp, ignore_errors=True)
