import functools
import math
import random

import pytest

from pipelines.lib.batching import minimum_requests, plan_batches
from pipelines.lib.tokens import conservative_estimate


def _check(counts, batches, max_inputs, max_tokens):
    assert [i for b in batches for i in b] == list(range(len(counts)))
    for b in batches:
        assert 1 <= len(b) <= max_inputs
        assert sum(counts[i] for i in b) <= max_tokens


def _fits(counts, group, max_inputs, max_tokens):
    return len(group) <= max_inputs and sum(counts[i] for i in group) <= max_tokens


def _optimal_in_order(counts, max_inputs, max_tokens):
    """Fewest requests over every split of the inputs into consecutive runs, by dynamic programming."""
    n = len(counts)
    best = [0] + [math.inf] * n
    for end in range(1, n + 1):
        for start in range(end):
            if _fits(counts, range(start, end), max_inputs, max_tokens):
                best[end] = min(best[end], best[start] + 1)
    return best[n]


def _optimal_any_order(counts, max_inputs, max_tokens):
    """Fewest requests over every grouping of the inputs at all (exhaustive over subsets, n <= 10)."""
    n = len(counts)
    members = [[i for i in range(n) if mask >> i & 1] for mask in range(1 << n)]
    fits = [_fits(counts, m, max_inputs, max_tokens) for m in members]

    @functools.cache
    def fewest(mask):
        if mask == 0:
            return 0
        low = mask & -mask  # the group holding the lowest remaining input; every grouping has one
        sub, best = mask, math.inf
        while sub:
            if sub & low and fits[sub]:
                best = min(best, fewest(mask ^ sub) + 1)
            sub = (sub - 1) & mask
        return best

    return fewest((1 << n) - 1)


@pytest.mark.parametrize("seed", range(200))
def test_small_inputs_against_brute_force(seed):
    rng = random.Random(seed)
    max_inputs, max_tokens = rng.randint(1, 4), rng.randint(10, 40)
    counts = [rng.randint(1, max_tokens) for _ in range(rng.randint(0, 10))]
    batches = plan_batches(counts, max_inputs, max_tokens)
    _check(counts, batches, max_inputs, max_tokens)
    in_order = _optimal_in_order(counts, max_inputs, max_tokens)
    any_order = _optimal_any_order(counts, max_inputs, max_tokens)
    # Requests keep the inputs in order, and among such packings next-fit is optimal.
    assert len(batches) == in_order
    # The bound is a true lower bound: no grouping whatever does better.
    assert minimum_requests(counts, max_inputs, max_tokens) <= any_order <= in_order


def test_lower_bound_is_reached_when_either_limit_alone_binds():
    # Independent cases where the optimum is known by hand: equal inputs fill requests exactly.
    assert minimum_requests([5] * 12, 4, 1000) == 3 == _optimal_any_order([5] * 12, 4, 1000)
    assert minimum_requests([10] * 6, 100, 20) == 3 == _optimal_any_order([10] * 6, 100, 20)
    assert minimum_requests([], 4, 10) == 0 == len(plan_batches([], 4, 10))
    # Reordering can beat any in-order packing, by hand: {9, 3} twice vs [9], [9, 3], [3].
    assert _optimal_any_order([9, 9, 3, 3], 2, 12) == 2 < len(plan_batches([9, 9, 3, 3], 2, 12)) == 3


@pytest.mark.parametrize("seed", range(20))
def test_batches_respect_both_limits(seed):
    rng = random.Random(seed)
    counts = [rng.randint(1, 400) for _ in range(rng.randint(0, 3000))]
    batches = plan_batches(counts, 256, 20_000)
    _check(counts, batches, 256, 20_000)
    # Next-fit with items at most 2 % of the token limit stays within one request per limit-bound of optimal.
    lower = minimum_requests(counts, 256, 20_000)
    assert lower >= math.ceil(len(counts) / 256) and lower * 20_000 >= sum(counts)
    assert len(batches) <= lower + math.ceil(len(batches) * 0.02) + 1


def test_input_limit_alone_reaches_minimum():
    counts = [10] * 5000
    assert len(plan_batches(counts, 2048, 300_000)) == 3 == minimum_requests(counts, 2048, 300_000)


def test_token_limit_alone_reaches_minimum():
    counts = [1000] * 900
    assert len(plan_batches(counts, 2048, 300_000)) == 3 == minimum_requests(counts, 2048, 300_000)


def test_groups_respect_both_limits_and_keep_order():
    # The rule request files follow too, with bytes for tokens.
    sizes = [10, 10, 10, 50, 10, 10, 10]
    groups = plan_batches(sizes, 3, 60)
    assert [i for g in groups for i in g] == list(range(len(sizes)))
    for g in groups:
        assert len(g) <= 3 and sum(sizes[i] for i in g) <= 60
    assert groups == [[0, 1, 2], [3, 4], [5, 6]]


def test_oversized_input_is_a_caller_error():
    with pytest.raises(ValueError, match="input 1 has 301 tokens"):
        plan_batches([1, 301], 10, 300)


def test_conservative_estimate_errs_high():
    english = "The quick brown fox jumps over the lazy dog. " * 10
    # ~4 characters per token in practice; the estimate must not be below that.
    assert conservative_estimate(english) >= len(english) / 4
    assert conservative_estimate("練習") == 3
    assert conservative_estimate("abc") == 1
