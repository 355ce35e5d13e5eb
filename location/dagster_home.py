"""DAGSTER_HOME for `make run`, `make ui` and the CLI targets: its dagster.yaml and its storage, created
once, up front, under a file lock; and runs whose processes died marked failed.

Dagster creates a SQLite instance's storage (runs, event logs, schedules) when a process first opens the
instance, with no lock between processes: two `make run` (or two `dagster job execute`) started at once on a
fresh home can both create the tables and stamp their alembic revisions, which leaves the schedule storage
with two heads, and every later run on that home then fails before it starts. Under the lock the first
starter creates it all and the others find it made.

A run executed by `dagster job execute` (what `make metrics` and `make erase` run) or by `make run` lives in
the process that started it. Killed with SIGKILL (or by the OOM killer), that process records nothing and
the run stays STARTED for ever: Dagster's run monitoring watches launched runs only. The processes a run
executes in are in its event log (the executor's and each step process's pid); on a SQLite home every one
of them ran on this machine, so a STARTED run none of whose processes is alive any more is dead, and is
reported failed through Dagster's own events.

python -m location.dagster_home                   # before `make ui`, `make metrics`, `make erase`
python -m location.dagster_home --replace-config  # the Makefile's DAGSTER_HOME set-up
"""

from __future__ import annotations

import argparse
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import psutil
from dagster._core.storage.runs.sqlite import SqliteRunStorage
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


def _run_processes(instance: dg.DagsterInstance, run_id: str) -> Iterator[tuple[int, float]]:
    """(pid, when recorded) of every process the run's events name: the executor's, each step process's."""
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        data = entry.dagster_event.event_specific_data if entry.dagster_event else None
        pid = getattr(data, "metadata", {}).get("pid")
        if pid is not None:
            yield int(pid.value), entry.timestamp


def _alive(pid: int, recorded_at: float) -> bool:
    """Whether the process recorded at `recorded_at` still runs: a process with its pid that started after
    then is another one (pids are reused)."""
    try:
        return psutil.Process(pid).create_time() <= recorded_at + 1
    except psutil.NoSuchProcess:
        return False


def fail_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Report failed every STARTED run of a SQLite home whose recorded processes are all gone; their ids.
    A run with no process recorded yet (it is starting) is left alone, as is any other storage's: there a
    run may run on another machine, and run monitoring covers the launched runs of a deployment."""
    if not isinstance(instance.run_storage, SqliteRunStorage):
        return []
    failed = []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
        processes = dict(_run_processes(instance, run.run_id))
        if not processes or any(_alive(pid, at) for pid, at in processes.items()):
            continue
        pids = ", ".join(map(str, sorted(processes)))
        instance.report_run_failed(
            run,
            f"The run's process(es) ({pids}) ended without recording the run's end (killed, or the machine"
            " stopped): marked failed by the next run on this DAGSTER_HOME.",
        )
        failed.append(run.run_id)
    return failed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m location.dagster_home", description=__doc__)
    parser.add_argument("--replace-config", action="store_true", help="write dagster.yaml again")
    args = parser.parse_args(argv)
    with prepared_instance(replace_config=args.replace_config) as instance:
        for run_id in fail_dead_runs(instance):
            print(f"run {run_id} was left STARTED by a process that is gone: marked failed")


if __name__ == "__main__":
    main()
