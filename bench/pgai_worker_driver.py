"""Runs inside pgai's own venv (stdlib and pgai only): pgai's vectorizer `Worker` in once mode, each time the
bench asks, in one long-lived process, so pgai is timed like rag-etl's in-process job runs (its imports
paid once, outside the phases). The same as `pgai vectorizer worker --once`, minus the process start.

    python pgai_worker_driver.py DB_URL   # stdin: one line per run; stdout: "RESULT <s> ok|<error>"
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import sys
import time

import structlog
from pgai.vectorizer import Worker


def main() -> None:
    db_url = sys.argv[1]
    # The CLI's `--log-level warn`, to stderr: stdout carries only the results.
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
    )
    print("RESULT 0 ready", flush=True)
    for _ in sys.stdin:
        started = time.perf_counter()
        worker = Worker(db_url, datetime.timedelta(minutes=5), once=True)
        error = asyncio.run(worker.run())
        outcome = "ok" if error is None else f"error {error}".replace("\n", " ")
        print(f"RESULT {time.perf_counter() - started:.6f} {outcome}", flush=True)


if __name__ == "__main__":
    main()
