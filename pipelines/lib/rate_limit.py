"""Rate-limit arithmetic for embedding requests: a token bucket per limit (requests per minute, tokens
per minute) and the reading of the `x-ratelimit-*` headers OpenAI returns. Pure functions; the shared
state lives in Postgres (pipelines/rate_limiter.py)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class Bucket:
    """Requests and tokens left at `at` (seconds); each refills at its per-minute limit, up to it."""

    requests: float
    tokens: float
    at: float


def refill(bucket: Bucket, now: float, rpm: float, tpm: float) -> Bucket:
    elapsed = max(0.0, now - bucket.at)
    return Bucket(
        min(rpm, bucket.requests + elapsed * rpm / 60.0),
        min(tpm, bucket.tokens + elapsed * tpm / 60.0),
        max(now, bucket.at),
    )


def take(bucket: Bucket, now: float, tokens: int, rpm: float, tpm: float) -> tuple[Bucket, float]:
    """(the bucket after taking one request of `tokens`, 0.0) if both limits allow it now; otherwise
    (the refilled bucket, seconds until they will). A request larger than the whole per-minute token
    limit is let through once the bucket is full, or it could never be sent."""
    full = refill(bucket, now, rpm, tpm)
    need_tokens = min(float(tokens), tpm)
    short_requests = max(0.0, 1.0 - full.requests)
    short_tokens = max(0.0, need_tokens - full.tokens)
    if short_requests == 0.0 and short_tokens == 0.0:
        return Bucket(full.requests - 1.0, full.tokens - tokens, full.at), 0.0
    wait = max(short_requests * 60.0 / rpm, short_tokens * 60.0 / tpm)
    return full, wait


def parse_duration(text: str | None) -> float | None:
    """OpenAI's reset durations: `1s`, `6m0s`, `20ms`, `1h2m3.5s`; None when absent or unreadable."""
    if not text:
        return None
    text = text.strip()
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * _UNIT_S[u] for n, u in parts)


def _number(headers: Mapping[str, str], name: str) -> float | None:
    try:
        return float(headers[name])
    except (KeyError, TypeError, ValueError):
        return None


def _refill_wait(headers: Mapping[str, str], kind: str, needed: float) -> float:
    """Seconds until `needed` units of `kind` are left. The quota refills continuously, so from
    `remaining` it reaches `limit` in `reset`: the wait is that time scaled to the units missing. Without
    a limit header, the whole reset (or 1 s when that is missing too)."""
    remaining = _number(headers, f"x-ratelimit-remaining-{kind}")
    if remaining is None or remaining >= needed:
        return 0.0
    reset = parse_duration(headers.get(f"x-ratelimit-reset-{kind}"))
    if reset is None:
        return 1.0
    limit = _number(headers, f"x-ratelimit-limit-{kind}")
    if limit is None or limit <= remaining:
        return reset
    return reset * min(1.0, (needed - remaining) / (limit - remaining))


def header_pause(headers: Mapping[str, str], next_tokens: int) -> float:
    """Seconds to hold every sender after a response whose headers say the quota is (nearly) spent: no
    request left, or fewer tokens left than the next request needs; 0.0 otherwise or without headers."""
    return max(_refill_wait(headers, "requests", 1.0), _refill_wait(headers, "tokens", float(next_tokens)))
