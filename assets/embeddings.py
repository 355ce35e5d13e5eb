"""Stage 3: embeddings of every chunk for the model readers use, deduplicated by content hash."""

import dagster as dg

from assets.batch_embeddings import submit_embedding_batches
from assets.chunks import document_chunks
from pipelines.embedders import EmbeddingConfigError, ModelSpec
from pipelines.embeddings import EmbedStats, ProviderConfigError, embed_pending
from pipelines.hnsw import ensure_hnsw_index
from pipelines.models import active_model, drop_retired_embeddings, purge_deleted_vectors, register_model
from resources.embedders import EmbedderResource
from resources.postgres import PostgresResource

GROUP = "embeddings"


class EmbeddingRunConfig(dg.Config):
    """Run config shared by both embedding assets."""

    allow_over_budget: bool = False
    max_attempts: int = 3
    # Chunks that failed max_attempts times are skipped (and fail no_failed_chunks) until a run sets this.
    retry_abandoned: bool = False


def embed_stats_metadata(stats: EmbedStats) -> dict[str, dg.MetadataValue]:
    """What an embedding run did, as the typed metadata both embedding assets report."""
    metadata: dict[str, dg.MetadataValue] = {
        "model": dg.MetadataValue.text(stats.model),
        "provider": dg.MetadataValue.text(stats.provider),
        "dimensions": dg.MetadataValue.int(stats.dimensions),
        "chunks_total": dg.MetadataValue.int(stats.chunks_total),
        "chunks_embedded": dg.MetadataValue.int(stats.chunks_embedded),
        "chunks_reused_by_hash": dg.MetadataValue.int(stats.chunks_reused),
        "chunks_skipped": dg.MetadataValue.int(stats.chunks_skipped),
        "chunks_failed": dg.MetadataValue.int(stats.chunks_failed),
        "chunks_abandoned": dg.MetadataValue.int(stats.chunks_abandoned),
        "unique_texts_sent": dg.MetadataValue.int(stats.unique_texts),
        "requests": dg.MetadataValue.int(stats.requests),
        "minimum_requests": dg.MetadataValue.int(stats.minimum_requests),
        "tokens": dg.MetadataValue.int(stats.tokens),
        "estimated_cost_usd": dg.MetadataValue.float(round(stats.estimated_cost_usd, 6)),
        "cost_usd": dg.MetadataValue.float(round(stats.cost_usd, 6)),
        "duration_s": dg.MetadataValue.float(round(stats.duration_s, 3)),
    }
    if stats.failures:
        metadata["failures"] = dg.MetadataValue.md(
            "| chunk | reason |\n| --- | --- |\n"
            + "\n".join(f"| {c} | {r} |" for c, r in stats.failures[:20])
        )
    return metadata


