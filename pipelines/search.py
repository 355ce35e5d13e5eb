"""Vector search over the active model's index: proof that what the pipeline built is usable
(`python -m location.search_cli "how do refunds work" -k 5`). It is semantic search when the model is a
neural one (e5, OpenAI's); with `local-hash-v1` it matches words and character n-grams only.

The query is embedded with the *active* model (the one readers use), which during a re-embedding may
differ from the configured one, and answered through that model's HNSW index.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from psycopg import sql

from pipelines.embedders import EmbedderFactory, embed_queries
from pipelines.hnsw import (
    EXACT_SCAN_SETTINGS,
    built_index,
    nearest_sql,
    set_local,
    vector_param,
)
from pipelines.lib.vector_index import IndexPlan, index_plan
from pipelines.models import active_model
from pipelines.sql import composed, execute_composed

MAX_K = 1000  # hnsw.ef_search's ceiling: an index scan cannot return more


class SearchError(RuntimeError):
    pass


@dataclass(frozen=True)
class SearchHit:
    chunk_id: int
    distance: float
    source: str
    source_key: str
    title: str | None
    chunk_index: int
    content: str
    # False when the model had no finished index (still building, below HNSW_MIN_ROWS, or never built) and the
    # search was exact.
    via_index: bool = True
    # The kind of index the search went through (VECTOR_INDEX_KIND of its build), None when exact.
    index_kind: str | None = None


def search_statement(plan: IndexPlan, *, exact: bool) -> sql.Composed:
    """The search query: hnsw/nearest_embeddings (the recall check's ranking) joined to the chunks' text."""
    return composed("hnsw/search_chunks_by_vector", nearest=nearest_sql(plan, exact=exact))


def search_by_vector(
    engine: sa.Engine, model: str, dimensions: int, vector: Any, k: int = 5, ef_search: int | None = None
) -> list[SearchHit]:
    """Top-k chunks of `model` nearest to `vector` (cosine): candidates through the model's finished index
    (whatever its kind) re-ranked by exact distance on the full vectors, or an exact scan while no index
    exists (the model is below HNSW_MIN_ROWS, or its build has not finished); each hit's `via_index` and
    `index_kind` say which. In a transaction of its own so that the planner settings end with it."""
    if not 1 <= k <= MAX_K:
        raise SearchError(f"k must be between 1 and {MAX_K}, got {k}")
    with engine.begin() as conn:
        index = built_index(conn, model, dimensions)
        plan = index.plan if index is not None else index_plan(model, dimensions)
        set_local(conn, EXACT_SCAN_SETTINGS if index is None else index.scan_settings(k, ef_search))
        rows = execute_composed(
            conn,
            search_statement(plan, exact=index is None),
            {
                "model": model,
                "query": vector_param(vector),
                "k": k,
                "candidates": k if index is None else index.candidates(k),
            },
        ).all()
    return [
        SearchHit(
            r.chunk_id,
            float(r.distance),
            r.source,
            r.source_key,
            r.title,
            r.chunk_index,
            r.content,
            index is not None,
            None if index is None else index.plan.kind,
        )
        for r in rows
    ]


def search(engine: sa.Engine, embedders: EmbedderFactory, text: str, k: int = 5) -> list[SearchHit]:
    """Embed `text` with the active model (its spec read from the registry) and return its k nearest
    chunks. No transaction stays open while the query is embedded."""
    if not text or not text.strip():
        raise SearchError("the search query is empty")
    with engine.begin() as conn:
        model = active_model(conn)
    if model is None:
        raise SearchError("no active embedding model: run the ingestion job (or `make run`) first")
    with embedders.open(model.spec()) as client:
        vector = embed_queries(client, [text])[0]
    return search_by_vector(engine, model.name, model.dimensions, vector, k)


def format_hits(hits: list[SearchHit], width: int = 160) -> str:
    lines = []
    if hits and not hits[0].via_index:
        lines.append(
            "(exact search: the model has no finished vector index yet, or too few vectors to need one)"
        )
    for rank, h in enumerate(hits, 1):
        snippet = " ".join(h.content.split())
        snippet = snippet if len(snippet) <= width else snippet[: width - 1] + "…"
        where = f"{h.source}:{h.source_key}#{h.chunk_index}"
        lines.append(f"{rank:>2}. {1 - h.distance:.3f}  {where}  {h.title or ''}\n    {snippet}")
    return "\n".join(lines)
