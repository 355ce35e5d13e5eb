"""`make bench`: every benchmark, each figure beside a baseline measured in the same run."""

from __future__ import annotations

import importlib
import json
import os
import sys
import tempfile
import time
import warnings

from bench.common import report

MODULES = [
    "bench.bench_ingest",
    "bench.bench_hnsw",
    "bench.bench_retrieval",
    "bench.bench_index_kinds",
    "bench.bench_metrics",
    "bench.bench_retention",
    "bench.bench_reembedding",
    "bench.bench_batch_embeddings",
    "bench.bench_deletion_guard",
    "bench.bench_rate_limit",
    "bench.bench_quality",
]


def main(argv: list[str]) -> int:
    warnings.simplefilter("ignore")
    total_started = time.perf_counter()
    fd, headline = tempfile.mkstemp(prefix="bench-headline-", suffix=".jsonl")
    os.close(fd)
    os.environ["BENCH_HEADLINE_FILE"] = headline
    wanted = [m for m in MODULES if not argv or any(a in m for a in argv)]
    for name in wanted:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                print(f"== {name}: not present, skipped")
                continue
            raise
        print(f"== {name} [{time.strftime('%H:%M:%S')}]", flush=True)
        started = time.perf_counter()
        module.run()
        print(f"   ({time.perf_counter() - started:.1f} s)", flush=True)
    print(f"== make bench total {time.perf_counter() - total_started:.1f} s", flush=True)
    # The headline last, where it is read: what a user's `dagster job execute` of an unchanged re-run costs.
    with open(headline, encoding="utf-8") as fh:
        lines = [line for row in fh for line in json.loads(row)]
    os.unlink(headline)
    if lines:
        print("== headline: the cold path (fresh processes, tldr corpus)", flush=True)
        for line in lines:
            report(*line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
