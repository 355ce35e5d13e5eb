"""`make migrate`: apply pending migrations to DATABASE_URL (or the embedded server) as the connected role.

python -m location.migrate_cli          # apply
python -m location.migrate_cli --check  # only report the schema version
"""

from __future__ import annotations

import argparse
import os

import sqlalchemy as sa

from location.resources import role_settings
from pipelines.db import DEFAULT_DATA_DIR, embedded_server_url, mask_url, normalise_url
from pipelines.migrations import MigrationError, apply_migrations, check_schema, require_migrator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m location.migrate_cli", description=__doc__)
    parser.add_argument("--check", action="store_true", help="only check that the schema is up to date")
    args = parser.parse_args(argv)
    url = normalise_url(os.environ.get("DATABASE_URL") or embedded_server_url(DEFAULT_DATA_DIR))
    roles = role_settings()
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        if args.check:
            print(f"{mask_url(url)}: schema at {check_schema(engine)}")
            return 0
        require_migrator(engine)
        applied = apply_migrations(
            engine, settings={"rag.app_role": roles["app_role"], "rag.analyst_role": roles["analyst_role"]}
        )
        print(f"{mask_url(url)}: applied {', '.join(applied) if applied else 'nothing (up to date)'}")
        return 0
    except MigrationError as exc:
        print(f"error: {exc}")
        return 1
    finally:
        engine.dispose()


if __name__ == "__main__":
    raise SystemExit(main())
