"""Search the active model's index from the command line:

    python -m location.search_cli "how do refunds work" -k 5

Resources are built from the environment, like the code location's.
"""

from __future__ import annotations

import argparse
import sys

import dagster as dg

from location.resources import build_resources
from pipelines.embedders import describe_model
from pipelines.models import active_model
from pipelines.search import SearchError, format_hits, search


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m location.search_cli", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("query", help="the text to search for")
    parser.add_argument("-k", type=int, default=5, help="how many chunks to return (default 5)")
    args = parser.parse_args(argv)

    # build_resources() holds dg.EnvVar values; Dagster resolves them when it initialises the resources.
    with dg.build_resources(build_resources()) as resources:
        engine = resources.postgres.engine
        try:
            hits = search(engine, resources.embedder.factory(engine), args.query, args.k)
        except SearchError as exc:
            print(f"search: {exc}", file=sys.stderr)
            return 2
        with engine.begin() as conn:
            model = active_model(conn)
    kind = f" ({describe_model(model.provider)})" if model else ""
    print(f"model {model.name if model else '?'}{kind} — top {len(hits)} of k={args.k}")
    print(format_hits(hits) if hits else "no chunks are embedded yet")
    return 0


if __name__ == "__main__":
    sys.exit(main())
