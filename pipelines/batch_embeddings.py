"""Embedding through the OpenAI Batch API: submit request files, follow the batches, apply their results.

A run submits and ends; the batches complete within 24 h at half the synchronous price. Every batch is a
row of `embedding_batches`, and each of its requests (a `custom_id`) maps to the content hashes of its
texts in `embedding_batch_requests`. Applying a batch is one transaction that holds the batch's row lock
and sets `applied_at`: a second apply waits, then finds it applied; a crash before the commit leaves the
batch unapplied and the next apply downloads it again. Lines that failed go to `embedding_errors` and, no
longer in an open batch, are pending again for the next submission (or the synchronous path).
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

import sqlalchemy as sa

from pipelines.embedders import EmbedLimits, ModelSpec, get_provider, native_dimensions
from pipelines.embedders.openai_compatible import CONFIG_ERROR_STATUSES
from pipelines.embeddings import (
    PAGE_TEXTS,
    BudgetExceededError,
    EmbedStats,
    PendingText,
    iter_pending,
    write_embeddings,
)
from pipelines.embeddings import (
    record_oversize as record_texts_over_limit,
)
from pipelines.lib.batch_files import (
    BATCH_PRICE_FACTOR,
    COMPLETION_WINDOW,
    ENDPOINT,
    OPEN_STATUSES,
    TERMINAL_STATUSES,
    BatchFileError,
    ParsedLine,
    batch_cost_usd,
    next_poll_delay_s,
    parse_result_line,
    request_line,
    use_batch_api,
)
from pipelines.lib.batching import pack_batches, starts_new_group
from pipelines.lib.redact import redact
from pipelines.lib.vectors import as_matrix
from pipelines.locks import embedding_lock_key, session_lock
from pipelines.models import active_model
from pipelines.reembedding import prepare_target
from pipelines.sql import query

if TYPE_CHECKING:  # numpy is imported by the steps that handle vectors, not when the code location loads
    import numpy as np

# Vectors written per COPY while applying a batch (all in the batch's one transaction).
WRITE_GROUP = 4096
# Content hashes recorded per statement while a request file is being written.
MAPPING_GROUP = 2048
# A batch row left `preparing` this long belongs to a run that died between upload and creation.
ABANDON_PREPARING_AFTER_S = 3600


class BatchApiError(RuntimeError):
    """The Batch API refused a file or a batch; the texts are pending again."""


class BatchConfigError(BatchApiError):
    """The Batch API refused the configuration itself (HTTP 401/403/404): as on the synchronous path, the
    run fails and no text is charged an attempt."""


class BatchNotReadyError(RuntimeError):
    pass


@dataclass
class BatchPlan:
    """The free work done and the estimate, before anything is uploaded: totals only. The texts themselves
    are read a page at a time when they are recorded (`record_oversize`) or sent (`iter_texts_to_submit`)."""

    stats: EmbedStats
    in_open_batches: int  # texts left out because a batch not yet applied carries them
    remainder: bool  # the model had batches before: this is what they left
    oversize_texts: int = 0  # texts over the model's input limit, set aside as failed
    max_input_tokens: int = 0
    max_attempts: int = 3

    @property
    def sync_cost_usd(self) -> float:
        return self.stats.estimated_cost_usd

    @property
    def batch_cost_usd(self) -> float:
        return batch_cost_usd(self.stats.estimated_cost_usd)


@dataclass(frozen=True)
class SubmittedBatch:
    id: int
    batch_id: str
    input_file_id: str
    status: str
    requests: int
    texts: int
    tokens: int
    file_bytes: int


@dataclass
class ApplyResult:
    batch_id: str
    status: str
    already_applied: bool = False
    requests_ok: int = 0
    texts_written: int = 0
    chunks_written: int = 0
    texts_failed: int = 0
    texts_released: int = 0  # not answered by an expired or cancelled batch: pending again, no error
    tokens: int = 0
    problems: list[str] = field(default_factory=list)  # unattributable lines, a sample


def send_dimensions(spec: ModelSpec) -> int | None:
    """The `dimensions` request parameter: only when it differs from the model's native one."""
    return spec.dimensions if spec.dimensions != native_dimensions(spec.model) else None


