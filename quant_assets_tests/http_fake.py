"""A real HTTP server on loopback whose answers a test scripts, for vendor-client tests.

``server.script(path, [Reply(...), Reply(...)])`` queues replies for a path (the last one repeats);
every request is recorded (path, query) so a test can count calls. Replies can delay (to provoke
timeouts) or carry any status, headers and body.
"""

from __future__ import annotations

import dataclasses
import http.server
import threading
import time
import urllib.parse

import pytest

__all__ = ["Reply", "ScriptedServer", "scripted_http"]


@dataclasses.dataclass
class Reply:
    status: int = 200
    body: bytes | str = b"[]"
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    delay_s: float = 0.0
    content_type: str = "application/json"
    trickle_s: float = 0.0  # > 0: the body goes out one byte at a time, this far apart


class ScriptedServer:
    def __init__(self) -> None:
        self._scripts: dict[str, list[Reply]] = {}
        self.requests: list[tuple[str, dict[str, str], float]] = []
        self.headers: list[dict[str, str]] = []  # each request's headers, in arrival order
        # A path -> predicate on the request headers: a request failing it gets 403 (a server
        # that refuses clients it does not like).
        self.require_headers: dict[str, object] = {}
        self.default: Reply = Reply(404, b'{"error": "not scripted"}')
        self._lock = threading.Lock()
        handler = self._handler()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def script(self, path: str, replies: list[Reply]) -> None:
        with self._lock:
            self._scripts[path] = list(replies)

    def calls(self, path: str | None = None) -> int:
        with self._lock:
            return sum(1 for p, _, _ in self.requests if path is None or p == path)

    def _next(self, path: str) -> Reply:
        with self._lock:
            queue = self._scripts.get(path)
            if not queue:
                return self.default
            return queue.pop(0) if len(queue) > 1 else queue[0]

    def _handler(self):
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server API
                parsed = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(parsed.query))
                with outer._lock:
                    outer.requests.append((parsed.path, query, time.monotonic()))
                    outer.headers.append(dict(self.headers.items()))
                gate = outer.require_headers.get(parsed.path)
                reply = outer._next(parsed.path) if gate is None or gate(dict(self.headers.items())) else Reply(403, "<html>Forbidden</html>", content_type="text/html")
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                body = reply.body.encode() if isinstance(reply.body, str) else reply.body
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", reply.content_type)
                    self.send_header("Content-Length", str(len(body)))
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    if reply.trickle_s:
                        for i in range(len(body)):
                            self.wfile.write(body[i : i + 1])
                            self.wfile.flush()
                            time.sleep(reply.trickle_s)
                    else:
                        self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

        return Handler

    def start(self) -> ScriptedServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def scripted_http():
    server = ScriptedServer().start()
    try:
        yield server
    finally:
        server.stop()
