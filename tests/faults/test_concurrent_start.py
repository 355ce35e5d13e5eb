"""Runs started at once on a fresh DAGSTER_HOME: every starter opens the instance, and later runs work.

Each starter is what `make run`, `make metrics` and `make erase` do: the Makefile's DAGSTER_HOME set-up,
then a process that opens the instance (as `dagster job execute` does when it starts). The starters are
held at a barrier just before they open it, so that they race as two commands typed at once can; Dagster
alone creates its SQLite storage from each of them, which fails starters and can leave the schedule storage
with two alembic heads, after which no run on that home starts.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STARTERS = 4
ROUNDS = 3

STARTER = """
import os, sys, time
import dagster as dg
open(sys.argv[1], "w").close()  # ready: imported, about to open the instance
while not os.path.exists(sys.argv[2]):
    time.sleep(0.002)
with dg.DagsterInstance.get() as instance:
    instance.get_runs_count()
"""

# A later run on the same home, in a fresh process: Dagster's own run, recorded in the home's storage.
LATER_RUN = """
import dagster as dg

@dg.asset
def later() -> int:
    return 1

with dg.DagsterInstance.get() as instance:
    assert dg.materialize([later], instance=instance).success
    print(instance.get_runs_count())
"""


def make_home(home: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [
            "make",
            "-s",
            "-C",
            str(REPO),
            f"DAGSTER_HOME={home}",
            f"PY={sys.executable}",
            f"{home}/dagster.yaml",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def start_at_once(home: Path) -> list[tuple[int, str]]:
    setups = [make_home(home) for _ in range(STARTERS)]
    for setup in setups:
        out, _ = setup.communicate(timeout=300)
        assert setup.returncode == 0, out
    go = home.parent / f"{home.name}.go"
    ready = [home.parent / f"{home.name}.ready{i}" for i in range(STARTERS)]
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    starters = [
        subprocess.Popen(
            [sys.executable, "-c", STARTER, str(r), str(go)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for r in ready
    ]
    deadline = time.monotonic() + 300
    while not all(r.exists() for r in ready) and all(s.poll() is None for s in starters):
        assert time.monotonic() < deadline, "starters never got ready"
        time.sleep(0.01)
    go.touch()
    outcomes = []
    for s in starters:
        out, _ = s.communicate(timeout=300)
        outcomes.append((s.returncode, out.strip()[-300:]))
    return outcomes


def test_runs_started_at_once_on_a_fresh_home_all_start_and_later_runs_work(tmp_path):
    for n in range(ROUNDS):
        home = tmp_path / f"home{n}"  # fresh: not even the directory exists
        outcomes = start_at_once(home)
        assert [rc for rc, _ in outcomes] == [0] * STARTERS, outcomes
        later = subprocess.run(
            [sys.executable, "-c", LATER_RUN],
            env={**os.environ, "DAGSTER_HOME": str(home)},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert later.returncode == 0, later.stderr[-2000:]
        assert later.stdout.split() == ["1"]
        assert (home / "dagster.yaml").read_text() == (REPO / "deploy" / "dagster.local.yaml").read_text()
