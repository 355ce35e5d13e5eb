"""How many documents the retention sweep takes in its next batch, from how long the last one held its locks."""

from __future__ import annotations

# Half the one-second bound on a batch's lock hold: a batch that took longer is followed by a smaller one,
# sized in proportion, so a loaded server slows the sweep down instead of holding locks for seconds.
LOCK_HOLD_TARGET_S = 0.5
# The first batch of a sweep is at most this many documents, then each quick batch doubles it up to the
# configured size: the first batch has no measurement to go by.
FIRST_BATCH_CAP = 250
# Never shrunk below this: a batch this small that is slow was stalled, not too large.
SMALLEST_BATCH = 100


def first_batch_size(limit: int) -> int:
    return min(limit, FIRST_BATCH_CAP)


def next_batch_size(current: int, limit: int, held_s: float, target_s: float = LOCK_HOLD_TARGET_S) -> int:
    """The next batch's size: in proportion to `target_s / held_s` after a slow batch, doubled after one that
    held its locks under half the target, else unchanged; always within [min(limit, SMALLEST_BATCH), limit]."""
    if held_s > target_s:
        size = int(current * target_s / held_s)
    elif held_s < target_s / 2:
        size = current * 2
    else:
        size = current
    return max(min(limit, SMALLEST_BATCH), min(limit, size))
