"""Stage 3b: blue/green re-embedding after a change of the configured embedding model."""

from collections.abc import Callable

import dagster as dg

from assets.batch_embeddings import submit_embedding_batches
from assets.embeddings import EmbeddingRunConfig, chunk_embeddings, embed_stats_metadata
from pipelines.embeddings import BudgetExceededError, EmbedStats
from pipelines.hnsw import RecallResult
from pipelines.models import Coverage, CoverageError
from pipelines.reembedding import BuildResult, ModelSwitch, build_model, switch_to_configured_model
from pipelines.retrieval_eval import gate_model_switch
from resources.embedders import EmbedderResource
from resources.postgres import PostgresResource

GROUP = "reembedding"
RECALL_WARN_BELOW = 0.95
RECALL_SAMPLE = 50


def _estimate_metadata(stats: EmbedStats, budget_usd: float | None) -> dict[str, dg.MetadataValue]:
    return {
        "model": dg.MetadataValue.text(stats.model),
        "texts_to_embed": dg.MetadataValue.int(stats.unique_texts),
        "estimated_tokens": dg.MetadataValue.int(stats.estimated_tokens),
        "estimated_cost_usd": dg.MetadataValue.float(round(stats.estimated_cost_usd, 6)),
        "budget_usd": dg.MetadataValue.float(budget_usd)
        if budget_usd is not None
        else dg.MetadataValue.text("none"),
        "chunks_reused_by_hash": dg.MetadataValue.int(stats.chunks_reused),
    }


class SwitchConfig(dg.Config):
    """`allow_worse_model`: switch although the quality gate found the new model worse (its vectors are
    already built, so this costs no embedding requests)."""

    allow_worse_model: bool = False


def quality_gate(
    context: dg.AssetExecutionContext,
    postgres: PostgresResource,
    embedder: EmbedderResource,
    target: str,
    allow_worse: bool,
) -> dict[str, dg.MetadataValue]:
    """The switch's quality gate (`pipelines.retrieval_eval.gate_model_switch`): raises with both scores
    when the new model is worse; otherwise returns what it found, for the switch's metadata."""
    outcome = gate_model_switch(
        postgres.engine,
        embedder.factory(postgres.engine),
        target,
        embedder.evaluation.settings(),
        run_id=context.run.run_id,
        allow_worse=allow_worse,
    )
    metadata: dict[str, dg.MetadataValue] = {"quality_gate": dg.MetadataValue.text(outcome.decision.reason)}
    for side, found in (("new", outcome.candidate), ("active", outcome.active)):
        if found is not None:
            metadata[f"{side}_model_recall_at_k"] = dg.MetadataValue.float(round(found.recall_at_k, 4))
            metadata[f"{side}_model_mrr"] = dg.MetadataValue.float(round(found.mrr, 4))
    context.log.info(f"quality gate for {target}: {outcome.decision.reason}")
    if not outcome.decision.allowed:
        raise dg.Failure(
            description=f"{target} not switched to; readers keep {outcome.active_model}. {outcome.decision.reason}."
            " Its vectors stay: launch reembedding_job with ops: embedding_model_switch: config:"
            " allow_worse_model: true to switch anyway.",
            metadata=metadata,
        )
    return metadata


# After chunk_embeddings, never beside it: when both target the same model they would embed the same chunks.
@dg.asset(
    deps=[chunk_embeddings],
    group_name=GROUP,
    pool="reembedding",
    # Kinds are static and true whichever provider runs; the provider is in the run's metadata.
    kinds={"postgres", "pgvector"},
    check_specs=[
        dg.AssetCheckSpec(
            "covers_every_chunk",
            asset="reembedding",
            blocking=True,
            description="The configured model has a vector of the current text of every chunk; until it does,"
            " the switch does not run and readers keep the active model.",
        )
    ],
)
def reembedding(
    context: dg.AssetExecutionContext,
    config: EmbeddingRunConfig,
    postgres: PostgresResource,
    embedder: EmbedderResource,
) -> dg.MaterializeResult:
    """The configured model's vectors built beside the active model's, which readers keep using meanwhile:
    the model is registered (a retired one is re-opened and keeps its surviving vectors), the tokens and cost
    of what it lacks are estimated and published before any request and refused above EMBEDDING_BUDGET_USD,
    the missing chunks are embedded with the same dedup, batching, COPY and error handling as nightly
    embedding (resumable: finished requests are committed), and its HNSW index is built after the bulk load."""
    # Batch API hook (EMBEDDING_BATCH_API): submits and ends; batch_embedding_sensor takes it from there.
    batched = submit_embedding_batches(
        context, postgres, embedder, check_name="covers_every_chunk", **config.options()
    )
    if batched is not None:
        return batched
    estimate: dict[str, dg.MetadataValue] = {}
    limits = embedder.limits()
    try:
        result = build_model(
            postgres.engine,
            embedder.spec(),
            limits,
            embedder.factory(postgres.engine),
            **postgres.hnsw_options(),
            **config.options(),
            log=context.log.info,
            on_estimate=_estimate_publisher(context, estimate, limits.budget_usd),
        )
    except BudgetExceededError as exc:
        raise dg.Failure(
            description=f"{exc} (in reembedding_job's launchpad: ops: reembedding: config: allow_over_budget: true)",
            metadata=estimate,
        ) from None
    return dg.MaterializeResult(
        metadata=_build_metadata(result, limits.budget_usd), check_results=[_coverage_result(result.coverage)]
    )


