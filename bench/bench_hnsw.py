"""HNSW choice: the index over halfvec casts (parallel build, exact re-rank on the full vectors) against the former
full-precision `vector` index, and where an index starts to pay for itself (exact scan vs index, by row count).

Real-shaped vectors: 1,536-d points around topic centres, generated block by block from fixed seeds and written
through the embedding write path, never all held at once; recall@10 is against a brute-force numpy scan of the
same blocks. Plus recall on uniformly random vectors, HNSW's worst case.

    python -m bench.bench_hnsw            # 10,000 vectors; BENCH_SCALE=full adds 50,000 and 100,000
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import sqlalchemy as sa
from psycopg import sql

from bench.common import register_building_model, report, throwaway_postgres
from pipelines.embeddings import write_embeddings
from pipelines.hnsw import (
    DEFAULT_BUILD_WORKERS,
    DEFAULT_EF_SEARCH,
    DEFAULT_MAINTENANCE_WORK_MEM,
    INDEX_SCAN_SETTINGS,
    drop_hnsw_index,
    ensure_hnsw_index,
    nearest,
    set_local,
)
from pipelines.lib.vector_index import (
    DEFAULT_HNSW_MIN_ROWS,
    hnsw_build_memory_kb,
    index_plan,
    recall_at_k,
)
from pipelines.sql import composed, execute_composed
from resources.postgres import PostgresResource

FULL = os.environ.get("BENCH_SCALE") == "full"
DIMS = 1536
MODEL = f"bench-clustered@{DIMS}"
UNIFORM = f"bench-uniform@{DIMS}"
BLOCK = 2048
QUERIES = 30
CROSSOVER_SIZES = [1_000, 2_000, 5_000, 10_000, 20_000] + ([50_000, 100_000] if FULL else [])
COMPARE_SIZES = {10_000: 2} | ({100_000: 1} if FULL else {})  # size -> alternated repetitions of each build
UNIFORM_N = 10_000
WIDE_EF = 400
TOPICS = 500
LEGACY_EF_SEARCH = 40  # what the former index searched with
# This bench weighs halfvec HNSW against the former `vector` one; bench_index_kinds weighs the kinds.
KIND = "hnsw_halfvec"


def _progress(message: str) -> None:
    print(f"   [{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _blocks(n: int, *, uniform: bool, seed: int = 7) -> Iterator[np.ndarray]:
    """The first n vectors, block by block; block b is the same whatever n is."""
    centres = np.random.default_rng(seed).standard_normal((TOPICS, DIMS)).astype(np.float32)
    for b, start in enumerate(range(0, n, BLOCK)):
        # Whole blocks drawn, then cut: the draws do not depend on n.
        rng = np.random.default_rng((seed, b))
        size = min(BLOCK, n - start)
        topics = rng.integers(0, TOPICS, BLOCK)[:size]
        noise = rng.standard_normal((BLOCK, DIMS)).astype(np.float32)[:size]
        yield noise if uniform else centres[topics] + 0.8 * noise


def _queries(uniform: bool) -> np.ndarray:
    """Fresh points among the same topics (or uniform): not stored vectors."""
    rng = np.random.default_rng(99)
    if uniform:
        return rng.standard_normal((QUERIES, DIMS)).astype(np.float32)
    centres = np.random.default_rng(7).standard_normal((TOPICS, DIMS)).astype(np.float32)
    return centres[rng.integers(0, TOPICS, QUERIES)] + 0.8 * rng.standard_normal((QUERIES, DIMS)).astype(
        np.float32
    )


def _truth(
    ids: list[int], n: int, queries: np.ndarray, uniform: bool, k: int = 10
) -> list[list[tuple[int, float]]]:
    return streamed_top_k(ids, _blocks(n, uniform=uniform), queries, k)


def streamed_top_k(
    ids: list[int], blocks: Iterable[np.ndarray], queries: np.ndarray, k: int = 10
) -> list[list[tuple[int, float]]]:
    """Brute-force top k by cosine in numpy, streamed over the blocks (memory stays one block)."""
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    best_d = np.full((len(q), 0), np.inf, dtype=np.float64)
    best_i = np.zeros((len(q), 0), dtype=np.int64)
    offset = 0
    for block in blocks:
        unit = block / np.linalg.norm(block, axis=1, keepdims=True)
        d = 1.0 - (q @ unit.T).astype(np.float64)
        best_d = np.concatenate([best_d, d], axis=1)
        best_i = np.concatenate(
            [best_i, np.broadcast_to(np.arange(offset, offset + len(block)), d.shape)], axis=1
        )
        keep = np.argsort(best_d, axis=1, kind="stable")[:, :k]
        best_d, best_i = np.take_along_axis(best_d, keep, 1), np.take_along_axis(best_i, keep, 1)
        offset += len(block)
    return [
        [(ids[i], float(d)) for i, d in zip(ri, rd, strict=True)]
        for ri, rd in zip(best_i, best_d, strict=True)
    ]


def _seed_chunks(conn: sa.Connection, n: int) -> list[int]:
    """n chunks (100 per document), set-based: the chunk rows only carry the vectors here."""
    conn.execute(
        sa.text(
            "INSERT INTO source_documents (source, source_key, title, content, content_sha256)"
            " SELECT 'bench', 'd' || g, 'doc ' || g, 'x', md5(g::text) FROM generate_series(0, :docs - 1) g"
        ),
        {"docs": (n + 99) // 100},
    )
    conn.execute(
        sa.text(
            "INSERT INTO document_chunks (document_id, chunk_index, content, content_sha256, char_start, char_end,"
            " token_count) SELECT d.id, c, 'chunk ' || d.id || '-' || c,"
            " encode(sha256(convert_to('chunk ' || d.id || '-' || c, 'UTF8')), 'hex'), 0, 10, 3"
            " FROM source_documents d CROSS JOIN generate_series(0, 99) c WHERE d.source = 'bench'"
        )
    )
    conn.commit()
    return list(
        conn.execute(sa.text("SELECT id FROM document_chunks ORDER BY id LIMIT :n"), {"n": n}).scalars()
    )


def _load(conn: sa.Connection, model: str, ids: list[int], start: int, stop: int, *, uniform: bool) -> None:
    """Vectors start..stop of the model's stream onto chunks ids[start:stop], through the write path."""
    shas: dict[int, str] = dict(
        conn.execute(
            sa.text("SELECT id, content_sha256 FROM document_chunks WHERE id = ANY(:ids)"),
            {"ids": ids[start:stop]},
        ).all()
    )
    offset = 0
    for block in _blocks(stop, uniform=uniform):
        lo, hi = offset, offset + len(block)
        offset = hi
        if hi <= start:
            continue
        sel = slice(max(lo, start) - lo, len(block))
        part = ids[max(lo, start) : hi]
        write_embeddings(conn, model, part, [shas[c] for c in part], [3] * len(part), block[sel])
        conn.commit()


