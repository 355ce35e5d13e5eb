"""DAGSTER_HOME for `make run`, `make ui` and the CLI targets: its dagster.yaml and its storage, created
once, up front, under a file lock.

Dagster creates a SQLite instance's storage (runs, event logs, schedules) when a process first opens the
instance, with no lock between processes: two `make run` (or two `dagster job execute`) started at once on a
fresh home can both create the tables and stamp their alembic revisions, which leaves the schedule storage
with two heads, and every later run on that home then fails before it starts. Under the lock the first
starter creates it all and the others find it made.

python -m location.dagster_home   # what the Makefile's DAGSTER_HOME set-up runs
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import dagster as dg
from filelock import FileLock

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LOCAL_CONFIG = PROJECT_ROOT / "deploy" / "dagster.local.yaml"
LOCK_NAME = ".setup.lock"


def dagster_home() -> Path:
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        raise SystemExit("DAGSTER_HOME is not set (the Makefile sets it to .dagster_home in the repository)")
    return Path(home)


def prepared_instance(home: Path | None = None, *, replace_config: bool = False) -> dg.DagsterInstance:
    """The instance of `home` (default DAGSTER_HOME), its dagster.yaml written from deploy/dagster.local.yaml
    when missing (or when `replace_config`) and its storage created, while no other starter does the same."""
    home = (home or dagster_home()).resolve()
    home.mkdir(parents=True, exist_ok=True)
    with FileLock(home / LOCK_NAME):
        config = home / "dagster.yaml"
        if replace_config or not config.exists():
            # Written whole, then renamed: a process opening the instance never reads half a file.
            partial = home / "dagster.yaml.partial"
            shutil.copyfile(LOCAL_CONFIG, partial)
            os.replace(partial, config)
        return dg.DagsterInstance.from_config(str(home))


def main() -> None:
    # The Makefile runs this when deploy/dagster.local.yaml is newer than the home's copy: replace it.
    prepared_instance(replace_config=True).dispose()


if __name__ == "__main__":
    main()
