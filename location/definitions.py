"""The one Definitions of the rag_etl code location: every asset, check, job, schedule and resource."""

from __future__ import annotations

import dagster as dg

from assets import chunks, embeddings, metrics, reembedding, retention, retrieval_quality, sources
from assets.batch_embeddings import batch_embedding_apply_job, cancel_embedding_batches_job
from location.alert_sensors import job_failure_alert_sensor, metric_alerts_sensor
from location.batch_sensors import batch_embedding_sensor
from location.jobs import erasure_job, ingestion_job, metrics_job, nightly_job, reembedding_job
from location.resources import build_resources
from location.schedules import nightly_schedule
from location.sensors import embedding_model_change_sensor

ASSETS = dg.load_assets_from_modules(
    [sources, chunks, embeddings, retrieval_quality, reembedding, metrics, retention]
)
# Every job of the location; the fault suite runs each pair of them at once, so a job added here joins it.
JOBS: list[dg.JobDefinition | dg.UnresolvedAssetJobDefinition] = [
    ingestion_job,
    metrics_job,
    nightly_job,
    reembedding_job,
    erasure_job,
    batch_embedding_apply_job,
    cancel_embedding_batches_job,
]

defs = dg.Definitions(
    assets=ASSETS,
    jobs=JOBS,
    schedules=[nightly_schedule],
    sensors=[
        embedding_model_change_sensor,
        metric_alerts_sensor,
        job_failure_alert_sensor,
        batch_embedding_sensor,
    ],
    resources=build_resources(),
)
