"""Alert sensors against a real Dagster instance, real runs, real Postgres and a real HTTP receiver."""

from __future__ import annotations

import datetime as dt
import json
import socket
import time
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from assets.embeddings import embed_stats_metadata
from assets.metrics import ai_dialogue_log, rag_metrics_history
from location.alert_sensors import job_failure_alert_sensor, metric_alerts_sensor
from pipelines.embeddings import EmbedStats
from pipelines.lib import slo
from pipelines.lib.alerts import metric_alerts
from resources.alerts import AlertsResource
from tests.alert_receiver import TOKEN, receiver
from tests.test_metrics import insert, jst, row

UI = "http://dagster.example:3000"


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


def alerts_resource(url: str, fmt: str = "json", **kwargs) -> AlertsResource:
    settings = {"backoff_s": 0.05, **kwargs}
    return AlertsResource(webhook_url=url, format=fmt, ui_url=UI, **settings)


def day_rows(day: str, n: int, cited: int, latency_ms: int, cost_jpy: float) -> list[dict]:
    """`n` answers on a JST day: the first `cited` have a citation; every latency and cost is the same, so
    the day's p95 and cost per answer are exactly those values."""
    return [
        row(
            jst(day, 1 + i % 22, i % 60),
            user_id=f"u{i % 7}",
            citations=None if i >= cited else [{"source": "doc-a"}],
            latency_ms=latency_ms,
            token_cost_jpy=cost_jpy,
        )
        for i in range(n)
    ]


def run_metrics(postgres, instance, start: str, end: str | None = None) -> dg.ExecuteInProcessResult:
    kwargs: dict = {"resources": {"postgres": postgres}, "instance": instance}
    if end is None:
        kwargs["partition_key"] = start
    else:
        kwargs["tags"] = {ASSET_PARTITION_RANGE_START_TAG: start, ASSET_PARTITION_RANGE_END_TAG: end}
    return dg.materialize([ai_dialogue_log, rag_metrics_history], **kwargs)


def tick(instance, postgres, alerts: AlertsResource, cursor: str | None = None):
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"postgres": postgres, "alerts": alerts}
    )
    result = metric_alerts_sensor(context)
    return context.cursor, result


def sent_rows(postgres) -> list[dict]:
    with postgres.connect() as conn:
        return [dict(r) for r in conn.execute(sa.text("SELECT * FROM alerts_sent ORDER BY id")).mappings()]


def everything_stored(postgres) -> str:
    with postgres.connect() as conn:
        return "\n".join(conn.execute(sa.text("SELECT alerts_sent::text FROM alerts_sent")).scalars())


# The seed's table, written out independently of pipelines.lib.alerts: (day, metric) → (severity, level).
BOUNDARY_DAYS: dict[str, dict[str, Any]] = {
    # exactly on every warning level: nothing
    "2025-06-01": dict(n=20, cited=13, latency_ms=3500, cost_jpy=3.5),
    # just past every warning level
    "2025-06-02": dict(n=10000, cited=6499, latency_ms=3501, cost_jpy=3.5001),
    # exactly on every critical level: still warnings
    "2025-06-03": dict(n=20, cited=12, latency_ms=5000, cost_jpy=5.0),
    # just past every critical level
    "2025-06-04": dict(n=10000, cited=5999, latency_ms=5001, cost_jpy=5.0001),
}
EXPECTED = {
    ("2025-06-02", "citation_rate"): ("warning", 65.0, 64.99),
    ("2025-06-02", "latency_p95"): ("warning", 3500.0, 3501.0),
    ("2025-06-02", "cost_per_answer"): ("warning", 3.5, 3.5001),
    ("2025-06-03", "citation_rate"): ("warning", 65.0, 60.0),
    ("2025-06-03", "latency_p95"): ("warning", 3500.0, 5000.0),
    ("2025-06-03", "cost_per_answer"): ("warning", 3.5, 5.0),
    ("2025-06-04", "citation_rate"): ("critical", 60.0, 59.99),
    ("2025-06-04", "latency_p95"): ("critical", 5000.0, 5001.0),
    ("2025-06-04", "cost_per_answer"): ("critical", 5.0, 5.0001),
}


