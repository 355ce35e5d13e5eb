"""The `local` provider: the hashing embedder (no network, no key, no cost, no extra package). Lexical, not
semantic: it matches words and character n-grams; for tests and as a dependency-free fallback."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

from pipelines.embedders.base import Embedder, EmbedResult, Endpoint, ModelSpec, Provider
from pipelines.lib.tokens import estimate_tokens

NAME = "local"
LOCAL_MODEL = "local-hash-v1"
LOCAL_DEFAULT_DIMENSIONS = 384


class LocalEmbedder:
    def __init__(self, spec: ModelSpec):
        self.spec = spec

    def embed(self, texts: Sequence[str]) -> EmbedResult:
        # numpy (which the hashing embedder needs) is imported when it embeds, not when the location loads.
        from pipelines.lib.hashing_embedder import embed_texts

        return EmbedResult(embed_texts(list(texts), self.spec.dimensions), sum(map(estimate_tokens, texts)))


@contextlib.contextmanager
def open_embedder(spec: ModelSpec, _endpoint: Endpoint) -> Iterator[Embedder]:
    yield LocalEmbedder(spec)


PROVIDER = Provider(
    name=NAME,
    default_model=LOCAL_MODEL,
    models={LOCAL_MODEL: (LOCAL_DEFAULT_DIMENSIONS, 0.0)},
    open=open_embedder,
    # One process's CPU: parallel requests would only contend for it.
    concurrent=False,
    # Feature hashing of words and character n-grams: it matches words, not meaning.
    matching="lexical: hashed words",
)
