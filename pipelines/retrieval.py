"""Retrieval for applications: the database's retrieval contract (migration 0017) from Python.

    from pipelines.retrieval import active_model, search

    model = active_model(engine)                      # embed the query with this model
    hits = search(engine, vector, k=5, model=model.name, source_type="markdown")

`conn` is a SQLAlchemy engine or connection, or a psycopg connection (`search_async` takes a psycopg
`AsyncConnection`); the role only needs EXECUTE on the contract's functions (the application role `rag_app`
has it). The work is all in the database: `retrieve_chunks` goes through the model's HNSW index with
iterative scans, re-ranks the candidates by exact cosine distance and falls back to an exact scan when a
filter leaves the index too few rows (docs/querying.md). Nothing here imports Dagster.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
import sqlalchemy as sa

from pipelines.sql import load_sql

MAX_K = 1000
SOURCE_TYPES = ("markdown", "table")


class RetrievalError(ValueError):
    """Bad input (ours or the database's verdict on it): the message names the argument and the reason."""


@dataclass(frozen=True)
class ActiveModel:
    name: str
    dimensions: int
    provider: str
    # The provider's own model id (`name` carries `@dimensions` when the size is not the model's native one).
    provider_model: str


@dataclass(frozen=True)
class RetrievedChunk:
    chunk_id: int
    document_key: str
    chunk_index: int
    title: str | None
    heading_path: tuple[str, ...]
    content: str
    similarity: float
    source: str
    metadata: dict[str, Any]


Conn = sa.Engine | sa.Connection | psycopg.Connection[Any]


def _vector_values(query_vector: Any) -> list[float]:
    try:
        vec = np.asarray(query_vector, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise RetrievalError(f"query_vector is not a sequence of numbers: {exc}") from None
    if vec.ndim != 1 or vec.size == 0:
        raise RetrievalError(f"query_vector must be a non-empty list of numbers, got shape {vec.shape}")
    bad = np.flatnonzero(~np.isfinite(vec))
    if bad.size:
        raise RetrievalError(f"query_vector holds {vec[bad[0]]} at position {bad[0]}: only finite numbers")
    if not vec.any():
        raise RetrievalError("query_vector is all zeros: it has no direction to compare")
    # Rounded to float32 first, as pgvector stores them: the binary float8 array carries them bit for bit.
    return vec.astype(np.float32).astype(np.float64).tolist()


def _params(
    query_vector: Any,
    k: int,
    model: str,
    source: str | None,
    source_type: str | None,
    metadata: Mapping[str, Any] | None,
    min_similarity: float | None,
) -> dict[str, Any]:
    if not isinstance(model, str) or not model:
        raise RetrievalError("model is required: the name of the model the query was embedded with")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise RetrievalError(f"k must be a whole number between 1 and {MAX_K}, got {k!r}")
    if source_type is not None and source_type not in SOURCE_TYPES:
        raise RetrievalError(f"source_type must be one of {', '.join(SOURCE_TYPES)}, got {source_type!r}")
    if metadata is not None and not isinstance(metadata, Mapping):
        raise RetrievalError(f"metadata must be a mapping (matched with @>), got {type(metadata).__name__}")
    if min_similarity is not None and not (
        isinstance(min_similarity, int | float)
        and math.isfinite(min_similarity)
        and -1 <= min_similarity <= 1
    ):
        raise RetrievalError(f"min_similarity must be a number between -1 and 1, got {min_similarity!r}")
    return {
        "query": _vector_values(query_vector),
        "model": model,
        "k": k,
        "source": source,
        "source_type": source_type,
        "metadata": None if metadata is None else json.dumps(dict(metadata)),
        "min_similarity": None if min_similarity is None else float(min_similarity),
    }


def _rows(conn: Conn, text: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
    try:
        if isinstance(conn, sa.Engine):
            with conn.connect() as c:
                return [tuple(r) for r in c.exec_driver_sql(text, params or {})]
        if isinstance(conn, sa.Connection):
            return [tuple(r) for r in conn.exec_driver_sql(text, params or {})]
        return list(conn.execute(text, params).fetchall())
    except sa.exc.DBAPIError as exc:
        _reraise(exc.orig)
        raise
    except psycopg.DataError as exc:
        _reraise(exc)
        raise


def _reraise(exc: BaseException | None) -> None:
    # The contract's own refusals (SQLSTATE 22023) carry a message naming the argument; pgvector's refusals
    # of a malformed vector (NaN, empty) are data exceptions too.
    if isinstance(exc, psycopg.DataError):
        raise RetrievalError(exc.diag.message_primary or str(exc)) from exc


def _chunk(row: Sequence[Any]) -> RetrievedChunk:
    chunk_id, key, index, title, heading_path, content, similarity, source, metadata = row
    return RetrievedChunk(
        chunk_id, key, index, title, tuple(heading_path or ()), content, float(similarity), source, metadata
    )


def _model(rows: list[tuple[Any, ...]]) -> ActiveModel | None:
    return ActiveModel(*rows[0]) if rows else None


def active_model(conn: Conn) -> ActiveModel | None:
    """The model to embed queries with (None before the first ingestion). It changes at a model switch:
    pass the name you embedded with to `search`, which keeps answering for a just-retired model."""
    return _model(_rows(conn, load_sql("retrieval/select_active_embedding_model")))


def search(
    conn: Conn,
    query_vector: Any,
    k: int = 5,
    *,
    model: str,
    source: str | None = None,
    source_type: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    min_similarity: float | None = None,
) -> list[RetrievedChunk]:
    """The k chunks nearest to `query_vector` (cosine similarity, highest first) among the vectors of `model`,
    the model the query was embedded with.

    Filters: `source` an exact source (`local` for the markdown tree, `table:<name>` for a SOURCE_TABLES
    table), `source_type` `markdown` or `table`, `metadata` a mapping the document's metadata must contain
    (JSONB `@>`, e.g. `{"lang": "ja"}`), `min_similarity` drops hits below it (so fewer than k may return).
    Raises RetrievalError for bad input: an empty, NaN or all-zero vector, a wrong dimension, an unknown or
    no longer served model, k outside 1..1000, a malformed filter."""
    params = _params(query_vector, k, model, source, source_type, metadata, min_similarity)
    return [_chunk(r) for r in _rows(conn, load_sql("retrieval/retrieve_chunks"), params)]


def explain(
    conn: Conn,
    query_vector: Any,
    k: int = 5,
    *,
    model: str,
    source: str | None = None,
    source_type: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    min_similarity: float | None = None,
) -> str:
    """The plan of the statement `search` runs for these arguments (the database's explain_retrieve_chunks)."""
    params = _params(query_vector, k, model, source, source_type, metadata, min_similarity)
    return "\n".join(r[0] for r in _rows(conn, load_sql("retrieval/explain_retrieve_chunks"), params))


async def active_model_async(conn: psycopg.AsyncConnection[Any]) -> ActiveModel | None:
    """`active_model` over a psycopg AsyncConnection."""
    cur = await conn.execute(load_sql("retrieval/select_active_embedding_model"))
    return _model(list(await cur.fetchall()))


async def search_async(
    conn: psycopg.AsyncConnection[Any],
    query_vector: Any,
    k: int = 5,
    *,
    model: str,
    source: str | None = None,
    source_type: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    min_similarity: float | None = None,
) -> list[RetrievedChunk]:
    """`search` over a psycopg AsyncConnection."""
    params = _params(query_vector, k, model, source, source_type, metadata, min_similarity)
    try:
        cur = await conn.execute(load_sql("retrieval/retrieve_chunks"), params)
        rows = await cur.fetchall()
    except psycopg.DataError as exc:
        _reraise(exc)
        raise
    return [_chunk(r) for r in rows]
