"""Jobs of the code location."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time

import dagster as dg

from assets.erasure import erase_user_dialogue_op


def _watch_parent() -> None:
    """Kill this process when the process that started it dies.

    The multiprocessing parent of a step process is the run's process: `parent_process()` is set once the
    child has read its start data, and its sentinel becomes ready when the parent's end closes, which a
    SIGKILL closes too."""
    deadline = time.monotonic() + 60
    while (parent := multiprocessing.parent_process()) is None:
        if time.monotonic() > deadline:
            return  # a plain fork, not a multiprocessing child: nothing to watch
        time.sleep(0.05)
    parent.join()
    os.kill(os.getpid(), signal.SIGKILL)


def _start_parent_watch() -> None:
    # Step processes fork from the executor's forkserver, and they and the forkserver keep each other alive
    # (each holds the pipe whose end tells the forkserver to exit). Without this watch a step whose run was
    # killed (OOM, SIGKILL, a lost node) carries on alone, holding its locks and spending API calls for a run
    # Dagster has already marked failed.
    threading.Thread(target=_watch_parent, name="parent-watch", daemon=True).start()


# Imported into the forkserver (preload_modules), so every step process forked from it runs the hook.
os.register_at_fork(after_in_child=_start_parent_watch)

# Steps fork from a server process that has already imported the code location, instead of each starting
# a fresh interpreter that imports Dagster and every asset module again (seconds per step on a busy host).
forkserver_executor = dg.multiprocess_executor.configured(
    {"start_method": {"forkserver": {"preload_modules": ["location.definitions"]}}},
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
