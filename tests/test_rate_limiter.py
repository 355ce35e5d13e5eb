"""Embedding requests under a shared quota: the bucket arithmetic, the `x-ratelimit-*` headers, and two
senders sharing one budget through Postgres against the fake server, which enforces its limits with 429s."""

from __future__ import annotations

import threading

import openai
import pytest
import sqlalchemy as sa

from pipelines.embedders import EmbeddingError, ModelSpec, OpenAIEmbedder
from pipelines.lib.rate_limit import Bucket, header_pause, parse_duration, take
from pipelines.rate_limiter import PostgresRateLimiter
from testing.fake_openai import FakeOpenAI

SPEC = ModelSpec("text-embedding-3-small", "openai", "text-embedding-3-small", 1536, 0.02)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("20ms", 0.02),
        ("1h2m3.5s", 3723.5),
        ("0.250s", 0.25),
        ("", None),
        ("soon", None),
    ],
)
def test_reset_durations(text, seconds) -> None:
    assert parse_duration(text) == seconds


def test_bucket_takes_when_both_limits_allow_and_says_how_long_otherwise() -> None:
    # 60 requests / 6,000 tokens per minute: 1 request and 100 tokens come back each second.
    after, wait = take(Bucket(2.0, 500.0, at=10.0), now=10.0, tokens=400, rpm=60, tpm=6000)
    assert (after, wait) == (Bucket(1.0, 100.0, 10.0), 0.0)
    # 0.5 request short (0.5 s) and 300 tokens short (3 s): the tokens decide.
    after, wait = take(Bucket(0.5, 100.0, at=10.0), now=10.0, tokens=400, rpm=60, tpm=6000)
    assert after == Bucket(0.5, 100.0, 10.0) and wait == pytest.approx(3.0)
    # Two seconds later the bucket has refilled by 2 requests and 200 tokens, capped at the limits.
    after, wait = take(Bucket(59.5, 5950.0, at=10.0), now=12.0, tokens=400, rpm=60, tpm=6000)
    assert (after, wait) == (Bucket(59.0, 5600.0, 12.0), 0.0)


def test_headers_pause_until_the_next_request_fits() -> None:
    headers = {
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "1m0s",
        "x-ratelimit-limit-tokens": "10000",
        "x-ratelimit-remaining-tokens": "9000",
        "x-ratelimit-reset-tokens": "6s",
    }
    # Refilling 60 requests takes 60 s, so one takes 1 s; 9,000 tokens cover a request of 500.
    assert header_pause(headers, next_tokens=500) == pytest.approx(1.0)
    # 9,500 tokens: 500 missing of the 1,000 that refill in 6 s.
    assert header_pause({**headers, "x-ratelimit-remaining-requests": "5"}, 9500) == pytest.approx(3.0)
    assert header_pause({}, 500) == 0.0


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
            shared = [
                PostgresRateLimiter(e, "org", requests_per_minute=30, tokens_per_minute=1e9) for e in engines
            ]
            assert _two_senders(fake, shared) == []
            statuses = [r["status"] for r in fake.requests]
            assert statuses == [200] * 32
            # The two extra requests had to wait for the quota to refill, at least once.
            assert sum(lim.waited_s for lim in shared) > 0

        # The control: each sender with a budget of its own (two quotas) overruns the shared one.
        with FakeOpenAI(requests_per_minute=30) as fake:
            separate = [PostgresRateLimiter(e, f"own{k}", 30, 1e9) for k, e in enumerate(engines)]
            failures = _two_senders(fake, separate)
            assert failures and set(failures) == {429}
    finally:
        for e in engines:
            e.dispose()


def test_headers_hold_back_a_sender_that_assumes_a_larger_quota(engine: sa.Engine) -> None:
    # Configured for far more than the organisation really has (30 a minute, one back every 2 s): the
    # headers keep it under the real limit.
    with FakeOpenAI(requests_per_minute=30) as fake:
        limiter = PostgresRateLimiter(engine, "org", requests_per_minute=1e6, tokens_per_minute=1e9)
        failures: list = []
        _send(_embedder(fake, limiter), 36, "eager", failures)
        assert failures == []
        assert [r["status"] for r in fake.requests] == [200] * 36
        assert limiter.waited_s >= 1.0

    # The control: the same requests without a limiter run into 429s.
    with FakeOpenAI(requests_per_minute=30) as fake:
        failures = []
        _send(_embedder(fake, None), 36, "eager", failures)
        assert failures and set(failures) == {429}
