"""The configured embedding model as a Dagster resource; the providers themselves are in
`pipelines.embedders`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import dagster as dg

from pipelines.embedders import (
    KNOWN_MODELS,
    LOCAL_MODEL,
    OPENAI_DEFAULT_MODEL,
    Embedder,
    EmbeddingConfigError,
    LocalEmbedder,
    ModelSpec,
    OpenAIEmbedder,
)


class EmbedderResource(dg.ConfigurableResource):
    """The configured embedding model. `provider="auto"` uses OpenAI when an API key is set, else `local`."""

    provider: str = "auto"
    model: str | None = None
    dimensions: int | None = None
    api_key: str | None = None
    base_url: str | None = None
    price_per_million_tokens: float | None = None
    max_batch_inputs: int = 2048
    max_batch_tokens: int = 300_000
    max_input_tokens: int = 8191
    concurrency: int = 4
    budget_usd: float | None = None
    max_retries: int = 6
    timeout_s: float = 60.0
    # Storage policy of the vectors this resource produces: how long a retired model's vectors stay
    # (for an instant switch back) and the memory an HNSW build may use.
    retired_grace_days: float = 7.0
    # The organisation's quota, shared by every run through Postgres (unset: no shared limiter).
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    hnsw_maintenance_work_mem: str = "256MB"

    @property
    def resolved_provider(self) -> str:
        if self.provider == "auto":
            return "openai" if self.api_key else "local"
        if self.provider not in ("openai", "local"):
            raise EmbeddingConfigError(
                f"unknown embedding provider {self.provider!r}; use 'openai' or 'local'"
            )
        return self.provider

    def spec(self) -> ModelSpec:
        provider = self.resolved_provider
        model = self.model or (OPENAI_DEFAULT_MODEL if provider == "openai" else LOCAL_MODEL)
        native, list_price = KNOWN_MODELS.get(model, (None, None))
        dims = self.dimensions or native
        if dims is None:
            raise EmbeddingConfigError(
                f"model {model!r} is not one this tool knows; set EMBEDDING_DIMENSIONS to its dimension"
            )
        if dims <= 0:
            raise EmbeddingConfigError(f"EMBEDDING_DIMENSIONS must be positive, got {dims}")
        price = (
            self.price_per_million_tokens
            if self.price_per_million_tokens is not None
            else (list_price or 0.0)
        )
        name = model if dims == native else f"{model}@{dims}"
        return ModelSpec(
            name=name, provider=provider, model=model, dimensions=dims, price_per_million_tokens=price
        )

    def rate_limiter(self):
        if self.requests_per_minute is None and self.tokens_per_minute is None:
            return None
        from pipelines.rate_limiter import PostgresRateLimiter
        from resources.postgres import PostgresResource

        # One quota per API endpoint; an unset limit is taken as unlimited in practice.
        return PostgresRateLimiter(
            PostgresResource().engine,
            quota=f"openai:{self.base_url or 'api.openai.com'}",
            requests_per_minute=self.requests_per_minute or 1e9,
            tokens_per_minute=self.tokens_per_minute or 1e12,
        )

    @contextlib.contextmanager
    def open(self) -> Iterator[Embedder]:
        spec = self.spec()
        if spec.provider == "local":
            yield LocalEmbedder(spec)
            return
        import openai

        if not self.api_key:
            raise EmbeddingConfigError("provider 'openai' needs OPENAI_API_KEY to be set")
        # The client's own retry loop handles 429/5xx/timeouts with backoff and honours Retry-After.
        client = openai.OpenAI(
            api_key=self.api_key, base_url=self.base_url, max_retries=self.max_retries, timeout=self.timeout_s
        )
        try:
            native = KNOWN_MODELS.get(spec.model, (None, 0))[0]
            yield OpenAIEmbedder(
                spec,
                client,
                send_dimensions=self.dimensions is not None and self.dimensions != native,
                rate_limiter=self.rate_limiter(),
            )
        finally:
            client.close()