def plan_batch_embedding(
    conn: sa.Connection,
    spec: ModelSpec,
    limits: EmbedLimits,
    *,
    max_attempts: int = 3,
    retry_abandoned: bool = False,
) -> BatchPlan:
    """Reuse vectors by hash, count oversize texts apart, and total what a submission would send, without
    reading the texts: memory does not grow with the number pending.

    The model must be registered. Texts already carried by an unapplied batch are left out.
    `retry_abandoned` gives chunks that failed `max_attempts` times a fresh set of attempts, as on the
    synchronous path."""
    stats = EmbedStats(model=spec.name, provider=spec.provider, dimensions=spec.dimensions)
    stats.chunks_total = conn.execute(sa.text("SELECT count(*) FROM document_chunks")).scalar_one()
    conn.execute(
        query("batch_embeddings/mark_embedding_batch_abandoned"),
        {
            "id": None,
            "model": spec.name,
            "older_than_s": ABANDON_PREPARING_AFTER_S,
            "error": "never submitted",
        },
    )
    stats.chunks_reused = conn.execute(
        query("embeddings/reuse_embeddings_by_content_hash"), {"model": spec.name}
    ).rowcount
    if retry_abandoned:
        conn.execute(
            query("embeddings/reset_abandoned_attempts"), {"model": spec.name, "max_attempts": max_attempts}
        )
    conn.commit()
    todo = conn.execute(
        query("batch_embeddings/summarize_texts_to_submit"),
        {"model": spec.name, "max_attempts": max_attempts, "max_input_tokens": limits.max_input_tokens},
    ).one()
    remainder = (
        conn.execute(query("batch_embeddings/select_batch_round"), {"model": spec.name}).one().batches > 0
    )
    conn.commit()
    stats.chunks_failed += int(todo.oversize_chunk_rows)
    stats.unique_texts = todo.texts
    stats.estimated_tokens = int(todo.tokens)
    stats.estimated_cost_usd = spec.cost_usd(stats.estimated_tokens)
    stats.chunks_skipped = stats.chunks_total - stats.chunks_reused - int(todo.chunk_rows)
    return BatchPlan(
        stats,
        todo.texts_in_open_batches,
        remainder,
        todo.oversize_texts,
        limits.max_input_tokens,
        max_attempts,
    )


def iter_texts_to_submit(
    conn: sa.Connection, plan: BatchPlan, *, oversize: bool = False, page_texts: int | None = None
) -> Iterator[PendingText]:
    """The texts `plan` counted, each with all its chunks, read a page at a time in content-hash order:
    those within the input limit (or, with `oversize`, those over it), minus those an unapplied batch
    carries. Stops before a text that would take the total past the plan's estimate, so that chunks written
    since the plan cannot push a submission over the budget it was checked against (they wait for the next).

    No transaction is open while the caller holds a yielded text, so it may write on `conn` between two."""
    size = page_texts or PAGE_TEXTS
    model, limit = plan.stats.model, plan.max_input_tokens
    tokens_left = plan.stats.estimated_tokens
    texts = iter_pending(
        conn,
        model,
        plan.max_attempts,
        min_tokens=limit + 1 if oversize else 0,
        max_tokens=2**31 - 1 if oversize else limit,
        page_texts=size,
    )
    while True:
        page = [p for _, p in zip(range(size), texts)]
        if not page:
            return
        with conn.begin():
            carried = set(
                conn.execute(
                    query("batch_embeddings/select_texts_in_open_batches"),
                    {"model": model, "shas": [p.content_sha256 for p in page]},
                ).scalars()
            )
        for p in page:
            if p.content_sha256 in carried:
                continue
            if not oversize:
                if p.tokens > tokens_left:
                    return
                tokens_left -= p.tokens
            yield p
        del page


def record_oversize(conn: sa.Connection, plan: BatchPlan) -> None:
    """Record the texts over the model's input limit as failed, a page at a time; only once the Batch API
    path is taken, so that a plan the synchronous path replaces does not count an attempt twice."""
    if not plan.oversize_texts:
        return
    texts = iter_texts_to_submit(conn, plan, oversize=True)
    while page := [p for _, p in zip(range(PAGE_TEXTS), texts)]:
        with conn.begin():
            record_texts_over_limit(conn, plan.stats.model, page, plan.max_input_tokens, plan.stats)


