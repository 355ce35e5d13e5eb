"""Forward-only SQL migrations: ordered, one transaction each, under an advisory lock, checksummed."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from pipelines.sql import MIGRATIONS_DIR

# Any constant works; it only has to be the same in every process that migrates this database.
MIGRATION_LOCK_KEY = 7_300_120_001
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
            for m in migrations:
                if m.name in done:
                    if done[m.name] != m.checksum:
                        raise MigrationError(
                            f"migration {m.name} was applied with checksum {done[m.name][:12]}… but the file"
                            f" now has {m.checksum[:12]}…; applied migrations are immutable, add a new one"
                        )
                    continue
                with conn.begin():
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
