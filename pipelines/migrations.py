"""Forward-only SQL migrations: ordered, one transaction each, under an advisory lock, checksummed."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from pipelines.locks import Lock, session_lock
from pipelines.sql import MIGRATIONS_DIR, execute_script, query

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class MigrationError(RuntimeError):
    pass


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


def apply_migrations(engine: sa.Engine, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations; return the names applied. Safe to call from many processes at once."""
    migrations = discover(directory)
    applied_now: list[str] = []
    # A session-level lock, held across the per-migration transactions below.
    with engine.connect() as conn, session_lock(conn, Lock.MIGRATION):
        with conn.begin():
            conn.execute(query("db/create_schema_migrations"))
        done = dict(conn.execute(query("db/select_applied_migrations")).all())
        conn.commit()
        for m in migrations:
            if m.name in done:
                if done[m.name] != m.checksum:
                    raise MigrationError(
                        f"migration {m.name} was applied with checksum {done[m.name][:12]}… but the file"
                        f" now has {m.checksum[:12]}…; applied migrations are immutable, add a new one"
                    )
                continue
            with conn.begin():
                execute_script(conn, m.sql)
                conn.execute(query("db/insert_applied_migration"), {"name": m.name, "checksum": m.checksum})
            applied_now.append(m.name)
    return applied_now
