"""Retention sweep benchmark: 20,000 (BENCH_SCALE=full: 100,000) expired documents with 10 chunks and 10 embeddings each.

Prints the sweep's documents per second and the longest time one batch transaction held its locks, next to
a baseline measured in the same run: one plain `DELETE` of all the documents of an identical data set in a
single transaction (no batching, no audit, no tombstones), whose lock time is its whole duration.
Each side takes ~2-4 s, which one busy neighbour on a shared host can double; so both run `ROUNDS` times,
alternating which goes first, each on its own freshly loaded data set (loaded and vacuumed untimed), and the
medians are reported with the spread. Run with `python -m bench.bench_retention`; it starts its own
throwaway embedded Postgres.
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

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
# Three alternated rounds keep the bench under a minute at the default scale; the median of three is
# robust to one disturbed run.
ROUNDS = 3

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
    # The generated rows are consistent by construction; skipping their foreign-key triggers halves setup.
    # Superuser-only, which the throwaway server's user is; the measured sessions keep every trigger.
    conn.execute(sa.text("SET session_replication_role = replica"))
    for statement in _SETUP[1:]:
        conn.execute(sa.text(statement), params)
    conn.execute(sa.text("RESET session_replication_role"))
    conn.commit()


def _vacuum(postgres: PostgresResource) -> None:
    """Clears the previous round's dead rows and refreshes statistics, so that every round starts alike."""
    with postgres.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE"))


def _rows_left(conn: sa.Connection) -> tuple[int, int]:
    left = conn.execute(
        sa.text("SELECT (SELECT count(*) FROM document_chunks), (SELECT count(*) FROM chunk_embeddings)")
    ).one()
    conn.commit()
    return int(left[0]), int(left[1])


def _cpu_s(conn: sa.Connection) -> float:
    """CPU seconds the connection's server process has used so far, from /proc (the throwaway server is
    local); 0 where there is no /proc. A run's wall time counts every wait for a core on a shared host, the
    CPU it used does not: the steadier figure beside the goal's."""
    pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
    conn.commit()
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # utime and stime: the 14th and 15th fields, counting the pid and the command as the first two.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Round:
    sweep_s: float = 0.0
    baseline_s: float = 0.0
    # Server CPU plus, for the sweep, its own client's (the DELETE's client only waits).
    sweep_cpu_s: float = 0.0
    baseline_cpu_s: float = 0.0
    longest_lock_s: float = 0.0
    batches: int = 0

    @property
    def ratio(self) -> float:
        """Sweep speed over DELETE speed on the same number of documents."""
        return self.baseline_s / self.sweep_s

    @property
    def cpu_ratio(self) -> float:
        return self.baseline_cpu_s / self.sweep_cpu_s if self.sweep_cpu_s else 0.0


def _checkpoint(conn: sa.Connection) -> None:
    """Untimed: each side starts from a fresh checkpoint, so neither alone pays a checkpoint that the other's
    writes triggered, nor the full-page images that follow one."""
    conn.execute(sa.text("CHECKPOINT"))
    conn.commit()


def _baseline(postgres: PostgresResource, source: str, left_after: int, into: Round) -> None:
    with postgres.connect() as conn:
        _checkpoint(conn)
        cpu = _cpu_s(conn)
        started = time.perf_counter()
        deleted = conn.execute(
            sa.text("DELETE FROM source_documents WHERE source = :s"), {"s": source}
        ).rowcount
        conn.commit()
        into.baseline_s = time.perf_counter() - started
        into.baseline_cpu_s = _cpu_s(conn) - cpu
        left = _rows_left(conn)
    # The cascade really removed the deleted documents' chunks and embeddings, and nothing else.
    assert deleted == DOCUMENTS and left == (left_after, left_after), (deleted, left)


def _sweep(postgres: PostgresResource, left_after: int, into: Round) -> None:
    with postgres.connect() as conn:
        _checkpoint(conn)
        cpu, own_cpu = _cpu_s(conn), time.process_time()
        started = time.perf_counter()
        result = sweep_expired(conn, batch_size=DEFAULT_BATCH_SIZE, as_of=dt.datetime.now(dt.UTC))
        into.sweep_s = time.perf_counter() - started
        into.sweep_cpu_s = _cpu_s(conn) - cpu + time.process_time() - own_cpu
        audit_rows = conn.execute(sa.text("SELECT count(*) FROM retention_audit")).scalar_one()
        tombstones = conn.execute(sa.text("SELECT count(*) FROM retention_tombstones")).scalar_one()
        conn.commit()
        left = _rows_left(conn)
    assert result.documents == DOCUMENTS == audit_rows == tombstones, (
        result.documents,
        audit_rows,
        tombstones,
    )
    assert result.chunks == result.embeddings == DOCUMENTS * CHUNKS_PER_DOCUMENT
    assert left == (left_after, left_after), left
    into.longest_lock_s, into.batches = result.longest_lock_s, result.batches


def _spread(values: list[float], fmt: str) -> str:
    return f"median {statistics.median(values):{fmt}}, {min(values):{fmt}}-{max(values):{fmt}}"


def run() -> dict[str, float]:
    with throwaway_postgres() as postgres:
        return _run(postgres)


def _stamp() -> str:
    return f"   [{time.strftime('%H:%M:%S')}]"


