"""Which alerts to raise and what they say: the seed's alert table as pure functions.

| alert                 | warning                      | critical                         |
| --------------------- | ---------------------------- | -------------------------------- |
| citation rate         | < 65 %                       | < 60 %                           |
| latency p95           | > 3.5 s                      | > 5 s                            |
| cost per answer       | > 3.5 JPY                    | > 5 JPY                          |
| batch job failure     | first failure of a job       | second consecutive failure       |
| embedding failures    |                              | > 5 % of the chunks a run tried  |

The metric levels are `pipelines.lib.slo`'s thresholds (what the asset checks judge); this module only
turns a crossing into an alert with one stable deduplication key, and an alert into a webhook body.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

from pipelines.lib import slo

AlertSeverity = Literal["warning", "critical"]
WARNING: AlertSeverity = "warning"
CRITICAL: AlertSeverity = "critical"
Kind = Literal["metric", "job_failure", "embedding_failures", "retrieval_quality"]
# A run whose failed share of the chunks it tried exceeds this is critical (strictly greater).
EMBEDDING_FAILURE_CRITICAL_SHARE = 0.05
DEFAULT_UI_URL = "http://127.0.0.1:3000"

_SEVERITY: dict[str, AlertSeverity] = {slo.WARN: "warning", slo.ERROR: "critical"}
_UNITS = {"citation_rate": "%", "latency_p95": "ms", "cost_per_answer": "JPY"}


@dataclass(frozen=True)
class Alert:
    dedup_key: str  # one alert per key, ever
    kind: Kind
    severity: AlertSeverity
    metric: str
    value: float | None
    threshold: float | None
    comparison: str  # "below" / "above": how value relates to threshold
    unit: str
    day: dt.date | None  # the Asia/Tokyo day the alert is about
    summary: str
    run_id: str | None = None
    job_name: str | None = None
    run_url: str | None = None
    asset_url: str | None = None

    @property
    def link(self) -> str | None:
        return self.run_url or self.asset_url


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "–"
    if unit == "JPY":
        return f"{value:,.2f} JPY"
    if unit == "ms":
        return f"{value:,.1f} ms"
    if unit == "%":
        return f"{value:.2f} %"
    return f"{value:g}{(' ' + unit) if unit else ''}"


def run_url(ui_url: str, run_id: str) -> str:
    return f"{ui_url.rstrip('/')}/runs/{run_id}"


def asset_url(ui_url: str, asset: str, partition: str | None = None) -> str:
    url = f"{ui_url.rstrip('/')}/assets/{quote(asset)}"
    return f"{url}?partition={quote(partition)}" if partition else url


def metric_alerts(
    threshold: slo.AlertThreshold,
    breaches: Iterable[Mapping[str, Any]],
    *,
    run_id: str | None,
    ui_url: str = DEFAULT_UI_URL,
    asset: str = "rag_metrics_history",
) -> list[Alert]:
    """One alert per breaching day of one threshold, from the check's `breaches` [{date, value, severity}].

    The severity is re-derived from the value with `slo.classify`, so the alert and the check agree by
    construction; the threshold named is the level the value crossed (the critical one if both).
    """
    alerts = []
    unit = _UNITS.get(threshold.name, threshold.unit.strip())
    for breach in breaches:
        value = float(breach["value"])
        level = slo.classify(value, threshold)
        if level is None:
            continue
        severity = _SEVERITY[level]
        crossed = threshold.error if level == slo.ERROR else threshold.warn
        day = dt.date.fromisoformat(str(breach["date"]))
        sign = "<" if threshold.direction == "below" else ">"
        alerts.append(
            Alert(
                dedup_key=f"metric:{day.isoformat()}:{threshold.name}",
                kind="metric",
                severity=severity,
                metric=threshold.name,
                value=value,
                threshold=crossed,
                comparison=threshold.direction,
                unit=unit,
                day=day,
                summary=(
                    f"{threshold.name} on {day.isoformat()} (JST) was {_fmt(value, unit)}:"
                    f" {sign} {_fmt(crossed, unit)} is {severity}"
                ),
                run_id=run_id,
                run_url=run_url(ui_url, run_id) if run_id else None,
                asset_url=asset_url(ui_url, asset, day.isoformat()),
            )
        )
    return alerts


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    failed: bool


def failure_streak(history: Sequence[RunOutcome]) -> list[str]:
    """The run ids of the consecutive failures ending at `history[0]`, oldest first.

    `history` is one job's finished runs, newest first, starting with the run just finished; a
    success ends the streak (and so resets the count for the next failure).
    """
    streak = []
    for outcome in history:
        if not outcome.failed:
            break
        streak.append(outcome.run_id)
    return list(reversed(streak))


def job_failure_alert(
    job_name: str,
    streak: Sequence[str],
    *,
    day: dt.date,
    error: str | None = None,
    ui_url: str = DEFAULT_UI_URL,
) -> Alert | None:
    """Warning on a job's first failure, critical on the second in a row; none for later ones.

    The key names the streak's first run and the severity, so one streak alerts at most twice however
    many times the sensor sees its runs.
    """
    if not streak:
        return None
    count = len(streak)
    severity: AlertSeverity = WARNING if count == 1 else CRITICAL
    run_id = streak[-1]
    summary = f"job {job_name} failed ({count} consecutive failure{'s' if count > 1 else ''}): {severity}"
    if error:
        summary += f" — {error}"
    return Alert(
        dedup_key=f"job_failure:{job_name}:{streak[0]}:{severity}",
        kind="job_failure",
        severity=severity,
        metric="consecutive_failures",
        value=float(count),
        threshold=1.0 if severity == WARNING else 2.0,
        comparison="at least",
        unit="",
        day=day,
        summary=summary,
        run_id=run_id,
        job_name=job_name,
        run_url=run_url(ui_url, run_id),
    )


def embedding_failure_alert(
    asset: str,
    run_id: str,
    *,
    chunks_failed: int,
    chunks_embedded: int,
    day: dt.date,
    ui_url: str = DEFAULT_UI_URL,
) -> Alert | None:
    """Critical when more than 5 % of the chunks a run tried to embed failed.

    The denominator is the chunks this run sent or rejected (embedded + failed): chunks skipped as
    already embedded or reused by content hash were never at risk, and counting them would hide a run
    whose every request failed behind a large, unchanged corpus.
    """
    attempted = chunks_failed + chunks_embedded
    if attempted <= 0:
        return None
    share = chunks_failed / attempted
    if not share > EMBEDDING_FAILURE_CRITICAL_SHARE:
        return None
    pct = 100.0 * share
    return Alert(
        dedup_key=f"embedding_failures:{asset}:{run_id}",
        kind="embedding_failures",
        severity=CRITICAL,
        metric="embedding_failure_rate",
        value=pct,
        threshold=100.0 * EMBEDDING_FAILURE_CRITICAL_SHARE,
        comparison="above",
        unit="%",
        day=day,
        summary=(
            f"{asset}: {chunks_failed} of {attempted} chunks failed to embed ({pct:.2f} %):"
            f" > {100.0 * EMBEDDING_FAILURE_CRITICAL_SHARE:g} % is critical"
        ),
        run_id=run_id,
        run_url=run_url(ui_url, run_id),
        asset_url=asset_url(ui_url, asset),
    )


def retrieval_quality_alert(
    asset: str,
    run_id: str,
    *,
    model: str,
    recall_at_k: float,
    floor: float,
    reasons: str,
    day: dt.date,
    ui_url: str = DEFAULT_UI_URL,
) -> Alert:
    """A warning: the evaluation check found search quality below its floor or fallen since the last run."""
    return Alert(
        dedup_key=f"retrieval_quality:{asset}:{run_id}",
        kind="retrieval_quality",
        severity=WARNING,
        metric="retrieval_recall_at_k",
        value=recall_at_k,
        threshold=floor,
        comparison="below",
        unit="",
        day=day,
        summary=f"{asset}: retrieval quality of {model} dropped: {reasons}",
        run_id=run_id,
        run_url=run_url(ui_url, run_id),
        asset_url=asset_url(ui_url, asset),
    )


def _number(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else value


def json_payload(alert: Alert) -> dict[str, Any]:
    """The generic webhook body: every field of the alert, flat, plus a one-line `text`."""
    return {
        "source": "rag-etl",
        "text": alert.summary,
        "severity": alert.severity,
        "kind": alert.kind,
        "day": alert.day.isoformat() if alert.day else None,
        "timezone": "Asia/Tokyo",
        "metric": alert.metric,
        "value": _number(alert.value),
        "threshold": _number(alert.threshold),
        "comparison": alert.comparison,
        "unit": alert.unit,
        "job": alert.job_name,
        "run_id": alert.run_id,
        "run_url": alert.run_url,
        "asset_url": alert.asset_url,
        "dedup_key": alert.dedup_key,
    }


def slack_payload(alert: Alert) -> dict[str, Any]:
    """Slack's incoming-webhook body (`text` + `blocks`), which Mattermost and Rocket.Chat also accept."""
    icon = ":red_circle:" if alert.severity == CRITICAL else ":warning:"
    fields = [
        f"*Severity*\n{alert.severity}",
        f"*Day (JST)*\n{alert.day.isoformat() if alert.day else '–'}",
        f"*Metric*\n{alert.metric}",
        f"*Value*\n{_fmt(alert.value, alert.unit)}",
        f"*Threshold*\n{alert.comparison} {_fmt(alert.threshold, alert.unit)}",
    ]
    if alert.job_name:
        fields.append(f"*Job*\n{alert.job_name}")
    links = []
    if alert.run_url:
        links.append(f"<{alert.run_url}|Run in Dagster>")
    if alert.asset_url:
        links.append(f"<{alert.asset_url}|Asset in Dagster>")
    blocks: list[dict[str, Any]] = [
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": f"{icon} *rag-etl {alert.severity}*: {alert.summary}"},
        },
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
    ]
    if links:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(links)}]})
    return {"text": f"rag-etl {alert.severity}: {alert.summary}", "blocks": blocks}


# The registry of webhook bodies (ALERT_WEBHOOK_FORMAT): adding one is a function above and a line here.
PAYLOADS: dict[str, Callable[[Alert], dict[str, Any]]] = {
    "slack": slack_payload,
    "json": json_payload,
}
FORMATS = tuple(PAYLOADS)


def checked_format(fmt: str) -> str:
    """`fmt` when it is a registered format, else a clear error naming the ones there are."""
    if fmt not in PAYLOADS:
        raise ValueError(f"ALERT_WEBHOOK_FORMAT must be one of {', '.join(FORMATS)}, got {fmt!r}")
    return fmt


def payload(alert: Alert, fmt: str) -> dict[str, Any]:
    return PAYLOADS[checked_format(fmt)](alert)
