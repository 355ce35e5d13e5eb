"""Batch API benchmark: writing a finished batch's vectors (download, line checks, binary COPY) against the
synchronous path writing the same number of vectors of the same dimension, both from the fake server.

    python -m bench.bench_batch_embeddings
"""

from __future__ import annotations

import time

import openai

from bench.common import report, throwaway_postgres
from pipelines.batch_embeddings import (
    apply_batch,
    iter_texts_to_submit,
    plan_batch_embedding,
    poll_batches,
    submit_batches,
)
from pipelines.embedders import EmbedLimits
from pipelines.embeddings import embed_pending
from pipelines.models import register_model
from resources.embedders import EmbedderResource
from testing.chunk_seed import add_chunks, chunk_texts
from testing.fake_openai_batch import FakeOpenAIBatch

N_CHUNKS = 3_000
SYNC_MODEL = "text-embedding-ada-002"  # both 1,536-dimensional: the same volume is written
BATCH_MODEL = "text-embedding-3-small"


def _embedder(fake, model: str) -> EmbedderResource:
    return EmbedderResource(
        provider="openai", model=model, api_key="sk-bench", base_url=fake.base_url, max_retries=0
    )


def run() -> None:
    with throwaway_postgres() as postgres, FakeOpenAIBatch() as fake, postgres.connect() as conn:
        add_chunks(conn, chunk_texts(N_CHUNKS), per_document=100, source="bench")
        with _embedder(fake, SYNC_MODEL).open() as warm:
            warm.embed(["warm-up"])
        started = time.perf_counter()
        sync_embedder = _embedder(fake, SYNC_MODEL)
        sync = embed_pending(
            postgres.engine, sync_embedder.spec(), sync_embedder.limits(), sync_embedder.factory()
        )
        sync_s = time.perf_counter() - started

        spec = _embedder(fake, BATCH_MODEL).spec()
        register_model(conn, spec)
        conn.commit()
        limits = EmbedLimits(poll_initial_s=0)
        client = openai.OpenAI(api_key="sk-bench", base_url=fake.base_url, max_retries=0)
        plan = plan_batch_embedding(conn, spec, limits)
        (batch,) = submit_batches(conn, client, spec, iter_texts_to_submit(conn, plan), limits)
        while fake.batches[batch.batch_id].status != "completed":
            poll_batches(conn, client, limits)
        started = time.perf_counter()
        applied = apply_batch(conn, client, batch.batch_id)
        batch_s = time.perf_counter() - started
        client.close()
    assert sync.chunks_embedded == applied.chunks_written == N_CHUNKS
    sync_rate, batch_rate = N_CHUNKS / sync_s, N_CHUNKS / batch_s
    report(
        f"batch apply, {N_CHUNKS} x 1536d vectors/s",
        batch_rate,
        "vectors/s",
        sync_rate,
        "synchronous path",
        batch_rate / sync_rate,
        ">= 1.0",
    )


if __name__ == "__main__":
    run()
