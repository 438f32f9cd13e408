"""Read many lanes' byte ranges side by side, one byte position ("row") per NumPy operation.

Sequential per-lane scans (FNV, DFA walks) cannot be vectorized along a lane, so they are
vectorized *across* lanes: row i holds byte i of every lane's range. Lanes are ordered longest
first, so the lanes still active at any row are a prefix (a cheap slice, no masks). Rows are
gathered in blocks: a lane-major copy (contiguous per lane, friendly to caches and TLBs), then
one transpose.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

BLOCK_ELEMENTS = 1 << 18  # bytes per gathered block: small enough for L2, big enough to amortize
MIN_BLOCK_ROWS = 16
MAX_BLOCK_ROWS = 4096


class LaneRanges:
    """Byte ranges ``[start, start + length)`` of k lanes, reordered longest first."""

    def __init__(self, data: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> None:
        lengths = lengths.astype(np.int64)
        self.order = np.argsort(-lengths, kind="stable")  # sorted position -> caller's position
        self.starts = starts.astype(np.int64)[self.order]
        self.lengths = lengths[self.order]
        self._negated = -self.lengths  # ascending: searchsorted counts the lanes longer than a row
        self.data = data

    def active(self, row: int) -> int:
        """How many lanes (a prefix of the order) have a byte at ``row``."""
        return int(np.searchsorted(self._negated, -row, side="left"))

    def block_rows(self, row: int, count: int) -> int:
        rows = min(max(BLOCK_ELEMENTS // max(count, 1), MIN_BLOCK_ROWS), MAX_BLOCK_ROWS)
        return min(rows, int(self.lengths[0]) - row)

    def window(self, count: int, offset: int, width: int) -> np.ndarray:
        """(count, width) uint8: bytes ``start + offset ..`` of the first ``count`` lanes.

        Bytes past a lane's range (or past the region) are arbitrary; callers mask them.
        """
        starts = self.starts[:count] + offset
        data = self.data
        size = len(data)
        if count > 1:
            stride = int(starts[1] - starts[0])
            if stride >= 0 and starts[-1] + width <= size and (np.diff(starts) == stride).all():
                # evenly spaced lanes (the common split): a strided view, no index arithmetic
                view = as_strided(data[int(starts[0]) :], shape=(count, width), strides=(stride, 1), writeable=False)
                return np.ascontiguousarray(view)  # (np.array would keep a stride-0 view's F order)
        index = np.add.outer(starts, np.arange(width, dtype=np.int64))
        np.minimum(index, size - 1, out=index)
        return np.ascontiguousarray(data[index])  # callers view rows as words: C order, always

    def rows(self, row: int, rows: int, count: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Rows ``row .. row+rows`` of the first ``count`` lanes as a C-contiguous (rows, count)
        block, and per row how many lanes are active there (None when all ``count`` are)."""
        return np.ascontiguousarray(self.window(count, row, rows).T), self.activity(row, rows, count)

    def activity(self, row: int, rows: int, count: int) -> np.ndarray | None:
        """Per row of ``row .. row+rows``: active lanes, or None when all first ``count`` are."""
        if self.lengths[count - 1] >= row + rows:
            return None
        return np.searchsorted(self._negated, -np.arange(row, row + rows), side="left")