def load_boundary_days(postgres) -> None:
    for day, spec in BOUNDARY_DAYS.items():
        insert(postgres, day_rows(day, **spec))


# ---------------------------------------------------------------- metric alerts


def test_boundaries_one_alert_per_day_and_metric_never_twice(postgres, instance):
    load_boundary_days(postgres)
    result = run_metrics(postgres, instance, "2025-06-01", "2025-06-04")
    with receiver() as r:
        alerts = alerts_resource(r.url)
        cursor, outcome = tick(instance, postgres, alerts)
        got = {(b["day"], b["metric"]): (b["severity"], b["threshold"], b["value"]) for b in r.bodies}
        assert len(r.bodies) == len(EXPECTED)
        assert got.keys() == EXPECTED.keys()
        for key, (severity, threshold, value) in EXPECTED.items():
            assert got[key][:2] == (severity, threshold), key
            assert got[key][2] == pytest.approx(value, abs=1e-9), key
        body = r.bodies[0]
        assert body["run_url"] == f"{UI}/runs/{result.run_id}"
        assert body["asset_url"].startswith(f"{UI}/assets/rag_metrics_history?partition=2025-06-0")
        assert body["timezone"] == "Asia/Tokyo" and body["text"]
        assert "9 sent" in str(outcome.skip_message)

        # The same evaluations seen again (a tick from scratch), and the same days re-run: nothing new.
        tick(instance, postgres, alerts)
        tick(instance, postgres, alerts, cursor)
        run_metrics(postgres, instance, "2025-06-01", "2025-06-04")
        run_metrics(postgres, instance, "2025-06-04")
        tick(instance, postgres, alerts, cursor)
        assert len(r.bodies) == len(EXPECTED)

    rows = sent_rows(postgres)
    assert {(str(x["day"]), x["metric"]) for x in rows} == EXPECTED.keys()
    assert {x["status"] for x in rows} == {"sent"} and {x["attempts"] for x in rows} == {1}
    assert all(x["run_id"] == result.run_id for x in rows)


def test_levels_between_the_boundaries_in_the_rules():
    # Values a day of whole answers cannot hit exactly, checked on the rules themselves.
    by_name = {t.name: t for t in slo.default_thresholds()}
    cases = [
        ("citation_rate", 65.0, None),
        ("citation_rate", 64.99, "warning"),
        ("citation_rate", 60.0, "warning"),
        ("citation_rate", 59.99, "critical"),
        ("latency_p95", 3500.0, None),
        ("latency_p95", 3500.01, "warning"),
        ("latency_p95", 5000.0, "warning"),
        ("latency_p95", 5000.01, "critical"),
        ("cost_per_answer", 3.5, None),
        ("cost_per_answer", 3.51, "warning"),
        ("cost_per_answer", 5.0, "warning"),
        ("cost_per_answer", 5.01, "critical"),
    ]
    for name, value, severity in cases:
        alerts = metric_alerts(by_name[name], [{"date": "2025-06-01", "value": value}], run_id="r1")
        assert [a.severity for a in alerts] == ([severity] if severity else []), (name, value)


def test_slack_format_carries_text_blocks_and_link(postgres, instance):
    insert(postgres, day_rows("2025-06-04", **BOUNDARY_DAYS["2025-06-03"]))
    result = run_metrics(postgres, instance, "2025-06-04")
    with receiver() as r:
        tick(instance, postgres, alerts_resource(r.url, "slack"))
    assert len(r.bodies) == 3
    for body in r.bodies:
        assert set(body) == {"text", "blocks"}
        assert "warning" in body["text"] and "2025-06-04" in body["text"]
        rendered = json.dumps(body["blocks"])
        assert f"{UI}/runs/{result.run_id}" in rendered
        assert "Day (JST)" in rendered and "Threshold" in rendered
    assert r.requests[0]["headers"]["Content-Type"] == "application/json"


