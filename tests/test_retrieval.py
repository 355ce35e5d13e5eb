"""The application's retrieval contract (migration 0017) on real Postgres, as the application role: answers
against a brute-force numpy ranking, each filter, the plan through the model's HNSW index, a retired model
through its grace period, bad input refused by name, and the grants."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from pathlib import Path

import numpy as np
import psycopg
import pytest
import sqlalchemy as sa

from pipelines import hnsw, retrieval
from pipelines.hnsw import ensure_hnsw_index
from pipelines.lib.vector_index import INDEX_KINDS, index_plan, ivfflat_probes
from pipelines.models import drop_retired_embeddings, switch_active_model
from pipelines.search import search_by_vector

DIMS = 16
DOCS = 40
CHUNKS_PER_DOC = 10
APP = "rag_app"


def _doc(i: int) -> tuple[str, str, dict]:
    """(source, key, metadata) of document i: a quarter are table rows; lang alternates; one is 'rare'."""
    source = "table:faq" if i % 4 == 0 else "local"
    meta = {"lang": "ja" if i % 2 else "en", "category": "rare" if i == 7 else "common"}
    return source, f"doc-{i}.md", meta


def _load(engine: sa.Engine, model: str, seed: int, status: str) -> dict[int, np.ndarray]:
    """The model's vectors for every chunk (documents and chunks created on first use); chunk id -> vector."""
    rng = np.random.default_rng(seed)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO embedding_models (name, provider, model, dimensions, status)"
                " VALUES (:m, 'local', :m, :d, :s)"
            ),
            {"m": model, "d": DIMS, "s": status},
        )
        if not conn.execute(sa.text("SELECT count(*) FROM source_documents")).scalar_one():
            for i in range(DOCS):
                source, key, meta = _doc(i)
                doc_id = conn.execute(
                    sa.text(
                        "INSERT INTO source_documents (source, source_key, title, content, content_sha256, metadata)"
                        " VALUES (:s, :k, :t, 'x', :k, CAST(:m AS jsonb)) RETURNING id"
                    ),
                    {"s": source, "k": key, "t": f"Title {i}", "m": json.dumps(meta)},
                ).scalar_one()
                for c in range(CHUNKS_PER_DOC):
                    conn.execute(
                        sa.text(
                            "INSERT INTO document_chunks (document_id, chunk_index, content, content_sha256,"
                            " char_start, char_end, token_count, metadata)"
                            " VALUES (:d, :c, :t, :t, 0, 1, 1, CAST(:m AS jsonb))"
                        ),
                        {
                            "d": doc_id,
                            "c": c,
                            "t": f"chunk {i}-{c}",
                            "m": json.dumps({"heading_path": [f"Title {i}", f"Part {c}"]}),
                        },
                    )
        ids = conn.execute(sa.text("SELECT id FROM document_chunks ORDER BY id")).scalars().all()
        vectors = {cid: rng.standard_normal(DIMS).astype(np.float32) for cid in ids}
        conn.execute(
            sa.text(
                "INSERT INTO chunk_embeddings (chunk_id, model, embedding, content_sha256, token_count)"
                " SELECT :c, :m, :v, content_sha256, 1 FROM document_chunks WHERE id = :c"
            ),
            [{"c": cid, "m": model, "v": v} for cid, v in vectors.items()],
        )
    return vectors