def check_budget(plan: BatchPlan, budget_usd: float | None, allow_over_budget: bool) -> None:
    if budget_usd is None or allow_over_budget or plan.batch_cost_usd <= budget_usd:
        return
    s = plan.stats
    raise BudgetExceededError(
        f"embedding {s.unique_texts} texts (~{s.estimated_tokens:,} tokens) with {s.model} through the Batch"
        f" API would cost ~${plan.batch_cost_usd:.4f} (half the synchronous ~${plan.sync_cost_usd:.4f}), over"
        f" the budget of ${budget_usd:.4f}; raise EMBEDDING_BUDGET_USD or launch the run with config"
        " allow_over_budget: true"
    )


def submit_batches(
    conn: sa.Connection,
    client,
    spec: ModelSpec,
    pending: Iterable[PendingText],
    limits: EmbedLimits,
    *,
    run_id: str | None = None,
    log: Callable[[str], None] = lambda _msg: None,
) -> list[SubmittedBatch]:
    """Write the texts as request files within the API's limits, upload each and create its batch.

    `pending` is consumed as it is written (e.g. `iter_texts_to_submit`): a request file grows in a
    temporary file on disk and its request mapping is recorded as it grows, so memory holds one request and
    one mapping group, whatever the number of texts. Each batch's row and request mapping are committed
    before its upload, so its texts are never submitted twice; a file or batch the API refuses is marked
    abandoned and its texts are pending again. No transaction is open on `conn` while `pending` is read."""
    if conn.in_transaction():
        conn.commit()
    dims = send_dimensions(spec)
    submitted: list[SubmittedBatch] = []
    current: _RequestFile | None = None
    try:
        # The requests inside a batch file obey the synchronous endpoint's per-request limits, and no one
        # request may carry more inputs than a whole batch may.
        per_request = min(limits.max_batch_inputs, limits.max_inputs_per_file)
        requests = pack_batches(pending, lambda p: p.tokens, per_request, limits.max_batch_tokens)
        # custom_ids are unique within a batch; the mapping is keyed by (batch row, custom_id).
        for i, request in enumerate(requests):
            line = request_line(f"r{i}", spec.model, [p.text for p in request], dims)
            if len(line) > limits.max_file_bytes:
                raise BatchFileError(
                    f"request line {i} is {len(line)} bytes, over the {limits.max_file_bytes}-byte file limit"
                )
            if current is not None and (
                starts_new_group(
                    current.requests,
                    current.size,
                    len(line),
                    limits.max_requests_per_file,
                    limits.max_file_bytes,
                )
                or current.texts + len(request) > limits.max_inputs_per_file
            ):
                full, current = current, None
                submitted.append(_submit_file(conn, client, spec, full, limits, log))
            if current is None:
                current = _RequestFile.start(conn, spec.name, run_id)
            current.add(conn, f"r{i}", request, line)
        if current is not None:
            last, current = current, None
            submitted.append(_submit_file(conn, client, spec, last, limits, log))
    finally:
        if current is not None:
            current.body.close()
            # The run failed while writing this file: its texts are pending again now rather than after
            # ABANDON_PREPARING_AFTER_S; should even that fail, the next plan abandons the row then.
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                if conn.in_transaction():
                    conn.rollback()
                conn.execute(
                    query("batch_embeddings/mark_embedding_batch_abandoned"),
                    {
                        "id": current.pk,
                        "model": spec.name,
                        "older_than_s": 0,
                        "error": "run failed while writing",
                    },
                )
                conn.commit()
    return submitted


@dataclass
class _RequestFile:
    """One request file as it is written: its lines on disk, its row in `embedding_batches` (inserted empty
    first, so that the request mapping can be recorded a group at a time), and its totals."""

    pk: int
    body: IO[bytes]
    requests: int = 0
    texts: int = 0
    tokens: int = 0
    size: int = 0  # bytes written
    mapping: list[dict[str, Any]] = field(default_factory=list)
    mapped_texts: int = 0

    @classmethod
    def start(cls, conn: sa.Connection, model: str, run_id: str | None) -> _RequestFile:
        pk = conn.execute(
            query("batch_embeddings/insert_embedding_batch"),
            {
                "model": model,
                "requests": 0,
                "texts": 0,
                "estimated_tokens": 0,
                "estimated_cost_usd": 0,
                "sync_cost_usd": 0,
                "file_bytes": 0,
                "run_id": run_id,
            },
        ).scalar_one()
        conn.commit()
        return cls(pk, tempfile.TemporaryFile(prefix=f"embeddings-{pk}-", suffix=".jsonl"))

    def add(self, conn: sa.Connection, custom_id: str, request: Sequence[PendingText], line: bytes) -> None:
        self.body.write(line)
        self.requests += 1
        self.texts += len(request)
        self.tokens += sum(p.tokens for p in request)
        self.size += len(line)
        self.mapping.append(
            {"batch": self.pk, "custom_id": custom_id, "content_sha256s": [p.content_sha256 for p in request]}
        )
        self.mapped_texts += len(request)
        if self.mapped_texts >= MAPPING_GROUP:
            self.flush_mapping(conn)
            conn.commit()

    def flush_mapping(self, conn: sa.Connection) -> None:
        if self.mapping:
            conn.execute(query("batch_embeddings/insert_embedding_batch_requests"), self.mapping)
        self.mapping, self.mapped_texts = [], 0