def _run(postgres: PostgresResource) -> dict[str, float]:
    started = time.perf_counter()
    with postgres.connect() as conn:
        conn.execute(sa.text(_SETUP[0]), {"model": MODEL, "dims": DIMENSIONS})
        _load(conn, "warmup", DOCUMENTS, None, CHUNKS_PER_DOCUMENT)
        _load(conn, "current", UNEXPIRED, None, 0)
        # Vacuumed explicitly between rounds instead: an autovacuum of the previous side's dead rows starting
        # in the middle of a measured run was one source of the noise.
        for table in ["source_documents", "provenance", "document_chunks", "chunk_embeddings"]:
            conn.execute(sa.text(f"ALTER TABLE {table} SET (autovacuum_enabled = false)"))
        conn.commit()
    _vacuum(postgres)
    print(
        f"setup: {DOCUMENTS:,} documents x {CHUNKS_PER_DOCUMENT} chunks + embeddings ({DIMENSIONS} dims) per data"
        f" set, {UNEXPIRED:,} unexpired, in {time.perf_counter() - started:.1f} s; {ROUNDS} rounds of two fresh sets",
        flush=True,
    )

    # An untimed DELETE of a third, identical data set first: whichever measured side ran first would otherwise
    # pay alone for warming the server (new WAL segments, index pages in cache) and look slower.
    with postgres.connect() as conn:
        started = time.perf_counter()
        conn.execute(sa.text("DELETE FROM source_documents WHERE source = 'warmup'"))
        conn.commit()
    print(f"{_stamp()} warm-up DELETE (untimed) {time.perf_counter() - started:.1f} s", flush=True)

    rounds: list[Round] = []
    for number in range(ROUNDS):
        sweep_first = number % 2 == 1
        started = time.perf_counter()
        with postgres.connect() as conn:
            # Audit rows and tombstones of the previous round would make this round's inserts unlike the first's.
            conn.execute(sa.text("TRUNCATE retention_audit, retention_tombstones"))
            # The side that runs first is loaded first, so neither always gets the later-written pages.
            for source in ["expired", "kept"] if sweep_first else ["kept", "expired"]:
                _load(
                    conn,
                    f"{source}-{number}",
                    DOCUMENTS,
                    5 if source == "expired" else None,
                    CHUNKS_PER_DOCUMENT,
                )
        _vacuum(postgres)
        load_s = time.perf_counter() - started
        this = Round()
        # Chunks (and as many embeddings) left once each side is done: only the other side's, then none.
        left = DOCUMENTS * CHUNKS_PER_DOCUMENT
        for side in ["sweep", "baseline"] if sweep_first else ["baseline", "sweep"]:
            if side == "sweep":
                _sweep(postgres, left, this)
            else:
                _baseline(postgres, f"kept-{number}", left, this)
            left = 0
        rounds.append(this)
        print(
            f"{_stamp()} round {number + 1}/{ROUNDS} ({'sweep' if sweep_first else 'DELETE'} first; loaded untimed in"
            f" {load_s:.1f} s): DELETE {this.baseline_s:.2f} s, sweep {this.sweep_s:.2f} s ({this.batches} batches,"
            f" longest lock {this.longest_lock_s * 1000:.0f} ms), ratio {this.ratio:.3f}; CPU: DELETE"
            f" {this.baseline_cpu_s:.2f} s, sweep {this.sweep_cpu_s:.2f} s, ratio {this.cpu_ratio:.3f}",
            flush=True,
        )

    sweep_s = statistics.median(r.sweep_s for r in rounds)
    baseline_s = statistics.median(r.baseline_s for r in rounds)
    ratio = statistics.median(r.ratio for r in rounds)
    longest_lock_s = statistics.median(r.longest_lock_s for r in rounds)
    sweep_rate, baseline_rate = DOCUMENTS / sweep_s, DOCUMENTS / baseline_s
    print(
        f"sweep: {DOCUMENTS:,} documents in {_spread([r.sweep_s for r in rounds], '.2f')} s ="
        f" {sweep_rate:,.0f} documents/s (batches of up to {DEFAULT_BATCH_SIZE}, with audit + tombstone rows)"
    )
    print(
        f"baseline one-statement DELETE: {_spread([r.baseline_s for r in rounds], '.2f')} s ="
        f" {baseline_rate:,.0f} documents/s"
    )
    print(
        f"ratio per round {_spread([r.ratio for r in rounds], '.3f')}; longest lock hold per round"
        f" {_spread([r.longest_lock_s * 1000 for r in rounds], '.0f')} ms"
    )
    report(
        "retention sweep documents/s",
        sweep_rate,
        "docs/s",
        baseline_rate,
        f"one-statement DELETE, median of {ROUNDS}",
        ratio,
        ">= 0.9",
    )
    cpu_ratio = statistics.median(r.cpu_ratio for r in rounds)
    print(
        f"CPU used (server, plus the sweep's own client): DELETE {_spread([r.baseline_cpu_s for r in rounds], '.2f')} s,"
        f" sweep {_spread([r.sweep_cpu_s for r in rounds], '.2f')} s, ratio {_spread([r.cpu_ratio for r in rounds], '.3f')}"
    )
    report(
        "retention longest lock hold",
        longest_lock_s * 1000,
        "ms",
        baseline_s * 1000,
        f"one-statement DELETE, median of {ROUNDS}",
        longest_lock_s / baseline_s,
        "< 1 s (bounded batches)",
    )
    return {
        "documents_per_s": sweep_rate,
        "baseline_documents_per_s": baseline_rate,
        "ratio": ratio,
        "cpu_ratio": cpu_ratio,
        "longest_lock_s": longest_lock_s,
        "max_longest_lock_s": max(r.longest_lock_s for r in rounds),
        "baseline_lock_s": baseline_s,
    }


if __name__ == "__main__":
    run()
