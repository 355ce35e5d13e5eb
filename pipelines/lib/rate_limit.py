"""Rate-limit arithmetic for embedding requests, modelled on the provider's own: each limit (requests,
tokens) is a bucket holding at most one window's quota that refills continuously at quota/window, and a
request goes when both buckets hold what it needs. OpenAI's per-minute limits behave this way: a fresh
organisation may send a whole minute's tokens at once, then as fast as they come back.

Pure functions; the shared state lives in Postgres (pipelines/rate_limiter.py). The bucket is never in
debt: after any burst, a request waits at most one window, and a small one only as long as the provider
would make it wait."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

# A request may carry at most this share of the token quota when a limiter is configured: the smaller the
# requests, the closer the run follows the refill (a request waits for its whole estimate, and the
# estimate's excess over the provider's count is in the bucket only while the request is in flight).
REQUEST_SHARE_OF_QUOTA = 1 / 20


@dataclass(frozen=True)
class Quota:
    """Requests and tokens the provider allows per window (OpenAI: per minute)."""

    requests: float
    tokens: float
    window_s: float = 60.0

    def __post_init__(self) -> None:
        for name, value in (
            ("requests", self.requests),
            ("tokens", self.tokens),
            ("window_s", self.window_s),
        ):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(
                    f"a rate-limit quota's {name} must be a finite number above 0, got {value!r}"
                )

    def lowered_to(self, requests: float | None, tokens: float | None) -> Quota:
        """This quota, lowered to the provider's stated limits where they are smaller (an operator may
        configure more than the organisation really has; never less is assumed than configured)."""
        return replace(
            self,
            requests=min(self.requests, requests) if requests and requests > 0 else self.requests,
            tokens=min(self.tokens, tokens) if tokens and tokens > 0 else self.tokens,
        )


@dataclass(frozen=True)
class Bucket:
    """Requests and tokens left at `at` (seconds); each refills at quota/window, up to the quota."""

    requests: float
    tokens: float
    at: float


def full(quota: Quota, now: float) -> Bucket:
    """A quota nobody has used for a window: the provider lets all of it through at once."""
    return Bucket(quota.requests, quota.tokens, now)


def refill(bucket: Bucket, now: float, quota: Quota) -> Bucket:
    elapsed = max(0.0, now - bucket.at)
    return Bucket(
        min(quota.requests, bucket.requests + elapsed * quota.requests / quota.window_s),
        min(quota.tokens, bucket.tokens + elapsed * quota.tokens / quota.window_s),
        max(now, bucket.at),
    )


def charge(tokens: float, quota: Quota) -> float:
    """What a request of `tokens` takes from the bucket: a request above the whole quota (which the
    provider refuses anyway) takes a full bucket, never more, so that nothing after it inherits a debt."""
    return min(float(tokens), quota.tokens)


def take(bucket: Bucket, now: float, tokens: int, quota: Quota) -> tuple[Bucket, float]:
    """(the bucket after one request of `tokens`, 0.0) if both limits allow it now; otherwise (the refilled
    bucket, seconds until they will), which is never more than one window."""
    level = refill(bucket, now, quota)
    need = charge(tokens, quota)
    # Shortfalls within rounding of the refill (a sender that slept exactly as told) count as none.
    short_requests = _beyond_rounding(1.0 - level.requests, quota.requests)
    short_tokens = _beyond_rounding(need - level.tokens, quota.tokens)
    if short_requests == 0.0 and short_tokens == 0.0:
        return Bucket(max(0.0, level.requests - 1.0), max(0.0, level.tokens - need), level.at), 0.0
    wait = max(short_requests / quota.requests, short_tokens / quota.tokens) * quota.window_s
    return level, wait


def _beyond_rounding(short: float, limit: float) -> float:
    return short if short > limit * 1e-9 else 0.0


def settle(bucket: Bucket, now: float, charged: float, used: int, quota: Quota) -> Bucket:
    """The bucket once a request that took `charged` tokens turned out to use `used` (the provider's count,
    from the response's usage): the estimate's excess comes back, a shortfall is taken, within [0, quota]."""
    level = refill(bucket, now, quota)
    tokens = min(quota.tokens, max(0.0, level.tokens + charged - float(used)))
    return Bucket(level.requests, tokens, level.at)


def _number(headers: Mapping[str, str], name: str) -> float | None:
    try:
        value = float(headers[name])
    except (KeyError, TypeError, ValueError):
        return None
    return value if math.isfinite(value) and value >= 0 else None


def stated_limits(headers: Mapping[str, str]) -> tuple[float | None, float | None]:
    """The provider's (requests, tokens) limits from `x-ratelimit-limit-*`; None where absent."""
    return _number(headers, "x-ratelimit-limit-requests"), _number(headers, "x-ratelimit-limit-tokens")


def observe(bucket: Bucket, now: float, sent_at: float, headers: Mapping[str, str], quota: Quota) -> Bucket:
    """The bucket lowered to what the provider says it has left. `x-ratelimit-remaining-*` is the provider's
    bucket when it admitted the request (no earlier than `sent_at`); it has refilled since, at the stated
    limit's rate. The provider knows better only when it has less: other senders of the organisation, or a
    smaller quota than configured. Without the headers the bucket is unchanged."""
    level = refill(bucket, now, quota)
    since = max(0.0, now - sent_at)
    limits = dict(zip(("requests", "tokens"), stated_limits(headers), strict=True))
    left = {"requests": level.requests, "tokens": level.tokens}
    for kind, own in left.items():
        remaining = _number(headers, f"x-ratelimit-remaining-{kind}")
        if remaining is None:
            continue
        limit = limits[kind]
        provider = remaining if limit is None else min(limit, remaining + since * limit / quota.window_s)
        left[kind] = min(own, provider)
    return Bucket(left["requests"], left["tokens"], level.at)


def request_token_cap(quota: Quota) -> int:
    """The most tokens one request should carry under `quota`: a share of the token quota, but never so
    little that the request limit would bind first."""
    share = quota.tokens * REQUEST_SHARE_OF_QUOTA
    enough_for_requests = 2.0 * quota.tokens / quota.requests
    return max(1, math.floor(min(quota.tokens, max(share, enough_for_requests))))
