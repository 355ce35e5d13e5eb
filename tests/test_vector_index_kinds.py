"""Every index kind (VECTOR_INDEX_KIND) returns the brute-force top k after its exact re-rank, through the
application's query; and a switch of kind rebuilds beside the old index, readers never seeing an empty or
mixed result."""

import threading
import time

import numpy as np
import pytest
import sqlalchemy as sa

from pipelines.hnsw import ensure_hnsw_index, measure_recall
from pipelines.lib.vector_index import (
    INDEX_KINDS,
    IndexConfigError,
    hnsw_build_memory_kb,
    index_plan,
    ivfflat_probes,
    recall_at_k,
    resolve_index_kind,
)
from pipelines.search import search_by_vector
from testing.chunk_seed import seed_active_model_vectors

MODEL = "synthetic@768"
DIMS = 768
N = 2500


def clustered(n: int, seed: int) -> np.ndarray:
    """Real-shaped vectors: topics (cluster centres) with spread, not uniform noise."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(3).standard_normal((40, DIMS))
    return (centres[rng.integers(0, 40, n)] + 0.7 * rng.standard_normal((n, DIMS))).astype(np.float32)


def brute_force(vectors: np.ndarray, ids: list[int], query: np.ndarray, k: int) -> list[tuple[int, float]]:
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    distances = 1.0 - unit.astype(np.float64) @ (query / np.linalg.norm(query)).astype(np.float64)
    order = np.argsort(distances, kind="stable")[:k]
    return [(ids[i], float(distances[i])) for i in order]


@pytest.fixture
def loaded(postgres):
    vectors = clustered(N, seed=11)
    with postgres.connect() as conn:
        ids = seed_active_model_vectors(conn, MODEL, vectors)
        conn.commit()
    return ids, vectors


def index_names(postgres) -> set[str]:
    with postgres.connect() as conn:
        return set(
            conn.execute(
                sa.text("SELECT indexname FROM pg_indexes WHERE tablename = 'chunk_embeddings'")
            ).scalars()
        )


@pytest.mark.parametrize("kind", list(INDEX_KINDS))
def test_each_kind_returns_the_brute_force_top_k_after_the_rerank(postgres, loaded, kind):
    ids, vectors = loaded
    built = ensure_hnsw_index(postgres.engine, MODEL, DIMS, "256MB", min_rows=0, kind=kind)
    assert built.created and built.index_name == index_plan(MODEL, DIMS, kind).index_name
    with postgres.connect() as conn:
        indexdef = conn.execute(
            sa.text("SELECT indexdef FROM pg_indexes WHERE indexname = :n"), {"n": built.index_name}
        ).scalar_one()
    spec = INDEX_KINDS[kind]
    assert f"USING {spec.method}" in indexdef and spec.opclass in indexdef
    queries = clustered(25, seed=12)  # not stored vectors: fresh points among the same topics
    recalls = []
    for q in queries:
        truth = brute_force(vectors, ids, q, 10)
        hits = search_by_vector(postgres.engine, MODEL, DIMS, q, k=10)
        assert len(hits) == 10 and {h.index_kind for h in hits} == {kind}
        got = [(h.chunk_id, h.distance) for h in hits]
        recalls.append(recall_at_k(got, truth, 10))
        # Re-ranked on the stored full-precision vectors: distances are numpy's, not the index's.
        by_id = dict(brute_force(vectors, ids, q, N))
        assert max(abs(d - by_id[i]) for i, d in got) < 2e-5
        assert [d for _, d in got] == sorted(d for _, d in got)
    assert np.mean(recalls) >= 0.95
    recall = measure_recall(postgres.engine, MODEL, DIMS, sample=10)
    assert recall.via_index and recall.recall >= 0.95


def test_a_kind_switch_rebuilds_beside_the_old_index_and_readers_never_see_an_empty_or_mixed_result(
    postgres, loaded
):
    ids, vectors = loaded
    old, new = "hnsw_halfvec", "hnsw_bq"
    assert ensure_hnsw_index(postgres.engine, MODEL, DIMS, "256MB", min_rows=0, kind=old).created
    queries = clustered(6, seed=21)
    truths = [brute_force(vectors, ids, q, 10) for q in queries]
    seen: list[tuple[float, str | None, float]] = []  # (time, kind, recall) of every search
    stop, failures = threading.Event(), []

    def reader() -> None:
        i = 0
        while not stop.is_set():
            q, truth = queries[i % len(queries)], truths[i % len(truths)]
            try:
                hits = search_by_vector(postgres.engine, MODEL, DIMS, q, k=10)
            except Exception as exc:  # a reader failing is what the switch must not cause
                failures.append(repr(exc))
                return
            kinds = {h.index_kind for h in hits}
            if len(hits) != 10 or len(kinds) != 1:
                failures.append(f"{len(hits)} hits through {kinds}")
            got = [(h.chunk_id, h.distance) for h in hits]
            seen.append((time.monotonic(), next(iter(kinds), None), recall_at_k(got, truth, 10)))
            i += 1

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        while len(seen) < 10:
            time.sleep(0.05)
        started = time.monotonic()
        switched = ensure_hnsw_index(postgres.engine, MODEL, DIMS, "256MB", min_rows=0, kind=new)
        finished = time.monotonic()
        count = len(seen)
        while len(seen) < count + 10:
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not failures, failures[:3]
    assert switched.created
    # The switch happened while readers read: searches ran during the build.
    during = [s for s in seen if started <= s[0] <= finished]
    assert during, "no search ran during the build"
    # Every search went through one finished index, the old one until the new one took over, and found what
    # brute force finds; none was exact (no index) or empty in between.
    assert all(kind in (old, new) for _, kind, _ in seen)
    assert all(recall >= 0.9 for *_, recall in seen)
    assert seen[0][1] == old and seen[-1][1] == new
    first_new = next(i for i, s in enumerate(seen) if s[1] == new)
    assert all(kind == new for _, kind, _ in seen[first_new + 2 :])  # two readers: one may finish late
    # Only the new kind's index is left.
    names = index_names(postgres)
    assert index_plan(MODEL, DIMS, new).index_name in names
    assert index_plan(MODEL, DIMS, old).index_name not in names


def test_a_bad_index_kind_is_refused_by_name(monkeypatch):
    from location.resources import build_resources

    monkeypatch.setenv("VECTOR_INDEX_KIND", "hnsw_pq")
    with pytest.raises(ValueError, match=r"VECTOR_INDEX_KIND.*hnsw_pq"):
        build_resources()


def test_auto_builds_halfvec_hnsw_while_its_graph_fits_the_memory_and_ivfflat_beyond(postgres):
    """`auto` (the default) by the model's size against HNSW_MAINTENANCE_WORK_MEM: 5,000 vectors of 768
    dimensions make a ~21.9 MB HNSW graph (hnsw_graph_kb); IVFFlat's build needs ~15 MB (its 10,000-vector
    sample). Under a 16 MB ceiling it is IVFFlat; an IVFFlat index stays until the graph fits in half the
    ceiling (32 MB: 16 < 21.9), then HNSW returns (64 MB: 32 >= 21.9)."""
    with postgres.connect() as conn:
        seed_active_model_vectors(conn, MODEL, clustered(5000, seed=12))
        conn.commit()
    base = index_names(postgres)

    def auto(ceiling: str) -> str:
        """The kind of the one index the model has after `ensure_hnsw_index(kind="auto")`."""
        ensure_hnsw_index(postgres.engine, MODEL, DIMS, ceiling, min_rows=0, kind="auto")
        (name,) = index_names(postgres) - base
        return next(k for k in INDEX_KINDS if index_plan(MODEL, DIMS, k).index_name == name)

    assert auto("64MB") == "hnsw_halfvec"
    assert auto("16MB") == "ivfflat_halfvec"
    assert auto("32MB") == "ivfflat_halfvec"
    assert auto("64MB") == "hnsw_halfvec"


@pytest.mark.parametrize(
    ("rows", "current", "expected"),
    [
        (100_000, None, "hnsw_halfvec"),
        (300_000, None, "hnsw_halfvec"),
        (400_000, None, "ivfflat_halfvec"),
        (1_000_000, None, "ivfflat_halfvec"),
        (200_000, "ivfflat_halfvec", "ivfflat_halfvec"),
        (150_000, "ivfflat_halfvec", "hnsw_halfvec"),
        (1_000_000, "hnsw_halfvec", "ivfflat_halfvec"),
    ],
)
def test_auto_means_ivfflat_once_a_1536_d_hnsw_graph_outgrows_2_gb(rows, current, expected):
    # (3,072 bytes of halfvec + 2,048 of graph) x 1.25 a vector: 2 GB holds 335,544 of them, half of it 167,772.
    assert resolve_index_kind("auto", 1536, rows, "2GB", current) == expected
    assert resolve_index_kind("auto", 1536) == "hnsw_halfvec"  # no count: naming and exact plans
    assert resolve_index_kind("auto", 3072, 10_000_000, "2GB") == "hnsw_halfvec"  # above IVFFlat's limit


@pytest.mark.parametrize(
    ("lists", "probes"), [(1, 1), (4, 2), (16, 4), (100, 10), (400, 10), (1000, 10), (2000, 20)]
)
def test_ivfflat_probes_root_of_the_lists_up_to_10_then_one_in_100(lists, probes):
    assert ivfflat_probes(lists) == probes


@pytest.mark.parametrize(
    ("dims", "rows", "pgvector_mb"),
    # What pgvector 0.8 refused an IVFFlat build with ("memory required is N MB"): the xl bench's first run at a
    # million chunks, and this file's 2,500 vectors under an 8 MB ceiling.
    [(1536, 985_103, 358), (768, 2_500, 15)],
)
def test_the_ivfflat_build_asks_for_at_least_what_pgvector_requires(dims, rows, pgvector_mb):
    plan = index_plan("m", dims, "ivfflat_halfvec")
    assert hnsw_build_memory_kb(plan, rows, "16GB") >= pgvector_mb * 1024


@pytest.mark.usefixtures("loaded")
def test_an_ivfflat_build_that_cannot_fit_its_memory_is_refused_naming_the_setting(postgres):
    with pytest.raises(
        IndexConfigError, match=r"needs about 16 MB.*HNSW_MAINTENANCE_WORK_MEM allows \(8 MB\)"
    ):
        ensure_hnsw_index(postgres.engine, MODEL, DIMS, "8MB", min_rows=0, kind="ivfflat_halfvec")
    assert not index_names(postgres) & {index_plan(MODEL, DIMS, k).index_name for k in INDEX_KINDS}
