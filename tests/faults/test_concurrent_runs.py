"""Two ingestion runs at once on one database: both succeed and every text is sent once."""

from __future__ import annotations

import threading
from collections import Counter

import dagster as dg
import sqlalchemy as sa

from assets.chunks import document_chunks
from assets.embeddings import chunk_embeddings
from assets.sources import source_documents
from resources.embedders import EmbedderResource
from resources.sources import ContentSourcesResource
from testing.corpus import TLDR_SAMPLE
from testing.fake_openai import FakeOpenAI


def test_two_ingestion_runs_at_once_both_succeed_and_pay_for_each_text_once(postgres):
    sources = ContentSourcesResource(content_dir=str(TLDR_SAMPLE))
    results: list[bool] = []
    # A little latency keeps both runs' requests in flight at the same time.
    with FakeOpenAI(latency_s=0.05) as fake:
        embedder = EmbedderResource(api_key="sk-test", base_url=fake.base_url, max_batch_inputs=64)

        def run() -> None:
            result = dg.materialize(
                [source_documents, document_chunks, chunk_embeddings],
                resources={"postgres": postgres, "content_sources": sources, "embedder": embedder},
                raise_on_error=False,
            )
            results.append(result.success)

        threads = [threading.Thread(target=run) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        sent = Counter(fake.texts_embedded)
    assert results == [True, True]
    with postgres.connect() as conn:
        distinct = conn.execute(
            sa.text("SELECT count(DISTINCT content_sha256) FROM document_chunks")
        ).scalar_one()
        missing = conn.execute(
            sa.text(
                "SELECT count(*) FROM document_chunks c WHERE NOT EXISTS"
                " (SELECT 1 FROM chunk_embeddings e WHERE e.chunk_id = c.id)"
            )
        ).scalar_one()
    assert missing == 0
    assert [t for t, n in sent.items() if n > 1] == []
    assert len(sent) == distinct
