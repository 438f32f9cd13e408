"""The ingest arena: one page-aligned region, GPU-visible, split into equal chunk slots.

The memory comes from the backend (`Device.host_memory`): pinned and device-mapped on CUDA, so
a read that lands in a chunk is already where the megakernel reads it (no bounce copy), plain
anonymous memory on the CPU backend. The same memory is registered with every io_uring reader
as fixed buffers (READ_FIXED), split into buffers of whole chunks because the kernel takes at
most 1 GiB per registered buffer.

Chunk slots are page-aligned and a whole number of pages long, so O_DIRECT reads can target
them. Which slot is free is the stream pipeline's business (a slot is reused only after the
megakernel finished every run over it: DESIGN.md, "Exactly once").
"""

from __future__ import annotations

import mmap
from collections.abc import Callable

import numpy as np

from vyre_runtime.errors import IngestError
from vyre_runtime.ingest.uring_abi import MAX_BUFFER_BYTES

PAGE = mmap.PAGESIZE


def round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


class Arena:
    """``count`` chunk slots of ``chunk_bytes`` each (rounded up to whole pages)."""

    def __init__(self, chunk_bytes: int, count: int, allocate: Callable[[int], np.ndarray]) -> None:
        if chunk_bytes < 1 or count < 1:
            raise IngestError(f"an arena needs chunks of >= 1 byte and >= 1 chunk, got {count} x {chunk_bytes}")
        self.chunk_bytes = round_up(chunk_bytes, PAGE)
        if self.chunk_bytes > MAX_BUFFER_BYTES:
            raise IngestError(
                f"a {self.chunk_bytes}-byte arena chunk exceeds io_uring's {MAX_BUFFER_BYTES}-byte buffer limit",
                "use a smaller --chunk-size",
            )
        self.count = count
        self.memory = allocate(self.chunk_bytes * count)
        self.address = int(self.memory.ctypes.data)
        if self.address % PAGE:
            raise IngestError("the arena memory is not page-aligned", "please report this bug")
        # io_uring fixed buffers: consecutive chunks grouped into buffers of at most 1 GiB
        self.chunks_per_buffer = max(1, MAX_BUFFER_BYTES // self.chunk_bytes)

    @property
    def nbytes(self) -> int:
        return self.chunk_bytes * self.count

    def chunk(self, index: int) -> np.ndarray:
        """The uint8 view of chunk slot ``index``."""
        start = index * self.chunk_bytes
        return self.memory[start : start + self.chunk_bytes]

    def chunk_address(self, index: int) -> int:
        return self.address + index * self.chunk_bytes

    def buffer_index(self, chunk: int) -> int:
        """The registered io_uring buffer that holds chunk slot ``chunk``."""
        return chunk // self.chunks_per_buffer

    def buffers(self) -> list[tuple[int, int]]:
        """(address, length) of each fixed buffer, in buffer_index order."""
        groups = range(0, self.count, self.chunks_per_buffer)
        return [
            (self.chunk_address(first), min(self.chunks_per_buffer, self.count - first) * self.chunk_bytes)
            for first in groups
        ]
