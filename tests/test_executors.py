"""The jobs' executors, run the way a launched run runs them: reconstructed from the code location, on a
real instance, with the executor each job is configured with."""

from __future__ import annotations

import os
import sys

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.definitions.reconstruct import ReconstructableRepository

from testing.corpus import TLDR_SAMPLE


@pytest.fixture
def location_env(database_url: str, tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("CONTENT_DIR", str(TLDR_SAMPLE))
    monkeypatch.setenv("SOURCE_TABLES", "[]")
    monkeypatch.setenv("EMBEDDING_PROVIDER", "local")
    monkeypatch.delenv("EMBEDDING_MODEL", raising=False)
    # The location reads its resources from the environment when imported: import it afresh here and after.
    monkeypatch.delitem(sys.modules, "location.definitions", raising=False)
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.DagsterInstance.local_temp(tempdir=str(home)) as instance:
        yield instance
    sys.modules.pop("location.definitions", None)


def _execute(instance: dg.DagsterInstance, job_name: str, **kwargs) -> dg.ExecutionResult:
    repo = ReconstructableRepository.for_module("location.definitions", "defs", os.getcwd())
    return dg.execute_job(repo.get_reconstructable_job(job_name), instance=instance, **kwargs)


def _step_pids(instance: dg.DagsterInstance, run_id: str) -> set[int]:
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_START).records
    return {r.event_log_entry.dagster_event.pid for r in records if r.event_log_entry.dagster_event}


def test_ingestion_job_runs_its_steps_in_the_run_process(location_env, database_url: str) -> None:
    instance = location_env
    result = _execute(instance, "ingestion_job")
    assert result.success
    assert _step_pids(instance, result.run_id) == {os.getpid()}
    engine = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        chunks, vectors = conn.execute(
            sa.text("SELECT (SELECT count(*) FROM document_chunks), (SELECT count(*) FROM chunk_embeddings)")
        ).one()
    engine.dispose()
    assert chunks > 0 and vectors == chunks


def test_nightly_job_forks_steps_from_the_preloaded_server(location_env) -> None:
    instance = location_env
    day = "2025-06-10"
    result = _execute(instance, "nightly_job", tags={"dagster/partition": day})
    assert result.success
    pids = _step_pids(instance, result.run_id)
    # One child process per step, none of them the run's own process.
    assert os.getpid() not in pids and len(pids) == len(result.job_def.nodes_in_topological_order)