def _submit_file(
    conn: sa.Connection,
    client: Any,
    spec: ModelSpec,
    f: _RequestFile,
    limits: EmbedLimits,
    log: Callable[[str], None],
) -> SubmittedBatch:
    sync_cost = spec.cost_usd(f.tokens)
    f.flush_mapping(conn)
    conn.execute(
        query("batch_embeddings/update_embedding_batch_totals"),
        {
            "id": f.pk,
            "requests": f.requests,
            "texts": f.texts,
            "estimated_tokens": f.tokens,
            "estimated_cost_usd": batch_cost_usd(sync_cost),
            "sync_cost_usd": sync_cost,
            "file_bytes": f.size,
        },
    )
    conn.commit()
    try:
        with f.body:
            f.body.seek(0)
            uploaded = client.files.create(file=(f"embeddings-{f.pk}.jsonl", f.body), purpose="batch")
        batch = client.batches.create(
            input_file_id=uploaded.id,
            endpoint=ENDPOINT,
            completion_window=COMPLETION_WINDOW,
            metadata={"embedding_batch": str(f.pk), "model": spec.name},
        )
    except Exception as exc:
        reason = _api_error(exc, client)
        conn.execute(
            query("batch_embeddings/mark_embedding_batch_abandoned"),
            {"id": f.pk, "model": spec.name, "older_than_s": 0, "error": reason},
        )
        conn.commit()
        _raise_if_config_error(exc, client, spec.model)
        raise BatchApiError(f"submitting batch {f.pk} ({f.texts} texts) failed: {reason}") from None
    conn.execute(
        query("batch_embeddings/mark_embedding_batch_submitted"),
        {
            "id": f.pk,
            "batch_id": batch.id,
            "input_file_id": uploaded.id,
            "status": batch.status,
            "delay_s": limits.poll_initial_s,
        },
    )
    conn.commit()
    log(f"submitted batch {batch.id}: {f.requests} requests, {f.texts} texts, ~{f.tokens:,} tokens")
    return SubmittedBatch(
        id=f.pk,
        batch_id=batch.id,
        input_file_id=uploaded.id,
        status=batch.status,
        requests=f.requests,
        texts=f.texts,
        tokens=f.tokens,
        file_bytes=f.size,
    )


def _api_error(exc: BaseException, client: Any = None) -> str:
    """The API's error, short, with the client's key and anything that looks like a key redacted (a
    provider or proxy may echo the key it was sent)."""
    message = getattr(exc, "message", None) or str(exc)
    status = getattr(exc, "status_code", None)
    text = redact(
        f"HTTP {status}: {message}" if status else f"{type(exc).__name__}: {message}",
        [getattr(client, "api_key", None)],
    )
    return text if len(text) <= 300 else text[:300] + "…"


def _raise_if_config_error(exc: BaseException, client: Any, model: str | None = None) -> None:
    if getattr(exc, "status_code", None) in CONFIG_ERROR_STATUSES:
        model_hint = f" and EMBEDDING_MODEL={model!r}" if model else ""
        raise BatchConfigError(
            f"{_api_error(exc, client)} — the Batch API refused the configuration (check OPENAI_API_KEY,"
            f" OPENAI_BASE_URL{model_hint}); no text was charged an attempt"
        ) from None


