"""DFA walks (``dfa`` / ``dfae``) over many lanes' byte ranges at once.

Table layout (docs/VIR0.md): u32 n_states, then n_states x 256 u32 transitions, each the
target state | DFA_ACCEPT_BIT when entering it is a match. For speed the table is re-encoded
once per program as "codes": code = (2 * state + accepted) * 256, and ``coded[code + byte]`` is
the next code. The accepted bit rides along in the state, so one step is one add and one take
(no masking), and matches are counted afterwards over a whole block of steps at once.

Counting walks (``dfa``) over large ranges first go two bytes per step through a pair table:
``pairs[state * 65536 + u16] = target * 65536 + matches * size`` (size = the table length,
matches 0..2). ``take(mode="wrap")`` reduces the next index modulo ``size``, which drops the
match count carried in the code, so a step is still one add and one take for two bytes.
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
PAIR = 65536  # pair-table entries per state: one per little-endian u16 of two input bytes
PAIR_MAX_STATES = 32  # the pair table is 512 KiB per state; beyond this it leaves the caches
PAIR_MIN_BYTES = 4 << 20  # a walk this long repays building the pair table (once per program)


class DfaTable:
    """A verified DFA table re-encoded for the walks; the pair table is built on first need."""

    def __init__(self, data: bytes) -> None:
        transitions = np.frombuffer(data, dtype="<u4", offset=4).astype(np.int64).reshape(-1, 256)
        self.states = transitions.shape[0]
        self.targets = transitions & (DFA_ACCEPT_BIT - 1)
        self.accepts = (transitions & DFA_ACCEPT_BIT) != 0
        next_code = (2 * self.targets + self.accepts) * ACCEPTED
        self.coded = np.repeat(next_code, 2, axis=0).reshape(-1).astype(np.intp)  # rows (s, 0), (s, 1) agree
        self.coded_list: list[int] = self.coded.tolist()
        self._pairs: np.ndarray | None = None

    def pair_table(self) -> np.ndarray:
        if self._pairs is None:  # racing builders produce equal tables; either one may stay
            after_first = self.targets  # [state, b0]
            after_both = self.targets[after_first]  # [state, b0, b1]
            matches = self.accepts[:, :, None].astype(np.int64) + self.accepts[after_first]
            pairs = after_both * PAIR + matches * (self.states * PAIR)
            self._pairs = pairs.transpose(0, 2, 1).reshape(-1).astype(np.intp)  # index b0 + 256 * b1
        return self._pairs


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
    starts, lengths = starts.astype(np.int64), lengths.astype(np.int64)
    pair_counts: np.ndarray | int = 0
    if keep_matches is None and table.states <= PAIR_MAX_STATES and int(lengths.sum()) >= PAIR_MIN_BYTES:
        states, pair_counts, consumed = _pair_walk(table, data, starts, lengths, states)
        starts, lengths = starts + consumed, lengths - consumed
    end_states, counts, matches = _byte_walk(table, data, starts, lengths, states, keep_matches)
    return end_states, ((counts + pair_counts) & 0xFFFFFFFF).astype(np.uint32), matches


def _pair_walk(
    table: DfaTable, data: np.ndarray, starts: np.ndarray, lengths: np.ndarray, states: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two bytes per step while enough lanes have pairs left: (states, matches, bytes consumed)."""
    pairs = table.pair_table()
    size = table.states * PAIR
    ranges = LaneRanges(data, starts, lengths // 2)  # "rows" here are pairs of bytes
    order = ranges.order
    code = states.astype(np.intp)[order] * PAIR
    counts = np.zeros(len(code), dtype=np.int64)
    row = 0
    active_lanes = ranges.active(row)
    while active_lanes >= VECTOR_MIN_LANES:
        rows = ranges.block_rows(row, active_lanes)
        words = np.ascontiguousarray(ranges.window(active_lanes, 2 * row, 2 * rows).view("<u2").T)
        active = ranges.activity(row, rows, active_lanes)
        trace = np.empty((rows, active_lanes), dtype=np.intp)
        index = np.empty(active_lanes, dtype=np.intp)
        previous = code[:active_lanes]
        for i in range(rows):
            width = active_lanes if active is None else int(active[i])
            np.add(previous[:width], words[i, :width], out=index[:width])
            pairs.take(index[:width], out=trace[i, :width], mode="wrap")
            if width < active_lanes:  # finished lanes keep their state and match nothing more
                np.remainder(previous[width:], size, out=trace[i, width:])
            previous = trace[i]
        code[:active_lanes] = previous % size
        counts[:active_lanes] += (trace // size).sum(axis=0)
        row += rows
        active_lanes = ranges.active(row)
    in_caller_order = np.empty_like(order)
    in_caller_order[order] = np.arange(len(order))
    consumed = 2 * np.minimum(ranges.lengths, row)
    return (code // PAIR)[in_caller_order], counts[in_caller_order], consumed[in_caller_order]


def _byte_walk(
    table: DfaTable,
    data: np.ndarray,
    starts: np.ndarray,
    lengths: np.ndarray,
    states: np.ndarray,
    keep_matches: int | None,
) -> tuple[np.ndarray, np.ndarray, Matches | None]:
    """One byte per step: (end states in caller order, int64 match counts, matches)."""
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
    match_counts = np.empty_like(counts)
    match_counts[order] = counts
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
