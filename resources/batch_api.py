"""Settings of the OpenAI Batch API path, read from the environment (no secrets among them)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from pipelines.batch_embeddings import DEFAULT_POLL_INITIAL_S, DEFAULT_POLL_MAX_S
from pipelines.lib.batch_files import MAX_FILE_BYTES, MAX_REQUESTS_PER_FILE, MODES
from resources.env import env_number


@dataclass(frozen=True)
class BatchApiSettings:
    mode: str = "off"
    min_tokens: int = 1_000_000
    max_requests_per_file: int = MAX_REQUESTS_PER_FILE
    max_file_bytes: int = MAX_FILE_BYTES
    poll_initial_s: float = DEFAULT_POLL_INITIAL_S
    poll_max_s: float = DEFAULT_POLL_MAX_S

    @classmethod
    def from_env(cls) -> BatchApiSettings:
        mode = (os.environ.get("EMBEDDING_BATCH_API") or "off").strip().lower()
        if mode not in MODES:
            raise ValueError(f"EMBEDDING_BATCH_API must be one of {', '.join(MODES)}, got {mode!r}")
        return cls(
            mode=mode,
            min_tokens=env_number("EMBEDDING_BATCH_MIN_TOKENS", int, cls.min_tokens, minimum=0),
            max_requests_per_file=env_number(
                "EMBEDDING_BATCH_MAX_REQUESTS_PER_FILE", int, cls.max_requests_per_file, positive=True
            ),
            max_file_bytes=env_number(
                "EMBEDDING_BATCH_MAX_FILE_BYTES", int, cls.max_file_bytes, positive=True
            ),
            poll_initial_s=env_number("EMBEDDING_BATCH_POLL_S", float, cls.poll_initial_s, minimum=0),
            poll_max_s=env_number("EMBEDDING_BATCH_POLL_MAX_S", float, cls.poll_max_s, minimum=0),
        )
