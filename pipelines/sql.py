"""The one place SQL files are read from: `sql/queries/<stage>/<verb>_<object>.sql` and `sql/migrations/`.

Two kinds of query file:
- bindable queries (`query`): `:name` parameters, run with `conn.execute(query(...), params)`;
- identifier templates (`composed`): `{name}` slots filled with `psycopg.sql` objects (identifiers,
  literals) and `%(name)s` parameters, run with `execute_composed`. A template is never `str.format`-ed.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from psycopg import sql
from sqlalchemy.util.typing import TupleAny

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
QUERIES_DIR = SQL_DIR / "queries"
MIGRATIONS_DIR = SQL_DIR / "migrations"
STAGES = (
    "sources",
    "chunks",
    "embeddings",
    "models",
    "hnsw",
    "metrics",
    "retention",
    "erasure",
    "alerts",
    "rate_limits",
    "batch_embeddings",
    "evaluation",
    "demo",
    "db",
    "retrieval",
)
_NAME = re.compile(r"^(?P<stage>[a-z]+(_[a-z]+)*)/[a-z]+(_[a-z0-9]+)+$")


@functools.cache
def load_sql(name: str) -> str:
    """The text of `sql/queries/<name>.sql`, `name` being `<stage>/<verb>_<object>`."""
    m = _NAME.match(name)
    if not m or m["stage"] not in STAGES:
        raise ValueError(f"SQL file name {name!r} must be <stage>/<verb>_<object> with a stage of {STAGES}")
    path = QUERIES_DIR / f"{name}.sql"
    if not path.is_file():
        raise FileNotFoundError(f"no SQL file named {name!r} under {QUERIES_DIR}")
    return path.read_text(encoding="utf-8")


def query(name: str) -> sa.TextClause:
    """A named query as a bindable SQLAlchemy text clause."""
    return sa.text(load_sql(name))


def composed(name: str, **parts: sql.Composable) -> sql.Composed:
    """A named identifier template with its `{slots}` filled by psycopg.sql objects (`sql.Identifier`,
    `sql.Literal`, ...), which quote them; a plain string is refused rather than pasted in."""
    for key, part in parts.items():
        if not isinstance(part, sql.Composable):
            raise TypeError(f"{name}: slot {key!r} must be a psycopg.sql object, got {type(part).__name__}")
    return sql.SQL(load_sql(name)).format(**parts)


def execute_composed(
    conn: sa.Connection, statement: sql.Composed, params: Mapping[str, Any] | None = None
) -> sa.CursorResult[*TupleAny]:
    """Run a composed statement through SQLAlchemy (its transaction handling, its result rows); its
    parameters are psycopg's `%(name)s` ones. With parameters, every `%` of the text is psycopg's: a
    statement with parameters takes identifiers only, never a `sql.Literal` that could hold one."""
    text = statement.as_string(conn.connection.driver_connection)
    if params is None:
        return conn.exec_driver_sql(text)
    return conn.exec_driver_sql(text, dict(params))


def execute_script(conn: sa.Connection, script: str) -> None:
    """Run a script of several statements (a migration) as it is: no parameters, so neither SQLAlchemy
    nor psycopg rewrites any of it."""
    conn.exec_driver_sql(script)
