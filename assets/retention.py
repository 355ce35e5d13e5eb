"""Provenance retention: the nightly sweep that deletes expired content, with its audit trail."""

# No `from __future__ import annotations` here: Dagster resolves the config and resource parameter
# annotations of the asset function at definition time.

import datetime as dt
import time

import dagster as dg

from pipelines.retention import (
    DEFAULT_BATCH_SIZE,
    ExpiringItem,
    SweepResult,
    count_expired_unprotected,
    sweep_expired,
)
from resources.postgres import PostgresResource

GROUP = "retention"
CHECK_NAME = "no_expired_unprotected_content"


class RetentionSweepConfig(dg.Config):
    """Launch with `dry_run: true` to see what the sweep would delete: it records dry-run audit rows only."""

    dry_run: bool = False
    batch_size: int = DEFAULT_BATCH_SIZE
    expiring_window_days: int = 30


def expiring_markdown(items: list[ExpiringItem]) -> str:
    lines = [
        "| expires at | source | item | licence | retention (years) |",
        "| --- | --- | --- | --- | ---: |",
    ]
    lines += [
        f"| {i.expires_at.isoformat(timespec='seconds')} | {i.source} | `{i.source_key}` | {i.license_type or '–'}"
        f" | {i.retention_years} |"
        for i in items
    ]
    return "\n".join(lines)


# Downstream of chunk_embeddings, not just source_documents: chunking and embedding insert rows that reference
# documents, and a document swept while they run would fail their batch with a foreign-key violation. Running
# after them still sees this run's provenance (written by source_documents). By key, so that loading this
# module does not import the embedding stack.
@dg.asset(
    deps=[dg.AssetKey("chunk_embeddings")],
    group_name=GROUP,
    pool="retention",
    kinds={"postgres"},
    check_specs=[
        dg.AssetCheckSpec(
            CHECK_NAME,
            asset="retention_sweep",
            description="After the sweep, no document whose retention ended (and has no legal hold) remains.",
        )
    ],
)
def retention_sweep(
    context: dg.AssetExecutionContext, config: RetentionSweepConfig, postgres: PostgresResource
) -> dg.MaterializeResult:
    """Deletes every document whose retention has ended (acquired_at + retention_years, on the Asia/Tokyo
    calendar, at or before the sweep's start; retention set; no legal hold) together with its chunks and
    embeddings, in bounded batches that each take the retention advisory lock and write one `retention_audit`
    row and one `retention_tombstones` row per document in the same transaction, so ingestion never brings
    the same content back; kept vectors of deleted chunks with the swept texts, or whose document's retention
    ended, are purged too. A dry run records what it would delete and deletes nothing. Reports what legal
    holds kept and what expires within the next 30 days."""
    started = time.perf_counter()
    window = dt.timedelta(days=config.expiring_window_days)
    with postgres.connect() as conn:
        result = sweep_expired(
            conn,
            batch_size=config.batch_size,
            dry_run=config.dry_run,
            run_id=context.run.run_id,
            expiring_window=window,
        )
    with postgres.begin() as conn:
        remaining = count_expired_unprotected(conn, result.as_of)
    duration = time.perf_counter() - started
    verb = "would delete" if result.dry_run else "deleted"
    context.log.info(
        f"retention sweep {result.sweep_id}: {verb} {result.documents} document(s), {result.chunks} chunk(s),"
        f" {result.embeddings} embedding(s) in {result.batches} batch(es); {result.held_by_legal_hold} held"
    )
    return dg.MaterializeResult(
        metadata=sweep_metadata(result, config.expiring_window_days, duration),
        check_results=[remaining_check_result(result, remaining)],
    )


def sweep_metadata(result: SweepResult, window_days: int, duration_s: float) -> dict[str, dg.MetadataValue]:
    metadata: dict[str, dg.MetadataValue] = {
        "dry_run": dg.MetadataValue.bool(result.dry_run),
        "sweep_id": dg.MetadataValue.text(result.sweep_id),
        "as_of": dg.MetadataValue.timestamp(result.as_of),
        "deleted": dg.MetadataValue.int(0 if result.dry_run else result.documents),
        "chunks_deleted": dg.MetadataValue.int(0 if result.dry_run else result.chunks),
        "embeddings_deleted": dg.MetadataValue.int(0 if result.dry_run else result.embeddings),
        "held_by_legal_hold": dg.MetadataValue.int(result.held_by_legal_hold),
        "kept_vectors_purged": dg.MetadataValue.int(result.kept_vectors_purged),
        f"expiring_next_{window_days}_days": dg.MetadataValue.int(result.expiring_count),
        "expiring_soonest": dg.MetadataValue.md(expiring_markdown(result.expiring)),
        "batches": dg.MetadataValue.int(result.batches),
        "longest_lock_ms": dg.MetadataValue.float(round(result.longest_lock_s * 1000, 1)),
        "duration_s": dg.MetadataValue.float(round(duration_s, 3)),
    }
    if result.dry_run:
        metadata["would_delete"] = dg.MetadataValue.int(result.documents)
        metadata["would_delete_chunks"] = dg.MetadataValue.int(result.chunks)
        metadata["would_delete_embeddings"] = dg.MetadataValue.int(result.embeddings)
    return metadata


def remaining_check_result(result: SweepResult, remaining: int) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=CHECK_NAME,
        passed=remaining == 0,
        # A dry run leaves expired content by design: worth a look, not an alarm.
        severity=dg.AssetCheckSeverity.WARN if result.dry_run else dg.AssetCheckSeverity.ERROR,
        metadata={
            "expired_unprotected_remaining": dg.MetadataValue.int(remaining),
            "as_of": dg.MetadataValue.timestamp(result.as_of),
        },
    )
