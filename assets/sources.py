"""Stage 1: source documents from markdown files and configured Postgres tables."""

# No `from __future__ import annotations` here: Dagster resolves the config and resource parameter
# annotations of the asset function at definition time.

import time
from pathlib import Path

import dagster as dg
from pydantic import Field

from pipelines.lib.deletion_safety import MassDeletionRefusedError
from pipelines.sources import SyncStats, count_documents, sync_documents
from resources.postgres import PostgresResource
from resources.sources import ContentSourcesResource

GROUP = "sources"


def errors_markdown(errors: list[tuple[str, str, str]], limit: int = 20) -> str:
    lines = ["| source | item | reason |", "| --- | --- | --- |"]
    lines += [f"| {s} | `{k}` | {r} |" for s, k, r in errors[:limit]]
    if len(errors) > limit:
        lines.append(f"| … | {len(errors) - limit} more | see table `ingestion_errors` |")
    return "\n".join(lines)


class SourceDocumentsConfig(dg.Config):
    """Run config of the source sync."""

    allow_mass_deletion: bool = Field(
        default=False,
        description="Let this run delete more than the mass-deletion guard allows (by default more than 20"
        " documents and more than 10 % of a source): only when the deletion is meant, e.g. a corpus moved on"
        " purpose. A refused run names the source and the counts. ALLOW_MASS_DELETION=1 allows it for every run.",
    )


def _sync(
    context: dg.AssetExecutionContext,
    config: SourceDocumentsConfig,
    postgres: PostgresResource,
    content_sources: ContentSourcesResource,
) -> SyncStats:
    """The sync, a refused mass deletion failing the step with the refusal's counts and how to allow it."""
    try:
        stats = sync_documents(
            postgres.engine,
            content_sources.content_path,
            content_sources.table_specs(),
            content_sources.provenance_defaults(),
            max_file_bytes=content_sources.max_file_bytes,
            limits=content_sources.deletion_limits(allow=config.allow_mass_deletion),
            deleted_vector_grace_days=postgres.deleted_vector_grace_days,
        )
    except MassDeletionRefusedError as exc:
        raise dg.Failure(
            description=str(exc),
            metadata={
                "refused": dg.MetadataValue.json(
                    {d.source: {"deleting": d.deleting, "stored": d.stored} for d in exc.deletions}
                ),
                "content_dir": dg.MetadataValue.path(str(content_sources.content_path)),
            },
            allow_retries=False,
        ) from None
    for allowed in stats.mass_deletions_allowed:
        context.log.warning(f"mass deletion allowed by configuration: {allowed.describe()}")
    return stats


@dg.asset(
    group_name=GROUP,
    kinds={"postgres", "markdown"},
    check_specs=[dg.AssetCheckSpec("no_rejected_items", asset="source_documents")],
)
def source_documents(
    context: dg.AssetExecutionContext,
    config: SourceDocumentsConfig,
    postgres: PostgresResource,
    content_sources: ContentSourcesResource,
) -> dg.MaterializeResult:
    """Markdown files under CONTENT_DIR (YAML frontmatter gives title and metadata) and rows of the configured
    tables, upserted by content hash; items gone from their source are deleted with their chunks and
    embeddings (their vectors stay reusable for DELETED_VECTOR_GRACE_DAYS), unless a source would lose more
    than 20 documents and 10 % of itself: that run is refused before deleting anything (run config
    allow_mass_deletion allows it); unreadable items are listed with the reason and keep their last good
    version. Every document gets its provenance row (licence, rights holder, retention from frontmatter or
    RETENTION_DEFAULTS), and content a retention sweep deleted is skipped as expired rather than ingested
    again."""
    started = time.perf_counter()
    stats = _sync(context, config, postgres, content_sources)
    with postgres.begin() as conn:
        total = count_documents(conn)
    for source, key, reason in stats.errors:
        context.log.warning(f"rejected {source} item {key!r}: {reason}")
    duration = time.perf_counter() - started
    return dg.MaterializeResult(
        metadata=sync_metadata(stats, total, content_sources.content_path, duration),
        check_results=[
            dg.AssetCheckResult(
                check_name="no_rejected_items",
                passed=not stats.errors,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"rejected": len(stats.errors)},
                description="Every source item could be read and parsed.",
            )
        ],
    )


def sync_metadata(
    stats: SyncStats, total: int, content_dir: Path, duration_s: float
) -> dict[str, dg.MetadataValue]:
    metadata: dict[str, dg.MetadataValue] = {
        "documents_total": dg.MetadataValue.int(total),
        "scanned": dg.MetadataValue.int(stats.scanned),
        "inserted_or_updated": dg.MetadataValue.int(stats.inserted_or_updated),
        "unchanged": dg.MetadataValue.int(stats.unchanged),
        "deleted": dg.MetadataValue.int(stats.deleted),
        "deleted_vectors_kept": dg.MetadataValue.int(stats.vectors_kept),
        "skipped_expired": dg.MetadataValue.int(stats.skipped_expired),
        "rejected": dg.MetadataValue.int(len(stats.errors)),
        "per_source": dg.MetadataValue.json(stats.per_source),
        "content_dir": dg.MetadataValue.path(str(content_dir)),
        "duration_s": dg.MetadataValue.float(round(duration_s, 3)),
    }
    if stats.errors:
        metadata["rejected_items"] = dg.MetadataValue.md(errors_markdown(stats.errors))
    return metadata
