"""rag_metrics_history against real Postgres: every metric checked against numpy on the same rows."""

import datetime as dt
import json
from zoneinfo import ZoneInfo

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from assets.metrics import ai_dialogue_log, rag_metrics_history
from demo.dialogue import COLUMNS, copy_dialogue, generate_dialogue, load_demo_dialogue

JST = ZoneInfo("Asia/Tokyo")
UTC = dt.UTC
METRIC_COLUMNS = (
    "total_queries",
    "unique_users",
    "citation_count",
    "citation_rate",
    "unique_sources_count",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "total_cost",
    "cost_per_answer",
    "average_relevance_score",
    "positive_votes_rate",
)


# ---------------------------------------------------------------- helpers


def row(created_at: dt.datetime, **values) -> dict:
    base = {
        "user_id": "u1",
        "session_id": "s1",
        "query": "q",
        "response": "r",
        "model_used": "m",
        "citations": [
            {
                "source": "doc-a",
                "sourceType": "document",
                "excerpt": "e",
                "confidence": 0.9,
                "timestamp": "2025-06-01T00:00:00Z",
            }
        ],
        "citation_rate": None,
        "latency_ms": 1000,
        "token_cost_jpy": 1.5,
        "relevance_score": 0.8,
        "user_feedback": 1,
        "temperature": 0.2,
        "prompt_tokens": 100,
        "completion_tokens": 20,
        "total_tokens": 120,
        "created_at": created_at,
    }
    base.update(values)
    return base


class Raw(str):
    """Citations given as literal JSON text, for shapes json.dumps of a list would not produce."""


def insert(postgres, rows: list[dict]) -> None:
    def citations(value):
        if value is None:
            return None
        return str(value) if isinstance(value, Raw) else json.dumps(value)

    frame = pd.DataFrame([{**r, "citations": citations(r["citations"])} for r in rows], columns=list(COLUMNS))
    with postgres.begin() as conn:
        copy_dialogue(conn, iter([frame]))


def jst(day: str, hh: int = 12, mm: int = 0) -> dt.datetime:
    return dt.datetime.combine(dt.date.fromisoformat(day), dt.time(hh, mm), JST)


def materialize(postgres, start: str, end: str | None = None, run_config=None) -> dg.ExecuteInProcessResult:
    """One run over the partition(s) start..end (inclusive keys), as a single-run backfill would launch it."""
    common = {"resources": {"postgres": postgres}, "run_config": run_config}
    if end is None or end == start:
        return dg.materialize([ai_dialogue_log, rag_metrics_history], partition_key=start, **common)
    tags = {ASSET_PARTITION_RANGE_START_TAG: start, ASSET_PARTITION_RANGE_END_TAG: end}
    return dg.materialize([ai_dialogue_log, rag_metrics_history], tags=tags, **common)


def stored(postgres) -> dict[str, dict]:
    with postgres.connect() as conn:
        result = conn.execute(sa.text("SELECT * FROM rag_metrics_history ORDER BY date")).mappings()
        return {str(r["date"]): dict(r) for r in result}


def log_frame(postgres) -> pd.DataFrame:
    with postgres.connect() as conn:
        rows = (
            conn.execute(
                sa.text(
                    "SELECT user_id, citations, latency_ms, token_cost_jpy::float8 AS cost, relevance_score,"
                    " user_feedback, created_at FROM ai_dialogue_log"
                )
            )
            .mappings()
            .all()
        )
    frame = pd.DataFrame([dict(r) for r in rows])
    frame["day"] = [t.astimezone(JST).date().isoformat() for t in frame["created_at"]]
    return frame