def poll_batches(
    conn: sa.Connection, client, limits: EmbedLimits, log: Callable[[str], None] = lambda _msg: None
) -> list[tuple[str, str]]:
    """Retrieve the status of every open batch that is due, with exponential backoff between polls of
    one batch; returns the (batch id, status) of those whose status changed."""
    due = conn.execute(query("batch_embeddings/select_embedding_batches_to_poll")).all()
    conn.commit()
    changed = []
    for row in due:
        try:
            batch = client.batches.retrieve(row.batch_id)
        except Exception as exc:
            _raise_if_config_error(exc, client)
            log(f"could not poll batch {row.batch_id}: {_api_error(exc, client)}")
            continue
        error = None
        errors = getattr(batch, "errors", None)
        if errors is not None and getattr(errors, "data", None):
            error = "; ".join(f"{e.code}: {e.message}" for e in errors.data[:5])
        old = conn.execute(
            sa.text("SELECT status FROM embedding_batches WHERE id = :id"), {"id": row.id}
        ).scalar_one()
        conn.execute(
            query("batch_embeddings/update_embedding_batch_status"),
            {
                "id": row.id,
                "status": batch.status,
                "output_file_id": batch.output_file_id,
                "error_file_id": batch.error_file_id,
                "error": error,
                "delay_s": next_poll_delay_s(row.polls + 1, limits.poll_initial_s, limits.poll_max_s),
            },
        )
        conn.commit()
        if old != batch.status:
            changed.append((row.batch_id, batch.status))
    return changed


def list_batches(conn: sa.Connection, state: str | None = None) -> list:
    rows = list(conn.execute(query("batch_embeddings/select_embedding_batches"), {"state": state}).all())
    conn.commit()
    return rows


def _download_lines(client, file_id: str) -> Iterator[bytes]:
    with client.files.with_streaming_response.content(file_id) as response:
        for line in response.iter_lines():
            if line.strip():
                yield line.encode("utf-8") if isinstance(line, str) else line


def apply_batch(
    conn: sa.Connection, client, batch_id: str, log: Callable[[str], None] = lambda _msg: None
) -> ApplyResult:
    """Write a finished batch's vectors and record its failed lines, once.

    Every line is checked (JSON, a known and unrepeated custom_id, the response status, one finite vector
    of the model's dimension per input); a request whose line fails goes to `embedding_errors`. Texts an
    expired or cancelled batch never answered are released without an error; those a completed or failed
    batch did not answer are recorded as failed.

    Holds the model's embedding lock, as a synchronous run embedding that model does: the two take turns
    instead of writing vectors of the same chunks at once."""
    if conn.in_transaction():
        conn.commit()
    model = conn.execute(
        query("batch_embeddings/select_embedding_batch_model"), {"batch_id": batch_id}
    ).scalar_one_or_none()
    conn.commit()
    if model is None:
        raise BatchNotReadyError(f"batch {batch_id} is not one this database submitted")
    with session_lock(conn, embedding_lock_key(model)):
        return _apply_batch(conn, client, batch_id, log)


