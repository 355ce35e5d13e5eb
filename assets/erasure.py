"""Erasure ("right to be forgotten"): the op behind `erasure_job`, launched by hand with the user's id."""

# No `from __future__ import annotations` here: Dagster resolves the config and resource parameter
# annotations of the op function at definition time.

import datetime as dt

import dagster as dg

from assets.metrics import day_metadata
from pipelines.erasure import DEFAULT_BATCH_SIZE, erase_user_dialogue
from pipelines.metrics import stored_metrics_days
from resources.postgres import PostgresResource


class ErasureConfig(dg.Config):
    """`user_id`: whose dialogue rows to delete. Kept in this run's config by Dagster, never in the
    audit row, the logs or the metadata; delete the run afterwards if its record must not keep it."""

    user_id: str
    batch_size: int = DEFAULT_BATCH_SIZE
    # who asked (a ticket, an operator); defaults to the run's `requested_by` tag
    requested_by: str | None = None


@dg.op
def erase_user_dialogue_op(
    context: dg.OpExecutionContext, config: ErasureConfig, postgres: PostgresResource
) -> dg.Output[None]:
    """Deletes the user's ai_dialogue_log rows in bounded batches, recomputes the rag_metrics_history days
    that lost rows and writes an erasure_audit row (run, requester, counts, days; no user identifier).
    It first purges every kept vector of deleted chunks (docs/deletion-safety.md): nothing ties one to a user.
    A second run for the same user deletes nothing and recomputes nothing, and is audited too."""
    requested_by = config.requested_by or context.run.tags.get("requested_by")
    with postgres.connect() as conn:
        result = erase_user_dialogue(
            conn,
            config.user_id,
            batch_size=config.batch_size,
            run_id=context.run.run_id,
            requested_by=requested_by,
        )
    record_recomputed_days(context, postgres, result.days_recomputed)
    context.log.info(
        f"erasure {result.erasure_id}: deleted {result.rows_deleted} dialogue row(s) in {result.batches}"
        f" batch(es) over {len(result.days)} day(s); recomputed {len(result.days_recomputed)} metrics day(s)"
    )
    return dg.Output(
        None,
        metadata={
            "erasure_id": dg.MetadataValue.text(str(result.erasure_id)),
            "rows_deleted": dg.MetadataValue.int(result.rows_deleted),
            "batches": dg.MetadataValue.int(result.batches),
            "days": dg.MetadataValue.json([d.isoformat() for d in result.days]),
            "days_recomputed": dg.MetadataValue.json([d.isoformat() for d in result.days_recomputed]),
            "kept_vectors_purged": dg.MetadataValue.int(result.kept_vectors_purged),
        },
    )


def record_recomputed_days(
    context: dg.OpExecutionContext, postgres: PostgresResource, days: list[dt.date]
) -> None:
    """A new materialization of each rag_metrics_history day the erasure recomputed, with that day's numbers:
    the UI shows (and plots) a partition's latest one, which would otherwise still count the erased rows."""
    with postgres.begin() as conn:
        rows = stored_metrics_days(conn, days)
    for row in rows:
        context.log_event(
            dg.AssetMaterialization(
                asset_key="rag_metrics_history",
                partition=str(row["date"]),
                description="recomputed by erasure_job after the erased rows were deleted",
                metadata=day_metadata(row),
            )
        )
