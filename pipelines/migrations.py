"""Forward-only SQL migrations: ordered, one transaction each, under an advisory lock, checksummed.

Applying them is the schema owner's step (`make migrate`, i.e. `python -m location.migrate_cli`);
a process connected as a role without DDL rights only checks that the schema is recent enough.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from pipelines.locks import Lock, session_lock
from pipelines.sql import MIGRATIONS_DIR, execute_script, query

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


# Custom settings a migration may read with current_setting(name, true): the names of the roles migration
# 0009 creates and grants to. The code location fills them from APP_ROLE / ANALYST_ROLE.
DEFAULT_SETTINGS: Mapping[str, str] = {"rag.app_role": "rag_app", "rag.analyst_role": "rag_analyst"}


class MigrationError(RuntimeError):
    pass


class SchemaBehindError(MigrationError):
    """The database lacks migrations this code needs, and this connection may not (or must not) apply them."""


class CannotMigrateError(MigrationError):
    """The connected role may not apply migrations (it does not own the schema), or lacks a right one needs."""


# Extensions the migrations create, with what a person does when the server has none.
REQUIRED_EXTENSIONS: Mapping[str, str] = {
    "vector": "install pgvector on the database server (https://github.com/pgvector/pgvector#installation,"
    " e.g. `apt install postgresql-{major}-pgvector`; on a managed Postgres, enable it in the provider's"
    " settings), or leave DATABASE_URL unset to use the embedded server, which has it",
}


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

    `settings` (default: DEFAULT_SETTINGS) are set for each migration's transaction only.
    """
    migrations = discover(directory)
    settings = DEFAULT_SETTINGS if settings is None else settings
    applied_now: list[str] = []
    # A session-level lock, held across the per-migration transactions below.
    with engine.connect() as conn, session_lock(conn, Lock.MIGRATION):
        with conn.begin():
            conn.execute(query("db/create_schema_migrations"))
        done: dict[str, str] = {r[0]: r[1] for r in conn.execute(query("db/select_applied_migrations"))}
        conn.commit()
        _verify_checksums(done, migrations)
        pending = [m for m in migrations if m.name not in done]
        if pending:
            _require_extensions(conn)
        for m in pending:
            try:
                with conn.begin():
                    for name, value in settings.items():
                        conn.execute(query("db/set_local_setting"), {"name": name, "value": value})
                    execute_script(conn, m.sql)
                    conn.execute(
                        query("db/insert_applied_migration"), {"name": m.name, "checksum": m.checksum}
                    )
            except sa.exc.DBAPIError as exc:
                if getattr(exc.orig, "sqlstate", None) != INSUFFICIENT_PRIVILEGE:
                    raise
                # One line naming the right that is missing, rather than the migration's SQL.
                user, database = conn.execute(query("db/select_current_role")).one()
                raise CannotMigrateError(
                    f"migration {m.name} needs a right role {user} does not have in database {database}:"
                    f" {exc.orig.diag.message_primary}"  # type: ignore[union-attr]
                    + (f" ({exc.orig.diag.message_hint})" if exc.orig.diag.message_hint else "")  # type: ignore[union-attr]
                    + "; docs/security.md shows the one-time setup an administrator does"
                ) from None
            applied_now.append(m.name)
    return applied_now


INSUFFICIENT_PRIVILEGE = "42501"


def _require_extensions(conn: sa.Connection) -> None:
    """Refuse, in one line, a server that lacks an extension the migrations create: CREATE EXTENSION would
    fail deep inside a migration."""
    with conn.begin():
        missing = conn.execute(
            query("db/select_missing_extensions"), {"names": list(REQUIRED_EXTENSIONS)}
        ).all()
    if missing:
        name, major = missing[0]
        raise MigrationError(
            f"the PostgreSQL server has no `{name}` extension (not installed in this database and not"
            f" available to install): {REQUIRED_EXTENSIONS[name].format(major=major)}"
        )


def require_migrator(engine: sa.Engine) -> None:
    """Raise CannotMigrateError unless the connected role may apply migrations (see may_migrate)."""
    if not may_migrate(engine):
        with engine.connect() as conn:
            user, database = conn.execute(query("db/select_current_role")).one()
        raise CannotMigrateError(
            f"role {user} cannot migrate database {database}: migrations are the schema owner's step; run"
            " `make migrate` with DATABASE_URL naming the role that owns the schema (docs/security.md)"
        )


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
        return bool(conn.execute(query("db/select_may_migrate")).scalar())


def check_schema(engine: sa.Engine, directory: Path = MIGRATIONS_DIR) -> str | None:
    """Read-only: raise SchemaBehindError unless every migration of this code has been applied (with the
    same checksum); return the latest migration applied."""
    migrations = discover(directory)
    needed = migrations[-1].name[:4] if migrations else None
    hint = "run `make migrate` (python -m location.migrate_cli) as the schema owner"
    with engine.connect() as conn:
        if not conn.execute(query("db/select_schema_migrations_exists")).scalar():
            raise SchemaBehindError(f"the database has no schema yet, this code needs {needed}: {hint}")
        try:
            done: dict[str, str] = {r[0]: r[1] for r in conn.execute(query("db/select_applied_migrations"))}
        except sa.exc.ProgrammingError as exc:
            # Migration 0009 grants the application and analyst roles SELECT on it: a schema older than that
            # is the likely reason, and migrating is the cure either way.
            raise SchemaBehindError(
                f"cannot read schema_migrations as this role ({exc.orig.__class__.__name__}): the schema is"
                f" older than 0009, which grants it to the application and analyst roles, or this role is"
                f" not one of them; this code needs {needed}: {hint}"
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