def _estimate_publisher(
    context: dg.AssetExecutionContext, estimate: dict[str, dg.MetadataValue], budget_usd: float | None
) -> Callable[[EmbedStats], None]:
    """Publishes the build's estimate as an observation before any request, and keeps it in `estimate`."""

    def publish(stats: EmbedStats) -> None:
        estimate.update(_estimate_metadata(stats, budget_usd))
        context.log.info(
            f"{stats.model}: {stats.unique_texts} texts to embed, ~{stats.estimated_tokens:,} tokens,"
            f" ~${stats.estimated_cost_usd:.4f}"
        )
        context.log_event(dg.AssetObservation(asset_key=context.asset_key, metadata=estimate))

    return publish


def _build_metadata(result: BuildResult, budget_usd: float | None) -> dict[str, dg.MetadataValue]:
    metadata = {
        **embed_stats_metadata(result.stats),
        **_estimate_metadata(result.stats, budget_usd),
        "previous_active_model": dg.MetadataValue.text(result.previous_active or "none"),
        "status_before": dg.MetadataValue.text(result.status_before or "unregistered"),
        "reopened_retired_model": dg.MetadataValue.bool(result.reopened),
        # Coverage of the current chunks, re-counted after the build (chunks may have changed meanwhile).
        "chunks_total": dg.MetadataValue.int(result.coverage.total_chunks),
        "chunks_missing": dg.MetadataValue.int(result.coverage.missing),
    }
    if result.index is not None:
        metadata["hnsw_index"] = dg.MetadataValue.text(f"{result.index.index_name} ({result.index.note})")
        metadata["hnsw_build_s"] = dg.MetadataValue.float(round(result.index.seconds, 3))
    return metadata


def _coverage_result(cov: Coverage) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name="covers_every_chunk",
        passed=cov.complete,
        metadata={
            "chunks_total": cov.total_chunks,
            "chunks_missing": cov.missing,
            "sample_missing_chunk_ids": dg.MetadataValue.text(", ".join(map(str, cov.sample_missing)) or "-"),
        },
    )


@dg.asset(
    deps=[reembedding],
    group_name=GROUP,
    pool="reembedding",
    kinds={"postgres"},
    check_specs=[
        dg.AssetCheckSpec(
            "hnsw_recall_at_10",
            asset="embedding_model_switch",
            description=f"Recall@10 of the active model's HNSW index against exact search on {RECALL_SAMPLE}"
            f" sampled chunks; warns below {RECALL_WARN_BELOW}.",
        )
    ],
)
def embedding_model_switch(
    context: dg.AssetExecutionContext,
    config: SwitchConfig,
    postgres: PostgresResource,
    embedder: EmbedderResource,
) -> dg.MaterializeResult:
    """The configured model made `active` and the previous one `retired` in one transaction that re-checks
    coverage under a lock, so readers of `active_chunk_embeddings` see one complete model before and after;
    builds abandoned by a later configuration change are retired, the vectors of models retired longer than
    RETIRED_GRACE_DAYS are dropped with their index, and the active index's recall@10 against exact search
    is measured (`switch_to_configured_model`). Before any of it, the quality gate compares the two models on
    the labelled questions (EVAL_QUESTIONS) and refuses a worse one with both scores."""
    gate = quality_gate(context, postgres, embedder, embedder.spec().name, config.allow_worse_model)
    try:
        done = switch_to_configured_model(
            postgres.engine,
            embedder.spec(),
            embedder.limits(),
            embedder.factory(postgres.engine),
            **postgres.hnsw_options(),
            retired_grace_days=postgres.retired_grace_days,
            recall_sample=RECALL_SAMPLE,
            run_id=context.run.run_id,
            log=context.log.info,
        )
    except CoverageError as exc:
        raise dg.Failure(description=str(exc)) from None
    return dg.MaterializeResult(
        metadata={**_switch_metadata(done, postgres.retired_grace_days), **gate},
        check_results=[_recall_result(done.recall)],
    )


def _switch_metadata(done: ModelSwitch, retired_grace_days: float) -> dict[str, dg.MetadataValue]:
    return {
        "active_model": dg.MetadataValue.text(done.active.name),
        "previous_model": dg.MetadataValue.text(done.switch.previous or "none"),
        "switched": dg.MetadataValue.bool(done.switch.switched),
        "chunks_covered": dg.MetadataValue.int(done.coverage.total_chunks - done.coverage.missing),
        "hnsw_index": dg.MetadataValue.text(f"{done.index.index_name} ({done.index.note})"),
        "retired_vectors_dropped": dg.MetadataValue.int(done.retired_vectors_dropped),
        "abandoned_builds_retired": dg.MetadataValue.text(", ".join(done.abandoned) or "none"),
        "retired_grace_days": dg.MetadataValue.float(float(retired_grace_days)),
        "recall_at_10": dg.MetadataValue.float(round(done.recall.recall, 4)),
    }


def _recall_result(recall: RecallResult) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name="hnsw_recall_at_10",
        passed=recall.recall >= RECALL_WARN_BELOW,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "recall_at_10": recall.recall,
            "queries": recall.queries,
            "threshold": RECALL_WARN_BELOW,
            "model": dg.MetadataValue.text(recall.model),
            "search": dg.MetadataValue.text(
                "HNSW index" if recall.via_index else "exact (no HNSW index below HNSW_MIN_ROWS)"
            ),
        },
    )
