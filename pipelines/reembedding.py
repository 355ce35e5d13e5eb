"""Blue/green re-embedding: build the configured model beside the active one, which readers keep using
meanwhile; the switch and clean-up are in `pipelines.models`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa

from pipelines.embedders import EmbedderFactory, EmbedLimits, ModelSpec
from pipelines.embeddings import EmbedStats, embed_pending
from pipelines.hnsw import (
    DEFAULT_BUILD_WORKERS,
    DEFAULT_INDEX_KIND,
    IndexResult,
    RecallResult,
    ensure_hnsw_index,
    measure_recall,
)
from pipelines.locks import Lock, xact_lock
from pipelines.models import (
    Coverage,
    CoverageError,
    RegisteredModel,
    SwitchResult,
    active_model,
    coverage,
    drop_retired_embeddings,
    get_model,
    register_model,
    retire_abandoned_builds,
    switch_active_model,
)
from pipelines.sql import query

# Rounds of top-up for chunks written beside the build; a corpus that keeps changing faster than that
# leaves the coverage check failing until the next run.
TOP_UP_ROUNDS = 3


@dataclass
class BuildResult:
    target: str
    previous_active: str | None
    status_before: str | None
    reopened: bool
    stats: EmbedStats
    coverage: Coverage
    index: IndexResult | None = None


def _add_stats(total: EmbedStats, more: EmbedStats) -> None:
    for name in (
        "chunks_reused",
        "chunks_embedded",
        "chunks_failed",
        "chunks_vanished",
        "unique_texts",
        "requests",
        "minimum_requests",
        "tokens",
        "estimated_tokens",
        "estimated_cost_usd",
        "cost_usd",
        "duration_s",
    ):
        setattr(total, name, getattr(total, name) + getattr(more, name))
    total.chunks_total, total.chunks_abandoned = more.chunks_total, more.chunks_abandoned
    total.failures.extend(more.failures)


def top_up(
    engine: sa.Engine,
    spec: ModelSpec,
    limits: EmbedLimits,
    embedders: EmbedderFactory,
    *,
    max_attempts: int = 3,
    log: Callable[[str], None] = lambda _msg: None,
    stats: EmbedStats | None = None,
) -> int:
    """Embed chunks written beside a build after it read what to embed (an ingestion run at the same time),
    so that its coverage check or switch does not fail on work a moment old. Recorded failures are not
    retried here: that would spend their attempts within one run. Returns the rounds that sent something."""
    rounds = 0
    for _ in range(TOP_UP_ROUNDS):
        with engine.begin() as conn:
            new = conn.execute(
                query("embeddings/count_unattempted_chunks"), {"model": spec.name}
            ).scalar_one()
        if not new:
            break
        log(f"{new} chunks were written beside the build; embedding them for {spec.name}")
        more = embed_pending(engine, spec, limits, embedders, max_attempts=max_attempts, log=log)
        rounds += 1
        if stats is not None:
            _add_stats(stats, more)
    return rounds


def prepare_target(engine: sa.Engine, spec: ModelSpec) -> tuple[str | None, bool]:
    """Register the model (first use) and re-open it when retired; return (status before, re-opened).

    Two transactions of its own: the re-opening takes the advisory lock before any registry row lock, in
    the order a switch takes them."""
    with engine.begin() as conn:
        before = get_model(conn, spec.name)
        register_model(conn, spec)
    reopened = False
    if before is not None and before.status == "retired":
        with engine.begin() as conn:
            xact_lock(conn, Lock.REEMBEDDING)
            reopened = (
                conn.execute(query("models/reopen_retired_embedding_model"), {"name": spec.name}).first()
                is not None
            )
    return (before.status if before else None), reopened


def build_model(
    engine: sa.Engine,
    spec: ModelSpec,
    limits: EmbedLimits,
    embedders: EmbedderFactory,
    *,
    maintenance_work_mem: str,
    min_rows: int = 0,
    workers: int = DEFAULT_BUILD_WORKERS,
    kind: str = DEFAULT_INDEX_KIND,
    max_attempts: int = 3,
    allow_over_budget: bool = False,
    retry_abandoned: bool = False,
    log: Callable[[str], None] = lambda _msg: None,
    on_estimate: Callable[[EmbedStats], None] | None = None,
) -> BuildResult:
    """Embed what `spec`'s model lacks beside the active one, then index it (after the bulk load).

    Resumable: only chunks without a vector of their current text for the model are sent, and every
    finished request is committed, so an interrupted run picks up where it stopped.
    """
    with engine.begin() as conn:
        previous = active_model(conn)
    status_before, reopened = prepare_target(engine, spec)
    if reopened:
        log(f"{spec.name} was retired; its surviving vectors are reused and only missing chunks are embedded")
    stats = embed_pending(
        engine,
        spec,
        limits,
        embedders,
        max_attempts=max_attempts,
        allow_over_budget=allow_over_budget,
        retry_abandoned=retry_abandoned,
        log=log,
        on_estimate=on_estimate,
    )
    # Chunks may keep arriving between a top-up and the coverage count while an ingestion run chunks.
    for _ in range(TOP_UP_ROUNDS):
        top_up(engine, spec, limits, embedders, max_attempts=max_attempts, log=log, stats=stats)
        with engine.begin() as conn:
            cov = coverage(conn, spec.name)
        if cov.complete:
            break
    # Built here, before the switch, so that readers move to a model whose index is already finished.
    index = ensure_hnsw_index(
        engine,
        spec.name,
        spec.dimensions,
        maintenance_work_mem,
        log=log,
        min_rows=min_rows,
        workers=workers,
        kind=kind,
    )
    return BuildResult(
        target=spec.name,
        previous_active=previous.name if previous else None,
        status_before=status_before,
        reopened=reopened,
        stats=stats,
        coverage=cov,
        index=index,
    )


@dataclass
class ModelSwitch:
    """What `switch_to_configured_model` did, step by step."""

    switch: SwitchResult
    abandoned: list[str]
    active: RegisteredModel
    index: IndexResult
    retired_vectors_dropped: int
    recall: RecallResult
    coverage: Coverage


def switch_to_configured_model(
    engine: sa.Engine,
    spec: ModelSpec,
    limits: EmbedLimits,
    embedders: EmbedderFactory,
    *,
    maintenance_work_mem: str,
    min_rows: int = 0,
    workers: int = DEFAULT_BUILD_WORKERS,
    kind: str = DEFAULT_INDEX_KIND,
    retired_grace_days: float,
    recall_sample: int = 50,
    run_id: str | None = None,
    log: Callable[[str], None] = lambda _msg: None,
) -> ModelSwitch:
    """The switch sequence after a build: top up chunks written since its coverage check and switch readers
    to `spec`'s model (CoverageError when chunks keep arriving faster than TOP_UP_ROUNDS), retire builds a
    later configuration change abandoned, make sure the active model's index exists, drop the vectors of
    models retired longer than `retired_grace_days`, and measure the index's recall against exact search."""
    for attempt in range(TOP_UP_ROUNDS + 1):
        try:
            switch = switch_active_model(engine, spec.name, run_id=run_id)
            break
        except CoverageError:
            # Chunks an ingestion run wrote after the build's check: embed them, then switch or fail.
            if attempt == TOP_UP_ROUNDS or not top_up(engine, spec, limits, embedders, log=log):
                raise
    if switch.switched:
        log(f"switched readers from {switch.previous} to {spec.name}")
    abandoned = retire_abandoned_builds(engine, keep=spec.name)
    if abandoned:
        log(f"retired abandoned builds {', '.join(abandoned)}; their vectors go after the grace period")
    with engine.begin() as conn:
        active = active_model(conn)
    if active is None:
        raise CoverageError(f"no active embedding model after switching to {spec.name}")
    index = ensure_hnsw_index(
        engine,
        active.name,
        active.dimensions,
        maintenance_work_mem,
        min_rows=min_rows,
        workers=workers,
        kind=kind,
    )
    cleanup = drop_retired_embeddings(engine, retired_grace_days, log=log)
    recall = measure_recall(engine, active.name, active.dimensions, sample=recall_sample)
    with engine.begin() as conn:
        cov = coverage(conn, active.name)
    return ModelSwitch(switch, abandoned, active, index, cleanup.total, recall, cov)