def expected(frame: pd.DataFrame, day: str) -> dict:
    """docs/metrics.md, computed independently of the SQL: plain Python and numpy on the fetched rows."""
    d = frame[frame["day"] == day] if len(frame) else frame
    n = len(d)
    cites = [c if isinstance(c, list) else [] for c in d["citations"]] if n else []
    sources = {
        str(c["source"]) for cs in cites for c in cs if isinstance(c, dict) and c.get("source") is not None
    }
    lat = np.array([v for v in d["latency_ms"] if v is not None and not pd.isna(v)], dtype=float) if n else []
    rel = (
        np.array([v for v in d["relevance_score"] if v is not None and not pd.isna(v)], dtype=float)
        if n
        else []
    )
    votes = (
        [int(v) for v in d["user_feedback"] if v is not None and not pd.isna(v) and int(v) != 0] if n else []
    )
    p = np.percentile(lat, [50, 95, 99]) if len(lat) else [None] * 3
    total_cost = float(np.sum(d["cost"])) if n else 0.0
    return {
        "total_queries": n,
        "unique_users": int(d["user_id"].nunique()) if n else 0,
        "citation_count": sum(len(c) for c in cites),
        "citation_rate": 100.0 * sum(1 for c in cites if len(c) > 0) / n if n else None,
        "unique_sources_count": len(sources),
        "latency_p50_ms": p[0],
        "latency_p95_ms": p[1],
        "latency_p99_ms": p[2],
        "total_cost": total_cost,
        "cost_per_answer": total_cost / n if n else None,
        "average_relevance_score": float(np.mean(rel)) if len(rel) else None,
        "positive_votes_rate": 100.0 * votes.count(1) / len(votes) if votes else None,
    }


def assert_matches(actual: dict, wanted: dict) -> None:
    for column in METRIC_COLUMNS:
        got, want = actual[column], wanted[column]
        if want is None:
            assert got is None, f"{actual['date']} {column}: expected null, got {got}"
        else:
            assert got is not None, f"{actual['date']} {column}: expected {want}, got null"
            assert float(got) == pytest.approx(float(want), abs=1e-6), f"{actual['date']} {column}"


# ---------------------------------------------------------------- metric values


def test_every_metric_matches_an_independent_computation(postgres):
    days = [f"2025-06-{d:02d}" for d in range(1, 6)]
    plan, frames = generate_dialogue(dt.date(2025, 6, 1), days=5, rows_per_day=400, seed=11)
    with postgres.begin() as conn:
        copy_dialogue(conn, frames)
    insert(
        postgres,
        [
            row(jst("2025-06-03", 9), citations=None, user_feedback=0, latency_ms=None),
            row(jst("2025-06-03", 10), citations=[], user_feedback=None, relevance_score=None),
            row(jst("2025-06-03", 11), citations=Raw('{"source": "doc-z"}')),
            row(jst("2025-06-03", 12), citations=Raw('"not an array"')),
            row(jst("2025-06-03", 13), citations=Raw("42")),
            row(
                jst("2025-06-03", 14),
                citations=["bare string", {"sourceType": "web"}, {"source": None}, {"source": "doc-q"}],
            ),
        ],
    )
    result = materialize(postgres, days[0], days[-1])
    assert result.success
    rows = stored(postgres)
    frame = log_frame(postgres)
    assert sorted(rows) == days
    for day in days:
        assert_matches(rows[day], expected(frame, day))
        assert rows[day]["dagster_run_id"] == result.run_id
    assert len(frame) == sum(p.rows for p in plan) + 6


def test_rows_either_side_of_jst_midnight(postgres):
    # 2025-06-10 00:00 JST is 2025-06-09 15:00 UTC.
    insert(
        postgres,
        [
            row(dt.datetime(2025, 6, 9, 14, 59, 59, 999000, tzinfo=UTC), latency_ms=111, user_id="before"),
            row(dt.datetime(2025, 6, 9, 15, 0, 0, tzinfo=UTC), latency_ms=222, user_id="after"),
            row(dt.datetime(2025, 6, 10, 14, 59, 59, 999999, tzinfo=UTC), latency_ms=333, user_id="after"),
            row(dt.datetime(2025, 6, 10, 15, 0, 0, tzinfo=UTC), latency_ms=444, user_id="next"),
        ],
    )
    assert materialize(postgres, "2025-06-09").success
    assert materialize(postgres, "2025-06-10").success
    rows = stored(postgres)
    assert set(rows) == {"2025-06-09", "2025-06-10"}
    assert rows["2025-06-09"]["total_queries"] == 1 and rows["2025-06-09"]["latency_p50_ms"] == 111
    assert rows["2025-06-10"]["total_queries"] == 2 and rows["2025-06-10"]["unique_users"] == 1
    assert rows["2025-06-10"]["latency_p50_ms"] == pytest.approx(277.5)
    frame = log_frame(postgres)
    for day in rows:
        assert_matches(rows[day], expected(frame, day))


