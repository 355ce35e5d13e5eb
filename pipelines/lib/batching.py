"""Packing embedding inputs into API requests under the provider's per-request limits. Pure functions."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")


def pack_batches(
    items: Iterable[T], tokens_of: Callable[[T], int], max_inputs: int, max_tokens: int
) -> Iterator[list[T]]:
    """Items grouped into requests of at most `max_inputs` inputs and `max_tokens` tokens, as they arrive.

    Inputs are packed in order (next-fit), holding one request's items at a time; with inputs far smaller
    than the token limit this reaches the minimum request count. An input alone above `max_tokens` is a
    caller error.
    """
    if max_inputs < 1 or max_tokens < 1:
        raise ValueError("max_inputs and max_tokens must be positive")
    current: list[T] = []
    current_tokens = 0
    for i, item in enumerate(items):
        tokens = tokens_of(item)
        if tokens > max_tokens:
            raise ValueError(f"input {i} has {tokens} tokens, over the per-request limit {max_tokens}")
        if starts_new_group(len(current), current_tokens, tokens, max_inputs, max_tokens):
            yield current
            current, current_tokens = [], 0
        current.append(item)
        current_tokens += tokens
    if current:
        yield current


def starts_new_group(count: int, weight: int, item_weight: int, max_items: int, max_weight: int) -> bool:
    """Next-fit: whether an item weighing `item_weight` opens a new group after one of `count` items weighing
    `weight` in all, under at most `max_items` items and `max_weight` per group. For a caller that writes each
    item out as it comes (a request file on disk) rather than holding its group."""
    return count > 0 and (count == max_items or weight + item_weight > max_weight)


def plan_batches(token_counts: Sequence[int], max_inputs: int, max_tokens: int) -> list[list[int]]:
    """Indices of inputs grouped into requests as `pack_batches` groups them."""
    return list(pack_batches(range(len(token_counts)), token_counts.__getitem__, max_inputs, max_tokens))


def minimum_requests(token_counts: Sequence[int], max_inputs: int, max_tokens: int) -> int:
    """The fewest requests any packing could use: a lower bound from both limits."""
    return minimum_requests_for(len(token_counts), sum(token_counts), max_inputs, max_tokens)


def minimum_requests_for(inputs: int, tokens: int, max_inputs: int, max_tokens: int) -> int:
    """`minimum_requests` from the totals alone: a count and a sum a database can compute."""
    if inputs == 0:
        return 0
    return max(math.ceil(inputs / max_inputs), math.ceil(tokens / max_tokens))
