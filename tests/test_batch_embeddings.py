"""Re-embedding through the OpenAI Batch API against real Postgres and a fake Batch API server, driven the
way the daemon drives it: the sensor is evaluated tick by tick and the runs it requests are executed."""

import threading

import dagster as dg
import numpy as np
import pytest
import sqlalchemy as sa

from assets.batch_embeddings import batch_embedding_apply_job, cancel_embedding_batches_job
from assets.embeddings import chunk_embeddings, embedding_index
from assets.reembedding import embedding_model_switch, reembedding
from location.batch_sensors import batch_embedding_sensor
from location.resources import batch_api_settings
from pipelines import batch_embeddings as batch_module
from pipelines.batch_embeddings import apply_batch, list_batches
from pipelines.embedders import EmbedLimits
from pipelines.lib.vector_index import index_name_for
from pipelines.models import active_model, get_model
from resources.embedders import EmbedderResource
from resources.postgres import PostgresResource
from testing.chunk_seed import add_chunks, chunk_texts
from testing.fake_openai import fake_vector
from testing.fake_openai_batch import BatchScript, FakeOpenAIBatch
from tests.conftest import _database_url

LOCAL = "local-hash-v1"
SMALL = "text-embedding-3-small"


def embedder_for(fake, **kw) -> EmbedderResource:
    kw.setdefault("model", SMALL)
    # The EMBEDDING_BATCH_* a test sets, read as the code location reads them at start-up.
    kw.setdefault("batch_api", batch_api_settings())
    return EmbedderResource(provider="openai", api_key="sk-test", base_url=fake.base_url, max_retries=0, **kw)


def reembed(postgres, embedder, **run_config):
    return dg.materialize(
        [reembedding, embedding_model_switch],
        resources={"postgres": postgres, "embedder": embedder},
        run_config={"ops": {"reembedding": {"config": run_config}}} if run_config else None,
        raise_on_error=False,
    )


def checks(result) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def drive(postgres, embedder, max_ticks: int = 20) -> list[str]:
    """Evaluate the sensor until it has nothing more to launch, running what it requests (each run key
    once, as the daemon does); returns the jobs run, in order."""
    launched: set[str] = set()
    ran: list[str] = []
    for _ in range(max_ticks):
        ctx = dg.build_sensor_context(resources={"postgres": postgres, "embedder": embedder})
        out = batch_embedding_sensor(ctx)
        new = [r for r in (out if isinstance(out, list) else []) if r.run_key not in launched]
        if not new:
            with postgres.connect() as conn:
                if not list_batches(conn, "open"):
                    return ran
            continue
        for request in new:
            launched.add(request.run_key)
            ran.append(request.job_name)
            if request.job_name == batch_embedding_apply_job.name:
                result = batch_embedding_apply_job.execute_in_process(
                    run_config=request.run_config, resources={"postgres": postgres, "embedder": embedder}
                )
                assert result.success
            else:
                reembed(postgres, embedder)
    raise AssertionError(f"the batches did not settle in {max_ticks} ticks; ran {ran}")


def vectors_by_text(postgres, model: str) -> dict[str, np.ndarray]:
    with postgres.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT c.content, e.embedding FROM chunk_embeddings e JOIN document_chunks c ON c.id = e.chunk_id"
                " WHERE e.model = :m AND e.content_sha256 = c.content_sha256"
            ),
            {"m": model},
        ).all()
    return {
        text: np.asarray(vec.to_numpy() if hasattr(vec, "to_numpy") else vec, dtype=np.float32)
        for text, vec in rows
    }


@pytest.fixture
def batch_env(monkeypatch):
    monkeypatch.setenv("EMBEDDING_BATCH_API", "on")
    monkeypatch.setenv("EMBEDDING_BATCH_POLL_S", "0")
    return monkeypatch


def seed(postgres, texts: list[str]) -> None:
    """The texts as chunks, embedded by the local model, which is therefore active."""
    with postgres.connect() as conn:
        add_chunks(conn, texts, per_document=50)
    assert dg.materialize(
        [chunk_embeddings], resources={"postgres": postgres, "embedder": EmbedderResource(provider="local")}
    ).success


@pytest.fixture
def corpus(postgres):
    """The demo-sized corpus: 60 chunks, two of which share a text."""
    texts = chunk_texts(59)
    seed(postgres, [*texts, texts[0]])
    return texts


