"""Source documents in the database: the work behind the `source_documents` asset."""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import os
import re
import secrets
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
import yaml
from psycopg import sql

import pipelines.lib.provenance
import pipelines.lib.readers
import pipelines.lib.timezone
from pipelines.lib.deletion_safety import (
    DEFAULT_DELETED_VECTOR_GRACE_DAYS,
    SAMPLE_KEYS,
    DeletionLimits,
    MassDeletion,
    MassDeletionRefusedError,
    sample_keys,
)
from pipelines.lib.documents import (
    DEFAULT_MAX_BYTES,
    ParsedDocument,
    SourceItemError,
    metadata_json,
    printable_file_name,
    read_item_bytes,
    table_documents,
)
from pipelines.lib.provenance import (
    ProvenanceDefaults,
    ProvenanceError,
    ProvenanceRecord,
    defaults_for,
    resolve_provenance,
)
from pipelines.lib.readers import parse_item, reader_for, reader_modules
from pipelines.locks import Lock, xact_lock
from pipelines.sql import composed, execute_composed, load_sql, query

UPSERT_BATCH = 500
KEY_PAGE = 5000  # stored keys read per transaction when looking for vanished documents
TABLE_PAGE = 500  # table-source rows fetched per query: what a table source holds, whatever its size
# Files read before their stored fingerprints are looked up in one query: a query per file range costs more
# than reading the files on an unchanged re-run, so ranges are long, and bounded in bytes held.
READ_GROUP_FILES = KEY_PAGE
READ_GROUP_BYTES = 8 << 20

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class IdentifierError(ValueError):
    pass


def validate_identifier(name: str, what: str) -> list[str]:
    """Split `schema.name` and check each part is a plain identifier; anything else is refused."""
    parts = name.split(".") if isinstance(name, str) else []
    if not 1 <= len(parts) <= 2 or not all(_IDENT.match(p) for p in parts):
        raise IdentifierError(
            f"{what} {name!r} is not a plain identifier (letters, digits, underscore; optional schema.)"
        )
    return parts


@dataclass(frozen=True)
class TableSpec:
    """One table whose rows become documents: each row's text columns, keyed by `key_column`."""

    table: str
    text_columns: tuple[str, ...]
    key_column: str = "id"
    title_column: str | None = None


class _Unchanged:
    """What a scan yields for an item proven stored exactly as ingesting it again would write it."""


UNCHANGED = _Unchanged()

# The documents, read as they are consumed, and every key seen (including ones that failed).
ScanResult = tuple[Iterable[ParsedDocument | _Unchanged], set[str]]


@dataclass
class SyncStats:
    scanned: int = 0
    inserted_or_updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    # Items a retention sweep deleted whose unchanged content is still at the source: never ingested again.
    skipped_expired: int = 0
    vectors_kept: int = 0  # of deleted chunks, reusable for the grace period
    mass_deletions_allowed: list[MassDeletion] = field(default_factory=list)
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
            if reader_for(name) is not None:
                path = os.path.join(dirpath, name)
                key = path[prefix:].replace(os.sep, "/")
                shown = printable_file_name(key)
                if shown != key:
                    refused.append((shown, "file name is not valid UTF-8"))
                    continue
                found.append((path, key))
    found.sort(key=lambda item: item[1])
    return found, refused


@functools.cache
def _reading_rules() -> bytes:
    """A digest of everything that turns an item's bytes into rows besides the bytes: the code and SQL that
    parse, resolve provenance and write them. A change to any of it re-reads every item fully once."""
    digest = hashlib.sha256(f"yaml {yaml.__version__}\0".encode())
    modules = (*reader_modules(), pipelines.lib.readers, pipelines.lib.provenance, pipelines.lib.timezone)
    for module in dict.fromkeys(modules):
        digest.update(Path(module.__file__ or "").read_bytes() + b"\0")
    digest.update(Path(__file__).read_bytes() + b"\0")
    for name in ("sources/upsert_source_documents", "sources/upsert_provenance"):
        digest.update(load_sql(name).encode() + b"\0")
    return digest.digest()


