"""A real local HTTP receiver for notification tests: records every body it is sent."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from typing import Any


class Receiver:
    """A webhook on 127.0.0.1; answers from `codes` in turn (then 200), records each body."""

    def __init__(self, codes: tuple[int, ...] = ()) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self._codes = list(codes)
        self._lock = threading.Lock()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                code = receiver._record(self.path, body)
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass  # the test reads what it needs from the receiver

        return Handler

    def _record(self, path: str, body: bytes) -> int:
        with self._lock:
            code = self._codes.pop(0) if self._codes else 200
            if code < 300:
                self.bodies.append(json.loads(body))
                self.paths.append(path)
            return code

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def events(self) -> list[str]:
        with self._lock:
            return [str(b.get("event")) for b in self.bodies]

    def wait_for(self, event: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while event not in self.events():
            if time.monotonic() > deadline:
                raise AssertionError(f"no {event} within {timeout}s; got {self.events()}")
            time.sleep(0.05)

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def receiving(codes: tuple[int, ...] = ()) -> Iterator[Receiver]:
    with Receiver(codes) as r:
        yield r
