"""Re-embedding benchmarks: a blue/green re-embedding vs the first embedding of the same chunks, and the HNSW
build after a bulk load vs maintaining the index during the load.

    python -m bench.bench_reembedding
"""

from __future__ import annotations

import os
import time

import numpy as np
import sqlalchemy as sa

from bench.common import register_building_model, report, throwaway_postgres
from pipelines.embeddings import embed_pending, write_embeddings
from pipelines.hnsw import DEFAULT_MAINTENANCE_WORK_MEM, ensure_hnsw_index
from pipelines.models import switch_active_model
from pipelines.reembedding import build_model
from resources.embedders import EmbedderResource
from testing.chunk_seed import add_chunks, chunk_texts
from testing.fake_openai import FakeOpenAI

# BENCH_SCALE=full re-embeds 100,000 chunks; the default keeps `make bench` within its ten minutes.
N_CHUNKS = 100_000 if os.environ.get("BENCH_SCALE") == "full" else 5_000
DIMS = 1536
FIRST_MODEL = "text-embedding-ada-002"  # both 1,536-dimensional, so both runs write and index the same volume
NEXT_MODEL = "text-embedding-3-small"
WRITE_BATCH = 2048
MEM = DEFAULT_MAINTENANCE_WORK_MEM
HNSW_COMPARE_N = 4_000  # inserting into a live HNSW index is slow; this keeps the comparison under a minute


def _embedder(fake, model: str) -> EmbedderResource:
    return EmbedderResource(
        provider="openai",
        model=model,
        api_key="sk-bench",
        base_url=fake.base_url,
        max_retries=0,
    )


def bench_reembedding(postgres, fake) -> tuple[np.ndarray, float]:
    """Returns the vectors written and the first HNSW build's seconds, for the index benchmark."""
    # Client import and first connection are paid here, not by whichever run is timed first.
    with _embedder(fake, FIRST_MODEL).open() as client:
        client.embed(["warm-up"])
    fake.reset_counts()
    with postgres.connect() as conn:
        started = time.perf_counter()
        first_embedder = _embedder(fake, FIRST_MODEL)
        first = embed_pending(
            conn.engine, first_embedder.spec(), first_embedder.limits(), first_embedder.factory()
        )
        first_embed = time.perf_counter() - started
        first_index = ensure_hnsw_index(conn.engine, FIRST_MODEL, DIMS, MEM).seconds
        first_total = time.perf_counter() - started
        first_requests = fake.request_count

        fake.reset_counts()
        started = time.perf_counter()
        next_embedder = _embedder(fake, NEXT_MODEL)
        again = build_model(
            conn.engine,
            next_embedder.spec(),
            next_embedder.limits(),
            next_embedder.factory(),
            maintenance_work_mem=MEM,
        )
        switch_active_model(conn.engine, NEXT_MODEL)
        re_total = time.perf_counter() - started
        re_embed = again.stats.duration_s
        assert again.index is not None
        assert again.coverage.complete and first.chunks_embedded == again.stats.chunks_embedded == N_CHUNKS

        rows = (
            conn.execute(
                sa.text("SELECT embedding FROM chunk_embeddings WHERE model = :m ORDER BY chunk_id"),
                {"m": NEXT_MODEL},
            )
            .scalars()
            .all()
        )
        conn.commit()
    n = N_CHUNKS
    report(
        f"re-embedding {n} chunks, embed+write",
        re_embed,
        "s",
        first_embed,
        "first embedding",
        re_embed / first_embed,
        "<= 1.2",
    )
    report(
        f"re-embedding {n} chunks, incl. HNSW + switch",
        re_total,
        "s",
        first_total,
        "first embedding + HNSW",
        re_total / first_total,
        "<= 1.2",
    )
    report(
        "re-embedding API requests",
        fake.request_count,
        "requests",
        first_requests,
        "first embedding",
        fake.request_count / max(first_requests, 1),
        "1.0",
    )
    report(
        f"  (HNSW build inside those runs, {n} x {DIMS}d)",
        again.index.seconds,
        "s",
        first_index,
        "first embedding's",
        again.index.seconds / first_index,
        "~1.0",
    )
    return np.asarray(
        [r.to_numpy() if hasattr(r, "to_numpy") else r for r in rows], dtype=np.float32
    ), first_index


def _load(conn, model: str, ids, vectors) -> float:
    shas: dict[int, str] = {
        cid: sha
        for cid, sha in conn.execute(
            sa.text("SELECT id, content_sha256 FROM document_chunks WHERE id = ANY(:ids)"), {"ids": list(ids)}
        )
    }
    started = time.perf_counter()
    for i in range(0, len(ids), WRITE_BATCH):
        sl = slice(i, i + WRITE_BATCH)
        written = write_embeddings(
            conn, model, ids[sl], [shas[c] for c in ids[sl]], [1] * len(ids[sl]), vectors[sl]
        )
        assert written == len(ids[sl])
        conn.commit()
    return time.perf_counter() - started


def bench_hnsw_build(postgres, vectors: np.ndarray, first_index_s: float) -> None:
    """The per-10k build time (measured on the first embedding's 10,000 vectors) beside a plain bulk load of
    the same vectors; then, on a smaller slice to keep the run short, building after the load vs loading
    into an index that already exists."""
    plain, after, before = f"bench-plain@{DIMS}", f"bench-after@{DIMS}", f"bench-before@{DIMS}"
    with postgres.connect() as conn:
        for name in (plain, after, before):
            register_building_model(conn, name, DIMS)
        ids = (
            conn.execute(sa.text("SELECT id FROM document_chunks ORDER BY id"))
            .scalars()
            .all()[: len(vectors)]
        )
        plain_load_s = _load(conn, plain, ids, vectors)

        m = HNSW_COMPARE_N
        load_s = _load(conn, after, ids[:m], vectors[:m])
        build_s = ensure_hnsw_index(conn.engine, after, DIMS, MEM, min_rows=0).seconds
        # min_rows=0: an empty model is below the build threshold, and the point is an index that exists.
        ensure_hnsw_index(conn.engine, before, DIMS, MEM, min_rows=0)
        indexed_load_s = _load(conn, before, ids[:m], vectors[:m])
    n = len(vectors)
    report(
        f"HNSW build per 10,000 x {DIMS}d",
        first_index_s * 10_000 / n,
        "s",
        plain_load_s * 10_000 / n,
        "binary COPY of them",
        first_index_s / plain_load_s,
        "report",
    )
    report(
        f"bulk load then HNSW build, {m} x {DIMS}d",
        load_s + build_s,
        "s",
        indexed_load_s,
        "load into live index",
        (load_s + build_s) / indexed_load_s,
        "< 1.0",
    )


def run() -> None:
    with throwaway_postgres() as postgres, FakeOpenAI() as fake:
        with postgres.connect() as conn:
            add_chunks(conn, chunk_texts(N_CHUNKS), per_document=100, source="bench")
        print(f"   [{time.strftime('%H:%M:%S')}] re-embedding {N_CHUNKS:,} chunks: started", flush=True)
        vectors, first_index_s = bench_reembedding(postgres, fake)
        print(f"   [{time.strftime('%H:%M:%S')}] HNSW build comparisons: started", flush=True)
        bench_hnsw_build(postgres, vectors, first_index_s)


if __name__ == "__main__":
    run()
