"""The configured embedding model as a Dagster resource: it only resolves its fields into the plain
values the work layer takes (`pipelines.embedders`)."""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterator

import sqlalchemy as sa

from pipelines.embedders import (
    Embedder,
    EmbedderFactory,
    EmbeddingConfigError,
    EmbedLimits,
    ModelSpec,
    resolve_spec,
)
from pipelines.lib.rate_limit import Quota, request_token_cap
from pipelines.rate_limiter import PostgresRateLimiter
from resources.batch_api import BatchApiSettings
from resources.evaluation import EvaluationSettings
from resources.fieldwise import FieldwiseConfigResource

_DEFAULT_LIMITS = EmbedLimits()
_DEFAULT_FACTORY = EmbedderFactory()


class EmbedderResource(FieldwiseConfigResource):
    """The configured embedding model. `provider="auto"` uses OpenAI when an API key is set, else `local`."""

    provider: str = "auto"
    model: str | None = None
    dimensions: int | None = None
    api_key: str | None = None
    base_url: str | None = None
    price_per_million_tokens: float | None = None
    max_batch_inputs: int = _DEFAULT_LIMITS.max_batch_inputs
    max_batch_tokens: int = _DEFAULT_LIMITS.max_batch_tokens
    max_input_tokens: int = _DEFAULT_LIMITS.max_input_tokens
    concurrency: int = _DEFAULT_LIMITS.concurrency
    budget_usd: float | None = _DEFAULT_LIMITS.budget_usd
    max_retries: int = _DEFAULT_FACTORY.max_retries
    timeout_s: float = _DEFAULT_FACTORY.timeout_s
    # The organisation's quota, shared by every run through Postgres (unset: no shared limiter).
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    # The Batch API path (EMBEDDING_BATCH_*): off unless configured.
    batch_api: BatchApiSettings = BatchApiSettings()
    # The labelled question set the evaluation asset and the switch's quality gate score (EVAL_*).
    evaluation: EvaluationSettings = EvaluationSettings()

    def spec(self) -> ModelSpec:
        return resolve_spec(
            self.provider,
            self.model,
            self.dimensions,
            self.price_per_million_tokens,
            has_api_key=bool(self.api_key),
        )

    def quota(self) -> Quota | None:
        """The organisation's per-minute quota (EMBEDDING_RPM / EMBEDDING_TPM), None when neither is set."""
        for setting, value in (
            ("EMBEDDING_RPM", self.requests_per_minute),
            ("EMBEDDING_TPM", self.tokens_per_minute),
        ):
            # An unset limit means none; 0, negative or nan would otherwise read as unlimited too.
            if value is not None and not (math.isfinite(value) and value > 0):
                raise EmbeddingConfigError(f"{setting} must be a finite number greater than 0, got {value!r}")
        if not (self.requests_per_minute or self.tokens_per_minute):
            return None
        # One limit set and the other not: the unset one is unlimited in practice.
        return Quota(self.requests_per_minute or 1e9, self.tokens_per_minute or 1e12)

    def limits(self) -> EmbedLimits:
        """The one limits object, from this resource's fields and its Batch API settings."""
        values = {}
        for source in (self, self.batch_api):
            values.update(
                {
                    f.name: getattr(source, f.name)
                    for f in dataclasses.fields(EmbedLimits)
                    if f.name in type(source).model_fields
                }
            )
        quota = self.quota()
        # Under a quota, requests small enough to follow its refill (pipelines/lib/rate_limit.py).
        cap = request_token_cap(quota) if quota is not None else self.max_batch_tokens
        values["max_batch_tokens"] = min(self.max_batch_tokens, max(cap, self.max_input_tokens))
        return EmbedLimits(**values)

    def factory(self, engine: sa.Engine | None = None) -> EmbedderFactory:
        """`engine`: the database that holds the shared request/token budget; without it (or without
        EMBEDDING_RPM / EMBEDDING_TPM) requests are limited only by the provider's own answers."""
        quota = self.quota()
        limiter = None
        if engine is not None and quota is not None:
            # One quota per API endpoint.
            limiter = PostgresRateLimiter(engine, f"openai:{self.base_url or 'api.openai.com'}", quota)
        return EmbedderFactory(
            api_key=self.api_key,
            base_url=self.base_url,
            max_retries=self.max_retries,
            timeout_s=self.timeout_s,
            rate_limiter=limiter,
        )

    @contextlib.contextmanager
    def open(self) -> Iterator[Embedder]:
        """An embedder of the configured model."""
        with self.factory().open(self.spec()) as embedder:
            yield embedder
