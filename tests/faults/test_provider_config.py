"""Provider refusals of the configuration fail the run without charging texts; abandoned chunks stay visible."""

from __future__ import annotations

import dagster as dg
import pytest
import sqlalchemy as sa

from assets.embeddings import chunk_embeddings
from pipelines.chunks import chunk_documents
from pipelines.sources import sync_documents
from resources.embedders import EmbedderResource
from resources.sources import ContentSourcesResource
from testing import fake_openai
from testing.fake_openai import FakeOpenAI

RIGHT_KEY = "sk-right-key-0123456789"
WRONG_KEY = "sk-wrong-key-9876543210"


def _content(postgres, root, names: dict[str, str]) -> int:
    root.mkdir()
    for name, text in names.items():
        (root / name).write_text(text)
    sources = ContentSourcesResource(content_dir=str(root))
    sync_documents(postgres.engine, sources.content_path, sources.table_specs())
    chunk_documents(postgres.engine, sources.chunk_max_chars, sources.chunk_overlap)
    return _count(postgres, "SELECT count(*) FROM document_chunks")


def _count(postgres, sql: str) -> int:
    with postgres.connect() as conn:
        return conn.execute(sa.text(sql)).scalar_one()


def _embed(postgres, fake: FakeOpenAI, key: str, **config) -> dg.ExecuteInProcessResult:
    embedder = EmbedderResource(api_key=key, base_url=fake.base_url, max_retries=0)
    return dg.materialize(
        [chunk_embeddings],
        resources={"postgres": postgres, "embedder": embedder},
        run_config={"ops": {"chunk_embeddings": {"config": config}}},
        raise_on_error=False,
    )


def _failure_text(result: dg.ExecuteInProcessResult) -> str:
    return " ".join(
        e.step_failure_data.error.message
        for e in result.all_events
        if e.is_step_failure and e.step_failure_data.error is not None
    )


@pytest.mark.parametrize("fault", [None, ("401_echo",)])
def test_a_wrong_key_fails_every_run_and_costs_the_texts_nothing(postgres, tmp_path, fault):
    docs = {f"d{i}.md": f"# Doc {i}\n\nBody of document number {i}.\n" for i in range(6)}
    chunks = _content(postgres, tmp_path / "c", docs)
    with FakeOpenAI(expected_api_key=RIGHT_KEY) as fake:
        for _ in range(3):
            if fault:
                fake.expected_api_key = None
                fake.inject(fault)
            result = _embed(postgres, fake, WRONG_KEY)
            message = _failure_text(result)
            assert not result.success
            assert "HTTP 401" in message and "OPENAI_API_KEY" in message
            assert WRONG_KEY not in message and RIGHT_KEY not in message
            assert _count(postgres, "SELECT count(*) FROM embedding_errors") == 0
        assert fake.request_count == 3  # one refused request per run, not one per batch or retry
        fake.expected_api_key = RIGHT_KEY
        fake.reset_counts()
        result = _embed(postgres, fake, RIGHT_KEY)
    assert result.success and fake.request_count >= 1
    assert _count(postgres, "SELECT count(*) FROM chunk_embeddings") == chunks == len(docs)
    [check] = result.get_asset_check_evaluations()
    assert check.passed


def test_abandoned_chunks_fail_the_check_until_retry_abandoned_embeds_them(postgres, tmp_path, monkeypatch):
    docs = {f"ok{i}.md": f"# Ok {i}\n\nFine text number {i}.\n" for i in range(4)}
    docs["bad.md"] = "# Bad\n\nThis contains poison for the model.\n"
    chunks = _content(postgres, tmp_path / "c", docs)

    def abandoned(result: dg.ExecuteInProcessResult) -> tuple[int, bool]:
        [mat] = result.asset_materializations_for_node("chunk_embeddings")
        [check] = result.get_asset_check_evaluations()
        return mat.metadata["chunks_abandoned"].value, check.passed

    with FakeOpenAI() as fake:
        assert abandoned(_embed(postgres, fake, RIGHT_KEY, max_attempts=2)) == (0, False)  # failed once
        assert abandoned(_embed(postgres, fake, RIGHT_KEY, max_attempts=2)) == (1, False)  # failed twice
        fake.reset_counts()
        # A later run sends nothing for it, yet the check keeps failing: the chunk is not silently dropped.
        assert abandoned(_embed(postgres, fake, RIGHT_KEY, max_attempts=2)) == (1, False)
        assert fake.request_count == 0
        # The provider now accepts the text (say, a policy change): asking for a retry embeds it.
        monkeypatch.setattr(fake_openai, "POISON", "a marker no text contains")
        result = _embed(postgres, fake, RIGHT_KEY, max_attempts=2, retry_abandoned=True)
        assert abandoned(result) == (0, True)
        assert fake.request_count == 1 and any("poison" in t for t in fake.texts_embedded)
    assert _count(postgres, "SELECT count(*) FROM chunk_embeddings") == chunks
    assert _count(postgres, "SELECT count(*) FROM embedding_errors") == 0
