"""Per-model HNSW indexes in the database: build after a bulk load (over halfvec casts, only above a row
count), drop, nearest-neighbour queries (through the index with an exact re-rank, or exact), and recall of
the index against exact search."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlalchemy as sa
from psycopg import sql

from pipelines.lib.vector_index import (
    DEFAULT_BUILD_WORKERS,
    DEFAULT_HNSW_MIN_ROWS,
    MAX_CANDIDATES,
    IndexPlan,
    candidates_for,
    hnsw_build_memory_kb,
    index_plan,
    quote_ident,
    recall_at_k,
    should_build_index,
    validate_build_workers,
    validate_pg_memory,
)
from pipelines.locks import index_lock_key, session_lock
from pipelines.sql import composed, execute_composed, query

# The most memory an HNSW build may use: each build asks for what its graph needs (see
# hnsw_build_memory_kb), up to this. 2 GB holds the halfvec graph of ~400,000 1,536-d vectors; a build that
# outgrows its memory slows down sharply.
DEFAULT_MAINTENANCE_WORK_MEM = "2GB"
__all__ = ["DEFAULT_BUILD_WORKERS", "DEFAULT_HNSW_MIN_ROWS", "DEFAULT_MAINTENANCE_WORK_MEM"]


@dataclass(frozen=True)
class IndexResult:
    index_name: str
    created: bool
    seconds: float
    note: str = ""


@dataclass(frozen=True)
class RecallResult:
    model: str
    recall: float
    queries: int
    k: int
    # False when the model has no finished index: its searches are exact, and nothing was measured.
    via_index: bool = True


def ensure_hnsw_index(
    engine: sa.Engine,
    model: str,
    dimensions: int,
    maintenance_work_mem: str,
    log: Callable[[str], None] = lambda _m: None,
    *,
    min_rows: int = DEFAULT_HNSW_MIN_ROWS,
    workers: int = DEFAULT_BUILD_WORKERS,
) -> IndexResult:
    """Create the model's HNSW index unless a valid one exists or the model has fewer than `min_rows`
    vectors (search stays exact until then; a later run builds it once the model has grown).

    Built CONCURRENTLY on an autocommit connection of its own so that the nightly writes of the other
    models never wait for it, with up to `workers` parallel maintenance workers. The caller must not hold an
    open transaction on the table meanwhile: a concurrent build waits for every older snapshot, its caller's
    included.
    """
    plan = index_plan(model, dimensions)
    if not plan.indexable:
        return IndexResult(
            plan.index_name, False, 0.0, f"{dimensions} dimensions exceed HNSW's limit: exact search only"
        )
    validate_pg_memory(maintenance_work_mem)
    validate_build_workers(workers)
    with (
        engine.connect().execution_options(isolation_level="AUTOCOMMIT") as ddl,
        session_lock(ddl, index_lock_key(plan.index_name)),
    ):
        valid = ddl.execute(
            query("hnsw/select_index_validity"), {"index_name": plan.index_name}
        ).scalar_one_or_none()
        if valid:
            _drop_legacy_index(ddl, plan, log)
            return IndexResult(plan.index_name, False, 0.0, "exists")
        if valid is False:
            log(f"dropping the unfinished index {plan.index_name} left by an interrupted build")
            execute_composed(ddl, _drop_index_sql(plan.index_name))
        rows = ddl.execute(query("hnsw/count_model_embeddings"), {"model": model}).scalar_one()
        if not should_build_index(plan, rows, min_rows):
            log(
                f"{model}: {rows} vectors, fewer than HNSW_MIN_ROWS={min_rows}: no HNSW index, search is exact"
            )
            return IndexResult(
                plan.index_name, False, 0.0, f"{rows} vectors < HNSW_MIN_ROWS {min_rows}: exact search"
            )
        mem_kb = hnsw_build_memory_kb(plan, rows, maintenance_work_mem)
        ddl.execute(
            query("hnsw/set_build_settings"),
            {"maintenance_work_mem": f"{mem_kb}kB", "workers": str(workers)},
        )
        started = time.perf_counter()
        try:
            execute_composed(ddl, _create_index_sql(plan))
        finally:
            ddl.execute(query("hnsw/reset_build_settings"))
        seconds = time.perf_counter() - started
        # Fresh statistics after a bulk load, so the planner prices the new index against real row counts.
        ddl.execute(query("hnsw/analyze_chunk_embeddings"))
        _drop_legacy_index(ddl, plan, log)
        log(
            f"built HNSW index {plan.index_name} for {model} ({rows} vectors, {mem_kb // 1024} MB,"
            f" {workers} workers) in {seconds:.1f}s"
        )
        return IndexResult(
            plan.index_name, True, seconds, f"built over {rows} vectors with {mem_kb // 1024} MB"
        )


def _drop_legacy_index(ddl: sa.Connection, plan: IndexPlan, log: Callable[[str], None]) -> None:
    """The model's `vector` index of an earlier release, once its halfvec successor is valid: searches no
    longer use it and each write would keep paying for it."""
    if plan.legacy_index_name is None:
        return
    if (
        ddl.execute(
            query("hnsw/select_index_validity"), {"index_name": plan.legacy_index_name}
        ).scalar_one_or_none()
        is not None
    ):
        log(f"dropping {plan.legacy_index_name}, the earlier full-precision index of {plan.model}")
        execute_composed(ddl, _drop_index_sql(plan.legacy_index_name))


def has_valid_index(conn: sa.Connection, model: str, dimensions: int) -> bool:
    """Whether the model's HNSW index exists and finished building (a concurrent build is not yet valid)."""
    plan = index_plan(model, dimensions)
    return bool(
        plan.indexable
        and conn.execute(
            query("hnsw/select_index_validity"), {"index_name": plan.index_name}
        ).scalar_one_or_none()
    )


