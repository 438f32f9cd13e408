"""Staging memory for runs: host-mapped chunks the kernel reads and writes (outputs, records,
copied regions, global buffers), carved from large registered blocks and recycled.

Allocation may happen while the resident kernel runs (registering a new block does not wait for
it); unregistering may not, so blocks are only released by `unregister_all`, after the kernel
has exited. Chunk sizes are rounded to size classes (powers of two below 1 MiB, whole MiB above)
and a released chunk goes to its class's free list, so a steady stream of same-sized runs reuses
the same memory.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from vyre_runtime.backends.cuda.driver import MappedMemory

BLOCK_BYTES = 32 << 20
MIN_CHUNK = 256  # also the alignment of every chunk
LARGE = 1 << 20


def size_class(nbytes: int) -> int:
    if nbytes <= MIN_CHUNK:
        return MIN_CHUNK
    if nbytes < LARGE:
        return 1 << (nbytes - 1).bit_length()
    return -(-nbytes // LARGE) * LARGE


@dataclass(frozen=True)
class Chunk:
    block: MappedMemory
    offset: int
    nbytes: int  # the size class: at least what was asked for

    @property
    def device_pointer(self) -> int:
        return self.block.device_pointer + self.offset

    def view(self, dtype: np.dtype | str, count: int) -> np.ndarray:
        return self.block.view(dtype, count, self.offset)

    def byte_view(self, count: int) -> memoryview:
        """The chunk's first ``count`` bytes on a memoryview (a per-run copy without a NumPy view)."""
        return self.block.byte_view[self.offset : self.offset + count]


class StagingArena:
    def __init__(self, block_bytes: int = BLOCK_BYTES) -> None:
        self.block_bytes = block_bytes
        self.blocks: list[MappedMemory] = []
        self._free: dict[int, list[Chunk]] = {}
        self._current: MappedMemory | None = None
        self._used = 0
        self._lock = threading.Lock()

    def allocate(self, nbytes: int) -> Chunk:
        size = size_class(nbytes)
        with self._lock:
            free = self._free.get(size)
            if free:
                return free.pop()
            if self._current is None or self._used + size > self._current.nbytes:
                block = MappedMemory(max(self.block_bytes, size))
                self.blocks.append(block)
                if size >= self.block_bytes:  # a dedicated block: keep carving the current one
                    return Chunk(block, 0, size)
                self._current, self._used = block, 0
            chunk = Chunk(self._current, self._used, size)
            self._used += size
            return chunk

    def release(self, chunk: Chunk) -> None:
        with self._lock:
            self._free.setdefault(chunk.nbytes, []).append(chunk)

    @property
    def reserved_bytes(self) -> int:
        return sum(block.nbytes for block in self.blocks)

    def unregister_all(self) -> list[Exception]:
        """Unpin every block (the kernel has exited); returns the failures instead of raising."""
        errors: list[Exception] = []
        with self._lock:
            for block in self.blocks:
                try:
                    block.unregister()
                except Exception as error:  # best effort: the memory stays valid for Python
                    errors.append(error)
            self._free.clear()
            self._current = None
        return errors
