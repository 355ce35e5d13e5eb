"""Where documents come from as a Dagster resource: a directory of markdown files and configured Postgres
tables. It only resolves its fields into the plain values `pipelines.sources` takes."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
from pydantic import Field

from pipelines.lib.chunking import DEFAULT_MAX_CHARS, DEFAULT_OVERLAP
from pipelines.lib.deletion_safety import DEFAULT_MAX_DOCUMENTS, DEFAULT_MAX_PERCENT, DeletionLimits
from pipelines.lib.documents import DEFAULT_MAX_BYTES
from pipelines.lib.provenance import ProvenanceDefaults, parse_retention_defaults
from pipelines.sources import TableSpec
from resources.fieldwise import FieldwiseConfigResource

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONTENT_DIR = PROJECT_ROOT / "demo" / "content"


class TableSource(dg.Config):
    """One table whose rows become documents: each row's text columns, keyed by `key_column`."""

    table: str
    key_column: str = "id"
    text_columns: list[str]
    title_column: str | None = None

    def spec(self) -> TableSpec:
        return TableSpec(
            table=self.table,
            text_columns=tuple(self.text_columns),
            key_column=self.key_column,
            title_column=self.title_column,
        )


def parse_table_sources(raw: str | None) -> list[TableSource]:
    """`SOURCE_TABLES` is a JSON list of {table, key_column, text_columns, title_column}."""
    if not raw or not raw.strip():
        return []
    try:
        items = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"SOURCE_TABLES is not valid JSON: {exc.msg} at position {exc.pos}") from None
    if not isinstance(items, list):
        raise ValueError("SOURCE_TABLES must be a JSON list of table objects")
    return [TableSource(**item) for item in items]


class ContentSourcesResource(FieldwiseConfigResource):
    """Configured sources, the provenance defaults of their documents, and the chunking parameters applied
    to every document."""

    content_dir: str = str(DEFAULT_CONTENT_DIR)
    tables: list[TableSource] = Field(default_factory=list)
    max_file_bytes: int = DEFAULT_MAX_BYTES
    chunk_max_chars: int = DEFAULT_MAX_CHARS
    chunk_overlap: int = DEFAULT_OVERLAP
    # The `RETENTION_DEFAULTS` JSON; parsed when a run uses it, so a malformed value fails that run with
    # its reason rather than the whole code location.
    retention_defaults: str | None = None
    # The mass-deletion guard (docs/deletion-safety.md), from ALLOW_MASS_DELETION and MASS_DELETION_MAX_*.
    allow_mass_deletion: bool = Field(
        default=False,
        description="ALLOW_MASS_DELETION: let every run delete any share of a source's documents. To allow"
        " one run, set the source_documents asset's config allow_mass_deletion instead.",
    )
    mass_deletion_max_documents: int = Field(
        default=DEFAULT_MAX_DOCUMENTS,
        description="MASS_DELETION_MAX_DOCUMENTS: a run deleting more documents than this and more than"
        " mass_deletion_max_percent of a source is refused.",
    )
    mass_deletion_max_percent: float = Field(
        default=DEFAULT_MAX_PERCENT,
        description="MASS_DELETION_MAX_PERCENT: the share (0-100) of a source's documents a run may delete"
        " when that is more than mass_deletion_max_documents.",
    )

    @property
    def content_path(self) -> Path:
        return Path(self.content_dir).expanduser().resolve()

    def table_specs(self) -> tuple[TableSpec, ...]:
        return tuple(t.spec() for t in self.tables)

    def deletion_limits(self, allow: bool = False) -> DeletionLimits:
        """The guard's bounds; `allow` (a run's config) or ALLOW_MASS_DELETION lifts them."""
        return DeletionLimits(
            max_documents=self.mass_deletion_max_documents,
            max_percent=self.mass_deletion_max_percent,
            allow=allow or self.allow_mass_deletion,
        )

    def provenance_defaults(self) -> dict[str, ProvenanceDefaults]:
        """Unset or empty means no defaults: retention null (keep forever) and built-in terms."""
        return parse_retention_defaults(self.retention_defaults)