def _index_name(name: str) -> sql.Identifier:
    # Validated although index_plan derives it: the name reaches DDL.
    quote_ident(name)
    return sql.Identifier(name)


def vector_type_sql(plan: IndexPlan) -> sql.Composed:
    """The index's type, e.g. `"halfvec"(1536)`: the cast that index and queries must share."""
    return sql.SQL("{}({})").format(sql.Identifier(plan.type_name), sql.Literal(plan.dimensions))


def exact_type_sql(plan: IndexPlan) -> sql.Composed:
    """The stored vectors' full-precision type, e.g. `"vector"(1536)`: what the exact re-rank compares."""
    return sql.SQL("{}({})").format(sql.Identifier("vector"), sql.Literal(plan.dimensions))


def ranking_params(plan: IndexPlan, exact: bool) -> dict[str, sql.Composed]:
    """The type slots of a nearest-neighbour template: through the halfvec index then an exact re-rank, or
    exact throughout."""
    exact_type = exact_type_sql(plan)
    return {"index_type": exact_type if exact else vector_type_sql(plan), "exact_type": exact_type}


def _create_index_sql(plan: IndexPlan) -> sql.Composed:
    return composed(
        "hnsw/create_hnsw_index",
        index_name=_index_name(plan.index_name),
        vector_type=vector_type_sql(plan),
        opclass=sql.Identifier(plan.opclass),
        model=sql.Literal(plan.model),
    )


def _drop_index_sql(name: str) -> sql.Composed:
    return composed("hnsw/drop_index_concurrently", index_name=_index_name(name))


def drop_hnsw_index(engine: sa.Engine, model: str, dimensions: int) -> None:
    """Dropped CONCURRENTLY on an autocommit connection of its own, so readers of other models never wait."""
    plan = index_plan(model, dimensions)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as ddl:
        for name in (plan.index_name, plan.legacy_index_name):
            if name is not None:
                execute_composed(ddl, _drop_index_sql(name))


