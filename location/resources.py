"""Resources built from the environment, for the code location and for `make run`."""

from __future__ import annotations

import os
from typing import Any

import dagster as dg

from pipelines.db import validate_migrate_mode
from pipelines.embedders import EmbedLimits
from pipelines.hnsw import (
    DEFAULT_BUILD_WORKERS,
    DEFAULT_HNSW_MIN_ROWS,
    DEFAULT_INDEX_KIND,
    DEFAULT_MAINTENANCE_WORK_MEM,
)
from pipelines.lib.alerts import DEFAULT_UI_URL, checked_format
from pipelines.lib.batch_files import MODES
from pipelines.lib.chunking import DEFAULT_MAX_CHARS, DEFAULT_OVERLAP
from pipelines.lib.deletion_safety import (
    DEFAULT_DELETED_VECTOR_GRACE_DAYS,
    DEFAULT_MAX_DOCUMENTS,
    DEFAULT_MAX_PERCENT,
    DeletionLimits,
)
from pipelines.lib.vector_index import validate_index_kind
from pipelines.migrations import DEFAULT_SETTINGS
from pipelines.models import DEFAULT_RETIRED_GRACE_DAYS
from pipelines.retrieval_eval import EvalSettings
from resources.alerts import AlertsResource
from resources.batch_api import BatchApiSettings
from resources.embedders import EmbedderResource
from resources.env import env_flag, env_number
from resources.evaluation import EvaluationSettings
from resources.postgres import PostgresResource
from resources.sources import DEFAULT_CONTENT_DIR, ContentSourcesResource, parse_table_sources


def _env(name: str) -> Any:
    """`dg.EnvVar` for a variable that is set, so that secrets are resolved at run time and never stored."""
    return dg.EnvVar(name) if os.environ.get(name) else None


def _chunk_settings() -> dict[str, int]:
    max_chars = env_number("CHUNK_MAX_CHARS", int, DEFAULT_MAX_CHARS, minimum=1)
    overlap = env_number("CHUNK_OVERLAP", int, DEFAULT_OVERLAP, minimum=0)
    if overlap >= max_chars:
        raise ValueError(
            f"CHUNK_OVERLAP must be less than CHUNK_MAX_CHARS, got CHUNK_OVERLAP={overlap}"
            f" with CHUNK_MAX_CHARS={max_chars}"
        )
    return {"chunk_max_chars": max_chars, "chunk_overlap": overlap}


def _deletion_limits() -> DeletionLimits:
    """ALLOW_MASS_DELETION and the MASS_DELETION_MAX_* bounds of the mass-deletion guard."""
    return DeletionLimits(
        max_documents=env_number("MASS_DELETION_MAX_DOCUMENTS", int, DEFAULT_MAX_DOCUMENTS, minimum=0),
        max_percent=env_number("MASS_DELETION_MAX_PERCENT", float, DEFAULT_MAX_PERCENT, minimum=0),
        allow=env_flag("ALLOW_MASS_DELETION"),
    )


def role_settings() -> dict[str, str]:
    """APP_ROLE / ANALYST_ROLE: the role names the security migration creates and grants to."""
    return {
        "app_role": os.environ.get("APP_ROLE") or DEFAULT_SETTINGS["rag.app_role"],
        "analyst_role": os.environ.get("ANALYST_ROLE") or DEFAULT_SETTINGS["rag.analyst_role"],
    }


def _alert_format() -> str:
    return checked_format((os.environ.get("ALERT_WEBHOOK_FORMAT") or "slack").strip().lower())


def batch_api_settings() -> BatchApiSettings:
    """EMBEDDING_BATCH_*: the Batch API path's settings, refused by name at start-up when invalid."""
    mode = (os.environ.get("EMBEDDING_BATCH_API") or "off").strip().lower()
    if mode not in MODES:
        raise ValueError(f"EMBEDDING_BATCH_API must be one of {', '.join(MODES)}, got {mode!r}")
    d = BatchApiSettings()
    return BatchApiSettings(
        mode=mode,
        min_tokens=env_number("EMBEDDING_BATCH_MIN_TOKENS", int, d.min_tokens, minimum=0),
        max_requests_per_file=env_number(
            "EMBEDDING_BATCH_MAX_REQUESTS_PER_FILE", int, d.max_requests_per_file, positive=True
        ),
        max_file_bytes=env_number("EMBEDDING_BATCH_MAX_FILE_BYTES", int, d.max_file_bytes, positive=True),
        max_inputs_per_file=env_number(
            "EMBEDDING_BATCH_MAX_INPUTS_PER_FILE", int, d.max_inputs_per_file, positive=True
        ),
        poll_initial_s=env_number("EMBEDDING_BATCH_POLL_S", float, d.poll_initial_s, minimum=0),
        poll_max_s=env_number("EMBEDDING_BATCH_POLL_MAX_S", float, d.poll_max_s, minimum=0),
    )


