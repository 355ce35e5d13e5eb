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


@pytest.mark.parametrize("seed", range(20))
def test_batches_respect_both_limits(seed):
    rng = random.Random(seed)
    counts = [rng.randint(1, 400) for _ in range(rng.randint(0, 3000))]
    batches = plan_batches(counts, 256, 20_000)
    _check(counts, batches, 256, 20_000)
    # Next-fit with items at most 2 % of the token limit stays within one request per limit-bound of optimal.
    lower = max(math.ceil(len(counts) / 256), math.ceil(sum(counts) / 20_000))
    assert minimum_requests(counts, 256, 20_000) == lower
    assert len(batches) <= lower + math.ceil(len(batches) * 0.02) + 1


def test_input_limit_alone_reaches_minimum():
    counts = [10] * 5000
    assert len(plan_batches(counts, 2048, 300_000)) == 3 == minimum_requests(counts, 2048, 300_000)


def test_token_limit_alone_reaches_minimum():
    counts = [1000] * 900
    assert len(plan_batches(counts, 2048, 300_000)) == 3 == minimum_requests(counts, 2048, 300_000)


def test_oversized_input_is_a_caller_error():
    with pytest.raises(ValueError, match="input 1 has 301 tokens"):
        plan_batches([1, 301], 10, 300)


def test_conservative_estimate_errs_high():
    english = "The quick brown fox jumps over the lazy dog. " * 10
    # ~4 characters per token in practice; the estimate must not be below that.
    assert conservative_estimate(english) >= len(english) / 4
    assert conservative_estimate("練習") == 3
    assert conservative_estimate("abc") == 1
