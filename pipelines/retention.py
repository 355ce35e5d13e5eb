"""Retention sweeps in the database: the work behind the `retention_sweep` asset (see docs/retention.md)."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlalchemy as sa

from pipelines.lib.sweep_batches import first_batch_size, next_batch_size
from pipelines.locks import Lock, xact_lock
from pipelines.sql import query

# Each batch pays a fixed price (its lock query, the statement's plan, a commit that waits for the WAL flush):
# 1,000 documents (~10,000 chunks and vectors) a batch sweeps ~1.4-1.7x faster than 500 and holds its locks
# ~0.2-0.5 s on two busy cores. The size is an upper bound: a batch that held its locks longer than the
# target is followed by a smaller one (pipelines/lib/sweep_batches.py), which keeps the one-second bound
# on an overloaded server too (make bench prints the longest hold).
DEFAULT_BATCH_SIZE = 1000
EXPIRING_WINDOW = dt.timedelta(days=30)
EXPIRING_LISTED = 10
# Below every expiry, so the first keyset page starts at the beginning.
_KEYSET_START = (dt.datetime(1, 1, 1, tzinfo=dt.UTC), 0)


@dataclass(frozen=True)
class ExpiringItem:
    content_id: int
    source: str
    source_key: str
    license_type: str | None
    retention_years: int
    expires_at: dt.datetime


@dataclass
class SweepResult:
    sweep_id: str
    as_of: dt.datetime
    dry_run: bool
    documents: int = 0  # deleted, or that would be deleted in a dry run
    chunks: int = 0
    embeddings: int = 0
    batches: int = 0
    # Per batch transaction: from taking the advisory lock (row locks come after it) to the commit.
    longest_lock_s: float = 0.0
    held_by_legal_hold: int = 0
    kept_vectors_purged: int = 0  # of deleted documents whose retention ended meanwhile
    expiring_count: int = 0
    expiring: list[ExpiringItem] = field(default_factory=list)


def database_now(conn: sa.Connection) -> dt.datetime:
    """The start of the caller's transaction on the database's clock."""
    now: dt.datetime = conn.execute(query("db/select_now")).scalar_one()
    return now


def sweep_expired(
    conn: sa.Connection,
    *,
    as_of: dt.datetime | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    dry_run: bool = False,
    run_id: str | None = None,
    expiring_window: dt.timedelta = EXPIRING_WINDOW,
    on_batch: Callable[[SweepResult], None] | None = None,
) -> SweepResult:
    """Delete every document expired at `as_of` (default: the database's now at the start), one bounded
    transaction per batch, each under the retention advisory lock and writing its own audit rows.

    An error rolls back only the batch in flight: earlier batches stay committed with their audit rows.
    A dry run walks the same batches and records dry-run audit rows instead of deleting.

    Takes a connection rather than the engine so that a caller may pin session settings (a time zone, a
    statement timeout) for the whole sweep; it must arrive without an open transaction, since each batch
    commits on its own.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if conn.in_transaction():
        # Each batch must commit on its own; inheriting an open transaction would hold locks across them.
        raise RuntimeError("sweep_expired needs a connection without an open transaction")
    if as_of is None:
        with conn.begin():
            as_of = database_now(conn)
    result = SweepResult(sweep_id=str(uuid.uuid4()), as_of=as_of, dry_run=dry_run)
    # The batches commit without waiting for their WAL flush, which was a tenth of a batch's time and all of it
    # under the batch's locks; the sweep's last transaction waits instead, once for every batch (see below).
    # A crash before it loses whole batches only, each with its audit rows and tombstones, to the next sweep.
    with conn.begin():
        caller_commit_mode = conn.execute(
            query("retention/set_synchronous_commit"), {"mode": "off"}
        ).scalar_one()
    try:
        _sweep_batches(conn, result, batch_size, run_id, on_batch)
    finally:
        # A lost connection takes the setting with it; restoring would only hide the error that lost it.
        if not conn.invalidated and not conn.closed:
            with conn.begin():
                conn.execute(query("retention/set_synchronous_commit"), {"mode": caller_commit_mode})
    with conn.begin():
        # Makes this commit wait, in the caller's commit mode, for the WAL of every batch to be flushed: each
        # batch is durable once the sweep returns.
        conn.execute(query("retention/emit_sweep_marker"), {"sweep_id": result.sweep_id})
        if not dry_run:
            # Vectors kept from documents deleted from their source before they expired (each batch above
            # purges those of the texts it sweeps).
            result.kept_vectors_purged = conn.execute(
                query("retention/purge_expired_deleted_vectors"), {"as_of": as_of}
            ).rowcount
        result.held_by_legal_hold = conn.execute(
            query("retention/count_held_documents"), {"as_of": as_of}
        ).scalar_one()
        result.expiring_count, result.expiring = expiring_soon(conn, as_of, expiring_window)
    return result


def _sweep_batches(
    conn: sa.Connection,
    result: SweepResult,
    batch_size: int,
    run_id: str | None,
    on_batch: Callable[[SweepResult], None] | None,
) -> None:
    as_of, dry_run = result.as_of, result.dry_run
    after = _KEYSET_START
    size = first_batch_size(batch_size)
    while True:
        # An error rolls back only this batch's transaction.
        with conn.begin():
            xact_lock(conn, Lock.RETENTION)
            locked_at = time.perf_counter()
            params = {
                "as_of": as_of,
                "after_expires_at": after[0],
                "after_id": after[1],
                "batch_size": size,
                "sweep_id": result.sweep_id,
                "run_id": run_id,
            }
            if dry_run:
                rows = conn.execute(query("retention/record_dry_run_batch"), params).all()
                count = len(rows)
                chunks = sum(r.chunks_deleted for r in rows)
                embeddings = sum(r.embeddings_deleted for r in rows)
                last = (rows[-1].expired_at, rows[-1].content_id) if rows else None
            else:
                victims = conn.execute(query("retention/lock_expired_batch"), params).all()
                count = chunks = embeddings = 0
                last = None
                if victims:
                    done = conn.execute(
                        query("retention/delete_expired_batch"),
                        {**params, "ids": [v.content_id for v in victims]},
                    ).one()
                    count, chunks, embeddings = done.documents, int(done.chunks), int(done.embeddings)
                    last = (victims[-1].expires_at, victims[-1].content_id)
        held_for = time.perf_counter() - locked_at
        if last is None:
            break
        after = last
        result.batches += 1
        result.documents += count
        result.chunks += chunks
        result.embeddings += embeddings
        result.longest_lock_s = max(result.longest_lock_s, held_for)
        size = next_batch_size(size, batch_size, held_for)
        if on_batch is not None:
            on_batch(result)


def expiring_soon(
    conn: sa.Connection,
    as_of: dt.datetime,
    window: dt.timedelta = EXPIRING_WINDOW,
    limit: int = EXPIRING_LISTED,
) -> tuple[int, list[ExpiringItem]]:
    """How many unheld documents expire in (as_of, as_of + window], and the soonest `limit` of them."""
    rows = conn.execute(
        query("retention/select_expiring_documents"),
        {"as_of": as_of, "until": as_of + window, "limit": limit},
    ).all()
    items = [
        ExpiringItem(r.content_id, r.source, r.source_key, r.license_type, r.retention_years, r.expires_at)
        for r in rows
    ]
    return (rows[0].total if rows else 0), items


def count_expired_unprotected(conn: sa.Connection, as_of: dt.datetime) -> int:
    count: int = conn.execute(
        query("retention/count_expired_unprotected_documents"), {"as_of": as_of}
    ).scalar_one()
    return count
