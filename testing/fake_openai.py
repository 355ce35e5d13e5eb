"""A fake OpenAI-compatible embeddings server on 127.0.0.1, for tests and benchmarks.

It speaks enough of `POST /v1/embeddings` for the real `openai` client: `encoding_format` float or
base64, `dimensions`, usage. Faults are scripted per request (429 with Retry-After, 500, slow,
malformed JSON, wrong dimension, a missing item) and any input containing `poison` gets a 400.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import math
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

NATIVE_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
POISON = "poison"


def fake_vector(text: str, dimensions: int) -> np.ndarray:
    """Deterministic unit vector for a text: the same text always maps to the same point."""
    seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")
    vec = np.random.default_rng(seed).standard_normal(dimensions).astype(np.float32)
    return vec / np.linalg.norm(vec)


class FakeOpenAI:
    def __init__(
        self,
        latency_s: float = 0.0,
        expected_api_key: str | None = None,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        window_s: float = 60.0,
    ):
        self.latency_s = latency_s
        # Rate limits as OpenAI enforces them: buckets holding one window's quota (a minute's; a shorter
        # window lets a test run a scaled-down quota in seconds) that refill continuously at quota/window,
        # full at the start; every answer carries the `x-ratelimit-*` headers, and a request beyond a
        # limit gets a 429 with `retry-after`. Tokens are counted as `count_tokens` does.
        self.limits = {"requests": requests_per_minute, "tokens": tokens_per_minute}
        self.window_s = window_s
        self._buckets = {k: v for k, v in self.limits.items() if v}
        self._bucket_at = time.monotonic()
        self.rate_limited = 0  # requests answered 429 for a limit (not scripted 429s)
        self.tokens_admitted = 0  # tokens of the requests the limits let through
        self.expected_api_key = expected_api_key
        # Every error body quotes the key the request carried (as some providers and proxies do).
        self.echo_key = False
        self.faults: deque[tuple] = deque()
        self.lock = threading.Lock()
        self.requests: list[dict] = []  # one entry per HTTP request: model, n_inputs, dimensions, fault
        self.texts_embedded: list[str] = []
        self.model_texts: list[tuple[str, str]] = []  # (model, text) of every input embedded
        self.auth_headers: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._server: ThreadingHTTPServer | None = None

    # -- scripting ------------------------------------------------------------------------------
    def inject(self, *faults: tuple) -> None:
        """Queue faults for the next requests, one each: ("429", retry_after_s), ("500",),
        ("slow", seconds), ("malformed",), ("wrong_dim",), ("missing_item",), ("401_echo",) a 401 quoting
        the key sent, ("huge",) finite components near float32's maximum, ("hold", event) no answer until the event is set
        (a request in flight for as long as a test needs, e.g. to kill its client), ("pass",) no fault."""
        with self.lock:
            self.faults.extend(faults)

    @property
    def request_count(self) -> int:
        return len(self.requests)

    @property
    def successful_requests(self) -> list[dict]:
        return [r for r in self.requests if r["status"] == 200]

    @property
    def held(self) -> int:
        """Requests being held (or that were) by a ("hold", event) fault."""
        return sum(1 for r in self.requests if r["fault"] and r["fault"][0] == "hold")

    def reset_counts(self) -> None:
        with self.lock:
            self.requests.clear()
            self.texts_embedded.clear()
            self.model_texts.clear()

    # -- lifecycle ------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        assert self._server is not None
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}/v1"

    def __enter__(self) -> FakeOpenAI:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                fake._handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # -- request handling -----------------------------------------------------------------------
    def _reply(self, handler, status: int, body: bytes, headers: dict | None = None) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            handler.send_header(k, v)
        handler.end_headers()
        # The client may have given up (a timeout test); there is nothing to tell it.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            handler.wfile.write(body)

    def _error(self, handler, status: int, message: str, headers: dict | None = None) -> None:
        if self.echo_key:
            message += (
                f" (request made with key {handler.headers.get('Authorization', '').removeprefix('Bearer ')})"
            )
        body = json.dumps({"error": {"message": message, "type": "fake_error", "code": status}}).encode()
        self._reply(handler, status, body, headers)

    def _handle(self, handler) -> None:
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            self._respond(handler)
        finally:
            with self.lock:
                self.in_flight -= 1

    def _respond(self, handler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        payload = json.loads(handler.rfile.read(length) or b"{}")
        with self.lock:
            fault = self.faults.popleft() if self.faults else None
            self.auth_headers.append(handler.headers.get("Authorization", ""))
        inputs = payload.get("input")
        inputs = [inputs] if isinstance(inputs, str) else list(inputs or [])
        model = payload.get("model", "")
        dims = payload.get("dimensions") or NATIVE_DIMENSIONS.get(model, 1536)
        record = {
            "model": model,
            "n_inputs": len(inputs),
            "dimensions": payload.get("dimensions"),
            "encoding_format": payload.get("encoding_format"),
            "fault": fault,
            "status": 200,
        }
        with self.lock:
            self.requests.append(record)
            limit_headers, over = self._take_rate_limit(count_tokens(inputs))
        if over:
            record["status"] = 429
            return self._error(handler, 429, f"rate limit reached for {over}", limit_headers)
        if self.latency_s:
            time.sleep(self.latency_s)
        if (
            self.expected_api_key
            and handler.headers.get("Authorization") != f"Bearer {self.expected_api_key}"
        ):
            record["status"] = 401
            return self._error(handler, 401, "invalid api key")
        if fault:
            kind = fault[0]
            if kind == "429":
                record["status"] = 429
                return self._error(handler, 429, "rate limited", {"Retry-After": str(fault[1])})
            if kind == "500":
                record["status"] = 500
                return self._error(handler, 500, "internal error")
            if kind == "slow":
                time.sleep(fault[1])
            if kind == "hold":
                fault[1].wait()
                # Never answered: whoever sent it was killed meanwhile, or the test is tearing down.
                record["status"] = "held"
                return None
            if kind == "401_echo":
                # Some providers and proxies quote the key they were sent back in the error.
                record["status"] = 401
                sent = handler.headers.get("Authorization", "")
                return self._error(
                    handler, 401, f"Incorrect API key provided: {sent.removeprefix('Bearer ')}"
                )
            if kind == "malformed":
                return self._reply(handler, 200, b'{"object": "list", "data": [{"embedding": ')
        if any(POISON in t for t in inputs):
            record["status"] = 400
            return self._error(handler, 400, "input contains content this model refuses")
        out_dims = dims + 3 if fault and fault[0] == "wrong_dim" else dims
        data = []
        for i, text in enumerate(inputs):
            vec = fake_vector(text, out_dims)
            if fault and fault[0] == "huge":
                vec = np.full(out_dims, 3e38, dtype=np.float32)
            emb = (
                base64.b64encode(vec.astype("<f4").tobytes()).decode()
                if payload.get("encoding_format") == "base64"
                else vec.tolist()
            )
            data.append({"object": "embedding", "index": i, "embedding": emb})
        if fault and fault[0] == "missing_item" and data:
            data.pop()
        tokens = count_tokens(inputs)
        with self.lock:
            self.texts_embedded.extend(inputs)
            self.model_texts.extend((model, t) for t in inputs)
        body = {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        self._reply(handler, 200, json.dumps(body).encode(), limit_headers)

    def _refill(self) -> None:
        now = time.monotonic()
        elapsed, self._bucket_at = now - self._bucket_at, now
        for kind, limit in self.limits.items():
            if limit:
                self._buckets[kind] = min(limit, self._buckets[kind] + elapsed * limit / self.window_s)

    def seconds_until(self, tokens: int) -> float:
        """How long from now until the limits would admit one request of `tokens` (the provider's view)."""
        with self.lock:
            if not self._buckets:
                return 0.0
            self._refill()
            need = {"requests": 1.0, "tokens": float(tokens)}
            return max(
                max(0.0, need[k] - left) * self.window_s / self.limits[k]  # type: ignore[operator]
                for k, left in self._buckets.items()
            )

    def _take_rate_limit(self, tokens: int) -> tuple[dict, str | None]:
        """Refill, take one request of `tokens` if both buckets allow it; the headers and the limit hit."""
        if not self._buckets:
            return {}, None
        self._refill()
        cost = {"requests": 1.0, "tokens": float(tokens)}
        over = next((k for k in self._buckets if self._buckets[k] < cost[k]), None)
        if over is None:
            for kind in self._buckets:
                self._buckets[kind] -= cost[kind]
            self.tokens_admitted += tokens
        headers = {}
        for kind, limit in self.limits.items():
            if limit:
                left = self._buckets[kind]
                headers[f"x-ratelimit-limit-{kind}"] = str(int(limit))
                headers[f"x-ratelimit-remaining-{kind}"] = str(int(left))
                headers[f"x-ratelimit-reset-{kind}"] = f"{(limit - left) * self.window_s / limit:.3f}s"
        if over is not None:
            self.rate_limited += 1
            limit = self.limits[over]
            assert limit
            # Whole seconds, as HTTP's Retry-After has them; a request over the whole quota never fits.
            short = max(0.0, cost[over] - self._buckets[over]) * self.window_s / limit
            headers["retry-after"] = str(math.ceil(short) if cost[over] <= limit else int(self.window_s))
        return headers, over


def count_tokens(inputs: list[str]) -> int:
    """The fake's token count of a request: about four characters a token, at least one per input. It is
    what the usage reports and the limits charge; the pipeline's own estimate is independent of it."""
    return sum(max(1, len(t) // 4) for t in inputs)
