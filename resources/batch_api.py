"""Settings of the OpenAI Batch API path: config nested in the embedder resource (`embedder.batch_api`),
filled from EMBEDDING_BATCH_* by `location.resources.build_resources` (no secrets among them)."""

from __future__ import annotations

import dagster as dg

from pipelines.embedders import EmbedLimits

_DEFAULTS = EmbedLimits()


class BatchApiSettings(dg.Config):
    """`mode` (EMBEDDING_BATCH_API): off, on or auto; `min_tokens` (EMBEDDING_BATCH_MIN_TOKENS): the
    threshold of auto; the per-batch limits and the first and largest delay between polls of one batch
    (defaults: `EmbedLimits`, where every limit the API documents is kept)."""

    mode: str = "off"
    min_tokens: int = 1_000_000
    max_requests_per_file: int = _DEFAULTS.max_requests_per_file
    max_file_bytes: int = _DEFAULTS.max_file_bytes
    max_inputs_per_file: int = _DEFAULTS.max_inputs_per_file
    poll_initial_s: float = _DEFAULTS.poll_initial_s
    poll_max_s: float = _DEFAULTS.poll_max_s