@dataclass
class StoredFingerprints:
    """Which items of one source are stored exactly as ingesting them again would write them. An item's
    read fingerprint hashes its bytes with the reading rules and the source's provenance defaults; the
    database holds it with a hash of the rows written from it (migration 0014), so a match means the
    same input, the same rules and rows nobody changed since.

    The same reads find the stored keys the scan did not see: a scan asks for consecutive key ranges that
    together cover every key, so once it has read them all, `vanished` holds every stored key gone from
    the source (`complete` says it has)."""

    conn: sa.Connection
    source: str
    seed: Any  # a sha256 object holding the rules and defaults: each item's hash continues a copy of it
    vanished: list[str] = field(default_factory=list)
    complete: bool = False

    @classmethod
    def of(
        cls, conn: sa.Connection, source: str, defaults: Mapping[str, ProvenanceDefaults]
    ) -> StoredFingerprints:
        seed = hashlib.sha256(_reading_rules())
        seed.update(f"{source}\0{defaults_for(source, defaults)!r}\0".encode())
        return cls(conn, source, seed)

    def fingerprint(self, raw: bytes) -> str:
        digest = self.seed.copy()
        digest.update(raw)
        return digest.hexdigest()

    def unchanged(self, reads: Mapping[str, str], after: str, last: str | None, seen: set[str]) -> set[str]:
        """Of `reads` (key: read fingerprint), those stored as they would be written again, from the stored
        keys after `after` up to `last` (None: to the end) in code point order; the stored keys among
        them that are not in `seen` join `vanished`."""
        with self.conn.begin():
            stored = self.conn.execute(
                query("sources/select_scan_fingerprints"),
                {"source": self.source, "after": after, "last": last},
            )
            same = set()
            for key, fingerprint in stored:
                if key not in seen:
                    self.vanished.append(key)
                elif fingerprint is not None and reads.get(key) == fingerprint:
                    same.add(key)
        if last is None:
            self.complete = True
        return same


def scan_markdown(
    root: Path, max_file_bytes: int, stats: SyncStats, stored: StoredFingerprints
) -> ScanResult | None:
    """Documents (read lazily) and every key seen (including ones that failed), or None if the scan is
    impossible. An item `stored` exactly as it would be written again is not parsed: the scan yields
    UNCHANGED for it."""
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
    seen = {key for _, key in files}
    for key, reason in refused:
        seen.add(key)
        stats.errors.append(("local", key, reason))
    return _read_markdown(root, files, max_file_bytes, stats, stored, seen), seen


def _read_markdown(
    root: Path,
    files: list[tuple[str, str]],
    max_file_bytes: int,
    stats: SyncStats,
    stored: StoredFingerprints,
    seen: set[str],
) -> Iterator[ParsedDocument | _Unchanged]:
    """The files' documents, read a group of files at a time as the consumer asks (at most READ_GROUP_FILES
    files, READ_GROUP_BYTES bytes held, or one file over it): every file's bytes are read and hashed, and
    only those whose fingerprint the database does not hold are parsed."""
    after = ""  # every key sorts after it: a key is a file's path, never empty
    start = 0
    while True:
        # (key, bytes, fingerprint) or (key, None, error)
        reads: deque[tuple[str, bytes | None, str]] = deque()
        held = 0
        for path, key in itertools.islice(files, start, None):
            try:
                raw = read_item_bytes(path, max_file_bytes, root=root)
            except (SourceItemError, OSError) as exc:
                reads.append((key, None, str(exc)))
            else:
                reads.append((key, raw, stored.fingerprint(raw)))
                held += len(raw)
            if len(reads) >= READ_GROUP_FILES or held >= READ_GROUP_BYTES:
                break
        start += len(reads)
        # The last group's range runs to the end, so that keys after the last file are found vanished.
        last = reads[-1][0] if reads and start < len(files) else None
        same = stored.unchanged(
            {key: fingerprint for key, data, fingerprint in reads if data is not None}, after, last, seen
        )
        after = last or after
        while reads:  # popped, so that the group's bytes are let go as its documents are consumed
            key, data, fingerprint = reads.popleft()
            if data is None:
                stats.errors.append(("local", key, fingerprint))
            elif key in same:
                yield UNCHANGED
            else:
                try:
                    doc = parse_item(data, key)
                except SourceItemError as exc:
                    stats.errors.append(("local", key, str(exc)))
                    continue
                yield replace(doc, read_fingerprint=fingerprint)
        if start >= len(files):
            return