def test_receiver_answers_500_then_200(postgres, instance):
    insert(postgres, day_rows("2025-06-04", n=20, cited=20, latency_ms=1000, cost_jpy=5.5))
    run_metrics(postgres, instance, "2025-06-04")
    with receiver(script=[500]) as r:
        _, outcome = tick(instance, postgres, alerts_resource(r.url))
    assert len(r.bodies) == 2 and r.bodies[0] == r.bodies[1]
    assert r.bodies[0]["metric"] == "cost_per_answer" and r.bodies[0]["severity"] == "critical"
    [stored] = sent_rows(postgres)
    assert (stored["status"], stored["attempts"], stored["last_error"]) == ("sent", 2, None)
    assert "1 sent" in str(outcome.skip_message)


def test_hanging_receiver_does_not_hang_the_tick_and_alerts_go_out_later(postgres, instance):
    for day in ("2025-06-03", "2025-06-04"):
        insert(postgres, day_rows(day, **BOUNDARY_DAYS["2025-06-03"]))  # three warnings a day
    run_metrics(postgres, instance, "2025-06-03", "2025-06-04")
    with receiver(then="hang") as r:
        alerts = alerts_resource(r.url, timeout_s=0.3, attempts=2, tick_budget_s=2.0)
        started = time.monotonic()
        cursor, _ = tick(instance, postgres, alerts)
        elapsed = time.monotonic() - started
        # One alert's two attempts time out, then the receiver is taken to be down for this tick.
        assert elapsed < 2.0 + 0.3 + 1.0
        assert len(r.requests) == 2
        rows = sent_rows(postgres)
        assert len(rows) == 6 and {x["status"] for x in rows} == {"pending"}
        assert "did not answer within 0.3 s" in rows[0]["last_error"]

        r.answer(200)
        tick(instance, postgres, alerts, cursor)
        delivered = [req["body"] for req in r.requests[2:]]
    assert sorted((b["day"], b["metric"]) for b in delivered) == sorted(
        (day, metric) for day in ("2025-06-03", "2025-06-04") for metric in slo_names()
    )
    assert {x["status"] for x in sent_rows(postgres)} == {"sent"}


def slo_names() -> list[str]:
    return ["citation_rate", "latency_p95", "cost_per_answer"]


def test_webhook_url_never_leaks(postgres, instance, capfd):
    insert(postgres, day_rows("2025-06-04", n=20, cited=10, latency_ms=1000, cost_jpy=1.0))
    run_metrics(postgres, instance, "2025-06-04")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    seen: list[str] = []
    with receiver(then=500) as r:
        for url in (r.url, f"http://127.0.0.1:{closed_port}/hooks/{TOKEN}"):
            alerts = alerts_resource(url, attempts=2)
            cursor, outcome = tick(instance, postgres, alerts)
            seen += [
                str(outcome.skip_message),
                str(cursor),
                repr(alerts.notifier()),
                everything_stored(postgres),
            ]
    assert r.requests, "the receiver was asked"
    errors = [x["last_error"] for x in sent_rows(postgres)]
    assert any("HTTP 500" in e for e in errors) or any("cannot reach" in e for e in errors)
    logged = capfd.readouterr()
    text = "\n".join(seen) + logged.out + logged.err
    for records in instance.get_run_records():
        for event in instance.all_logs(records.dagster_run.run_id):
            text += str(event)
    assert "delivery failed" in logged.err
    assert TOKEN not in text


def test_unset_url_sends_nothing(postgres, instance):
    insert(postgres, day_rows("2025-06-04", n=20, cited=10, latency_ms=1000, cost_jpy=1.0))
    run_metrics(postgres, instance, "2025-06-04")
    cursor, outcome = tick(instance, postgres, AlertsResource())
    assert "ALERT_WEBHOOK_URL is not set" in str(outcome.skip_message) and cursor is None
    assert sent_rows(postgres) == []


# ---------------------------------------------------------------- embedding failures


