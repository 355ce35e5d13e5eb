"""Pure pieces of re-embedding: index DDL choices, names, literals, memory settings, recall, sensor decisions."""

import hashlib

import pytest

from pipelines.lib.model_switch import model_change_decision
from pipelines.lib.vector_index import (
    INDEX_KINDS,
    IndexConfigError,
    candidates_for,
    hnsw_build_memory_kb,
    index_name_for,
    index_plan,
    quote_ident,
    quote_literal,
    recall_at_k,
    should_build_index,
    split_model_name,
    validate_model_name,
    validate_pg_memory,
)


def test_halfvec_index_at_every_size_exact_rerank_on_vector_and_no_index_beyond_4000():
    small, large, huge = (index_plan("m", d, "hnsw_halfvec") for d in (1536, 3072, 4001))
    assert (small.vector_type, small.opclass, small.indexable) == (
        "halfvec(1536)",
        "halfvec_cosine_ops",
        True,
    )
    assert small.exact_type == "vector(1536)" and large.exact_type == "vector(3072)"
    assert (large.vector_type, large.opclass) == ("halfvec(3072)", "halfvec_cosine_ops")
    assert large.column_expr == "(embedding::halfvec(3072))"
    assert not huge.indexable
    # One bit a dimension: binary-quantized HNSW indexes whatever a vector column stores.
    bq = index_plan("m", 16000, "hnsw_bq")
    assert (bq.vector_type, bq.opclass, bq.indexable) == ("bit(16000)", "bit_hamming_ops", True)


def test_each_kind_of_a_model_has_an_index_name_of_its_own_and_names_the_others_as_siblings():
    plans = {kind: index_plan("m", 1536, kind) for kind in INDEX_KINDS}
    assert len({p.index_name for p in plans.values()}) == len(INDEX_KINDS)
    for kind, plan in plans.items():
        others = {p.index_name for k, p in plans.items() if k != kind} | {plan.legacy_index_name}
        assert set(plan.sibling_index_names) == others
    with pytest.raises(IndexConfigError, match="VECTOR_INDEX_KIND"):
        index_plan("m", 1536, "hnsw_pq")


def test_the_halfvec_index_is_named_apart_from_the_earlier_vector_one_below_2001_dimensions():
    small, large = index_plan("m", 1536, "hnsw_halfvec"), index_plan("m", 3072, "hnsw_halfvec")
    # Earlier releases named every index sha256(model NUL dimensions); above 2,000 it was halfvec already.
    assert large.legacy_index_name is None
    assert large.index_name == "chunk_embeddings_hnsw_" + hashlib.sha256(b"m\x003072").hexdigest()[:8]
    assert small.legacy_index_name == "chunk_embeddings_hnsw_" + hashlib.sha256(b"m\x001536").hexdigest()[:8]
    assert small.index_name != small.legacy_index_name


def test_candidates_for_the_rerank_and_the_row_threshold():
    assert [candidates_for(k, "hnsw_halfvec") for k in (1, 10, 250, 251, 1000)] == [4, 40, 1000, 1000, 1000]
    assert [candidates_for(k, "hnsw_bq") for k in (1, 10, 50, 51)] == [20, 200, 1000, 1000]
    plan = index_plan("m", 1536)
    assert not should_build_index(plan, 4999, 5000) and should_build_index(plan, 5000, 5000)
    assert should_build_index(plan, 0, 0)
    assert not should_build_index(index_plan("m", 4001, "hnsw_halfvec"), 10**6, 0)
    for bad in (-1, True, 1.5):
        with pytest.raises(IndexConfigError, match="HNSW_MIN_ROWS"):
            should_build_index(plan, 10, bad)


def test_index_names_are_stable_short_identifiers_distinct_per_model_and_dimension():
    a = index_name_for("text-embedding-3-large@1024", 1024)
    assert a == index_name_for("text-embedding-3-large@1024", 1024)
    assert a != index_name_for("text-embedding-3-large", 3072)
    assert a.startswith("chunk_embeddings_hnsw_") and len(a) == len("chunk_embeddings_hnsw_") + 8
    assert quote_ident(a) == f'"{a}"'


@pytest.mark.parametrize("name", ["text-embedding-3-small", "BAAI/bge-m3", "nomic-embed-text:v1.5", "m@512"])
def test_real_model_names_are_accepted(name):
    assert validate_model_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "x'; DROP TABLE chunk_embeddings; --", "a b", "-lead", "é", "x" * 201, None]
)
def test_names_that_could_break_out_of_a_literal_are_refused(name):
    with pytest.raises(IndexConfigError):
        validate_model_name(name)


def test_literals_double_quotes_and_refuse_nul():
    assert quote_literal("it's") == "'it''s'"
    assert quote_literal("a\\b") == "'a\\b'"
    with pytest.raises(IndexConfigError):
        quote_literal("a\x00b")
    with pytest.raises(IndexConfigError):
        quote_ident('x"; drop')


