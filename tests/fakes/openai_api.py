"""A local OpenAI-compatible chat-completions server (real HTTP) for the HTTP agent backend.

`POST /v1/chat/completions` answers from a script of queued replies: streamed text (one
`data:` chunk per token, optionally `delay` seconds apart), a streamed tool call (its JSON
arguments split over two chunks, as real servers do), or a plain JSON completion (for
non-streaming calls such as triage). Unscripted calls stream "OK". Like every fake here it
records calls and can be told to fail the next N (429 + Retry-After, 500, a stall).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.fakes.http import Call, FakeServer, Reply


@dataclass
class StreamReply(Reply):
    """A `text/event-stream` body sent chunk by chunk (chunked transfer encoding)."""

    chunks: list[bytes] = field(default_factory=list)
    chunk_delay: float = 0.0


def sse(data: Any) -> bytes:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n".encode()


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    return sse({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": "fake",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


class FakeOpenAI(FakeServer):
    """Start with `with FakeOpenAI() as api:`; point the backend at `api.base_url`."""

    def __init__(self) -> None:
        super().__init__()
        self.script: list[Reply] = []
        self.route("POST", r"/v1/chat/completions", self._completions)

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    # -- scripting -----------------------------------------------------------------------
    def reply_text(self, tokens: list[str], *, delay: float = 0.0, finish: str = "stop") -> None:
        chunks = [_chunk({"role": "assistant", "content": ""})]
        chunks += [_chunk({"content": token}) for token in tokens]
        chunks += [_chunk({}, finish), b": keep-alive comment\n\n", sse("[DONE]")]
        self.script.append(StreamReply(200, chunks=chunks, chunk_delay=delay,
                                       headers={"Content-Type": "text/event-stream"}))

    def reply_tool_call(self, name: str, arguments: dict[str, Any], *, call_id: str = "call_1") -> None:
        raw = json.dumps(arguments)
        half = len(raw) // 2
        chunks = [
            _chunk({"role": "assistant", "content": None, "tool_calls": [
                {"index": 0, "id": call_id, "type": "function", "function": {"name": name, "arguments": raw[:half]}}]}),
            _chunk({"tool_calls": [{"index": 0, "function": {"arguments": raw[half:]}}]}),
            _chunk({}, "tool_calls"),
            sse("[DONE]"),
        ]
        self.script.append(StreamReply(200, chunks=chunks, headers={"Content-Type": "text/event-stream"}))

    def reply_json(self, content: Any) -> None:
        text = content if isinstance(content, str) else json.dumps(content)
        self.script.append(Reply(200, {"id": "chatcmpl-fake", "object": "chat.completion", "model": "fake",
                                       "choices": [{"index": 0, "finish_reason": "stop",
                                                    "message": {"role": "assistant", "content": text}}]}))

    def requests(self) -> list[dict[str, Any]]:
        return [call.json() for call in self.calls_to(r"/chat/completions$")]

    def _completions(self, call: Call, _match: Any) -> Reply:
        if self.script:
            return self.script.pop(0)
        if call.json().get("stream"):
            self.reply_text(["OK"])
            return self.script.pop(0)
        self.reply_json("OK")
        return self.script.pop(0)

    # -- lifecycle: FakeServer's, plus chunked streaming ---------------------------------
    def start(self) -> FakeOpenAI:
        fake = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                call = Call(method="POST", path=parts.path, query=dict(parse_qsl(parts.query)),
                            headers={k.lower(): v for k, v in self.headers.items()}, body=body)
                reply = fake._dispatch(call)
                if reply.delay:
                    time.sleep(reply.delay)
                try:
                    if isinstance(reply, StreamReply):
                        self._stream(reply)
                    else:
                        payload = reply.encode()
                        self.send_response(reply.status)
                        for key, value in {"Content-Type": "application/json", **reply.headers}.items():
                            self.send_header(key, value)
                        self.send_header("Content-Length", str(len(payload)))
                        self.end_headers()
                        self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _stream(self, reply: StreamReply) -> None:
                self.send_response(reply.status)
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for chunk in _paced(reply):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __enter__(self) -> FakeOpenAI:
        return self.start()


def _paced(reply: StreamReply) -> Iterator[bytes]:
    for index, chunk in enumerate(reply.chunks):
        if index and reply.chunk_delay:
            time.sleep(reply.chunk_delay)
        yield chunk