@pytest.fixture
def sync_postgres(pg_server_url) -> PostgresResource:
    """A second fresh database, for the synchronous path's run over the same corpus."""
    name = "sync_twin_" + str(threading.get_ident())
    admin = sa.create_engine(pg_server_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE template_ragetl')
    admin.dispose()
    return PostgresResource(database_url=_database_url(pg_server_url, name))


def test_batch_reembedding_equals_the_synchronous_path_and_readers_see_one_model(
    postgres, corpus, batch_env, sync_postgres
):
    seen: list[tuple] = []
    stop = threading.Event()

    def reader():
        engine = sa.create_engine(postgres.url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        with engine.connect() as conn:
            while not stop.is_set():
                seen.append(
                    tuple(
                        conn.execute(
                            sa.text(
                                "SELECT count(*), count(DISTINCT model), min(model) FROM active_chunk_embeddings"
                            )
                        ).one()
                    )
                )
        engine.dispose()

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        with FakeOpenAIBatch() as fake:
            embedder = embedder_for(fake)
            submitted = reembed(postgres, embedder)
            # The run submits and ends: the switch waits behind the blocking coverage check.
            assert checks(submitted) == {"covers_every_chunk": False}
            assert submitted.asset_materializations_for_node("embedding_model_switch") == []
            assert fake.request_count == 0 and len(fake.batches) == 1
            meta = {
                k: v.value
                for k, v in submitted.asset_materializations_for_node("reembedding")[0].metadata.items()
            }
            assert meta["estimated_cost_usd"] == pytest.approx(meta["sync_cost_usd"] / 2)
            assert meta["saving_usd"] == pytest.approx(meta["sync_cost_usd"] / 2) and meta["saving_usd"] > 0
            with postgres.connect() as conn:
                assert active_model(conn).name == LOCAL
                row = list_batches(conn)[0]
                assert (row.texts, row.status) == (59, "validating")

            ran = drive(postgres, embedder)
            assert ran == ["batch_embedding_apply_job", "reembedding_job"]
            # Every text went through the batch exactly once; nothing through the synchronous endpoint.
            assert sorted(fake.batch_texts) == sorted(corpus)
            assert fake.request_count == 0
    finally:
        stop.set()
        thread.join()
    with postgres.connect() as conn:
        assert active_model(conn).name == SMALL
    assert {(count, distinct) for count, distinct, _ in seen} == {(60, 1)}
    assert {m for _, _, m in seen} == {LOCAL, SMALL}

    batch_env.setenv("EMBEDDING_BATCH_API", "off")
    seed(sync_postgres, [*corpus, corpus[0]])
    with FakeOpenAIBatch() as fake:
        assert reembed(sync_postgres, embedder_for(fake)).success
        assert fake.batches == {} and sorted(fake.texts_embedded) == sorted(corpus)
    batch_vectors = vectors_by_text(postgres, SMALL)
    sync_vectors = vectors_by_text(sync_postgres, SMALL)
    assert set(batch_vectors) == set(sync_vectors) == set(corpus)
    for text in corpus:
        assert np.array_equal(batch_vectors[text], sync_vectors[text])
        assert np.allclose(batch_vectors[text], fake_vector(text, 1536), atol=1e-6)


def test_few_thousand_chunks_over_several_files_with_broken_lines_retried_synchronously(postgres, batch_env):
    texts = chunk_texts(3000, seed=3)
    seed(postgres, texts)
    batch_env.setenv("EMBEDDING_BATCH_MAX_REQUESTS_PER_FILE", "20")
    with FakeOpenAIBatch() as fake:
        # 3000 texts in requests of 50 → 60 requests → 3 files of 20 requests, one batch each.
        fake.script(BatchScript(malformed_line=0, duplicate_line=1), BatchScript(wrong_dim_line=2))
        embedder = embedder_for(fake, max_batch_inputs=50)
        assert checks(reembed(postgres, embedder)) == {"covers_every_chunk": False}
        assert len(fake.batches) == 3
        ran = drive(postgres, embedder)
        assert ran.count("batch_embedding_apply_job") == 3 and ran[-1] == "reembedding_job"
        with postgres.connect() as conn:
            rows = {r.batch_id: r for r in list_batches(conn)}
            assert active_model(conn).name == SMALL
        first, second, _ = sorted(rows.values(), key=lambda r: r.id)
        # The malformed first line and the wrong-dimension third line each failed one request of 50 texts;
        # the repeated line was ignored, not written twice.
        assert (first.texts_written, first.texts_failed) == (950, 50)
        assert (second.texts_written, second.texts_failed) == (950, 50)
        assert "answered twice" in first.error and "not valid JSON" in first.error
        # Those 100 texts, a small remainder, went through the synchronous endpoint, once each.
        assert len(fake.texts_embedded) == 100 and len(set(fake.texts_embedded)) == 100
    vectors = vectors_by_text(postgres, SMALL)
    assert set(vectors) == set(texts)
    for text in texts[::97]:
        assert np.allclose(vectors[text], fake_vector(text, 1536), atol=1e-6)


def test_expired_batch_keeps_what_it_finished_and_the_rest_goes_into_a_new_batch(postgres, corpus, batch_env):
    batch_env.setenv("EMBEDDING_BATCH_MIN_TOKENS", "1")  # even a remainder goes through the Batch API
    with FakeOpenAIBatch() as fake:
        fake.script(BatchScript(states=("validating", "in_progress", "expired"), answered_fraction=0.5))
        embedder = embedder_for(fake, max_batch_inputs=10)
        reembed(postgres, embedder)
        drive(postgres, embedder)
        assert len(fake.batches) == 2
        with postgres.connect() as conn:
            expired, second = sorted(list_batches(conn), key=lambda r: r.id)
            assert (expired.status, expired.texts_written, expired.texts_failed) == ("expired", 30, 0)
            assert (second.status, second.texts, second.texts_written) == ("completed", 29, 29)
            # Billed at the batch price: half the synchronous price of the tokens the output reports.
            assert second.tokens > 0 and float(second.cost_usd) == pytest.approx(
                second.tokens * 0.02 / 1e6 / 2
            )
            # Released texts are not failures: no attempt was counted against them.
            assert conn.execute(sa.text("SELECT count(*) FROM embedding_errors")).scalar_one() == 0
            assert active_model(conn).name == SMALL
        assert sorted(fake.batch_texts) == sorted(corpus)


@pytest.mark.usefixtures("corpus", "batch_env")
def test_failed_batch_records_errors_and_is_retried(postgres):
    with FakeOpenAIBatch() as fake:
        fake.script(BatchScript(states=("validating", "failed")))
        embedder = embedder_for(fake)
        reembed(postgres, embedder)
        drive(postgres, embedder)
        with postgres.connect() as conn:
            failed = list_batches(conn)[-1]
            assert failed.status == "failed" and "scripted validation failure" in failed.error
            assert failed.texts_failed == 59
            assert active_model(conn).name == SMALL  # the small remainder was finished synchronously
        assert len(fake.texts_embedded) == 59


@pytest.mark.usefixtures("corpus", "batch_env")
def test_poisoned_request_lands_in_embedding_errors_and_blocks_the_switch(postgres):
    with postgres.connect() as conn:
        add_chunks(conn, ["this chunk holds poison for the model"], source="bad")
    with FakeOpenAIBatch() as fake:
        embedder = embedder_for(fake, max_batch_inputs=10)
        reembed(postgres, embedder)
        drive(postgres, embedder)
        with postgres.connect() as conn:
            errors = conn.execute(
                sa.text("SELECT error FROM embedding_errors WHERE model = :m"), {"m": SMALL}
            ).all()
            assert active_model(conn).name == LOCAL and get_model(conn, SMALL).status == "building"
    # The request holding the poison failed in the batch (HTTP 400 line of the error file), then its texts
    # were retried synchronously, where the poison alone failed again.
    assert len(errors) == 1 and "HTTP 400" in errors[0].error


@pytest.mark.usefixtures("corpus", "batch_env")
def test_cancel_job_cancels_open_batches_and_their_finished_part_is_applied(postgres):
    with FakeOpenAIBatch() as fake:
        fake.script(BatchScript(states=("validating", "in_progress", "in_progress", "completed")))
        embedder = embedder_for(fake, max_batch_inputs=10)
        reembed(postgres, embedder)
        resources = {"postgres": postgres, "embedder": embedder}
        assert cancel_embedding_batches_job.execute_in_process(resources=resources).success
        assert fake.cancels == list(fake.batches)
        ran = drive(postgres, embedder)
        assert ran == ["batch_embedding_apply_job"]  # applied, and no new submission after a cancel
        with postgres.connect() as conn:
            batch = list_batches(conn)[0]
            assert batch.status == "cancelled" and batch.texts_written == 30
            assert active_model(conn).name == LOCAL


@pytest.mark.usefixtures("corpus", "batch_env")
def test_apply_is_once_only_and_resumes_after_a_crash(postgres, monkeypatch):
    import openai

    with FakeOpenAIBatch() as fake:
        embedder = embedder_for(fake, max_batch_inputs=10)
        reembed(postgres, embedder)
        client = openai.OpenAI(api_key="sk-test", base_url=fake.base_url, max_retries=0)
        with postgres.connect() as conn:
            for _ in range(3):
                batch_module.poll_batches(conn, client, EmbedLimits(poll_initial_s=0))
            batch_id = list_batches(conn, "ready")[0].batch_id

        real_write = batch_module.write_embeddings
        calls = {"n": 0}

        def crash_on_second(*args, **kw):
            calls["n"] += 1
            if calls["n"] == 2:
                raise RuntimeError("killed mid-write")
            return real_write(*args, **kw)

        monkeypatch.setattr(batch_module, "WRITE_GROUP", 20)
        monkeypatch.setattr(batch_module, "write_embeddings", crash_on_second)
        with postgres.connect() as conn, pytest.raises(RuntimeError, match="killed"):
            apply_batch(conn, client, batch_id)
        monkeypatch.setattr(batch_module, "write_embeddings", real_write)
        with postgres.connect() as conn:
            # The first group's vectors were rolled back with the rest: nothing half-applied.
            assert (
                conn.execute(
                    sa.text("SELECT count(*) FROM chunk_embeddings WHERE model = :m"), {"m": SMALL}
                ).scalar_one()
                == 0
            )
            assert list_batches(conn, "ready")[0].batch_id == batch_id

        results = []

        def apply():
            with postgres.connect() as conn:
                results.append(apply_batch(conn, client, batch_id))

        threads = [threading.Thread(target=apply) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(r.already_applied for r in results) == [False, True, True]
        assert next(r for r in results if not r.already_applied).chunks_written == 60
        client.close()


@pytest.mark.usefixtures("corpus")
def test_polling_backs_off_per_batch(postgres, batch_env):
    batch_env.setenv("EMBEDDING_BATCH_POLL_S", "3600")
    batch_env.setenv("EMBEDDING_BATCH_POLL_MAX_S", "86400")
    with FakeOpenAIBatch() as fake:
        embedder = embedder_for(fake)
        reembed(postgres, embedder)
        for _ in range(3):
            batch_embedding_sensor(
                dg.build_sensor_context(resources={"postgres": postgres, "embedder": embedder})
            )
        (batch,) = fake.batches.values()
        assert batch.retrieves == 0  # not due for an hour
        with postgres.connect() as conn:
            conn.execute(sa.text("UPDATE embedding_batches SET next_poll_at = now()"))
            conn.commit()
        batch_embedding_sensor(
            dg.build_sensor_context(resources={"postgres": postgres, "embedder": embedder})
        )
        batch_embedding_sensor(
            dg.build_sensor_context(resources={"postgres": postgres, "embedder": embedder})
        )
        assert batch.retrieves == 1
        with postgres.connect() as conn:
            delay = conn.execute(
                sa.text("SELECT extract(epoch FROM next_poll_at - updated_at) FROM embedding_batches")
            ).scalar_one()
        assert delay == pytest.approx(7200, abs=5)  # doubled after the first poll


@pytest.mark.usefixtures("corpus", "batch_env")
def test_budget_uses_the_batch_price(postgres):
    with FakeOpenAIBatch() as fake:
        with postgres.connect() as conn:
            estimated = conn.execute(
                sa.text(
                    "SELECT sum(token_count) FROM (SELECT DISTINCT content_sha256, token_count FROM document_chunks) t"
                )
            ).scalar_one()
        assert estimated > 0
        sync_cost = estimated * 0.02 / 1e6
        # Over the batch price but under the synchronous one: refused before any upload.
        refused = reembed(postgres, embedder_for(fake, budget_usd=sync_cost * 0.4))
        assert not refused.success and fake.files == {}
        # Under the synchronous price, over the batch price: the Batch API fits the budget.
        allowed = reembed(postgres, embedder_for(fake, budget_usd=sync_cost * 0.6))
        assert checks(allowed) == {"covers_every_chunk": False} and len(fake.batches) == 1


@pytest.mark.usefixtures("corpus", "batch_env")
def test_local_provider_ignores_batch_mode(postgres):
    result = reembed(postgres, EmbedderResource(provider="local", dimensions=128))
    assert result.success
    with postgres.connect() as conn:
        assert list_batches(conn) == [] and active_model(conn).name == "local-hash-v1@128"


def test_first_embedding_of_a_corpus_through_the_batch_api_then_nightly_top_ups_stay_synchronous(
    postgres, batch_env
):
    batch_env.setenv("EMBEDDING_BATCH_API", "auto")
    batch_env.setenv("EMBEDDING_BATCH_MIN_TOKENS", "1")
    texts = chunk_texts(40, seed=5)
    with postgres.connect() as conn:
        add_chunks(conn, texts)
    with FakeOpenAIBatch() as fake:
        embedder = embedder_for(fake)
        first = dg.materialize([chunk_embeddings], resources={"postgres": postgres, "embedder": embedder})
        assert first.success and fake.request_count == 0 and len(fake.batches) == 1
        # The first model is active from the start; once its batch is applied, nothing is left to resume.
        assert drive(postgres, embedder) == ["batch_embedding_apply_job"]
        assert fake.request_count == 0
        vectors = vectors_by_text(postgres, SMALL)
        assert set(vectors) == set(texts)
        assert all(np.allclose(vectors[t], fake_vector(t, 1536), atol=1e-6) for t in texts)

        late = chunk_texts(3, seed=6, prefix="late")
        with postgres.connect() as conn:
            add_chunks(conn, late, source="late")
        assert dg.materialize(
            [chunk_embeddings, embedding_index], resources={"postgres": postgres, "embedder": embedder}
        ).success
        assert sorted(fake.texts_embedded) == sorted(late) and len(fake.batches) == 1
    with postgres.connect() as conn:
        index = index_name_for(SMALL, 1536)
        assert conn.execute(
            sa.text("SELECT 1 FROM pg_indexes WHERE indexname = :n"), {"n": index}
        ).scalar_one()


@pytest.mark.usefixtures("corpus")
def test_auto_mode_below_the_threshold_is_the_synchronous_path_and_counts_an_oversize_text_once(
    postgres, batch_env
):
    batch_env.setenv("EMBEDDING_BATCH_API", "auto")
    with postgres.connect() as conn:
        add_chunks(conn, ["word " * 40_000], source="huge")
    with FakeOpenAIBatch() as fake:
        result = reembed(postgres, embedder_for(fake))
        assert fake.batches == {} and fake.request_count > 0
    assert checks(result)["covers_every_chunk"] is False
    with postgres.connect() as conn:
        assert conn.execute(sa.text("SELECT attempts FROM embedding_errors")).scalars().all() == [1]


@pytest.mark.usefixtures("batch_env")
def test_tldr_pages_reembedded_through_batches_get_the_synchronous_vectors(postgres):
    """The real tldr pages (the sample shipped in tests/data), ingested with the local model, then
    re-embedded in batch mode: every chunk ends with the vector the synchronous endpoint gives its text."""
    from assets.chunks import document_chunks
    from assets.sources import source_documents
    from resources.sources import ContentSourcesResource
    from testing.corpus import TLDR_SAMPLE

    first = dg.materialize(
        [source_documents, document_chunks, chunk_embeddings],
        resources={
            "postgres": postgres,
            "content_sources": ContentSourcesResource(content_dir=str(TLDR_SAMPLE)),
            "embedder": EmbedderResource(provider="local"),
        },
    )
    assert first.success
    with FakeOpenAIBatch() as fake:
        embedder = embedder_for(fake)
        assert checks(reembed(postgres, embedder)) == {"covers_every_chunk": False}
        assert drive(postgres, embedder) == ["batch_embedding_apply_job", "reembedding_job"]
        assert fake.request_count == 0
    with postgres.connect() as conn:
        assert active_model(conn).name == SMALL
        texts = conn.execute(sa.text("SELECT DISTINCT content FROM document_chunks")).scalars().all()
    vectors = vectors_by_text(postgres, SMALL)
    assert set(vectors) == set(texts) and len(texts) > 150
    for text in texts:
        assert np.allclose(vectors[text], fake_vector(text, 1536), atol=1e-6)