def evaluation_settings() -> EvaluationSettings:
    """EVAL_*: the retrieval evaluation's question set and thresholds, refused by name when invalid."""
    d = EvalSettings()
    settings = EvaluationSettings(
        questions=os.environ.get("EVAL_QUESTIONS") or None,
        k=env_number("EVAL_K", int, d.k, minimum=1),
        min_recall=env_number("EVAL_MIN_RECALL", float, d.min_recall, minimum=0),
        max_drop=env_number("EVAL_MAX_DROP", float, d.max_drop, minimum=0),
        switch_tolerance=env_number("EVAL_SWITCH_TOLERANCE", float, d.switch_tolerance, minimum=0),
    )
    settings.settings()  # the range checks, at start-up
    return settings


def build_resources() -> dict[str, dg.ConfigurableResource]:
    deletion = _deletion_limits()
    return {
        "postgres": PostgresResource(
            database_url=_env("DATABASE_URL"),
            retired_grace_days=env_number("RETIRED_GRACE_DAYS", float, DEFAULT_RETIRED_GRACE_DAYS, minimum=0),
            deleted_vector_grace_days=env_number(
                "DELETED_VECTOR_GRACE_DAYS", float, DEFAULT_DELETED_VECTOR_GRACE_DAYS, minimum=0
            ),
            hnsw_maintenance_work_mem=os.environ.get("HNSW_MAINTENANCE_WORK_MEM")
            or DEFAULT_MAINTENANCE_WORK_MEM,
            hnsw_min_rows=env_number("HNSW_MIN_ROWS", int, DEFAULT_HNSW_MIN_ROWS, minimum=0),
            hnsw_build_workers=env_number("HNSW_BUILD_WORKERS", int, DEFAULT_BUILD_WORKERS, minimum=0),
            vector_index_kind=validate_index_kind(
                os.environ.get("VECTOR_INDEX_KIND", "").strip() or DEFAULT_INDEX_KIND
            ),
            migrate_on_start=validate_migrate_mode(
                os.environ.get("MIGRATE_ON_START", "").strip().lower() or "auto"
            ),
            **role_settings(),
        ),
        "content_sources": ContentSourcesResource(
            content_dir=os.environ.get("CONTENT_DIR") or str(DEFAULT_CONTENT_DIR),
            tables=parse_table_sources(os.environ.get("SOURCE_TABLES")),
            **_chunk_settings(),
            retention_defaults=os.environ.get("RETENTION_DEFAULTS") or None,
            allow_mass_deletion=deletion.allow,
            mass_deletion_max_documents=deletion.max_documents,
            mass_deletion_max_percent=deletion.max_percent,
        ),
        "embedder": EmbedderResource(
            provider=os.environ.get("EMBEDDING_PROVIDER") or "auto",
            model=os.environ.get("EMBEDDING_MODEL") or None,
            dimensions=env_number("EMBEDDING_DIMENSIONS", int, minimum=1),
            api_key=_env("OPENAI_API_KEY"),
            base_url=os.environ.get("OPENAI_BASE_URL") or None,
            price_per_million_tokens=env_number("EMBEDDING_PRICE_PER_MTOK", float, minimum=0),
            concurrency=env_number("EMBEDDING_CONCURRENCY", int, EmbedLimits.concurrency, minimum=1),
            budget_usd=env_number("EMBEDDING_BUDGET_USD", float, minimum=0),
            requests_per_minute=env_number("EMBEDDING_RPM", float, positive=True),
            tokens_per_minute=env_number("EMBEDDING_TPM", float, positive=True),
            batch_api=batch_api_settings(),
            evaluation=evaluation_settings(),
        ),
        "alerts": AlertsResource(
            webhook_url=_env("ALERT_WEBHOOK_URL"),
            format=_alert_format(),
            ui_url=os.environ.get("DAGSTER_UI_URL") or DEFAULT_UI_URL,
        ),
    }
