"""Packing embedding inputs into API requests under the provider's per-request limits. Pure functions."""

from __future__ import annotations

import math
from collections.abc import Sequence


def plan_batches(token_counts: Sequence[int], max_inputs: int, max_tokens: int) -> list[list[int]]:
    """Indices of inputs grouped into requests of at most `max_inputs` inputs and `max_tokens` tokens.

    Inputs are packed in order (next-fit); with inputs far smaller than the token limit this reaches
    the minimum request count. An input alone above `max_tokens` is a caller error.
    """
    if max_inputs < 1 or max_tokens < 1:
        raise ValueError("max_inputs and max_tokens must be positive")
    batches: list[list[int]] = []
    current: list[int] = []
    current_tokens = 0
    for i, tokens in enumerate(token_counts):
        if tokens > max_tokens:
            raise ValueError(f"input {i} has {tokens} tokens, over the per-request limit {max_tokens}")
        if current and (len(current) == max_inputs or current_tokens + tokens > max_tokens):
            batches.append(current)
            current, current_tokens = [], 0
        current.append(i)
        current_tokens += tokens
    if current:
        batches.append(current)
    return batches


def minimum_requests(token_counts: Sequence[int], max_inputs: int, max_tokens: int) -> int:
    """The fewest requests any packing could use: a lower bound from both limits."""
    if not token_counts:
        return 0
    return max(math.ceil(len(token_counts) / max_inputs), math.ceil(sum(token_counts) / max_tokens))
