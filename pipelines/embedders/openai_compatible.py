"""The `openai` provider: OpenAI's embeddings API, or any server that speaks it (OPENAI_BASE_URL)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from pipelines.embedders.base import (
    Embedder,
    EmbeddingConfigError,
    EmbeddingError,
    EmbedResult,
    Endpoint,
    ModelSpec,
    Provider,
    RateLimiter,
    decode_vectors,
)
from pipelines.lib.redact import redact
from pipelines.lib.tokens import estimate_tokens

NAME = "openai"
DEFAULT_MODEL = "text-embedding-3-small"
# Native dimensions and list prices (USD per 1M tokens) of OpenAI's embedding models.
MODELS: dict[str, tuple[int, float]] = {
    "text-embedding-3-small": (1536, 0.02),
    "text-embedding-3-large": (3072, 0.13),
    "text-embedding-ada-002": (1536, 0.10),
}
# Statuses that blame the inputs rather than the service: worth bisecting to isolate the bad input.
INPUT_ERROR_STATUSES = frozenset({400, 413, 422})
# Statuses that blame the configuration (key, permissions, model or endpoint).
CONFIG_ERROR_STATUSES = frozenset({401, 403, 404})


def blames(status: int | None) -> str | None:
    if status in CONFIG_ERROR_STATUSES:
        return "configuration"
    return "inputs" if status in INPUT_ERROR_STATUSES else None


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
                blames=blames(exc.status_code),  # type: ignore[arg-type]
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


def open_client(endpoint: Endpoint) -> Any:
    """The `openai` client for `endpoint`; its own retry loop handles 429/5xx/timeouts with backoff and
    honours Retry-After. The caller closes it."""
    import openai

    if not endpoint.api_key:
        raise EmbeddingConfigError("provider 'openai' needs OPENAI_API_KEY to be set")
    return openai.OpenAI(
        api_key=endpoint.api_key,
        base_url=endpoint.base_url,
        max_retries=endpoint.max_retries,
        timeout=endpoint.timeout_s,
    )


@contextlib.contextmanager
def open_embedder(spec: ModelSpec, endpoint: Endpoint) -> Iterator[Embedder]:
    client = open_client(endpoint)
    try:
        # A native-size request omits `dimensions`, which older models and compatible servers refuse.
        yield OpenAIEmbedder(
            spec,
            client,
            send_dimensions=spec.dimensions != MODELS.get(spec.model, (None,))[0],
            rate_limiter=endpoint.rate_limiter,
        )
    finally:
        client.close()


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


PROVIDER = Provider(
    name=NAME,
    default_model=DEFAULT_MODEL,
    models=MODELS,
    open=open_embedder,
    batch_api=True,
    needs_api_key=True,
)
