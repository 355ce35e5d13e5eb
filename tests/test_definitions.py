"""The code location loads the way `dagster dev` loads it, and its jobs, schedules and sensors resolve."""

import importlib
import subprocess
import sys

import dagster as dg

# The snapshot of the code location. A change to any of these sets must be deliberate: update it here in the
# same change that adds, renames or removes the job, schedule, sensor, asset or check.
JOBS = {
    "batch_embedding_apply_job",
    "cancel_embedding_batches_job",
    "erasure_job",
    "ingestion_job",
    "metrics_job",
    "nightly_job",
    "reembedding_job",
}
SCHEDULES = {"nightly_schedule"}
SENSORS = {
    "batch_embedding_sensor",
    "embedding_model_change_sensor",
    "job_failure_alert_sensor",
    "metric_alerts_sensor",
}
ASSETS = {
    "ai_dialogue_log",
    "chunk_embeddings",
    "document_chunks",
    "embedding_index",
    "embedding_model_switch",
    "rag_metrics_history",
    "reembedding",
    "retention_sweep",
    "retrieval_quality",
    "source_documents",
}
ASSET_CHECKS = {
    ("chunk_embeddings", "no_failed_chunks"),
    ("document_chunks", "every_document_chunked"),
    ("embedding_model_switch", "hnsw_recall_at_10"),
    ("rag_metrics_history", "citation_rate"),
    ("rag_metrics_history", "cost_per_answer"),
    ("rag_metrics_history", "latency_p95"),
    ("reembedding", "covers_every_chunk"),
    ("retention_sweep", "no_expired_unprotected_content"),
    ("retrieval_quality", "retrieval_quality_holds"),
    ("source_documents", "no_rejected_items"),
}
# Dagster's implicit job for materializing assets outside any named job.
IMPLICIT_JOB = "__ASSET_JOB"


def load_defs() -> dg.Definitions:
    module = importlib.import_module("location.definitions")
    return module.defs


def test_every_job_schedule_and_sensor_resolves():
    defs = load_defs()
    repo = defs.get_repository_def()
    job_names = {j.name for j in repo.get_all_jobs()}
    assert job_names - {IMPLICIT_JOB} == JOBS
    assert {s.name for s in repo.schedule_defs} == SCHEDULES
    assert {s.name for s in repo.sensor_defs} == SENSORS
    for schedule in repo.schedule_defs:
        assert schedule.job_name in job_names
    for sensor in repo.sensor_defs:
        for target in sensor.targets:
            assert target.job_name in job_names


def test_ingestion_assets_are_in_the_graph_with_groups_and_kinds():
    graph = load_defs().resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == ASSETS
    assert {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys} == ASSET_CHECKS
    node = graph.get(dg.AssetKey("chunk_embeddings"))
    assert node.group_name == "embeddings"
    # True for the local embedder as much as for OpenAI; the provider is in the run's metadata.
    assert set(node.kinds) == {"postgres", "pgvector"}


def test_workspace_module_loads_in_a_fresh_interpreter():
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "from location.definitions import defs;"
            " print(','.join(sorted(j.name for j in defs.get_repository_def().get_all_jobs())))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert set(out.stdout.strip().split(",")) == {*JOBS, IMPLICIT_JOB}


def test_secrets_stay_as_env_var_references(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-should-not-leak")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:hunter2@db.invalid/x")
    from location.resources import build_resources

    resources = build_resources()
    shown = repr(resources["embedder"]) + repr(resources["postgres"])
    assert "sk-should-not-leak" not in shown and "hunter2" not in shown


def test_nightly_schedule_runs_the_whole_graph_but_reembedding():
    defs = load_defs()
    schedule = defs.resolve_schedule_def("nightly_schedule")
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("0 2 * * *", "Asia/Tokyo")
    job = defs.resolve_job_def(schedule.job_name)
    assert job.partitions_def.timezone == "Asia/Tokyo"
    selected = {k.to_user_string() for k in job.asset_layer.executable_asset_keys}
    assert {
        "source_documents",
        "document_chunks",
        "chunk_embeddings",
        "embedding_index",
        "retention_sweep",
        "rag_metrics_history",
    } <= selected
    assert not selected & {"reembedding", "embedding_model_switch"}
