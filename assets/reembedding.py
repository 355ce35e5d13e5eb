"""Stage 3b: blue/green re-embedding after a change of the configured embedding model."""

import dagster as dg

from assets.batch_embeddings import submit_embedding_batches
from assets.embeddings import EmbeddingRunConfig, chunk_embeddings, embed_stats_metadata
from pipelines.embeddings import BudgetExceededError, EmbedStats
from pipelines.hnsw import ensure_hnsw_index, measure_recall
from pipelines.models import (
    CoverageError,
    active_model,
    coverage,
    drop_retired_embeddings,
    retire_abandoned_builds,
    switch_active_model,
)
from pipelines.reembedding import TOP_UP_ROUNDS, build_model, top_up
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
        context,
        postgres,
        embedder,
        max_attempts=config.max_attempts,
        allow_over_budget=config.allow_over_budget,
        check_name="covers_every_chunk",
        retry_abandoned=config.retry_abandoned,
    )
    if batched is not None:
        return batched
    estimate: dict[str, dg.MetadataValue] = {}
    limits = embedder.limits()

    def publish_estimate(stats: EmbedStats) -> None:
        estimate.update(_estimate_metadata(stats, limits.budget_usd))
        context.log.info(
            f"{stats.model}: {stats.unique_texts} texts to embed, ~{stats.estimated_tokens:,} tokens,"
            f" ~${stats.estimated_cost_usd:.4f}"
        )
        context.log_event(dg.AssetObservation(asset_key=context.asset_key, metadata=estimate))

    try:
        result = build_model(
            postgres.engine,
            embedder.spec(),
            limits,
            embedder.factory(postgres.engine),
            **postgres.hnsw_options(),
            max_attempts=config.max_attempts,
            allow_over_budget=config.allow_over_budget,
            retry_abandoned=config.retry_abandoned,
            log=context.log.info,
            on_estimate=publish_estimate,
        )
    except BudgetExceededError as exc:
        raise dg.Failure(
            description=f"{exc} (in reembedding_job's launchpad: ops: reembedding: config: allow_over_budget: true)",
            metadata=estimate,
        ) from None
    stats, cov = result.stats, result.coverage
    metadata = {
        **embed_stats_metadata(stats),
        **_estimate_metadata(stats, limits.budget_usd),
        "previous_active_model": dg.MetadataValue.text(result.previous_active or "none"),
        "status_before": dg.MetadataValue.text(result.status_before or "unregistered"),
        "reopened_retired_model": dg.MetadataValue.bool(result.reopened),
        # Coverage of the current chunks, re-counted after the build (chunks may have changed meanwhile).
        "chunks_total": dg.MetadataValue.int(cov.total_chunks),
        "chunks_missing": dg.MetadataValue.int(cov.missing),
    }
    if result.index is not None:
        metadata["hnsw_index"] = dg.MetadataValue.text(f"{result.index.index_name} ({result.index.note})")
        metadata["hnsw_build_s"] = dg.MetadataValue.float(round(result.index.seconds, 3))
    return dg.MaterializeResult(
        metadata=metadata,
        check_results=[
            dg.AssetCheckResult(
                check_name="covers_every_chunk",
                passed=cov.complete,
                metadata={
                    "chunks_total": cov.total_chunks,
                    "chunks_missing": cov.missing,
                    "sample_missing_chunk_ids": dg.MetadataValue.text(
                        ", ".join(map(str, cov.sample_missing)) or "-"
                    ),
                },
            )
        ],
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
    is measured."""
    target = embedder.spec().name
    engine = postgres.engine
    spec = embedder.spec()
    gate = quality_gate(context, postgres, embedder, target, config.allow_worse_model)
    for attempt in range(TOP_UP_ROUNDS + 1):
        try:
            switch = switch_active_model(engine, target, run_id=context.run.run_id)
            break
        except CoverageError as exc:
            # Chunks an ingestion run wrote after the build's check: embed them, then switch or fail.
            if attempt == TOP_UP_ROUNDS or not top_up(
                engine, spec, embedder.limits(), embedder.factory(engine), log=context.log.info
            ):
                raise dg.Failure(description=str(exc)) from None
    if switch.switched:
        context.log.info(f"switched readers from {switch.previous} to {target}")
    abandoned = retire_abandoned_builds(engine, keep=target)
    if abandoned:
        context.log.info(
            f"retired abandoned builds {', '.join(abandoned)}; their vectors go after the grace period"
        )
    with engine.begin() as conn:
        active = active_model(conn)
    if active is None:
        raise dg.Failure(description=f"no active embedding model after switching to {target}")
    index = ensure_hnsw_index(engine, active.name, active.dimensions, **postgres.hnsw_options())
    cleanup = drop_retired_embeddings(engine, postgres.retired_grace_days, log=context.log.info)
    recall = measure_recall(engine, active.name, active.dimensions, sample=RECALL_SAMPLE)
    with engine.begin() as conn:
        cov = coverage(conn, active.name)
    return dg.MaterializeResult(
        metadata={
            "active_model": dg.MetadataValue.text(active.name),
            "previous_model": dg.MetadataValue.text(switch.previous or "none"),
            "switched": dg.MetadataValue.bool(switch.switched),
            "chunks_covered": dg.MetadataValue.int(cov.total_chunks - cov.missing),
            "hnsw_index": dg.MetadataValue.text(f"{index.index_name} ({index.note})"),
            "retired_vectors_dropped": dg.MetadataValue.int(cleanup.total),
            "abandoned_builds_retired": dg.MetadataValue.text(", ".join(abandoned) or "none"),
            "retired_grace_days": dg.MetadataValue.float(float(postgres.retired_grace_days)),
            "recall_at_10": dg.MetadataValue.float(round(recall.recall, 4)),
            **gate,
        },
        check_results=[
            dg.AssetCheckResult(
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
        ],
    )
