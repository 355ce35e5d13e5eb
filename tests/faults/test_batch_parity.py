"""The Batch API path treats a refused configuration and abandoned chunks as the synchronous path does, and
takes its settings from the resource that build_resources fills from EMBEDDING_BATCH_*."""

from __future__ import annotations

import dagster as dg
import pytest
import sqlalchemy as sa

from assets.batch_embeddings import batch_embedding_apply_job, cancel_embedding_batches_job
from location.batch_sensors import batch_embedding_sensor
from location.resources import build_resources
from pipelines.batch_embeddings import BatchConfigError, list_batches
from pipelines.models import active_model
from resources.batch_api import BatchApiSettings
from resources.embedders import EmbedderResource
from testing import fake_openai_batch
from testing.chunk_seed import add_chunks, chunk_texts
from testing.fake_openai_batch import BatchScript, FakeOpenAIBatch
from tests.test_batch_embeddings import SMALL, drive, reembed, seed

KEY = "sk-batch-parity-secret-0123456789"
REFUSALS = [
    (401, "Incorrect API key provided: {key}"),
    (403, "Key {key} lacks the permission api.batch.write"),
    (404, "The model does not exist or key {key} has no access to it"),
]
SETTINGS = BatchApiSettings(mode="on", min_tokens=1, poll_initial_s=0)


@pytest.fixture
def corpus(postgres) -> list[str]:
    """60 chunks (two share a text) embedded by the local model, which is therefore active."""
    texts = chunk_texts(59)
    seed(postgres, [*texts, texts[0]])
    return texts


def _embedder(fake: FakeOpenAIBatch, **kw) -> EmbedderResource:
    return EmbedderResource(
        provider="openai",
        model=SMALL,
        api_key=KEY,
        base_url=fake.base_url,
        max_retries=0,
        batch_api=SETTINGS,
        **kw,
    )


def _failure_text(result: dg.ExecuteInProcessResult) -> str:
    return " ".join(
        e.step_failure_data.error.message
        for e in result.all_events
        if e.is_step_failure and e.step_failure_data.error is not None
    )


def _count(postgres, sql: str) -> int:
    with postgres.connect() as conn:
        return conn.execute(sa.text(sql)).scalar_one()


def _stored_text(postgres) -> str:
    with postgres.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT coalesce(string_agg(coalesce(error, ''), ' '), '') FROM embedding_batches")
        ).scalar_one()
        errors = conn.execute(
            sa.text("SELECT coalesce(string_agg(error, ' '), '') FROM embedding_errors")
        ).scalar_one()
    return rows + errors


@pytest.mark.parametrize("status,message", REFUSALS, ids=[str(s) for s, _ in REFUSALS])
def test_a_refused_submission_fails_loudly_costs_no_attempt_and_keeps_the_key_out(
    postgres, corpus, status, message
):
    with FakeOpenAIBatch() as fake:
        embedder = _embedder(fake)
        fake.refusal = (status, message)
        for _ in range(3):
            result = reembed(postgres, embedder)
            text = _failure_text(result)
            assert not result.success
            assert f"HTTP {status}" in text and "OPENAI_API_KEY" in text and "no text was charged" in text
            assert KEY not in text
        assert KEY not in _stored_text(postgres)
        assert _count(postgres, "SELECT count(*) FROM embedding_errors") == 0
        # The right configuration then submits every text: none was charged for the refusals.
        fake.refusal = None
        reembed(postgres, embedder)
        assert drive(postgres, embedder)[0] == "batch_embedding_apply_job"
        with postgres.connect() as conn:
            assert active_model(conn).name == SMALL
    assert sorted(fake.batch_texts) == sorted(set(corpus))


@pytest.mark.usefixtures("corpus")
@pytest.mark.parametrize("status,message", REFUSALS, ids=[str(s) for s, _ in REFUSALS])
def test_refusals_while_following_a_batch_fail_loudly_and_apply_nothing(postgres, status, message):
    with FakeOpenAIBatch() as fake:
        fake.script(BatchScript(states=("validating", "completed")))
        embedder = _embedder(fake)
        reembed(postgres, embedder)
        resources = {"postgres": postgres, "embedder": embedder}
        fake.refusal = (status, message)
        # The sensor's poll: the tick fails (visible in the UI) rather than logging and carrying on.
        with pytest.raises(BatchConfigError) as polled:
            batch_embedding_sensor(dg.build_sensor_context(resources=resources))
        assert f"HTTP {status}" in str(polled.value) and KEY not in str(polled.value)
        cancelled = cancel_embedding_batches_job.execute_in_process(resources=resources, raise_on_error=False)
        assert not cancelled.success and KEY not in _failure_text(cancelled)
        assert f"HTTP {status}" in _failure_text(cancelled)
        fake.refusal = None
        batch_embedding_sensor(dg.build_sensor_context(resources=resources))  # polled: completed
        with postgres.connect() as conn:
            [ready] = list_batches(conn, "ready")
        config = {"ops": {"apply_embedding_batches": {"config": {"batch_ids": [ready.batch_id]}}}}
        fake.refusal = (status, message)
        applied = batch_embedding_apply_job.execute_in_process(
            run_config=config, resources=resources, raise_on_error=False
        )
        assert not applied.success
        assert f"HTTP {status}" in _failure_text(applied) and KEY not in _failure_text(applied)
        assert _count(postgres, "SELECT count(*) FROM embedding_errors") == 0
        assert _count(postgres, f"SELECT count(*) FROM chunk_embeddings WHERE model = '{SMALL}'") == 0
        assert KEY not in _stored_text(postgres)
        # Once the key is right, the same batch is applied in full.
        fake.refusal = None
        assert batch_embedding_apply_job.execute_in_process(run_config=config, resources=resources).success
        assert _count(postgres, f"SELECT count(*) FROM chunk_embeddings WHERE model = '{SMALL}'") == 60


