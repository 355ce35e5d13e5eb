"""Embedding chunks for the configured model: the work behind the `chunk_embeddings` asset.

Each distinct text is sent once; chunks whose text already has a vector for the model reuse it;
finished requests are written with binary COPY in one transaction each, so a crash loses at most
the requests in flight and a re-run resumes where this one stopped.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from pipelines.embedders import (
    EmbedderFactory,
    EmbeddingConfigError,
    EmbeddingError,
    EmbedLimits,
    EmbedResult,
    ModelSpec,
    get_provider,
)
from pipelines.lib.batching import minimum_requests_for, pack_batches
from pipelines.lib.redact import redact
from pipelines.lib.vectors import as_matrix
from pipelines.locks import embedding_lock_key, session_lock
from pipelines.models import active_model, drop_retired_embeddings, register_model
from pipelines.sql import composed, execute_composed, load_sql, query


class ProviderConfigError(EmbeddingConfigError):
    """The provider refused the configuration itself (key, permissions, model or endpoint): every request
    would fail the same way, so the run fails and nothing is recorded against texts."""


# Texts read per transaction while embedding (each with all its chunks): with the requests in flight, all
# the text a run holds.
PAGE_TEXTS = 2048


class BudgetExceededError(RuntimeError):
    pass


@dataclass
class PendingText:
    text: str
    content_sha256: str
    tokens: int
    chunk_ids: list[int]


@dataclass
class EmbedStats:
    model: str
    provider: str
    dimensions: int
    model_status: str = ""
    chunks_total: int = 0
    chunks_skipped: int = 0
    chunks_reused: int = 0
    chunks_embedded: int = 0
    chunks_failed: int = 0
    chunks_vanished: int = 0  # deleted or rewritten while their request was in flight
    chunks_abandoned: int = 0  # no vector: failed max_attempts times, not retried until asked to
    unique_texts: int = 0
    requests: int = 0
    minimum_requests: int = 0
    tokens: int = 0
    estimated_tokens: int = 0
    estimated_cost_usd: float = 0.0
    cost_usd: float = 0.0
    duration_s: float = 0.0
    failures: list[tuple[int, str]] = field(default_factory=list)  # (chunk id, reason), a sample


def write_embeddings(
    conn: sa.Connection,
    model: str,
    chunk_ids: Sequence[int],
    shas: Sequence[str],
    tokens: Sequence[int],
    vectors: Any,
) -> int:
    """Replace the chunks' embeddings for `model` with binary COPY, in the caller's transaction.

    Returns the rows written: chunks deleted or rewritten since their text was read are skipped (a
    retention sweep or a new chunking may run beside an embedding run)."""
    left_out = set(
        execute_composed(
            conn,
            composed("embeddings/prepare_embedding_write"),
            {"model": model, "chunk_ids": list(chunk_ids), "content_sha256s": list(shas)},
        ).scalars()
    )
    keep = [i for i, cid in enumerate(chunk_ids) if cid not in left_out]
    if not keep:
        return 0
    driver = conn.connection.driver_connection
    assert driver is not None, "a checked-out connection has its driver connection"
    cursor = driver.cursor()
    with cursor, cursor.copy(load_sql("embeddings/copy_chunk_embeddings")) as copy:
        copy.set_types(["int8", "text", "vector", "text", "int4"])
        for i in keep:
            copy.write_row((chunk_ids[i], model, vectors[i], shas[i], tokens[i]))
    return len(keep)


def record_failures(
    conn: sa.Connection, model: str, items: Sequence[PendingText], reason: str, details: str | None
) -> None:
    """Record the items' chunks as failed for `model`, in the caller's transaction."""
    ids = [cid for it in items for cid in it.chunk_ids]
    shas = [it.content_sha256 for it in items for _ in it.chunk_ids]
    conn.execute(
        query("embeddings/record_embedding_errors"),
        {
            "model": model,
            "chunk_ids": ids,
            "content_sha256s": shas,
            "error": redact(reason),
            "details": details,
        },
    )


def set_aside_oversize(
    pending: list[PendingText], max_input_tokens: int, stats: EmbedStats
) -> tuple[list[PendingText], list[PendingText]]:
    """(texts within the model's input limit, texts over it); the latter's chunks count as failed."""
    oversize = [p for p in pending if p.tokens > max_input_tokens]
    stats.chunks_failed += sum(len(p.chunk_ids) for p in oversize)
    return [p for p in pending if p.tokens <= max_input_tokens], oversize


def record_oversize(
    conn: sa.Connection, model: str, oversize: Sequence[PendingText], max_input_tokens: int, stats: EmbedStats
) -> None:
    """Record texts over the model's input limit as failed, in the caller's transaction."""
    reason = f"input exceeds the model's {max_input_tokens}-token limit"
    stats.failures.extend((p.chunk_ids[0], f"~{p.tokens} tokens: {reason}") for p in oversize)
    record_failures(conn, model, oversize, reason, "token counts are estimates; split the source text")


def iter_pending(
    conn: sa.Connection,
    model: str,
    max_attempts: int,
    *,
    min_tokens: int = 0,
    max_tokens: int = 2**31 - 1,
    page_texts: int | None = None,
) -> Iterator[PendingText]:
    """The texts the database's `chunks_to_embed` selects (within the token range), each with all its chunks, read
    `page_texts` texts per transaction in content-hash order: memory holds a page, never the corpus.

    No transaction is open while the caller holds a yielded text, so it may write on `conn` between two."""
    limit = page_texts or PAGE_TEXTS
    params: dict[str, Any] = {
        "model": model,
        "max_attempts": max_attempts,
        "min_tokens": min_tokens,
        "max_tokens": max_tokens,
        "after_sha": "",
        "limit": limit,
    }
    while True:
        with conn.begin():
            bounds = conn.execute(query("embeddings/select_embedding_page_bounds"), params).one()
            if bounds.texts == 0:
                return
            rows = conn.execute(
                query("embeddings/select_chunks_to_embed_page"), {**params, "last_sha": bounds.last_sha}
            ).all()
        page: list[PendingText] = []
        for r in rows:
            if page and page[-1].content_sha256 == r.content_sha256:
                page[-1].chunk_ids.append(r.id)
            else:
                page.append(PendingText(r.content, r.content_sha256, r.token_count, [r.id]))
        del rows
        yield from page
        if bounds.texts < limit:
            return
        params["after_sha"] = bounds.last_sha


def _in_lists(items: Iterable[PendingText], size: int) -> Iterator[list[PendingText]]:
    page: list[PendingText] = []
    for item in items:
        page.append(item)
        if len(page) == size:
            yield page
            page = []
    if page:
        yield page


def embed_pending(
    engine: sa.Engine,
    spec: ModelSpec,
    limits: EmbedLimits,
    embedders: EmbedderFactory,
    *,
    max_attempts: int = 3,
    allow_over_budget: bool = False,
    retry_abandoned: bool = False,
    log: Callable[[str], None] = lambda _msg: None,
    on_estimate: Callable[[EmbedStats], None] | None = None,
) -> EmbedStats:
    """Embed every chunk lacking a vector of its current text for `spec`'s model.

    Owns its transactions: one for the free work (registration, reuse by hash), one per finished request.
    `on_estimate` sees the token and cost estimate after the free work and before any request or budget
    refusal, so a caller can publish what the run is about to spend. `retry_abandoned` gives chunks that
    failed `max_attempts` times a fresh set of attempts. Raises ProviderConfigError, recording nothing, when
    the provider refuses the key, permissions or model.
    """
    started = time.perf_counter()
    stats = EmbedStats(model=spec.name, provider=spec.provider, dimensions=spec.dimensions)
    # One run at a time per model, from the reuse by hash to the last write: a second run waits, then
    # reuses what the first one paid for.
    with engine.connect() as conn, session_lock(conn, embedding_lock_key(spec.name)):
        with conn.begin():
            stats.model_status = register_model(conn, spec)
        with conn.begin():
            stats.chunks_total = conn.execute(query("embeddings/count_document_chunks")).scalar_one()
            stats.chunks_reused = conn.execute(
                query("embeddings/reuse_embeddings_by_content_hash"), {"model": spec.name}
            ).rowcount
        if retry_abandoned:
            with conn.begin():
                cleared = conn.execute(
                    query("embeddings/reset_abandoned_attempts"),
                    {"model": spec.name, "max_attempts": max_attempts},
                ).rowcount
            log(f"retrying {cleared} abandoned chunks of {spec.name}")
        with conn.begin():
            todo = conn.execute(
                query("embeddings/summarize_chunks_to_embed"),
                {
                    "model": spec.name,
                    "max_attempts": max_attempts,
                    "max_input_tokens": limits.max_input_tokens,
                },
            ).one()
        # Texts over the input limit are few: recorded a page at a time, before any estimate or refusal.
        for page in _in_lists(
            iter_pending(conn, spec.name, max_attempts, min_tokens=limits.max_input_tokens + 1), PAGE_TEXTS
        ):
            _, oversize = set_aside_oversize(page, limits.max_input_tokens, stats)
            with conn.begin():
                record_oversize(conn, spec.name, oversize, limits.max_input_tokens, stats)
        stats.unique_texts = todo.texts
        stats.estimated_tokens = int(todo.tokens)
        stats.estimated_cost_usd = spec.cost_usd(stats.estimated_tokens)
        stats.chunks_skipped = stats.chunks_total - stats.chunks_reused - todo.chunk_rows
        if on_estimate is not None:
            on_estimate(stats)
        if (
            limits.budget_usd is not None
            and stats.estimated_cost_usd > limits.budget_usd
            and not allow_over_budget
        ):
            raise BudgetExceededError(
                f"embedding {stats.unique_texts} texts (~{stats.estimated_tokens:,} tokens) with {spec.name}"
                f" would cost ~${stats.estimated_cost_usd:.4f}, over the budget of ${limits.budget_usd:.4f};"
                " raise EMBEDDING_BUDGET_USD or launch the run with config allow_over_budget: true"
            )

        stats.minimum_requests = minimum_requests_for(
            stats.unique_texts, stats.estimated_tokens, limits.max_batch_inputs, limits.max_batch_tokens
        )
        if stats.unique_texts:
            log(
                f"embedding {stats.unique_texts} texts in at least {stats.minimum_requests} requests with"
                f" {spec.name}, reading {PAGE_TEXTS} texts at a time"
            )
            batches = pack_batches(
                iter_pending(conn, spec.name, max_attempts, max_tokens=limits.max_input_tokens),
                lambda p: p.tokens,
                limits.max_batch_inputs,
                limits.max_batch_tokens,
            )
            _run_batches(conn, spec, limits, embedders, batches, stats, log)

        # Chunks whose new text could not be embedded must not keep serving the old text's vector.
        with conn.begin():
            conn.execute(query("embeddings/delete_stale_embeddings"), {"model": spec.name})
        with conn.begin():
            stats.chunks_abandoned = conn.execute(
                query("embeddings/count_abandoned_chunks"), {"model": spec.name, "max_attempts": max_attempts}
            ).scalar_one()
    stats.cost_usd = spec.cost_usd(stats.tokens)
    stats.duration_s = time.perf_counter() - started
    return stats


def _run_batches(
    conn: sa.Connection,
    spec: ModelSpec,
    limits: EmbedLimits,
    embedders: EmbedderFactory,
    batches: Iterator[list[PendingText]],
    stats: EmbedStats,
    log: Callable[[str], None],
) -> None:
    """Send the batches concurrently, at most two per worker in flight and taken from `batches` only as
    requests finish; each finished request is written in a transaction of its own."""
    workers = max(1, limits.concurrency) if get_provider(spec.provider).concurrent else 1
    with embedders.open(spec) as client, ThreadPoolExecutor(max_workers=workers) as pool:
        inflight: dict[Future[EmbedResult], list[PendingText]] = {}
        # Halves of a refused request go first, then the planned batches as they are read.
        queue: deque[list[PendingText]] = deque()

        def submit_more() -> None:
            while len(inflight) < workers * 2:
                batch = queue.popleft() if queue else next(batches, None)
                if batch is None:
                    return
                inflight[pool.submit(client.embed, [p.text for p in batch])] = batch

        submit_more()
        while inflight:
            done, _ = wait(inflight, return_when=FIRST_COMPLETED)
            for fut in done:
                batch = inflight.pop(fut)
                stats.requests += 1
                try:
                    result = fut.result()
                except EmbeddingError as exc:
                    if exc.blames == "configuration":
                        queue.clear()
                        pool.shutdown(wait=False, cancel_futures=True)
                        raise ProviderConfigError(
                            f"{redact(str(exc))} — the embeddings API refused the configuration (check"
                            f" OPENAI_API_KEY, OPENAI_BASE_URL and EMBEDDING_MODEL={spec.model!r});"
                            " no chunk was charged an attempt"
                        ) from None
                    if exc.blames == "inputs" and len(batch) > 1:
                        # Split to find the offending input; the rest of the batch still gets embedded.
                        mid = len(batch) // 2
                        queue.extendleft([batch[mid:], batch[:mid]])
                    else:
                        n = sum(len(p.chunk_ids) for p in batch)
                        log(f"a request of {len(batch)} texts ({n} chunks) failed: {exc}")
                        stats.chunks_failed += n
                        stats.failures.extend((p.chunk_ids[0], str(exc)) for p in batch[:5])
                        with conn.begin():
                            record_failures(
                                conn, spec.name, batch, str(exc), f"request of {len(batch)} inputs"
                            )
                    continue
                stats.tokens += result.tokens
                ids, shas, toks, vecs = [], [], [], []
                for p, vec in zip(batch, result.vectors):
                    for cid in p.chunk_ids:
                        ids.append(cid)
                        shas.append(p.content_sha256)
                        toks.append(p.tokens)
                        vecs.append(vec)
                with conn.begin():
                    written = write_embeddings(conn, spec.name, ids, shas, toks, as_matrix(vecs))
                stats.chunks_embedded += written
                stats.chunks_vanished += len(ids) - written
            submit_more()


class ActiveModelError(EmbeddingConfigError):
    """New chunks need vectors of the active model, which the current configuration cannot embed."""


@dataclass
class NewChunksResult:
    stats: EmbedStats
    retired_vectors_dropped: int


def embed_new_chunks(
    engine: sa.Engine,
    configured: ModelSpec,
    limits: EmbedLimits,
    embedders: EmbedderFactory,
    *,
    retired_grace_days: float,
    max_attempts: int = 3,
    allow_over_budget: bool = False,
    retry_abandoned: bool = False,
    log: Callable[[str], None] = lambda _msg: None,
) -> NewChunksResult:
    """Nightly embedding: vectors of the active model readers use for chunks that lack one. While a newly
    configured model is being built by re-embedding, new chunks still get the active model's vectors, so
    readers never miss them; should readers switch to the configured model meanwhile, its new chunks are
    embedded too. Vectors of models retired longer than `retired_grace_days` are dropped."""
    with engine.begin() as conn:
        active = active_model(conn)
        target = configured
        if active is not None and active.name != configured.name:
            register_model(conn, configured)
            log(
                f"the configured model {configured.name} is not active yet: embedding new chunks for the active"
                f" {active.name}; reembedding_job builds {configured.name} and switches"
            )
            target = active.spec()

    options: dict[str, Any] = {
        "max_attempts": max_attempts,
        "allow_over_budget": allow_over_budget,
        "retry_abandoned": retry_abandoned,
    }

    def embed(spec: ModelSpec) -> EmbedStats:
        return embed_pending(engine, spec, limits, embedders, log=log, **options)

    try:
        stats = embed(target)
    except ProviderConfigError:
        raise
    except EmbeddingConfigError as exc:
        if active is None or target is configured:
            raise
        raise ActiveModelError(
            f"new chunks need vectors of the active model {active.name} until reembedding_job"
            f" switches readers to {configured.name}: {exc}"
        ) from None
    if target is not configured:
        with engine.begin() as conn:
            now_active = active_model(conn)
        if now_active is not None and now_active.name == configured.name:
            # reembedding_job switched readers while this run embedded for the old model: the chunks this
            # run wrote meanwhile need the new active model's vectors too, or readers would miss them.
            log(f"readers switched to {configured.name} during this run: embedding its new chunks")
            stats = embed(configured)
    cleanup = drop_retired_embeddings(engine, retired_grace_days, log=log)
    return NewChunksResult(stats, cleanup.total)
