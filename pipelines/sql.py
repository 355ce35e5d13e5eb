"""The one place SQL files are read from: `sql/queries/<name>.sql` and `sql/migrations/`."""

from __future__ import annotations

import functools
from pathlib import Path

import sqlalchemy as sa

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
MIGRATIONS_DIR = SQL_DIR / "migrations"


@functools.cache
def load_sql(name: str) -> str:
    path = SQL_DIR / "queries" / f"{name}.sql"
    if not path.is_file():
        raise FileNotFoundError(f"no SQL file named {name!r} under {path.parent}")
    return path.read_text(encoding="utf-8")


def query(name: str) -> sa.TextClause:
    """A named query as a bindable SQLAlchemy text clause."""
    return sa.text(load_sql(name))
