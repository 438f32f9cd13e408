"""Best-fit reuse of released device blocks (vyre_runtime/backends/cuda/free_blocks.py): the
CUDA device lends the fused runs' staging through it; plain Python, so it is tested here."""

from __future__ import annotations

import random

from vyre_runtime.backends.cuda.free_blocks import FreeBlocks


def test_the_smallest_block_large_enough_is_lent() -> None:
    free: FreeBlocks[str] = FreeBlocks()
    for size, name in ((4, "a"), (16, "b"), (8, "c"), (8, "d")):
        free.put(size, name)
    assert {free.take(5), free.take(5)} == {"c", "d"}  # both 8s before the 16
    assert free.take(3) == "a"
    assert free.take(17) is None  # nothing large enough: the caller allocates
    assert free.take(9) == "b"
    assert free.take(1) is None and len(free) == 0


def test_a_stream_of_mixed_sizes_makes_few_blocks() -> None:
    # Runs of many sizes (most full chunks, some short last chunks), a bounded number in flight.
    # Kept per exact size, a new block was made whenever its own size had none free: up to
    # `in_flight` blocks for every size met. Best fit lends any idle block large enough.
    rng = random.Random(5)
    free: FreeBlocks[int] = FreeBlocks()
    largest, in_flight = 17, 8
    size_of: dict[int, int] = {}  # block -> its size
    held: list[int] = []
    for _ in range(5000):
        if len(held) == in_flight:
            block = held.pop(rng.randrange(len(held)))
            free.put(size_of[block], block)
        want = largest if rng.random() < 0.8 else rng.randint(1, largest)
        block = free.take(want)
        if block is None:
            block = len(size_of)
            size_of[block] = want
        assert size_of[block] >= want
        held.append(block)
    assert len(size_of) <= 2 * in_flight


def test_count_at_least_counts_the_blocks_a_take_of_that_size_could_get() -> None:
    free: FreeBlocks[str] = FreeBlocks()
    for size, name in ((4, "a"), (16, "b"), (8, "c"), (8, "d")):
        free.put(size, name)
    assert [free.count_at_least(size) for size in (1, 5, 8, 9, 16, 17)] == [4, 3, 3, 1, 1, 0]
