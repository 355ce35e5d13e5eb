"""The JST daily partitions shared by the metrics asset, its job and its schedule."""

from __future__ import annotations

import datetime as dt
import os

import dagster as dg

from pipelines.lib.timezone import BUSINESS_TIMEZONE

METRICS_TIMEZONE = BUSINESS_TIMEZONE
DEFAULT_METRICS_START_DATE = "2025-01-01"


def metrics_start_date() -> str:
    """`METRICS_START_DATE` (YYYY-MM-DD), the first JST day the UI offers to backfill."""
    raw = os.environ.get("METRICS_START_DATE", "").strip() or DEFAULT_METRICS_START_DATE
    try:
        dt.date.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"METRICS_START_DATE must be a date like 2025-01-01, got {raw!r}") from None
    return raw


# end_offset=0: a day becomes a partition only once it is over in Tokyo, so nobody computes a half day.
daily_jst_partitions = dg.DailyPartitionsDefinition(
    start_date=metrics_start_date(), timezone=METRICS_TIMEZONE
)
