"""Blue/green re-embedding: build the configured model beside the active one, switch atomically, clean up.

Readers only ever see `embedding_models.status = 'active'` (the `active_chunk_embeddings` view and
`pipelines.search`). A new model is `building` while its vectors are written next to the active
model's; the switch is one transaction that re-checks coverage under a lock, so a reader's statement
sees either the old model complete or the new one complete. Retired vectors stay for a grace period
so that switching back costs no API call, then go in bounded batches together with their index.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import sqlalchemy as sa

from pipelines.embedding import EmbedStats, embed_pending, register_model
from pipelines.lib.vector_index import (
    IndexPlan,
    index_plan,
    quote_ident,
    quote_literal,
    recall_at_k,
    split_model_name,
    validate_pg_memory,
)
from resources.embedders import EmbedderResource, EmbeddingConfigError, ModelSpec
from resources.sql import load_sql, query

# Serialises switches, re-openings and clean-ups across processes; any constant unique to this purpose.
REEMBEDDING_LOCK_KEY = 7_300_120_005
DELETE_BATCH = 10_000


class CoverageError(RuntimeError):
    """The model to activate lacks vectors for some current chunks; switching would hide them from readers."""


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    provider: str
    dimensions: int
    price_per_million_tokens: float
    status: str
    activated_at: datetime | None = None
    retired_at: datetime | None = None
    embeddings_dropped_at: datetime | None = None


@dataclass(frozen=True)
class Coverage:
    model: str
    total_chunks: int
    missing: int
    sample_missing: tuple[int, ...] = ()

    @property
    def complete(self) -> bool:
        return self.missing == 0


@dataclass(frozen=True)
class IndexResult:
    index_name: str
    created: bool
    seconds: float
    note: str = ""


@dataclass
class BuildResult:
    target: str
    previous_active: str | None
    status_before: str | None
    reopened: bool
    stats: EmbedStats
    coverage: Coverage
    index: IndexResult | None = None


@dataclass(frozen=True)
class SwitchResult:
    target: str
    previous: str | None
    switched: bool
    chunks_covered: int


@dataclass(frozen=True)
class RecallResult:
    model: str
    recall: float
    queries: int
    k: int


@dataclass
class CleanupResult:
    deleted: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.deleted.values())


def _model(row) -> RegisteredModel:
    return RegisteredModel(
        name=row.name,
        provider=row.provider,
        dimensions=row.dimensions,
        price_per_million_tokens=float(row.price_per_million_tokens),
        status=row.status,
        activated_at=row.activated_at,
        retired_at=row.retired_at,
        embeddings_dropped_at=row.embeddings_dropped_at,
    )


def active_model(conn: sa.Connection) -> RegisteredModel | None:
    row = conn.execute(query("select_active_embedding_model")).one_or_none()
    return _model(row) if row else None


def get_model(conn: sa.Connection, name: str) -> RegisteredModel | None:
    row = conn.execute(query("select_embedding_models"), {"name": name}).one_or_none()
    return _model(row) if row else None


def list_models(conn: sa.Connection) -> list[RegisteredModel]:
    return [_model(r) for r in conn.execute(query("select_embedding_models"), {"name": None})]


def embedder_for_model(configured: EmbedderResource, model: RegisteredModel) -> EmbedderResource:
    """The configured resource (key, endpoint, limits, budget) pointed at a registered model instead."""
    base, _ = split_model_name(model.name)
    fields = {name: getattr(configured, name) for name in type(configured).model_fields}
    fields.update(
        provider=model.provider,
        model=base,
        dimensions=model.dimensions,
        price_per_million_tokens=model.price_per_million_tokens,
    )
    derived = type(configured)(**fields)
    name = derived.spec().name
    if name != model.name:
        raise EmbeddingConfigError(f"registered model {model.name!r} cannot be rebuilt from its name (got {name!r})")
    return derived


def coverage(conn: sa.Connection, model: str) -> Coverage:
    row = conn.execute(query("count_chunks_missing_embedding"), {"model": model}).one()
    return Coverage(model, row.total, row.missing, tuple(row.sample or ()))


def prepare_target(conn: sa.Connection, spec: ModelSpec) -> tuple[str | None, bool]:
    """Register the model (first use) and re-open it when retired; return (status before, re-opened)."""
    before = get_model(conn, spec.name)
    conn.commit()
    register_model(conn, spec)
    reopened = False
    if before is not None and before.status == "retired":
        if conn.in_transaction():
            conn.commit()
        with conn.begin():
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": REEMBEDDING_LOCK_KEY})
            reopened = conn.execute(query("reopen_retired_embedding_model"), {"name": spec.name}).first() is not None
    return (before.status if before else None), reopened


def build_model(
    conn: sa.Connection,
    configured: EmbedderResource,
    *,
    max_attempts: int = 3,
    allow_over_budget: bool = False,
    log: Callable[[str], None] = lambda _msg: None,
    on_estimate: Callable[[EmbedStats], None] | None = None,
) -> BuildResult:
    """Embed what the configured model lacks beside the active one, then index it (after the bulk load).

    Resumable: only chunks without a vector of their current text for the model are sent, and every
    finished request is committed, so an interrupted run picks up where it stopped.
    """
    spec = configured.spec()
    previous = active_model(conn)
    conn.commit()
    status_before, reopened = prepare_target(conn, spec)
    if reopened:
        log(f"{spec.name} was retired; its surviving vectors are reused and only missing chunks are embedded")
    stats = embed_pending(
        conn,
        configured,
        max_attempts=max_attempts,
        allow_over_budget=allow_over_budget,
        log=log,
        on_estimate=on_estimate,
    )
    cov = coverage(conn, spec.name)
    conn.commit()
    index = ensure_hnsw_index(conn, spec.name, spec.dimensions, configured.hnsw_maintenance_work_mem, log=log)
    return BuildResult(
        target=spec.name,
        previous_active=previous.name if previous else None,
        status_before=status_before,
        reopened=reopened,
        stats=stats,
        coverage=cov,
        index=index,
    )


def _index_lock_key(index_name: str) -> int:
    return int.from_bytes(hashlib.sha256(index_name.encode()).digest()[:8], "big", signed=True)


def ensure_hnsw_index(
    conn: sa.Connection, model: str, dimensions: int, maintenance_work_mem: str, log: Callable[[str], None] = lambda _m: None
) -> IndexResult:
    """Create the model's HNSW index unless a valid one exists.

    Built CONCURRENTLY on a separate autocommit connection so that the nightly writes of the other
    models never wait for it. The caller must not hold an open transaction on the table: a concurrent
    build waits for every older snapshot, its caller's included.
    """
    plan = index_plan(model, dimensions)
    if not plan.indexable:
        return IndexResult(plan.index_name, False, 0.0, f"{dimensions} dimensions exceed HNSW's limit: exact search only")
    mem = validate_pg_memory(maintenance_work_mem)
    if conn.in_transaction():
        conn.commit()
    with conn.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as ddl:
        key = _index_lock_key(plan.index_name)
        ddl.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": key})
        try:
            valid = ddl.execute(query("select_index_validity"), {"index_name": plan.index_name}).scalar_one_or_none()
            if valid:
                return IndexResult(plan.index_name, False, 0.0, "exists")
            if valid is False:
                log(f"dropping the unfinished index {plan.index_name} left by an interrupted build")
                ddl.exec_driver_sql(load_sql("drop_index_concurrently").format(index_name=quote_ident(plan.index_name)))
            ddl.execute(sa.text("SELECT set_config('maintenance_work_mem', :v, false)"), {"v": mem})
            started = time.perf_counter()
            try:
                ddl.exec_driver_sql(_create_index_sql(plan))
            finally:
                ddl.exec_driver_sql("RESET maintenance_work_mem")
            seconds = time.perf_counter() - started
            # Fresh statistics after a bulk load, so the planner prices the new index against real row counts.
            ddl.exec_driver_sql("ANALYZE chunk_embeddings")
            log(f"built HNSW index {plan.index_name} for {model} in {seconds:.1f}s")
            return IndexResult(plan.index_name, True, seconds, "built")
        finally:
            ddl.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})


def _create_index_sql(plan: IndexPlan) -> str:
    return load_sql("create_hnsw_index").format(
        index_name=quote_ident(plan.index_name),
        column_expr=plan.column_expr,
        opclass=plan.opclass,
        model_literal=quote_literal(plan.model),
    )


def drop_hnsw_index(conn: sa.Connection, model: str, dimensions: int) -> None:
    plan = index_plan(model, dimensions)
    if conn.in_transaction():
        conn.commit()
    with conn.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as ddl:
        ddl.exec_driver_sql(load_sql("drop_index_concurrently").format(index_name=quote_ident(plan.index_name)))


def switch_active_model(conn: sa.Connection, target: str, run_id: str | None = None) -> SwitchResult:
    """Make `target` active and the current active model retired, in one transaction.

    Coverage is checked again inside the transaction, under the advisory lock and the registry rows'
    locks: a reader's statement sees the old model complete or the new one complete, never a mix.
    """
    if conn.in_transaction():
        conn.commit()
    with conn.begin():
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": REEMBEDDING_LOCK_KEY})
        rows = {r.name: r.status for r in conn.execute(query("lock_embedding_models_for_switch"), {"name": target})}
        if target not in rows:
            raise CoverageError(f"model {target!r} is not registered; run the reembedding asset first")
        previous = next((name for name, status in rows.items() if status == "active"), None)
        cov = coverage(conn, target)
        if previous == target:
            return SwitchResult(target, previous, False, cov.total_chunks - cov.missing)
        if not cov.complete:
            raise CoverageError(
                f"{target} lacks vectors for {cov.missing} of {cov.total_chunks} chunks (e.g. chunk ids"
                f" {', '.join(map(str, cov.sample_missing))}); it stays `building` and readers keep {previous}"
            )
        conn.execute(query("retire_active_embedding_model"), {"name": target})
        conn.execute(query("activate_embedding_model"), {"name": target})
        conn.execute(
            query("record_embedding_model_switch"),
            {"from_model": previous, "to_model": target, "chunks_covered": cov.total_chunks, "run_id": run_id},
        )
    return SwitchResult(target, previous, True, cov.total_chunks)


def retire_abandoned_builds(conn: sa.Connection, keep: str) -> list[str]:
    """Retire every `building` model but `keep` (the configured one); returns their names."""
    if conn.in_transaction():
        conn.commit()
    with conn.begin():
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": REEMBEDDING_LOCK_KEY})
        return list(conn.execute(query("retire_abandoned_embedding_builds"), {"keep": keep}).scalars())


def drop_retired_embeddings(
    conn: sa.Connection, grace_days: float, batch_size: int = DELETE_BATCH, log: Callable[[str], None] = lambda _m: None
) -> CleanupResult:
    """Delete the vectors (and index) of models retired longer than `grace_days` ago, in bounded batches."""
    if grace_days < 0:
        raise ValueError(f"RETIRED_GRACE_DAYS must be zero or more, got {grace_days}")
    result = CleanupResult()
    expired = conn.execute(query("select_retired_models_past_grace"), {"grace_days": grace_days}).all()
    conn.commit()
    for model, dimensions in expired:
        # Without its index first, each batch below does not pay for index maintenance.
        drop_hnsw_index(conn, model, dimensions)
        deleted = 0
        while True:
            with conn.begin():
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": REEMBEDDING_LOCK_KEY})
                n = conn.execute(
                    query("delete_retired_embeddings_batch"), {"model": model, "batch_size": batch_size}
                ).rowcount
                if n == 0:
                    conn.execute(query("mark_retired_embeddings_dropped"), {"model": model})
            deleted += n
            if n == 0:
                break
        log(f"dropped {deleted} vectors of {model}, retired past the {grace_days:g}-day grace period")
        result.deleted[model] = deleted
    return result


# Transaction-local settings that make a nearest-neighbour query go through the model's HNSW index: a custom
# plan lets the planner match the bound model name against the partial index's predicate, and without the
# other scans a small or freshly loaded table cannot fall back to an exact sort.
INDEX_SCAN_SETTINGS = {"plan_cache_mode": "force_custom_plan", "enable_seqscan": "off", "enable_bitmapscan": "off"}
EXACT_SCAN_SETTINGS = {"plan_cache_mode": "force_custom_plan", "enable_indexscan": "off"}


def set_local(conn: sa.Connection, settings: dict[str, str]) -> None:
    for name, value in settings.items():
        conn.execute(sa.text("SELECT set_config(:n, :v, true)"), {"n": name, "v": value})


def ef_search_for(k: int, ef_search: int | None = None) -> str:
    return str(min(1000, max(ef_search or 40, k)))


def nearest(
    conn: sa.Connection, model: str, dimensions: int, vector, k: int, *, exact: bool = False, ef_search: int | None = None
) -> list[tuple[int, float]]:
    """(chunk id, cosine distance) of the k nearest vectors of `model`: through its HNSW index, or by a full
    scan when `exact`. Runs in a transaction of its own, so that its settings end with it."""
    plan = index_plan(model, dimensions)
    if conn.in_transaction():
        conn.commit()
    with conn.begin():
        if exact:
            set_local(conn, EXACT_SCAN_SETTINGS)
        else:
            set_local(conn, {**INDEX_SCAN_SETTINGS, "hnsw.ef_search": ef_search_for(k, ef_search)})
        rows = conn.execute(
            sa.text(load_sql("nearest_embeddings").format(vector_type=plan.vector_type)),
            {"model": model, "query": np.asarray(vector, dtype=np.float32), "k": k},
        ).all()
    return [(r.chunk_id, float(r.distance)) for r in rows]


def measure_recall(conn: sa.Connection, model: str, dimensions: int, sample: int = 50, k: int = 10) -> RecallResult:
    """Recall@k of the model's HNSW index against exact search, querying with sampled stored vectors
    (no API call): the index must find what a full scan finds."""
    samples = conn.execute(query("sample_chunk_embeddings"), {"model": model, "n": sample}).all()
    recalls = []
    for _chunk_id, vector in samples:
        vec = np.asarray(vector.to_numpy() if hasattr(vector, "to_numpy") else vector, dtype=np.float32)
        approx = nearest(conn, model, dimensions, vec, k)
        exact = nearest(conn, model, dimensions, vec, k, exact=True)
        # halfvec distances are rounded; ties must be judged at that precision.
        tolerance = 1e-6 if dimensions <= 2000 else 1e-3
        recalls.append(recall_at_k(approx, exact, k, tolerance))
    conn.commit()
    return RecallResult(model, float(np.mean(recalls)) if recalls else 1.0, len(recalls), k)
