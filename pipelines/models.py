"""The embedding model registry: which model readers use, registration, coverage, the atomic switch,
and the clean-up of retired models' vectors.

Readers only ever see `embedding_models.status = 'active'` (the `active_chunk_embeddings` view and
search). The switch is one transaction that re-checks coverage under a lock, so a reader's statement
sees either the old model complete or the new one complete. Retired vectors stay for a grace period so
that switching back costs no API call, then go in bounded batches together with their index.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from pipelines.embedders import ModelSpec
from pipelines.hnsw import drop_hnsw_index
from pipelines.locks import Lock, xact_lock
from pipelines.sql import query

DELETE_BATCH = 10_000


# How long a retired model's vectors stay, so that switching back costs no API call.
DEFAULT_RETIRED_GRACE_DAYS = 7.0


class CoverageError(RuntimeError):
    """The model to activate lacks vectors for some current chunks; switching would hide them from readers."""


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    provider: str
    model: str
    dimensions: int
    price_per_million_tokens: float
    status: str
    activated_at: datetime | None = None
    retired_at: datetime | None = None
    embeddings_dropped_at: datetime | None = None

    def spec(self) -> ModelSpec:
        """The spec the model was registered with, to embed with it again (e.g. new chunks, queries)."""
        return ModelSpec(
            name=self.name,
            provider=self.provider,
            model=self.model,
            dimensions=self.dimensions,
            price_per_million_tokens=self.price_per_million_tokens,
        )


@dataclass(frozen=True)
class Coverage:
    model: str
    total_chunks: int
    missing: int
    sample_missing: tuple[int, ...] = ()

    @property
    def complete(self) -> bool:
        return self.missing == 0


@dataclass(frozen=True)
class SwitchResult:
    target: str
    previous: str | None
    switched: bool
    chunks_covered: int


@dataclass
class CleanupResult:
    deleted: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.deleted.values())


def _model(row: Any) -> RegisteredModel:
    return RegisteredModel(
        name=row.name,
        provider=row.provider,
        model=row.model,
        dimensions=row.dimensions,
        price_per_million_tokens=float(row.price_per_million_tokens),
        status=row.status,
        activated_at=row.activated_at,
        retired_at=row.retired_at,
        embeddings_dropped_at=row.embeddings_dropped_at,
    )


def active_model(conn: sa.Connection) -> RegisteredModel | None:
    row = conn.execute(query("models/select_active_embedding_model")).one_or_none()
    return _model(row) if row else None


def get_model(conn: sa.Connection, name: str) -> RegisteredModel | None:
    row = conn.execute(query("models/select_embedding_models"), {"name": name}).one_or_none()
    return _model(row) if row else None


def list_models(conn: sa.Connection) -> list[RegisteredModel]:
    return [_model(r) for r in conn.execute(query("models/select_embedding_models"), {"name": None})]


def coverage(conn: sa.Connection, model: str) -> Coverage:
    row = conn.execute(query("models/count_chunks_missing_embedding"), {"model": model}).one()
    return Coverage(model, row.total, row.missing, tuple(row.sample or ()))


def switch_active_model(engine: sa.Engine, target: str, run_id: str | None = None) -> SwitchResult:
    """Make `target` active and the current active model retired, in one transaction of its own.

    Coverage is checked again inside the transaction, under the advisory lock and the registry rows'
    locks: a reader's statement sees the old model complete or the new one complete, never a mix.
    """
    with engine.begin() as conn:
        xact_lock(conn, Lock.REEMBEDDING)
        rows = {
            r.name: r.status
            for r in conn.execute(query("models/lock_embedding_models_for_switch"), {"name": target})
        }
        if target not in rows:
            raise CoverageError(f"model {target!r} is not registered; run the reembedding asset first")
        previous = next((name for name, status in rows.items() if status == "active"), None)
        cov = coverage(conn, target)
        if previous == target:
            return SwitchResult(target, previous, False, cov.total_chunks - cov.missing)
        if not cov.complete:
            raise CoverageError(
                f"{target} lacks vectors for {cov.missing} of {cov.total_chunks} chunks (e.g. chunk ids"
                f" {', '.join(map(str, cov.sample_missing))}); it stays `building` and readers keep {previous}"
            )
        conn.execute(query("models/retire_active_embedding_model"), {"name": target})
        conn.execute(query("models/activate_embedding_model"), {"name": target})
        conn.execute(
            query("models/record_embedding_model_switch"),
            {
                "from_model": previous,
                "to_model": target,
                "chunks_covered": cov.total_chunks,
                "run_id": run_id,
            },
        )
    return SwitchResult(target, previous, True, cov.total_chunks)


def retire_abandoned_builds(engine: sa.Engine, keep: str) -> list[str]:
    """Retire every `building` model but `keep` (the configured one), in a transaction of its own;
    returns their names."""
    with engine.begin() as conn:
        xact_lock(conn, Lock.REEMBEDDING)
        return list(conn.execute(query("models/retire_abandoned_embedding_builds"), {"keep": keep}).scalars())


def drop_retired_embeddings(
    engine: sa.Engine,
    grace_days: float,
    batch_size: int = DELETE_BATCH,
    log: Callable[[str], None] = lambda _m: None,
) -> CleanupResult:
    """Delete the vectors (and index) of models retired longer than `grace_days` ago, one transaction per
    bounded batch."""
    if grace_days < 0:
        raise ValueError(f"RETIRED_GRACE_DAYS must be zero or more, got {grace_days}")
    result = CleanupResult()
    with engine.begin() as conn:
        expired = conn.execute(
            query("models/select_retired_models_past_grace"), {"grace_days": grace_days}
        ).all()
    for model, dimensions in expired:
        # Without its index first, each batch below does not pay for index maintenance.
        drop_hnsw_index(engine, model, dimensions)
        deleted = 0
        with engine.connect() as conn:
            while True:
                with conn.begin():
                    xact_lock(conn, Lock.REEMBEDDING)
                    n = conn.execute(
                        query("models/delete_retired_embeddings_batch"),
                        {"model": model, "batch_size": batch_size},
                    ).rowcount
                    if n == 0:
                        conn.execute(query("models/mark_retired_embeddings_dropped"), {"model": model})
                        conn.execute(query("models/purge_model_deleted_vectors"), {"model": model})
                deleted += n
                if n == 0:
                    break
        log(f"dropped {deleted} vectors of {model}, retired past the {grace_days:g}-day grace period")
        result.deleted[model] = deleted
    return result


def purge_deleted_vectors(engine: sa.Engine, grace_days: float) -> int:
    """Delete the kept vectors of deleted chunks whose grace period is over, in a transaction of its own;
    returns how many."""
    if grace_days < 0:
        raise ValueError(f"DELETED_VECTOR_GRACE_DAYS must be zero or more, got {grace_days}")
    with engine.begin() as conn:
        purged: int = conn.execute(
            query("embeddings/purge_deleted_vectors"), {"grace_days": grace_days}
        ).rowcount
    return purged


def register_model(conn: sa.Connection, spec: ModelSpec) -> str:
    """Add the model to the registry (first use) in the caller's transaction; returns its status."""
    status: str = conn.execute(
        query("models/register_embedding_model"),
        {
            "name": spec.name,
            "provider": spec.provider,
            "model": spec.model,
            "dimensions": spec.dimensions,
            "price": spec.price_per_million_tokens,
        },
    ).scalar_one()
    return status
