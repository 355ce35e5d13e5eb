"""The nightly 02:00 JST schedule, the JST partitions and the job, as Dagster will load them."""

import datetime as dt
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
import sqlalchemy as sa

from assets import partitions
from assets.metrics import ai_dialogue_log, rag_metrics_history
from location.jobs import metrics_job, nightly_job
from location.schedules import nightly_schedule
from resources.postgres import PostgresResource

JST = ZoneInfo("Asia/Tokyo")


def definitions(postgres: PostgresResource | None = None) -> dg.Definitions:
    return dg.Definitions(
        assets=[ai_dialogue_log, rag_metrics_history],
        jobs=[metrics_job, nightly_job],
        schedules=[nightly_schedule],
        resources={
            "postgres": postgres or PostgresResource(database_url="postgresql+psycopg://unused/unused")
        },
    )


def tick(at: dt.datetime) -> list[dg.RunRequest]:
    defs = definitions()
    schedule = defs.resolve_schedule_def("nightly_schedule")
    # As the daemon evaluates it: with the repository, which resolves the partition's tags.
    with dg.build_schedule_context(
        scheduled_execution_time=at, repository_def=defs.get_repository_def()
    ) as context:
        data = schedule.evaluate_tick(context)
    return list(data.run_requests or [])


def test_definitions_load_with_the_job_schedule_and_checks():
    defs = definitions()
    jobs = {j.name for j in defs.resolve_all_job_defs()}
    assert "metrics_job" in jobs
    job = defs.resolve_job_def("metrics_job")
    assert job.partitions_def == partitions.daily_jst_partitions
    graph = defs.resolve_asset_graph()
    key = dg.AssetKey("rag_metrics_history")
    assert {c.name for c in graph.asset_check_keys if c.asset_key == key} == {
        "citation_rate",
        "latency_p95",
        "cost_per_answer",
    }
    assert graph.get(key).parent_keys == {dg.AssetKey("ai_dialogue_log")}
    assert rag_metrics_history.backfill_policy == dg.BackfillPolicy.single_run()
    assert rag_metrics_history.group_names_by_key[key] == "metrics"


def test_schedule_runs_at_two_in_the_morning_tokyo_time():
    schedule = definitions().resolve_schedule_def("nightly_schedule")
    assert schedule.cron_schedule == "0 2 * * *"
    assert schedule.execution_timezone == "Asia/Tokyo"
    assert schedule.job_name == "nightly_job"


@pytest.mark.parametrize(
    ("at", "partition"),
    [
        (dt.datetime(2025, 6, 15, 2, 0, tzinfo=JST), "2025-06-14"),
        # 02:00 JST on 1 July is still 30 June in UTC: the partition is the JST day before, 30 June.
        (dt.datetime(2025, 6, 30, 17, 0, tzinfo=dt.UTC), "2025-06-30"),
        (dt.datetime(2026, 1, 1, 2, 0, tzinfo=JST), "2025-12-31"),
        (dt.datetime(2025, 3, 1, 2, 0, tzinfo=JST), "2025-02-28"),
    ],
)
def test_tick_requests_the_previous_jst_day(at, partition):
    (request,) = tick(at)
    assert request.partition_key == partition
    assert request.job_name == "nightly_job"


def test_partitions_are_tokyo_days_from_a_configurable_start(monkeypatch):
    p = partitions.daily_jst_partitions
    assert p.timezone == "Asia/Tokyo"
    window = p.time_window_for_partition_key("2025-06-10")
    assert window.start == dt.datetime(2025, 6, 9, 15, 0, tzinfo=dt.UTC)
    assert window.end == dt.datetime(2025, 6, 10, 15, 0, tzinfo=dt.UTC)
    # The current JST day is not a partition until it is over.
    with dg.partition_loading_context(effective_dt=dt.datetime(2025, 6, 10, 23, 59, tzinfo=JST)):
        assert p.get_last_partition_key() == "2025-06-09"
    with dg.partition_loading_context(effective_dt=dt.datetime(2025, 6, 11, 0, 0, tzinfo=JST)):
        assert p.get_last_partition_key() == "2025-06-10"

    monkeypatch.delenv("METRICS_START_DATE", raising=False)
    assert partitions.metrics_start_date() == "2025-01-01"
    monkeypatch.setenv("METRICS_START_DATE", "2024-04-01")
    assert partitions.metrics_start_date() == "2024-04-01"
    monkeypatch.setenv("METRICS_START_DATE", "April 2024")
    with pytest.raises(ValueError, match="METRICS_START_DATE"):
        partitions.metrics_start_date()


def test_the_scheduled_run_computes_the_previous_day(postgres):
    with postgres.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO ai_dialogue_log (user_id, query, latency_ms, token_cost_jpy, created_at)"
                " VALUES ('u', 'q', 900, 1.0, :at)"
            ),
            [{"at": dt.datetime(2025, 6, 14, h, tzinfo=JST)} for h in (0, 12, 23)],
        )
    (request,) = tick(dt.datetime(2025, 6, 15, 2, 0, tzinfo=JST))
    job = definitions(postgres).resolve_job_def(request.job_name)
    result = job.execute_in_process(partition_key=request.partition_key, tags=request.tags)
    assert result.success
    with postgres.connect() as conn:
        rows = conn.execute(sa.text("SELECT date, total_queries FROM rag_metrics_history")).all()
    assert rows == [(dt.date(2025, 6, 14), 3)]
    assert {e.check_name for e in result.get_asset_check_evaluations()} == {
        "citation_rate",
        "latency_p95",
        "cost_per_answer",
    }
