"""The retention sweep's batch sizing: smaller after a batch that held its locks too long, larger after quick ones."""

from pipelines.lib.sweep_batches import FIRST_BATCH_CAP, SMALLEST_BATCH, first_batch_size, next_batch_size


def test_first_batch_is_capped_but_never_above_the_configured_size():
    assert first_batch_size(1000) == FIRST_BATCH_CAP == 250
    assert first_batch_size(2) == 2


def test_a_slow_batch_is_followed_by_one_sized_to_the_target():
    # 1,000 documents held 1.6 s; at that pace 0.5 s covers 312.5 of them.
    assert next_batch_size(1000, 1000, held_s=1.6, target_s=0.5) == 312


def test_quick_batches_double_up_to_the_configured_size():
    assert next_batch_size(250, 1000, held_s=0.1, target_s=0.5) == 500
    assert next_batch_size(500, 1000, held_s=0.1, target_s=0.5) == 1000
    assert next_batch_size(1000, 1000, held_s=0.1, target_s=0.5) == 1000


def test_a_batch_near_the_target_keeps_its_size():
    assert next_batch_size(600, 1000, held_s=0.4, target_s=0.5) == 600


def test_small_batches_are_never_shrunk():
    assert next_batch_size(2, 2, held_s=5.0) == 2
    assert next_batch_size(1000, 1000, held_s=60.0) == SMALLEST_BATCH