class TableRows:
    """A table source's documents, read from a held cursor TABLE_PAGE rows at a time, a transaction per page:
    one page of rows and one document are in memory, never the table. Reading to the end frees the cursor;
    `close()` frees it when reading stops early."""

    def __init__(self, conn: sa.Connection, cursor: str, spec: TableSpec, seen: set[str], stats: SyncStats):
        self.conn, self.cursor, self.spec, self.seen, self.stats = conn, cursor, spec, seen, stats
        self._open = True

    def __iter__(self) -> Iterator[ParsedDocument]:
        errors: list[tuple[str, str]] = []
        yield from table_documents(self.spec.table, self.spec.text_columns, self._rows(), self.seen, errors)
        self.close()
        self.stats.errors.extend((f"table:{self.spec.table}", key, reason) for key, reason in errors)

    def _rows(self) -> Iterator[Sequence[object]]:
        page = TABLE_PAGE
        fetch = composed(
            "sources/fetch_table_cursor", page=sql.Literal(page), cursor=sql.Identifier(self.cursor)
        )
        while True:
            with self.conn.begin():
                rows = execute_composed(self.conn, fetch).all()
            yield from rows
            if len(rows) < page:
                return

    def close(self) -> None:
        # A connection already lost took the cursor with it; one in use is outside any transaction here
        # (each page's transaction ends before its rows are handed on).
        if self._open and not self.conn.closed and not self.conn.invalidated:
            with self.conn.begin():
                execute_composed(
                    self.conn, composed("sources/close_table_cursor", cursor=sql.Identifier(self.cursor))
                )
        self._open = False


def scan_table(conn: sa.Connection, spec: TableSpec, stats: SyncStats) -> tuple[TableRows, set[str]] | None:
    """The table's documents (read lazily, see TableRows) and the set that every key read joins, or None if
    the table cannot be read. Declares the table's cursor in the caller's transaction: its commit reads the
    rows, so the caller commits before reading and closes the TableRows if it does not read to the end."""
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
    if conn.execute(query("sources/select_table_regclass"), {"table": spec.table}).scalar() is None:
        stats.errors.append((source, spec.table, f"table {spec.table!r} does not exist"))
        return None
    existing = set(conn.execute(query("sources/select_table_columns"), {"table": spec.table}).scalars())
    missing = [c for c in dict.fromkeys(columns) if c not in existing]
    if missing:
        stats.errors.append(
            (source, spec.table, f"table {spec.table!r} has no column(s) {', '.join(missing)}")
        )
        return None
    cursor = f"table_source_{secrets.token_hex(8)}"
    statement = composed(
        "sources/declare_table_cursor",
        cursor=sql.Identifier(cursor),
        key_column=sql.Identifier(spec.key_column),
        title_column=sql.Identifier(spec.title_column) if spec.title_column else sql.NULL,
        text_columns=sql.SQL(", ").join(map(sql.Identifier, spec.text_columns)),
        table=sql.Identifier(*parts),
    )
    try:
        with conn.begin_nested():
            execute_composed(conn, statement)
    except sa.exc.ProgrammingError as exc:
        if not isinstance(exc.orig, psycopg.errors.UndefinedFunction):
            raise
        # Rows are read in key order so that rows sharing a key arrive together: a key type with no
        # ordering (json, point) cannot be read that way.
        reason = str(exc.orig).splitlines()[0]
        stats.errors.append(
            (source, spec.table, f"table {spec.table!r} cannot be read in key order: {reason}")
        )
        return None
    seen: set[str] = set()
    return TableRows(conn, cursor, spec, seen, stats), seen


def _provenance_rows(records: Iterable[ProvenanceRecord]) -> dict[str, str]:
    return {"rows": json.dumps([r.as_row() for r in records], ensure_ascii=False)}


