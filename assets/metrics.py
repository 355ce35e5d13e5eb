"""Daily RAG quality metrics: `ai_dialogue_log` → `rag_metrics_history`, one partition per JST day."""

# No `from __future__ import annotations` here: Dagster resolves the config and resource parameter
# annotations of the asset function at definition time.

from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg

from assets.partitions import daily_jst_partitions
from pipelines.lib import slo
from pipelines.metrics import refresh_rag_metrics
from resources.postgres import PostgresResource

ai_dialogue_log = dg.AssetSpec(
    "ai_dialogue_log",
    description=(
        "Every question the RAG product answered: latency, cost, citations, relevance and the user's vote. "
        "Written by the application, not by Dagster; the metrics read it by created_at window."
    ),
    group_name="metrics",
    kinds={"postgres"},
)

CHECK_DESCRIPTIONS = {t.name: t.describe() for t in slo.default_thresholds()}


class RagMetricsConfig(dg.Config):
    """SLO targets (stored in each row's slo_compliance) and alert thresholds (the asset checks)."""

    citation_rate_min_pct: float = slo.SloTargets.citation_rate_min_pct
    latency_p50_max_ms: float = slo.SloTargets.latency_p50_max_ms
    latency_p95_max_ms: float = slo.SloTargets.latency_p95_max_ms
    cost_per_answer_max_jpy: float = slo.SloTargets.cost_per_answer_max_jpy
    relevance_min: float = slo.SloTargets.relevance_min
    citation_rate_warn_below_pct: float = slo.AlertLevels.citation_rate_warn_below_pct
    citation_rate_error_below_pct: float = slo.AlertLevels.citation_rate_error_below_pct
    latency_p95_warn_above_ms: float = slo.AlertLevels.latency_p95_warn_above_ms
    latency_p95_error_above_ms: float = slo.AlertLevels.latency_p95_error_above_ms
    cost_per_answer_warn_above_jpy: float = slo.AlertLevels.cost_per_answer_warn_above_jpy
    cost_per_answer_error_above_jpy: float = slo.AlertLevels.cost_per_answer_error_above_jpy

    def targets(self) -> slo.SloTargets:
        return slo.SloTargets(
            citation_rate_min_pct=self.citation_rate_min_pct,
            latency_p50_max_ms=self.latency_p50_max_ms,
            latency_p95_max_ms=self.latency_p95_max_ms,
            cost_per_answer_max_jpy=self.cost_per_answer_max_jpy,
            relevance_min=self.relevance_min,
        )

    def thresholds(self) -> tuple[slo.AlertThreshold, ...]:
        return slo.default_thresholds(
            citation_rate_warn_below_pct=self.citation_rate_warn_below_pct,
            citation_rate_error_below_pct=self.citation_rate_error_below_pct,
            latency_p95_warn_above_ms=self.latency_p95_warn_above_ms,
            latency_p95_error_above_ms=self.latency_p95_error_above_ms,
            cost_per_answer_warn_above_jpy=self.cost_per_answer_warn_above_jpy,
            cost_per_answer_error_above_jpy=self.cost_per_answer_error_above_jpy,
        )


def _float(value: Any, digits: int) -> float | None:
    """Rounded for display (the UI shows metadata floats as they are); the table keeps full precision."""
    return None if value is None else round(float(value), digits)


def _overall_met(row: Mapping[str, Any]) -> float | None:
    """1 / 0 rather than a bool, so the UI can plot compliance over partitions; None for no data."""
    met = row["slo_compliance"]["overallMet"]
    return None if met is None else float(met)


def _fmt(value: Any, digits: int = 1) -> str:
    return "–" if value is None else f"{float(value):,.{digits}f}"


def days_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    lines = [
        "| date | queries | p50 ms | p95 ms | p99 ms | citation % | JPY/answer | relevance | SLO met |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | :---: |",
    ]
    for r in rows:
        met = r["slo_compliance"]["overallMet"]
        lines.append(
            f"| {r['date']} | {r['total_queries']:,} | {_fmt(r['latency_p50_ms'], 0)} | {_fmt(r['latency_p95_ms'], 0)}"
            f" | {_fmt(r['latency_p99_ms'], 0)} | {_fmt(r['citation_rate'])} | {_fmt(r['cost_per_answer'], 2)}"
            f" | {_fmt(r['average_relevance_score'], 3)} | {'–' if met is None else ('yes' if met else '**no**')} |"
        )
    return "\n".join(lines)


def materialization_metadata(rows: Sequence[Mapping[str, Any]]) -> dict[str, dg.MetadataValue]:
    """Numbers the UI plots for a single day; a table of the days for a range."""
    if len(rows) == 1:
        r = rows[0]
        return {
            "date": dg.MetadataValue.text(str(r["date"])),
            "total_queries": dg.MetadataValue.int(int(r["total_queries"])),
            "latency_p50_ms": dg.FloatMetadataValue(_float(r["latency_p50_ms"], 1)),
            "latency_p95_ms": dg.FloatMetadataValue(_float(r["latency_p95_ms"], 1)),
            "latency_p99_ms": dg.FloatMetadataValue(_float(r["latency_p99_ms"], 1)),
            "citation_rate_pct": dg.FloatMetadataValue(_float(r["citation_rate"], 1)),
            "cost_per_answer_jpy": dg.FloatMetadataValue(_float(r["cost_per_answer"], 2)),
            "average_relevance_score": dg.FloatMetadataValue(_float(r["average_relevance_score"], 3)),
            "overall_met": dg.FloatMetadataValue(_overall_met(r)),
        }
    missed = [str(r["date"]) for r in rows if r["slo_compliance"]["overallMet"] is False]
    return {
        # Text, not a number: a run's own constant, which the UI would otherwise plot.
        "days": dg.MetadataValue.text(str(len(rows))),
        "first_day": dg.MetadataValue.text(str(rows[0]["date"])),
        "last_day": dg.MetadataValue.text(str(rows[-1]["date"])),
        "total_queries": dg.MetadataValue.int(sum(int(r["total_queries"]) for r in rows)),
        "days_missing_slo": dg.MetadataValue.int(len(missed)),
        "days_without_queries": dg.MetadataValue.int(sum(1 for r in rows if r["total_queries"] == 0)),
        "metrics": dg.MetadataValue.md(days_markdown(rows)),
    }


