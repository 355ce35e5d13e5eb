"""Semantic search over the active model's index: proof that what the pipeline built is usable.

    python -m pipelines.search "how do refunds work" -k 5

The query is embedded with the *active* model (the one readers use), which during a re-embedding may
differ from the configured one, and answered through that model's HNSW index.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

import numpy as np
import sqlalchemy as sa

from pipelines.hnsw import INDEX_SCAN_SETTINGS, ef_search_for, set_local, vector_type_sql
from pipelines.lib.vector_index import index_plan
from pipelines.models import active_model, embedder_for_model
from pipelines.sql import composed, execute_composed
from resources.embedders import EmbedderResource

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


def search_by_vector(
    conn: sa.Connection, model: str, dimensions: int, vector, k: int = 5, ef_search: int | None = None
) -> list[SearchHit]:
    """Top-k chunks of `model` nearest to `vector` (cosine), through the model's HNSW index; in a transaction
    of its own (an open one is committed first) so that the index-only settings end with it."""
    if not 1 <= k <= MAX_K:
        raise SearchError(f"k must be between 1 and {MAX_K}, got {k}")
    plan = index_plan(model, dimensions)
    if conn.in_transaction():
        conn.commit()
    with conn.begin():
        set_local(conn, {**INDEX_SCAN_SETTINGS, "hnsw.ef_search": ef_search_for(k, ef_search)})
        rows = execute_composed(
            conn,
            composed("hnsw/search_chunks_by_vector", vector_type=vector_type_sql(plan)),
            {"model": model, "query": np.asarray(vector, dtype=np.float32), "k": k},
        ).all()
    return [
        SearchHit(r.chunk_id, float(r.distance), r.source, r.source_key, r.title, r.chunk_index, r.content)
        for r in rows
    ]


def search(conn: sa.Connection, embedder: EmbedderResource, text: str, k: int = 5) -> list[SearchHit]:
    """Embed `text` with the active model and return its k nearest chunks."""
    if not text or not text.strip():
        raise SearchError("the search query is empty")
    model = active_model(conn)
    if conn.in_transaction():
        conn.commit()
    if model is None:
        raise SearchError("no active embedding model: run the ingestion job (or `make run`) first")
    with embedder_for_model(embedder, model).open() as client:
        vector = client.embed([text]).vectors[0]
    return search_by_vector(conn, model.name, model.dimensions, vector, k)


def format_hits(hits: list[SearchHit], width: int = 160) -> str:
    lines = []
    for rank, h in enumerate(hits, 1):
        snippet = " ".join(h.content.split())
        snippet = snippet if len(snippet) <= width else snippet[: width - 1] + "…"
        where = f"{h.source}:{h.source_key}#{h.chunk_index}"
        lines.append(f"{rank:>2}. {1 - h.distance:.3f}  {where}  {h.title or ''}\n    {snippet}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.search", description=__doc__.splitlines()[0])
    parser.add_argument("query", help="the text to search for")
    parser.add_argument("-k", type=int, default=5, help="how many chunks to return (default 5)")
    args = parser.parse_args(argv)

    import dagster as dg

    from pipelines.location.resources import build_resources

    # build_resources() holds dg.EnvVar values; Dagster resolves them when it initialises the resources.
    with dg.build_resources(build_resources()) as resources, resources.postgres.connect() as conn:
        try:
            hits = search(conn, resources.embedder, args.query, args.k)
        except SearchError as exc:
            print(f"search: {exc}", file=sys.stderr)
            return 2
        model = active_model(conn)
    print(f"model {model.name if model else '?'} — top {len(hits)} of k={args.k}")
    print(format_hits(hits) if hits else "no chunks are embedded yet")
    return 0


if __name__ == "__main__":
    sys.exit(main())