def _upsert_unless_tombstoned(
    conn: sa.Connection, source: str, batch: list[ParsedDocument], provenance: Mapping[str, ProvenanceRecord]
) -> list[ParsedDocument]:
    """Upsert the batch's documents a retention sweep has not deleted, in the caller's transaction;
    returns those written."""
    # Under the shared retention lock, the tombstones read here include every committed sweep batch.
    xact_lock(conn, Lock.RETENTION, shared=True)
    tombstoned = {
        (r.source_key, r.content_sha256)
        for r in conn.execute(
            query("sources/select_tombstoned_documents"),
            {
                "source": source,
                "keys": [d.source_key for d in batch],
                "hashes": [d.content_sha256 for d in batch],
            },
        )
    }
    fresh = [d for d in batch if (d.source_key, d.content_sha256) not in tombstoned]
    if fresh:
        conn.execute(
            query("sources/upsert_source_documents"),
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
            query("sources/upsert_provenance"), _provenance_rows(provenance[d.source_key] for d in fresh)
        )
    return fresh


@dataclass
class _Writes:
    """Writes found by comparing scanned batches with the database, held until UPSERT_BATCH of them have
    gathered or the source ends: a nightly run changes a few documents spread over every read batch, and one
    transaction (one commit) for all of them costs less than one per batch. Never more than a batch."""

    changed: list[ParsedDocument] = field(default_factory=list)
    stale_provenance: list[ParsedDocument] = field(default_factory=list)  # unchanged, terms differ
    # Unchanged with current terms, but the stored scan fingerprint is not this read's: it gets written, so
    # that the next scan of the same bytes skips parsing.
    fingerprint_only: list[ParsedDocument] = field(default_factory=list)
    provenance: dict[str, ProvenanceRecord] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.changed) + len(self.stale_provenance) + len(self.fingerprint_only)


def _apply_source(
    conn: sa.Connection,
    source: str,
    docs: Iterable[ParsedDocument | _Unchanged],
    seen: set[str],
    stats: SyncStats,
    defaults: Mapping[str, ProvenanceDefaults],
    stored: StoredFingerprints | None = None,
) -> list[str]:
    """Upsert one source's documents and provenance: read and compared a batch of UPSERT_BATCH documents at
    a time, written a transaction per UPSERT_BATCH writes: memory holds a batch or two, never the source.
    Returns the keys of the documents gone from the source, for the caller to delete: those `stored` found
    while the scan read, if it did."""
    scanned = 0
    batch: list[ParsedDocument] = []
    writes = _Writes()
    for doc in docs:
        scanned += 1
        if isinstance(doc, _Unchanged):
            stats.unchanged += 1
            continue
        batch.append(doc)
        if len(batch) == UPSERT_BATCH:
            _apply_batch(conn, source, batch, stats, defaults, writes)
            batch = []
    if batch:
        _apply_batch(conn, source, batch, stats, defaults, writes)
    _write(conn, source, writes, stats)
    stats.scanned += scanned
    stats.per_source[source] = scanned
    # Keys only, never documents: what the deletion guard counts before anything is deleted.
    return (
        stored.vanished if stored is not None and stored.complete else list(_missing_keys(conn, source, seen))
    )


def _delete_missing(
    conn: sa.Connection, source: str, keys: list[str], grace_days: float, stats: SyncStats
) -> None:
    """Delete the source's documents gone from it, keeping their vectors for `grace_days` (see the SQL)."""
    with conn.begin():
        done = conn.execute(
            query("sources/delete_missing_source_documents"),
            {"source": source, "keys": keys, "grace_days": grace_days},
        ).one()
    stats.deleted += done.documents
    stats.vectors_kept += done.vectors_kept


def _check_deletions(
    limits: DeletionLimits, deletions: Iterable[MassDeletion], stats: SyncStats, where: str
) -> None:
    """Refuse the run, before anything is deleted, when a source would lose more than the limits allow; an
    allowed mass deletion is remembered so that the run says it happened."""
    over = [d for d in deletions if limits.exceeded_by(d.deleting, d.stored)]
    if over and not limits.allow:
        raise MassDeletionRefusedError(over, limits, where)
    stats.mass_deletions_allowed = over


