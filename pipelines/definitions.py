"""The one Definitions of the rag_etl code location: every asset, check, job, schedule and resource."""

from __future__ import annotations

import dagster as dg

from assets import chunks, embeddings, metrics, retention, sources
from pipelines.jobs import ingestion_job, metrics_job, nightly_job
from pipelines.schedules import nightly_metrics_schedule
from pipelines.resources import build_resources

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([sources, chunks, embeddings, metrics, retention]),
    jobs=[ingestion_job, metrics_job, nightly_job],
    schedules=[nightly_metrics_schedule],
    sensors=[],
    resources=build_resources(),
)
