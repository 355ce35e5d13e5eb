"""Jobs of the code location."""

from __future__ import annotations

import dagster as dg

from assets.erasure import erase_user_dialogue_op

# Steps fork from a server process that has already imported the code location, instead of each starting
# a fresh interpreter that imports Dagster and every asset module again (seconds per step on a busy host).
forkserver_executor = dg.multiprocess_executor.configured(
    {"start_method": {"forkserver": {"preload_modules": ["pipelines.location.definitions"]}}},
    name="forkserver_multiprocess",
)

ingestion_job = dg.define_asset_job(
    "ingestion_job",
    selection=dg.AssetSelection.groups("sources", "chunks", "embeddings"),
    description="Sources → chunks → embeddings for the configured model.",
    # A strictly linear chain: parallel step processes buy nothing, so the steps run in the run's process.
    executor_def=dg.in_process_executor,
)

# Targets the asset by key so that importing jobs does not import every asset module; Dagster takes the
# JST daily partitions from the asset, which is what makes this job partitioned and schedulable.
metrics_job = dg.define_asset_job(
    "metrics_job",
    selection=dg.AssetSelection.assets("rag_metrics_history"),
    description="Compute rag_metrics_history for the selected JST day(s) and run its SLO alert checks.",
    executor_def=dg.in_process_executor,
)

# The nightly run: every asset, for yesterday's JST partition. Unpartitioned assets (ingestion,
# retention) simply run in full; the partition only selects the metrics day. Re-embedding is left to
# its sensor-launched job, so that a model change never puts a whole corpus's spend (or a budget
# refusal) into the nightly run; chunk_embeddings keeps the active model complete meanwhile.
nightly_job = dg.define_asset_job(
    "nightly_job",
    selection=dg.AssetSelection.all() - dg.AssetSelection.groups("reembedding"),
    description="Nightly: retention sweep, ingestion, embeddings, and yesterday's (JST) RAG metrics.",
    # Retention and metrics run beside the ingestion chain, so steps keep their own processes; forked.
    executor_def=forkserver_executor,
)

reembedding_job = dg.define_asset_job(
    "reembedding_job",
    selection=dg.AssetSelection.groups("reembedding"),
    description="Blue/green: build the configured embedding model beside the active one, check it covers every"
    " chunk, switch readers atomically, drop vectors retired past the grace period, measure index recall.",
    executor_def=forkserver_executor,
)


@dg.job(
    description="Right to be forgotten: delete one user's dialogue log (run config `user_id`), recompute the"
    " metrics days it touched, audit it in erasure_audit without the user's id.",
    tags={"kind": "erasure"},
)
def erasure_job() -> None:
    erase_user_dialogue_op()
