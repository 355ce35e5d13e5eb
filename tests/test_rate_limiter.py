"""Embedding requests under a shared quota, through Postgres, against the fake server, which enforces its
limits the way OpenAI does (a bucket per limit, 429 with `retry-after` beyond it). Quotas are scaled down
to a short window so that a run spends several windows' worth in seconds."""

from __future__ import annotations

import threading

import openai
import sqlalchemy as sa

from pipelines.embedders import EmbedderFactory, EmbeddingError, EmbedLimits, ModelSpec, OpenAIEmbedder
from pipelines.embeddings import embed_pending
from pipelines.lib.rate_limit import Quota, request_token_cap
from pipelines.rate_limiter import PostgresRateLimiter
from resources.embedders import EmbedderResource
from testing.chunk_seed import add_chunks, chunk_texts
from testing.fake_openai import FakeOpenAI, count_tokens

SPEC = ModelSpec("text-embedding-3-small", "openai", "text-embedding-3-small", 1536, 0.02)


def _embedder(fake: FakeOpenAI, limiter) -> OpenAIEmbedder:
    client = openai.OpenAI(api_key="sk-test", base_url=fake.base_url, max_retries=0)
    return OpenAIEmbedder(SPEC, client, send_dimensions=False, rate_limiter=limiter)


def _send(embedder: OpenAIEmbedder, n: int, tag: str, failures: list) -> None:
    for i in range(n):
        try:
            embedder.embed([f"{tag} text {i}"])
        except EmbeddingError as exc:
            failures.append(exc.status)


def _two_senders(fake: FakeOpenAI, limiters: list) -> list:
    failures: list = []
    threads = [
        threading.Thread(target=_send, args=(_embedder(fake, lim), 16, f"sender{k}", failures))
        for k, lim in enumerate(limiters)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return failures


def test_two_senders_sharing_the_budget_never_hit_a_429(database_url: str) -> None:
    # The organisation allows 30 requests a minute, one back every 2 s. Two runs send 16 each: 32.
    engines = [sa.create_engine(database_url) for _ in range(2)]
    try:
        with FakeOpenAI(requests_per_minute=30) as fake:
            shared = [PostgresRateLimiter(e, "org", Quota(requests=30, tokens=1e9)) for e in engines]
            assert _two_senders(fake, shared) == []
            statuses = [r["status"] for r in fake.requests]
            assert statuses == [200] * 32
            # The two extra requests had to wait for the quota to refill, at least once.
            assert sum(lim.waited_s for lim in shared) > 0

        # The control: each sender with a budget of its own (two quotas) overruns the shared one.
        with FakeOpenAI(requests_per_minute=30) as fake:
            separate = [PostgresRateLimiter(e, f"own{k}", Quota(30, 1e9)) for k, e in enumerate(engines)]
            failures = _two_senders(fake, separate)
            assert failures and set(failures) == {429}
    finally:
        for e in engines:
            e.dispose()


def test_headers_hold_back_a_sender_that_assumes_a_larger_quota(engine: sa.Engine) -> None:
    # Configured for far more than the organisation really has (30 requests per 10 s window, three back
    # a second): the provider's stated limit and remaining count keep it under the real limit.
    with FakeOpenAI(requests_per_minute=30, window_s=10) as fake:
        limiter = PostgresRateLimiter(engine, "org", Quota(requests=1e6, tokens=1e9, window_s=10))
        failures: list = []
        _send(_embedder(fake, limiter), 45, "eager", failures)
        assert failures == []
        assert [r["status"] for r in fake.requests] == [200] * 45
        assert limiter.quota.requests == 30
        assert limiter.waited_s > 0

    # The control: the same requests without a limiter run into 429s.
    with FakeOpenAI(requests_per_minute=30, window_s=10) as fake:
        failures = []
        _send(_embedder(fake, None), 45, "eager", failures)
        assert failures and set(failures) == {429}


# 2,000 tokens per 2 s window: the run below sends ~4 windows' worth.
QUOTA = Quota(requests=200, tokens=2_000, window_s=2)
TEXTS = chunk_texts(160, seed=3)


def _run(engine: sa.Engine, fake: FakeOpenAI, limiter: PostgresRateLimiter | None):
    factory = EmbedderFactory(api_key="sk-test", base_url=fake.base_url, max_retries=0, rate_limiter=limiter)
    # Requests as the resource packs them under a quota: small enough to follow its refill.
    limits = EmbedLimits(max_batch_tokens=request_token_cap(QUOTA), max_input_tokens=request_token_cap(QUOTA))
    return embed_pending(engine, SPEC, limits, factory)


def test_a_run_over_several_windows_of_quota_never_hits_a_429(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        add_chunks(conn, TEXTS)
    total = count_tokens(TEXTS)
    assert total > 3 * QUOTA.tokens  # the quota binds: the run cannot go at once
    with FakeOpenAI(
        latency_s=0.02,
        requests_per_minute=QUOTA.requests,
        tokens_per_minute=QUOTA.tokens,
        window_s=QUOTA.window_s,
    ) as fake:
        limiter = PostgresRateLimiter(engine, "org", QUOTA)
        stats = _run(engine, fake, limiter)
        assert fake.rate_limited == 0
        assert stats.chunks_embedded == len(TEXTS) and stats.chunks_failed == 0
        assert fake.tokens_admitted == total
        assert stats.requests > 10  # packed to a share of the quota, not into one or two large requests

        # Right after it, a request of 60 % of the quota goes as soon as the provider would take it: the
        # bucket follows the provider's, with no pause or debt left over from the run.
        tokens = int(QUOTA.tokens * 0.6)
        provider_wait = fake.seconds_until(tokens)
        after = PostgresRateLimiter(engine, "org", QUOTA)  # the next run's process
        after.acquire(tokens)
        assert provider_wait > 0.2  # the run left the quota spent: there is something to wait for
        assert after.waited_s <= provider_wait + 0.1


def test_the_same_run_without_the_limiter_hits_429s(engine: sa.Engine) -> None:
    # The control for the test above: the quota really binds for this run.
    with engine.connect() as conn:
        add_chunks(conn, TEXTS)
    with FakeOpenAI(
        latency_s=0.02,
        requests_per_minute=QUOTA.requests,
        tokens_per_minute=QUOTA.tokens,
        window_s=QUOTA.window_s,
    ) as fake:
        stats = _run(engine, fake, None)
        assert fake.rate_limited > 0 and stats.chunks_failed > 0


def test_the_resource_packs_requests_to_a_share_of_the_quota() -> None:
    limited = EmbedderResource(provider="local", tokens_per_minute=250_000, requests_per_minute=3_000)
    assert limited.limits().max_batch_tokens == 12_500
    # No quota: the provider's own per-request limit.
    assert EmbedderResource(provider="local").limits().max_batch_tokens == 300_000
    # A quota so small that a share of it is below one input: an input of the model's largest size still fits.
    tiny = EmbedderResource(provider="local", tokens_per_minute=20_000)
    assert tiny.limits().max_batch_tokens == tiny.max_input_tokens
