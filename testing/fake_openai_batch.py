"""The fake OpenAI server with the Batch API: `/v1/files` (multipart upload, metadata, content download)
and `/v1/batches` (create, retrieve, cancel) for `endpoint: /v1/embeddings`, beside `/v1/embeddings`.

Each batch walks scripted states, one per retrieve (validating → in_progress → finalizing → completed by
default). Vectors are `fake_vector(text, dimensions)`, the same as the synchronous endpoint's, so a batch
and a synchronous run produce identical vectors. Inputs containing `poison` come back as 400 lines of the
error file; a script can also fail or expire the batch, corrupt, repeat or mis-dimension an output line.
As the real API does, a batch whose requests carry more than `max_batch_inputs` embedding inputs in all
(50,000) fails validation.
"""

from __future__ import annotations

import base64
import contextlib
import email.parser
import email.policy
import itertools
import json
import multiprocessing
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.connection import Connection

from testing.fake_openai import NATIVE_DIMENSIONS, POISON, FakeOpenAI, fake_vector

COMPLETED = ("validating", "in_progress", "finalizing", "completed")


@dataclass
class BatchScript:
    """What one batch does, in creation order. `states` are walked one per retrieve; the last is final.

    `malformed_line`, `duplicate_line`, `wrong_dim_line`: which output line (0-based) to break.
    `answered_fraction`: for an expired or cancelled batch, the share of requests it finished."""

    states: tuple[str, ...] = COMPLETED
    malformed_line: int | None = None
    duplicate_line: int | None = None
    wrong_dim_line: int | None = None
    answered_fraction: float = 0.5


@dataclass
class FakeBatch:
    id: str
    input_file_id: str
    script: BatchScript
    created_at: int
    states: deque = field(default_factory=deque)
    status: str = "validating"
    output_file_id: str | None = None
    error_file_id: str | None = None
    errors: dict | None = None
    retrieves: int = 0
    inputs: int = 0  # embedding inputs across all of its requests
    refusal: str = "scripted validation failure"

    def as_json(self) -> dict:
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": "/v1/embeddings",
            "input_file_id": self.input_file_id,
            "completion_window": "24h",
            "status": self.status,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "errors": self.errors,
            "created_at": self.created_at,
        }


