"""Ingestion benchmarks: the embedding write path, requests per corpus, and an unchanged re-run."""

from __future__ import annotations

import time

import numpy as np
import sqlalchemy as sa

from bench.common import report, throwaway_postgres, tldr_corpus
from pipelines.chunks import chunk_documents
from pipelines.embeddings import embed_pending, write_embeddings
from pipelines.sources import sync_documents
from pipelines.sql import load_sql
from resources.embedders import EmbedderResource
from resources.sources import ContentSourcesResource
from testing.fake_openai import FakeOpenAI

DIMS = 1536
WRITE_BATCH = 2048


def _ingest(conn, sources, embedder):
    sync_documents(conn.engine, sources.content_path, sources.table_specs())
    chunk_documents(conn.engine, sources.chunk_max_chars, sources.chunk_overlap)
    return embed_pending(conn.engine, embedder.spec(), embedder.limits(), embedder.factory())


def bench_write_path(postgres, rng) -> None:
    with postgres.connect() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO embedding_models (name, provider, model, dimensions, status)"
                " VALUES ('bench', 'local', 'bench', :d, 'building')"
            ),
            {"d": DIMS},
        )
        conn.execute(
            sa.text("CREATE TABLE bench_raw (LIKE chunk_embeddings INCLUDING DEFAULTS INCLUDING INDEXES)")
        )
        conn.commit()
        rows = conn.execute(
            sa.text("SELECT id, content_sha256, token_count FROM document_chunks ORDER BY id")
        ).all()
        vectors = rng.standard_normal((len(rows), DIMS)).astype(np.float32)
        ids = [r.id for r in rows]
        shas = [r.content_sha256 for r in rows]
        toks = [r.token_count for r in rows]

        started = time.perf_counter()
        for i in range(0, len(rows), WRITE_BATCH):
            sl = slice(i, i + WRITE_BATCH)
            write_embeddings(conn, "bench", ids[sl], shas[sl], toks[sl], vectors[sl])
            conn.commit()
        ours = time.perf_counter() - started

        raw = conn.connection.driver_connection
        started = time.perf_counter()
        copy_sql = load_sql("embeddings/copy_chunk_embeddings").replace(
            "COPY chunk_embeddings", "COPY bench_raw"
        )
        with raw.cursor() as cur, cur.copy(copy_sql) as copy:
            copy.set_types(["int8", "text", "vector", "text", "int4"])
            for cid, sha, tok, vec in zip(ids, shas, toks, vectors):
                copy.write_row((cid, "bench", vec, sha, tok))
        conn.commit()
        baseline = time.perf_counter() - started
    n = len(rows)
    report(
        f"embedding write path ({n} x {DIMS}d) rows/s",
        n / ours,
        "rows/s",
        n / baseline,
        "raw binary COPY",
        baseline / ours,
        ">= 0.7",
    )


def run() -> None:
    rng = np.random.default_rng(0)
    sources = ContentSourcesResource(content_dir=str(tldr_corpus()))
    with throwaway_postgres() as postgres, FakeOpenAI() as fake:
        embedder = EmbedderResource(api_key="sk-bench", base_url=fake.base_url, max_retries=0)
        with postgres.connect() as conn:
            started = time.perf_counter()
            first = _ingest(conn, sources, embedder)
            first_s = time.perf_counter() - started
            first_requests = fake.request_count
            report(
                "tldr requests sent vs API-limit minimum",
                first.requests,
                "requests",
                first.minimum_requests,
                "minimum",
                first.minimum_requests / max(first.requests, 1),
                "1.0",
            )
            fake.reset_counts()
            started = time.perf_counter()
            second = _ingest(conn, sources, embedder)
            second_s = time.perf_counter() - started
            report(
                "unchanged re-run wall time",
                second_s,
                "s",
                first_s,
                "first run",
                second_s / first_s,
                "<= 0.1",
            )
            report(
                "unchanged re-run API requests",
                fake.request_count,
                "requests",
                first_requests,
                "first run",
                fake.request_count / max(first_requests, 1),
                "0 requests",
            )
            assert second.chunks_embedded == 0
        bench_write_path(postgres, rng)


if __name__ == "__main__":
    run()
