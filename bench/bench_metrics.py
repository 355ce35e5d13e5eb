"""Metrics backfill: one single-run backfill vs one run per day, over a year of dialogue log.

Both sides run the real asset through Dagster (in process, one ephemeral instance) on a throwaway
embedded Postgres loaded with the demo generator; the per-day runs are the baseline, measured in the
same process on the same data. The same comparison without Dagster (the SQL alone) is printed too,
to show how much of the gap is the aggregate itself rather than run overhead.

    python -m bench.bench_metrics [--days 365] [--rows-per-day 10000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
import sqlalchemy as sa
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from assets.metrics import ai_dialogue_log, rag_metrics_history
from assets.partitions import METRICS_TIMEZONE, daily_jst_partitions
from bench.common import report, throwaway_postgres
from demo.dialogue import load_demo_dialogue
from pipelines.metrics import refresh_rag_metrics
from pipelines.sql import query
from resources.postgres import PostgresResource

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _last_days(days: int) -> Sequence[str]:
    keys = daily_jst_partitions.get_partition_keys()
    if len(keys) < days:
        raise SystemExit(
            f"only {len(keys)} JST day partitions exist from {keys[0] if keys else '?'}; "
            f"set METRICS_START_DATE earlier to bench {days} days"
        )
    return keys[-days:]


def _snapshot(postgres: PostgresResource) -> Sequence[sa.Row[Any]]:
    with postgres.connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT date, total_queries, unique_users, citation_count, citation_rate, unique_sources_count,"
                " latency_p50_ms, latency_p95_ms, latency_p99_ms, total_cost, cost_per_answer,"
                " average_relevance_score, positive_votes_rate, slo_compliance FROM rag_metrics_history ORDER BY date"
            )
        ).all()


PROCESS_RUNS = 5


def _process_run_seconds(postgres: PostgresResource, keys: Sequence[str]) -> float:
    """Mean wall time of `dagster asset materialize` for one day, a fresh process per run."""
    with tempfile.TemporaryDirectory(prefix="bench-metrics-home-") as home:
        env = {**os.environ, "DATABASE_URL": postgres.url, "DAGSTER_HOME": home}
        started = time.perf_counter()
        for key in keys:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "dagster",
                    "asset",
                    "materialize",
                    "-m",
                    "location.definitions",
                    "--select",
                    "rag_metrics_history",
                    "--partition",
                    key,
                ],
                env=env,
                check=True,
                capture_output=True,
            )
        return (time.perf_counter() - started) / len(keys)


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


# `make bench` keeps to ten minutes at 90 days x 2,000 rows; BENCH_SCALE=full runs a year of 10,000 a day.
FULL = os.environ.get("BENCH_SCALE") == "full"
DAYS = 365 if FULL else 90
ROWS_PER_DAY = 10_000 if FULL else 2_000


def run(days: int = DAYS, rows_per_day: int = ROWS_PER_DAY) -> list[tuple[str, float, float]]:
    """Return (what, measured, baseline) triples, after printing them as ratios."""
    keys = _last_days(days)
    tz = ZoneInfo(METRICS_TIMEZONE)
    results: list[tuple[str, float, float]] = []
    with throwaway_postgres() as postgres:
        load_started = time.perf_counter()
        with postgres.begin() as conn:
            loaded = load_demo_dialogue(
                conn,
                days=days,
                end_day=dt.date.fromisoformat(keys[-1]),
                seed=2025,
                rows_per_day=rows_per_day,
                volume_jitter=0.0,
            )
        load_s = time.perf_counter() - load_started
        # A nightly run reads pages written long before: vacuumed (hint bits set, all-visible, so
        # index-only scans need no heap visit) and analyzed. Without this the first run after the
        # bulk COPY pays for setting hint bits on the whole year, which is not the metric's cost.
        vacuum_started = time.perf_counter()
        with postgres.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE ai_dialogue_log"))
        vacuum_s = time.perf_counter() - vacuum_started
        rows = loaded.rows
        print(
            f"metrics bench: loaded {rows:,} dialogue rows over {days} JST days in {load_s:.1f} s "
            f"({rows / load_s:,.0f} rows/s by COPY, generation included); "
            f"VACUUM ANALYZE after loading {vacuum_s:.1f} s, not timed below"
        )

        instance = dg.DagsterInstance.ephemeral()
        assets: list[dg.AssetsDefinition | dg.AssetSpec] = [ai_dialogue_log, rag_metrics_history]
        resources = {"postgres": postgres}

        def single_run() -> None:
            tags = {ASSET_PARTITION_RANGE_START_TAG: keys[0], ASSET_PARTITION_RANGE_END_TAG: keys[-1]}
            dg.materialize(assets, resources=resources, instance=instance, tags=tags, run_config=QUIET)

        def per_day_runs() -> None:
            for key in keys:
                dg.materialize(
                    assets, resources=resources, instance=instance, partition_key=key, run_config=QUIET
                )

        # Both sides are timed with the window's index pages already read once: the per-day runs go
        # second and would otherwise find in cache what the single run had to read from disk.
        first, last = (daily_jst_partitions.time_window_for_partition_key(k) for k in (keys[0], keys[-1]))
        with postgres.connect() as conn:
            warm_up_s = _timed(
                lambda: conn.execute(
                    query("metrics/compute_rag_metrics"),
                    {
                        "start_day": first.start.astimezone(tz).date(),
                        "end_day": last.end.astimezone(tz).date(),
                        "window_start": first.start,
                        "window_end": last.end,
                        "tz": METRICS_TIMEZONE,
                    },
                ).all()
            )
        print(f"metrics bench: one untimed read-only pass over the window first ({warm_up_s:.2f} s)")

        single_s = _timed(single_run)
        single_rows = _snapshot(postgres)
        per_day_s = _timed(per_day_runs)
        if _snapshot(postgres) != single_rows:
            raise AssertionError("the single-run backfill and the per-day runs stored different metrics")
        process_per_run_s = _process_run_seconds(postgres, keys[-PROCESS_RUNS:])

        window = [daily_jst_partitions.time_window_for_partition_key(k) for k in keys]

        def sql_single() -> None:
            with postgres.begin() as conn:
                refresh_rag_metrics(conn, window[0].start, window[-1].end, timezone=METRICS_TIMEZONE)

        def sql_per_day() -> None:
            for w in window:
                with postgres.begin() as conn:
                    refresh_rag_metrics(conn, w.start, w.end, timezone=METRICS_TIMEZONE)

        sql_single_s = _timed(sql_single)
        sql_per_day_s = _timed(sql_per_day)
        assert window[0].start.astimezone(tz).date().isoformat() == keys[0]

    label = f"{days}d x {rows_per_day // 1000}k rows"
    report(
        f"metrics backfill {label}, single run",
        single_s,
        "s",
        per_day_s,
        "one run per day",
        per_day_s / single_s,
        ">= 10x faster",
    )
    report(
        f"metrics rows aggregated/s {label}",
        rows / single_s,
        "rows/s",
        rows / per_day_s,
        "one run per day",
        per_day_s / single_s,
        "rows/s reported",
    )
    # A backfill without the single-run policy launches one run per day, each in its own process the way
    # the run launcher starts them; a few such runs are timed and scaled to the range.
    process_total = process_per_run_s * days
    report(
        f"metrics backfill {label}, single run",
        single_s,
        "s",
        process_total,
        f"1 process/day, {PROCESS_RUNS} timed x{days / PROCESS_RUNS:.0f}",
        process_total / single_s,
        "(how a UI backfill would run without single_run)",
    )
    report(
        f"metrics SQL only {label}, one pass",
        sql_single_s,
        "s",
        sql_per_day_s,
        "one pass per day",
        sql_per_day_s / sql_single_s,
        "(diagnostic)",
    )
    results.append((f"metrics backfill {label} (s, single run vs per-day runs)", single_s, per_day_s))
    results.append(
        (f"metrics rows aggregated per second {label} (single vs per-day)", rows / single_s, rows / per_day_s)
    )
    results.append((f"metrics SQL only {label} (s, one pass vs per day)", sql_single_s, sql_per_day_s))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=DAYS)
    parser.add_argument("--rows-per-day", type=int, default=ROWS_PER_DAY)
    args = parser.parse_args()
    run(days=args.days, rows_per_day=args.rows_per_day)


if __name__ == "__main__":
    main()
