"""The search helper: the active model's vectors, answered through its HNSW index."""

import dagster as dg
import pytest
import sqlalchemy as sa
from psycopg import sql

from assets.embeddings import chunk_embeddings, embedding_index
from assets.reembedding import embedding_model_switch, reembedding
from location import search_cli
from pipelines.hnsw import INDEX_SCAN_SETTINGS, drop_hnsw_index, measure_recall, set_local
from pipelines.lib.vector_index import index_name_for, index_plan
from pipelines.models import active_model
from pipelines.search import SearchError, format_hits, search, search_statement
from pipelines.sql import execute_composed
from resources.embedders import EmbedderResource
from testing.chunk_seed import add_chunks, chunk_texts
from testing.fake_openai import FakeOpenAI

LOCAL = EmbedderResource(provider="local")


def embed_all(postgres, embedder=LOCAL):
    result = dg.materialize(
        [chunk_embeddings, embedding_index], resources={"postgres": postgres, "embedder": embedder}
    )
    assert result.success


@pytest.fixture
def texts(postgres):
    with postgres.connect() as conn:
        texts = chunk_texts(300, seed=3)
        add_chunks(conn, texts)
    return texts


def test_a_chunks_own_text_finds_that_chunk_first(postgres, texts):
    embed_all(postgres)
    with postgres.connect() as conn:
        for i in (0, 137, 299):
            hits = search(conn.engine, LOCAL.factory(), texts[i], k=5)
            assert len(hits) == 5
            assert hits[0].content == texts[i] and hits[0].distance == pytest.approx(0, abs=1e-5)
            assert [h.distance for h in hits] == sorted(h.distance for h in hits)


@pytest.mark.usefixtures("texts")
def test_search_uses_the_models_partial_hnsw_index(postgres):
    embed_all(postgres)
    with postgres.connect() as conn:
        model = active_model(conn)
        plan = index_plan(model.name, model.dimensions)
        vector = conn.execute(sa.text("SELECT embedding FROM chunk_embeddings LIMIT 1")).scalar_one()
        set_local(conn, INDEX_SCAN_SETTINGS)
        statement = sql.SQL("EXPLAIN ") + search_statement(plan, exact=False)
        explain = "\n".join(
            execute_composed(
                conn, statement, {"model": model.name, "query": vector, "k": 5, "candidates": 20}
            ).scalars()
        )
    assert f"Index Scan using {index_name_for(model.name, model.dimensions)}" in explain


def test_search_above_2000_dimensions_goes_through_a_halfvec_index(postgres):
    with postgres.connect() as conn:
        texts = chunk_texts(40, seed=5)
        add_chunks(conn, texts)
    with FakeOpenAI() as fake:
        large = EmbedderResource(
            provider="openai", model="text-embedding-3-large", api_key="sk-test", base_url=fake.base_url
        )
        embed_all(postgres, large)
        with postgres.connect() as conn:
            indexdef = conn.execute(
                sa.text("SELECT indexdef FROM pg_indexes WHERE indexname = :n"),
                {"n": index_name_for("text-embedding-3-large", 3072)},
            ).scalar_one()
            assert "halfvec(3072)" in indexdef and "halfvec_cosine_ops" in indexdef
            hits = search(conn.engine, large.factory(), texts[7], k=3)
            assert hits[0].content == texts[7]
            assert measure_recall(conn.engine, "text-embedding-3-large", 3072, sample=10).recall >= 0.95


def test_search_follows_the_active_model_not_the_configured_one(postgres, texts):
    embed_all(postgres)
    with FakeOpenAI() as fake:
        configured = EmbedderResource(provider="openai", api_key="sk-test", base_url=fake.base_url)
        with postgres.connect() as conn:
            hits = search(conn.engine, configured.factory(), texts[3], k=1)
        assert hits[0].content == texts[3] and fake.request_count == 0
        assert dg.materialize(
            [reembedding, embedding_model_switch], resources={"postgres": postgres, "embedder": configured}
        ).success
        with postgres.connect() as conn:
            hits = search(conn.engine, configured.factory(), texts[3], k=1)
        assert hits[0].content == texts[3] and fake.request_count == 2  # the build, then the query


@pytest.mark.usefixtures("texts")
def test_index_recall_against_exact_search_is_high(postgres):
    embed_all(postgres)
    with postgres.connect() as conn:
        model = active_model(conn)
        result = measure_recall(conn.engine, model.name, model.dimensions, sample=30)
    assert result.queries == 30 and result.recall >= 0.95


def test_search_refuses_an_empty_query_or_a_database_without_models(postgres):
    with postgres.connect() as conn:
        with pytest.raises(SearchError, match="empty"):
            search(conn.engine, LOCAL.factory(), "  ", k=5)
        with pytest.raises(SearchError, match="no active embedding model"):
            search(conn.engine, LOCAL.factory(), "scales", k=5)


def test_command_line_prints_the_top_chunks(postgres, texts, monkeypatch, capsys):
    embed_all(postgres)
    monkeypatch.setenv("DATABASE_URL", postgres.url)
    for name in ("OPENAI_API_KEY", "EMBEDDING_MODEL", "EMBEDDING_DIMENSIONS", "EMBEDDING_PROVIDER"):
        monkeypatch.delenv(name, raising=False)
    assert search_cli.main([texts[42], "-k", "3"]) == 0
    out = capsys.readouterr().out
    assert "model local-hash-v1" in out
    lines = [line for line in out.splitlines() if line[:3].strip().rstrip(".").isdigit()]
    assert len(lines) == 3 and lines[0].split()[1] == "1.000"
    assert texts[42][:40] in out


def test_search_without_a_finished_index_is_exact_and_says_so(postgres, texts):
    embed_all(postgres)
    with postgres.connect() as conn:
        model = active_model(conn)
    hits = search(postgres.engine, LOCAL.factory(), texts[42], k=3)
    assert hits[0].content == texts[42] and all(h.via_index for h in hits)
    drop_hnsw_index(postgres.engine, model.name, model.dimensions)
    exact = search(postgres.engine, LOCAL.factory(), texts[42], k=3)
    assert [h.chunk_id for h in exact] == [h.chunk_id for h in hits] and not any(h.via_index for h in exact)
    assert format_hits(exact).startswith("(exact search")