def _documents(engine: sa.Engine) -> dict[int, tuple[str, dict]]:
    """chunk id -> (source, document metadata), read by the owner: the brute force's filter input."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT c.id, d.source, d.metadata FROM document_chunks c JOIN source_documents d"
                " ON d.id = c.document_id"
            )
        ).all()
    return {r.id: (r.source, r.metadata) for r in rows}


def brute_force(vectors, docs, query, k, keep=lambda _source, _meta: True, min_similarity=None):
    """(chunk id, cosine similarity) of the k nearest, by numpy over every vector the filter keeps."""
    ids = [cid for cid in vectors if keep(*docs[cid])]
    mat = np.stack([vectors[cid] for cid in ids]).astype(np.float64)
    q = np.asarray(query, dtype=np.float64)
    sims = mat @ q / (np.linalg.norm(mat, axis=1) * np.linalg.norm(q))
    order = sorted(range(len(ids)), key=lambda i: (-sims[i], ids[i]))[:k]
    hits = [(ids[i], float(sims[i])) for i in order]
    return [h for h in hits if min_similarity is None or h[1] >= min_similarity]


@pytest.fixture
def corpus(postgres):
    engine = postgres.engine
    vectors = _load(engine, "m-a", seed=1, status="active")
    ensure_hnsw_index(engine, "m-a", DIMS, "64MB", min_rows=0)
    with engine.begin() as conn:
        # The row counts a selective filter is measured against, as autovacuum keeps them.
        conn.exec_driver_sql("ANALYZE document_chunks")
    return engine, vectors, _documents(engine)


@contextlib.contextmanager
def as_app(engine: sa.Engine):
    """A connection whose transaction runs with the application role's privileges, rolled back at the end."""
    with engine.connect() as conn:
        conn.exec_driver_sql(f'SET LOCAL ROLE "{APP}"')
        try:
            yield conn
        finally:
            conn.rollback()


FILTERS = {
    "none": ({}, lambda _s, _m: True),
    "source": ({"source": "table:faq"}, lambda s, _m: s == "table:faq"),
    "markdown": ({"source_type": "markdown"}, lambda s, _m: s == "local"),
    "table": ({"source_type": "table"}, lambda s, _m: s.startswith("table:")),
    "metadata": ({"metadata": {"lang": "ja"}}, lambda _s, m: m.get("lang") == "ja"),
    "combined": (
        {"source_type": "markdown", "metadata": {"lang": "en"}},
        lambda s, m: s == "local" and m.get("lang") == "en",
    ),
    # One document of ten chunks: fewer rows than the index's candidates, so the exact fallback answers.
    "rare": ({"metadata": {"category": "rare"}}, lambda _s, m: m.get("category") == "rare"),
}


@pytest.mark.parametrize("kind", list(FILTERS))
def test_answers_equal_a_brute_force_ranking_for_each_filter(corpus, kind):
    engine, vectors, docs = corpus
    kwargs, keep = FILTERS[kind]
    queries = np.random.default_rng(99).standard_normal((8, DIMS))
    with as_app(engine) as conn:
        for q in queries:
            for k in (1, 5, 12):
                got = retrieval.search(conn, q, k, model="m-a", **kwargs)
                want = brute_force(vectors, docs, q, k, keep)
                assert [h.chunk_id for h in got] == [cid for cid, _ in want]
                assert [h.similarity for h in got] == pytest.approx([s for _, s in want], abs=1e-5)


def test_min_similarity_drops_the_hits_below_it(corpus):
    engine, vectors, docs = corpus
    q = np.random.default_rng(5).standard_normal(DIMS)
    threshold = brute_force(vectors, docs, q, 10)[4][1]  # the 5th best similarity: 5 of 10 stay
    with as_app(engine) as conn:
        got = retrieval.search(conn, q, 10, model="m-a", min_similarity=threshold)
    assert [h.chunk_id for h in got] == [
        c for c, _ in brute_force(vectors, docs, q, 10, min_similarity=threshold)
    ]
    assert len(got) == 5


def test_rows_carry_their_document_and_chunk(corpus):
    engine, vectors, _docs = corpus
    with as_app(engine) as conn:
        (hit,) = retrieval.search(conn, vectors[min(vectors)], 1, model="m-a")
    assert hit.chunk_id == min(vectors) and hit.similarity == pytest.approx(1.0, abs=1e-6)
    assert (hit.document_key, hit.chunk_index, hit.title) == ("doc-0.md", 0, "Title 0")
    assert hit.heading_path == ("Title 0", "Part 0") and hit.content == "chunk 0-0"
    assert (hit.source, hit.metadata) == ("table:faq", {"lang": "en", "category": "common"})


