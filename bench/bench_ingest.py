"""Ingestion benchmarks: `ingestion_job` run through Dagster on the tldr corpus and on a synthetic one (first run,
unchanged re-run, 1 % of pages changed), and the embedding write path against a raw binary COPY."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg
import numpy as np
import sqlalchemy as sa

from bench.common import report, throwaway_postgres, tldr_corpus
from bench.dagster_runs import (
    RunTiming,
    current_rss_mb,
    execute,
    execute_fresh_process,
    import_seconds,
    peak_rss_mb,
    reset_peak_rss,
)
from bench.fake_server import fake_openai_process
from pipelines.embeddings import write_embeddings
from pipelines.hnsw import measure_recall, nearest
from pipelines.lib.vector_index import recall_at_k
from pipelines.sql import load_sql
from resources.postgres import PostgresResource
from testing.synthetic_corpus import edit_corpus, write_corpus

DIMS = 1536
WRITE_BATCH = 2048
MODEL = "text-embedding-3-small"
WIDE_EF_SEARCH = 200
SYNTHETIC_PAGES = 2_000  # ~11k chunks
# BENCH_SCALE=full: ~20k chunks and >= 100k chunks, so that peak memory at both sizes can be compared.
SYNTHETIC_PAGES_FULL = (3_600, 18_000)


def _settle(conn: sa.Connection) -> None:
    """Untimed: flush what earlier phases left to the background (dirty pages, dead rows), so that neither
    side of a comparison pays for it. CHECKPOINT needs a superuser: the throwaway server's user is one."""
    conn.commit()
    conn.execute(sa.text("CHECKPOINT"))
    conn.commit()
    raw = conn.connection.driver_connection
    assert raw is not None
    raw.autocommit = True
    try:
        raw.execute("VACUUM ANALYZE chunk_embeddings")
        raw.execute("VACUUM ANALYZE bench_raw")
    finally:
        raw.autocommit = False


def bench_write_path(postgres, rng, reps: int = 5) -> None:
    """write_embeddings against a raw binary COPY of the same rows into a copy of the table without its foreign
    keys, alternated `reps` times on emptied tables (medians): the host is shared, single runs are noisy."""
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
        copy_sql = load_sql("embeddings/copy_chunk_embeddings").replace(
            "COPY chunk_embeddings", "COPY bench_raw"
        )
        ours_s, raw_s = [], []
        for _ in range(reps):
            _settle(conn)
            started = time.perf_counter()
            for i in range(0, len(rows), WRITE_BATCH):
                sl = slice(i, i + WRITE_BATCH)
                write_embeddings(conn, "bench", ids[sl], shas[sl], toks[sl], vectors[sl])
                conn.commit()
            ours_s.append(time.perf_counter() - started)

            raw = conn.connection.driver_connection
            _settle(conn)
            started = time.perf_counter()
            for i in range(0, len(rows), WRITE_BATCH):
                with raw.cursor() as cur, cur.copy(copy_sql) as copy:
                    copy.set_types(["int8", "text", "vector", "text", "int4"])
                    for k in range(i, min(i + WRITE_BATCH, len(rows))):
                        copy.write_row((ids[k], "bench", vectors[k], shas[k], toks[k]))
                conn.commit()
            raw_s.append(time.perf_counter() - started)
            conn.execute(sa.text("TRUNCATE bench_raw"))
            conn.execute(sa.text("DELETE FROM chunk_embeddings WHERE model = 'bench'"))
            conn.commit()
    ours, baseline = float(np.median(ours_s)), float(np.median(raw_s))
    n = len(rows)
    report(
        f"embedding write path ({n} x {DIMS}d) rows/s",
        n / ours,
        "rows/s",
        n / baseline,
        "raw binary COPY",
        baseline / ours,
        ">= 0.8",
    )


