"""Run config over the environment-built resources: field by field, never a silent fall-back (issue 21
item 4). Real Dagster runs with run_config, as the UI launchpad sends it."""

import dagster as dg
import pytest

from assets.embeddings import chunk_embeddings
from location.resources import build_resources
from testing.chunk_seed import add_chunks, chunk_texts
from testing.fake_openai import FakeOpenAI

KEY = "sk-test-partial-config-1234"


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