def test_same_ranking_as_the_pipelines_search(corpus):
    engine, _vectors, _docs = corpus
    for q in np.random.default_rng(3).standard_normal((5, DIMS)):
        ours = search_by_vector(engine, "m-a", DIMS, q, 7)
        with as_app(engine) as conn:
            contract = retrieval.search(conn, q, 7, model="m-a")
        assert [h.chunk_id for h in contract] == [h.chunk_id for h in ours]
        assert [h.similarity for h in contract] == pytest.approx([1 - h.distance for h in ours], abs=1e-9)


@pytest.mark.parametrize("index_kind", list(INDEX_KINDS))
def test_the_contract_follows_whichever_index_kind_is_built(corpus, monkeypatch, index_kind):
    """The same candidates and probes as the pipeline's search (whose kinds tests/test_vector_index_kinds.py
    checks against a brute force). Through a binary-quantized index halfvec's 4 x k candidates find about half
    the true top 10 here; 4 IVFFlat lists of 100 vectors probed one at a time (pgvector's default) miss what the
    pipeline's two probes find."""
    engine, vectors, docs = corpus
    monkeypatch.setattr(hnsw, "ivfflat_lists", lambda _rows: 4)
    built = ensure_hnsw_index(engine, "m-a", DIMS, "64MB", min_rows=0, kind=index_kind)
    assert built.created or index_kind == "hnsw_halfvec", built.note
    recalls: dict[str, list[float]] = {"contract": [], "pipeline": []}
    for q in np.random.default_rng(17).standard_normal((10, DIMS)):
        ours = search_by_vector(engine, "m-a", DIMS, q, 10)
        assert {h.index_kind for h in ours} == {index_kind}
        with as_app(engine) as conn:
            contract = retrieval.search(conn, q, 10, model="m-a")
            plan = retrieval.explain(conn, q, 10, model="m-a")
        assert f"Index Scan using {index_plan('m-a', DIMS, index_kind).index_name}" in plan, plan
        if INDEX_KINDS[index_kind].type_name == "halfvec":
            assert [h.chunk_id for h in contract] == [h.chunk_id for h in ours]
        truth = {cid for cid, _ in brute_force(vectors, docs, q, 10)}
        recalls["contract"].append(len(truth & {h.chunk_id for h in contract}) / 10)
        recalls["pipeline"].append(len(truth & {h.chunk_id for h in ours}) / 10)
    # Hamming distances over 16 bits tie often, so which tied candidates make the cut may differ between the two.
    assert np.mean(recalls["contract"]) >= np.mean(recalls["pipeline"]) - 0.05, recalls


@pytest.mark.parametrize("kind", [k for k in FILTERS if k != "rare"])
def test_the_plan_goes_through_the_models_hnsw_index_for_every_filter(corpus, kind):
    engine, vectors, _docs = corpus
    kwargs, _ = FILTERS[kind]
    with as_app(engine) as conn:
        plan = retrieval.explain(conn, vectors[min(vectors)], 5, model="m-a", **kwargs)
    assert f"Index Scan using {index_plan('m-a', DIMS).index_name} on chunk_embeddings" in plan, plan
    assert "Seq Scan" not in plan, plan


def test_a_filter_keeping_under_2_percent_of_the_chunks_is_answered_exactly(corpus):
    engine, vectors, docs = corpus
    with engine.begin() as conn:
        gone = conn.execute(
            sa.text(
                "DELETE FROM document_chunks c USING source_documents d WHERE d.id = c.document_id"
                " AND d.source_key = 'doc-7.md' AND c.chunk_index >= 5 RETURNING c.id"
            )
        ).scalars()
        for chunk_id in gone:
            del vectors[chunk_id]
    rare = {"metadata": {"category": "rare"}}  # 5 chunks of 395
    q = np.random.default_rng(12).standard_normal(DIMS)
    with as_app(engine) as conn:
        got = retrieval.search(conn, q, 3, model="m-a", **rare)
        plan = retrieval.explain(conn, q, 3, model="m-a", **rare)
    assert [h.chunk_id for h in got] == [c for c, _ in brute_force(vectors, docs, q, 3, FILTERS["rare"][1])]
    assert "hnsw" not in plan and "chunk_embeddings" in plan


