"""The Python example of docs/querying.md: an application's retrieval, as the application's login.

APP_DATABASE_URL=postgresql://rag_app_login:...@host/rag python docs/querying.py "how do refunds work"
"""

import os
import sys

import psycopg

from pipelines import retrieval
from pipelines.embedders import EmbedderFactory, ModelSpec, embed_queries

question = sys.argv[1]
with psycopg.connect(os.environ["APP_DATABASE_URL"]) as conn:
    # The model to embed with; pass its name along, so a switch meanwhile cannot mix two models.
    model = retrieval.active_model(conn)
    assert model is not None, "nothing is embedded yet: run `make run`"
    spec = ModelSpec(model.name, model.provider, model.provider_model, model.dimensions, 0.0)
    with EmbedderFactory(api_key=os.environ.get("OPENAI_API_KEY")).open(spec) as embedder:
        # A question, not a passage: e5 embeds the two sides differently (others embed both alike).
        vector = embed_queries(embedder, [question])[0]

    hits = retrieval.search(conn, vector, k=3, model=model.name, source_type="markdown")
    for hit in hits:
        print(f"{hit.similarity:.3f}  {hit.document_key}#{hit.chunk_index}  {' > '.join(hit.heading_path)}")
