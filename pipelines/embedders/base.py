"""What every embedding provider shares: the model spec, the one limits object, the errors a provider raises
and the interfaces it implements. Provider modules (one per provider, beside this one) import only this."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pipelines.lib.vectors import VectorDataError, decode_embedding_items

if TYPE_CHECKING:  # numpy is imported by the steps that handle vectors, not when the code location loads
    import numpy as np


class EmbeddingError(RuntimeError):
    """A request that failed for good (after the client's retries); its inputs are recorded as failed.

    `blames` is the provider's reading of the failure: "inputs" (worth splitting the request to isolate the
    bad input), "configuration" (key, permissions, model or endpoint: every request would fail the same way,
    so the run fails and no text is charged an attempt) or None (the service)."""

    def __init__(
        self,
        message: str,
        status: int | None = None,
        blames: Literal["inputs", "configuration"] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.blames = blames


class EmbeddingConfigError(ValueError):
    pass


@dataclass(frozen=True)
class ModelSpec:
    """What the registry knows a model by. `name` includes the dimension when it is not the native one."""

    name: str
    provider: str
    model: str
    dimensions: int
    price_per_million_tokens: float

    def cost_usd(self, tokens: int) -> float:
        return tokens * self.price_per_million_tokens / 1_000_000


# The OpenAI Batch API's documented caps on one batch (openai `types/batch_create_params.py`): requests and
# bytes of its input file, and embedding inputs across all of its /v1/embeddings requests.
BATCH_MAX_REQUESTS = 50_000
BATCH_MAX_FILE_BYTES = 200 * 1024 * 1024
BATCH_MAX_INPUTS = 50_000


@dataclass(frozen=True)
class EmbedLimits:
    """Every limit on how a run uses the provider, in one place: request packing and input size (per
    request, synchronous or inside a batch file), parallelism, spend, and the Batch API's per-batch caps
    with the delays between polls of an open batch."""

    max_batch_inputs: int = 2048
    max_batch_tokens: int = 300_000
    max_input_tokens: int = 8191
    concurrency: int = 4
    budget_usd: float | None = None
    max_requests_per_file: int = BATCH_MAX_REQUESTS
    max_file_bytes: int = BATCH_MAX_FILE_BYTES
    max_inputs_per_file: int = BATCH_MAX_INPUTS
    poll_initial_s: float = 60.0
    poll_max_s: float = 1800.0

    def __post_init__(self) -> None:
        # Named by the setting that feeds each field, so a bad value is refused where it is configured.
        for setting, value in (
            ("max_batch_inputs", self.max_batch_inputs),
            ("max_batch_tokens", self.max_batch_tokens),
            ("max_input_tokens", self.max_input_tokens),
            ("EMBEDDING_CONCURRENCY", self.concurrency),
            ("EMBEDDING_BATCH_MAX_REQUESTS_PER_FILE", self.max_requests_per_file),
            ("EMBEDDING_BATCH_MAX_FILE_BYTES", self.max_file_bytes),
            ("EMBEDDING_BATCH_MAX_INPUTS_PER_FILE", self.max_inputs_per_file),
        ):
            if value < 1:
                raise EmbeddingConfigError(f"{setting} must be at least 1, got {value!r}")
        if self.budget_usd is not None and not (math.isfinite(self.budget_usd) and self.budget_usd >= 0):
            raise EmbeddingConfigError(
                f"EMBEDDING_BUDGET_USD must be a finite amount of at least 0, got {self.budget_usd!r}"
            )


@dataclass(frozen=True)
class EmbedResult:
    vectors: np.ndarray
    tokens: int


class RateLimiter(Protocol):
    """A budget of requests and tokens taken before each request (the estimate) and settled after it with
    the provider's count and rate-limit headers (pipelines.rate_limiter.PostgresRateLimiter shares it across
    processes). `acquire` returns what `settle` needs to know about the request it let through."""

    def acquire(self, tokens: int) -> Any: ...

    def settle(self, grant: Any, headers: Mapping[str, str], used_tokens: int | None) -> None: ...


class Embedder(Protocol):
    spec: ModelSpec

    def embed(self, texts: Sequence[str]) -> EmbedResult: ...


@dataclass(frozen=True)
class Endpoint:
    """Where and how a provider is reached: key, address, the client's retry policy and the shared limiter."""

    api_key: str | None = field(default=None, repr=False)
    base_url: str | None = None
    max_retries: int = 6
    timeout_s: float = 60.0
    # Shared by every request this endpoint's embedders send (and, through Postgres, by every process).
    rate_limiter: RateLimiter | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class Provider:
    """One embedding provider, as its module declares it and the registry lists it.

    `models`: native dimension and list price (USD per 1M tokens) of the models it knows; `open` yields an
    `Embedder` of a spec at an endpoint; `concurrent`: whether requests are worth sending in parallel;
    `batch_api`: whether it has the OpenAI Batch API; `needs_api_key`: whether `auto` picks it when a key
    is set."""

    name: str
    default_model: str
    models: Mapping[str, tuple[int, float]]
    open: Callable[[ModelSpec, Endpoint], AbstractContextManager[Embedder]]
    concurrent: bool = True
    batch_api: bool = False
    needs_api_key: bool = False
    # What a reader of search results should know about how it matches ("semantic", "lexical: …").
    matching: str = "semantic"
    # Only its known models at their native dimension (a model shipped as it is, not trained to be cut short).
    native_only: bool = False


def decode_vectors(data: Sequence[Any], n_inputs: int, dimensions: int) -> np.ndarray:
    """Validate an embeddings response's `data` (the client's objects) and return an (n_inputs, dimensions)
    float32 array; see `decode_embedding_items` for what is checked."""
    try:
        return decode_embedding_items(
            ((getattr(item, "index", None), getattr(item, "embedding", None)) for item in data),
            n_inputs,
            dimensions,
        )
    except VectorDataError as exc:
        raise EmbeddingError(str(exc)) from None
