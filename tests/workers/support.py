"""Helpers of the worker-process tests: a deployment's processes (`ticketwire serve`, `worker`,
`scheduler`) on Redis and PostgreSQL, started and killed at will, and the API calls the tests
drive them with. The `stack` fixture is in conftest.py."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.services import free_port

ROOT = Path(__file__).resolve().parents[2]


class Stack:
    """The three processes of a deployment, started and killed at will."""

    def __init__(self, env: dict[str, str], tmp: Path) -> None:
        self.env, self.tmp = env, tmp
        self.port = free_port()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115
        proc = subprocess.Popen([sys.executable, "-m", "cli", *args], cwd=ROOT, env=self.env, stdout=log, stderr=log)
        self.procs[name] = proc
        return proc

    def start_web(self) -> None:
        self.start("web", "serve", "--port", str(self.port))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError((self.tmp / "web.log").read_text())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def bootstrap(stack: Stack, *, project_name: str = "Acme") -> dict[str, Any]:
    """A project, its API key and the base URL of its conversations API."""
    out = subprocess.run([sys.executable, "-m", "cli", "admin", "bootstrap", "--json", "--project-name", project_name],
                         cwd=ROOT, env=stack.env, capture_output=True, check=True)
    data = json.loads(out.stdout)
    headers = {"Authorization": f"Bearer {data['api_key']}"}
    base = f"{stack.url}/api/projects/{data['project_id']}/conversations"
    return {**data, "headers": headers, "base": base}


def put_integration(ctx: dict[str, Any], channel: str, settings: dict[str, Any]) -> None:
    r = httpx.put(f"{ctx['base']}/integrations/{channel}", headers=ctx["headers"], json=settings)
    assert r.status_code == 200, r.text


def wait_for(predicate: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def tickets(ctx: dict[str, Any]) -> list[dict[str, Any]]:
    return httpx.get(f"{ctx['base']}/tickets/?limit=1000", headers=ctx["headers"]).json()["results"]


def messages(ctx: dict[str, Any], ticket_id: str) -> list[dict[str, Any]]:
    return httpx.get(f"{ctx['base']}/tickets/{ticket_id}/messages?limit=200", headers=ctx["headers"]).json()["results"]


def reply(ctx: dict[str, Any], ticket_id: str, text: str, *, client: httpx.Client | None = None) -> dict[str, Any]:
    post = client.post if client is not None else httpx.post
    r = post(f"{ctx['base']}/tickets/{ticket_id}/reply", headers=ctx["headers"], json={"message": text})
    assert r.status_code == 201, r.text
    return r.json()
