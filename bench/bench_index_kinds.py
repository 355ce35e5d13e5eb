"""Which vector index to build, by measurement: every kind of pipelines.lib.vector_index.INDEX_KINDS over the same
clustered 1,536-d vectors, each with its build time (and per vector), size, the server's peak memory during the
build, recall@10 against a brute-force numpy scan after the exact re-rank, and the p95 latency of the
application's query (pipelines.search.search_by_vector: index candidates, exact re-rank, join to the chunks).
Ratios are against halfvec HNSW (the index below HNSW_MAINTENANCE_WORK_MEM, and the only one before `auto`)
measured in the same run.

Two shapes of clustered vectors, generated block by block from fixed seeds (never all held at once) and written
through the embedding write path:
- `corpus` (default): shaped like a chunked corpus. 1,000 topics; each document's centre lies around its topic's,
  each of its 6 chunks around the document's; queries are fresh points around stored documents. The true top 10
  of a query are its document's chunks and the nearest documents' of the same topic.
- `topics` (bench_hnsw's): points around 500 topic centres with isotropic spread and nothing finer. Within a topic
  of 2,000 points (at a million) every point is nearly as far from every other: the hardest case for
  binary quantization, whose candidates then hold the true neighbours only with many of them.

    python -m bench.bench_index_kinds [VECTORS ...] [--kinds hnsw_bq,ivfflat_halfvec,hnsw_halfvec] [--json OUT]

`make bench` runs it at 20,000 vectors; BENCH_SCALE=full at 100,000 and BENCH_SCALE=xl at 1,000,000 (35 minutes
on 2 cores, 26 of them the halfvec HNSW build).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import time
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from bench.bench_hnsw import DIMS, MODEL, _load, _queries, _seed_chunks, _truth, streamed_top_k
from bench.common import register_building_model, report, throwaway_postgres
from bench.dagster_runs import TreePeak
from pipelines import hnsw
from pipelines.embeddings import write_embeddings
from pipelines.hnsw import (
    DEFAULT_BUILD_WORKERS,
    DEFAULT_MAINTENANCE_WORK_MEM,
    drop_hnsw_index,
    ensure_hnsw_index,
)
from pipelines.lib.vector_index import INDEX_KINDS, index_plan, ivfflat_lists, ivfflat_probes, recall_at_k
from pipelines.search import search_by_vector

BASELINE = "hnsw_halfvec"  # the index every ratio is against
# IVFFlat first (the fastest build), then the baseline (the baseline every ratio needs, longest to build at a
# million), then binary quantization, which a run short of time can lose without losing a ratio.
ORDER = ["ivfflat_halfvec", "hnsw_halfvec", "hnsw_bq"]
SIZES = {"": [20_000], "full": [100_000], "xl": [1_000_000]}
# Besides each kind's own re-rank factor: what other candidate counts buy in recall and cost in latency.
FACTOR_SWEEP = {"hnsw_bq": [10, 40, 100], "ivfflat_halfvec": [10], "hnsw_halfvec": []}
# IVFFlat: what fewer or more lists probed than pgvector's √lists buy (recall) and cost (p95), as a share of the
# lists (at a million vectors, 1,000 lists: 5, 10, 20 and 64 probed against the default 32).
PROBE_SWEEP = [0.005, 0.01, 0.02, 0.064]


def _progress(message: str) -> None:
    print(f"   [{time.strftime('%H:%M:%S')}] {message}", flush=True)


CORPUS_TOPICS = 1000
DOC_CHUNKS = 6
CORPUS_BLOCK = 341 * DOC_CHUNKS  # whole documents per block
DOC_SPREAD, CHUNK_SPREAD = 0.7, 0.5
QUERIES = 30


def _corpus_centres(seed: int = 5) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((CORPUS_TOPICS, DIMS)).astype(np.float32)


def _doc_centres(block: int, centres: np.ndarray, seed: int = 5) -> np.ndarray:
    rng = np.random.default_rng((seed, block, 0))
    docs = CORPUS_BLOCK // DOC_CHUNKS
    topics = rng.integers(0, CORPUS_TOPICS, docs)
    return centres[topics] + DOC_SPREAD * rng.standard_normal((docs, DIMS)).astype(np.float32)


def corpus_blocks(n: int, seed: int = 5):
    """The first n corpus-shaped vectors, block by block; block b is the same whatever n is."""
    centres = _corpus_centres(seed)
    for b, start in enumerate(range(0, n, CORPUS_BLOCK)):
        docs = np.repeat(_doc_centres(b, centres, seed), DOC_CHUNKS, axis=0)
        noise = np.random.default_rng((seed, b, 1)).standard_normal((CORPUS_BLOCK, DIMS)).astype(np.float32)
        yield (docs + CHUNK_SPREAD * noise)[: min(CORPUS_BLOCK, n - start)]


def corpus_queries(n: int, seed: int = 5) -> np.ndarray:
    """Fresh points around stored documents (a question about a document), not stored vectors."""
    rng = np.random.default_rng(99)
    centres = _corpus_centres(seed)
    blocks = rng.integers(0, max(1, n // CORPUS_BLOCK), QUERIES)
    picks = rng.integers(0, min(n, CORPUS_BLOCK) // DOC_CHUNKS, QUERIES)
    docs = np.stack([_doc_centres(int(b), centres, seed)[p] for b, p in zip(blocks, picks, strict=True)])
    return docs + CHUNK_SPREAD * rng.standard_normal((QUERIES, DIMS)).astype(np.float32)


def corpus_truth(ids: list[int], n: int, queries: np.ndarray, k: int = 10) -> list[list[tuple[int, float]]]:
    return streamed_top_k(ids, corpus_blocks(n), queries, k)


def load_corpus(conn: sa.Connection, ids: list[int], n: int) -> None:
    shas: dict[int, str] = dict(
        conn.execute(
            sa.text("SELECT id, content_sha256 FROM document_chunks WHERE id = ANY(:ids)"), {"ids": ids[:n]}
        ).all()
    )
    offset = 0
    for block in corpus_blocks(n):
        part = ids[offset : offset + len(block)]
        write_embeddings(conn, MODEL, part, [shas[c] for c in part], [3] * len(part), block)
        conn.commit()
        offset += len(block)


def postmaster_pid(engine: sa.Engine) -> int:
    """The database server's main process (a backend's parent): its tree holds every backend and worker."""
    import psutil

    with engine.connect() as conn:
        return psutil.Process(conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()).ppid()


def _measure_kind(engine: sa.Engine, kind: str, n: int, queries: np.ndarray, truth) -> dict[str, float]:
    drop_hnsw_index(engine, MODEL, DIMS)
    _progress(f"{n:,} vectors: {kind} build started")
    with TreePeak(postmaster_pid(engine)) as peak:
        built = ensure_hnsw_index(
            engine, MODEL, DIMS, DEFAULT_MAINTENANCE_WORK_MEM, min_rows=0, kind=kind, log=_progress
        )
    assert built.created, built.note
    with engine.connect() as conn:
        size = conn.execute(
            sa.text("SELECT pg_relation_size(CAST(:n AS regclass))"),
            {"n": index_plan(MODEL, DIMS, kind).index_name},
        ).scalar_one()
    p95_ms, recall = _search(engine, kind, queries, truth, rounds=2)
    result = {
        "vectors": n,
        "build_s": built.seconds,
        "build_us_per_vector": built.seconds / n * 1e6,
        "size_mb": size / 1e6,
        "server_peak_rss_mb": peak.peak,
        "recall_at_10": recall,
        "p95_ms": p95_ms,
        "rerank_factor": INDEX_KINDS[kind].rerank_factor,
    }
    _progress(f"{n:,} vectors: {kind}: " + ", ".join(f"{k} {v:,.3f}" for k, v in result.items()))
    spec = INDEX_KINDS[kind]
    for factor in FACTOR_SWEEP[kind]:
        # Bench-only: the kind's re-rank factor replaced for a few searches, then restored.
        INDEX_KINDS[kind] = dataclasses.replace(spec, rerank_factor=factor)
        try:
            p95_f, recall_f = _search(engine, kind, queries, truth, rounds=1)
        finally:
            INDEX_KINDS[kind] = spec
        result[f"recall_at_10 x{factor}"], result[f"p95_ms x{factor}"] = recall_f, p95_f
        _progress(
            f"{n:,} vectors: {kind} with {factor * 10} candidates: recall@10 {recall_f:.3f}, p95 {p95_f:.1f} ms"
        )
    if spec.method == "ivfflat":
        result.update(_probe_sweep(engine, kind, n, queries, truth))
    return result


def _fixed_probes(probes: int, _lists: int) -> int:
    return probes


def _probe_sweep(engine: sa.Engine, kind: str, n: int, queries: np.ndarray, truth) -> dict[str, float]:
    """Bench-only: the search's probe count replaced for a few searches, then restored."""
    swept: dict[str, float] = {}
    lists = ivfflat_lists(n)
    for share in PROBE_SWEEP:
        probes = max(1, round(share * lists))
        hnsw.ivfflat_probes = functools.partial(_fixed_probes, probes)
        try:
            p95, recall = _search(engine, kind, queries, truth, rounds=1)
        finally:
            hnsw.ivfflat_probes = ivfflat_probes
        swept[f"recall_at_10 probes {probes}"], swept[f"p95_ms probes {probes}"] = recall, p95
        _progress(
            f"{n:,} vectors: {kind} probing {probes} of {lists} lists: recall@10 {recall:.3f}, p95 {p95:.1f} ms"
        )
    return swept


