"""`make run`: set up the database, load the demo content and dialogue log, run the nightly job once,
and print what is there. A second run embeds nothing."""

from __future__ import annotations

import datetime as dt
import sys
import warnings
from typing import Any

import dagster as dg

# Beta parameters (backfill_policy) warn at import; `make run` output is meant to be read by a person.
warnings.filterwarnings("ignore", category=dg.BetaWarning)

from demo.dialogue import ingested_citation_sources, load_demo_dialogue, yesterday_jst  # noqa: E402
from pipelines.location.alert_sensors import job_failure_alert_sensor, metric_alerts_sensor  # noqa: E402
from pipelines.location.definitions import defs  # noqa: E402
from pipelines.sql import query  # noqa: E402

DEMO_DAYS = 30
# The summary below is the output; the runs' event logs are in the UI.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _run(job_name: str, instance: dg.DagsterInstance, **kwargs) -> dg.ExecuteInProcessResult:
    result = defs.resolve_job_def(job_name).execute_in_process(
        instance=instance, raise_on_error=False, run_config=QUIET, **kwargs
    )
    if not result.success:
        _alert_failure(instance, result)
        failed = [e.step_key for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        raise SystemExit(f"{job_name} failed in step(s) {', '.join(failed) or '?'}; see the run in `make ui`")
    return result


def _resource(name: str) -> Any:
    return (defs.resources or {})[name]


def _sensor_resources() -> dict[str, Any]:
    return {"postgres": _resource("postgres"), "alerts": _resource("alerts")}


def _alert_failure(instance: dg.DagsterInstance, result: dg.ExecuteInProcessResult) -> None:
    """What `dagster dev`'s daemon would do on a failed run: evaluate the job failure alert sensor."""
    run = instance.get_run_by_id(result.run_id)
    if not _resource("alerts").enabled or run is None:
        return
    context = dg.build_run_status_sensor_context(
        sensor_name=job_failure_alert_sensor.name,
        dagster_event=result.get_run_failure_event(),
        dagster_instance=instance,
        dagster_run=run,
        resources=_sensor_resources(),
    ).for_run_failure()
    job_failure_alert_sensor(context)


def _evaluate_alerts(instance: dg.DagsterInstance) -> str:
    """One tick of the metric alert sensor (runs in-process here have no daemon to tick it)."""
    if not _resource("alerts").enabled:
        return "not configured (set ALERT_WEBHOOK_URL to send them; see README, Alerts)"
    postgres = _resource("postgres")
    with postgres.connect() as conn:
        before = conn.execute(query("alerts/select_last_alert_id")).scalar_one()
        conn.commit()
    metric_alerts_sensor(dg.build_sensor_context(instance=instance, resources=_sensor_resources()))
    with postgres.connect() as conn:
        rows = conn.execute(query("alerts/select_alerts_since"), {"after_id": before}).mappings().all()
        totals = conn.execute(query("alerts/count_alerts_by_status")).mappings().one()
    sent = [r for r in rows if r["status"] == "sent"]
    days = sorted({str(r["day"]) for r in sent})
    critical = sum(r["severity"] == "critical" for r in sent)
    detail = (
        f"{critical} critical, {len(sent) - critical} warning; days {', '.join(days)}" if sent else "none new"
    )
    return (
        f"sent {len(sent)} ({detail}); alerts_sent holds {totals['sent']} sent, {totals['pending']} pending,"
        f" {totals['failed']} failed"
    )


def _metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization
        if mat.asset_key.to_user_string() == asset:
            return {k: v.value for k, v in mat.metadata.items()}
    return {}


def main() -> None:
    resources = defs.resources
    postgres = resources["postgres"]
    print(f"database       {postgres.display_url}")
    instance = dg.DagsterInstance.get()

    with postgres.connect() as conn:
        conn.execute(query("create_demo_question_templates"))
        conn.commit()

    ingestion = _run("ingestion_job", instance)

    yesterday = yesterday_jst()
    first_day = yesterday - dt.timedelta(days=DEMO_DAYS - 1)
    with postgres.connect() as conn:
        dialogue = load_demo_dialogue(
            conn, days=DEMO_DAYS, end_day=yesterday, sources=ingested_citation_sources(conn)
        )
        conn.commit()
    # All demo days in one run and one SQL pass, the way a UI backfill of a range runs.
    _run(
        "metrics_job",
        instance,
        tags={
            "dagster/asset_partition_range_start": first_day.isoformat(),
            "dagster/asset_partition_range_end": yesterday.isoformat(),
        },
    )
    nightly = _run("nightly_job", instance, partition_key=yesterday.isoformat())

    emb_first = _metadata(ingestion, "chunk_embeddings")
    emb_nightly = _metadata(nightly, "chunk_embeddings")
    sweep = _metadata(nightly, "retention_sweep")
    with postgres.connect() as conn:
        s = conn.execute(query("demo_summary")).mappings().one()
    skipped = _metadata(ingestion, "source_documents").get("skipped_expired", 0)
    print(f"documents      {s['documents']} (not re-ingested because their retention expired: {skipped})")
    print(f"chunks         {s['chunks']}")
    print(
        f"embeddings     {s['embeddings']} ({s['active_model']}); this run embedded"
        f" {emb_first.get('chunks_embedded', 0) + emb_nightly.get('chunks_embedded', 0)},"
        f" API requests {emb_first.get('requests', 0) + emb_nightly.get('requests', 0)},"
        f" failed {s['embedding_errors']}"
    )
    print(
        f"dialogue log   {s['dialogue_rows']} rows ({dialogue.rows} demo rows for {first_day}..{yesterday})"
    )
    print(
        f"metrics days   {s['metrics_days']} ({s['first_day']}..{s['last_day']}),"
        f" {s['days_meeting_slo']} meeting every SLO"
    )
    if sweep:
        print(
            f"sweeps         deleted {sweep.get('deleted', 0)}, held by legal hold {sweep.get('held_by_legal_hold', 0)},"
            f" expiring within 30 days {sweep.get('expiring_next_30_days', 0)}"
        )
    print(f"alerts         {_evaluate_alerts(instance)}")
    print(
        f"dagster runs   {instance.get_runs_count()} in {instance.root_directory}; `make ui` to browse them"
    )


if __name__ == "__main__":
    sys.exit(main())
