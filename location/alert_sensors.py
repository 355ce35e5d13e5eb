"""Alert sensors: SLO check failures, embedding failure rates and failed jobs, sent to the webhook.

They read what runs already recorded in the Dagster instance (asset check evaluations, materialization
metadata, run status), so a webhook that is down, slow or wrong never touches a pipeline run. Every
alert is claimed in `alerts_sent` before it is sent, which is what keeps a re-run day or a repeated
tick from notifying twice.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Mapping
from typing import Any, cast
from zoneinfo import ZoneInfo

import dagster as dg
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from pipelines.alerts import DeliveryReport, raise_alerts
from pipelines.lib import slo
from pipelines.lib.alerts import (
    Alert,
    RunOutcome,
    embedding_failure_alert,
    failure_streak,
    job_failure_alert,
    metric_alerts,
    retrieval_quality_alert,
)
from pipelines.lib.timezone import BUSINESS_TIMEZONE
from resources.alerts import AlertsResource
from resources.postgres import PostgresResource

METRICS_ASSET = dg.AssetKey("rag_metrics_history")
RETRIEVAL_CHECK = dg.AssetCheckKey(dg.AssetKey("retrieval_quality"), "retrieval_quality_holds")
# Both embedding assets report chunks_embedded / chunks_failed for the run.
EMBEDDING_ASSETS = (dg.AssetKey("chunk_embeddings"), dg.AssetKey("reembedding"))
DEFAULT_THRESHOLDS = {t.name: t for t in slo.default_thresholds()}
# How much history one tick reads per check or asset; a first tick sends at most this backlog.
BATCH = 100
NOT_CONFIGURED = "ALERT_WEBHOOK_URL is not set: no alerts are sent (or recorded)"


def _jst_day(timestamp: float) -> dt.date:
    return dt.datetime.fromtimestamp(timestamp, ZoneInfo(BUSINESS_TIMEZONE)).date()


def _threshold(check_name: str, metadata: Mapping[str, Any]) -> slo.AlertThreshold | None:
    """The levels the check judged (from its metadata); the defaults for evaluations that predate them."""
    levels = metadata.get("levels")
    if levels is None:
        return DEFAULT_THRESHOLDS.get(check_name)
    data = levels.value
    return slo.AlertThreshold(
        check_name, data["column"], data["direction"], float(data["warn"]), float(data["error"]), data["unit"]
    )


def _failed_evaluations(
    instance: dg.DagsterInstance, key: dg.AssetCheckKey, after_id: int
) -> tuple[list[tuple[Any, dg.AssetCheckEvaluation]], int]:
    """(record, evaluation) of each failed evaluation of `key` recorded after `after_id`, and the new
    high-water mark."""
    found: list[tuple[Any, dg.AssetCheckEvaluation]] = []
    high = after_id
    records = instance.event_log_storage.get_asset_check_execution_history(
        key, limit=BATCH, status={AssetCheckExecutionRecordStatus.FAILED}
    )
    for record in records:
        if record.id <= after_id or record.event is None or record.event.dagster_event is None:
            continue
        high = max(high, record.id)
        evaluation = record.event.dagster_event.event_specific_data
        if isinstance(evaluation, dg.AssetCheckEvaluation):
            found.append((record, evaluation))
    return found, high


def slo_check_alerts(instance: dg.DagsterInstance, after_id: int, ui_url: str) -> tuple[list[Alert], int]:
    """Alerts from failed SLO check evaluations recorded after `after_id`, and the new high-water mark."""
    alerts: list[Alert] = []
    high = after_id
    for name in DEFAULT_THRESHOLDS:
        found, seen = _failed_evaluations(instance, dg.AssetCheckKey(METRICS_ASSET, name), after_id)
        high = max(high, seen)
        for record, evaluation in found:
            metadata = evaluation.metadata
            threshold = _threshold(name, metadata)
            breaches = metadata.get("breaches")
            if threshold is None or breaches is None:
                continue
            days = cast(list[Mapping[str, Any]], breaches.value)
            alerts += metric_alerts(threshold, days, run_id=record.run_id, ui_url=ui_url)
    return alerts, high


def retrieval_quality_alerts(
    instance: dg.DagsterInstance, after_id: int, ui_url: str
) -> tuple[list[Alert], int]:
    """Warnings from failed retrieval_quality_holds evaluations recorded after `after_id`."""
    found, high = _failed_evaluations(instance, RETRIEVAL_CHECK, after_id)
    alerts = []
    for record, evaluation in found:
        meta = evaluation.metadata
        alerts.append(
            retrieval_quality_alert(
                RETRIEVAL_CHECK.asset_key.to_user_string(),
                record.run_id,
                model=cast(str, meta["model"].value),
                recall_at_k=cast(float, meta["recall_at_k"].value),
                floor=cast(float, meta["floor"].value),
                reasons=evaluation.description or "",
                day=_jst_day(record.create_timestamp),
                ui_url=ui_url,
            )
        )
    return alerts, high


def embedding_alerts(
    instance: dg.DagsterInstance, after: Mapping[str, int], ui_url: str
) -> tuple[list[Alert], dict[str, int]]:
    """Alerts from embedding materializations recorded after the per-asset storage ids in `after`."""
    alerts: list[Alert] = []
    high = dict(after)
    for asset in EMBEDDING_ASSETS:
        name = asset.to_user_string()
        result = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=asset, after_storage_id=after.get(name)),
            limit=BATCH,
            ascending=True,
        )
        for record in result.records:
            high[name] = max(high.get(name, 0), record.storage_id)
            materialization = record.asset_materialization
            if materialization is None:
                continue
            meta = materialization.metadata
            if "chunks_failed" not in meta or "chunks_embedded" not in meta:
                continue
            alert = embedding_failure_alert(
                name,
                record.run_id,
                chunks_failed=cast(int, meta["chunks_failed"].value),
                chunks_embedded=cast(int, meta["chunks_embedded"].value),
                day=_jst_day(record.timestamp),
                ui_url=ui_url,
            )
            if alert is not None:
                alerts.append(alert)
    return alerts, high


def _deliver(
    log: logging.Logger | dg.DagsterLogManager,
    postgres: PostgresResource,
    alerts: AlertsResource,
    found: list[Alert],
) -> DeliveryReport:
    notifier = alerts.notifier()
    with postgres.connect() as conn:
        report = raise_alerts(conn, notifier, found, policy=alerts.policy(), log=log.warning)
    for key in report.sent:
        log.debug(f"alert sent: {key}")
    return report


@dg.sensor(
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Sends rag_metrics_history's failed SLO checks (one alert per JST day and metric), embedding"
    " runs with more than 5 % failed chunks and failed retrieval_quality_holds checks to ALERT_WEBHOOK_URL;"
    " retries what could not be delivered.",
)
def metric_alerts_sensor(
    context: dg.SensorEvaluationContext, postgres: PostgresResource, alerts: AlertsResource
) -> dg.SkipReason:
    if not alerts.enabled:
        return dg.SkipReason(NOT_CONFIGURED)
    cursor = json.loads(context.cursor) if context.cursor else {}
    found, checks_high = slo_check_alerts(context.instance, int(cursor.get("checks", 0)), alerts.ui_url)
    more, embeddings_high = embedding_alerts(context.instance, cursor.get("embeddings", {}), alerts.ui_url)
    quality, quality_high = retrieval_quality_alerts(
        context.instance, int(cursor.get("quality", 0)), alerts.ui_url
    )
    report = _deliver(context.log, postgres, alerts, found + more + quality)
    # The cursor moves even when delivery failed: the claimed alerts wait in alerts_sent as pending.
    context.update_cursor(
        json.dumps({"checks": checks_high, "embeddings": embeddings_high, "quality": quality_high})
    )
    return dg.SkipReason(f"alerts: {report.describe()}")


@dg.run_failure_sensor(
    name="job_failure_alert_sensor",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="A job's first failure is a warning, its second consecutive failure critical; a success resets"
    " the count. Sent to ALERT_WEBHOOK_URL.",
)
def job_failure_alert_sensor(
    context: dg.RunFailureSensorContext, postgres: PostgresResource, alerts: AlertsResource
) -> dg.SkipReason | None:
    if not alerts.enabled:
        return dg.SkipReason(NOT_CONFIGURED)
    run = context.dagster_run
    records = context.instance.get_run_records(
        filters=dg.RunsFilter(
            job_name=run.job_name, statuses=[dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE]
        ),
        limit=BATCH,
    )
    history = [
        RunOutcome(r.dagster_run.run_id, r.dagster_run.status == dg.DagsterRunStatus.FAILURE) for r in records
    ]
    ids = [h.run_id for h in history]
    # Only runs up to this one count, so a tick that catches up late judges each failure as it stood.
    history = history[ids.index(run.run_id) :] if run.run_id in ids else [RunOutcome(run.run_id, True)]
    failed_at = records[ids.index(run.run_id)].end_time if run.run_id in ids else None
    alert = job_failure_alert(
        run.job_name,
        failure_streak(history),
        day=_jst_day(failed_at or time.time()),
        ui_url=alerts.ui_url,
    )
    report = _deliver(context.log, postgres, alerts, [alert] if alert else [])
    return dg.SkipReason(f"alerts: {report.describe()}")
