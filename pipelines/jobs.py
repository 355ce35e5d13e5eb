"""Jobs of the code location."""

from __future__ import annotations

import dagster as dg

ingestion_job = dg.define_asset_job(
    "ingestion_job",
    selection=dg.AssetSelection.groups("sources", "chunks", "embeddings"),
    description="Sources → chunks → embeddings for the configured model.",
)
