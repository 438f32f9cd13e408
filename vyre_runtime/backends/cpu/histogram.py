"""``hist``: add per-byte-value counts of lanes' ranges into a binding, as few bincounts as possible.

Lanes usually split a region into adjacent ranges with the same base word, so ranges with one
base are merged where one ends exactly where the next starts (overlapping ranges are counted
separately: each lane counts its own bytes) and each merged run is counted once.
"""

from __future__ import annotations

import numpy as np

SMALL_RUN = 1 << 16  # below this a plain bincount of the bytes is cheapest
CHUNK = 1 << 20  # bytes per bincount call on long runs (bounds the int64 temporaries)


def byte_counts(data: np.ndarray, first: int, last: int) -> np.ndarray:
    """int64[256]: occurrences of each byte value in data[first:last]."""
    if last - first < SMALL_RUN:
        return np.bincount(data[first:last], minlength=256).astype(np.int64)
    counts = np.zeros(256, dtype=np.int64)
    pairs = np.zeros(65536, dtype=np.int64)
    even_last = last - (last - first) % 2
    for chunk_first in range(first, even_last, CHUNK):
        chunk = data[chunk_first : min(chunk_first + CHUNK, even_last)]
        # Counting byte pairs halves the elements bincount must widen to intp; a pair value
        # p = low + 256 * high contributes one count to each of its two bytes.
        pairs += np.bincount(chunk.view(np.uint16), minlength=65536)
    if even_last != last:
        counts[data[last - 1]] += 1
    by_pair = pairs.reshape(256, 256)  # [first byte, second byte] or the reverse; both are summed
    counts += by_pair.sum(axis=0) + by_pair.sum(axis=1)
    return counts


def adjacent_runs(starts: np.ndarray, lengths: np.ndarray) -> list[tuple[int, int]]:
    """Merge ranges (sorted by start) that touch end to start into (first, last) runs."""
    order = np.argsort(starts, kind="stable")
    first = starts[order].astype(np.int64)
    last = first + lengths[order].astype(np.int64)
    breaks = np.flatnonzero(first[1:] != last[:-1]) + 1
    run_first = np.concatenate(([0], breaks))
    run_last = np.concatenate((breaks, [len(first)])) - 1
    return list(zip(first[run_first].tolist(), last[run_last].tolist()))


def add_histograms(
    buffer: np.ndarray, data: np.ndarray, bases: np.ndarray, starts: np.ndarray, lengths: np.ndarray
) -> None:
    """For each lane: buffer[base + v] += count of byte v in its range (wrapping u32)."""
    for base in np.unique(bases).tolist():
        mine = bases == base
        counts = np.zeros(256, dtype=np.int64)
        for first, last in adjacent_runs(starts[mine], lengths[mine]):
            if last > first:
                counts += byte_counts(data, first, last)
        window = buffer[base : base + 256]
        window[:] = ((window.astype(np.uint64) + counts.astype(np.uint64)) & np.uint64(0xFFFFFFFF)).astype(np.uint32)
