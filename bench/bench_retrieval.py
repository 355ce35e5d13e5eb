"""The application's read path: the seed's query pattern (top-5 nearest chunks filtered by source type) as the
application role through the retrieval contract (`retrieve_chunks`), from concurrent clients, beside the
natural exact query the same role could write without it (`active_chunk_embeddings ORDER BY ... LIMIT 5`, a
sequential scan), measured in the same run.

- latency p50/p95/p99 and queries/s of 8 closed-loop clients, unfiltered and with the source-type filter, and
  p95 at the product's 100 requests/min (paced clients);
- recall@10 against a brute-force numpy ranking, unfiltered and for filters keeping ~50 %, 10 % and 1 % of
  the chunks (document metadata) and the source-type filter;
- 8 clients querying through a blue/green switch to a second model: each asks for the active model, embeds
  with it and retrieves with that model's name; errors, and answers whose similarities are not that
  model's (mixed-model answers), are counted.

Real-shaped vectors: 1,536-d points around 500 topic centres (bench/bench_hnsw.py's generator), written
through the embedding write path, kept on disk (a memmap) for the brute force.

    python -m bench.bench_retrieval       # 10,000 chunks; BENCH_SCALE=full: 100,000
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import sqlalchemy as sa

from bench.bench_hnsw import _blocks, _load, _progress, _queries, _seed_chunks
from bench.common import register_building_model, report, throwaway_postgres
from pipelines import retrieval
from pipelines.embeddings import write_embeddings
from pipelines.hnsw import DEFAULT_MAINTENANCE_WORK_MEM, ensure_hnsw_index
from pipelines.lib.vector_index import recall_at_k
from pipelines.models import switch_active_model

FULL = os.environ.get("BENCH_SCALE") == "full"
N = 100_000 if FULL else 10_000
DIMS = 1536
MODEL_A = f"bench-read-a@{DIMS}"
MODEL_B_DIMS = 384
MODEL_B = f"bench-read-b@{MODEL_B_DIMS}"
CLIENTS = 8
# Requests at the product's 100 a minute: one minute of them by default, three at full scale.
PACED_QUERIES = 300 if FULL else 100
LOGIN = "bench_app_login"
# Which documents (100 chunks each) a filter keeps: every 2nd, 10th, 100th; every 10th is a table row.
FILTERS: dict[str, dict[str, Any]] = {
    "unfiltered": {},
    "metadata ~50 %": {"metadata": {"half": True}},
    "metadata ~10 %": {"metadata": {"tenth": True}},
    "metadata ~1 %": {"metadata": {"hundredth": True}},
    "source_type table (~10 %)": {"source_type": "table"},
}
SEED_FILTER: dict[str, Any] = {"source_type": "table"}
# One client call: (its connection, the call's number).
Work = Callable[[psycopg.Connection[Any], int], object]


def _label_documents(conn: sa.Connection) -> None:
    """Source and metadata by document rank: independent of the vectors' topics, so a filter's nearest rows
    are scattered over the graph (the hard case for a filtered index scan)."""
    conn.execute(
        sa.text(
            "UPDATE source_documents d SET"
            " source = CASE WHEN mod(r.n, 10) = 3 THEN 'table:faq' ELSE 'local' END,"
            " metadata = jsonb_build_object('half', mod(r.n, 2) = 0, 'tenth', mod(r.n, 10) = 0,"
            " 'hundredth', mod(r.n, 100) = 0)"
            " FROM (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM source_documents) r"
            " WHERE r.id = d.id"
        )
    )
    conn.commit()


def _keep_masks(conn: sa.Connection, ids: list[int]) -> dict[str, np.ndarray]:
    """Per filter, which of the chunks `ids` it keeps, read back from the database (the rows it filters)."""
    rows = conn.execute(
        sa.text(
            "SELECT c.id, d.source, d.metadata FROM document_chunks c JOIN source_documents d ON d.id = c.document_id"
        )
    ).all()
    by_id = {r.id: (r.source, r.metadata) for r in rows}
    masks = {}
    for name, f in FILTERS.items():
        meta = f.get("metadata", {})
        masks[name] = np.array(
            [
                all(by_id[i][1].get(key) == value for key, value in meta.items())
                and (f.get("source_type") != "table" or by_id[i][0].startswith("table:"))
                for i in ids
            ]
        )
    return masks


def _truth(
    store: np.ndarray, ids: list[int], queries: np.ndarray, keep: np.ndarray, k: int
) -> list[list[tuple[int, float]]]:
    """Brute-force top k by cosine among the kept rows, streamed over the memmap in blocks."""
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    best_d = np.full((len(q), 0), np.inf)
    best_i = np.zeros((len(q), 0), dtype=np.int64)
    for start in range(0, len(ids), 8192):
        rows = np.flatnonzero(keep[start : start + 8192]) + start
        if not rows.size:
            continue
        block = np.asarray(store[rows], dtype=np.float32)
        d = 1.0 - (q @ (block / np.linalg.norm(block, axis=1, keepdims=True)).T).astype(np.float64)
        best_d = np.concatenate([best_d, d], axis=1)
        best_i = np.concatenate([best_i, np.broadcast_to(rows, d.shape)], axis=1)
        order = np.argsort(best_d, axis=1, kind="stable")[:, :k]
        best_d, best_i = np.take_along_axis(best_d, order, 1), np.take_along_axis(best_i, order, 1)
    return [
        [(ids[i], float(d)) for i, d in zip(ri, rd, strict=True)]
        for ri, rd in zip(best_i, best_d, strict=True)
    ]


def _app_url(engine: sa.Engine) -> str:
    """A login role in the application's group role (README "Security"), and its psycopg URL."""
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE ROLE {LOGIN} LOGIN PASSWORD 'bench' IN ROLE rag_app")
    url = engine.url.set(drivername="postgresql", username=LOGIN, password="bench")
    return url.render_as_string(hide_password=False)


