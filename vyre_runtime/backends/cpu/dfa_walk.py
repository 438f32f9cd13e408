"""DFA walks (``dfa`` / ``dfae``) over many lanes' byte ranges at once.

Table layout (docs/VIR0-NOTES.md): u32 n_states, then n_states x 256 u32 transitions, each the
target state | DFA_ACCEPT_BIT when entering it is a match. For speed the table is re-encoded
once per program as "codes": code = (2 * state + accepted) * 256, and ``coded[code + byte]`` is
the next code. The accepted bit rides along in the state, so one step is one add and one take
(no masking), and matches are counted afterwards over a whole block of steps at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vyre_runtime.backends.cpu.lane_ranges import LaneRanges
from vyre_runtime.vir0.isa import DFA_ACCEPT_BIT

ACCEPTED = 256  # the accepted bit of a code
CODE_SHIFT = 9  # code >> 9 is the state
VECTOR_MIN_LANES = 32  # below this, a Python loop per lane beats a NumPy call per byte
PRUNE_SLACK = 4096  # dfae keeps at most ~2x its emit budget of candidate matches in memory


@dataclass(frozen=True)
class DfaTable:
    states: int
    coded: np.ndarray  # intp, 2 * states * 256 entries
    coded_list: list[int]  # the same, for the per-lane Python walk


def prepare_dfa(data: bytes) -> DfaTable:
    """Re-encode a (verified) DFA table for the walks below."""
    transitions = np.frombuffer(data, dtype="<u4", offset=4).astype(np.int64).reshape(-1, 256)
    states = transitions.shape[0]
    target = transitions & (DFA_ACCEPT_BIT - 1)
    accepted = (transitions & DFA_ACCEPT_BIT) != 0
    next_code = (2 * target + accepted) * ACCEPTED
    coded = np.repeat(next_code, 2, axis=0).reshape(-1).astype(np.intp)  # rows of (s, 0) and (s, 1) agree
    return DfaTable(states, coded, coded.tolist())


@dataclass
class Matches:
    """dfae's matches in emit order: by lane position, then byte offset."""

    lane: np.ndarray  # position in the caller's lane array
    offset: np.ndarray  # region offset of the byte whose transition accepted
    state: np.ndarray  # the state entered
    total: int  # matches found, including any pruned because they cannot fit


class _MatchCollector:
    """Collects matches but never more than needed: only the first ``keep`` in emit order can fit."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.held = 0

    def add(self, lane: np.ndarray, offset: np.ndarray, state: np.ndarray) -> None:
        if not self.keep or not len(lane):
            return
        self.parts.append((lane, offset, state))
        self.held += len(lane)
        if self.held > 2 * self.keep + PRUNE_SLACK:
            # Later blocks only add matches; a match with `keep` others ahead of it now stays
            # behind at least `keep` forever, so dropping it here is safe.
            self.parts = [self._sorted_first(self.keep)]
            self.held = len(self.parts[0][0])

    def _sorted_first(self, limit: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        lane, offset, state = (np.concatenate(column) for column in zip(*self.parts))
        order = np.lexsort((offset, lane))[:limit]
        return lane[order], offset[order], state[order]

    def result(self, total: int) -> Matches:
        if not self.parts:
            empty = np.zeros(0, dtype=np.int64)
            return Matches(empty, empty, empty, total)
        lane, offset, state = self._sorted_first(self.keep)
        return Matches(lane, offset, state, total)


def walk(
    table: DfaTable,
    data: np.ndarray,
    starts: np.ndarray,
    lengths: np.ndarray,
    states: np.ndarray,
    keep_matches: int | None,
) -> tuple[np.ndarray, np.ndarray, Matches | None]:
    """Run each lane's DFA over its range from its state.

    Returns (end states, match counts mod 2^32, matches) where matches (for dfae, when
    ``keep_matches`` is not None) hold at most the first ``keep_matches`` in emit order.
    """
    ranges = LaneRanges(data, starts, lengths)
    order = ranges.order
    code = states.astype(np.intp)[order] * (2 * ACCEPTED)
    counts = np.zeros(len(code), dtype=np.int64)
    collector = _MatchCollector(keep_matches) if keep_matches is not None else None
    coded = table.coded
    row = 0
    active_lanes = ranges.active(row)
    while active_lanes >= VECTOR_MIN_LANES:
        rows = ranges.block_rows(row, active_lanes)
        block, active = ranges.rows(row, rows, active_lanes)
        trace = np.empty((rows, active_lanes), dtype=np.intp)
        index = np.empty(active_lanes, dtype=np.intp)
        previous = code[:active_lanes]
        for i in range(rows):
            width = active_lanes if active is None else int(active[i])
            if width == active_lanes:
                np.add(previous, block[i], out=index)
                coded.take(index, out=trace[i], mode="clip")
            else:  # finished lanes keep their code, minus the accepted bit (no new match)
                np.add(previous[:width], block[i, :width], out=index[:width])
                coded.take(index[:width], out=trace[i, :width], mode="clip")
                np.bitwise_and(previous[width:], ~ACCEPTED, out=trace[i, width:])
            previous = trace[i]
        code[:active_lanes] = previous
        accepted = trace & ACCEPTED
        counts[:active_lanes] += accepted.sum(axis=0) >> 8
        if collector is not None:
            step, lane = np.nonzero(accepted)
            collector.add(order[lane], ranges.starts[lane] + row + step, trace[step, lane] >> CODE_SHIFT)
        row += rows
        active_lanes = ranges.active(row)
    for j in range(active_lanes):
        first = int(ranges.starts[j]) + row
        last = int(ranges.starts[j] + ranges.lengths[j])
        code[j], found, offsets, entered = _walk_one(
            table.coded_list, data[first:last].tobytes(), int(code[j]), collector
        )
        counts[j] += found
        if collector is not None and offsets:
            collector.add(
                np.full(len(offsets), order[j]), np.array(offsets, dtype=np.int64) + first, np.array(entered, np.int64)
            )
    end_states = np.empty(len(code), dtype=np.uint32)
    end_states[order] = code >> CODE_SHIFT
    match_counts = np.empty(len(code), dtype=np.uint32)
    match_counts[order] = counts & 0xFFFFFFFF
    matches = collector.result(int(counts.sum())) if collector is not None else None
    return end_states, match_counts, matches


def _walk_one(
    coded: list[int], data: bytes, code: int, collector: _MatchCollector | None
) -> tuple[int, int, list, list]:
    """One lane, byte by byte: (final code, matches, match offsets in data, states entered)."""
    found = 0
    if collector is None or not collector.keep:
        for byte in data:
            code = coded[code + byte]
            found += code & ACCEPTED
        return code, found >> 8, [], []
    offsets: list[int] = []
    entered: list[int] = []
    for position, byte in enumerate(data):
        code = coded[code + byte]
        if code & ACCEPTED:
            offsets.append(position)
            entered.append(code >> CODE_SHIFT)
    return code, len(offsets), offsets, entered
