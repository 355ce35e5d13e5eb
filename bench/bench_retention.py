"""Retention sweep benchmark: 20,000 (BENCH_SCALE=full: 100,000) expired documents with 10 chunks and 10 embeddings each.

Prints the sweep's documents per second and the longest time one batch transaction held its locks, next to
a baseline measured in the same run on an identical second data set: one plain `DELETE` of all its documents
in a single transaction (no batching, no audit, no tombstones), whose lock time is its whole duration.
Run with `python -m bench.bench_retention`; it starts its own throwaway embedded Postgres.
"""

from __future__ import annotations

import datetime as dt
import os
import time

import sqlalchemy as sa

from bench.common import report, throwaway_postgres
from pipelines.retention import DEFAULT_BATCH_SIZE, sweep_expired
from resources.postgres import PostgresResource

# BENCH_SCALE=full: 100,000 documents; the default scale keeps `make bench` within its ten minutes.
DOCUMENTS = 100_000 if os.environ.get("BENCH_SCALE") == "full" else 20_000
CHUNKS_PER_DOCUMENT = 10
UNEXPIRED = DOCUMENTS // 10
DIMENSIONS = 32
MODEL = "bench-model"

# Fixture generation only, set-based so that a million chunks and embeddings load in seconds.
_SETUP = [
    "INSERT INTO embedding_models (name, provider, model, dimensions, status)"
    " VALUES (:model, 'local', :model, :dims, 'active')",
    """INSERT INTO source_documents (source, source_key, title, content, content_sha256, acquired_at)
       SELECT :source, 'doc-' || g, 'Document ' || g, 'Licensed text number ' || g, md5(:source || g),
              now() - make_interval(years => 10) + make_interval(mins => g % 5000)
       FROM generate_series(1, :n) AS g""",
    """INSERT INTO provenance (content_id, content_type, source_uri, acquisition_method, hash_sha256,
                              retention_years, acquired_at)
       SELECT id, 'markdown', 'bench:' || source_key, 'bench', content_sha256, :retention, acquired_at
       FROM source_documents WHERE source = :source""",
    """INSERT INTO document_chunks (document_id, chunk_index, content, content_sha256, char_start, char_end,
                                   token_count)
       SELECT d.id, i, 'chunk ' || i || ' of ' || d.source_key, md5(d.id || '-' || i), i * 100, i * 100 + 100, 25
       FROM source_documents d CROSS JOIN generate_series(0, :chunks - 1) AS i
       WHERE d.source = :source""",
    """INSERT INTO chunk_embeddings (chunk_id, model, embedding, content_sha256, token_count)
       SELECT c.id, :model, CAST(array_fill(random()::real, ARRAY[:dims]) AS vector), c.content_sha256, 25
       FROM document_chunks c JOIN source_documents d ON d.id = c.document_id
       WHERE d.source = :source""",
]


def _load(conn: sa.Connection, source: str, n: int, retention: int | None, chunks: int) -> None:
    params = {
        "source": source,
        "n": n,
        "retention": retention,
        "chunks": chunks,
        "model": MODEL,
        "dims": DIMENSIONS,
    }
    for statement in _SETUP[1:]:
        conn.execute(sa.text(statement), params)
    conn.commit()


def run() -> dict[str, float]:
    with throwaway_postgres() as postgres:
        return _run(postgres)


