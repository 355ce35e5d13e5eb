"""Run config over the environment-built resources: field by field, never a silent fall-back (issue 21
item 4). Real Dagster runs with run_config, as the UI launchpad sends it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from assets.embeddings import chunk_embeddings
from location.resources import build_resources
from testing.chunk_seed import add_chunks, chunk_texts
from testing.fake_openai import FakeOpenAI

KEY = "sk-test-partial-config-1234"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def openai_env(monkeypatch):
    with FakeOpenAI(expected_api_key=KEY) as fake:
        for name, value in {
            "EMBEDDING_PROVIDER": "openai",
            "EMBEDDING_MODEL": "text-embedding-3-large",
            "EMBEDDING_DIMENSIONS": "256",
            "EMBEDDING_CONCURRENCY": "1",
            "OPENAI_API_KEY": KEY,
            "OPENAI_BASE_URL": fake.base_url,
        }.items():
            monkeypatch.setenv(name, value)
        yield fake


def _embed(postgres, run_config: dict) -> dict:
    result = dg.materialize(
        [chunk_embeddings],
        resources={"postgres": postgres, "embedder": build_resources()["embedder"]},
        run_config={"resources": {"embedder": {"config": run_config}}},
    )
    assert result.success
    (mat,) = result.asset_materializations_for_node("chunk_embeddings")
    return {k: v.value for k, v in mat.metadata.items()}


def test_one_field_set_in_run_config_keeps_the_environments_provider_model_and_key(postgres, openai_env):
    texts = chunk_texts(12, seed=5)
    with postgres.engine.connect() as conn:
        add_chunks(conn, texts)
    meta = _embed(postgres, {"max_batch_inputs": 5})
    # The environment's provider, model, dimension and key; the run config's request size.
    assert (meta["provider"], meta["model"], meta["chunks_embedded"]) == (
        "openai",
        "text-embedding-3-large@256",
        12,
    )
    assert [r["n_inputs"] for r in openai_env.requests] == [5, 5, 2]
    assert {(r["model"], r["dimensions"]) for r in openai_env.requests} == {("text-embedding-3-large", 256)}


def test_a_field_run_config_sets_explicitly_wins_over_the_environment(postgres, openai_env):
    with postgres.engine.connect() as conn:
        add_chunks(conn, chunk_texts(3, seed=6))
    meta = _embed(postgres, {"provider": "local", "model": None, "dimensions": 32})
    assert (meta["provider"], meta["model"]) == ("local", "local-hash-v1@32")
    assert openai_env.requests == []


def test_a_launched_run_with_partial_resource_config_keeps_the_environment(
    database_url, openai_env, tmp_path
):
    """The launchpad's path: run config stored with the run and resolved in a fresh process (Dagster's CLI),
    where the environment's secrets are resolved from their variables at run time."""
    engine = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        add_chunks(conn, chunk_texts(7, seed=8))
    engine.dispose()
    config = tmp_path / "run.yaml"
    config.write_text(json.dumps({"resources": {"embedder": {"config": {"max_batch_inputs": 3}}}}))
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "DATABASE_URL": database_url, "DAGSTER_HOME": str(home), "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(
        [
            *(sys.executable, "-m", "dagster", "asset", "materialize", "-m", "location.definitions"),
            *("--select", "chunk_embeddings", "-c", str(config)),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert [r["n_inputs"] for r in openai_env.requests] == [3, 3, 1]
    assert {r["model"] for r in openai_env.requests} == {"text-embedding-3-large"}
    assert KEY not in done.stdout + done.stderr
