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


def _env_int(name: str) -> int | None:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return None
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None


def _env_float(name: str) -> float | None:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return None
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None


def _env_or(name: str, parse, default):
    """The parsed variable, or `default` when unset: unlike `or`, an explicit 0 is kept."""
    value = parse(name)
    return default if value is None else value


def build_resources() -> dict[str, dg.ConfigurableResource]:
    return {
        "postgres": PostgresResource(database_url=_env("DATABASE_URL")),
        "content_sources": ContentSourcesResource(
            content_dir=os.environ.get("CONTENT_DIR") or str(DEFAULT_CONTENT_DIR),
            tables=parse_table_sources(os.environ.get("SOURCE_TABLES")),
            chunk_max_chars=_env_int("CHUNK_MAX_CHARS") or 1200,
            chunk_overlap=_env_int("CHUNK_OVERLAP") or 100,
        ),
        "embedder": EmbedderResource(
            provider=os.environ.get("EMBEDDING_PROVIDER") or "auto",
            model=os.environ.get("EMBEDDING_MODEL") or None,
            dimensions=_env_int("EMBEDDING_DIMENSIONS"),
            api_key=_env("OPENAI_API_KEY"),
            base_url=os.environ.get("OPENAI_BASE_URL") or None,
            price_per_million_tokens=_env_float("EMBEDDING_PRICE_PER_MTOK"),
            concurrency=_env_int("EMBEDDING_CONCURRENCY") or 4,
            budget_usd=_env_float("EMBEDDING_BUDGET_USD"),
            retired_grace_days=_env_or("RETIRED_GRACE_DAYS", _env_float, 7.0),
            hnsw_maintenance_work_mem=os.environ.get("HNSW_MAINTENANCE_WORK_MEM") or "256MB",
        ),
    }
