"""A run executed by Dagster's CLI and killed with SIGKILL is marked failed by the next start on its home.

`dagster job execute` (what `make metrics` and `make erase` run; `make run` executes its runs the same
way, in its own process) records nothing when it is killed, and Dagster's run monitoring watches launched
runs only: without this the run stays STARTED for ever. A run whose process still lives is left alone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg

from location.dagster_home import prepared_instance

REPO = Path(__file__).resolve().parents[2]
DAGSTER = Path(sys.executable).with_name("dagster")

JOB = """
import os, time
import dagster as dg

@dg.op
def wait_forever() -> None:
    open(os.environ["MARKER"], "w").close()
    time.sleep(600)

@dg.job(executor_def=dg.in_process_executor)
def sleepy():
    wait_forever()
"""


def start_run(job: Path, home: Path, marker: Path) -> subprocess.Popen:
    run = subprocess.Popen(
        [str(DAGSTER), "job", "execute", "-f", str(job), "-j", "sleepy"],
        env={**os.environ, "DAGSTER_HOME": str(home), "MARKER": str(marker)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while not marker.exists():
        assert run.poll() is None and time.monotonic() < deadline, "the run never reached its op"
        time.sleep(0.1)
    return run


def statuses(home: Path) -> dict[str, dg.DagsterRunStatus]:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        return {r.run_id: r.status for r in instance.get_runs()}


def test_a_killed_cli_run_is_marked_failed_and_a_live_one_is_left_alone(tmp_path):
    home = tmp_path / "home"
    prepared_instance(home).dispose()
    job = tmp_path / "sleepy.py"
    job.write_text(JOB)
    killed = start_run(job, home, tmp_path / "killed")
    (dead_id,) = statuses(home)
    live = start_run(job, home, tmp_path / "live")
    try:
        os.killpg(killed.pid, signal.SIGKILL)
        killed.wait(60)
        (live_id,) = set(statuses(home)) - {dead_id}
        # What the issue saw: the killed run stays STARTED in the run storage.
        assert statuses(home) == {dead_id: dg.DagsterRunStatus.STARTED, live_id: dg.DagsterRunStatus.STARTED}

        # The next start on this home (the Makefile runs this before `make metrics`, `make erase`, `make ui`;
        # `make run` does the same in its own process).
        later = subprocess.run(
            [sys.executable, "-m", "location.dagster_home"],
            cwd=REPO,
            env={**os.environ, "DAGSTER_HOME": str(home)},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert later.returncode == 0, later.stderr[-2000:]
        assert dead_id in later.stdout and live_id not in later.stdout

        assert statuses(home) == {dead_id: dg.DagsterRunStatus.FAILURE, live_id: dg.DagsterRunStatus.STARTED}
        with dg.DagsterInstance.from_config(str(home)) as instance:
            (failure,) = instance.all_logs(dead_id, of_type=dg.DagsterEventType.RUN_FAILURE)
        assert str(killed.pid) in failure.message
    finally:
        os.killpg(live.pid, signal.SIGKILL)
        live.wait(60)