def bench_search(postgres: PostgresResource, name: str, queries: int = 40) -> None:
    """Search latency through the model's HNSW index and by exact scan, and recall@10 of the index (its build
    choices are bench_hnsw's)."""
    engine = postgres.engine
    with engine.begin() as conn:
        n = conn.execute(
            sa.text("SELECT count(*) FROM chunk_embeddings WHERE model = :m"), {"m": MODEL}
        ).scalar_one()
        samples = [
            np.asarray(v.to_numpy(), dtype=np.float32)
            for v in conn.execute(
                sa.text("SELECT embedding FROM chunk_embeddings WHERE model = :m ORDER BY chunk_id LIMIT :q"),
                {"m": MODEL, "q": queries},
            ).scalars()
        ]
    latencies: dict[str, list[float]] = {"index": [], "exact": []}
    for vec in samples:
        for how in ("index", "exact"):
            started = time.perf_counter()
            nearest(engine, MODEL, DIMS, vec, 10, exact=how == "exact")
            latencies[how].append(time.perf_counter() - started)
    p95 = {how: float(np.percentile(v, 95)) * 1000 for how, v in latencies.items()}
    recall = measure_recall(engine, MODEL, DIMS, sample=queries)
    # The fake server's vectors are uniformly random: no clusters, HNSW's worst case. What a wider search buys:
    wide, wide_s = [], []
    for vec in samples:
        exact = nearest(engine, MODEL, DIMS, vec, 10, exact=True)
        started = time.perf_counter()
        approx = nearest(engine, MODEL, DIMS, vec, 10, ef_search=WIDE_EF_SEARCH)
        wide_s.append(time.perf_counter() - started)
        wide.append(recall_at_k(approx, exact, 10))
    report(
        f"{name} search p95, {n:,} x {DIMS}d, HNSW",
        p95["index"],
        "ms",
        p95["exact"],
        "exact scan",
        p95["exact"] / p95["index"],
        "report",
    )
    report(
        f"{name} HNSW recall@10 ({recall.queries} queries)",
        recall.recall,
        "",
        1.0,
        "exact",
        recall.recall,
        ">= 0.95",
    )
    report(
        f"{name} HNSW recall@10, ef_search {WIDE_EF_SEARCH}",
        float(np.mean(wide)),
        "",
        float(np.percentile(wide_s, 95)) * 1000,
        "its p95 ms",
        float(np.mean(wide)),
        ">= 0.95",
    )