def test_without_an_index_the_answer_is_exact_and_the_plan_says_so(postgres):
    engine = postgres.engine
    vectors = _load(engine, "m-a", seed=2, status="active")
    docs = _documents(engine)
    q = np.random.default_rng(4).standard_normal(DIMS)
    with as_app(engine) as conn:
        got = retrieval.search(conn, q, 6, model="m-a", source_type="markdown")
        plan = retrieval.explain(conn, q, 6, model="m-a")
    assert [h.chunk_id for h in got] == [
        c for c, _ in brute_force(vectors, docs, q, 6, FILTERS["markdown"][1])
    ]
    assert "hnsw" not in plan


def test_a_retired_model_is_served_through_its_grace_period_then_refused(corpus):
    engine, vectors_a, docs = corpus
    vectors_b = _load(engine, "m-b", seed=8, status="building")
    ensure_hnsw_index(engine, "m-b", DIMS, "64MB", min_rows=0)
    q = np.random.default_rng(6).standard_normal(DIMS)
    with as_app(engine) as conn, pytest.raises(retrieval.RetrievalError, match="'m-b' is still being built"):
        retrieval.search(conn, q, 5, model="m-b")

    assert switch_active_model(engine, "m-b").switched
    with as_app(engine) as conn:
        assert retrieval.active_model(conn) == retrieval.ActiveModel("m-b", DIMS, "local", "m-b")
        # A query embedded with the model that was active a moment ago still gets that model's neighbours.
        old = retrieval.search(conn, q, 5, model="m-a")
        new = retrieval.search(conn, q, 5, model="m-b")
    assert [h.chunk_id for h in old] == [c for c, _ in brute_force(vectors_a, docs, q, 5)]
    assert [h.chunk_id for h in new] == [c for c, _ in brute_force(vectors_b, docs, q, 5)]

    # A grace period that has not ended keeps the vectors, and readers keep them too.
    assert drop_retired_embeddings(engine, grace_days=7).total == 0
    with as_app(engine) as conn:
        assert len(retrieval.search(conn, q, 5, model="m-a")) == 5
    assert drop_retired_embeddings(engine, grace_days=0).deleted == {"m-a": len(vectors_a)}
    with as_app(engine) as conn, pytest.raises(retrieval.RetrievalError) as refused:
        retrieval.search(conn, q, 5, model="m-a")
    assert "'m-a' was retired" in str(refused.value) and "the active model is 'm-b'" in str(refused.value)


def test_a_retired_model_whose_clean_up_began_is_refused_not_answered_in_part(corpus):
    engine, _vectors, _docs = corpus
    _load(engine, "m-b", seed=8, status="building")
    switch_active_model(engine, "m-b")
    # What drop_retired_embeddings commits before it drops anything; the vectors are all still there.
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE embedding_models SET embeddings_dropping_at = now() WHERE name = 'm-a'"))
    with as_app(engine) as conn, pytest.raises(retrieval.RetrievalError, match="'m-a' was retired"):
        retrieval.search(conn, np.ones(DIMS), 5, model="m-a")


BAD_PYTHON = [
    ({"query_vector": []}, "non-empty"),
    ({"query_vector": [float("nan")] * DIMS}, "nan at position 0"),
    ({"query_vector": [0.0] * DIMS}, "all zeros"),
    ({"k": 0}, "k must be a whole number between 1 and 1000, got 0"),
    ({"k": 1001}, "got 1001"),
    ({"model": ""}, "model is required"),
    ({"source_type": "pdf"}, "source_type must be one of markdown, table, got 'pdf'"),
    ({"metadata": ["lang", "ja"]}, "metadata must be a mapping"),
    ({"min_similarity": float("nan")}, "min_similarity must be a number between -1 and 1"),
    ({"min_similarity": 1.5}, "got 1.5"),
]


