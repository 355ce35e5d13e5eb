"""Per-model vector indexes in the database: build after a bulk load (of the configured kind, only above a
row count; a kind switch builds the new index beside the old one, then drops the old), drop, nearest-neighbour
queries (through whichever index is built, with an exact re-rank, or exact), and recall of the index against
exact search."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from psycopg import sql

from pipelines.lib.vector_index import (
    AUTO_INDEX_KIND,
    DEFAULT_BUILD_WORKERS,
    DEFAULT_HNSW_MIN_ROWS,
    DEFAULT_INDEX_KIND,
    INDEX_KINDS,
    MAX_CANDIDATES,
    IndexConfigError,
    IndexPlan,
    candidates_for,
    exact_key_sql,
    hnsw_build_memory_kb,
    index_key_sql,
    index_plan,
    ivfflat_build_bytes,
    ivfflat_lists,
    ivfflat_probes,
    query_key_sql,
    quote_ident,
    recall_at_k,
    resolve_index_kind,
    should_build_index,
    validate_build_workers,
    validate_pg_memory,
)
from pipelines.locks import index_lock_key, session_lock
from pipelines.sql import composed, execute_composed, query

# The most memory an index build may use: each build asks for what it needs (see hnsw_build_memory_kb), up to
# this. 2 GB holds the binary-quantized HNSW graph of ~900,000 vectors, the halfvec one of ~400,000 1,536-d
# vectors; a build that outgrows its memory slows down sharply.
DEFAULT_MAINTENANCE_WORK_MEM = "2GB"
__all__ = [
    "DEFAULT_BUILD_WORKERS",
    "DEFAULT_HNSW_MIN_ROWS",
    "DEFAULT_INDEX_KIND",
    "DEFAULT_MAINTENANCE_WORK_MEM",
]


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


@dataclass(frozen=True)
class BuiltIndex:
    """A finished index of a model that searches go through, and the settings its scan needs."""

    plan: IndexPlan
    lists: int | None = None  # IVFFlat's, read from the index

    def scan_settings(self, k: int, ef_search: int | None = None) -> dict[str, str]:
        if self.plan.spec.method == "ivfflat":
            return {**INDEX_SCAN_SETTINGS, "ivfflat.probes": str(ivfflat_probes(self.lists or 1))}
        return {**INDEX_SCAN_SETTINGS, "hnsw.ef_search": ef_search_for(k, ef_search, self.plan.kind)}

    def candidates(self, k: int) -> int:
        return candidates_for(k, self.plan.kind)


def _model_indexes(conn: sa.Connection, names: Sequence[str]) -> dict[str, Any]:
    """{index name: row (valid, options)} of those of `names` that exist."""
    rows = conn.execute(query("hnsw/select_model_indexes"), {"index_names": list(names)}).all()
    return {r.index_name: r for r in rows}


def built_index(conn: sa.Connection, model: str, dimensions: int) -> BuiltIndex | None:
    """The model's finished index, whatever its kind (during a kind switch the old one until the new one is
    valid, then the new one), or None: search is then exact."""
    plans = [index_plan(model, dimensions, kind) for kind in INDEX_KINDS]
    found = _model_indexes(conn, [p.index_name for p in plans if p.indexable])
    for plan in plans:
        row = found.get(plan.index_name)
        if row is not None and row.valid:
            options = dict(o.split("=", 1) for o in (row.options or []))
            return BuiltIndex(plan, int(options["lists"]) if "lists" in options else None)
    return None


def ensure_hnsw_index(
    engine: sa.Engine,
    model: str,
    dimensions: int,
    maintenance_work_mem: str,
    log: Callable[[str], None] = lambda _m: None,
    *,
    min_rows: int = DEFAULT_HNSW_MIN_ROWS,
    workers: int = DEFAULT_BUILD_WORKERS,
    kind: str = DEFAULT_INDEX_KIND,
) -> IndexResult:
    """Create the model's index of `kind` (VECTOR_INDEX_KIND) unless a valid one exists or the model has fewer
    than `min_rows` vectors (search stays exact until then; a later run builds it once the model has grown).
    Once it is valid, the model's indexes of other kinds (a kind switch) are dropped: readers use the old one
    until the new one is finished, and never see an empty result in between.

    Built CONCURRENTLY on an autocommit connection of its own so that the nightly writes of the other
    models never wait for it, with up to `workers` parallel maintenance workers. The caller must not hold an
    open transaction on the table meanwhile: a concurrent build waits for every older snapshot, its caller's
    included.
    """
    rows: int | None = None  # counted here for `auto`, else only when a build is due
    if kind == AUTO_INDEX_KIND:
        kind, rows = _auto_kind(engine, model, dimensions, maintenance_work_mem)
        log(f"{model}: VECTOR_INDEX_KIND=auto means {kind} at its {rows:,} vectors")
    plan = index_plan(model, dimensions, kind)
    if not plan.indexable:
        return IndexResult(
            plan.index_name, False, 0.0, f"{dimensions} dimensions exceed {kind}'s limit: exact search only"
        )
    validate_pg_memory(maintenance_work_mem)
    validate_build_workers(workers)
    with (
        engine.connect().execution_options(isolation_level="AUTOCOMMIT") as ddl,
        session_lock(ddl, index_lock_key(plan.index_name)),
    ):
        row = _model_indexes(ddl, [plan.index_name]).get(plan.index_name)
        if row is not None and row.valid:
            _drop_siblings(ddl, plan, log)
            return IndexResult(plan.index_name, False, 0.0, "exists")
        if row is not None:
            log(f"dropping the unfinished index {plan.index_name} left by an interrupted build")
            execute_composed(ddl, _drop_index_sql(plan.index_name))
        if rows is None:
            rows = ddl.execute(query("hnsw/count_model_embeddings"), {"model": model}).scalar_one()
        if not should_build_index(plan, rows, min_rows):
            log(f"{model}: {rows} vectors, fewer than HNSW_MIN_ROWS={min_rows}: no index, search is exact")
            return IndexResult(
                plan.index_name, False, 0.0, f"{rows} vectors < HNSW_MIN_ROWS {min_rows}: exact search"
            )
        mem_kb = hnsw_build_memory_kb(plan, rows, maintenance_work_mem)
        _refuse_an_ivfflat_build_that_cannot_fit(plan, rows, mem_kb)
        ddl.execute(
            query("hnsw/set_build_settings"),
            {"maintenance_work_mem": f"{mem_kb}kB", "workers": str(workers)},
        )
        started = time.perf_counter()
        try:
            execute_composed(ddl, create_index_sql(plan, rows))
        finally:
            ddl.execute(query("hnsw/reset_build_settings"))
        seconds = time.perf_counter() - started
        # Fresh statistics after a bulk load, so the planner prices the new index against real row counts.
        ddl.execute(query("hnsw/analyze_chunk_embeddings"))
        _drop_siblings(ddl, plan, log)
        log(
            f"built {kind} index {plan.index_name} for {model} ({rows} vectors, {mem_kb // 1024} MB,"
            f" {workers} workers) in {seconds:.1f}s"
        )
        return IndexResult(
            plan.index_name, True, seconds, f"{kind}, built over {rows} vectors with {mem_kb // 1024} MB"
        )


def _refuse_an_ivfflat_build_that_cannot_fit(plan: IndexPlan, rows: int, mem_kb: int) -> None:
    """pgvector refuses an IVFFlat build whose sample does not fit in maintenance_work_mem; say which setting."""
    if plan.spec.method != "ivfflat":
        return
    # 5 % over the estimate: at a million vectors pgvector asked for 358 MB where it counts 345.
    need_mb = -(-ivfflat_build_bytes(plan, rows) * 21 // 20 // 2**20)
    if need_mb > mem_kb // 1024:
        raise IndexConfigError(
            f"the IVFFlat index of {plan.model} over {rows:,} vectors needs about {need_mb:,} MB to build,"
            f" more than HNSW_MAINTENANCE_WORK_MEM allows ({mem_kb // 1024:,} MB): raise it to at least"
            f" {-(-need_mb * 5 // 4 // 1024)}GB"
        )


def _auto_kind(engine: sa.Engine, model: str, dimensions: int, maintenance_work_mem: str) -> tuple[str, int]:
    """What `auto` means for the model now, and its vector count: by that count against the build's memory
    ceiling, and the kind of its finished index (resolve_index_kind)."""
    with engine.connect() as conn:
        rows = conn.execute(query("hnsw/count_model_embeddings"), {"model": model}).scalar_one()
        current = built_index(conn, model, dimensions)
    kind = resolve_index_kind(
        AUTO_INDEX_KIND, dimensions, rows, maintenance_work_mem, current.plan.kind if current else None
    )
    return kind, rows


def _drop_siblings(ddl: sa.Connection, plan: IndexPlan, log: Callable[[str], None]) -> None:
    """The model's indexes of other kinds (a kind switch) or of an earlier release, once `plan`'s is valid:
    searches no longer use them and each write would keep paying for them. Dropped concurrently: a search
    already running through one finishes first."""
    for name in _model_indexes(ddl, plan.sibling_index_names):
        log(f"dropping {name}, an index of {plan.model} that its valid {plan.kind} index replaces")
        execute_composed(ddl, _drop_index_sql(name))


def has_valid_index(conn: sa.Connection, model: str, dimensions: int) -> bool:
    """Whether the model has a finished index of any kind (a concurrent build is not yet valid)."""
    return built_index(conn, model, dimensions) is not None


def _index_name(name: str) -> sql.Identifier:
    # Validated although index_plan derives it: the name reaches DDL.
    quote_ident(name)
    return sql.Identifier(name)


def nearest_sql(plan: IndexPlan, *, exact: bool) -> sql.Composed:
    """hnsw/nearest_embeddings for `plan`: candidates through its index's expression, re-ranked exactly; or
    exact throughout."""
    stored, param = sql.Identifier("e", "embedding"), sql.Placeholder("query")
    full = sql.SQL("CAST({} AS {})").format(
        param, sql.SQL("{}({})").format(sql.Identifier("vector"), sql.Literal(plan.dimensions))
    )
    return composed(
        "hnsw/nearest_embeddings",
        exact_key=exact_key_sql(plan, sql.Identifier("c", "embedding")),
        exact_type=sql.SQL("{}({})").format(sql.Identifier("vector"), sql.Literal(plan.dimensions)),
        index_key=exact_key_sql(plan, stored) if exact else index_key_sql(plan, stored),
        operator=sql.SQL("<=>" if exact else plan.spec.operator),
        query_key=full if exact else query_key_sql(plan, param),
    )


def create_index_sql(plan: IndexPlan, rows: int) -> sql.Composed:
    """The CREATE INDEX CONCURRENTLY statement of `plan` over `rows` vectors (IVFFlat sizes its lists by them)."""
    options = (
        sql.SQL("WITH (lists = {})").format(sql.Literal(ivfflat_lists(rows)))
        if plan.spec.method == "ivfflat"
        else sql.SQL("")
    )
    return composed(
        "hnsw/create_vector_index",
        index_name=_index_name(plan.index_name),
        method=sql.Identifier(plan.spec.method),
        index_key=index_key_sql(plan, sql.Identifier("embedding")),
        opclass=sql.Identifier(plan.opclass),
        options=options,
        model=sql.Literal(plan.model),
    )


def _drop_index_sql(name: str) -> sql.Composed:
    return composed("hnsw/drop_index_concurrently", index_name=_index_name(name))


def drop_hnsw_index(engine: sa.Engine, model: str, dimensions: int) -> None:
    """Every index of the model, whatever its kind; dropped CONCURRENTLY on an autocommit connection of its
    own, so readers of other models never wait."""
    plan = index_plan(model, dimensions)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as ddl:
        for name in (plan.index_name, *plan.sibling_index_names):
            execute_composed(ddl, _drop_index_sql(name))


# Transaction-local settings that make a nearest-neighbour query go through the model's index: a custom
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


def ef_search_for(k: int, ef_search: int | None, kind: str) -> str:
    """hnsw.ef_search for a top-k search: at least the candidates the re-rank needs."""
    return str(min(MAX_CANDIDATES, max(ef_search or DEFAULT_EF_SEARCH, candidates_for(k, kind))))


def vector_param(vector: Any) -> Any:
    """A query vector as the driver binds it: float32 (numpy imported here, not when the location loads)."""
    import numpy as np

    return np.asarray(vector, dtype=np.float32)


def nearest_in_transaction(
    conn: sa.Connection,
    model: str,
    dimensions: int,
    vector: Any,
    k: int,
    *,
    exact: bool = False,
    ef_search: int | None = None,
) -> tuple[Sequence[Any], BuiltIndex | None]:
    """The nearest rows of `model` to `vector` through its built index (or exact when it has none, or when
    `exact`), inside a transaction of its own so that the planner settings end with it; and the index used."""
    with conn.begin():
        index = None if exact else built_index(conn, model, dimensions)
        plan = index.plan if index is not None else index_plan(model, dimensions)
        set_local(conn, EXACT_SCAN_SETTINGS if index is None else index.scan_settings(k, ef_search))
        rows = execute_composed(
            conn,
            nearest_sql(plan, exact=index is None),
            {
                "model": model,
                "query": vector_param(vector),
                "k": k,
                "candidates": k if index is None else index.candidates(k),
            },
        ).all()
    return rows, index


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
    """(chunk id, cosine distance) of the k nearest vectors of `model`: candidates through its built index
    re-ranked by exact distance, or by a full scan when `exact` or while it has no index."""
    with engine.connect() as conn:
        rows, _index = nearest_in_transaction(
            conn, model, dimensions, vector, k, exact=exact, ef_search=ef_search
        )
    return [(r.chunk_id, float(r.distance)) for r in rows]


def measure_recall(
    engine: sa.Engine, model: str, dimensions: int, sample: int = 50, k: int = 10
) -> RecallResult:
    """Recall@k of the model's built index (whatever its kind) against exact search, querying with sampled
    stored vectors (no API call): the index must find what a full scan finds. One transaction per query. A
    model without a finished index is searched exactly: recall 1 over no query."""
    import numpy as np

    with engine.connect() as conn:
        with conn.begin():
            if not has_valid_index(conn, model, dimensions):
                return RecallResult(model, 1.0, 0, k, via_index=False)
            samples = conn.execute(query("hnsw/sample_chunk_embeddings"), {"model": model, "n": sample}).all()
        recalls = []
        for _chunk_id, vector in samples:
            vec = vector.to_numpy() if hasattr(vector, "to_numpy") else vector
            approx, _ = nearest_in_transaction(conn, model, dimensions, vec, k)
            exact, _ = nearest_in_transaction(conn, model, dimensions, vec, k, exact=True)
            # Both rankings are by exact distance on the full vectors (the index's candidates are re-ranked).
            recalls.append(
                recall_at_k(
                    [(r.chunk_id, float(r.distance)) for r in approx],
                    [(r.chunk_id, float(r.distance)) for r in exact],
                    k,
                )
            )
    return RecallResult(model, float(np.mean(recalls)) if recalls else 1.0, len(recalls), k)