@pytest.mark.usefixtures("corpus")
def test_retry_abandoned_resubmits_abandoned_chunks_through_the_batch_api(postgres, monkeypatch):
    with postgres.connect() as conn:
        add_chunks(conn, ["this chunk holds poison for the model"], source="bad")
    with FakeOpenAIBatch() as fake:
        # One text per request, so that the poisoned request fails alone.
        embedder = _embedder(fake, max_batch_inputs=1)
        # The poisoned text fails in every batch it is in until its attempts are used up: it is abandoned.
        reembed(postgres, embedder, max_attempts=1)
        drive(postgres, embedder)
        only_poison = "SELECT count(*) FROM embedding_errors WHERE attempts >= 1"
        assert _count(postgres, only_poison) == 1
        fake.batch_texts.clear()
        batches = len(fake.batches)
        monkeypatch.setattr(fake_openai_batch, "POISON", "a marker no text contains")
        # Without the flag nothing is sent for it; with it, it goes into a new batch and the model switches.
        reembed(postgres, embedder, max_attempts=1)
        assert fake.batch_texts == [] and len(fake.batches) == batches
        reembed(postgres, embedder, max_attempts=1, retry_abandoned=True)
        assert len(fake.batches) == batches + 1
        newest = list(fake.batches.values())[-1]
        assert fake.files[newest.input_file_id]["content"].count(b"poison") == 1
        drive(postgres, embedder)
        assert fake.batch_texts == ["this chunk holds poison for the model"]
        assert fake.texts_embedded == []  # through the Batch API, not the synchronous endpoint
        with postgres.connect() as conn:
            assert active_model(conn).name == SMALL


def test_batch_settings_come_from_the_environment_through_build_resources(monkeypatch):
    for name, value in {
        "EMBEDDING_BATCH_API": " Auto ",
        "EMBEDDING_BATCH_MIN_TOKENS": "5000",
        "EMBEDDING_BATCH_MAX_REQUESTS_PER_FILE": "7",
        "EMBEDDING_BATCH_MAX_FILE_BYTES": "123456",
        "EMBEDDING_BATCH_POLL_S": "5",
        "EMBEDDING_BATCH_POLL_MAX_S": "50",
    }.items():
        monkeypatch.setenv(name, value)
    embedder = build_resources()["embedder"]
    assert isinstance(embedder, EmbedderResource)
    assert embedder.batch_api == BatchApiSettings(
        mode="auto",
        min_tokens=5000,
        max_requests_per_file=7,
        max_file_bytes=123456,
        poll_initial_s=5,
        poll_max_s=50,
    )
    # Read once, at start-up: a later change of the environment does not reach a built resource.
    monkeypatch.setenv("EMBEDDING_BATCH_API", "on")
    assert embedder.batch_api.mode == "auto"
    monkeypatch.setenv("EMBEDDING_BATCH_API", "sometimes")
    with pytest.raises(ValueError, match="EMBEDDING_BATCH_API must be one of"):
        build_resources()
    monkeypatch.setenv("EMBEDDING_BATCH_API", "off")
    monkeypatch.setenv("EMBEDDING_BATCH_MAX_REQUESTS_PER_FILE", "0")
    with pytest.raises(ValueError, match="EMBEDDING_BATCH_MAX_REQUESTS_PER_FILE"):
        build_resources()
    monkeypatch.delenv("EMBEDDING_BATCH_MAX_REQUESTS_PER_FILE")
    for name in ("EMBEDDING_BATCH_API", "EMBEDDING_BATCH_MIN_TOKENS", "EMBEDDING_BATCH_MAX_FILE_BYTES"):
        monkeypatch.delenv(name)
    assert build_resources()["embedder"].batch_api.mode == "off"