@pytest.mark.parametrize(("override", "message"), BAD_PYTHON)
def test_bad_input_is_refused_by_name_before_the_database(override, message):
    args = {"query_vector": [1.0] * DIMS, "k": 5, "model": "m-a"} | override
    with pytest.raises(retrieval.RetrievalError, match=re.escape(message)):
        retrieval.search(None, args.pop("query_vector"), args.pop("k"), **args)  # type: ignore[arg-type]


def _vec(values) -> str:
    return "[" + ",".join(map(str, values)) + "]"


# What the database itself says to a caller who bypasses the Python checks: each refusal names the argument.
BAD_SQL = [
    ("CAST(:v AS vector)", {"v": "[]"}, "m-a", 5, "NULL", "at least 1 dimension"),
    ("CAST(:v AS vector)", {"v": "[NaN" + ",1" * (DIMS - 1) + "]"}, "m-a", 5, "NULL", "NaN not allowed"),
    (
        "CAST(:v AS vector)",
        {"v": _vec([1] * (DIMS - 1))},
        "m-a",
        5,
        "NULL",
        "15 dimensions but model 'm-a' has 16",
    ),
    ("CAST(:v AS vector)", {"v": _vec([0] * DIMS)}, "m-a", 5, "NULL", "all zeros"),
    (
        "CAST(:v AS vector)",
        {"v": _vec([1] * DIMS)},
        "m-x",
        5,
        "NULL",
        "unknown embedding model 'm-x'; the active model is 'm-a'",
    ),
    ("CAST(:v AS vector)", {"v": _vec([1] * DIMS)}, "m-a", 0, "NULL", "k must be between 1 and 1000, got 0"),
    ("CAST(:v AS vector)", {"v": _vec([1] * DIMS)}, "m-a", 5000, "NULL", "got 5000"),
    ("NULL", {}, "m-a", 5, "NULL", "query_embedding is null"),
    (
        "CAST(:v AS vector)",
        {"v": _vec([1] * DIMS)},
        "m-a",
        5,
        "'[\"ja\"]'",
        "metadata_filter must be a JSON object",
    ),
    (
        "CAST(:v AS vector)",
        {"v": _vec([1] * DIMS)},
        "m-a",
        5,
        "'{\"lang\": '",
        "invalid input syntax for type json",
    ),
]


@pytest.mark.parametrize(("vector", "params", "model", "k", "meta", "message"), BAD_SQL)
def test_bad_input_to_the_sql_contract_is_refused_by_name(corpus, vector, params, model, k, meta, message):
    engine, _vectors, _docs = corpus
    with as_app(engine) as conn, pytest.raises(sa.exc.DBAPIError) as refused:
        conn.execute(
            sa.text(
                f"SELECT * FROM retrieve_chunks({vector}, :m, :k, metadata_filter => CAST({meta} AS jsonb))"
            ),
            {"m": model, "k": k, **params},
        )
    assert message in str(refused.value.orig)
    # Refusals show nothing of the rows: no chunk text in the message.
    assert "chunk " not in str(refused.value.orig)