def _search(engine: sa.Engine, kind: str, queries: np.ndarray, truth, rounds: int) -> tuple[float, float]:
    """(p95 ms, mean recall@10) of the application's query over `queries`; the last of `rounds` is timed (the
    first ones warm the index's pages)."""
    latencies, recalls = [], []
    for rnd in range(rounds):
        for q, t in zip(queries, truth, strict=True):
            started = time.perf_counter()
            hits = search_by_vector(engine, MODEL, DIMS, q, k=10)
            took = time.perf_counter() - started
            assert hits and all(h.index_kind == kind for h in hits), f"{kind}: search did not use its index"
            if rnd == rounds - 1:
                latencies.append(took)
                recalls.append(recall_at_k([(h.chunk_id, h.distance) for h in hits], t, 10))
    return float(np.percentile(latencies, 95)) * 1000, float(np.mean(recalls))


def _exact_p95(engine: sa.Engine, queries: np.ndarray) -> float:
    drop_hnsw_index(engine, MODEL, DIMS)
    lat = []
    for q in queries:
        started = time.perf_counter()
        search_by_vector(engine, MODEL, DIMS, q, k=10)
        lat.append(time.perf_counter() - started)
    return float(np.percentile(lat, 95)) * 1000


def _report(n: int, results: dict[str, dict[str, float]], exact_ms: float | None) -> None:
    base = results.get(BASELINE)
    for kind, r in results.items():
        label = f"{kind} {n:,} x {DIMS}d"
        if base is None or kind == BASELINE:
            print(
                f"   {label}: build {r['build_s']:.1f} s, {r['size_mb']:.0f} MB, server peak {r['server_peak_rss_mb']:.0f} MB,"
                f" recall@10 {r['recall_at_10']:.3f}, p95 {r['p95_ms']:.1f} ms"
                + (f" (exact scan p95 {exact_ms:.1f} ms)" if exact_ms else "")
            )
            continue
        b = base
        report(
            f"{label}: build s",
            r["build_s"],
            "s",
            b["build_s"],
            BASELINE,
            b["build_s"] / r["build_s"],
            ">= 5 (faster)",
        )
        report(
            f"{label}: index size",
            r["size_mb"],
            "MB",
            b["size_mb"],
            BASELINE,
            r["size_mb"] / b["size_mb"],
            "report",
        )
        report(
            f"{label}: server peak RSS in build",
            r["server_peak_rss_mb"],
            "MB",
            b["server_peak_rss_mb"],
            BASELINE,
            r["server_peak_rss_mb"] / b["server_peak_rss_mb"],
            "report",
        )
        report(
            f"{label}: recall@10 (re-ranked)",
            r["recall_at_10"],
            "",
            b["recall_at_10"],
            BASELINE,
            r["recall_at_10"],
            ">= 0.95",
        )
        report(
            f"{label}: search p95",
            r["p95_ms"],
            "ms",
            b["p95_ms"],
            BASELINE,
            r["p95_ms"] / b["p95_ms"],
            "<= 2",
        )