def _apply_batch(
    conn: sa.Connection,
    source: str,
    docs: list[ParsedDocument],
    stats: SyncStats,
    defaults: Mapping[str, ProvenanceDefaults],
    writes: _Writes,
) -> None:
    """Compare a read batch with what is stored; what must be written joins `writes`, written once a
    batch of them has gathered."""
    provenance: dict[str, ProvenanceRecord] = {}
    usable = []
    for doc in docs:
        try:
            provenance[doc.source_key] = resolve_provenance(source, doc.source_key, doc.metadata, defaults)
            usable.append(doc)
        except ProvenanceError as exc:
            # Like any bad item: reported, and whatever was ingested for it before is kept.
            stats.errors.append((source, doc.source_key, str(exc)))
    if not usable:
        return
    with conn.begin():
        existing = {
            r.source_key: r
            for r in conn.execute(
                query("sources/select_source_fingerprints"),
                {"source": source, "keys": [d.source_key for d in usable]},
            )
        }
    for doc in usable:
        before = existing.get(doc.source_key)
        record = provenance[doc.source_key]
        if (
            before is not None
            and before.content_sha256 == doc.content_sha256
            and before.title == doc.title
            and _same_metadata(before.metadata, metadata_json(doc.metadata))
        ):
            stats.unchanged += 1
            # Unchanged documents too, where their stored terms differ from what they resolve to now: a
            # changed per-source default must reach them, and documents ingested before provenance existed
            # get their row.
            if not _provenance_current(before, record):
                writes.stale_provenance.append(doc)
            elif doc.read_fingerprint is not None:
                writes.fingerprint_only.append(doc)
            else:
                continue
        else:
            writes.changed.append(doc)
        writes.provenance[doc.source_key] = record
        if len(writes) >= UPSERT_BATCH:
            _write(conn, source, writes, stats)


def _write(conn: sa.Connection, source: str, writes: _Writes, stats: SyncStats) -> None:
    """The gathered writes in one transaction, then forgotten."""
    if not writes:
        return
    with conn.begin():
        if writes.changed:
            fresh = _upsert_unless_tombstoned(conn, source, writes.changed, writes.provenance)
            stats.skipped_expired += len(writes.changed) - len(fresh)
            stats.inserted_or_updated += len(fresh)
        else:
            fresh = []
        if writes.stale_provenance:
            conn.execute(
                query("sources/upsert_provenance"),
                _provenance_rows(writes.provenance[d.source_key] for d in writes.stale_provenance),
            )
        read = [d for d in (*fresh, *writes.stale_provenance, *writes.fingerprint_only) if d.read_fingerprint]
        if read:
            conn.execute(
                query("sources/update_scan_fingerprints"),
                {
                    "source": source,
                    "keys": [d.source_key for d in read],
                    "fingerprints": [d.read_fingerprint for d in read],
                },
            )
    writes.changed, writes.stale_provenance, writes.fingerprint_only, writes.provenance = [], [], [], {}


def _same_metadata(stored: str, scanned: str) -> bool:
    """jsonb's text and json.dumps agree for most documents (an empty mapping above all): the same text is
    the same value; different text may still be, after jsonb's key order and spacing."""
    return stored == scanned or json.loads(stored) == json.loads(scanned)


def _provenance_current(stored: sa.Row, record: ProvenanceRecord) -> bool:
    """Whether an unchanged document's provenance row already holds exactly what upsert_provenance would
    write for `record` (the same columns its IS DISTINCT FROM compares): then the upsert would write
    nothing and is skipped. Any doubt (no row, a differing value) leaves the upsert to decide."""
    return bool(stored.has_provenance) and (
        stored.content_type,
        stored.source_uri,
        stored.license_type,
        stored.acquisition_method,
        stored.rights_holder,
        stored.hash_sha256,
        stored.retention_years,
        stored.acquired_at,
    ) == (
        record.content_type,
        record.source_uri,
        record.license_type,
        record.acquisition_method,
        record.rights_holder,
        stored.content_sha256,
        record.retention_years,
        record.acquired_at or stored.document_acquired_at,
    )


def _missing_keys(conn: sa.Connection, source: str, seen: set[str]) -> Iterator[str]:
    """The source's stored keys not in `seen`, read a page of keys per transaction."""
    after: str | None = None
    while True:
        with conn.begin():
            keys = (
                conn.execute(
                    query("sources/select_source_keys"),
                    {"source": source, "after": after, "limit": KEY_PAGE},
                )
                .scalars()
                .all()
            )
        yield from (k for k in keys if k not in seen)
        if len(keys) < KEY_PAGE:
            return
        after = keys[-1]


