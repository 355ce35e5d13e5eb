"""SLO compliance and alert thresholds for one day of RAG metrics (defined in docs/metrics.md).

Pure functions over plain mappings of the `rag_metrics_history` columns, so that the asset, the
tests and anyone reading a row agree on one definition.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

WARN: Final = "WARN"
ERROR: Final = "ERROR"
Severity = Literal["WARN", "ERROR"]


@dataclass(frozen=True)
class SloTargets:
    """The default SLO targets; each is a bound a good day stays on the right side of (inclusive)."""

    citation_rate_min_pct: float = 70.0
    latency_p50_max_ms: float = 1500.0
    latency_p95_max_ms: float = 3000.0
    cost_per_answer_max_jpy: float = 3.0
    relevance_min: float = 0.7


@dataclass(frozen=True)
class SloObjective:
    key: str  # the name in the slo_compliance jsonb
    column: str  # the rag_metrics_history column it reads
    bound: Literal["min", "max"]
    target: float


def objectives(targets: SloTargets) -> tuple[SloObjective, ...]:
    return (
        SloObjective("citationRate", "citation_rate", "min", targets.citation_rate_min_pct),
        SloObjective("latencyP50", "latency_p50_ms", "max", targets.latency_p50_max_ms),
        SloObjective("latencyP95", "latency_p95_ms", "max", targets.latency_p95_max_ms),
        SloObjective("costPerAnswer", "cost_per_answer", "max", targets.cost_per_answer_max_jpy),
        SloObjective("relevanceScore", "average_relevance_score", "min", targets.relevance_min),
    )


def _number(value: Any) -> float | None:
    """A metric as a float; None (and NaN, which pandas uses for missing) means no data."""
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else number


def evaluate_slo(metrics: Mapping[str, Any], targets: SloTargets = SloTargets()) -> dict[str, Any]:
    """The `slo_compliance` document of one day: `{key: {target, actual, met}, ..., overallMet}`.

    A metric without data has `met: null` and does not count towards `overallMet`; a day with no
    queries, or with no metric that has data, has `overallMet: null` rather than claiming success.
    """
    document: dict[str, Any] = {}
    verdicts: list[bool] = []
    for objective in objectives(targets):
        actual = _number(metrics.get(objective.column))
        if actual is None:
            met = None
        elif objective.bound == "min":
            met = actual >= objective.target
        else:
            met = actual <= objective.target
        if met is not None:
            verdicts.append(met)
        document[objective.key] = {"target": objective.target, "actual": actual, "met": met}
    has_queries = (metrics.get("total_queries") or 0) > 0
    document["overallMet"] = all(verdicts) if has_queries and verdicts else None
    return document


@dataclass(frozen=True)
class AlertThreshold:
    """An alert: the metric crossing `warn` is a warning, crossing `error` is critical (strictly)."""

    name: str  # the asset check's name
    column: str
    direction: Literal["below", "above"]
    warn: float
    error: float
    unit: str = ""

    def __post_init__(self) -> None:
        ordered = self.error <= self.warn if self.direction == "below" else self.error >= self.warn
        if not ordered:
            raise ValueError(
                f"alert threshold {self.name!r}: the error level {self.error} must be beyond the warn level "
                f"{self.warn} for a metric alerting when {self.direction}"
            )

    def describe(self) -> str:
        sign = "<" if self.direction == "below" else ">"
        return f"{self.column} {sign} {self.warn:g}{self.unit} warns, {sign} {self.error:g}{self.unit} errors"


@dataclass(frozen=True)
class AlertLevels:
    """The seed's alert levels: crossing `warn` warns, crossing `error` is critical."""

    citation_rate_warn_below_pct: float = 65.0
    citation_rate_error_below_pct: float = 60.0
    latency_p95_warn_above_ms: float = 3500.0
    latency_p95_error_above_ms: float = 5000.0
    cost_per_answer_warn_above_jpy: float = 3.5
    cost_per_answer_error_above_jpy: float = 5.0


def default_thresholds(
    citation_rate_warn_below_pct: float = AlertLevels.citation_rate_warn_below_pct,
    citation_rate_error_below_pct: float = AlertLevels.citation_rate_error_below_pct,
    latency_p95_warn_above_ms: float = AlertLevels.latency_p95_warn_above_ms,
    latency_p95_error_above_ms: float = AlertLevels.latency_p95_error_above_ms,
    cost_per_answer_warn_above_jpy: float = AlertLevels.cost_per_answer_warn_above_jpy,
    cost_per_answer_error_above_jpy: float = AlertLevels.cost_per_answer_error_above_jpy,
) -> tuple[AlertThreshold, ...]:
    return (
        AlertThreshold(
            "citation_rate",
            "citation_rate",
            "below",
            citation_rate_warn_below_pct,
            citation_rate_error_below_pct,
            " %",
        ),
        AlertThreshold(
            "latency_p95",
            "latency_p95_ms",
            "above",
            latency_p95_warn_above_ms,
            latency_p95_error_above_ms,
            " ms",
        ),
        AlertThreshold(
            "cost_per_answer",
            "cost_per_answer",
            "above",
            cost_per_answer_warn_above_jpy,
            cost_per_answer_error_above_jpy,
            " JPY",
        ),
    )


def classify(value: Any, threshold: AlertThreshold) -> Severity | None:
    """The severity of one day's value, or None when it is fine or there is no data to judge."""
    number = _number(value)
    if number is None:
        return None
    if threshold.direction == "below":
        if number < threshold.error:
            return ERROR
        return WARN if number < threshold.warn else None
    if number > threshold.error:
        return ERROR
    return WARN if number > threshold.warn else None


@dataclass(frozen=True)
class ThresholdOutcome:
    threshold: AlertThreshold
    severity: Severity | None  # the worst over the days; None = every day with data passed
    breaches: list[dict[str, Any]] = field(default_factory=list)  # [{date, value, severity}], by date
    days_checked: int = 0
    days_without_data: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.severity is None


def evaluate_threshold(days: Iterable[Mapping[str, Any]], threshold: AlertThreshold) -> ThresholdOutcome:
    """Judge every day (rows with `date` and the threshold's column) and keep the worst severity."""
    breaches: list[dict[str, Any]] = []
    without_data: list[str] = []
    checked = 0
    for day in sorted(days, key=lambda d: str(d["date"])):
        checked += 1
        value = _number(day.get(threshold.column))
        if value is None:
            without_data.append(str(day["date"]))
            continue
        severity = classify(value, threshold)
        if severity is not None:
            breaches.append({"date": str(day["date"]), "value": value, "severity": severity})
    worst: Severity | None = None
    if any(b["severity"] == ERROR for b in breaches):
        worst = ERROR
    elif breaches:
        worst = WARN
    return ThresholdOutcome(threshold, worst, breaches, checked, without_data)
