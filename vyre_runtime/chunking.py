"""Split a byte stream into chunk regions with overlap, attributing every byte to one chunk.

A chunk *owns* ``[offset, offset + chunk_size)`` of the file and is given ``overlap`` extra bytes
of context on each side (clipped at the file edges), so a match that straddles a chunk boundary
is visible to both neighbours; the program counts it only in the chunk whose owned range holds
its anchor (see docs/VIR0.md, "Dispatch"). That is the exactly-once rule for chunked streams.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from vyre_runtime.errors import DispatchError

MAX_REGION_BYTES = (1 << 32) - 1  # region offsets are u32 in VIR0


@dataclass(frozen=True)
class ChunkPlan:
    """Where one chunk's region lies in the file, and which part of it the chunk owns."""

    index: int
    region_start: int  # file offset of region byte 0
    region_end: int  # file offset one past the last region byte
    own_start: int  # file offset of the first owned byte
    own_end: int  # file offset one past the last owned byte

    @property
    def region_length(self) -> int:
        return self.region_end - self.region_start

    @property
    def own_lo(self) -> int:
        return self.own_start - self.region_start

    @property
    def own_hi(self) -> int:
        return self.own_end - self.region_start


def plan_chunks(file_size: int, chunk_size: int, overlap: int) -> Iterator[ChunkPlan]:
    """Chunks covering ``[0, file_size)`` once; an empty file has no chunks."""
    if chunk_size < 1:
        raise DispatchError(f"chunk size {chunk_size} must be at least 1 byte", "pass a positive --chunk-size")
    if overlap < 0:
        raise DispatchError(f"overlap {overlap} must not be negative")
    if chunk_size + 2 * overlap > MAX_REGION_BYTES:
        raise DispatchError(
            f"chunk size {chunk_size} plus 2 x overlap {overlap} exceeds a region's 4 GiB limit",
            "use a smaller --chunk-size",
        )
    for index, own_start in enumerate(range(0, file_size, chunk_size)):
        own_end = min(file_size, own_start + chunk_size)
        yield ChunkPlan(
            index=index,
            region_start=max(0, own_start - overlap),
            region_end=min(file_size, own_end + overlap),
            own_start=own_start,
            own_end=own_end,
        )


def parse_size(text: str) -> int:
    """'4MiB', '16M', '1g', '65536' -> bytes. Binary units; raises DispatchError."""
    units = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    cleaned = text.strip().lower().removesuffix("ib").removesuffix("b")
    number, unit = cleaned, ""
    if cleaned and cleaned[-1] in units:
        number, unit = cleaned[:-1], cleaned[-1]
    try:
        value = int(number) * units[unit]
    except (ValueError, KeyError):
        raise DispatchError(
            f"cannot read {text!r} as a size", "write a size like 65536, 64KiB, 16MiB or 1GiB"
        ) from None
    if value < 1:
        raise DispatchError(f"size {text!r} must be positive")
    return value