def measure(
    n: int, kinds: list[str], out: Path | None = None, shape: str = "corpus"
) -> dict[str, dict[str, float]]:
    queries = corpus_queries(n) if shape == "corpus" else _queries(uniform=False)
    results: dict[str, dict[str, float]] = {}
    with throwaway_postgres() as postgres:
        engine = postgres.engine
        started = time.perf_counter()
        with postgres.connect() as conn:
            ids = _seed_chunks(conn, n)
            register_building_model(conn, MODEL, DIMS)
            if shape == "corpus":
                load_corpus(conn, ids, n)
            else:
                _load(conn, MODEL, ids, 0, n, uniform=False)
            conn.execute(sa.text("ANALYZE chunk_embeddings"))
            conn.commit()
        _progress(f"{n:,} clustered vectors loaded in {time.perf_counter() - started:.1f} s")
        truth = corpus_truth(ids, n, queries) if shape == "corpus" else _truth(ids, n, queries, uniform=False)
        _progress(f"{n:,} ({shape}): brute-force truth of {len(queries)} queries computed")
        exact_ms = _exact_p95(engine, queries[:10])
        _progress(f"{n:,}: exact-scan p95 {exact_ms:.1f} ms")
        for kind in kinds:
            results[kind] = _measure_kind(engine, kind, n, queries, truth)
            if out is not None:
                out.write_text(
                    json.dumps(
                        {"exact_p95_ms": exact_ms, "workers": DEFAULT_BUILD_WORKERS, **results}, indent=1
                    )
                )
    _report(n, results, exact_ms)
    return results


def run() -> None:
    for n in SIZES.get(os.environ.get("BENCH_SCALE", ""), SIZES[""]):
        measure(n, ORDER)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("vectors", type=int, nargs="*")
    parser.add_argument("--kinds", default=",".join(ORDER))
    parser.add_argument("--json")
    parser.add_argument("--shape", choices=["corpus", "topics"], default="corpus")
    args = parser.parse_args()
    for kind in args.kinds.split(","):
        assert kind in INDEX_KINDS, kind
    for n in args.vectors or SIZES.get(os.environ.get("BENCH_SCALE", ""), SIZES[""]):
        measure(
            n,
            args.kinds.split(","),
            Path(f"{args.json}.{args.shape}.{n}.json") if args.json else None,
            args.shape,
        )
