"""The halfvec HNSW index and its exact re-rank, checked against brute force in numpy; the HNSW_MIN_ROWS
threshold; exact search (and saying so) while no finished index exists; the earlier `vector` index retired."""

import dagster as dg
import numpy as np
import pytest
import sqlalchemy as sa

from assets.embeddings import chunk_embeddings, embedding_index
from location.resources import build_resources
from pipelines.hnsw import ensure_hnsw_index, has_valid_index, measure_recall, nearest
from pipelines.lib.vector_index import index_plan, recall_at_k
from pipelines.search import search, search_by_vector
from resources.embedders import EmbedderResource
from resources.postgres import PostgresResource
from testing.chunk_seed import add_chunks, chunk_texts, seed_active_model_vectors

MODEL = "synthetic@256"
DIMS = 256
N = 1500


def clustered(n: int, dims: int, seed: int) -> np.ndarray:
    """Real-shaped vectors: topics (cluster centres) with spread, not uniform noise."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((40, dims))
    vectors = centres[rng.integers(0, 40, n)] + 0.7 * rng.standard_normal((n, dims))
    return vectors.astype(np.float32)


def brute_force(vectors: np.ndarray, ids: list[int], query: np.ndarray, k: int) -> list[tuple[int, float]]:
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    distances = 1.0 - unit @ (query / np.linalg.norm(query))
    order = np.argsort(distances, kind="stable")[:k]
    return [(ids[i], float(distances[i])) for i in order]


@pytest.fixture
def loaded(postgres):
    """N clustered vectors of MODEL on N chunks; returns (chunk ids, vectors)."""
    vectors = clustered(N, DIMS, seed=11)
    with postgres.connect() as conn:
        ids = seed_active_model_vectors(conn, MODEL, vectors)
        conn.commit()
    return ids, vectors


def test_index_search_matches_numpy_brute_force_with_exact_distances(postgres, loaded):
    ids, vectors = loaded
    built = ensure_hnsw_index(postgres.engine, MODEL, DIMS, "256MB", min_rows=0)
    assert built.created
    queries = clustered(30, DIMS, seed=12)  # not stored vectors: fresh points among the same topics
    recalls = []
    for q in queries:
        truth = brute_force(vectors, ids, q, 10)
        got = nearest(postgres.engine, MODEL, DIMS, q, 10)
        recalls.append(recall_at_k(got, truth, 10))
        # Re-ranked on the full vectors: distances are the float32 ones, not halfvec's rounded ones (~1e-3).
        by_id = dict(brute_force(vectors, ids, q, N))
        assert max(abs(d - by_id[i]) for i, d in got) < 2e-5
        assert [d for _, d in got] == sorted(d for _, d in got)
    assert np.mean(recalls) >= 0.95
    assert measure_recall(postgres.engine, MODEL, DIMS, sample=20).recall >= 0.95


def test_below_the_row_threshold_no_index_is_built_and_search_is_exact(postgres, loaded):
    ids, vectors = loaded
    skipped = ensure_hnsw_index(postgres.engine, MODEL, DIMS, "256MB", min_rows=N + 1)
    assert not skipped.created and "HNSW_MIN_ROWS" in skipped.note
    with postgres.connect() as conn:
        assert not has_valid_index(conn, MODEL, DIMS)
    q = clustered(1, DIMS, seed=13)[0]
    hits = search_by_vector(postgres.engine, MODEL, DIMS, q, k=10)
    assert not any(h.via_index for h in hits)
    assert [h.chunk_id for h in hits] == [i for i, _ in brute_force(vectors, ids, q, 10)]
    recall = measure_recall(postgres.engine, MODEL, DIMS, sample=5)
    assert (recall.via_index, recall.queries) == (False, 0)
    # Once the model has that many vectors, the next run builds it.
    assert ensure_hnsw_index(postgres.engine, MODEL, DIMS, "256MB", min_rows=N).created
    hits = search_by_vector(postgres.engine, MODEL, DIMS, q, k=10)
    assert all(h.via_index for h in hits)


@pytest.mark.usefixtures("loaded")
def test_the_earlier_full_precision_index_is_dropped_once_the_halfvec_one_is_valid(postgres):
    plan = index_plan(MODEL, DIMS)
    assert plan.legacy_index_name
    with postgres.connect() as conn:
        conn.execute(
            sa.text(
                f'CREATE INDEX "{plan.legacy_index_name}" ON chunk_embeddings USING hnsw'
                f" ((embedding::vector({DIMS})) vector_cosine_ops) WHERE model = '{MODEL}'"
            )
        )
        conn.commit()
    assert ensure_hnsw_index(postgres.engine, MODEL, DIMS, "256MB", min_rows=0).created
    with postgres.connect() as conn:
        names = set(
            conn.execute(
                sa.text("SELECT indexname FROM pg_indexes WHERE tablename = 'chunk_embeddings'")
            ).scalars()
        )
    assert plan.index_name in names and plan.legacy_index_name not in names


def test_the_vectors_are_searchable_before_the_index_step_runs(postgres):
    texts = chunk_texts(120, seed=8)
    with postgres.connect() as conn:
        add_chunks(conn, texts)
    local = EmbedderResource(provider="local")
    resources = {"postgres": postgres, "embedder": local}
    assert dg.materialize([chunk_embeddings], resources=resources).success
    before = search(postgres.engine, local.factory(), texts[5], k=3)
    assert before[0].content == texts[5] and not any(h.via_index for h in before)
    result = dg.materialize([embedding_index], resources=resources)
    meta = {
        k: v.value for k, v in result.asset_materializations_for_node("embedding_index")[0].metadata.items()
    }
    assert meta["hnsw_built"] is True
    after = search(postgres.engine, local.factory(), texts[5], k=3)
    assert [h.chunk_id for h in after] == [h.chunk_id for h in before] and all(h.via_index for h in after)
    # Below the default threshold the step builds nothing, and says why.
    fresh = PostgresResource(database_url=postgres.url, hnsw_min_rows=10_000)
    with postgres.connect() as conn:
        conn.execute(sa.text("DROP INDEX " + after_index_name(conn)))
        conn.commit()
    result = dg.materialize([embedding_index], resources={"postgres": fresh, "embedder": local})
    meta = {
        k: v.value for k, v in result.asset_materializations_for_node("embedding_index")[0].metadata.items()
    }
    assert meta["hnsw_built"] is False and "HNSW_MIN_ROWS" in meta["hnsw_index"]


def after_index_name(conn: sa.Connection) -> str:
    return conn.execute(
        sa.text("SELECT indexname FROM pg_indexes WHERE indexname LIKE 'chunk_embeddings_hnsw_%'")
    ).scalar_one()


@pytest.mark.parametrize(("name", "value"), [("HNSW_MIN_ROWS", "-1"), ("HNSW_BUILD_WORKERS", "two")])
def test_bad_index_settings_are_refused_by_name(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=name):
        build_resources()