def test_day_without_rows_gets_an_empty_row(postgres):
    insert(postgres, [row(jst("2025-06-01")), row(jst("2025-06-03"))])
    assert materialize(postgres, "2025-06-01", "2025-06-03").success
    empty = stored(postgres)["2025-06-02"]
    assert empty["total_queries"] == 0 and empty["unique_users"] == 0
    assert empty["citation_count"] == 0 and empty["unique_sources_count"] == 0
    assert empty["citation_rate"] is None and empty["cost_per_answer"] is None
    assert float(empty["total_cost"]) == 0.0
    assert (
        empty["latency_p50_ms"] is None
        and empty["latency_p95_ms"] is None
        and empty["latency_p99_ms"] is None
    )
    assert empty["average_relevance_score"] is None and empty["positive_votes_rate"] is None
    assert empty["slo_compliance"]["overallMet"] is None
    assert all(v["met"] is None for k, v in empty["slo_compliance"].items() if k != "overallMet")


def test_day_where_every_latency_and_relevance_is_null(postgres):
    insert(
        postgres,
        [
            row(jst("2025-06-05", h), latency_ms=None, relevance_score=None, token_cost_jpy=1.0)
            for h in (8, 9, 10)
        ],
    )
    assert materialize(postgres, "2025-06-05").success
    day = stored(postgres)["2025-06-05"]
    assert day["total_queries"] == 3
    assert day["latency_p50_ms"] is None and day["latency_p95_ms"] is None and day["latency_p99_ms"] is None
    assert day["average_relevance_score"] is None
    slo_doc = day["slo_compliance"]
    assert slo_doc["latencyP95"] == {"target": 3000.0, "actual": None, "met": None}
    assert slo_doc["relevanceScore"]["met"] is None
    # citation rate 100 % and 1 JPY per answer still make a verdict
    assert slo_doc["overallMet"] is True


def test_single_row_day(postgres):
    insert(postgres, [row(jst("2025-06-06"), latency_ms=4321, user_feedback=-1, token_cost_jpy=2.25)])
    assert materialize(postgres, "2025-06-06").success
    day = stored(postgres)["2025-06-06"]
    assert day["latency_p50_ms"] == day["latency_p95_ms"] == day["latency_p99_ms"] == 4321
    assert day["positive_votes_rate"] == 0.0 and float(day["cost_per_answer"]) == 2.25
    assert_matches(day, expected(log_frame(postgres), "2025-06-06"))


def test_citations_that_are_not_arrays_count_as_none(postgres):
    insert(
        postgres,
        [
            row(jst("2025-06-07", 1), citations=None),
            row(jst("2025-06-07", 2), citations=[]),
            row(jst("2025-06-07", 3), citations=Raw('{"source": "doc-x"}')),
            row(jst("2025-06-07", 4), citations=Raw('"doc-y"')),
            row(
                jst("2025-06-07", 5),
                citations=[{"source": "doc-a"}, {"source": "doc-b"}, {"source": "doc-a"}],
            ),
        ],
    )
    assert materialize(postgres, "2025-06-07").success
    day = stored(postgres)["2025-06-07"]
    assert day["citation_count"] == 3
    assert day["citation_rate"] == pytest.approx(20.0)
    assert day["unique_sources_count"] == 2


def _citation_columns_expected(text: str | None) -> tuple[int, set[str]]:
    """citation_count and the set of sources docs/metrics.md derives from one row's citations JSON."""
    value = None if text is None else json.loads(text)
    if not isinstance(value, list):
        return 0, set()
    return len(value), {
        c["source"] if isinstance(c["source"], str) else json.dumps(c["source"])
        for c in value
        if isinstance(c, dict) and c.get("source") is not None
    }


