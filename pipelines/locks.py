"""Every advisory lock the project takes: one registry of keys, one way to take them.

The keys are shared by every process that works on the same database: changing a value breaks the
mutual exclusion between an old and a new deployment running side by side, so values never change.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import time
from collections.abc import Iterator

import sqlalchemy as sa

from pipelines.sql import query


class Lock(enum.IntEnum):
    # Migrations: one migrating process at a time (session lock across the per-migration transactions).
    MIGRATION = 7_300_120_001
    # Retention: sweep batches exclusive, ingestion batches shared (so tombstones are never a commit behind).
    RETENTION = 7_300_120_004
    # Model registry: switches, re-openings and clean-ups of embedding models.
    REEMBEDDING = 7_300_120_005
    # Metrics: a day's computation and an erasure batch (its deletion and recomputation) never interleave.
    METRICS = 7_300_120_014


def index_lock_key(index_name: str) -> int:
    """The key of one HNSW index's build lock: derived from its name (a signed 64-bit key), so that
    builds of different models' indexes never wait for each other."""
    return int.from_bytes(hashlib.sha256(index_name.encode()).digest()[:8], "big", signed=True)


def embedding_lock_key(model: str) -> int:
    """The key of one model's embedding lock: two runs embedding the same model take turns, so the second
    finds the first one's vectors (reused by hash) instead of paying for every text again."""
    return index_lock_key(f"embed\x00{model}")


def _key(lock: Lock | int) -> int:
    # int(): psycopg would dump a bare Enum member by name.
    return int(lock)


def xact_lock(conn: sa.Connection, lock: Lock | int, *, shared: bool = False) -> None:
    """Take the lock until the end of the connection's current transaction (which the caller owns)."""
    statement = query("db/acquire_xact_lock_shared") if shared else query("db/acquire_xact_lock")
    conn.execute(statement, {"key": _key(lock)})


@contextlib.contextmanager
def session_lock(conn: sa.Connection, lock: Lock | int, *, poll_s: float = 0.1) -> Iterator[None]:
    """Hold the lock across transactions for the block; taking and releasing it are committed at once,
    so the block starts and ends without an open transaction of the lock's own.

    A waiter polls `pg_try_advisory_lock`, one short statement at a time, rather than blocking inside
    `pg_advisory_lock`: a blocked statement keeps its snapshot, and a `CREATE INDEX CONCURRENTLY` run by
    the holder waits for every snapshot older than it, which made two concurrent runs deadlock."""
    while True:
        acquired = conn.execute(query("db/try_session_lock"), {"key": _key(lock)}).scalar_one()
        conn.commit()
        if acquired:
            break
        time.sleep(poll_s)
    try:
        yield
    finally:
        conn.execute(query("db/release_session_lock"), {"key": _key(lock)})
        conn.commit()
