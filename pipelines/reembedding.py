"""Blue/green re-embedding: build the configured model beside the active one, which readers keep using
meanwhile; the switch and clean-up are in `pipelines.models`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa

from pipelines.embedders import ModelSpec
from pipelines.embeddings import EmbedStats, embed_pending
from pipelines.hnsw import IndexResult, ensure_hnsw_index
from pipelines.locks import Lock, xact_lock
from pipelines.models import Coverage, active_model, coverage, get_model, register_model
from pipelines.sql import query
from resources.embedders import EmbedderResource


@dataclass
class BuildResult:
    target: str
    previous_active: str | None
    status_before: str | None
    reopened: bool
    stats: EmbedStats
    coverage: Coverage
    index: IndexResult | None = None


def prepare_target(conn: sa.Connection, spec: ModelSpec) -> tuple[str | None, bool]:
    """Register the model (first use) and re-open it when retired; return (status before, re-opened)."""
    before = get_model(conn, spec.name)
    conn.commit()
    register_model(conn, spec)
    reopened = False
    if before is not None and before.status == "retired":
        if conn.in_transaction():
            conn.commit()
        with conn.begin():
            xact_lock(conn, Lock.REEMBEDDING)
            reopened = (
                conn.execute(query("models/reopen_retired_embedding_model"), {"name": spec.name}).first()
                is not None
            )
    return (before.status if before else None), reopened


def build_model(
    conn: sa.Connection,
    configured: EmbedderResource,
    *,
    max_attempts: int = 3,
    allow_over_budget: bool = False,
    log: Callable[[str], None] = lambda _msg: None,
    on_estimate: Callable[[EmbedStats], None] | None = None,
) -> BuildResult:
    """Embed what the configured model lacks beside the active one, then index it (after the bulk load).

    Resumable: only chunks without a vector of their current text for the model are sent, and every
    finished request is committed, so an interrupted run picks up where it stopped.
    """
    spec = configured.spec()
    previous = active_model(conn)
    conn.commit()
    status_before, reopened = prepare_target(conn, spec)
    if reopened:
        log(f"{spec.name} was retired; its surviving vectors are reused and only missing chunks are embedded")
    stats = embed_pending(
        conn,
        configured,
        max_attempts=max_attempts,
        allow_over_budget=allow_over_budget,
        log=log,
        on_estimate=on_estimate,
    )
    cov = coverage(conn, spec.name)
    conn.commit()
    index = ensure_hnsw_index(conn, spec.name, spec.dimensions, configured.hnsw_maintenance_work_mem, log=log)
    return BuildResult(
        target=spec.name,
        previous_active=previous.name if previous else None,
        status_before=status_before,
        reopened=reopened,
        stats=stats,
        coverage=cov,
        index=index,
    )