def report_embedding_run(instance, embedded: int, failed: int) -> str:
    """A run materializing `chunk_embeddings` with the metadata the real asset reports."""

    @dg.asset(name="chunk_embeddings")
    def stand_in() -> dg.MaterializeResult:
        stats = EmbedStats(
            model="m", provider="p", dimensions=3, chunks_embedded=embedded, chunks_failed=failed
        )
        return dg.MaterializeResult(metadata=embed_stats_metadata(stats))

    return dg.materialize([stand_in], instance=instance).run_id


def test_embedding_failures_over_five_percent_are_critical(postgres, instance):
    report_embedding_run(instance, embedded=95, failed=5)  # 5 % exactly: fine
    over = report_embedding_run(instance, embedded=94, failed=6)  # 6 %
    report_embedding_run(instance, embedded=0, failed=0)  # nothing tried
    with receiver() as r:
        alerts = alerts_resource(r.url)
        cursor, _ = tick(instance, postgres, alerts)
        tick(instance, postgres, alerts, cursor)
        tick(instance, postgres, alerts)
    [body] = r.bodies
    assert (body["kind"], body["severity"], body["metric"]) == (
        "embedding_failures",
        "critical",
        "embedding_failure_rate",
    )
    assert body["value"] == pytest.approx(6.0) and body["threshold"] == 5.0
    assert (
        body["run_id"] == over
        and body["day"] == dt.datetime.now(dt.timezone(dt.timedelta(hours=9))).date().isoformat()
    )


# ---------------------------------------------------------------- job failures


@dg.op(config_schema={"fail": bool})
def maybe_fail(context) -> None:
    if context.op_config["fail"]:
        raise RuntimeError("the batch broke")


@dg.job
def batch_job():
    maybe_fail()


@dg.job
def other_job():
    maybe_fail()


def run_job(instance, job: dg.JobDefinition, fail: bool) -> dg.ExecuteInProcessResult:
    return job.execute_in_process(
        instance=instance,
        raise_on_error=False,
        run_config={"ops": {"maybe_fail": {"config": {"fail": fail}}}},
    )


def on_failure(instance, postgres, alerts: AlertsResource, result: dg.ExecuteInProcessResult) -> None:
    assert not result.success
    context = dg.build_run_status_sensor_context(
        sensor_name="job_failure_alert_sensor",
        dagster_event=result.get_run_failure_event(),
        dagster_instance=instance,
        dagster_run=instance.get_run_by_id(result.run_id),
        resources={"postgres": postgres, "alerts": alerts},
    ).for_run_failure()
    job_failure_alert_sensor(context)


def test_job_failures_warn_then_critical_and_a_success_resets(postgres, instance):
    with receiver() as r:
        alerts = alerts_resource(r.url)
        first = run_job(instance, batch_job, fail=True)
        on_failure(instance, postgres, alerts, first)
        on_failure(instance, postgres, alerts, first)  # the same failure seen twice
        second = run_job(instance, batch_job, fail=True)
        on_failure(instance, postgres, alerts, second)
        third = run_job(instance, batch_job, fail=True)
        on_failure(instance, postgres, alerts, third)  # still the same streak: already critical
        other = run_job(instance, other_job, fail=True)
        on_failure(instance, postgres, alerts, other)  # another job has its own count
        assert run_job(instance, batch_job, fail=False).success
        after_reset = run_job(instance, batch_job, fail=True)
        on_failure(instance, postgres, alerts, after_reset)
    got = [(b["job"], b["severity"], b["value"], b["run_id"]) for b in r.bodies]
    assert got == [
        ("batch_job", "warning", 1.0, first.run_id),
        ("batch_job", "critical", 2.0, second.run_id),
        ("other_job", "warning", 1.0, other.run_id),
        ("batch_job", "warning", 1.0, after_reset.run_id),
    ]
    assert r.bodies[1]["run_url"] == f"{UI}/runs/{second.run_id}"
    assert [x["kind"] for x in sent_rows(postgres)] == ["job_failure"] * 4
