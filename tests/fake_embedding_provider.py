"""A provider as a new one would be written: this module plus one line in the registry, nothing else.

Deterministic vectors from each text's bytes; a text holding `refuse-me` is refused the way a provider
refuses a bad input, so the run must isolate it and embed the rest."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Sequence

import numpy as np

from pipelines.embedders.base import Embedder, EmbeddingError, EmbedResult, Endpoint, ModelSpec, Provider

NAME = "fake-echo"
MODEL = "echo-v1"
REFUSED = "refuse-me"
calls: list[int] = []  # inputs per request, as sent


def echo_vector(text: str, dimensions: int) -> np.ndarray:
    digest = hashlib.sha256(text.encode()).digest()
    vec = np.frombuffer((digest * (dimensions // 32 + 1))[:dimensions], dtype=np.uint8).astype(np.float32)
    return vec / np.linalg.norm(vec)


class EchoEmbedder:
    def __init__(self, spec: ModelSpec):
        self.spec = spec

    def embed(self, texts: Sequence[str]) -> EmbedResult:
        calls.append(len(texts))
        if any(REFUSED in t for t in texts):
            raise EmbeddingError("the echo service refuses this input", status=422, blames="inputs")
        vectors = np.stack([echo_vector(t, self.spec.dimensions) for t in texts])
        return EmbedResult(vectors, tokens=sum(len(t) for t in texts))


@contextlib.contextmanager
def open_embedder(spec: ModelSpec, _endpoint: Endpoint) -> Iterator[Embedder]:
    yield EchoEmbedder(spec)


PROVIDER = Provider(name=NAME, default_model=MODEL, models={MODEL: (48, 1.5)}, open=open_embedder)
