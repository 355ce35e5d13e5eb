"""Jobs of the code location."""

from __future__ import annotations

import dagster as dg

from pipelines.partitions import daily_jst_partitions

ingestion_job = dg.define_asset_job(
    "ingestion_job",
    selection=dg.AssetSelection.groups("sources", "chunks", "embeddings"),
    description="Sources → chunks → embeddings for the configured model.",
)

# Targets the asset by key so that importing jobs does not import every asset module; Dagster takes the
# JST daily partitions from the asset, which is what makes this job partitioned and schedulable.
metrics_job = dg.define_asset_job(
    "metrics_job",
    selection=dg.AssetSelection.assets("rag_metrics_history"),
    description="Compute rag_metrics_history for the selected JST day(s) and run its SLO alert checks.",
)

# The nightly run: every asset, for yesterday's JST partition. Unpartitioned assets (ingestion,
# retention) simply run in full; the partition only selects the metrics day.
nightly_job = dg.define_asset_job(
    "nightly_job",
    selection=dg.AssetSelection.all(),
    partitions_def=daily_jst_partitions,
    description="Nightly: retention sweep, ingestion, embeddings, and yesterday's (JST) RAG metrics.",
)
