"""Measurements behind docs/scaling.md, on a throwaway embedded Postgres: binary COPY of 1,536-dim
vectors, an HNSW build over them, and the nightly metrics pass over one day of dialogue log at the
volume of 36M rows a year (~100,000 a day). Absolute figures of this machine, printed once; the
document extrapolates from them. Not part of `make bench` (no baseline to compare with).

    python -m bench.measure_scale [--vectors 20000] [--rows-per-day 100000] [--days 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
import warnings
from zoneinfo import ZoneInfo

import numpy as np

from bench.common import throwaway_postgres
from demo.dialogue import load_demo_dialogue
from pipelines.metrics import refresh_rag_metrics

JST = ZoneInfo("Asia/Tokyo")


def _copy_vectors(conn, vectors: np.ndarray) -> float:
    raw = conn.connection.driver_connection
    started = time.perf_counter()
    with (
        raw.cursor() as cur,
        cur.copy("COPY scale_vectors (id, embedding) FROM STDIN WITH (FORMAT BINARY)") as copy,
    ):
        copy.set_types(["int8", "vector"])
        for i, vec in enumerate(vectors):
            copy.write_row((i, vec))
    return time.perf_counter() - started


def run(n_vectors: int = 20_000, dims: int = 1536, rows_per_day: int = 100_000, days: int = 3) -> None:
    warnings.simplefilter("ignore")
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((n_vectors, dims)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with throwaway_postgres() as postgres:
        with postgres.begin() as conn:
            conn.exec_driver_sql(
                f"CREATE TABLE scale_vectors (id int8 PRIMARY KEY, embedding vector({dims}))"
            )
            copy_s = _copy_vectors(conn, vectors)
        mb = n_vectors * (dims * 4 + 8) / 1e6
        print(
            f"COPY binary: {n_vectors:,} x {dims}-dim vectors in {copy_s:.2f} s = {n_vectors / copy_s:,.0f} rows/s, {mb / copy_s:.1f} MB/s"
        )
        with postgres.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("SET maintenance_work_mem = '256MB'")
            conn.exec_driver_sql("SET max_parallel_maintenance_workers = 1")
            started = time.perf_counter()
            conn.exec_driver_sql(
                "CREATE INDEX scale_hnsw ON scale_vectors USING hnsw (embedding vector_cosine_ops)"
                " WITH (m = 16, ef_construction = 64)"
            )
            build_s = time.perf_counter() - started
            size = int(conn.exec_driver_sql("SELECT pg_relation_size('scale_hnsw')").scalar_one())
            table = int(conn.exec_driver_sql("SELECT pg_table_size('scale_vectors')").scalar_one())
        print(
            f"HNSW build (m=16, ef_construction=64, 256MB, 1 worker): {n_vectors:,} vectors in {build_s:.1f} s"
            f" = {n_vectors / build_s:,.0f} vectors/s; index {size / 1e6:.0f} MB ({size / n_vectors:,.0f} B/vector),"
            f" table {table / 1e6:.0f} MB ({table / n_vectors:,.0f} B/row)"
        )

        end_day = dt.date(2025, 6, 30)
        with postgres.begin() as conn:
            started = time.perf_counter()
            loaded = load_demo_dialogue(
                conn, days=days, end_day=end_day, seed=1, rows_per_day=rows_per_day, volume_jitter=0.0
            )
            load_s = time.perf_counter() - started
        with postgres.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE ai_dialogue_log")
            log_bytes = int(
                conn.exec_driver_sql("SELECT pg_total_relation_size('ai_dialogue_log')").scalar_one()
            )
        print(
            f"dialogue log: {loaded.rows:,} rows generated and loaded in {load_s:.1f} s"
            f" ({loaded.rows / load_s:,.0f} rows/s); {log_bytes / loaded.rows:,.0f} B/row with indexes"
        )
        start = dt.datetime.combine(end_day, dt.time(), JST)
        for label, window_start in (("1 day", start), (f"{days} days", start - dt.timedelta(days=days - 1))):
            with postgres.begin() as conn:
                refresh_rag_metrics(conn, window_start, start + dt.timedelta(days=1))  # warm
                started = time.perf_counter()
                refresh_rag_metrics(conn, window_start, start + dt.timedelta(days=1))
                took = time.perf_counter() - started
            print(f"metrics pass over {label} ({rows_per_day:,} rows/day): {took:.2f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--vectors", type=int, default=20_000)
    parser.add_argument("--rows-per-day", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=3)
    args = parser.parse_args()
    run(args.vectors, rows_per_day=args.rows_per_day, days=args.days)
