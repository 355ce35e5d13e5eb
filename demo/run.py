"""`make run`: set up the database, load the demo content and dialogue log, run the jobs once as the
code location's runs (one printed line per stage), and print what is there. A second run embeds
nothing."""

from __future__ import annotations

import datetime as dt
import time
import warnings
from collections.abc import Mapping
from typing import Any

import dagster as dg

# Beta parameters (backfill_policy) warn at import; `make run` output is meant to be read by a person.
warnings.filterwarnings("ignore", category=dg.BetaWarning)

from demo.dialogue import ingested_citation_sources, load_demo_dialogue, yesterday_jst  # noqa: E402
from demo.progress import RunOutcome, run_job  # noqa: E402
from location.alert_sensors import job_failure_alert_sensor, metric_alerts_sensor  # noqa: E402
from location.definitions import defs  # noqa: E402
from pipelines.sql import query  # noqa: E402
from resources.postgres import PostgresResource  # noqa: E402

DEMO_DAYS = 30


def _run(job_name: str, instance: dg.DagsterInstance, tags: Mapping[str, str] | None = None) -> RunOutcome:
    outcome = run_job(defs, job_name, instance, tags=tags)
    if not outcome.success:
        _alert_failure(instance, outcome.run_id)
        raise SystemExit(
            f"{job_name} failed in step(s) {', '.join(outcome.failed_steps) or '?'};"
            f" see run {outcome.run_id} in `make ui`"
        )
    return outcome


def _count(*values: Mapping[str, Any], key: str) -> int:
    return sum(int(v.get(key, 0)) for v in values)


def _resource(name: str) -> Any:
    return (defs.resources or {})[name]


def _sensor_resources() -> dict[str, Any]:
    return {"postgres": _resource("postgres"), "alerts": _resource("alerts")}


def _alert_failure(instance: dg.DagsterInstance, run_id: str) -> None:
    """What `dagster dev`'s daemon would do on a failed run: evaluate the job failure alert sensor."""
    run = instance.get_run_by_id(run_id)
    failures = instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    if not _resource("alerts").enabled or run is None or not failures or failures[-1].dagster_event is None:
        return
    context = dg.build_run_status_sensor_context(
        sensor_name=job_failure_alert_sensor.name,
        dagster_event=failures[-1].dagster_event,
        dagster_instance=instance,
        dagster_run=run,
        resources=_sensor_resources(),
    ).for_run_failure()
    job_failure_alert_sensor(context)


def _evaluate_alerts(instance: dg.DagsterInstance, postgres: PostgresResource) -> str:
    """One tick of the metric alert sensor (runs in-process here have no daemon to tick it)."""
    if not _resource("alerts").enabled:
        return "not configured (set ALERT_WEBHOOK_URL to send them; see docs/alerts.md)"
    with postgres.connect() as conn:
        before = conn.execute(query("alerts/select_last_alert_id")).scalar_one()
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


def main() -> None:
    # The definitions' resources hold `dg.EnvVar`s; Dagster resolves them, as it does for a run.
    with dg.build_resources({"postgres": (defs.resources or {})["postgres"]}) as resources:
        postgres = resources.postgres
        print(f"database       {postgres.display_url}")
        instance = dg.DagsterInstance.get()

        with postgres.begin() as conn:
            conn.execute(query("demo/create_demo_question_templates"))
            before = conn.execute(query("demo/select_demo_summary")).mappings().one()

        ingestion = _run("ingestion_job", instance)

        yesterday = yesterday_jst()
        first_day = yesterday - dt.timedelta(days=DEMO_DAYS - 1)
        started = time.perf_counter()
        with postgres.begin() as conn:
            dialogue = load_demo_dialogue(
                conn, days=DEMO_DAYS, end_day=yesterday, sources=ingested_citation_sources(conn)
            )
        print(
            f"demo dialogue: {dialogue.rows:,} rows for {first_day}..{yesterday} ✓"
            f" {time.perf_counter() - started:.1f} s"
        )
        # All demo days in one run and one SQL pass, the way a UI backfill of a range runs.
        _run(
            "metrics_job",
            instance,
            tags={
                "dagster/asset_partition_range_start": first_day.isoformat(),
                "dagster/asset_partition_range_end": yesterday.isoformat(),
            },
        )
        nightly = _run("nightly_job", instance, tags={"dagster/partition": yesterday.isoformat()})

        with postgres.connect() as conn:
            s = conn.execute(query("demo/select_demo_summary")).mappings().one()

    sources = [r.metadata.get("source_documents", {}) for r in (ingestion, nightly)]
    embedded = [r.metadata.get("chunk_embeddings", {}) for r in (ingestion, nightly)]
    sweep = nightly.metadata.get("retention_sweep", {})
    swept, swept_embeddings = int(sweep.get("deleted", 0)), int(sweep.get("embeddings_deleted", 0))
    skipped = int(sources[0].get("skipped_expired", 0))
    print()
    print(
        f"documents      {s['documents']}: {before['documents']} before, {_count(*sources, key='inserted_or_updated')}"
        f" ingested or changed, {_count(*sources, key='deleted')} gone from their source,"
        f" {swept} expired and swept by retention_sweep"
        + (f" ({skipped} expired page(s) not ingested again)" if skipped else "")
    )
    print(f"chunks         {s['chunks']}")
    print(
        f"embeddings     {s['embeddings']} ({s['active_model']}): {before['embeddings']} before,"
        f" {_count(*embedded, key='chunks_embedded')} embedded by this run"
        f" in {_count(*embedded, key='requests')} API request(s), {swept_embeddings} deleted with the"
        f" swept page(s); {s['embedding_errors']} failed"
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
            f"sweeps         deleted {swept}, held by legal hold {sweep.get('held_by_legal_hold', 0)},"
            f" expiring within 30 days {sweep.get('expiring_next_30_days', 0)}"
        )
    print(f"alerts         {_evaluate_alerts(instance, postgres)}")
    print(
        f"dagster runs   {instance.get_runs_count()} in {instance.root_directory}; `make ui` to browse them"
        " (Runs, Overview → Timeline)"
    )


if __name__ == "__main__":
    main()
