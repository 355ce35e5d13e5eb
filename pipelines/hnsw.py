"""Per-model HNSW indexes in the database: build after a bulk load, drop, nearest-neighbour queries
(through the index or exact), and recall of the index against exact search."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlalchemy as sa

from pipelines.lib.vector_index import (
    IndexPlan,
    index_plan,
    quote_ident,
    quote_literal,
    recall_at_k,
    validate_pg_memory,
)
from pipelines.sql import load_sql, query

# The memory an HNSW build may use; a build that outgrows it slows down sharply.
DEFAULT_MAINTENANCE_WORK_MEM = "256MB"


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


def _index_lock_key(index_name: str) -> int:
    return int.from_bytes(hashlib.sha256(index_name.encode()).digest()[:8], "big", signed=True)


def ensure_hnsw_index(
    engine: sa.Engine,
    model: str,
    dimensions: int,
    maintenance_work_mem: str,
    log: Callable[[str], None] = lambda _m: None,
) -> IndexResult:
    """Create the model's HNSW index unless a valid one exists.

    Built CONCURRENTLY on an autocommit connection of its own so that the nightly writes of the other
    models never wait for it. The caller must not hold an open transaction on the table meanwhile: a
    concurrent build waits for every older snapshot, its caller's included.
    """
    plan = index_plan(model, dimensions)
    if not plan.indexable:
        return IndexResult(
            plan.index_name, False, 0.0, f"{dimensions} dimensions exceed HNSW's limit: exact search only"
        )
    mem = validate_pg_memory(maintenance_work_mem)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as ddl:
        key = _index_lock_key(plan.index_name)
        ddl.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": key})
        try:
            valid = ddl.execute(
                query("select_index_validity"), {"index_name": plan.index_name}
            ).scalar_one_or_none()
            if valid:
                return IndexResult(plan.index_name, False, 0.0, "exists")
            if valid is False:
                log(f"dropping the unfinished index {plan.index_name} left by an interrupted build")
                ddl.exec_driver_sql(
                    load_sql("drop_index_concurrently").format(index_name=quote_ident(plan.index_name))
                )
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


def drop_hnsw_index(engine: sa.Engine, model: str, dimensions: int) -> None:
    """Dropped CONCURRENTLY on an autocommit connection of its own, so readers of other models never wait."""
    plan = index_plan(model, dimensions)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as ddl:
        ddl.exec_driver_sql(
            load_sql("drop_index_concurrently").format(index_name=quote_ident(plan.index_name))
        )


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
        conn.execute(sa.text("SELECT set_config(:n, :v, true)"), {"n": name, "v": value})


def ef_search_for(k: int, ef_search: int | None = None) -> str:
    return str(min(1000, max(ef_search or 40, k)))


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
        rows = conn.execute(
            sa.text(load_sql("nearest_embeddings").format(vector_type=plan.vector_type)),
            {"model": model, "query": np.asarray(vector, dtype=np.float32), "k": k},
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
    """(chunk id, cosine distance) of the k nearest vectors of `model`: through its HNSW index, or by a full
    scan when `exact`. Runs in a transaction of its own, so that its settings end with it."""
    with engine.connect() as conn:
        return _nearest_in_own_transaction(
            conn, model, dimensions, vector, k, exact=exact, ef_search=ef_search
        )


def measure_recall(
    engine: sa.Engine, model: str, dimensions: int, sample: int = 50, k: int = 10
) -> RecallResult:
    """Recall@k of the model's HNSW index against exact search, querying with sampled stored vectors
    (no API call): the index must find what a full scan finds. One transaction per query."""
    with engine.connect() as conn:
        with conn.begin():
            samples = conn.execute(query("sample_chunk_embeddings"), {"model": model, "n": sample}).all()
        recalls = []
        for _chunk_id, vector in samples:
            vec = np.asarray(vector.to_numpy() if hasattr(vector, "to_numpy") else vector, dtype=np.float32)
            approx = _nearest_in_own_transaction(conn, model, dimensions, vec, k)
            exact = _nearest_in_own_transaction(conn, model, dimensions, vec, k, exact=True)
            # halfvec distances are rounded; ties must be judged at that precision.
            tolerance = 1e-6 if dimensions <= 2000 else 1e-3
            recalls.append(recall_at_k(approx, exact, k, tolerance))
    return RecallResult(model, float(np.mean(recalls)) if recalls else 1.0, len(recalls), k)