def _apply_batch(conn: sa.Connection, client: Any, batch_id: str, log: Callable[[str], None]) -> ApplyResult:
    with conn.begin():
        row = conn.execute(
            query("batch_embeddings/lock_embedding_batch"), {"batch_id": batch_id}
        ).one_or_none()
        if row is None:
            raise BatchNotReadyError(f"batch {batch_id} is not one this database submitted")
        result = ApplyResult(batch_id, row.status)
        if row.applied_at is not None:
            result.already_applied = True
            return result
        if row.status not in TERMINAL_STATUSES:
            raise BatchNotReadyError(f"batch {batch_id} is {row.status}, not finished")
        mapping = {
            r.custom_id: list(r.content_sha256s)
            for r in conn.execute(
                query("batch_embeddings/select_embedding_batch_requests"), {"batch": row.id}
            )
        }
        expected = {cid: len(shas) for cid, shas in mapping.items()}
        answered: set[str] = set()
        writer = _Writer(conn, row.model)
        failures: list[tuple[list[str], str]] = []

        def lines_of(file_id: str | None) -> Iterable[ParsedLine]:
            if not file_id:
                return
            for n, raw in enumerate(_download_lines(client, file_id), start=1):
                parsed = parse_result_line(raw, n, expected, row.dimensions)
                if isinstance(parsed, str):
                    result.problems.append(f"{file_id} {parsed}")
                    continue
                if parsed.custom_id in answered:
                    result.problems.append(f"{file_id} line {n}: custom_id {parsed.custom_id} answered twice")
                    continue
                answered.add(parsed.custom_id)
                yield parsed

        for file_id in (row.output_file_id, row.error_file_id):
            try:
                downloaded = list(lines_of(file_id))
            except Exception as exc:
                # Nothing of the batch is written (this transaction rolls back); the next apply downloads again.
                _raise_if_config_error(exc, client)
                raise BatchApiError(
                    f"downloading {file_id} of batch {batch_id} failed: {_api_error(exc, client)}"
                ) from None
            for parsed in downloaded:
                shas = mapping[parsed.custom_id]
                if parsed.error is not None or parsed.vectors is None:
                    failures.append((shas, parsed.error or "no vectors"))
                    continue
                result.requests_ok += 1
                result.tokens += parsed.tokens
                writer.add(shas, parsed.vectors)
        writer.flush()
        result.texts_written, result.chunks_written = writer.texts, writer.chunks

        unanswered = [cid for cid in mapping if cid not in answered]
        missing_shas = [sha for cid in unanswered for sha in mapping[cid]]
        if row.status in ("expired", "cancelled"):
            result.texts_released = len(missing_shas)
        elif missing_shas:
            reason = (
                f"batch failed: {row.error}"
                if row.status == "failed"
                else "no result line in the batch's files"
            )
            failures.append((missing_shas, reason))
        for shas, reason in failures:
            result.texts_failed += len(shas)
            _record_errors(
                conn,
                row.model,
                shas,
                redact(f"{reason} (batch {batch_id})", [getattr(client, "api_key", None)]),
            )
        conn.execute(
            query("batch_embeddings/mark_embedding_batch_applied"),
            {
                "id": row.id,
                "texts_written": result.texts_written,
                "texts_failed": result.texts_failed,
                "tokens": result.tokens,
                "price_factor": BATCH_PRICE_FACTOR,
                "error": "; ".join(result.problems[:5]) or None,
            },
        )
    for problem in result.problems[:20]:
        log(f"batch {batch_id}: {problem}")
    log(
        f"applied batch {batch_id} ({row.status}): {result.texts_written} texts written to"
        f" {result.chunks_written} chunks, {result.texts_failed} failed, {result.texts_released} released"
    )
    return result


def _chunks_by_hash(conn: sa.Connection, shas: Sequence[str]) -> dict[str, list[tuple[int, int]]]:
    out: dict[str, list[tuple[int, int]]] = {}
    for cid, sha, tokens in conn.execute(
        query("batch_embeddings/select_chunks_by_content_hash"), {"shas": list(shas)}
    ):
        out.setdefault(sha, []).append((cid, tokens))
    return out


def _record_errors(conn: sa.Connection, model: str, shas: Sequence[str], reason: str) -> None:
    chunks = _chunks_by_hash(conn, shas)
    ids = [cid for sha in shas for cid, _ in chunks.get(sha, [])]
    hashes = [sha for sha in shas for _ in chunks.get(sha, [])]
    if ids:
        conn.execute(
            query("embeddings/record_embedding_errors"),
            {"model": model, "chunk_ids": ids, "content_sha256s": hashes, "error": reason, "details": None},
        )


class _Writer:
    """Buffers vectors by content hash and writes them to every chunk with that text, by binary COPY."""

    def __init__(self, conn: sa.Connection, model: str):
        self.conn, self.model = conn, model
        self.shas: list[str] = []
        self.vectors: list[np.ndarray] = []
        self.texts = 0
        self.chunks = 0

    def add(self, shas: Sequence[str], vectors: np.ndarray) -> None:
        self.shas.extend(shas)
        self.vectors.extend(vectors)
        if len(self.shas) >= WRITE_GROUP:
            self.flush()

    def flush(self) -> None:
        if not self.shas:
            return
        chunks = _chunks_by_hash(self.conn, self.shas)
        ids, shas, tokens, vecs = [], [], [], []
        for sha, vec in zip(self.shas, self.vectors):
            for cid, tok in chunks.get(sha, []):
                ids.append(cid)
                shas.append(sha)
                tokens.append(tok)
                vecs.append(vec)
        self.texts += len(self.shas)
        if ids:
            self.chunks += write_embeddings(self.conn, self.model, ids, shas, tokens, as_matrix(vecs))
        self.shas, self.vectors = [], []


