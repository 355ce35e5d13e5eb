"""The pure rate-limit rule against an independent model of the provider's window.

The provider (OpenAI) lets a request through when, for every earlier moment `s`, what it admitted since
`s` plus the request stays within one window's quota plus the refill since `s`: a token bucket that holds
one window's quota, starts full and refills continuously. `Provider` below checks exactly that by brute
force over every admission, with no bucket arithmetic of its own, and solves for the earliest moment a
request fits the same way."""

from __future__ import annotations

import random

import pytest

from pipelines.lib.rate_limit import (
    Bucket,
    Quota,
    charge,
    full,
    observe,
    request_token_cap,
    settle,
    take,
)

EPS = 1e-6


class Provider:
    """Admissions as (time, tokens); one request each. `limit` per `window` seconds, for requests and tokens."""

    def __init__(self, quota: Quota):
        self.quota = quota
        self.admitted: list[tuple[float, float]] = []

    def _curves(self):
        q = self.quota
        yield lambda _tok: 1.0, q.requests
        yield lambda tok: tok, q.tokens

    def fits(self, t: float, tokens: float) -> bool:
        """Every window ending at `t` (starting at any earlier admission, or at `t`) stays within its quota."""
        for cost, limit in self._curves():
            if cost(tokens) > limit + EPS:
                return False
            for s, _ in self.admitted:
                if s > t:
                    continue
                since = sum(cost(tok) for u, tok in self.admitted if s <= u <= t)
                if since + cost(tokens) > limit + (t - s) * limit / self.quota.window_s + EPS:
                    return False
        return True

    def earliest(self, now: float, tokens: float) -> float:
        """The first moment from `now` at which the request fits: each window's constraint solved for t."""
        t = now
        for cost, limit in self._curves():
            rate = limit / self.quota.window_s
            for s, _ in self.admitted:
                since = sum(cost(tok) for u, tok in self.admitted if u >= s)
                t = max(t, s + (since + cost(tokens) - limit) / rate)
        return t

    def admit(self, t: float, tokens: float) -> None:
        assert self.fits(t, tokens), f"the provider would refuse {tokens} tokens at t={t:.3f}"
        self.admitted.append((t, tokens))


def _send(bucket: Bucket, now: float, tokens: int, quota: Quota) -> tuple[Bucket, float]:
    """A sender that asks the rule, sleeps as told and asks again: (bucket, the moment it went)."""
    for _ in range(100):
        bucket, wait = take(bucket, now, tokens, quota)
        if wait == 0.0:
            return bucket, now
        assert 0 < wait <= quota.window_s + EPS, "a wait never exceeds one window"
        now += wait
    raise AssertionError("the rule never let the request go")


@pytest.mark.parametrize("seed", range(6))
def test_requests_go_exactly_when_the_provider_would_take_them(seed: int) -> None:
    rng = random.Random(seed)
    quota = Quota(requests=rng.choice([5, 20, 3000]), tokens=rng.choice([1_000, 250_000]), window_s=60)
    provider = Provider(quota)
    bucket, now = full(quota, 0.0), 0.0
    for _ in range(40):
        now += rng.choice([0.0, 0.0, 0.1, rng.uniform(0, 30)])
        tokens = rng.randint(1, int(quota.tokens * rng.choice([0.02, 0.3, 1.0])))
        expected = provider.earliest(now, tokens)
        bucket, now = _send(bucket, now, tokens, quota)
        provider.admit(now, tokens)  # never more than the quota in any window
        assert now == pytest.approx(expected, abs=1e-6)  # and never later than the provider allows


def test_the_first_window_goes_at_once() -> None:
    # A quota nobody used lets a whole minute's tokens through at once, as the provider does.
    quota = Quota(requests=3000, tokens=250_000)
    bucket = full(quota, 0.0)
    for _ in range(20):
        bucket, wait = take(bucket, 0.0, 12_500, quota)
        assert wait == 0.0
    assert take(bucket, 0.0, 1, quota)[1] > 0


def test_a_small_request_right_after_a_burst_waits_only_for_its_own_tokens() -> None:
    quota = Quota(requests=3000, tokens=250_000)
    provider = Provider(quota)
    bucket, now = full(quota, 0.0), 0.0
    for _ in range(25):  # the whole quota and then some, as fast as the rule allows
        bucket, now = _send(bucket, now, 12_000, quota)
        provider.admit(now, 12_000)
    now += 0.5
    _, wait = take(bucket, now, 8_900, quota)
    assert wait == pytest.approx(provider.earliest(now, 8_900) - now, abs=1e-6)
    assert wait < 8_900 / (quota.tokens / 60)  # about 2 s, nowhere near a window


