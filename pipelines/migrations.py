"""Forward-only SQL migrations: ordered, one transaction each, under an advisory lock, checksummed.

Applying them is the schema owner's step (`make migrate`, i.e. `python -m pipelines.migrations`);
a process connected as a role without DDL rights only checks that the schema is recent enough.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from pipelines.sql import MIGRATIONS_DIR

# Any constant works; it only has to be the same in every process that migrates this database.
MIGRATION_LOCK_KEY = 7_300_120_001
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


# Custom settings a migration may read with current_setting(name, true), and the environment variables
# that fill them: the names of the roles migration 0009 creates and grants to.
SETTINGS_FROM_ENV = {
    "rag.app_role": ("APP_ROLE", "rag_app"),
    "rag.analyst_role": ("ANALYST_ROLE", "rag_analyst"),
}


class MigrationError(RuntimeError):
    pass


class SchemaBehindError(MigrationError):
    """The database lacks migrations this code needs, and this connection may not (or must not) apply them."""


def settings_from_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    env = os.environ if environ is None else environ
    return {name: env.get(var) or default for name, (var, default) in SETTINGS_FROM_ENV.items()}


@dataclass(frozen=True)
class Migration:
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        if not _NAME.match(path.name):
            raise MigrationError(f"migration file {path.name!r} must be named NNNN_lower_snake.sql")
        found.append(Migration(path.name, path.read_text(encoding="utf-8")))
    numbers = [m.name[:4] for m in found]
    dupes = sorted({n for n in numbers if numbers.count(n) > 1})
    if dupes:
        raise MigrationError(f"two migrations share the number(s) {', '.join(dupes)}")
    return found


def apply_migrations(
    engine: sa.Engine, directory: Path = MIGRATIONS_DIR, settings: Mapping[str, str] | None = None
) -> list[str]:
    """Apply pending migrations; return the names applied. Safe to call from many processes at once.

    `settings` (default: from the environment, see SETTINGS_FROM_ENV) are set for each migration's
    transaction only.
    """
    migrations = discover(directory)
    settings = settings_from_env() if settings is None else settings
    applied_now: list[str] = []
    with engine.connect() as conn:
        # A session-level lock, held across the per-migration transactions below.
        conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
        conn.commit()
        try:
            with conn.begin():
                conn.execute(
                    sa.text(
                        "CREATE TABLE IF NOT EXISTS schema_migrations ("
                        " name text PRIMARY KEY, checksum text NOT NULL,"
                        " applied_at timestamptz NOT NULL DEFAULT now())"
                    )
                )
            done: dict[str, str] = dict(
                conn.execute(sa.text("SELECT name, checksum FROM schema_migrations")).all()
            )
            conn.commit()
            _verify_checksums(done, migrations)
            for m in migrations:
                if m.name in done:
                    continue
                with conn.begin():
                    for name, value in settings.items():
                        conn.execute(sa.text("SELECT set_config(:n, :v, true)"), {"n": name, "v": value})
                    conn.exec_driver_sql(m.sql)
                    conn.execute(
                        sa.text("INSERT INTO schema_migrations (name, checksum) VALUES (:n, :c)"),
                        {"n": m.name, "c": m.checksum},
                    )
                applied_now.append(m.name)
        finally:
            conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY})
            conn.commit()
    return applied_now


def _verify_checksums(done: Mapping[str, str], migrations: list[Migration]) -> None:
    for m in migrations:
        if m.name in done and done[m.name] != m.checksum:
            raise MigrationError(
                f"migration {m.name} was applied with checksum {done[m.name][:12]}… but the file"
                f" now has {m.checksum[:12]}…; applied migrations are immutable, add a new one"
            )


def may_migrate(engine: sa.Engine) -> bool:
    """Whether the connected role can apply migrations: it owns schema_migrations (through membership
    or as a superuser), or the table does not exist yet and the role may create tables in the schema."""
    with engine.connect() as conn:
        return bool(
            conn.execute(
                sa.text(
                    "SELECT CASE WHEN to_regclass('schema_migrations') IS NULL"
                    " THEN has_schema_privilege(current_schema(), 'CREATE')"
                    " ELSE pg_has_role((SELECT relowner FROM pg_class"
                    "                   WHERE oid = to_regclass('schema_migrations')), 'USAGE') END"
                )
            ).scalar()
        )


def check_schema(engine: sa.Engine, directory: Path = MIGRATIONS_DIR) -> str | None:
    """Read-only: raise SchemaBehindError unless every migration of this code has been applied (with the
    same checksum); return the latest migration applied."""
    migrations = discover(directory)
    needed = migrations[-1].name[:4] if migrations else None
    hint = "run `make migrate` (python -m pipelines.migrations) as the schema owner"
    with engine.connect() as conn:
        if conn.execute(sa.text("SELECT to_regclass('schema_migrations')")).scalar() is None:
            raise SchemaBehindError(f"the database has no schema yet, this code needs {needed}: {hint}")
        try:
            done: dict[str, str] = dict(
                conn.execute(sa.text("SELECT name, checksum FROM schema_migrations")).all()
            )
        except sa.exc.ProgrammingError as exc:
            raise SchemaBehindError(
                f"cannot read schema_migrations as this role ({exc.orig.__class__.__name__}); grant it SELECT"
            ) from None
    _verify_checksums(done, migrations)
    latest = max(done) if done else None
    missing = [m.name for m in migrations if m.name not in done]
    if missing:
        at = latest[:4] if latest else "none"
        raise SchemaBehindError(
            f"database schema is at {at}, this code needs {needed} (missing: {', '.join(missing)}): {hint}"
        )
    return latest


def main(argv: list[str] | None = None) -> int:
    """Apply pending migrations to DATABASE_URL (or the embedded server) as the connected role."""
    import argparse

    from pipelines.db import DEFAULT_DATA_DIR, embedded_server_url, mask_url, normalise_url

    parser = argparse.ArgumentParser(prog="python -m pipelines.migrations", description=main.__doc__)
    parser.add_argument("--check", action="store_true", help="only check that the schema is up to date")
    args = parser.parse_args(argv)
    url = normalise_url(os.environ.get("DATABASE_URL") or embedded_server_url(DEFAULT_DATA_DIR))
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        if args.check:
            print(f"{mask_url(url)}: schema at {check_schema(engine)}")
            return 0
        applied = apply_migrations(engine)
        print(f"{mask_url(url)}: applied {', '.join(applied) if applied else 'nothing (up to date)'}")
        return 0
    except MigrationError as exc:
        print(f"error: {exc}")
        return 1
    finally:
        engine.dispose()


if __name__ == "__main__":
    raise SystemExit(main())
