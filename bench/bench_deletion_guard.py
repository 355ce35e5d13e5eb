"""The mass-deletion guard's price on the run that matters most, an unchanged re-sync of the tldr corpus: the
one query it adds there (each source's stored count) beside the whole sync, measured in the same run."""

from __future__ import annotations

import statistics
import time

from bench.common import report, throwaway_postgres, tldr_corpus
from pipelines.sources import sync_documents
from pipelines.sql import query

ROUNDS = 7
COUNTS_PER_ROUND = 5


def run() -> None:
    corpus = tldr_corpus()
    with throwaway_postgres() as postgres:
        engine = postgres.engine
        sync_documents(engine, corpus)
        syncs, counts = [], []
        for _ in range(ROUNDS):
            started = time.perf_counter()
            stats = sync_documents(engine, corpus)
            syncs.append(time.perf_counter() - started)
            assert stats.inserted_or_updated == stats.deleted == 0, "an unchanged re-sync changed something"
            for _ in range(COUNTS_PER_ROUND):
                with engine.begin() as conn:
                    started = time.perf_counter()
                    conn.execute(query("sources/count_documents_by_source"), {"sources": ["local"]}).all()
                    counts.append(time.perf_counter() - started)
        engine.dispose()
    sync_ms, count_ms = statistics.median(syncs) * 1000, statistics.median(counts) * 1000
    report(
        "deletion guard's count, unchanged re-sync, ms",
        count_ms,
        "ms",
        sync_ms,
        "whole unchanged sync",
        count_ms / sync_ms,
        "< 0.05",
    )