def _percentiles(latencies: list[float]) -> tuple[float, float, float]:
    p50, p95, p99 = np.percentile(np.asarray(latencies) * 1000, [50, 95, 99])
    return float(p50), float(p95), float(p99)


def _clients(
    url: str, work: Work, n_queries: int, pace_s: float = 0.0, first_calls: list[float] | None = None
) -> tuple[list[float], float, list[str]]:
    """CLIENTS threads, each on its own connection as the application's login, share `n_queries` calls of
    `work(conn, i)`; each call waits until `pace_s` after the client's previous one started. Returns the
    latencies, the wall time and the errors.

    Each connection first makes one call that is not counted, as a pooled application's connections have
    (the first call on a new session loads pgvector and compiles the contract's functions: ~10 ms more);
    its time goes to `first_calls` when given."""
    counter = iter(range(n_queries))
    lock = threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []

    def client(n: int) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            started = time.perf_counter()
            try:
                work(conn, n)
            except Exception as exc:  # counted like the timed calls' errors
                with lock:
                    errors.append(f"first call: {type(exc).__name__}: {exc}")
            if first_calls is not None:
                with lock:
                    first_calls.append(time.perf_counter() - started)
            # Paced clients start spread over one period, so that their requests arrive evenly.
            time.sleep(pace_s * n / CLIENTS)
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                started = time.perf_counter()
                try:
                    work(conn, i)
                except Exception as exc:  # counted and shown: the run goes on
                    with lock:
                        errors.append(f"{type(exc).__name__}: {exc}")
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
                if pace_s:
                    time.sleep(max(0.0, pace_s - elapsed))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, time.perf_counter() - started, errors


def _exact_statement(source_type: str | None) -> str:
    """What the application role can write without the contract: a full scan of the active model's vectors."""
    where = " WHERE starts_with(d.source, 'table:')" if source_type == "table" else ""
    return (
        f"SELECT e.chunk_id, 1 - (e.embedding::vector({DIMS}) <=> CAST(%(q)s AS vector({DIMS}))) AS similarity"
        " FROM active_chunk_embeddings e JOIN document_chunks c ON c.id = e.chunk_id"
        f" JOIN source_documents d ON d.id = c.document_id{where}"
        f" ORDER BY e.embedding::vector({DIMS}) <=> CAST(%(q)s AS vector({DIMS})) LIMIT 5"
    )


def _vector_text(v: np.ndarray) -> str:
    return "[" + ",".join(map(repr, v.astype(np.float32).tolist())) + "]"


def _contract(queries: np.ndarray, filters: dict[str, Any]) -> Work:
    """The i-th call: query i (round robin), top 5 through retrieve_chunks."""

    def work(conn: psycopg.Connection[Any], i: int) -> object:
        return retrieval.search(conn, queries[i % len(queries)], 5, model=MODEL_A, **filters)

    return work


