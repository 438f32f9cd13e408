"""Released device blocks, handed out again best-fit.

Device memory cannot be freed while the resident kernel runs (cuMemFree waits for it), so blocks
a run gave back are kept and lent again. Kept per exact size class, a stream over files of many
sizes piled up blocks in every class it ever met (a file's last chunk is short: each new size was
a new class), up to a slot count per class. Best fit (the smallest free block at least as large as
asked) lends whatever is idle instead, so a new block is made only when every free one is too
small.
"""

from __future__ import annotations

import bisect
from typing import Generic, TypeVar

Block = TypeVar("Block")


class FreeBlocks(Generic[Block]):
    """Free blocks by size; not thread-safe (the device takes its lock around it)."""

    def __init__(self) -> None:
        self._sizes: list[int] = []  # sorted sizes that have a free block
        self._blocks: dict[int, list[Block]] = {}

    def put(self, size: int, block: Block) -> None:
        blocks = self._blocks.setdefault(size, [])
        if not blocks:
            bisect.insort(self._sizes, size)
        blocks.append(block)

    def take(self, size: int) -> Block | None:
        """The free block of the smallest size >= ``size``, or None."""
        at = bisect.bisect_left(self._sizes, size)
        if at == len(self._sizes):
            return None
        fit = self._sizes[at]
        blocks = self._blocks[fit]
        block = blocks.pop()
        if not blocks:
            del self._sizes[at]
        return block

    def count_at_least(self, size: int) -> int:
        """How many free blocks are at least ``size`` bytes."""
        at = bisect.bisect_left(self._sizes, size)
        return sum(len(self._blocks[fit]) for fit in self._sizes[at:])

    def __len__(self) -> int:
        return sum(len(blocks) for blocks in self._blocks.values())
