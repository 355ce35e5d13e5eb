"""A webhook receiver on 127.0.0.1 for the alert tests: records every request, answers as scripted."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = "T0KEN-s3cr3t-8f2c1e"  # what a real webhook URL embeds; must never leak


class Receiver:
    """`script` is consumed one answer per request: an HTTP status, or "hang" (read, never answer);
    once it is empty every request gets `then`."""

    def __init__(self, script: list[int | str] | None = None, then: int | str = 200) -> None:
        self.script = list(script or [])
        self.then = then
        self.requests: list[dict[str, Any]] = []  # {path, headers, body} of every request, answered or not
        self._lock = threading.Lock()
        self._release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                with receiver._lock:
                    receiver.requests.append(
                        {"path": self.path, "headers": dict(self.headers), "body": json.loads(raw)}
                    )
                    answer = receiver.script.pop(0) if receiver.script else receiver.then
                if answer == "hang":
                    receiver._release.wait(30)
                    return
                self.send_response(int(answer))
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok" if int(answer) < 300 else b"error")

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/{TOKEN}"

    @property
    def bodies(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r["body"] for r in self.requests]

    def answer(self, then: int | str) -> None:
        with self._lock:
            self.then = then

    def release(self) -> None:
        self._release.set()


@contextmanager
def receiver(script: list[int | str] | None = None, then: int | str = 200) -> Iterator[Receiver]:
    r = Receiver(script, then)
    thread = threading.Thread(target=r.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield r
    finally:
        r.release()
        r.server.shutdown()
        r.server.server_close()
        thread.join(5)
