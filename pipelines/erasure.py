"""Erasure of one end user's dialogue log ("right to be forgotten"): the work behind `erasure_job`.

Rows go in bounded batches. Each batch's transaction deletes the rows, recomputes the already computed
rag_metrics_history days they belonged to and adds its counts to the erasure's audit row, so that at
every commit the metrics agree with the log and the audit says what was done, even if the job stops
between batches (a rerun finishes it). The audit row holds no user identifier.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from pipelines.lib import slo
from pipelines.lib.timezone import BUSINESS_TIMEZONE
from pipelines.locks import Lock, xact_lock
from pipelines.metrics import refresh_rag_metrics
from pipelines.sql import query

DEFAULT_BATCH_SIZE = 1000

# slo_compliance key → SloTargets field: a recomputed day keeps the targets it was computed with.
_TARGET_FIELDS = {
    "citationRate": "citation_rate_min_pct",
    "latencyP50": "latency_p50_max_ms",
    "latencyP95": "latency_p95_max_ms",
    "costPerAnswer": "cost_per_answer_max_jpy",
    "relevanceScore": "relevance_min",
}


class ErasureError(ValueError):
    pass


@dataclass
class ErasureResult:
    erasure_id: uuid.UUID
    rows_deleted: int = 0
    batches: int = 0
    days: list[dt.date] = field(default_factory=list)
    days_recomputed: list[dt.date] = field(default_factory=list)
    kept_vectors_purged: int = 0  # deleted chunks' vectors kept for reuse: an erasure keeps none


def targets_of(slo_compliance: dict[str, Any] | None) -> slo.SloTargets:
    """The SLO targets a stored slo_compliance document was evaluated with (defaults for any missing)."""
    values: dict[str, float] = {}
    for key, name in _TARGET_FIELDS.items():
        entry = (slo_compliance or {}).get(key)
        if isinstance(entry, dict) and isinstance(entry.get("target"), int | float):
            values[name] = float(entry["target"])
    return slo.SloTargets(**values)


def _recompute_days(
    conn: sa.Connection, days: list[dt.date], timezone: str, run_id: str | None
) -> list[dt.date]:
    computed = conn.execute(query("erasure/select_computed_metrics_days"), {"days": days}).all()
    tz = ZoneInfo(timezone)
    for day, compliance in computed:
        start = dt.datetime.combine(day, dt.time(0), tz)
        end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tz)
        refresh_rag_metrics(
            conn, start, end, timezone=timezone, targets=targets_of(compliance), run_id=run_id
        )
    return [day for day, _ in computed]


def erase_user_dialogue(
    conn: sa.Connection,
    user_id: str,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    run_id: str | None = None,
    requested_by: str | None = None,
    timezone: str = BUSINESS_TIMEZONE,
) -> ErasureResult:
    """Delete every ai_dialogue_log row of `user_id`, batch by batch, each batch committed with its
    metrics recomputation and audit counts. Commits on `conn`; call it outside a transaction."""
    if not user_id or not user_id.strip():
        raise ErasureError("erasure needs a non-empty user_id")
    if batch_size < 1:
        raise ErasureError(f"batch_size must be at least 1, got {batch_size}")
    if conn.in_transaction():
        conn.commit()
    result = ErasureResult(erasure_id=uuid.uuid4())
    with conn.begin():
        conn.execute(
            query("erasure/start_erasure_audit"),
            {"erasure_id": result.erasure_id, "run_id": run_id, "requested_by": requested_by},
        )
        result.kept_vectors_purged = conn.execute(query("erasure/purge_deleted_vectors")).rowcount
    while True:
        with conn.begin():
            # Before the deletion: a metrics run computing a day from rows read before this batch commits
            # would otherwise store the user's rows after this batch found no metrics row to recompute.
            xact_lock(conn, Lock.METRICS)
            deleted, days = conn.execute(
                query("erasure/delete_user_dialogue_batch"),
                {"user_id": user_id, "batch_size": batch_size, "tz": timezone},
            ).one()
            if deleted == 0:
                break
            recomputed = _recompute_days(conn, list(days), timezone, run_id)
            conn.execute(
                query("erasure/record_erasure_batch"),
                {
                    "erasure_id": result.erasure_id,
                    "rows_deleted": deleted,
                    "days": list(days),
                    "days_recomputed": recomputed,
                },
            )
        result.rows_deleted += deleted
        result.batches += 1
        result.days = sorted({*result.days, *days})
        result.days_recomputed = sorted({*result.days_recomputed, *recomputed})
        if deleted < batch_size:
            break
    with conn.begin():
        conn.execute(query("erasure/complete_erasure_audit"), {"erasure_id": result.erasure_id})
    return result