def sync_documents(
    engine: sa.Engine,
    content_dir: Path,
    tables: Sequence[TableSpec] = (),
    provenance_defaults: Mapping[str, ProvenanceDefaults] | None = None,
    *,
    max_file_bytes: int = DEFAULT_MAX_BYTES,
    limits: DeletionLimits | None = None,
    deleted_vector_grace_days: float = DEFAULT_DELETED_VECTOR_GRACE_DAYS,
) -> SyncStats:
    """Bring `source_documents` and their `provenance` in line with the markdown files under `content_dir`
    and the rows of `tables`; one transaction per batch.

    Items that fail keep whatever was ingested for them before; a source that cannot be read at all
    (missing directory or table) deletes nothing. Content a retention sweep deleted is skipped, not
    re-ingested. `provenance_defaults` (per source, `*` for any) fill terms the frontmatter does not state.
    Deletions come last, once every source is read: when a source would lose more than `limits` allow
    (default: DeletionLimits()), MassDeletionRefusedError is raised and nothing is deleted; when the markdown
    listing alone shows it, before anything is written. Deleted chunks' vectors stay reusable for
    `deleted_vector_grace_days`.
    """
    defaults = provenance_defaults or {}
    limits = limits or DeletionLimits()
    stats = SyncStats()
    where = str(content_dir)
    with engine.connect() as conn, ExitStack() as cursors:
        with conn.begin():
            before = _stored_counts(conn, ["local", *(f"table:{spec.table}" for spec in tables)])
        stored = StoredFingerprints.of(conn, "local", defaults)
        local = scan_markdown(content_dir, max_file_bytes, stats, stored)
        if local is not None:
            _check_listing(conn, limits, before["local"], local[1], stats, where)
        scans: list[tuple[str, ScanResult | None]] = [("local", local)]
        for spec in tables:
            with conn.begin():
                table = scan_table(conn, spec, stats)
            if table is not None:
                cursors.callback(table[0].close)
            scans.append((f"table:{spec.table}", table))
        gone = {
            source: _apply_source(
                conn, source, *scanned, stats, defaults, stored if source == "local" else None
            )
            for source, scanned in scans
            if scanned is not None
        }
        with conn.begin():
            record_ingestion_errors(conn, [s for s, _ in scans], stats.errors)
        _check_deletions(
            limits,
            [MassDeletion(s, len(keys), before[s], sample_keys(keys)) for s, keys in gone.items()],
            stats,
            where,
        )
        for source, keys in gone.items():
            if keys:
                _delete_missing(conn, source, keys, deleted_vector_grace_days, stats)
    return stats


def _check_listing(
    conn: sa.Connection, limits: DeletionLimits, stored: int, seen: set[str], stats: SyncStats, where: str
) -> None:
    """Refuse before anything is written when the markdown listing alone shows a mass deletion: every stored
    key it lacks will be deleted, so at least `stored - len(seen)` go. Only then are the keys counted."""
    if limits.allow or not limits.exceeded_by(stored - len(seen), stored):
        return
    with conn.begin():
        row = conn.execute(
            query("sources/select_missing_source_keys_summary"),
            {"source": "local", "seen": list(seen), "sample": SAMPLE_KEYS},
        ).one()
    _check_deletions(limits, [MassDeletion("local", row.deleting, stored, tuple(row.sample))], stats, where)


def _stored_counts(conn: sa.Connection, sources: list[str]) -> dict[str, int]:
    counts = dict.fromkeys(sources, 0)
    for source, documents in conn.execute(query("sources/count_documents_by_source"), {"sources": sources}):
        counts[source] = documents
    return counts


def record_ingestion_errors(
    conn: sa.Connection, sources: Iterable[str], errors: list[tuple[str, str, str]]
) -> None:
    """Replace the recorded errors of the sources just scanned with this run's, in the caller's transaction."""
    conn.execute(query("sources/delete_ingestion_errors"), {"sources": list(sources)})
    if errors:
        conn.execute(
            query("sources/replace_ingestion_errors"),
            [{"source": s, "source_key": k, "error": e} for s, k, e in errors],
        )


def count_documents(conn: sa.Connection) -> int:
    return conn.execute(query("sources/count_source_documents")).scalar_one()
