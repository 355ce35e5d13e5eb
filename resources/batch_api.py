"""Settings of the OpenAI Batch API path: config nested in the embedder resource (`embedder.batch_api`),
filled from EMBEDDING_BATCH_* by `location.resources.build_resources` (no secrets among them)."""

from __future__ import annotations

import dagster as dg

from pipelines.batch_embeddings import DEFAULT_POLL_INITIAL_S, DEFAULT_POLL_MAX_S
from pipelines.lib.batch_files import MAX_FILE_BYTES, MAX_REQUESTS_PER_FILE


class BatchApiSettings(dg.Config):
    """`mode` (EMBEDDING_BATCH_API): off, on or auto; `min_tokens` (EMBEDDING_BATCH_MIN_TOKENS): the
    threshold of auto; file limits and the first and largest delay between polls of one batch."""

    mode: str = "off"
    min_tokens: int = 1_000_000
    max_requests_per_file: int = MAX_REQUESTS_PER_FILE
    max_file_bytes: int = MAX_FILE_BYTES
    poll_initial_s: float = DEFAULT_POLL_INITIAL_S
    poll_max_s: float = DEFAULT_POLL_MAX_S
