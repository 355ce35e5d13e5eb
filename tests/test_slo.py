import math

import pytest

from pipelines.lib import slo

GOOD_DAY = {
    "total_queries": 100,
    "citation_rate": 80.0,
    "latency_p50_ms": 900.0,
    "latency_p95_ms": 2500.0,
    "cost_per_answer": 2.0,
    "average_relevance_score": 0.8,
}


def test_good_day_meets_every_target():
    doc = slo.evaluate_slo(GOOD_DAY)
    assert doc["overallMet"] is True
    assert doc["citationRate"] == {"target": 70.0, "actual": 80.0, "met": True}
    assert doc["latencyP95"] == {"target": 3000.0, "actual": 2500.0, "met": True}
    assert set(doc) == {
        "citationRate",
        "latencyP50",
        "latencyP95",
        "costPerAnswer",
        "relevanceScore",
        "overallMet",
    }


def test_targets_are_inclusive_bounds():
    day = {
        **GOOD_DAY,
        "citation_rate": 70.0,
        "latency_p50_ms": 1500.0,
        "latency_p95_ms": 3000.0,
        "cost_per_answer": 3.0,
        "average_relevance_score": 0.7,
    }
    doc = slo.evaluate_slo(day)
    assert all(doc[k]["met"] for k in doc if k != "overallMet")
    assert doc["overallMet"] is True


@pytest.mark.parametrize(
    ("column", "value", "key"),
    [
        ("citation_rate", 69.99, "citationRate"),
        ("latency_p50_ms", 1500.5, "latencyP50"),
        ("latency_p95_ms", 3001.0, "latencyP95"),
        ("cost_per_answer", 3.0001, "costPerAnswer"),
        ("average_relevance_score", 0.69, "relevanceScore"),
    ],
)
def test_one_missed_target_fails_the_day(column, value, key):
    doc = slo.evaluate_slo({**GOOD_DAY, column: value})
    assert doc[key]["met"] is False
    assert doc["overallMet"] is False


def test_metric_without_data_is_not_counted():
    doc = slo.evaluate_slo(
        {**GOOD_DAY, "latency_p50_ms": None, "latency_p95_ms": None, "average_relevance_score": float("nan")}
    )
    assert doc["latencyP50"] == {"target": 1500.0, "actual": None, "met": None}
    assert doc["relevanceScore"]["met"] is None
    assert doc["overallMet"] is True
    assert (
        slo.evaluate_slo({**GOOD_DAY, "latency_p95_ms": None, "citation_rate": 10.0})["overallMet"] is False
    )


def test_day_without_queries_has_no_verdict():
    empty = {
        "total_queries": 0,
        "citation_rate": None,
        "latency_p50_ms": None,
        "latency_p95_ms": None,
        "cost_per_answer": None,
        "average_relevance_score": None,
    }
    doc = slo.evaluate_slo(empty)
    assert doc["overallMet"] is None
    assert all(doc[k]["met"] is None for k in doc if k != "overallMet")


def test_targets_are_configurable():
    strict = slo.SloTargets(latency_p95_max_ms=2000.0, relevance_min=0.9)
    doc = slo.evaluate_slo(GOOD_DAY, strict)
    assert doc["latencyP95"] == {"target": 2000.0, "actual": 2500.0, "met": False}
    assert doc["relevanceScore"]["met"] is False


def test_decimal_actuals_become_floats():
    from decimal import Decimal

    doc = slo.evaluate_slo({**GOOD_DAY, "cost_per_answer": Decimal("2.5000")})
    assert doc["costPerAnswer"]["actual"] == 2.5 and isinstance(doc["costPerAnswer"]["actual"], float)


THRESHOLDS = {t.name: t for t in slo.default_thresholds()}


@pytest.mark.parametrize(
    ("name", "value", "severity"),
    [
        ("citation_rate", 70.0, None),
        ("citation_rate", 65.0, None),
        ("citation_rate", 64.99, slo.WARN),
        ("citation_rate", 60.0, slo.WARN),
        ("citation_rate", 59.99, slo.ERROR),
        ("latency_p95", 3500.0, None),
        ("latency_p95", 3500.1, slo.WARN),
        ("latency_p95", 5000.0, slo.WARN),
        ("latency_p95", 5000.1, slo.ERROR),
        ("cost_per_answer", 3.5, None),
        ("cost_per_answer", 3.6, slo.WARN),
        ("cost_per_answer", 5.01, slo.ERROR),
        ("cost_per_answer", None, None),
        ("latency_p95", math.nan, None),
    ],
)
def test_classify_follows_the_alert_table(name, value, severity):
    assert slo.classify(value, THRESHOLDS[name]) == severity


def test_threshold_outcome_is_the_worst_day_and_lists_breaches():
    days = [
        {"date": "2025-06-03", "citation_rate": 55.0},
        {"date": "2025-06-01", "citation_rate": 80.0},
        {"date": "2025-06-02", "citation_rate": 62.0},
        {"date": "2025-06-04", "citation_rate": None},
    ]
    outcome = slo.evaluate_threshold(days, THRESHOLDS["citation_rate"])
    assert outcome.severity == slo.ERROR and not outcome.passed
    assert outcome.breaches == [
        {"date": "2025-06-02", "value": 62.0, "severity": slo.WARN},
        {"date": "2025-06-03", "value": 55.0, "severity": slo.ERROR},
    ]
    assert outcome.days_checked == 4
    assert outcome.days_without_data == ["2025-06-04"]


def test_threshold_outcome_warn_only_and_pass():
    t = THRESHOLDS["latency_p95"]
    assert slo.evaluate_threshold([{"date": "d1", "latency_p95_ms": 4000.0}], t).severity == slo.WARN
    ok = slo.evaluate_threshold(
        [{"date": "d1", "latency_p95_ms": 1000.0}, {"date": "d2", "latency_p95_ms": None}], t
    )
    assert ok.passed and ok.breaches == []


def test_thresholds_are_configurable_and_validated():
    custom = {t.name: t for t in slo.default_thresholds(cost_per_answer_warn_above_jpy=2.0)}
    assert slo.classify(2.5, custom["cost_per_answer"]) == slo.WARN
    with pytest.raises(ValueError, match="citation_rate"):
        slo.default_thresholds(citation_rate_warn_below_pct=60.0, citation_rate_error_below_pct=65.0)
