"""Runs of the demo, launched on the Dagster instance as the code location's runs, with one printed
line per step as it finishes.

The runs carry the code location's origin (the `rag_etl` location of workspace.yaml), so that the UI
lists them under their jobs and draws them on Overview → Timeline, which leaves out runs without one.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import yaml
from dagster._core.definitions.job_base import InMemoryJob
from dagster._core.execution.api import execute_run_iterator
from dagster._core.remote_origin import (
    ManagedGrpcPythonEnvCodeLocationOrigin,
    RemoteJobOrigin,
    RemoteRepositoryOrigin,
)
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Definitions are loaded by Dagster as one repository with this name.
REPOSITORY_NAME = "__repository__"
# The printed lines are the output; the full event log of each run is in the UI.
QUIET: dict[str, Any] = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}

# What a person wants to read first about each stage: (metadata key, noun).
HEADLINES: dict[str, tuple[str, str]] = {
    "source_documents": ("documents_total", "documents"),
    "document_chunks": ("chunks_total", "chunks"),
    "chunk_embeddings": ("chunks_embedded", "embedded"),
    "ai_dialogue_log": ("rows", "rows"),
    "rag_metrics_history": ("total_queries", "queries"),
    "retention_sweep": ("deleted", "deleted"),
    "retrieval_quality": ("mrr", "MRR"),
}


def workspace_location() -> tuple[str, str]:
    """(location name, module) of the one code location in workspace.yaml."""
    workspace = yaml.safe_load((PROJECT_ROOT / "workspace.yaml").read_text())
    target = workspace["load_from"][0]["python_module"]
    return target["location_name"], target["module_name"]


def remote_job_origin(job_name: str) -> RemoteJobOrigin:
    location_name, module = workspace_location()
    code_location = ManagedGrpcPythonEnvCodeLocationOrigin(
        LoadableTargetOrigin(
            executable_path=sys.executable, module_name=module, working_directory=str(PROJECT_ROOT)
        ),
        location_name=location_name,
    )
    return RemoteJobOrigin(RemoteRepositoryOrigin(code_location, REPOSITORY_NAME), job_name)


@dataclass
class RunOutcome:
    run_id: str
    success: bool
    metadata: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Each asset's metadata per partition, for a run over a range of them (a backfill).
    partitions: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    failed_steps: list[str] = field(default_factory=list)
    failed_checks: list[str] = field(default_factory=list)


def step_line(
    job_name: str,
    step: str,
    ok: bool,
    seconds: float,
    metadata: Mapping[str, Any],
    partitions: Mapping[str, Mapping[str, Any]] | None = None,
) -> str:
    """`ingestion_job: source_documents ✓ 0.8 s (11 documents)`; for a run over several (daily) partitions
    the whole range's count: `metrics_job: rag_metrics_history ✓ 2.1 s (56,711 queries over 30 days)`."""
    line = f"{job_name}: {step} {'✓' if ok else '✗'} {seconds:.1f} s"
    key, noun = HEADLINES.get(step, ("", ""))
    days = list((partitions or {}).values())
    if len(days) > 1 and all(key in m for m in days):
        line += f" ({sum(m[key] for m in days):,} {noun} over {len(days)} days)"
    elif key in metadata:
        line += f" ({metadata[key]:,} {noun})"
    return line


def failed_check_note(check_name: str, metadata: Mapping[str, Any]) -> str:
    """`citation_rate ✗ (1 day(s) breaching: 2026-11-20)`."""
    days, which = metadata.get("days_breaching"), metadata.get("breaching_days")
    note = f" ({days.value} day(s) breaching" if days is not None else ""
    if note and which is not None:
        note += f": {which.value}"
    return f"{check_name} ✗{note}{')' if note else ''}"


def run_job(
    defs: dg.Definitions,
    job_name: str,
    instance: dg.DagsterInstance,
    tags: Mapping[str, str] | None = None,
    echo: Callable[[str], None] = print,
) -> RunOutcome:
    """Create the run on `instance` with the code location's origin, execute it here, and echo a line
    per finished step."""
    # The steps run one after another in this process, like `execute_in_process`, but as ordinary runs: a
    # job's own executor (forkserver for the nightly job) needs a job it can reload from its origin.
    job_def = defs.resolve_job_def(job_name).with_executor_def(dg.in_process_executor)
    run = instance.create_run_for_job(
        job_def,
        run_config=QUIET,
        tags=dict(tags or {}),
        remote_job_origin=remote_job_origin(job_name),
    )
    outcome = RunOutcome(run_id=run.run_id, success=False)
    for event in execute_run_iterator(InMemoryJob(job_def), run, instance):
        step = event.step_key or ""
        if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
            mat = event.event_specific_data.materialization  # type: ignore[union-attr]
            values = {k: v.value for k, v in mat.metadata.items()}
            outcome.metadata[mat.asset_key.to_user_string()] = values
            if mat.partition is not None:
                outcome.partitions.setdefault(mat.asset_key.to_user_string(), {})[mat.partition] = values
        elif event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = event.event_specific_data
            if not evaluation.passed:  # type: ignore[union-attr]
                outcome.failed_checks.append(
                    failed_check_note(evaluation.check_name, evaluation.metadata)  # type: ignore[union-attr]
                )
        elif event.event_type in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
            ok = event.event_type == dg.DagsterEventType.STEP_SUCCESS
            seconds = event.event_specific_data.duration_ms / 1000 if ok else 0.0  # type: ignore[union-attr]
            echo(
                step_line(
                    job_name, step, ok, seconds, outcome.metadata.get(step, {}), outcome.partitions.get(step)
                )
            )
            if not ok:
                outcome.failed_steps.append(step)
                error = event.event_specific_data.error  # type: ignore[union-attr]
                if error is not None:
                    echo(f"    {error.message.strip().splitlines()[0]}")
        elif event.event_type == dg.DagsterEventType.RUN_SUCCESS:
            outcome.success = True
    for check in outcome.failed_checks:
        echo(f"{job_name}: check {check}")
    return outcome
