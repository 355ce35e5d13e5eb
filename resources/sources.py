"""Where documents come from: a directory of markdown files and configured Postgres tables."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import dagster as dg
from pydantic import Field

from pipelines.lib.documents import DEFAULT_MAX_BYTES
from pipelines.lib.provenance import ProvenanceDefaults, parse_retention_defaults

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONTENT_DIR = PROJECT_ROOT / "demo" / "content"
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


class TableSource(dg.Config):
    """One table whose rows become documents: each row's text columns, keyed by `key_column`."""

    table: str
    key_column: str = "id"
    text_columns: list[str]
    title_column: str | None = None


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


class ContentSourcesResource(dg.ConfigurableResource):
    """Configured sources plus the chunking parameters applied to every document."""

    content_dir: str = str(DEFAULT_CONTENT_DIR)
    tables: list[TableSource] = Field(default_factory=list)
    max_file_bytes: int = DEFAULT_MAX_BYTES
    chunk_max_chars: int = 1200
    chunk_overlap: int = 100

    @property
    def content_path(self) -> Path:
        return Path(self.content_dir).expanduser().resolve()


RETENTION_DEFAULTS_ENV = "RETENTION_DEFAULTS"


def retention_defaults_from_env() -> dict[str, ProvenanceDefaults]:
    """Unset or empty means no defaults: retention null (keep forever) and built-in terms."""
    return parse_retention_defaults(os.environ.get(RETENTION_DEFAULTS_ENV))
