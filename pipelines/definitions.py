"""The one Definitions of the rag_etl code location: every asset, check, job, schedule and resource."""

from __future__ import annotations

import dagster as dg

from pipelines.resources import build_resources

defs = dg.Definitions(
    assets=[],
    asset_checks=[],
    jobs=[],
    schedules=[],
    sensors=[],
    resources=build_resources(),
)