def _progress(message: str) -> None:
    print(f"   [{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _edit_tldr(root: Path, share: float) -> int:
    """Append an example to every k-th page: `share` of the pages change."""
    pages = sorted(root.rglob("*.md"))
    step = max(1, round(1 / share))
    for path in pages[::step]:
        with path.open("a", encoding="utf-8") as fh:
            fh.write("\n- An edited example for the bench:\n\n`bench --changed`\n")
    return len(pages[::step])


def _phase(label: str, instance, postgres: PostgresResource, peaks: dict[str, float], key: str) -> RunTiming:
    """One run of the job; `peaks[key]` gets the peak resident memory of the process that ran it (the
    ingestion job's steps run in the run's process, which here is this one)."""
    _progress(f"{label}: started")
    before = current_rss_mb()
    reset_peak_rss()
    timing = execute(instance)
    own, _children = peak_rss_mb()
    peaks[key] = own
    peaks[f"{key} growth"] = own - before
    with postgres.connect() as conn:
        counts = conn.execute(
            sa.text(
                "SELECT (SELECT count(*) FROM source_documents), (SELECT count(*) FROM document_chunks),"
                " (SELECT count(*) FROM chunk_embeddings)"
            )
        ).one()
    peaks["chunks"] = max(peaks.get("chunks", 0), counts[1])  # the corpus size: the first run's
    _progress(
        f"{label}: {timing.wall_s:.1f} s wall; steps {timing.split()}; overhead (wall / steps) {timing.overhead:.2f};"
        f" {counts[0]:,} documents, {counts[1]:,} chunks, {counts[2]:,} vectors;"
        f" peak RSS of the run's process {own:.0f} MB ({before:.0f} MB before the run)"
    )
    return timing


def bench_corpus(
    name: str, make_corpus, edit, *, write_path: bool = False, peaks: dict[str, float] | None = None
) -> dict[str, RunTiming]:
    """First run, unchanged re-run and a 1 %-changed run of `ingestion_job` over one corpus; `peaks` gets
    each phase's peak resident memory (MB) and the corpus's chunk count."""
    peaks = {} if peaks is None else peaks
    with (
        tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp,
        throwaway_postgres() as postgres,
        fake_openai_process() as base_url,
    ):
        root = Path(tmp) / "content"
        started = time.perf_counter()
        detail = make_corpus(root)
        _progress(f"{name}: corpus ready ({detail}) in {time.perf_counter() - started:.1f} s")
        os.environ.update(
            {
                "DATABASE_URL": postgres.url,
                "CONTENT_DIR": str(root),
                "SOURCE_TABLES": "[]",
                "EMBEDDING_PROVIDER": "openai",
                "EMBEDDING_MODEL": MODEL,
                "OPENAI_API_KEY": "sk-bench",
                "OPENAI_BASE_URL": base_url,
            }
        )
        postgres.engine  # noqa: B018 - migrate before the first run, as a deployment's migrate step would
        home = Path(tmp) / "dagster_home"
        home.mkdir()
        (home / "dagster.yaml").write_text("")
        with dg.DagsterInstance.local_temp(tempdir=str(home)) as instance:
            timings = {"first": _phase(f"{name} first run", instance, postgres, peaks, "first")}
            timings["unchanged"] = _phase(f"{name} unchanged re-run", instance, postgres, peaks, "unchanged")
            edited = edit(root)
            timings["changed"] = _phase(
                f"{name} 1 % changed ({edited} pages) run", instance, postgres, peaks, "changed"
            )
            _progress(f"{name} unchanged re-run in a fresh process (dagster job execute): started")
            fresh_s = execute_fresh_process(str(home))
            _progress(f"{name} unchanged re-run in a fresh process: {fresh_s:.1f} s wall")
        for phase, t in timings.items():
            report(
                f"{name} {phase}: wall / steps' own work",
                t.wall_s,
                "s",
                t.step_sum_s,
                "sum of steps",
                t.overhead,
                "overhead ~1",
            )
        report(
            f"{name} unchanged re-run vs first",
            timings["unchanged"].wall_s,
            "s",
            timings["first"].wall_s,
            "first run",
            timings["unchanged"].wall_s / timings["first"].wall_s,
            "small",
        )
        report(
            f"{name} unchanged re-run, fresh process",
            fresh_s,
            "s",
            timings["unchanged"].step_sum_s,
            "sum of steps",
            fresh_s / timings["unchanged"].step_sum_s,
            "(includes importing the location)",
        )
        if os.environ.get("BENCH_SEARCH", "1") != "0":
            bench_search(postgres, name)
        else:
            _progress(f"{name}: search and index-build figures skipped (BENCH_SEARCH=0)")
        if write_path:
            bench_write_path(postgres, np.random.default_rng(0))
    return timings


def run_corpus(corpus: str, pages: int = SYNTHETIC_PAGES, peaks_file: str | None = None) -> None:
    if corpus == "tldr":
        tldr = tldr_corpus()

        def tldr_copy(root: Path) -> str:
            shutil.copytree(tldr, root)
            return f"{sum(1 for _ in root.rglob('*.md')):,} pages from {tldr.name}"

        bench_corpus("tldr", tldr_copy, lambda root: _edit_tldr(root, 0.01), write_path=True)
        return

    def synthetic(root: Path) -> str:
        return f"{pages:,} synthetic pages, {write_corpus(root, pages) / 1e6:.1f} MB"

    peaks: dict[str, float] = {}
    bench_corpus(
        f"synthetic {pages:,} pages", synthetic, lambda root: len(edit_corpus(root, pages, 0.01)), peaks=peaks
    )
    if peaks_file:
        Path(peaks_file).write_text(json.dumps(peaks))


def _flatness(sizes: list[dict[str, float]]) -> None:
    """Peak memory of each phase at the smallest and the largest corpus: streaming keeps the ratio near 1,
    where holding the corpus would grow it with the chunk count."""
    small, large = sizes[0], sizes[-1]
    for phase in ("first", "unchanged", "changed"):
        a, b = small[phase], large[phase]
        report(
            f"synthetic peak RSS, {phase}, {large['chunks']:,.0f} chunks",
            b,
            "MB",
            a,
            f"{small['chunks']:,.0f} chunks",
            b / a,
            f"~1 (chunks x{large['chunks'] / small['chunks']:.1f})",
        )


def run() -> None:
    """Each corpus in a process of its own: the code location binds its resources (database, content
    directory) when imported, and peak memory is then that corpus's alone."""
    _progress(f"code location import: {import_seconds():.2f} s in a fresh interpreter")
    subprocess.run([sys.executable, "-m", "bench.bench_ingest", "tldr"], check=True)
    full = os.environ.get("BENCH_SCALE") == "full"
    sizes = []
    with tempfile.TemporaryDirectory(prefix="bench-peaks-") as tmp:
        for pages in SYNTHETIC_PAGES_FULL if full else (SYNTHETIC_PAGES,):
            out = Path(tmp) / f"{pages}.json"
            subprocess.run(
                [sys.executable, "-m", "bench.bench_ingest", "synthetic", str(pages), str(out)], check=True
            )
            sizes.append(json.loads(out.read_text()))
    if len(sizes) > 1:
        _flatness(sizes)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        run_corpus(
            sys.argv[1],
            int(sys.argv[2]) if len(sys.argv) > 2 else SYNTHETIC_PAGES,
            sys.argv[3] if len(sys.argv) > 3 else None,
        )
    else:
        run()
