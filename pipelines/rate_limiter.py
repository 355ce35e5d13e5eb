"""The embeddings quota shared by every run and process: a token bucket row in Postgres
(`embedding_rate_limits`) that models the provider's own limits (pipelines/lib/rate_limit.py). A sender
takes a request's estimated tokens from under a row lock before sending it, and settles afterwards: the
provider's count replaces the estimate, and its `x-ratelimit-*` headers lower the bucket when the provider
has less left than the row says. Two runs embedding at once therefore stay under one organisation's limits
together, instead of each assuming the whole quota."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import sqlalchemy as sa

from pipelines.lib.rate_limit import Bucket, Quota, charge, observe, settle, stated_limits, take
from pipelines.sql import query

# A waiting sender looks again at least this often: tokens a finished request gives back may let it go
# sooner than the wait it was told.
MAX_SLEEP_S = 1.0


@dataclass(frozen=True)
class Grant:
    """One request let through: when (database clock) and the tokens it took from the bucket."""

    at: float
    tokens: float


class PostgresRateLimiter:
    def __init__(
        self, engine: sa.Engine, name: str, quota: Quota, sleep: Callable[[float], None] = time.sleep
    ):
        self.engine = engine
        self.name = name
        # Lowered for this process when the provider's headers state smaller limits.
        self.quota = quota
        self._sleep = sleep
        self._created = False
        self.waited_s = 0.0

    def _locked(self, conn: sa.Connection) -> tuple[Bucket, float]:
        """The bucket (created full on first use) under its row lock, and the database's clock."""
        if not self._created:
            quota = self.quota
            params = {"quota": self.name, "rpm": quota.requests, "tpm": quota.tokens}
            conn.execute(query("rate_limits/create_rate_limit"), params)
        row = conn.execute(query("rate_limits/lock_rate_limit"), {"quota": self.name}).one()
        return Bucket(row.requests, row.tokens, row.updated_at), row.now

    def _store(self, conn: sa.Connection, bucket: Bucket) -> None:
        conn.execute(
            query("rate_limits/update_rate_limit"),
            {
                "quota": self.name,
                "requests": bucket.requests,
                "tokens": bucket.tokens,
                "updated_at": bucket.at,
            },
        )

    def acquire(self, tokens: int) -> Grant:
        """Block until one request of `tokens` (estimated) fits the shared budget, then take it."""
        while True:
            with self.engine.begin() as conn:
                bucket, now = self._locked(conn)
                bucket, wait = take(bucket, now, tokens, self.quota)
                self._store(conn, bucket)
            self._created = True  # committed: later transactions only lock the row
            if wait <= 0:
                return Grant(now, charge(tokens, self.quota))
            wait = min(wait, MAX_SLEEP_S)
            self.waited_s += wait
            self._sleep(wait)

    def settle(self, grant: Grant, headers: Mapping[str, str], used_tokens: int | None) -> None:
        """After the provider answered the request `grant` let through: `used_tokens` (its usage, None when
        unknown) replaces the estimate, and the response's headers correct the bucket and the quota."""
        self.quota = self.quota.lowered_to(*stated_limits(headers))
        with self.engine.begin() as conn:
            bucket, now = self._locked(conn)
            if used_tokens is not None:
                bucket = settle(bucket, now, grant.tokens, used_tokens, self.quota)
            self._store(conn, observe(bucket, now, grant.at, headers, self.quota))