# The former design, for comparison: the index over `vector(d)` casts, built in one process with the memory sized
# to its full-precision graph, searched through that index alone.
def _legacy_build(engine: sa.Engine, model: str, rows: int) -> float:
    plan = index_plan(model, DIMS)
    assert plan.legacy_index_name is not None
    legacy = dataclasses.replace(plan, vector_type=f"vector({DIMS})")
    mem_kb = hnsw_build_memory_kb(legacy, rows, DEFAULT_MAINTENANCE_WORK_MEM)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as ddl:
        ddl.execute(sa.text("SELECT set_config('maintenance_work_mem', :v, false)"), {"v": f"{mem_kb}kB"})
        started = time.perf_counter()
        execute_composed(
            ddl,
            composed(
                "hnsw/create_vector_index",
                index_name=sql.Identifier(plan.legacy_index_name),
                method=sql.Identifier("hnsw"),
                index_key=sql.SQL("embedding::vector({})").format(sql.Literal(DIMS)),
                opclass=sql.Identifier("vector_cosine_ops"),
                options=sql.SQL(""),
                model=sql.Literal(model),
            ),
        )
        return time.perf_counter() - started


def _legacy_nearest(engine: sa.Engine, model: str, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
    with engine.begin() as conn:
        set_local(conn, {**INDEX_SCAN_SETTINGS, "hnsw.ef_search": str(LEGACY_EF_SEARCH)})
        rows = conn.execute(
            sa.text(
                f"SELECT chunk_id, embedding::vector({DIMS}) <=> CAST(:q AS vector({DIMS})) AS d"
                f" FROM chunk_embeddings WHERE model = :m ORDER BY embedding::vector({DIMS}) <=>"
                f" CAST(:q AS vector({DIMS})) LIMIT :k"
            ),
            {"q": vector, "m": model, "k": k},
        ).all()
    return [(r.chunk_id, float(r.d)) for r in rows]


def _index_size_mb(engine: sa.Engine, name: str) -> float:
    with engine.begin() as conn:
        return (
            conn.execute(sa.text("SELECT pg_relation_size(CAST(:n AS regclass))"), {"n": name}).scalar_one()
            / 1e6
        )


def _timed(
    search: Callable[[np.ndarray], list[tuple[int, float]]], queries: np.ndarray, truth
) -> tuple[float, float]:
    """(p95 ms, mean recall@10) over the queries."""
    lat, rec = [], []
    for q, t in zip(queries, truth, strict=True):
        started = time.perf_counter()
        got = search(q)
        lat.append(time.perf_counter() - started)
        rec.append(recall_at_k(got, t, 10))
    return float(np.percentile(lat, 95)) * 1000, float(np.mean(rec))


def _exact(engine: sa.Engine, model: str) -> Callable[[np.ndarray], list[tuple[int, float]]]:
    return lambda q: nearest(engine, model, DIMS, q, 10, exact=True)


def _compare_builds(engine: sa.Engine, n: int, reps: int, queries: np.ndarray, truth) -> float:
    """Former `vector` index vs the halfvec one, builds alternated `reps` times (medians), then search on each."""
    plan = index_plan(MODEL, DIMS, KIND)
    before_s, after_s = [], []
    for rep in range(reps):
        _progress(f"{n:,} vectors: full-precision build {rep + 1}/{reps}")
        drop_hnsw_index(engine, MODEL, DIMS)
        before_s.append(_legacy_build(engine, MODEL, n))
        before_mb = _index_size_mb(engine, plan.legacy_index_name or "")
        before_p95, before_recall = _timed(lambda q: _legacy_nearest(engine, MODEL, q, 10), queries, truth)
        drop_hnsw_index(engine, MODEL, DIMS)
        _progress(f"{n:,} vectors: halfvec build {rep + 1}/{reps}")
        after_s.append(
            ensure_hnsw_index(
                engine, MODEL, DIMS, DEFAULT_MAINTENANCE_WORK_MEM, min_rows=0, kind=KIND
            ).seconds
        )
    after_mb = _index_size_mb(engine, plan.index_name)
    after_p95, after_recall = _timed(lambda q: nearest(engine, MODEL, DIMS, q, 10), queries, truth)
    exact_p95, _ = _timed(_exact(engine, MODEL), queries, truth)
    before, after = float(np.median(before_s)), float(np.median(after_s))
    report(
        f"HNSW build {n:,} x {DIMS}d: halfvec, {DEFAULT_BUILD_WORKERS} workers",
        after,
        "s",
        before,
        "vector, serial",
        before / after,
        f"report (median of {reps})",
    )
    report(
        f"  index size {n:,}: halfvec", after_mb, "MB", before_mb, "vector", before_mb / after_mb, "report"
    )
    report(
        f"  recall@10 {n:,} vs numpy: halfvec+rerank ef {DEFAULT_EF_SEARCH}",
        after_recall,
        "",
        before_recall,
        f"vector ef {LEGACY_EF_SEARCH}",
        after_recall,
        ">= 0.95",
    )
    report(
        f"  search p95 {n:,}: halfvec+rerank",
        after_p95,
        "ms",
        before_p95,
        "vector index",
        before_p95 / after_p95,
        "report",
    )
    report(
        f"  search p95 {n:,}: halfvec+rerank",
        after_p95,
        "ms",
        exact_p95,
        "exact scan",
        exact_p95 / after_p95,
        "report",
    )
    return after


def _uniform(postgres: PostgresResource, ids: list[int]) -> None:
    """Recall on uniformly random vectors (no topics at all): at the chosen ef_search and a wider one."""
    engine = postgres.engine
    with postgres.connect() as conn:
        register_building_model(conn, UNIFORM, DIMS)
        _load(conn, UNIFORM, ids, 0, UNIFORM_N, uniform=True)
    queries = _queries(uniform=True)
    truth = _truth(ids, UNIFORM_N, queries, uniform=True)
    ensure_hnsw_index(engine, UNIFORM, DIMS, DEFAULT_MAINTENANCE_WORK_MEM, min_rows=0, kind=KIND)
    p95, recall = _timed(lambda q: nearest(engine, UNIFORM, DIMS, q, 10), queries, truth)
    wide_p95, wide = _timed(
        lambda q: nearest(engine, UNIFORM, DIMS, q, 10, ef_search=WIDE_EF), queries, truth
    )
    exact_p95, _ = _timed(_exact(engine, UNIFORM), queries, truth)
    report(
        f"uniform random {UNIFORM_N:,}: recall@10 ef {DEFAULT_EF_SEARCH}",
        recall,
        "",
        p95,
        "its p95 ms",
        recall,
        "report",
    )
    report(
        f"uniform random {UNIFORM_N:,}: recall@10 ef {WIDE_EF}",
        wide,
        "",
        wide_p95,
        "its p95 ms",
        wide,
        "report",
    )
    report(
        f"uniform random {UNIFORM_N:,}: exact scan p95",
        exact_p95,
        "ms",
        wide_p95,
        f"ef {WIDE_EF} p95",
        exact_p95 / wide_p95,
        "report",
    )
    drop_hnsw_index(engine, UNIFORM, DIMS)


def run() -> None:
    sizes = sorted(set(CROSSOVER_SIZES) | set(COMPARE_SIZES))
    with throwaway_postgres() as postgres:
        engine = postgres.engine
        with postgres.connect() as conn:
            ids = _seed_chunks(conn, max(sizes[-1], UNIFORM_N))
            register_building_model(conn, MODEL, DIMS)
        _uniform(postgres, ids)
        queries = _queries(uniform=False)
        table: list[tuple[int, float, float, float]] = []
        loaded = 0
        for n in sizes:
            drop_hnsw_index(engine, MODEL, DIMS)
            started = time.perf_counter()
            with postgres.connect() as conn:
                _load(conn, MODEL, ids, loaded, n, uniform=False)
                conn.execute(sa.text("ANALYZE chunk_embeddings"))
                conn.commit()
            loaded = n
            _progress(f"{n:,} clustered vectors loaded ({time.perf_counter() - started:.1f} s)")
            truth = _truth(ids, n, queries, uniform=False)
            build_s = None
            if n in COMPARE_SIZES:
                build_s = _compare_builds(engine, n, COMPARE_SIZES[n], queries, truth)
            if n in CROSSOVER_SIZES:
                exact_p95, _ = _timed(_exact(engine, MODEL), queries, truth)
                if build_s is None:
                    build_s = ensure_hnsw_index(
                        engine, MODEL, DIMS, DEFAULT_MAINTENANCE_WORK_MEM, min_rows=0, kind=KIND
                    ).seconds
                index_p95, recall = _timed(lambda q: nearest(engine, MODEL, DIMS, q, 10), queries, truth)
                table.append((n, exact_p95, index_p95, build_s))
                _progress(
                    f"{n:,}: exact p95 {exact_p95:.1f} ms, HNSW p95 {index_p95:.1f} ms, recall {recall:.3f}"
                )
        print(
            f"   crossover (1,536-d, {QUERIES} queries, k=10; HNSW = halfvec + exact re-rank, ef {DEFAULT_EF_SEARCH}):"
        )
        print(f"   {'vectors':>9} {'exact p95 ms':>13} {'HNSW p95 ms':>12} {'HNSW build s':>13}")
        for n, exact_p95, index_p95, build_s in table:
            print(f"   {n:>9,} {exact_p95:>13.1f} {index_p95:>12.1f} {build_s:>13.1f}")
        print(
            f"   HNSW_MIN_ROWS default {DEFAULT_HNSW_MIN_ROWS:,}: below it no index is built and search is exact"
        )
