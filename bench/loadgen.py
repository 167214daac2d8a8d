"""Open-loop HTTP/1.1 load at a fixed rate, in a process of its own.

    python bench/loadgen.py URL RATE [--bodies] < requests.pickle > results.json

A request is (headers, body) POSTed to URL, or (headers, body, path) POSTed to that path on
URL's server. With --bodies each result carries the response body (as text) as well.

Request i is due at start + i / RATE whatever the answers to the earlier ones (no coordinated
omission) and its latency counts from that due time, so a server that falls behind shows it.
Requests go out over keep-alive connections, a new one opened whenever none is idle.

Why not httpx: an httpx.AsyncClient spends about a millisecond of CPU per request, so at
300 requests/s it measured its own queueing (p50 0.4 s against a bare route that answers in
1 ms). Raw asyncio streams on uvloop cost tens of microseconds, and running in a separate
process keeps the bench's fake vendor servers from competing with it for the GIL.
"""

from __future__ import annotations

import asyncio
import json
import pickle
import sys
import time
from urllib.parse import urlsplit

Request = tuple[dict[str, str], bytes] | tuple[dict[str, str], bytes, str]
Result = tuple[float, float | None, int] | tuple[float, float | None, int, str]


async def _exchange(host: str, port: int, idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]],
                    head: bytes, body: bytes) -> tuple[int, bytes]:
    for attempt in (1, 2):
        reader, writer = idle.pop() if idle else await asyncio.open_connection(host, port)
        try:
            writer.write(head + body)
            status_line = await reader.readline()
            if not status_line:  # the server closed an idle keep-alive connection
                raise ConnectionResetError("closed")
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            answer = await reader.readexactly(length)
        except (ConnectionError, asyncio.IncompleteReadError):
            writer.close()
            if attempt == 2:
                raise
            continue
        idle.append((reader, writer))
        return int(status_line.split()[1]), answer
    raise AssertionError("unreachable")


async def run(url: str, requests: list[Request], rate: float, *, bodies: bool = False) -> list[Result]:
    """(sent at, epoch seconds; latency ms from the due time, or None; HTTP status or 0
    [; response body]) per request."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    default_path = parts.path + (f"?{parts.query}" if parts.query else "")
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    results: list[Result] = [(0.0, None, 0)] * len(requests)
    start = time.perf_counter() + 0.1

    async def one(i: int, headers: dict[str, str], body: bytes, path: str) -> None:
        due = start + i / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        sent_at = time.time()
        head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: {len(body)}\r\n"
                + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode()
        try:
            status, answer = await _exchange(host, port, idle, head, body)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            results[i] = (sent_at, None, 0, "") if bodies else (sent_at, None, 0)
            return
        latency = (time.perf_counter() - due) * 1000
        results[i] = (sent_at, latency, status, answer.decode(errors="replace")) if bodies else (sent_at, latency, status)

    await asyncio.gather(*(one(i, r[0], r[1], r[2] if len(r) > 2 else default_path) for i, r in enumerate(requests)))
    for _, writer in idle:
        writer.close()
    return results


def main() -> None:
    url, rate = sys.argv[1], float(sys.argv[2])
    bodies = "--bodies" in sys.argv[3:]
    requests: list[Request] = pickle.load(sys.stdin.buffer)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    json.dump(asyncio.run(run(url, requests, rate, bodies=bodies)), sys.stdout)


if __name__ == "__main__":
    main()
