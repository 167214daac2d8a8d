"""A small real HTTP server that test fakes of vendor APIs build on.

Each fake registers handlers for (method, path regex); every call is recorded; and the fake
can be told to fail the next N calls the way vendors fail: 429 with Retry-After, 500, a
timeout (the server sleeps past the client's timeout), or a canned permanent error.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode()))


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0

    def encode(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()


Handler = Callable[[Call, re.Match[str]], Reply]


class _Listener(ThreadingHTTPServer):
    # socketserver listens with a backlog of 5: a burst of new connections (several worker
    # processes' threads each opening one) overflows it, and the client retries the dropped SYN
    # a second later, which a pacing test would see as a request arriving late.
    request_queue_size = 128


def window_wait(times: deque[float], limits: Sequence[tuple[float, int]], now: float) -> float:
    """Seconds until one more request fits every (period, limit) window, given the times of
    the requests already counted (oldest first; entries older than the longest period are
    dropped). 0 when it fits now."""
    longest = max((period for period, _ in limits), default=0.0)
    while times and times[0] <= now - longest:
        times.popleft()
    wait = 0.0
    for period, limit in limits:
        inside = [t for t in times if t > now - period]
        if len(inside) >= limit:
            wait = max(wait, inside[-limit] + period - now)
    return wait


class FakeServer:
    """Start with `with FakeServer() as srv:`; `srv.url` is its base URL."""

    def __init__(self) -> None:
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self.calls: list[Call] = []
        self._failures: list[tuple[re.Pattern[str] | None, Reply]] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- configuration -------------------------------------------------------------------
    def route(self, method: str, pattern: str, handler: Handler) -> None:
        self.routes.append((method.upper(), re.compile(pattern + r"\Z"), handler))

    def fail_next(self, reply: Reply, times: int = 1, *, path: str | None = None) -> None:
        """Answer the next `times` calls (optionally only those matching `path`) with `reply`."""
        with self._lock:
            for _ in range(times):
                self._failures.append((re.compile(path) if path else None, reply))

    def calls_to(self, path_regex: str) -> list[Call]:
        rx = re.compile(path_regex)
        with self._lock:
            return [c for c in self.calls if rx.search(c.path)]

    # -- lifecycle -----------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._httpd is not None
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeServer:
        fake = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                call = Call(
                    method=self.command,
                    path=parts.path,
                    query=dict(parse_qsl(parts.query)),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                reply = fake._dispatch(call)
                if reply.delay:
                    time.sleep(reply.delay)
                payload = reply.encode()
                try:
                    self.send_response(reply.status)
                    headers = {"Content-Type": "application/json", **reply.headers}
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self._httpd = _Listener(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd:
            self._httpd.shutdown()
            self._httpd.server_close()

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- dispatch ------------------------------------------------------------------------
    def _dispatch(self, call: Call) -> Reply:
        with self._lock:
            self.calls.append(call)
            for i, (rx, failure) in enumerate(self._failures):
                if rx is None or rx.search(call.path):
                    del self._failures[i]
                    return failure
        for method, rx, handler in self.routes:
            if method == call.method:
                match = rx.match(call.path)
                if match:
                    return handler(call, match)
        return Reply(404, {"message": "Not Found", "path": call.path})