@dg.asset(
    deps=[document_chunks],
    group_name=GROUP,
    # Kinds are static and true whichever provider runs; the provider is in the run's metadata.
    kinds={"postgres", "pgvector"},
    check_specs=[dg.AssetCheckSpec("no_failed_chunks", asset="chunk_embeddings")],
)
def chunk_embeddings(
    context: dg.AssetExecutionContext,
    config: EmbeddingRunConfig,
    postgres: PostgresResource,
    embedder: EmbedderResource,
) -> dg.MaterializeResult:
    """Vectors for chunks whose (content hash, model) has none yet: identical texts are sent once, requests are
    packed to the provider's limits and run concurrently, results land by binary COPY one request at a time;
    a chunk that cannot be embedded goes to `embedding_errors` and the rest carry on. The model is the active
    one readers use: while a newly configured model is being built by `reembedding_job`, new chunks still get
    the active model's vectors, so readers never miss them. Chunks whose text a deleted chunk had within
    DELETED_VECTOR_GRACE_DAYS take its kept vector, and kept vectors past that period are purged. Vectors of
    models retired longer than the grace period are dropped. The model's HNSW index is `embedding_index`'s work: the vectors are searchable
    (exactly) as soon as this step ends."""
    # Batch API hook (EMBEDDING_BATCH_API): a large first embedding is submitted and the run ends.
    batched = submit_embedding_batches(
        context,
        postgres,
        embedder,
        max_attempts=config.max_attempts,
        allow_over_budget=config.allow_over_budget,
        check_name="no_failed_chunks",
        first_embedding_only=True,
        retry_abandoned=config.retry_abandoned,
    )
    if batched is not None:
        return batched
    configured = embedder.spec()
    engine = postgres.engine
    with engine.begin() as conn:
        active = active_model(conn)
        target = configured
        if active is not None and active.name != configured.name:
            register_model(conn, configured)
            context.log.info(
                f"the configured model {configured.name} is not active yet: embedding new chunks for the active"
                f" {active.name}; reembedding_job builds {configured.name} and switches"
            )
            target = active.spec()

    def embed(spec: ModelSpec) -> EmbedStats:
        try:
            return embed_pending(
                engine,
                spec,
                embedder.limits(),
                embedder.factory(postgres.engine),
                max_attempts=config.max_attempts,
                allow_over_budget=config.allow_over_budget,
                retry_abandoned=config.retry_abandoned,
                log=context.log.info,
            )
        except ProviderConfigError as exc:
            raise dg.Failure(description=str(exc)) from None

    try:
        stats = embed(target)
    except EmbeddingConfigError as exc:
        if active is None or target is configured:
            raise
        raise dg.Failure(
            description=f"new chunks need vectors of the active model {active.name} until reembedding_job"
            f" switches readers to {configured.name}: {exc}"
        ) from None
    if target is not configured:
        with engine.begin() as conn:
            now_active = active_model(conn)
        if now_active is not None and now_active.name == configured.name:
            # reembedding_job switched readers while this run embedded for the old model: the chunks this
            # run wrote meanwhile need the new active model's vectors too, or readers would miss them.
            context.log.info(
                f"readers switched to {configured.name} during this run: embedding its new chunks"
            )
            stats = embed(configured)
    cleanup = drop_retired_embeddings(engine, postgres.retired_grace_days, log=context.log.info)
    purged = purge_deleted_vectors(engine, postgres.deleted_vector_grace_days)
    metadata = {
        **embed_stats_metadata(stats),
        "configured_model": dg.MetadataValue.text(configured.name),
        "model_status": dg.MetadataValue.text(stats.model_status),
        "retired_vectors_dropped": dg.MetadataValue.int(cleanup.total),
        "deleted_vectors_purged": dg.MetadataValue.int(purged),
    }
    return dg.MaterializeResult(
        metadata=metadata,
        check_results=[
            dg.AssetCheckResult(
                check_name="no_failed_chunks",
                passed=stats.chunks_failed == 0 and stats.chunks_abandoned == 0,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"chunks_failed": stats.chunks_failed, "chunks_abandoned": stats.chunks_abandoned},
                description="Every chunk sent this run was embedded and none is abandoned after max_attempts"
                " failures (failures are in embedding_errors; run config retry_abandoned: true retries them).",
            )
        ],
    )


@dg.asset(
    deps=[chunk_embeddings],
    group_name=GROUP,
    kinds={"postgres", "pgvector"},
)
def embedding_index(context: dg.AssetExecutionContext, postgres: PostgresResource) -> dg.MaterializeResult:
    """The active model's HNSW index (over halfvec casts; search re-ranks its candidates exactly), built in a
    step of its own after the bulk load so that the vectors are usable before it exists: search is exact,
    and says so, until the build has finished. Not built below HNSW_MIN_ROWS vectors, where an exact scan is
    fast enough; a later run builds it once the model has grown past that."""
    engine = postgres.engine
    with engine.begin() as conn:
        active = active_model(conn)
    if active is None:
        context.log.info("no active embedding model yet: nothing to index")
        return dg.MaterializeResult(metadata={"hnsw_index": dg.MetadataValue.text("none (no active model)")})
    index = ensure_hnsw_index(
        engine, active.name, active.dimensions, log=context.log.info, **postgres.hnsw_options()
    )
    return dg.MaterializeResult(
        metadata={
            "model": dg.MetadataValue.text(active.name),
            "hnsw_index": dg.MetadataValue.text(f"{index.index_name} ({index.note})"),
            "hnsw_built": dg.MetadataValue.bool(index.created),
            "hnsw_build_s": dg.MetadataValue.float(round(index.seconds, 3)),
            "hnsw_min_rows": dg.MetadataValue.int(postgres.hnsw_min_rows),
        }
    )