# Transaction-local settings that make a nearest-neighbour query go through the model's HNSW index: a custom
# plan lets the planner match the bound model name against the partial index's predicate, and without the
# other scans a small or freshly loaded table cannot fall back to an exact sort.
INDEX_SCAN_SETTINGS = {
    "plan_cache_mode": "force_custom_plan",
    "enable_seqscan": "off",
    "enable_bitmapscan": "off",
}


EXACT_SCAN_SETTINGS = {"plan_cache_mode": "force_custom_plan", "enable_indexscan": "off"}


def set_local(conn: sa.Connection, settings: dict[str, str]) -> None:
    for name, value in settings.items():
        conn.execute(query("db/set_local_setting"), {"name": name, "value": value})


# pgvector's default of 40 finds ~0.88 of the true top 10 on clustered vectors with spread, 100 finds ~0.99 (and
# `make bench` prints what it costs in latency).
DEFAULT_EF_SEARCH = 100


def ef_search_for(k: int, ef_search: int | None = None) -> str:
    """hnsw.ef_search for a top-k search: at least the candidates the re-rank needs."""
    return str(min(MAX_CANDIDATES, max(ef_search or DEFAULT_EF_SEARCH, candidates_for(k))))


def _nearest_in_own_transaction(
    conn: sa.Connection,
    model: str,
    dimensions: int,
    vector: Any,
    k: int,
    *,
    exact: bool = False,
    ef_search: int | None = None,
) -> list[tuple[int, float]]:
    plan = index_plan(model, dimensions)
    # The planner settings are transaction-local: they end with this transaction.
    with conn.begin():
        if exact:
            set_local(conn, EXACT_SCAN_SETTINGS)
        else:
            set_local(conn, {**INDEX_SCAN_SETTINGS, "hnsw.ef_search": ef_search_for(k, ef_search)})
        rows = execute_composed(
            conn,
            composed("hnsw/nearest_embeddings", **ranking_params(plan, exact)),
            {
                "model": model,
                "query": np.asarray(vector, dtype=np.float32),
                "k": k,
                "candidates": k if exact else candidates_for(k),
            },
        ).all()
    return [(r.chunk_id, float(r.distance)) for r in rows]


def nearest(
    engine: sa.Engine,
    model: str,
    dimensions: int,
    vector: Any,
    k: int,
    *,
    exact: bool = False,
    ef_search: int | None = None,
) -> list[tuple[int, float]]:
    """(chunk id, cosine distance) of the k nearest vectors of `model`: candidates through its halfvec HNSW
    index re-ranked by exact distance, or by a full scan when `exact`. Runs in a transaction of its own, so that its settings end with it."""
    with engine.connect() as conn:
        return _nearest_in_own_transaction(
            conn, model, dimensions, vector, k, exact=exact, ef_search=ef_search
        )


def measure_recall(
    engine: sa.Engine, model: str, dimensions: int, sample: int = 50, k: int = 10
) -> RecallResult:
    """Recall@k of the model's HNSW index against exact search, querying with sampled stored vectors
    (no API call): the index must find what a full scan finds. One transaction per query. A model without
    a finished index is searched exactly: recall 1 over no query."""
    with engine.connect() as conn:
        with conn.begin():
            if not has_valid_index(conn, model, dimensions):
                return RecallResult(model, 1.0, 0, k, via_index=False)
            samples = conn.execute(query("hnsw/sample_chunk_embeddings"), {"model": model, "n": sample}).all()
        recalls = []
        for _chunk_id, vector in samples:
            vec = np.asarray(vector.to_numpy() if hasattr(vector, "to_numpy") else vector, dtype=np.float32)
            approx = _nearest_in_own_transaction(conn, model, dimensions, vec, k)
            exact = _nearest_in_own_transaction(conn, model, dimensions, vec, k, exact=True)
            # Both rankings are by exact distance on the full vectors (the index's candidates are re-ranked).
            recalls.append(recall_at_k(approx, exact, k))
    return RecallResult(model, float(np.mean(recalls)) if recalls else 1.0, len(recalls), k)
