"""The embeddings quota shared by every run and process: a token bucket row in Postgres
(`embedding_rate_limits`), taken from under a row lock before each request, and paused when the
provider's `x-ratelimit-*` headers say the quota is spent. Two runs embedding at once therefore stay
under one organisation's limits together, instead of each assuming the whole quota."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import sqlalchemy as sa

from pipelines.lib.rate_limit import Bucket, header_pause, take
from pipelines.sql import query


class PostgresRateLimiter:
    def __init__(
        self,
        engine: sa.Engine,
        quota: str,
        requests_per_minute: float,
        tokens_per_minute: float,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if requests_per_minute <= 0 or tokens_per_minute <= 0:
            raise ValueError("EMBEDDING_RPM and EMBEDDING_TPM must be positive")
        self.engine = engine
        self.quota = quota
        self.rpm = float(requests_per_minute)
        self.tpm = float(tokens_per_minute)
        self._sleep = sleep
        self.waited_s = 0.0

    def acquire(self, tokens: int) -> None:
        """Block until one request of `tokens` fits the shared budget, then take it."""
        while True:
            with self.engine.begin() as conn:
                params = {"quota": self.quota, "rpm": self.rpm, "tpm": self.tpm}
                conn.execute(query("rate_limits/create_rate_limit"), params)
                row = conn.execute(
                    query("rate_limits/lock_rate_limit"),
                    {"quota": self.quota, "rpm": self.rpm, "tpm": self.tpm},
                ).one()
                paused = row.paused_until - row.now
                if paused > 0:
                    wait = paused
                else:
                    bucket, wait = take(
                        Bucket(row.requests, row.tokens, row.updated_at), row.now, tokens, self.rpm, self.tpm
                    )
                    conn.execute(
                        query("rate_limits/update_rate_limit"),
                        {
                            "quota": self.quota,
                            "requests": bucket.requests,
                            "tokens": bucket.tokens,
                            "updated_at": bucket.at,
                        },
                    )
            if wait <= 0:
                return
            self.waited_s += wait
            self._sleep(wait)

    def observe(self, headers: Mapping[str, str], next_tokens: int = 1) -> None:
        """Pause every sender when the response's headers say the provider's quota is (nearly) spent."""
        pause = header_pause(headers, next_tokens)
        if pause > 0:
            with self.engine.begin() as conn:
                conn.execute(query("rate_limits/pause_rate_limit"), {"quota": self.quota, "seconds": pause})
