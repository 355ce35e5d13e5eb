"""Source documents in the database: the work behind the `source_documents` asset."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from pipelines.lib.documents import (
    ParsedDocument,
    SourceItemError,
    metadata_json,
    printable_file_name,
    read_markdown_file,
    table_documents,
)
from pipelines.lib.provenance import ProvenanceDefaults, ProvenanceError, ProvenanceRecord, resolve_provenance
from pipelines.retention import RETENTION_LOCK_KEY
from pipelines.sql import query
from resources.sources import (
    ContentSourcesResource,
    IdentifierError,
    TableSource,
    retention_defaults_from_env,
    validate_identifier,
)

UPSERT_BATCH = 500


MARKDOWN_SUFFIXES = (".md", ".markdown")


@dataclass
class SyncStats:
    scanned: int = 0
    inserted_or_updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    # Items a retention sweep deleted whose unchanged content is still at the source: never ingested again.
    skipped_expired: int = 0
    errors: list[tuple[str, str, str]] = field(default_factory=list)  # (source, key, reason)
    per_source: dict[str, int] = field(default_factory=dict)


def _markdown_files(root: Path) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(path, source key) of every markdown file under root, in key order, and (key, reason) of names
    that cannot be keys. Plain strings and os.walk: pathlib objects cost more than reading the files on
    an unchanged re-run. Linked directories are not descended into (os.walk's default)."""
    found, refused = [], []
    prefix = len(str(root)) + 1
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            # Not splitext: it sees no suffix in a name like "..md" (tldr's page for `..`).
            if name.lower().endswith(MARKDOWN_SUFFIXES):
                path = os.path.join(dirpath, name)
                key = path[prefix:].replace(os.sep, "/")
                shown = printable_file_name(key)
                if shown != key:
                    refused.append((shown, "file name is not valid UTF-8"))
                    continue
                found.append((path, key))
    found.sort(key=lambda item: item[1])
    return found, refused


def scan_markdown(
    sources: ContentSourcesResource, stats: SyncStats
) -> tuple[list[ParsedDocument], set[str]] | None:
    """Parsed documents and every key seen (including ones that failed), or None if the scan is impossible."""
    root = sources.content_path
    if not root.is_dir():
        stats.errors.append(("local", str(root), "content directory does not exist"))
        return None
    files, refused = _markdown_files(root)
    if not files and not refused:
        # Most likely a wrong or unmounted CONTENT_DIR: deleting every local document is never what that meant.
        stats.errors.append(
            ("local", str(root), "content directory has no markdown files; nothing was deleted")
        )
        return None
    docs, seen = [], set()
    for key, reason in refused:
        seen.add(key)
        stats.errors.append(("local", key, reason))
    for path, key in files:
        seen.add(key)
        try:
            docs.append(read_markdown_file(path, key, sources.max_file_bytes, root=root))
        except (SourceItemError, OSError) as exc:
            stats.errors.append(("local", key, str(exc)))
    return docs, seen


def scan_table(
    conn: sa.Connection, spec: TableSource, stats: SyncStats
) -> tuple[list[ParsedDocument], set[str]] | None:
    source = f"table:{spec.table}"
    try:
        parts = validate_identifier(spec.table, "table")
        if any(p.lower().startswith("pg_") or p.lower() == "information_schema" for p in parts):
            # Unqualified `pg_authid` resolves to the system catalog through the search path.
            raise IdentifierError(
                f"table {spec.table!r} is a system catalog; only application tables are sources"
            )
        if not spec.text_columns:
            raise IdentifierError("text_columns is empty: name at least one column whose text to ingest")
        columns = [spec.key_column, *spec.text_columns] + ([spec.title_column] if spec.title_column else [])
        for col in columns:
            validate_identifier(col, "column")
            if "." in col:
                raise IdentifierError(f"column {col!r} must not be qualified")
    except IdentifierError as exc:
        stats.errors.append((source, spec.table, str(exc)))
        return None
    if conn.execute(sa.text("SELECT to_regclass(:t)"), {"t": spec.table}).scalar() is None:
        stats.errors.append((source, spec.table, f"table {spec.table!r} does not exist"))
        return None
    existing = set(
        conn.execute(
            sa.text(
                "SELECT attname FROM pg_attribute WHERE attrelid = CAST(:t AS regclass)"
                " AND attnum > 0 AND NOT attisdropped"
            ),
            {"t": spec.table},
        ).scalars()
    )
    missing = [c for c in dict.fromkeys(columns) if c not in existing]
    if missing:
        stats.errors.append(
            (source, spec.table, f"table {spec.table!r} has no column(s) {', '.join(missing)}")
        )
        return None
    q = conn.dialect.identifier_preparer.quote
    table_sql = ".".join(q(p) for p in parts)
    title_sql = q(spec.title_column) if spec.title_column else "NULL"
    text_sql = ", ".join(q(c) for c in spec.text_columns)
    rows = conn.execute(sa.text(f"SELECT {q(spec.key_column)}, {title_sql}, {text_sql} FROM {table_sql}"))
    docs, seen, errors = table_documents(spec.table, spec.text_columns, rows)
    stats.errors.extend((source, key, reason) for key, reason in errors)
    return docs, seen


