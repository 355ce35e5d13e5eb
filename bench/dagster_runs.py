"""Running the code location's ingestion job the way production does, for the ingestion bench.

The job is reconstructed from `location.definitions` and executed with the executor it is
configured with (so each step's process start is measured, as in `dagster job execute` or a run launched
from the UI), on a throwaway Dagster instance; the resources come from the environment like the real
code location's. Per-step times come from Dagster's own step stats.
"""

from __future__ import annotations

import contextlib
import os
import resource
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import dagster as dg
from dagster._core.definitions.reconstruct import ReconstructableRepository

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@dataclass(frozen=True)
class RunTiming:
    wall_s: float
    steps: dict[str, float]  # step key → its own seconds, from STEP_START to its end
    # Inside chunk_embeddings: the embedding work (its `duration_s`); the rest of that step is the index build
    # and the clean-up of retired vectors
    inner: dict[str, float] = field(default_factory=dict)

    @property
    def step_sum_s(self) -> float:
        return sum(self.steps.values())

    @property
    def overhead(self) -> float:
        """Run wall time ÷ the sum of its steps' own work: 1.0 would be a free orchestrator."""
        return self.wall_s / max(self.step_sum_s, 1e-9)

    def split(self) -> str:
        steps = ", ".join(f"{k} {v:.1f}s" for k, v in self.steps.items())
        inner = ", ".join(f"{k} {v:.1f}s" for k, v in self.inner.items())
        return f"{steps} ({inner})" if inner else steps


def reset_peak_rss() -> None:
    """Start this process's peak resident memory afresh (Linux: VmHWM is reset by writing 5 to clear_refs),
    so that the next `peak_rss_mb` is the peak of what ran in between, not of the whole bench."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass  # not Linux: the peak then covers the process's whole life


def peak_rss_mb() -> tuple[float, float]:
    """Peak resident memory of this process since `reset_peak_rss` (its whole life where that cannot be
    reset) and of its largest waited-for child process, MB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with contextlib.suppress(OSError), open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                own = int(line.split()[1]) / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return own, children


class TreePeak:
    """Peak resident memory (MB) of a process and all its descendants together, sampled every 0.2 s while in
    use: a run's whole process tree (step processes, the fake server), or a database server's."""

    def __init__(self, pid: int | None = None):
        import psutil

        self._psutil = psutil
        self.root = psutil.Process(pid)
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            total = 0
            for proc in [self.root, *self.root.children(recursive=True)]:
                try:
                    total += proc.memory_info().rss
                except self._psutil.Error:
                    continue
            self.peak = max(self.peak, total / 1e6)

    def __enter__(self) -> TreePeak:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def current_rss_mb() -> float:
    with contextlib.suppress(OSError), open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def execute_fresh_process(
    home: str, job_name: str = "ingestion_job", module: str = "location.definitions"
) -> float:
    """Wall time of `dagster job execute` in a new process: what a launched run pays to import the location."""
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "dagster",
            "job",
            "execute",
            "-m",
            module,
            "-j",
            job_name,
        ],
        env={**os.environ, "DAGSTER_HOME": home},
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def import_seconds(module: str = "location.definitions", base: str = "pass", rounds: int = 3) -> float:
    """Seconds a fresh interpreter needs to import `module` beyond importing `base` (the interpreter's own
    start by default; `dagster` for what the code location adds to Dagster's import). The two alternate and
    the fastest of each counts: the host is shared."""

    def timed(code: str) -> float:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
        return time.perf_counter() - started

    bare, full = [], []
    for _ in range(rounds):
        bare.append(timed(f"import {base}" if base != "pass" else "pass"))
        full.append(timed(f"import {base}; import {module}" if base != "pass" else f"import {module}"))
    return min(full) - min(bare)


def execute(
    instance: dg.DagsterInstance,
    job_name: str = "ingestion_job",
    module: str = "location.definitions",
) -> RunTiming:
    repo = ReconstructableRepository.for_module(module, "defs", os.getcwd())
    job = repo.get_reconstructable_job(job_name)
    started = time.perf_counter()
    result = dg.execute_job(job, instance=instance, run_config=QUIET)
    wall = time.perf_counter() - started
    if not result.success:
        raise RuntimeError(f"{job_name} failed: {[e.message for e in result.all_events if e.is_failure]}")
    steps = {
        s.step_key: (s.end_time or 0) - (s.start_time or 0)
        for s in instance.get_run_step_stats(result.run_id)
        if s.start_time is not None
    }
    inner = {}
    for event in result.get_asset_materialization_events():
        mat = event.materialization
        duration = mat.metadata.get("duration_s")
        if mat.asset_key == dg.AssetKey("chunk_embeddings") and isinstance(duration, dg.FloatMetadataValue):
            inner["of which embed_pending"] = duration.value or 0.0
    return RunTiming(wall, steps, inner)
