"""Resources built from the environment, for the code location and for `make run`."""

from __future__ import annotations

import os

import dagster as dg

from resources.embedders import EmbedderResource
from resources.postgres import PostgresResource
from resources.sources import DEFAULT_CONTENT_DIR, ContentSourcesResource, parse_table_sources


def _env(name: str):
    """`dg.EnvVar` for a variable that is set, so that secrets are resolved at run time and never stored."""
    return dg.EnvVar(name) if os.environ.get(name) else None


def _env_number(name: str, kind: type, default=None):
    """The variable parsed as `kind`, or `default` when unset (an explicit 0 is kept, unlike `or`)."""
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        return kind(raw)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise ValueError(f"{name} must be {what}, got {raw!r}") from None


def build_resources() -> dict[str, dg.ConfigurableResource]:
    return {
        "postgres": PostgresResource(database_url=_env("DATABASE_URL")),
        "content_sources": ContentSourcesResource(
            content_dir=os.environ.get("CONTENT_DIR") or str(DEFAULT_CONTENT_DIR),
            tables=parse_table_sources(os.environ.get("SOURCE_TABLES")),
            chunk_max_chars=_env_number("CHUNK_MAX_CHARS", int, 1200),
            chunk_overlap=_env_number("CHUNK_OVERLAP", int, 100),
        ),
        "embedder": EmbedderResource(
            provider=os.environ.get("EMBEDDING_PROVIDER") or "auto",
            model=os.environ.get("EMBEDDING_MODEL") or None,
            dimensions=_env_number("EMBEDDING_DIMENSIONS", int),
            api_key=_env("OPENAI_API_KEY"),
            base_url=os.environ.get("OPENAI_BASE_URL") or None,
            price_per_million_tokens=_env_number("EMBEDDING_PRICE_PER_MTOK", float),
            concurrency=_env_number("EMBEDDING_CONCURRENCY", int, 4),
            budget_usd=_env_number("EMBEDDING_BUDGET_USD", float),
            retired_grace_days=_env_number("RETIRED_GRACE_DAYS", float, 7.0),
            requests_per_minute=_env_number("EMBEDDING_RPM", float),
            tokens_per_minute=_env_number("EMBEDDING_TPM", float),
            hnsw_maintenance_work_mem=os.environ.get("HNSW_MAINTENANCE_WORK_MEM") or "256MB",
        ),
    }