def test_the_application_role_calls_the_contract_and_still_cannot_read_the_vectors(corpus):
    engine, vectors, _docs = corpus
    with as_app(engine) as conn:
        assert len(retrieval.search(conn, vectors[min(vectors)], 3, model="m-a")) == 3
        for statement in (
            "SELECT 1 FROM chunk_embeddings LIMIT 1",
            "SELECT 1 FROM embedding_models LIMIT 1",
            "SELECT * FROM retrieval_statement(CAST('[1]' AS vector), 'm-a', 1, NULL, NULL, NULL, NULL, false)",
        ):
            savepoint = conn.begin_nested()
            with pytest.raises(sa.exc.DBAPIError) as denied:
                conn.exec_driver_sql(statement)
            savepoint.rollback()
            assert denied.value.orig.sqlstate == "42501", statement
    # Nobody else may call it: functions are PUBLIC's by default, these are the application's only.
    with engine.connect() as conn:
        conn.exec_driver_sql('SET LOCAL ROLE "rag_analyst"')
        with pytest.raises(sa.exc.DBAPIError) as denied:
            conn.exec_driver_sql("SELECT * FROM active_embedding_model()")
        assert denied.value.orig.sqlstate == "42501"


def test_a_plain_psycopg_connection_and_the_async_variant_get_the_same_answer(corpus, database_url):
    _engine, vectors, docs = corpus
    q = np.random.default_rng(11).standard_normal(DIMS)
    want = [c for c, _ in brute_force(vectors, docs, q, 5, FILTERS["table"][1])]
    url = sa.make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url) as conn:
        conn.execute(f'SET ROLE "{APP}"')
        assert [h.chunk_id for h in retrieval.search(conn, q, 5, model="m-a", source_type="table")] == want

    async def run():
        async with await psycopg.AsyncConnection.connect(url) as aconn:
            await aconn.execute(f'SET ROLE "{APP}"')
            model = await retrieval.active_model_async(aconn)
            assert model is not None
            hits = await retrieval.search_async(aconn, q, 5, model=model.name, source_type="table")
            with pytest.raises(retrieval.RetrievalError, match="unknown embedding model 'nope'"):
                await retrieval.search_async(aconn, q, 5, model="nope")
            return [h.chunk_id for h in hits]

    assert asyncio.run(run()) == want


def test_the_docs_show_the_sql_and_python_their_commands_run():
    """docs/querying.md runs docs/querying.sql and docs/querying.py; what it shows of them is in them."""
    docs = Path(__file__).resolve().parents[1] / "docs"
    page = (docs / "querying.md").read_text()
    for lang, ran in (("sql", docs / "querying.sql"), ("python", docs / "querying.py")):
        blocks = re.findall(rf"```{lang}\n(.*?)```", page, re.S)
        assert blocks, lang
        for paragraph in "\n\n".join(blocks).split("\n\n"):
            assert paragraph.strip() in ran.read_text(), paragraph


def test_the_settings_are_the_functions_own_and_the_callers_stay(corpus):
    engine, vectors, _docs = corpus
    with engine.connect() as conn:
        config = conn.execute(
            sa.text("SELECT proconfig FROM pg_proc WHERE proname = 'retrieve_chunks'")
        ).scalar_one()
        assert {"hnsw.iterative_scan=relaxed_order", "enable_seqscan=off", "jit=off"} <= set(config)
        assert any(c.startswith("search_path=") and c.endswith("pg_temp") for c in config)
    with as_app(engine) as conn:
        conn.exec_driver_sql("SELECT CAST('[1]' AS vector)")  # pgvector's settings exist once it is loaded
        before = conn.execute(
            sa.text("SELECT current_setting('enable_seqscan'), current_setting('hnsw.ef_search')")
        ).one()
        retrieval.search(conn, vectors[min(vectors)], 30, model="m-a", source_type="table")
        after = conn.execute(
            sa.text("SELECT current_setting('enable_seqscan'), current_setting('hnsw.ef_search')")
        ).one()
    assert before == after == ("on", "40")


def test_the_contract_probes_as_many_ivfflat_lists_as_the_pipelines_search(postgres):
    with postgres.engine.connect() as conn:
        sql_probes = conn.exec_driver_sql(
            "SELECT ivfflat_probes_for(n) FROM generate_series(1, 5000) n"
        ).scalars()
        assert list(sql_probes) == [ivfflat_probes(n) for n in range(1, 5001)]
