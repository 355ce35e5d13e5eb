"""Search the active model's vectors from the command line, through the application's retrieval contract:

    python -m location.search_cli "how do refunds work" -k 5 [--source-type markdown] [--json]

A thin wrapper over pipelines.retrieval: embed the query with the active model (or `--model`), call
`retrieve_chunks` in the database, print. It reads DATABASE_URL (else the embedded server), OPENAI_API_KEY
and OPENAI_BASE_URL, and imports neither Dagster nor the code location, so a query costs what the
database and the embedding take.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from typing import Any


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object, got {type(value).__name__}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m location.search_cli", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("query", help="the text to search for")
    parser.add_argument("-k", type=int, default=5, help="how many chunks to return (default 5)")
    parser.add_argument(
        "--model",
        help="embed with this registered model (default: the active one); a retired model is served"
        " until its grace period ends",
    )
    parser.add_argument("--source", help="only this source: `local` (the markdown tree) or `table:<name>`")
    parser.add_argument("--source-type", choices=["markdown", "table"], help="only this kind of source")
    parser.add_argument(
        "--metadata",
        type=_json_object,
        help='JSON object the document metadata must contain: \'{"lang": "ja"}\'',
    )
    parser.add_argument("--min-similarity", type=float, help="drop hits below this cosine similarity")
    parser.add_argument("--json", action="store_true", help="one JSON object: the model and the hits")
    return parser


def _spec(engine: Any, name: str | None) -> Any:
    """The model to embed with: the active one (through the contract), or a registered one by name (read
    from the registry: the pipeline role's view)."""
    from pipelines import retrieval
    from pipelines.embedders import ModelSpec
    from pipelines.models import get_model

    if name is None:
        active = retrieval.active_model(engine)
        if active is None:
            raise retrieval.RetrievalError(
                "no active embedding model: run the ingestion job (or `make run`) first"
            )
        return ModelSpec(active.name, active.provider, active.provider_model, active.dimensions, 0.0)
    with engine.connect() as conn:
        registered = get_model(conn, name)
    if registered is None:
        raise retrieval.RetrievalError(f"unknown embedding model {name!r}")
    return registered.spec()


def _format(hits: list[Any], width: int = 160) -> str:
    lines = []
    for rank, h in enumerate(hits, 1):
        snippet = " ".join(h.content.split())
        snippet = snippet if len(snippet) <= width else snippet[: width - 1] + "…"
        where = f"{h.source}:{h.document_key}#{h.chunk_index}"
        lines.append(f"{rank:>2}. {h.similarity:.3f}  {where}  {h.title or ''}\n    {snippet}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not args.query.strip():
        print("search: the search query is empty", file=sys.stderr)
        return 2
    from pipelines import retrieval
    from pipelines.db import env_engine
    from pipelines.embedders import EmbedderFactory, describe_model, embed_queries

    engine = env_engine()
    try:
        spec = _spec(engine, args.model)
        factory = EmbedderFactory(
            api_key=os.environ.get("OPENAI_API_KEY"), base_url=os.environ.get("OPENAI_BASE_URL")
        )
        with factory.open(spec) as embedder:
            vector = embed_queries(embedder, [args.query])[0]
        hits = retrieval.search(
            engine,
            vector,
            args.k,
            model=spec.name,
            source=args.source,
            source_type=args.source_type,
            metadata=args.metadata,
            min_similarity=args.min_similarity,
        )
    except retrieval.RetrievalError as exc:
        print(f"search: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"model": spec.name, "hits": [asdict(h) for h in hits]}, ensure_ascii=False))
        return 0
    print(f"model {spec.name} ({describe_model(spec.provider)}) — top {len(hits)} of k={args.k}")
    print(_format(hits) if hits else "no chunks match")
    return 0


if __name__ == "__main__":
    sys.exit(main())
