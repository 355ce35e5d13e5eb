"""The one Definitions of the rag_etl code location: every asset, check, job, schedule and resource."""

from __future__ import annotations

import dagster as dg

from assets import chunks, embeddings, sources
from pipelines.jobs import ingestion_job
from pipelines.resources import build_resources

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([sources, chunks, embeddings]),
    jobs=[ingestion_job],
    schedules=[],
    sensors=[],
    resources=build_resources(),
)
