"""What bench/scan.py checks its results against: the generated data, the byte-scan examples it
runs, NumPy references of each example per chunk, and the comparison of a run's result with the
expected per-chunk values (from the hand-written kernels, or from NumPy on a sample).

Per-chunk expectations share one shape for every source (`ChunkExpectation`): `value` is the
example's one-word or 256-word output, `records` its emitted records sorted by their words.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vyre_runtime.chunking import ChunkPlan
from vyre_runtime.vir0.asm import assemble_program
from vyre_runtime.vir0.program import Program

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ALPHABET = b"abcdefghijklmnopqrstuvwxyz \n"
NEEDLES = (b"vyre", b"error", b"warning", b"fatal", b"panic")  # literal_search's and dfa_count's patterns
SALT_EVERY = 2048  # one needle per this many bytes, on average
HASH_BLOCK = 4096  # fnv1a_blocks / xxh32_blocks hash 4 KiB blocks
DFA_WARMUP = 15  # dfa_count walks 15 bytes before a slice (patterns of at most 16 bytes)


@dataclass(frozen=True)
class Scan:
    """One byte-scan example and the hand-written kernel that does the same."""

    name: str  # examples/<name>.vasm
    kernel: str  # its function in bench/kernels/scan_kernels.cu
    kind: str  # "count" | "histogram" | "literal" | "blocks" | "dfa" | "checksum" | "filter"
    output: str | None  # the binding holding the per-chunk value (None: records only)


SCANS = (
    Scan("line_count", "scan_line_count", "count", "lines"),
    Scan("histogram", "scan_histogram", "histogram", "histogram"),
    Scan("literal_search", "scan_literal", "literal", "matches"),
    Scan("fnv1a_blocks", "scan_fnv1a_blocks", "blocks", None),
    Scan("xxh32_blocks", "scan_xxh32_blocks", "blocks", None),
    Scan("dfa_count", "scan_dfa_count", "dfa", "matches"),
)
# The word examples (bench/jit.py): checksum's value is (sum, bytes); filter_compact's records
# are its `kept` word indices, compared as a sorted multiset (their order is not specified).
WORD_SCANS = (
    Scan("checksum", "scan_checksum", "checksum", "sum"),
    Scan("filter_compact", "scan_filter_compact", "filter", "count"),
)
ALL_SCANS = SCANS + WORD_SCANS
KEEP_FROM = 0xF0000000  # filter_compact keeps the words >= this


def load_program(scan: Scan) -> Program:
    path = EXAMPLES / f"{scan.name}.vasm"
    return assemble_program(path.read_text(), source_name=str(path))


def generate(total: int, seed: int = 7) -> np.ndarray:
    """``total`` bytes of random lower-case text with newlines, salted with NEEDLES (some of them
    straddling every 1 MiB boundary, so overlap handling is exercised)."""
    rng = np.random.default_rng(seed)
    alphabet = np.frombuffer(ALPHABET, dtype=np.uint8)
    data = alphabet[rng.integers(0, len(alphabet), total, dtype=np.uint8)]
    spots = rng.integers(0, max(1, total - 16), max(1, total // SALT_EVERY))
    edges = np.arange(1 << 20, total - 16, 1 << 20) - 2  # "vyre" / "error" across each MiB edge
    which = rng.integers(0, len(NEEDLES), len(spots))
    for index, needle in enumerate(NEEDLES):
        where = np.concatenate([spots[which == index], edges if index < 2 else edges[:0]])
        where = where[where + len(needle) <= total]
        for k, byte in enumerate(needle):
            data[where + k] = byte
    return data


def salt_kept_words(data: np.ndarray, every: int = 64, seed: int = 11) -> np.ndarray:
    """Give one aligned u32 word in ``every`` (at random) a top byte >= 0xF0, so filter_compact
    keeps about 1/``every`` of the words (text alone has none: its bytes are < 0x80). In place."""
    rng = np.random.default_rng(seed)
    words = len(data) // 4
    chosen = rng.choice(words, size=words // every, replace=False) if words else np.zeros(0, np.int64)
    data[chosen * 4 + 3] = 0xF0 | rng.integers(0, 16, len(chosen), dtype=np.uint8)
    return data


# ---------------------------------------------------------------------- NumPy references


@dataclass
class ChunkExpectation:
    value: np.ndarray | None  # the output binding's words (count: 1, histogram: 256)
    records: np.ndarray | None  # sorted rows of u32 words (literal: lo, hi; blocks: lo, hi, hash)


def literal_starts(window: np.ndarray, needle: bytes) -> np.ndarray:
    """Offsets in ``window`` where ``needle`` starts (occurrences may overlap)."""
    n = len(needle)
    if len(window) < n:
        return np.zeros(0, dtype=np.int64)
    hits = np.ones(len(window) - n + 1, dtype=bool)
    for k, byte in enumerate(needle):
        hits &= window[k : k + len(hits)] == byte
    return np.flatnonzero(hits)


def offset_records(offsets: np.ndarray) -> np.ndarray:
    """64-bit file offsets as (lo, hi) u32 rows, as literal_search emits them, in `sorted_rows` order."""
    offsets = np.asarray(offsets, dtype=np.uint64).reshape(-1)
    return sorted_rows(np.stack([offsets & 0xFFFFFFFF, offsets >> 32], axis=1).astype(np.uint32))


def fnv1a_rows(rows: np.ndarray) -> np.ndarray:
    """FNV-1a (32-bit) of every row of a (blocks, bytes) uint8 array, vectorized over blocks."""
    hashes = np.full(rows.shape[0], 0x811C9DC5, dtype=np.uint32)
    prime = np.uint32(16777619)
    for column in range(rows.shape[1]):
        hashes ^= rows[:, column]
        hashes *= prime
    return hashes


def _rotl(x: np.ndarray, r: int) -> np.ndarray:
    return (x << np.uint32(r)) | (x >> np.uint32(32 - r))


def xxh32_rows(rows: np.ndarray, seed: int = 0) -> np.ndarray:
    """xxHash32 of every row of a (blocks, bytes) uint8 array; rows of a multiple of 16 bytes."""
    if rows.shape[1] % 16:
        raise ValueError("xxh32_rows takes rows of a multiple of 16 bytes")
    p1, p2, p3, p5 = (np.uint32(p) for p in (0x9E3779B1, 0x85EBCA77, 0xC2B2AE3D, 0x165667B1))
    count, length = rows.shape
    seed32 = np.uint32(seed)
    if length >= 16:
        words = np.ascontiguousarray(rows).view("<u4")
        accumulators = [
            np.full(count, (seed + 0x9E3779B1 + 0x85EBCA77) & 0xFFFFFFFF, dtype=np.uint32),
            np.full(count, (seed + 0x85EBCA77) & 0xFFFFFFFF, dtype=np.uint32),
            np.full(count, seed & 0xFFFFFFFF, dtype=np.uint32),
            np.full(count, (seed - 0x9E3779B1) & 0xFFFFFFFF, dtype=np.uint32),
        ]
        for stripe in range(0, words.shape[1], 4):
            for k in range(4):
                accumulators[k] = _rotl(accumulators[k] + words[:, stripe + k] * p2, 13) * p1
        v1, v2, v3, v4 = accumulators
        h = _rotl(v1, 1) + _rotl(v2, 7) + _rotl(v3, 12) + _rotl(v4, 18)
    else:
        h = np.full(count, seed32 + p5, dtype=np.uint32)
    h = h + np.uint32(length & 0xFFFFFFFF)
    h ^= h >> np.uint32(15)
    h *= p2
    h ^= h >> np.uint32(13)
    h *= p3
    h ^= h >> np.uint32(16)
    return h


def block_records(data: np.ndarray, start: int, end: int, hashes) -> np.ndarray:
    """(lo, hi, hash) rows of the 4 KiB blocks of [start, end) (whole blocks only)."""
    if (end - start) % HASH_BLOCK:
        raise ValueError("the NumPy block-hash reference takes whole 4 KiB blocks")
    rows = data[start:end].reshape(-1, HASH_BLOCK)
    offsets = np.arange(start, end, HASH_BLOCK, dtype=np.uint64)
    return sorted_rows(np.stack([offsets & 0xFFFFFFFF, offsets >> 32, hashes(rows)], axis=1).astype(np.uint32))


def pattern_end_count(data: np.ndarray, start: int, end: int, patterns: list[bytes]) -> int:
    """Positions p in [start, end) where at least one pattern ends (dfa_count's rule)."""
    low = max(0, start - DFA_WARMUP)
    window = data[low:end]
    ends = np.zeros(len(window), dtype=bool)
    for pattern in patterns:
        starts = literal_starts(window, pattern)
        ends[starts + len(pattern) - 1] = True
    return int(np.count_nonzero(ends[start - low :]))


def numpy_expectation(scan: Scan, program: Program, data: np.ndarray, plan: ChunkPlan) -> ChunkExpectation:
    """What ``scan`` must produce for the chunk ``plan`` (its owned bytes; matches per the anchor rule)."""
    start, end = plan.own_start, plan.own_end
    owned = data[start:end]
    if scan.kind == "count":
        return ChunkExpectation(np.array([np.count_nonzero(owned == 10)], dtype=np.uint32), None)
    if scan.kind == "histogram":
        return ChunkExpectation(np.bincount(owned, minlength=256).astype(np.uint32), None)
    if scan.kind == "literal":
        needle = program.tables[0].data
        window = data[start : min(len(data), end + len(needle) - 1)]
        offsets = start + literal_starts(window, needle)
        return ChunkExpectation(np.array([len(offsets)], dtype=np.uint32), offset_records(offsets))
    if scan.kind == "blocks":
        hashes = fnv1a_rows if scan.name.startswith("fnv") else xxh32_rows
        return ChunkExpectation(None, block_records(data, start, end, hashes))
    if scan.kind == "dfa":
        return ChunkExpectation(np.array([pattern_end_count(data, start, end, list(NEEDLES[1:]))], np.uint32), None)
    if scan.kind == "checksum":
        shifts = (np.arange(start, end, dtype=np.uint64) & np.uint64(3)) * np.uint64(8)
        total = int(np.sum(owned.astype(np.uint64) << shifts, dtype=np.uint64)) & 0xFFFFFFFF
        return ChunkExpectation(np.array([total, end - start], dtype=np.uint32), None)
    if scan.kind == "filter":
        if start % 4:
            raise ValueError("filter_compact's reference takes chunks that start on a word")
        words = owned[: len(owned) & ~3].view("<u4")
        indices = (start // 4 + np.flatnonzero(words >= KEEP_FROM)).astype(np.uint32)
        return ChunkExpectation(np.array([len(indices)], dtype=np.uint32), kept_records(indices))
    raise ValueError(f"unknown scan kind {scan.kind!r}")


# ---------------------------------------------------------------------- comparison


def sorted_rows(records: np.ndarray) -> np.ndarray:
    """Records in one canonical order (by their words, first word first), whoever emitted them."""
    if records.ndim != 2 or records.shape[1] == 0 or len(records) == 0:
        return records
    return records[np.lexsort(records.T[::-1])]


def kept_records(indices: np.ndarray) -> np.ndarray:
    """filter_compact's kept word indices as one-word rows, in `sorted_rows` order."""
    return np.sort(np.asarray(indices, dtype=np.uint32)).reshape(-1, 1)


def run_value(scan: Scan, run) -> np.ndarray:
    """The words of a run (a RunResult) that the expectation's `value` holds."""
    if scan.kind == "checksum":
        return np.concatenate([run.outputs["sum"], run.outputs["bytes"]])
    return run.outputs[scan.output]


def run_records(scan: Scan, run) -> np.ndarray:
    """A run's records in `sorted_rows` order; filter_compact's are the filled part of `kept`
    (slots 0..count-1 when everything fit; the rest must still hold the binding's init)."""
    if scan.kind == "filter":
        kept = np.asarray(run.outputs["kept"], dtype=np.uint32)
        filled = min(int(run.outputs["count"][0]), len(kept))
        if np.any(kept[filled:] != 0xFFFFFFFF):
            raise ValueError(f"filter_compact wrote kept slots past its count {filled}")
        return kept_records(kept[:filled])
    return sorted_rows(np.asarray(run.records, dtype=np.uint32))


def run_mismatch(scan: Scan, plan: ChunkPlan, run, expected: ChunkExpectation) -> str | None:
    """None if ``run`` (a RunResult) is what ``expected`` says, else one line on the difference."""
    where = f"{scan.name} chunk {plan.index}"
    if run.fault is not None:
        return f"{where}: faulted {run.fault}"
    if run.dropped:
        return f"{where}: {run.dropped} records dropped (emit capacity too small)"
    if expected.value is not None:
        got = run_value(scan, run)
        if not np.array_equal(got, expected.value):
            return f"{where}: {scan.output} = {got[:4].tolist()}..., expected {expected.value[:4].tolist()}..."
    if expected.records is not None:
        try:
            got = run_records(scan, run)
        except ValueError as error:
            return f"{where}: {error}"
        if got.shape != expected.records.shape or not np.array_equal(got, expected.records):
            return f"{where}: {len(got)} records differ from the {len(expected.records)} expected"
    return None


def expectation_mismatch(scan: Scan, plan: ChunkPlan, got: ChunkExpectation, want: ChunkExpectation) -> str | None:
    """Compare two expectations (the hand-written kernel's against NumPy's)."""
    where = f"{scan.name} chunk {plan.index} (hand-written vs NumPy)"
    for name in ("value", "records"):
        a, b = getattr(got, name), getattr(want, name)
        if (a is None) != (b is None) or (a is not None and (a.shape != b.shape or not np.array_equal(a, b))):
            return f"{where}: {name} differs"
    return None


def sample_chunks(count: int, size: int = 16, seed: int = 3) -> list[int]:
    """The first, second and last chunk and a random few: where NumPy checks the kernels."""
    rng = np.random.default_rng(seed)
    chosen = {0, min(1, count - 1), count - 1}
    chosen.update(int(i) for i in rng.integers(0, count, max(0, size - len(chosen))))
    return sorted(chosen)