def _exact(statement: str, texts: list[str]) -> Work:
    def work(conn: psycopg.Connection[Any], i: int) -> object:
        return conn.execute(statement, {"q": texts[i % len(texts)]}).fetchall()

    return work


def _latency(url: str, queries: np.ndarray, exact_queries: int) -> None:
    texts = [_vector_text(q) for q in queries]
    for label, f in (("unfiltered", {}), ("source_type table", SEED_FILTER)):
        first_calls: list[float] = []
        lat, wall, errors = _clients(url, _contract(queries, f), 400, first_calls=first_calls)
        statement = _exact_statement(f.get("source_type"))
        exact_lat, exact_wall, exact_errors = _clients(url, _exact(statement, texts), exact_queries)
        p50, p95, p99 = _percentiles(lat)
        e50, e95, e99 = _percentiles(exact_lat)
        print(
            f"   {label}, {CLIENTS} clients, top-5: contract p50/p95/p99 {p50:.1f}/{p95:.1f}/{p99:.1f} ms,"
            f" {len(lat) / wall:.0f} q/s ({len(errors)} errors); exact scan {e50:.0f}/{e95:.0f}/{e99:.0f} ms,"
            f" {len(exact_lat) / exact_wall:.1f} q/s ({len(exact_errors)} errors); the first call on each of the"
            f" {CLIENTS} new connections (not counted above) {1000 * min(first_calls):.0f}-{1000 * max(first_calls):.0f} ms"
        )
        report(f"read p95 {N:,} {label} 8 clients", p95, "ms", e95, "exact scan", e95 / p95, "report")
        # The product's target load: 100 requests/min, spread over the clients.
        lat, _wall, errors = _clients(url, _contract(queries, f), PACED_QUERIES, pace_s=60.0 / 100 * CLIENTS)
        p50, p95, p99 = _percentiles(lat)
        goal = 10.0 if not f else 50.0
        report(
            f"read p95 {N:,} {label} 100 req/min", p95, "ms", goal, "target", goal / p95, f"p95 < {goal:g} ms"
        )
        print(f"   (100 req/min: p50/p99 {p50:.1f}/{p99:.1f} ms, {len(errors)} errors)")


def _recall(
    url: str, store: np.ndarray, ids: list[int], masks: dict[str, np.ndarray], queries: np.ndarray
) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for name, f in FILTERS.items():
            truth = _truth(store, ids, queries, masks[name], 10)
            recalls, lat = [], []
            for q, t in zip(queries, truth, strict=True):
                started = time.perf_counter()
                got = retrieval.search(conn, q, 10, model=MODEL_A, **f)
                lat.append(time.perf_counter() - started)
                recalls.append(recall_at_k([(h.chunk_id, 1 - h.similarity) for h in got], t, 10))
            kept = float(masks[name].mean())
            report(
                f"recall@10 {N:,} {name} ({kept:.1%} kept)",
                float(np.mean(recalls)),
                "",
                _percentiles(lat)[1],
                "its p95 ms, 1 client",
                float(np.min(recalls)),
                ">= 0.95",
            )


def _load_model_b(conn: sa.Connection, ids: list[int], store_b: np.ndarray) -> None:
    """The second model: every chunk's vector projected to 384 dimensions (another model's geometry)."""
    register_building_model(conn, MODEL_B, MODEL_B_DIMS)
    projection = np.random.default_rng(5).standard_normal((DIMS, MODEL_B_DIMS)).astype(np.float32)
    shas: dict[int, str] = dict(conn.execute(sa.text("SELECT id, content_sha256 FROM document_chunks")).all())
    offset = 0
    for block in _blocks(len(ids), uniform=False):
        part = ids[offset : offset + len(block)]
        vectors = block @ projection
        store_b[offset : offset + len(block)] = vectors
        write_embeddings(conn, MODEL_B, part, [shas[c] for c in part], [3] * len(part), vectors)
        conn.commit()
        offset += len(block)