def test_a_request_over_the_whole_quota_leaves_no_debt() -> None:
    # The provider refuses a request above its whole quota; letting it through must not leave the bucket
    # owing more than it holds, or every later request would wait longer than any window.
    quota = Quota(requests=3000, tokens=250_000)
    bucket, wait = take(full(quota, 0.0), 0.0, 300_000, quota)
    assert wait == 0.0 and bucket.tokens >= 0
    assert charge(300_000, quota) == quota.tokens
    _, wait = take(bucket, 0.0, 8_900, quota)
    assert wait <= 8_900 / quota.tokens * 60 + EPS
    # One idle window later the quota is whole again.
    after, wait = take(bucket, 60.0, 250_000, quota)
    assert wait == 0.0 and after.tokens == 0.0


def test_settling_gives_back_what_the_estimate_took_too_much() -> None:
    # Estimates err high (the conservative tokenizer counts ~3 characters a token); the provider charges
    # what it counted. Once a request is answered the bucket holds what the provider's holds.
    quota = Quota(requests=3000, tokens=6_000, window_s=60)
    provider = Provider(quota)
    bucket, now = full(quota, 0.0), 0.0
    rng = random.Random(7)
    for _ in range(30):
        used = rng.randint(100, 1_500)
        estimate = int(used * 1.4)
        bucket, now = _send(bucket, now, estimate, quota)
        provider.admit(now, used)
        now += 0.4  # the answer comes back
        bucket = settle(bucket, now, charge(estimate, quota), used, quota)
        # The provider would take `n` tokens at the same moment the settled bucket does.
        for n in (1, 500, 6_000):
            _, wait = take(bucket, now, n, quota)
            assert now + wait == pytest.approx(provider.earliest(now, n), abs=1e-6)


def test_settling_stays_within_the_quota() -> None:
    quota = Quota(requests=60, tokens=1_000)
    assert settle(Bucket(59, 900, 0.0), 0.0, charged=500, used=10, quota=quota).tokens == 1_000
    assert settle(Bucket(59, 100, 0.0), 0.0, charged=10, used=500, quota=quota).tokens == 0.0


def _headers(limit_requests, left_requests, limit_tokens, left_tokens) -> dict[str, str]:
    return {
        "x-ratelimit-limit-requests": str(limit_requests),
        "x-ratelimit-remaining-requests": str(left_requests),
        "x-ratelimit-limit-tokens": str(limit_tokens),
        "x-ratelimit-remaining-tokens": str(left_tokens),
        "x-ratelimit-reset-requests": "1s",
        "x-ratelimit-reset-tokens": "6m0s",
    }


def test_headers_lower_the_bucket_to_what_the_provider_has_left() -> None:
    # Another sender of the organisation spent tokens this bucket knows nothing of: the provider had 1,000
    # left when it admitted the request sent at t=10, and refilled 100 a second since.
    quota = Quota(requests=60, tokens=6_000)
    bucket = Bucket(50, 5_000, 10.0)
    seen = observe(bucket, 12.0, 10.0, _headers(60, 55, 6_000, 1_000), quota)
    assert seen.tokens == pytest.approx(1_200) and seen.requests == pytest.approx(52)
    # A provider with more left than the bucket says never raises it; no headers change nothing.
    assert observe(bucket, 10.0, 10.0, _headers(60, 60, 6_000, 6_000), quota) == bucket
    assert observe(bucket, 10.0, 10.0, {}, quota) == bucket


def test_headers_after_a_run_do_not_hold_back_the_next_small_request() -> None:
    # The last answer of a run that used the whole quota: nothing left at t=100. A run starting a second
    # later with one request of 8,900 tokens waits for those tokens only (~2 s at 250k a minute), not for
    # the quota to be whole again (a minute).
    quota = Quota(requests=3000, tokens=250_000)
    bucket = observe(Bucket(2_900, 0.0, 99.6), 100.0, 99.6, _headers(3000, 2_900, 250_000, 0), quota)
    _, wait = take(bucket, 101.0, 8_900, quota)
    assert wait == pytest.approx((8_900 - 250_000 / 60 * 1.4) / (250_000 / 60), abs=1e-6)


def test_a_smaller_stated_limit_lowers_the_quota_never_a_larger_one() -> None:
    quota = Quota(requests=1e6, tokens=1e9)
    assert quota.lowered_to(30, None) == Quota(30, 1e9)
    assert quota.lowered_to(2e6, 2e9) == quota
    assert quota.lowered_to(0, None) == quota


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf")])
def test_a_quota_must_be_finite_and_positive(bad) -> None:
    with pytest.raises(ValueError, match="tokens"):
        Quota(requests=10, tokens=bad)


def test_requests_are_capped_to_a_share_of_the_token_quota() -> None:
    assert request_token_cap(Quota(3000, 250_000)) == 12_500
    # A low request quota: each request must carry enough tokens for the token quota to be reachable.
    assert request_token_cap(Quota(10, 250_000)) == 50_000
    assert request_token_cap(Quota(1, 250_000)) == 250_000
