"""Stage 2: markdown-aware chunks of every document, re-chunked only when a document changes."""

import time

import dagster as dg

from assets.sources import source_documents
from pipelines.chunks import chunk_counts, chunk_documents
from resources.postgres import PostgresResource
from resources.sources import ContentSourcesResource

GROUP = "chunks"


@dg.asset(
    deps=[source_documents],
    group_name=GROUP,
    kinds={"postgres"},
    check_specs=[dg.AssetCheckSpec("every_document_chunked", asset="document_chunks", blocking=True)],
)
def document_chunks(
    context: dg.AssetExecutionContext, postgres: PostgresResource, content_sources: ContentSourcesResource
) -> dg.MaterializeResult:
    """Documents split at markdown structure (headings, paragraphs, sentences; Japanese included) into chunks
    of at most `chunk_max_chars` characters with overlap, keeping each chunk's heading path and character span.
    A chunk keeps its identity (document, index) so unchanged chunks keep their embeddings."""
    started = time.perf_counter()
    stats = chunk_documents(postgres.engine, content_sources.chunk_max_chars, content_sources.chunk_overlap)
    with postgres.begin() as conn:
        total, unchunked = chunk_counts(conn)
    context.log.info(f"re-chunked {stats.documents_chunked} documents")
    return dg.MaterializeResult(
        metadata={
            "chunks_total": dg.MetadataValue.int(total),
            "documents_rechunked": dg.MetadataValue.int(stats.documents_chunked),
            "chunks_written": dg.MetadataValue.int(stats.chunks_written),
            "chunks_unchanged": dg.MetadataValue.int(stats.chunks_unchanged),
            "chunks_deleted": dg.MetadataValue.int(stats.chunks_deleted),
            "max_chars": dg.MetadataValue.int(content_sources.chunk_max_chars),
            "overlap": dg.MetadataValue.int(content_sources.chunk_overlap),
            "duration_s": dg.MetadataValue.float(round(time.perf_counter() - started, 3)),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="every_document_chunked",
                passed=unchunked == 0,
                metadata={"documents_without_chunks": unchunked},
                description="Every document has at least one chunk.",
            )
        ],
    )
