"""Stage 3: embeddings of every chunk for the model readers use, deduplicated by content hash."""

from typing import Any

import dagster as dg

from assets.batch_embeddings import submit_embedding_batches
from assets.chunks import document_chunks
from pipelines.embedders import ModelSpec
from pipelines.embeddings import (
    ActiveModelError,
    EmbedStats,
    NewChunksResult,
    ProviderConfigError,
    embed_new_chunks,
)
from pipelines.hnsw import ensure_hnsw_index
from pipelines.models import active_model, purge_deleted_vectors
from resources.embedders import EmbedderResource
from resources.postgres import PostgresResource

GROUP = "embeddings"


class EmbeddingRunConfig(dg.Config):
    """Run config shared by both embedding assets."""

    allow_over_budget: bool = False
    max_attempts: int = 3
    # Chunks that failed max_attempts times are skipped (and fail no_failed_chunks) until a run sets this.
    retry_abandoned: bool = False

    def options(self) -> dict[str, Any]:
        """The run config as the work layer's keyword arguments."""
        return {
            "max_attempts": self.max_attempts,
            "allow_over_budget": self.allow_over_budget,
            "retry_abandoned": self.retry_abandoned,
        }


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
        check_name="no_failed_chunks",
        first_embedding_only=True,
        **config.options(),
    )
    if batched is not None:
        return batched
    configured = embedder.spec()
    done = _embed_new_chunks(context, config, postgres, embedder, configured)
    purged = purge_deleted_vectors(postgres.engine, postgres.deleted_vector_grace_days)
    metadata = {
        **embed_stats_metadata(done.stats),
        "configured_model": dg.MetadataValue.text(configured.name),
        "model_status": dg.MetadataValue.text(done.stats.model_status),
        "retired_vectors_dropped": dg.MetadataValue.int(done.retired_vectors_dropped),
        "deleted_vectors_purged": dg.MetadataValue.int(purged),
    }
    return dg.MaterializeResult(metadata=metadata, check_results=[no_failed_chunks_result(done.stats)])


def _embed_new_chunks(
    context: dg.AssetExecutionContext,
    config: EmbeddingRunConfig,
    postgres: PostgresResource,
    embedder: EmbedderResource,
    configured: ModelSpec,
) -> NewChunksResult:
    try:
        return embed_new_chunks(
            postgres.engine,
            configured,
            embedder.limits(),
            embedder.factory(postgres.engine),
            retired_grace_days=postgres.retired_grace_days,
            log=context.log.info,
            **config.options(),
        )
    except (ProviderConfigError, ActiveModelError) as exc:
        raise dg.Failure(description=str(exc)) from None


def no_failed_chunks_result(stats: EmbedStats) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name="no_failed_chunks",
        passed=stats.chunks_failed == 0 and stats.chunks_abandoned == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"chunks_failed": stats.chunks_failed, "chunks_abandoned": stats.chunks_abandoned},
        description="Every chunk sent this run was embedded and none is abandoned after max_attempts"
        " failures (failures are in embedding_errors; run config retry_abandoned: true retries them).",
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
