"""Schedules of the code location."""

from __future__ import annotations

import dagster as dg

from pipelines.lib.timezone import BUSINESS_TIMEZONE
from pipelines.location.jobs import nightly_job

# The partitions are Asia/Tokyo days, so the tick at 02:00 JST on D runs partition D-1: the last day
# that is complete, with two hours for late log writes to land.
nightly_schedule = dg.build_schedule_from_partitioned_job(
    nightly_job,
    name="nightly_schedule",
    description=f"02:00 {BUSINESS_TIMEZONE}: retention sweep, ingestion, embeddings, and yesterday's (JST)"
    " rag_metrics_history with its SLO checks.",
    hour_of_day=2,
    minute_of_hour=0,
)
