"""Daily RAG metrics in the database: the work behind the `rag_metrics_history` asset."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from pipelines.lib import slo
from pipelines.lib.timezone import BUSINESS_TIMEZONE as METRICS_TIMEZONE
from pipelines.locks import Lock, xact_lock
from pipelines.sql import query


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        # As a string, so numeric columns get every digit Postgres computed.
        return str(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    raise TypeError(f"cannot store {type(value).__name__} in rag_metrics_history")


def refresh_rag_metrics(
    conn: sa.Connection,
    window_start: dt.datetime,
    window_end: dt.datetime,
    *,
    timezone: str = METRICS_TIMEZONE,
    targets: slo.SloTargets | None = None,
    run_id: str | None = None,
) -> list[dict[str, Any]]:
    """Compute and store every local day in [window_start, window_end); return the rows written.

    The window must start and end at local midnights of `timezone` (a partition time window does).
    One aggregate statement reads the whole window, one statement writes all its days.
    """
    start, end = window_start.astimezone(ZoneInfo(timezone)), window_end.astimezone(ZoneInfo(timezone))
    if start.timetz().replace(tzinfo=None) != dt.time(0) or end.timetz().replace(tzinfo=None) != dt.time(0):
        raise ValueError(
            f"metrics window {start.isoformat()} .. {end.isoformat()} is not whole {timezone} days"
        )
    if end <= start:
        raise ValueError(f"metrics window {start.isoformat()} .. {end.isoformat()} is empty")
    # The query reads each day between its own local midnights, which for a window of whole days are
    # exactly the window.
    params = {"start_day": start.date(), "end_day": end.date(), "tz": timezone}
    xact_lock(conn, Lock.METRICS)
    rows = [dict(r) for r in conn.execute(query("metrics/compute_rag_metrics"), params).mappings()]
    for row in rows:
        row["slo_compliance"] = slo.evaluate_slo(row, targets or slo.SloTargets())
    conn.execute(
        query("metrics/upsert_rag_metrics_history"),
        {"rows": json.dumps(rows, default=_json_default), "run_id": run_id},
    )
    return rows


def stored_metrics_days(conn: sa.Connection, days: list[dt.date]) -> list[dict[str, Any]]:
    """The stored rows of `days`, as `refresh_rag_metrics` returns them."""
    return [
        dict(r) for r in conn.execute(query("metrics/select_rag_metrics_days"), {"days": days}).mappings()
    ]