def _run(postgres: PostgresResource) -> dict[str, float]:
    started = time.perf_counter()
    with postgres.connect() as conn:
        # The generated rows are consistent by construction; skipping their foreign-key triggers halves setup.
        # Superuser-only, which the throwaway server's user is; the measured sessions keep every trigger.
        conn.execute(sa.text("SET session_replication_role = replica"))
        conn.execute(sa.text(_SETUP[0]), {"model": MODEL, "dims": DIMENSIONS})
        _load(conn, "bench", DOCUMENTS, 5, CHUNKS_PER_DOCUMENT)
        _load(conn, "baseline", DOCUMENTS, None, CHUNKS_PER_DOCUMENT)
        _load(conn, "warmup", DOCUMENTS, None, CHUNKS_PER_DOCUMENT)
        _load(conn, "current", UNEXPIRED, None, 0)
        conn.execute(sa.text("RESET session_replication_role"))
        conn.execute(sa.text("ANALYZE"))
        conn.commit()
    setup_s = time.perf_counter() - started
    print(
        f"setup: 3 x {DOCUMENTS:,} documents x {CHUNKS_PER_DOCUMENT} chunks + embeddings ({DIMENSIONS} dims),"
        f" {UNEXPIRED:,} unexpired, in {setup_s:.1f} s"
    )

    # An untimed DELETE of a third, identical data set first: whichever measured side ran first would otherwise
    # pay alone for warming the server (new WAL segments, index pages in cache) and look slower.
    with postgres.connect() as conn:
        started = time.perf_counter()
        conn.execute(sa.text("DELETE FROM source_documents WHERE source = 'warmup'"))
        conn.commit()
    print(
        f"   [{time.strftime('%H:%M:%S')}] warm-up DELETE (untimed) {time.perf_counter() - started:.1f} s",
        flush=True,
    )

    print(f"   [{time.strftime('%H:%M:%S')}] baseline DELETE: started", flush=True)
    with postgres.connect() as conn:
        started = time.perf_counter()
        deleted = conn.execute(sa.text("DELETE FROM source_documents WHERE source = 'baseline'")).rowcount
        conn.commit()
        baseline_s = time.perf_counter() - started
        left = conn.execute(
            sa.text("SELECT (SELECT count(*) FROM document_chunks), (SELECT count(*) FROM chunk_embeddings)")
        ).one()
        conn.commit()
    # Only the swept data set's rows may remain: the cascade really removed the baseline's.
    assert deleted == DOCUMENTS and tuple(left) == (DOCUMENTS * CHUNKS_PER_DOCUMENT,) * 2, (
        deleted,
        tuple(left),
    )

    print(f"   [{time.strftime('%H:%M:%S')}] sweep: started", flush=True)
    with postgres.connect() as conn:
        started = time.perf_counter()
        result = sweep_expired(conn, batch_size=DEFAULT_BATCH_SIZE, as_of=dt.datetime.now(dt.UTC))
        sweep_s = time.perf_counter() - started
        audit_rows = conn.execute(sa.text("SELECT count(*) FROM retention_audit")).scalar_one()
        left = conn.execute(
            sa.text("SELECT (SELECT count(*) FROM document_chunks), (SELECT count(*) FROM chunk_embeddings)")
        ).one()
        conn.commit()
    assert result.documents == DOCUMENTS == audit_rows, (result.documents, audit_rows)
    assert result.chunks == result.embeddings == DOCUMENTS * CHUNKS_PER_DOCUMENT
    assert tuple(left) == (0, 0), tuple(left)

    sweep_rate, baseline_rate = DOCUMENTS / sweep_s, DOCUMENTS / baseline_s
    print(
        f"sweep: {DOCUMENTS:,} documents in {sweep_s:.1f} s = {sweep_rate:,.0f} documents/s"
        f" ({result.batches} batches of up to {DEFAULT_BATCH_SIZE}, with audit + tombstone rows)"
    )
    print(f"baseline one-statement DELETE: {baseline_s:.1f} s = {baseline_rate:,.0f} documents/s")
    report(
        "retention sweep documents/s",
        sweep_rate,
        "docs/s",
        baseline_rate,
        "one-statement DELETE",
        sweep_rate / baseline_rate,
        ">= 0.9",
    )
    report(
        "retention longest lock hold",
        result.longest_lock_s * 1000,
        "ms",
        baseline_s * 1000,
        "one-statement DELETE",
        result.longest_lock_s / baseline_s,
        "< 1 s (bounded batches)",
    )
    return {
        "documents_per_s": sweep_rate,
        "baseline_documents_per_s": baseline_rate,
        "longest_lock_s": result.longest_lock_s,
        "baseline_lock_s": baseline_s,
    }


if __name__ == "__main__":
    run()