def test_generated_citation_columns_match_an_independent_computation(postgres):
    shapes = [
        None,
        Raw("null"),
        Raw("{}"),
        Raw('{"source": "doc-x"}'),
        Raw('"a string"'),
        Raw("42"),
        [],
        [{"sourceType": "web"}, {"excerpt": "no source here"}],
        [{"source": None}, {"source": "doc-a"}],
        [{"source": "doc-a"}, {"source": "doc-b"}, {"source": "doc-a"}],
        ["bare string", 7, None, [{"source": "nested-not-counted"}], {"source": "doc-c"}],
        [{"source": 5}, {"source": "5"}, {"source": ""}, {"source": "ドキュメント"}],
        [
            {"source": f"https://example.com/a-very-long-source-path/{i:04d}"} for i in range(60)
        ],  # too long to index
    ]
    insert(
        postgres, [row(jst("2025-06-07", 1, i), citations=c, user_id=f"u{i}") for i, c in enumerate(shapes)]
    )
    with postgres.connect() as conn:
        got = (
            conn.execute(
                sa.text(
                    "SELECT user_id, citations::text AS citations, citation_count, citation_sources FROM ai_dialogue_log"
                )
            )
            .mappings()
            .all()
        )
    assert len(got) == len(shapes)
    oversized = 0
    for r in got:
        count, sources = _citation_columns_expected(r["citations"])
        assert r["citation_count"] == count, r
        if r["citation_sources"] is None:
            oversized += 1
            assert len(sources) == 60, r
        else:
            assert sorted(r["citation_sources"]) == sorted(sources), r
    assert oversized == 1
    # The day's metrics count the oversized row's sources too, read from its citations.
    assert materialize(postgres, "2025-06-07").success
    frame = log_frame(postgres)
    day = stored(postgres)["2025-06-07"]
    assert day["unique_sources_count"] == len(
        set().union(*(_citation_columns_expected(r["citations"])[1] for r in got))
    )
    assert_matches(day, expected(frame, "2025-06-07"))


def test_neutral_and_missing_votes_are_excluded(postgres):
    votes = [1, 1, -1, 0, 0, None, None, None]
    insert(postgres, [row(jst("2025-06-08", 1 + i), user_feedback=v) for i, v in enumerate(votes)])
    assert materialize(postgres, "2025-06-08").success
    assert stored(postgres)["2025-06-08"]["positive_votes_rate"] == pytest.approx(100.0 * 2 / 3)


# ---------------------------------------------------------------- idempotence and ranges


def test_range_in_one_run_equals_single_day_runs(postgres):
    with postgres.begin() as conn:
        load_demo_dialogue(conn, days=10, end_day=dt.date(2025, 7, 10), seed=3, rows_per_day=150)
    assert materialize(postgres, "2025-07-01", "2025-07-10").success
    ranged = stored(postgres)
    for d in range(1, 11):
        assert materialize(postgres, f"2025-07-{d:02d}").success
    single = stored(postgres)
    assert sorted(ranged) == sorted(single) == [f"2025-07-{d:02d}" for d in range(1, 11)]
    for day in ranged:
        for column in (*METRIC_COLUMNS, "slo_compliance"):
            assert ranged[day][column] == single[day][column], (day, column)
        assert ranged[day]["dagster_run_id"] != single[day]["dagster_run_id"]


def test_running_a_day_twice_leaves_one_row(postgres):
    insert(postgres, [row(jst("2025-06-12"))])
    first = materialize(postgres, "2025-06-12")
    second = materialize(postgres, "2025-06-12")
    with postgres.connect() as conn:
        rows = conn.execute(sa.text("SELECT dagster_run_id FROM rag_metrics_history")).scalars().all()
    assert rows == [second.run_id] and first.run_id != second.run_id


def test_recomputing_after_late_rows_changes_exactly_that_day(postgres):
    insert(postgres, [row(jst(f"2025-06-{d:02d}"), latency_ms=1000 + d) for d in (14, 15, 16)])
    assert materialize(postgres, "2025-06-14", "2025-06-16").success
    before = stored(postgres)
    insert(postgres, [row(jst("2025-06-15", 23, 59), latency_ms=9000, user_id="late")])
    assert materialize(postgres, "2025-06-15").success
    after = stored(postgres)
    assert before["2025-06-14"] == after["2025-06-14"] and before["2025-06-16"] == after["2025-06-16"]
    assert after["2025-06-15"]["total_queries"] == 2 and after["2025-06-15"]["unique_users"] == 2
    assert after["2025-06-15"]["computed_at"] > before["2025-06-15"]["computed_at"]
    assert_matches(after["2025-06-15"], expected(log_frame(postgres), "2025-06-15"))