def _through_a_switch(engine: sa.Engine, url: str, stores: dict[str, np.ndarray], ids: list[int]) -> None:
    """8 clients ask for the active model, embed with it and retrieve by its name while the switch commits."""
    position = {cid: n for n, cid in enumerate(ids)}
    projection = np.random.default_rng(5).standard_normal((DIMS, MODEL_B_DIMS)).astype(np.float32)
    base = _queries(uniform=False)
    embedded = {MODEL_A: base, MODEL_B: base @ projection}
    answered: dict[str, int] = {MODEL_A: 0, MODEL_B: 0}
    mixed: list[str] = []
    lock = threading.Lock()
    # When the switch committed, and how many queries for A started after it (A retired: its grace period).
    switched = [float("inf")]
    retired_answers = [0]

    def work(conn: psycopg.Connection[Any], i: int) -> None:
        model = retrieval.active_model(conn)
        assert model is not None
        q = embedded[model.name][i % len(base)]
        started = time.perf_counter()
        hits = retrieval.search(conn, q, 5, model=model.name, **SEED_FILTER)
        store = stores[model.name]
        vectors = np.asarray(store[[position[h.chunk_id] for h in hits]], dtype=np.float64)
        want = vectors @ q / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(q))
        with lock:
            answered[model.name] += 1
            retired_answers[0] += model.name == MODEL_A and started > switched[0]
            if len(hits) != 5 or not np.allclose([h.similarity for h in hits], want, atol=1e-4):
                mixed.append(f"query {i} answered for {model.name}: {[h.similarity for h in hits]} vs {want}")

    def switch() -> None:
        switch_active_model(engine, MODEL_B)
        switched[0] = time.perf_counter()

    switch_at = threading.Timer(2.0, switch)
    switch_at.start()
    lat, wall, errors = _clients(url, work, 1200)
    switch_at.join()
    p50, p95, p99 = _percentiles(lat)
    print(
        f"   through the switch {MODEL_A} -> {MODEL_B}: {len(lat)} queries in {wall:.1f} s"
        f" ({answered[MODEL_A]} answered by A, {retired_answers[0]} of them asked after A was retired;"
        f" {answered[MODEL_B]} by B), p50/p95/p99 {p50:.1f}/{p95:.1f}/{p99:.1f} ms"
    )
    for line in (errors + mixed)[:5]:
        print(f"     {line[:300]}")
    report(f"switch {N:,}: errors, 8 clients", len(errors), "", 0, "goal", 0, "0")
    report(f"switch {N:,}: mixed-model answers", len(mixed), "", 0, "goal", 0, "0")
    if not answered[MODEL_B] or not answered[MODEL_A]:
        print("   note: the switch did not fall inside the run; the figures above cover one model only")


@contextlib.contextmanager
def _stores(n: int) -> Iterator[dict[str, np.ndarray]]:
    with tempfile.TemporaryDirectory(prefix="ragetl-read-") as tmp:
        yield {
            MODEL_A: np.lib.format.open_memmap(Path(tmp) / "a.npy", "w+", np.float32, (n, DIMS)),
            MODEL_B: np.lib.format.open_memmap(Path(tmp) / "b.npy", "w+", np.float32, (n, MODEL_B_DIMS)),
        }


def run() -> None:
    with throwaway_postgres() as postgres, _stores(N) as stores:
        engine = postgres.engine
        started = time.perf_counter()
        with postgres.connect() as conn:
            ids = _seed_chunks(conn, N)
            _label_documents(conn)
            register_building_model(conn, MODEL_A, DIMS)
            conn.execute(
                sa.text("UPDATE embedding_models SET status = 'active' WHERE name = :m"), {"m": MODEL_A}
            )
            conn.commit()
            _load(conn, MODEL_A, ids, 0, N, uniform=False)
            masks = _keep_masks(conn, ids)
        offset = 0
        for block in _blocks(N, uniform=False):
            stores[MODEL_A][offset : offset + len(block)] = block
            offset += len(block)
        build = ensure_hnsw_index(engine, MODEL_A, DIMS, DEFAULT_MAINTENANCE_WORK_MEM, min_rows=0)
        _progress(
            f"{N:,} chunks x {DIMS}d loaded and indexed ({time.perf_counter() - started:.0f} s, build {build.seconds:.0f} s)"
        )
        url = _app_url(engine)
        queries = _queries(uniform=False)
        _latency(url, queries, exact_queries=16 if FULL else 40)
        _recall(url, stores[MODEL_A], ids, masks, queries)
        with postgres.connect() as conn:
            _load_model_b(conn, ids, stores[MODEL_B])
        ensure_hnsw_index(engine, MODEL_B, MODEL_B_DIMS, DEFAULT_MAINTENANCE_WORK_MEM, min_rows=0)
        _progress(f"second model {MODEL_B} loaded and indexed")
        _through_a_switch(engine, url, stores, ids)