def cancel_open_batches(
    conn: sa.Connection, client, model: str | None = None, log: Callable[[str], None] = lambda _msg: None
) -> list[str]:
    """Ask the API to cancel every open batch (of `model`, or all); the sensor then applies what they
    finished before the cancellation. Returns the batch ids asked."""
    asked = []
    for row in list_batches(conn, "open"):
        if (model is not None and row.model != model) or row.status not in OPEN_STATUSES:
            continue
        if row.batch_id is None:
            conn.execute(
                query("batch_embeddings/mark_embedding_batch_abandoned"),
                {"id": row.id, "model": row.model, "older_than_s": 0, "error": "cancelled before submission"},
            )
            conn.commit()
            continue
        try:
            batch = client.batches.cancel(row.batch_id)
        except Exception as exc:
            _raise_if_config_error(exc, client)
            log(f"could not cancel batch {row.batch_id}: {_api_error(exc, client)}")
            continue
        conn.execute(
            query("batch_embeddings/update_embedding_batch_status"),
            {
                "id": row.id,
                "status": batch.status,
                "output_file_id": getattr(batch, "output_file_id", None),
                "error_file_id": getattr(batch, "error_file_id", None),
                "error": "cancelled on request",
                "delay_s": 0,
            },
        )
        conn.commit()
        asked.append(row.batch_id)
        log(f"asked to cancel batch {row.batch_id} ({row.status} → {batch.status})")
    return asked


def resume_key(conn: sa.Connection, model: str) -> str | None:
    """A run key for resuming `model`'s build once all its batches are applied: the build then submits
    what failed (or finishes it synchronously), and the blocking coverage check and the switch follow.
    None while a batch is open, when the model has no batches, or when the newest was cancelled."""
    r = conn.execute(query("batch_embeddings/select_batch_round"), {"model": model}).one()
    conn.commit()
    if not r.batches or r.open or r.latest_status == "cancelled":
        return None
    return f"resume-{model}-{r.latest}"


@dataclass
class BatchSubmission:
    """What `submit_missing_to_batch_api` did: its plan, the batches it submitted and the model's open ones."""

    plan: BatchPlan
    submitted: list[SubmittedBatch]
    open_batches: list


def submit_missing_to_batch_api(
    conn: sa.Connection,
    spec: ModelSpec,
    limits: EmbedLimits,
    open_client: Callable[[], contextlib.AbstractContextManager[Any]],
    *,
    mode: str,
    min_tokens: int,
    max_attempts: int,
    allow_over_budget: bool,
    first_embedding_only: bool = False,
    retry_abandoned: bool = False,
    run_id: str | None = None,
    log: Callable[[str], None] = lambda _msg: None,
    on_plan: Callable[[BatchPlan], None] = lambda _plan: None,
) -> BatchSubmission | None:
    """When `mode` (EMBEDDING_BATCH_API) picks the Batch API for what `spec`'s model lacks, or batches of the
    model are still open: plan, publish the plan (`on_plan`), check the budget (BudgetExceededError), and
    submit; otherwise None, and the synchronous path runs. With `first_embedding_only` only a corpus's
    first embedding, or one whose batches are still open, goes this way: nightly top-ups stay synchronous."""
    if mode == "off" or not get_provider(spec.provider).batch_api:
        return None
    active = active_model(conn)
    conn.commit()
    if first_embedding_only and active is not None:
        open_now = [b for b in list_batches(conn, "open") if b.model == spec.name]
        if active.name != spec.name or not open_now:
            return None
    prepare_target(conn.engine, spec)
    plan = plan_batch_embedding(
        conn, spec, limits, max_attempts=max_attempts, retry_abandoned=retry_abandoned
    )
    waiting = plan.in_open_batches > 0
    if not (
        waiting
        or use_batch_api(
            mode, plan.stats.estimated_tokens, min_tokens, has_batch_api=True, remainder=plan.remainder
        )
    ):
        return None
    record_oversize(conn, plan)
    on_plan(plan)
    check_budget(plan, limits.budget_usd, allow_over_budget)
    submitted = []
    if plan.stats.unique_texts:
        with open_client() as client:
            texts = iter_texts_to_submit(conn, plan)
            submitted = submit_batches(conn, client, spec, texts, limits, run_id=run_id, log=log)
    open_batches = [b for b in list_batches(conn, "open") if b.model == spec.name]
    return BatchSubmission(plan, submitted, open_batches)