def _rounded(value: Any, digits: int) -> float | None:
    return None if value is None else round(float(value), digits)


def day_metadata(row: Mapping[str, Any]) -> dict[str, dg.MetadataValue]:
    """One day's numbers for that day's own partition event, so that the asset page plots each day of a
    backfill at its partition. Rounded for display (latency to 0.1 ms, JPY to 0.01); the table keeps
    full precision. The range summary's counters are restated for the one day, so that
    `days_missing_slo` plots as 0-or-1 per day rather than as the range's total, and `days` (1, text, so
    that it is not plotted) does not show the range's."""
    met = _overall_met(row)
    queries = int(row["total_queries"])
    numbers = {
        "latency_p50_ms": _rounded(row["latency_p50_ms"], 1),
        "latency_p95_ms": _rounded(row["latency_p95_ms"], 1),
        "latency_p99_ms": _rounded(row["latency_p99_ms"], 1),
        "citation_rate_pct": _rounded(row["citation_rate"], 2),
        "cost_per_answer_jpy": _rounded(row["cost_per_answer"], 2),
        "average_relevance_score": _rounded(row["average_relevance_score"], 3),
        "overall_met": met,
    }
    return {
        "date": dg.MetadataValue.text(str(row["date"])),
        "days": dg.MetadataValue.text("1"),
        "total_queries": dg.MetadataValue.int(queries),
        # A day without data has no point for that metric (the UI leaves a gap), rather than a 0.
        **{k: dg.MetadataValue.float(v) for k, v in numbers.items() if v is not None},
        "days_missing_slo": dg.MetadataValue.int(1 if met == 0.0 else 0),
        "days_without_queries": dg.MetadataValue.int(1 if queries == 0 else 0),
    }


def check_result(outcome: slo.ThresholdOutcome) -> dg.AssetCheckResult:
    severity = dg.AssetCheckSeverity.ERROR if outcome.severity == slo.ERROR else dg.AssetCheckSeverity.WARN
    return dg.AssetCheckResult(
        check_name=outcome.threshold.name,
        passed=outcome.passed,
        severity=severity,
        metadata={
            "threshold": dg.MetadataValue.text(outcome.threshold.describe()),
            "days_checked": dg.MetadataValue.int(outcome.days_checked),
            "days_breaching": dg.MetadataValue.int(len(outcome.breaches)),
            # The checks are not partitioned: the UI shows "Partition —", so the days are named here.
            "breaching_days": dg.MetadataValue.text(
                ", ".join(f"{b['date']} ({b['severity']})" for b in outcome.breaches) or "none"
            ),
            "days_without_data": dg.MetadataValue.int(len(outcome.days_without_data)),
            "breaches": dg.MetadataValue.json(outcome.breaches),
            # The levels judged, so that the alert sensor names the same thresholds as the check.
            "levels": dg.MetadataValue.json(
                {
                    "column": outcome.threshold.column,
                    "direction": outcome.threshold.direction,
                    "warn": outcome.threshold.warn,
                    "error": outcome.threshold.error,
                    "unit": outcome.threshold.unit,
                }
            ),
        },
    )


@dg.asset(
    deps=[ai_dialogue_log],
    partitions_def=daily_jst_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="metrics",
    # One run at a time writes metrics (deploy/dagster.yaml): a backfill never overlaps the nightly run.
    pool="rag_metrics",
    kinds={"postgres"},
    check_specs=[
        dg.AssetCheckSpec(name, asset="rag_metrics_history", description=description)
        for name, description in CHECK_DESCRIPTIONS.items()
    ],
)
def rag_metrics_history(
    context: dg.AssetExecutionContext, config: RagMetricsConfig, postgres: PostgresResource
) -> dg.MaterializeResult:
    """One row per Asia/Tokyo day of RAG quality: latency p50/p95/p99, citation rate and sources, cost
    per answer, relevance, vote rate and SLO compliance, aggregated from `ai_dialogue_log` over the
    half-open window [D 00:00+09:00, D+1 00:00+09:00). A run over a range of days (a backfill) reads
    the whole range in one query and replaces exactly those days' rows, so re-running a day after late
    rows arrived is safe. The checks apply the alert thresholds to every day the run computed and
    report the worst severity, listing each breaching day."""
    window = context.partition_time_window
    with postgres.begin() as conn:
        rows = refresh_rag_metrics(
            conn, window.start, window.end, targets=config.targets(), run_id=context.run.run_id
        )
    context.log.info(
        "rag_metrics_history: %d day(s) %s..%s, %d queries",
        len(rows),
        rows[0]["date"],
        rows[-1]["date"],
        sum(r["total_queries"] for r in rows),
    )
    # Dagster gives every partition of a range run its own materialization event; the UI plots the
    # latest materialization of each partition (before any observation of it), so each day's numbers go
    # on that day's event.
    for r in rows:
        context.add_asset_metadata(day_metadata(r), partition_key=str(r["date"]))
    return dg.MaterializeResult(
        metadata=materialization_metadata(rows),
        check_results=[check_result(slo.evaluate_threshold(rows, t)) for t in config.thresholds()],
    )
