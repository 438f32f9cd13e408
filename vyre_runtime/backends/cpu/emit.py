"""The run's hit buffer: records appended by ``emit`` and ``dfae``, bounded by the capacity C.

Order (docs/VIR0.md §8.8): the CPU backend appends in step order, then lane id order.
Within one scheduler step several instructions may emit (divergent groups at different pcs), so
records are staged per step and sorted by lane (stably: a lane's own records keep their order)
when the step ends. A record that does not fit is counted in ``dropped``, never silently lost.
"""

from __future__ import annotations

import numpy as np


class EmitBuffer:
    def __init__(self, capacity: int, emit_words: int) -> None:
        self.capacity = capacity
        self.emit_words = emit_words
        self.count = 0
        self.dropped = 0
        self._chunks: list[np.ndarray] = []
        self._staged: list[tuple[np.ndarray, np.ndarray]] = []
        self._staged_overflow = 0

    @property
    def remaining(self) -> int:
        return self.capacity - self.count

    @property
    def has_staged(self) -> bool:
        return bool(self._staged) or self._staged_overflow > 0

    def stage(self, lanes: np.ndarray, records: np.ndarray, overflow: int = 0) -> None:
        """Queue ``records`` (k x emit_words uint32) emitted by ``lanes`` (k lane ids) this step.

        ``overflow`` counts records the producer already knows cannot fit (dfae prunes them so a
        huge match count never materializes); they go straight to ``dropped``.
        """
        if len(records):
            self._staged.append((lanes, records))
        self._staged_overflow += overflow

    def end_step(self) -> None:
        """Append this step's records in lane order until the buffer is full; count the rest."""
        staged, self._staged = self._staged, []
        self.dropped += self._staged_overflow
        self._staged_overflow = 0
        if not staged:
            return
        if len(staged) == 1:
            records = staged[0][1]
        else:
            lanes = np.concatenate([lanes for lanes, _ in staged])
            records = np.concatenate([records for _, records in staged])
            records = records[np.argsort(lanes, kind="stable")]
        fits = min(len(records), self.remaining)
        if fits:
            self._chunks.append(np.ascontiguousarray(records[:fits], dtype=np.uint32))
            self.count += fits
        self.dropped += len(records) - fits

    def records(self) -> np.ndarray:
        if not self._chunks:
            return np.zeros((0, self.emit_words), dtype=np.uint32)
        return np.concatenate(self._chunks)