def test_dimensions_must_be_positive_integers_within_pgvector_limits():
    for bad in (0, -1, 16001, 1.5, True, "1536"):
        with pytest.raises(IndexConfigError):
            index_plan("m", bad)


@pytest.mark.parametrize(
    "raw, kb", [("512MB", 524288), ("2GB", 2097152), ("65536kB", 65536), (" 1 GB ", 1048576)]
)
def test_maintenance_work_mem_is_normalised_to_kilobytes(raw, kb):
    assert validate_pg_memory(raw) == f"{kb}kB"


@pytest.mark.parametrize("raw", ["", "lots", "512 MiB", "1; SET role", "10kB", "3TB"])
def test_maintenance_work_mem_outside_the_accepted_forms_is_refused(raw):
    with pytest.raises(IndexConfigError):
        validate_pg_memory(raw)


def test_split_model_name_recovers_the_api_model_and_requested_dimension():
    assert split_model_name("text-embedding-3-large@1024") == ("text-embedding-3-large", 1024)
    assert split_model_name("text-embedding-3-small") == ("text-embedding-3-small", None)
    assert split_model_name("org/model@v2") == ("org/model@v2", None)


def test_recall_counts_true_neighbours_found():
    exact = [(i, i / 10) for i in range(10)]
    assert recall_at_k(exact, exact, 10) == 1.0
    approx = [*exact[:8], (50, 0.95), (51, 0.96)]
    assert recall_at_k(approx, exact, 10) == pytest.approx(0.8)
    assert recall_at_k([], exact, 10) == 0.0
    assert recall_at_k([], [], 10) == 1.0


def test_recall_accepts_a_different_row_at_a_tied_last_distance():
    exact = [(1, 0.0), (2, 0.1), (3, 0.5), (4, 0.5)]
    assert recall_at_k([(1, 0.0), (2, 0.1), (9, 0.5)], exact, 3) == 1.0
    assert recall_at_k([(1, 0.0), (2, 0.1), (9, 0.51)], exact, 3) == pytest.approx(2 / 3)


def test_sensor_launches_once_per_change_and_again_after_changing_back():
    first = model_change_decision("B", "A", None)
    assert first.launch and first.cursor == "B"
    assert not model_change_decision("B", "A", first.cursor).launch
    settled = model_change_decision("B", "B", "B")
    assert not settled.launch and settled.cursor == "B"
    back = model_change_decision("A", "B", settled.cursor)
    assert back.launch and back.cursor == "A"
    assert not model_change_decision("A", "A", "A").launch
    again = model_change_decision("B", "A", "A")
    assert again.launch


def test_sensor_waits_for_a_first_active_model():
    decision = model_change_decision("B", None, None)
    assert not decision.launch and "no active" in decision.reason


def test_build_memory_holds_the_graph_within_the_operators_ceiling():
    plan = index_plan("text-embedding-3-small", 1536, "hnsw_halfvec")
    # 137,000 halfvecs of 1,536 dimensions (3,072 B) + 2,048 B of graph each, plus a quarter: ~0.84 GB.
    expected_kb = 137_000 * (1536 * 2 + 2048) * 1.25 / 1024
    assert hnsw_build_memory_kb(plan, 137_000, "2GB") == pytest.approx(expected_kb, rel=1e-3)
    assert hnsw_build_memory_kb(plan, 137_000, "512MB") == 512 * 1024
    assert hnsw_build_memory_kb(plan, 10, "2GB") == 64 * 1024
    # halfvec stores two bytes a dimension.
    large = index_plan("text-embedding-3-large", 3072, "hnsw_halfvec")
    assert hnsw_build_memory_kb(large, 1000, "2GB") == max(
        64 * 1024, 1000 * (3072 * 2 + 2048) * 5 // 4 // 1024
    )
    # Binary quantization keeps one bit a dimension (192 B for 1,536), the graph's links as many as ever.
    bq = index_plan("text-embedding-3-small", 1536, "hnsw_bq")
    assert hnsw_build_memory_kb(bq, 1_000_000, "8GB") == 1_000_000 * (192 + 2048) * 5 // 4 // 1024
    # IVFFlat's, against what pgvector itself required: tests/test_vector_index_kinds.py.


def test_auto_without_a_vector_count_means_halfvec_hnsw_whatever_the_dimensions():
    # Naming a model's indexes and planning an exact search: no count. With one, see
    # tests/test_vector_index_kinds.py (IVFFlat once the HNSW graph outgrows the build memory).
    assert {index_plan("m", d, "auto").kind for d in (256, 1023, 1024, 1536, 3072, 16000)} == {"hnsw_halfvec"}
    # An explicit kind is kept whatever the size.
    assert index_plan("m", 256, "hnsw_bq").kind == "hnsw_bq"
    assert index_plan("m", 1536, "ivfflat_halfvec").kind == "ivfflat_halfvec"