# ---------------------------------------------------------------- metadata and checks


def test_single_day_metadata_is_numeric(postgres):
    insert(postgres, [row(jst("2025-06-20", h), latency_ms=1000 * h) for h in (1, 2, 3)])
    result = materialize(postgres, "2025-06-20")
    (mat,) = result.asset_materializations_for_node("rag_metrics_history")
    md = mat.metadata
    assert mat.partition == "2025-06-20"
    assert md["total_queries"].value == 3
    assert md["latency_p50_ms"] == dg.MetadataValue.float(2000.0)
    assert md["latency_p95_ms"].value == pytest.approx(2900.0)
    assert md["latency_p99_ms"].value == pytest.approx(2980.0)
    assert md["citation_rate_pct"].value == pytest.approx(100.0)
    assert md["cost_per_answer_jpy"].value == pytest.approx(1.5)
    assert md["overall_met"].value == 0.0  # p50 of 2 s misses the 1.5 s target
    for key in ("latency_p50_ms", "citation_rate_pct", "cost_per_answer_jpy", "overall_met"):
        assert isinstance(md[key], dg.FloatMetadataValue)


def test_range_metadata_is_a_table_of_the_days(postgres):
    insert(postgres, [row(jst("2025-06-21")), row(jst("2025-06-23"))])
    result = materialize(postgres, "2025-06-21", "2025-06-23")
    mats = result.asset_materializations_for_node("rag_metrics_history")
    assert sorted(m.partition for m in mats) == ["2025-06-21", "2025-06-22", "2025-06-23"]
    md = mats[0].metadata
    table = md["metrics"].value
    assert isinstance(md["metrics"], dg.MarkdownMetadataValue)
    assert all(f"| 2025-06-2{d} |" in table for d in (1, 2, 3))
    assert md["first_day"].value == "2025-06-21" and md["last_day"].value == "2025-06-23"
    # Each partition's event carries that day's own counters, so the UI plots them per day.
    by_day = {m.partition: m.metadata for m in mats}
    assert [by_day[d]["total_queries"].value for d in sorted(by_day)] == [1, 0, 1]
    assert [by_day[d]["days_without_queries"].value for d in sorted(by_day)] == [0, 1, 0]
    # `days` is each day's constant 1, as text so that the UI does not plot it.
    assert {by_day[d]["days"].value for d in by_day} == {"1"}
    assert all(isinstance(by_day[d]["days"], dg.TextMetadataValue) for d in by_day)


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_checks_fire_with_the_right_severity_on_breaching_days(postgres):
    cite = [{"source": "doc-a"}]

    def day_rows(day: str, n: int, cited: int, latency: int, cost: float) -> list[dict]:
        return [
            row(
                jst(day, i // 60, i % 60),
                citations=cite if i < cited else None,
                latency_ms=latency,
                token_cost_jpy=cost,
            )
            for i in range(n)
        ]

    insert(
        postgres,
        [
            *day_rows("2025-06-24", 20, 18, 1000, 1.0),  # healthy
            *day_rows("2025-06-25", 100, 62, 4000, 3.6),  # citation WARN, p95 WARN, cost WARN
            *day_rows("2025-06-26", 100, 55, 1000, 1.0),  # citation ERROR
            *day_rows("2025-06-27", 10, 10, 6000, 5.5),  # p95 ERROR, cost ERROR
        ],
    )
    result = materialize(postgres, "2025-06-24", "2025-06-28")
    assert result.success
    checks = _checks(result)
    assert set(checks) == {"citation_rate", "latency_p95", "cost_per_answer"}
    for name in checks:
        assert not checks[name].passed and checks[name].severity == dg.AssetCheckSeverity.ERROR
    breaches = checks["citation_rate"].metadata["breaches"].value
    assert [(b["date"], b["severity"]) for b in breaches] == [("2025-06-25", "WARN"), ("2025-06-26", "ERROR")]
    # The UI shows a check's metadata as fields: the days are named in one, not only inside the JSON.
    named = checks["citation_rate"].metadata["breaching_days"]
    assert isinstance(named, dg.TextMetadataValue)
    assert named.value == "2025-06-25 (WARN), 2025-06-26 (ERROR)"
    assert checks["citation_rate"].metadata["days_checked"].value == 5
    assert checks["citation_rate"].metadata["days_without_data"].value == 1  # 2025-06-28 had no queries
    assert [b["date"] for b in checks["latency_p95"].metadata["breaches"].value] == [
        "2025-06-25",
        "2025-06-27",
    ]

    warn_only = _checks(materialize(postgres, "2025-06-25"))
    assert all(not c.passed and c.severity == dg.AssetCheckSeverity.WARN for c in warn_only.values())
    healthy = _checks(materialize(postgres, "2025-06-24"))
    assert all(c.passed for c in healthy.values())


def test_targets_and_thresholds_come_from_run_config(postgres):
    insert(postgres, [row(jst("2025-06-29"), latency_ms=2000, token_cost_jpy=2.0)])
    config = {
        "ops": {
            "rag_metrics_history": {
                "config": {
                    "latency_p50_max_ms": 2500.0,
                    "cost_per_answer_warn_above_jpy": 1.0,
                    "cost_per_answer_error_above_jpy": 1.5,
                }
            }
        }
    }
    result = materialize(postgres, "2025-06-29", run_config=config)
    day = stored(postgres)["2025-06-29"]
    assert day["slo_compliance"]["latencyP50"] == {"target": 2500.0, "actual": 2000.0, "met": True}
    assert _checks(result)["cost_per_answer"].severity == dg.AssetCheckSeverity.ERROR


# ---------------------------------------------------------------- demo data


def test_demo_log_is_reproducible_and_reloads_in_place(postgres):
    def fingerprint():
        with postgres.connect() as conn:
            return conn.execute(
                sa.text(
                    "SELECT count(*), sum(latency_ms), sum(token_cost_jpy), count(DISTINCT user_id) FROM ai_dialogue_log"
                )
            ).one()

    insert(postgres, [row(jst("2025-05-10"), session_id="real-session")])
    with postgres.begin() as conn:
        first = load_demo_dialogue(
            conn,
            days=8,
            end_day=dt.date(2025, 5, 12),
            seed=5,
            rows_per_day=100,
            sources=["docs/a.md", "docs/b.md"],
        )
    once = fingerprint()
    with postgres.begin() as conn:
        again = load_demo_dialogue(
            conn,
            days=8,
            end_day=dt.date(2025, 5, 12),
            seed=5,
            rows_per_day=100,
            sources=["docs/a.md", "docs/b.md"],
        )
    assert fingerprint() == once and once[0] == first.rows + 1 == again.rows + 1
    assert first.first_day == dt.date(2025, 5, 5)
    assert set(first.incidents) == {"slow_provider", "retriever_outage", "expensive_model"}
    with postgres.connect() as conn:
        sources = (
            conn.execute(
                sa.text(
                    "SELECT DISTINCT c->>'source' FROM ai_dialogue_log, jsonb_array_elements(citations) c"
                    " WHERE jsonb_typeof(citations) = 'array'"
                )
            )
            .scalars()
            .all()
        )
        real = conn.execute(
            sa.text("SELECT count(*) FROM ai_dialogue_log WHERE session_id = 'real-session'")
        ).scalar()
    assert set(sources) == {"docs/a.md", "docs/b.md", "doc-a"} and real == 1


def test_demo_incident_days_breach_their_slo(postgres):
    with postgres.begin() as conn:
        demo = load_demo_dialogue(conn, days=30, end_day=dt.date(2025, 4, 30), seed=9, rows_per_day=300)
    assert materialize(postgres, "2025-04-01", "2025-04-30").success
    rows = stored(postgres)
    incident_days = {str(d) for days in demo.incidents.values() for d in days}
    for day, r in rows.items():
        assert r["slo_compliance"]["overallMet"] is (day not in incident_days), day
    for day in demo.incidents["slow_provider"]:
        assert rows[str(day)]["latency_p95_ms"] > 3500
    for day in demo.incidents["retriever_outage"]:
        assert rows[str(day)]["citation_rate"] < 65
    for day in demo.incidents["expensive_model"]:
        assert float(rows[str(day)]["cost_per_answer"]) > 3.5
