"""Schedules of the code location."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from assets.partitions import daily_jst_partitions
from location.jobs import nightly_job
from pipelines.lib.timezone import BUSINESS_TIMEZONE


# The partitions are Asia/Tokyo days, so the tick at 02:00 JST on D runs partition D-1: the last day
# that is complete, with two hours for late log writes to land.
@dg.schedule(
    job=nightly_job,
    cron_schedule="0 2 * * *",
    execution_timezone=BUSINESS_TIMEZONE,
    name="nightly_schedule",
    description=f"02:00 {BUSINESS_TIMEZONE}: retention sweep, ingestion, embeddings, and yesterday's (JST)"
    " rag_metrics_history with its SLO checks.",
)
def nightly_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
    at = context.scheduled_execution_time or dt.datetime.now(dt.UTC)
    days = daily_jst_partitions.get_partition_keys(current_time=at)
    if not days:
        return dg.SkipReason(
            f"no JST day has ended since the first partition ({daily_jst_partitions.start:%Y-%m-%d})"
        )
    return dg.RunRequest(partition_key=days[-1], job_name=nightly_job.name)