def _provenance_rows(records: Iterable[ProvenanceRecord]) -> dict:
    return {"rows": json.dumps([r.as_row() for r in records], ensure_ascii=False)}


def _apply_source(
    conn: sa.Connection,
    source: str,
    docs: list[ParsedDocument],
    seen: set[str],
    stats: SyncStats,
    provenance_defaults: dict[str, ProvenanceDefaults] | None = None,
):
    defaults = provenance_defaults or {}
    provenance: dict[str, ProvenanceRecord] = {}
    usable = []
    for doc in docs:
        try:
            provenance[doc.source_key] = resolve_provenance(source, doc.source_key, doc.metadata, defaults)
            usable.append(doc)
        except ProvenanceError as exc:
            # Like any bad item: reported, and whatever was ingested for it before is kept.
            stats.errors.append((source, doc.source_key, str(exc)))
    existing = {
        r.source_key: (r.content_sha256, r.title, r.metadata)
        for r in conn.execute(query("select_source_fingerprints"), {"source": source})
    }
    changed, unchanged = [], []
    for doc in usable:
        fingerprint = (doc.content_sha256, doc.title, json.loads(metadata_json(doc.metadata)))
        before = existing.get(doc.source_key)
        if before is not None and (before[0], before[1], json.loads(before[2])) == fingerprint:
            stats.unchanged += 1
            unchanged.append(doc)
        else:
            changed.append(doc)
    for start in range(0, len(changed), UPSERT_BATCH):
        batch = changed[start : start + UPSERT_BATCH]
        # Under the shared retention lock, the tombstones read here include every committed sweep batch.
        conn.execute(query("retention_lock_shared"), {"key": RETENTION_LOCK_KEY})
        tombstoned = {
            (r.source_key, r.content_sha256)
            for r in conn.execute(
                query("retention_select_tombstoned"),
                {
                    "source": source,
                    "keys": [d.source_key for d in batch],
                    "hashes": [d.content_sha256 for d in batch],
                },
            )
        }
        fresh = [d for d in batch if (d.source_key, d.content_sha256) not in tombstoned]
        stats.skipped_expired += len(batch) - len(fresh)
        if fresh:
            conn.execute(
                query("upsert_source_documents"),
                [
                    {
                        "source": d.source,
                        "source_key": d.source_key,
                        "title": d.title,
                        "content": d.content,
                        "content_sha256": d.content_sha256,
                        "metadata": metadata_json(d.metadata),
                    }
                    for d in fresh
                ],
            )
            conn.execute(
                query("upsert_provenance"), _provenance_rows(provenance[d.source_key] for d in fresh)
            )
        conn.commit()
        stats.inserted_or_updated += len(fresh)
    # Unchanged documents too: a changed per-source default must reach them, and documents ingested before
    # provenance existed get their row. The upsert writes only rows whose terms differ.
    for start in range(0, len(unchanged), UPSERT_BATCH):
        batch = unchanged[start : start + UPSERT_BATCH]
        conn.execute(query("upsert_provenance"), _provenance_rows(provenance[d.source_key] for d in batch))
        conn.commit()
    gone = sorted(set(existing) - seen)
    if gone:
        stats.deleted += conn.execute(
            query("delete_missing_source_documents"), {"source": source, "keys": gone}
        ).rowcount
        conn.commit()
    stats.scanned += len(docs)
    stats.per_source[source] = len(docs)


def sync_documents(
    conn: sa.Connection,
    sources: ContentSourcesResource,
    provenance_defaults: dict[str, ProvenanceDefaults] | None = None,
) -> SyncStats:
    """Bring `source_documents` and their `provenance` in line with the sources; commits as it goes.

    Items that fail keep whatever was ingested for them before; a source that cannot be read at all
    (missing directory or table) deletes nothing. Content a retention sweep deleted is skipped, not
    re-ingested. `provenance_defaults` defaults to the `RETENTION_DEFAULTS` environment variable.
    """
    if provenance_defaults is None:
        provenance_defaults = retention_defaults_from_env()
    stats = SyncStats()
    scans: list[tuple[str, tuple | None]] = [("local", scan_markdown(sources, stats))]
    for spec in sources.tables:
        scans.append((f"table:{spec.table}", scan_table(conn, spec, stats)))
        conn.commit()
    for source, scanned in scans:
        if scanned is not None:
            _apply_source(conn, source, *scanned, stats, provenance_defaults)
    record_ingestion_errors(conn, [s for s, _ in scans], stats.errors)
    conn.commit()
    return stats


def record_ingestion_errors(conn: sa.Connection, sources: Iterable[str], errors: list[tuple[str, str, str]]):
    """Replace the recorded errors of the sources just scanned with this run's."""
    conn.execute(sa.text("DELETE FROM ingestion_errors WHERE source = ANY(:s)"), {"s": list(sources)})
    if errors:
        conn.execute(
            query("replace_ingestion_errors"),
            [{"source": s, "source_key": k, "error": e} for s, k, e in errors],
        )