class FakeOpenAIBatch(FakeOpenAI):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.files: dict[str, dict] = {}
        self.batches: dict[str, FakeBatch] = {}
        self.scripts: deque[BatchScript] = deque()
        self.batch_texts: list[str] = []  # every input of every request line a batch processed
        self.downloads: list[str] = []
        self.cancels: list[str] = []
        # (status, message) every files/batches request gets while set; "{key}" in the message is replaced
        # by the key the request carried, as providers that quote the rejected key do.
        self.refusal: tuple[int, str] | None = None
        # The API's cap on embedding inputs across all requests of one /v1/embeddings batch.
        self.max_batch_inputs = 50_000
        self._ids = itertools.count(1)

    def script(self, *scripts: BatchScript) -> None:
        """Scripts for the next batches created, one each; later batches complete normally."""
        with self.lock:
            self.scripts.extend(scripts)

    def __enter__(self) -> FakeOpenAIBatch:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                if self.path.rstrip("/").endswith("/embeddings"):
                    fake._handle(self)
                else:
                    fake._route(self, "POST")

            def do_GET(self):
                fake._route(self, "GET")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    # -- routing ----------------------------------------------------------------------------------
    def _json(self, handler, status: int, doc: dict) -> None:
        self._reply(handler, status, json.dumps(doc).encode())

    def _route(self, handler, method: str) -> None:
        path = handler.path.split("?")[0].rstrip("/")
        parts = path.split("/")[2:]  # after "/v1"
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        if (
            self.expected_api_key
            and handler.headers.get("Authorization") != f"Bearer {self.expected_api_key}"
        ):
            return self._error(handler, 401, "invalid api key")
        if self.refusal is not None:
            status, message = self.refusal
            sent = handler.headers.get("Authorization", "").removeprefix("Bearer ")
            return self._error(handler, status, message.replace("{key}", sent))
        with self.lock:
            if method == "POST" and parts == ["files"]:
                return self._json(handler, 200, self._upload(handler.headers.get("Content-Type", ""), body))
            if method == "GET" and len(parts) == 3 and parts[0] == "files" and parts[2] == "content":
                f = self.files.get(parts[1])
                if f is None:
                    return self._error(handler, 404, f"no file {parts[1]}")
                self.downloads.append(parts[1])
                handler.send_response(200)
                handler.send_header("Content-Type", "application/octet-stream")
                handler.send_header("Content-Length", str(len(f["content"])))
                handler.end_headers()
                handler.wfile.write(f["content"])
                return None
            if method == "GET" and len(parts) == 2 and parts[0] == "files":
                f = self.files.get(parts[1])
                return self._json(handler, 200, f["meta"]) if f else self._error(handler, 404, "no file")
            if method == "POST" and parts == ["batches"]:
                return self._create_batch(handler, json.loads(body or b"{}"))
            if len(parts) >= 2 and parts[0] == "batches":
                batch = self.batches.get(parts[1])
                if batch is None:
                    return self._error(handler, 404, f"no batch {parts[1]}")
                if method == "GET" and len(parts) == 2:
                    self._advance(batch)
                    return self._json(handler, 200, batch.as_json())
                if method == "POST" and parts[2:] == ["cancel"]:
                    self.cancels.append(batch.id)
                    if batch.status not in ("completed", "failed", "expired", "cancelled"):
                        batch.status = "cancelling"
                        batch.states = deque(["cancelled"])
                    return self._json(handler, 200, batch.as_json())
        return self._error(handler, 404, f"no route {method} {path}")

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids)}"

    def _add_file(self, content: bytes, filename: str, purpose: str) -> str:
        fid = self._new_id("file")
        self.files[fid] = {
            "content": content,
            "meta": {
                "id": fid,
                "object": "file",
                "bytes": len(content),
                "created_at": int(time.time()),
                "filename": filename,
                "purpose": purpose,
                "status": "processed",
            },
        }
        return fid

    def _upload(self, content_type: str, body: bytes) -> dict:
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
        )
        fields: dict[str, tuple[str | None, bytes]] = {}
        for part in msg.iter_parts():
            name = str(part.get_param("name", header="content-disposition"))
            payload = part.get_payload(decode=True)
            fields[name] = (part.get_filename(), payload if isinstance(payload, bytes) else b"")
        filename, content = fields["file"]
        purpose = fields["purpose"][1].decode()
        return self.files[self._add_file(content, filename or "upload.jsonl", purpose)]["meta"]

    def _create_batch(self, handler, payload: dict) -> None:
        fid = payload.get("input_file_id")
        if fid not in self.files or payload.get("endpoint") != "/v1/embeddings":
            return self._error(handler, 400, "unknown input file or unsupported endpoint")
        script = self.scripts.popleft() if self.scripts else BatchScript()
        batch = FakeBatch(self._new_id("batch"), fid, script, int(time.time()))
        batch.states = deque(script.states)
        batch.inputs = sum(
            len(_inputs(json.loads(line))) for line in self.files[fid]["content"].splitlines() if line
        )
        if batch.inputs > self.max_batch_inputs:
            batch.states = deque(["validating", "failed"])
            batch.refusal = (
                f"the batch has {batch.inputs} embedding inputs, over the limit of {self.max_batch_inputs}"
                " across all requests of an /v1/embeddings batch"
            )
        batch.status = batch.states.popleft()
        self.batches[batch.id] = batch
        return self._json(handler, 200, batch.as_json())

    # -- the batch's life -------------------------------------------------------------------------
    def _advance(self, batch: FakeBatch) -> None:
        batch.retrieves += 1
        if not batch.states:
            return
        batch.status = batch.states.popleft()
        if batch.status == "failed":
            batch.errors = {
                "object": "list",
                "data": [{"code": "invalid_request", "message": batch.refusal, "line": 1}],
            }
        elif batch.status in ("completed", "expired", "cancelled"):
            self._produce_results(batch)

    def _produce_results(self, batch: FakeBatch) -> None:
        script = batch.script
        requests = [
            json.loads(line) for line in self.files[batch.input_file_id]["content"].splitlines() if line
        ]
        if batch.status != "completed":
            requests = requests[: int(len(requests) * script.answered_fraction)]
        out_lines: list[bytes] = []
        err_lines: list[bytes] = []
        for req in requests:
            inputs = _inputs(req)
            self.batch_texts.extend(inputs)
            line_id = self._new_id("batch_req")
            if any(POISON in t for t in inputs):
                err = {"error": {"message": "input contains content this model refuses", "type": "invalid"}}
                err_lines.append(self._result(line_id, req["custom_id"], 400, err))
                continue
            model = req["body"]["model"]
            dims = req["body"].get("dimensions") or NATIVE_DIMENSIONS.get(model, 1536)
            if script.wrong_dim_line == len(out_lines):
                dims += 1
            data = [
                {
                    "object": "embedding",
                    "index": i,
                    "embedding": base64.b64encode(fake_vector(t, dims).astype("<f4").tobytes()).decode(),
                }
                for i, t in enumerate(inputs)
            ]
            tokens = sum(max(1, len(t) // 4) for t in inputs)
            body = {
                "object": "list",
                "data": data,
                "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
            out_lines.append(self._result(line_id, req["custom_id"], 200, body))
        if script.duplicate_line is not None and script.duplicate_line < len(out_lines):
            out_lines.append(out_lines[script.duplicate_line])
        if script.malformed_line is not None and script.malformed_line < len(out_lines):
            out_lines[script.malformed_line] = out_lines[script.malformed_line][:40] + b"\n"
        if out_lines:
            batch.output_file_id = self._add_file(
                b"".join(out_lines), f"{batch.id}_output.jsonl", "batch_output"
            )
        if err_lines:
            batch.error_file_id = self._add_file(
                b"".join(err_lines), f"{batch.id}_error.jsonl", "batch_output"
            )

    @staticmethod
    def _result(line_id: str, custom_id: str, status: int, body: dict) -> bytes:
        doc = {
            "id": line_id,
            "custom_id": custom_id,
            "response": {"status_code": status, "request_id": f"req-{line_id}", "body": body},
            "error": None,
        }
        return json.dumps(doc).encode() + b"\n"


def _inputs(request: dict) -> list[str]:
    inputs = request["body"]["input"]
    return [inputs] if isinstance(inputs, str) else inputs


def _serve_until_told(pipe: Connection, kw: dict) -> None:
    with FakeOpenAIBatch(**kw) as fake:
        pipe.send(fake.base_url)
        pipe.recv()


@contextlib.contextmanager
def fake_batch_server_process(**kw) -> Iterator[str]:
    """A `FakeOpenAIBatch` in a child process; yields its base URL. For measuring the memory of the process
    that talks to it: the fake keeps every uploaded file, which would count against that process."""
    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    proc = ctx.Process(target=_serve_until_told, args=(theirs, kw), daemon=True)
    proc.start()
    try:
        if not ours.poll(60):
            raise RuntimeError("the fake Batch API server process did not start within 60 s")
        yield ours.recv()
    finally:
        with contextlib.suppress(OSError):
            ours.send("stop")
        proc.join(10)
        if proc.is_alive():
            proc.terminate()
            proc.join(10)
