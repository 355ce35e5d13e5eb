"""What the UI shows: asset kinds that hold whichever embedder ran, and metadata floats rounded for a
person while the table keeps full precision."""

from __future__ import annotations

import dagster as dg
import numpy as np

from assets.chunks import document_chunks
from assets.embeddings import chunk_embeddings
from assets.sources import source_documents
from resources.embedders import EmbedderResource
from resources.sources import ContentSourcesResource
from tests.test_metrics import insert, jst, materialize, stored
from tests.test_metrics import row as dialogue_row


def test_embedding_kinds_hold_for_the_local_embedder_and_metadata_names_the_provider(postgres, tmp_path):
    (tmp_path / "a.md").write_text("# A\n\nAlpha.\n")
    result = dg.materialize(
        [source_documents, document_chunks, chunk_embeddings],
        resources={
            "postgres": postgres,
            "content_sources": ContentSourcesResource(content_dir=str(tmp_path)),
            "embedder": EmbedderResource(provider="local"),
        },
    )
    assert result.success
    (mat,) = result.asset_materializations_for_node("chunk_embeddings")
    assert mat.metadata["provider"].value == "local"
    (spec,) = chunk_embeddings.specs
    kinds = set(spec.kinds)
    assert "openai" not in kinds and {"postgres", "pgvector"} <= kinds


def test_metrics_metadata_is_rounded_and_the_table_keeps_full_precision(postgres):
    # Latencies whose p95 (linear interpolation) has a long binary tail, costs whose mean has one.
    latencies = [1001, 1234, 2240, 2239, 1999, 777, 3001]
    costs = [1.1, 1.7, 2.3, 0.9, 1.3, 2.2, 2.3]
    insert(
        postgres,
        [
            dialogue_row(jst("2025-06-20", 1 + i), latency_ms=ms, token_cost_jpy=jpy)
            for i, (ms, jpy) in enumerate(zip(latencies, costs))
        ],
    )
    (mat,) = materialize(postgres, "2025-06-20").asset_materializations_for_node("rag_metrics_history")
    day = stored(postgres)["2025-06-20"]
    p95 = float(np.percentile(latencies, 95))
    assert float(day["latency_p95_ms"]) == p95 != round(p95, 1)
    assert mat.metadata["latency_p95_ms"].value == round(p95, 1)
    assert mat.metadata["cost_per_answer_jpy"].value == round(float(day["cost_per_answer"]), 2)
    assert round(float(day["cost_per_answer"]), 2) != float(day["cost_per_answer"])
    assert mat.metadata["cost_per_answer_jpy"].value == round(float(np.mean(costs)), 2)
