"""Jobs of the code location."""

from __future__ import annotations

import dagster as dg

from pipelines.partitions import daily_jst_partitions

ingestion_job = dg.define_asset_job(
    "ingestion_job",
    selection=dg.AssetSelection.groups("sources", "chunks", "embeddings"),
    description="Sources → chunks → embeddings for the configured model.",
)

# Targets the asset by key so that importing jobs does not import every asset module.
metrics_job = dg.define_asset_job(
    "metrics_job",
    selection=dg.AssetSelection.assets("rag_metrics_history"),
    partitions_def=daily_jst_partitions,
    description="Compute rag_metrics_history for the selected JST day(s) and run its SLO alert checks.",
)
