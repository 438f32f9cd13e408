"""What a stream hands back per input: each program's merged outputs, records and faults.

Chunks complete in any order; their outcomes are kept by chunk index and merged in file order
when the input is finished (each binding by its combine rule, CONCAT in chunk order), so the
result does not depend on timing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vyre_runtime.chunking import ChunkPlan
from vyre_runtime.combine import new_accumulators
from vyre_runtime.errors import VyreError
from vyre_runtime.host_service import RunOutcome, SlotFaultInfo
from vyre_runtime.vir0.program import Program


@dataclass(frozen=True)
class ChunkFault:
    chunk: ChunkPlan
    fault: SlotFaultInfo

    def describe(self) -> str:
        chunk = self.chunk
        return f"chunk {chunk.index} (file bytes {chunk.own_start}..{chunk.own_end}): {self.fault.describe()}"


@dataclass(frozen=True)
class ChunkOutcome:
    plan: ChunkPlan
    outcome: RunOutcome


@dataclass
class ProgramResult:
    """Everything one program produced over one input."""

    program: str
    outputs: dict[str, np.ndarray | list[np.ndarray]] = field(default_factory=dict)
    records: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.uint32))
    record_chunks: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint32))
    dropped: int = 0
    faults: list[ChunkFault] = field(default_factory=list)
    instructions: int = 0
    jit_chunks: int = 0  # chunks the device ran as native code (the rest: interpreted)


@dataclass
class FileResult:
    """One input: its programs' results, or the error that stopped it (results then cover only
    the chunks that completed before it and must not be taken as the file's)."""

    path: str
    size: int  # bytes in the input (a pipe's: how many it delivered)
    chunks: int = 0
    programs: list[ProgramResult] = field(default_factory=list)
    error: VyreError | None = None
    note: str = ""
    seconds: float = 0.0

    @property
    def faults(self) -> list[ChunkFault]:
        return [fault for result in self.programs for fault in result.faults]


def canonical_order(records: np.ndarray) -> np.ndarray:
    """Records sorted by their words: backends append in different orders (docs/VIR0.md, Emit)."""
    if records.shape[1] == 0 or len(records) < 2:
        return records
    order = _sort_order(_word_keys(records))
    return records if order is None else records[order]


def _word_keys(records: np.ndarray) -> list[np.ndarray]:
    """The records' words packed two to a uint64 (the earlier word high), least significant key
    first as np.lexsort takes them: one 64-bit compare does two words of the lexicographic one,
    and records of up to two words (offset lo, hi) sort by one key."""
    keys = []
    for word in range(0, records.shape[1], 2):
        key = records[:, word].astype(np.uint64) << np.uint64(32)
        if word + 1 < records.shape[1]:
            key |= records[:, word + 1]
        keys.append(key)
    return keys[::-1]


def _out_of_order(primary: np.ndarray, keys: int) -> np.ndarray:
    """Per row after the first: True where it may not follow the row before it. With one key, a tie
    is an equal row (in order); with more, a tie needs the later keys (counted as out of order)."""
    return primary[1:] < primary[:-1] if keys == 1 else primary[1:] <= primary[:-1]


def _sort_order(keys: list[np.ndarray], parts: np.ndarray | None = None) -> np.ndarray | None:
    """The permutation that puts rows in key order, within each part when ``parts`` numbers each
    row's part (non-decreasing: the parts stay in order); None where they already are (the CPU
    backend emits lanes in order). A stable sort by the first key is the whole order unless it
    ties (records that begin with a file offset seldom do); with one key, ties are equal rows and
    any order will do."""
    primary = keys[-1]
    late = _out_of_order(primary, len(keys))
    if parts is not None:
        late &= parts[1:] == parts[:-1]  # a part's first row need not follow the previous part's last
    if not late.any():
        return None
    # timsort (fast on the runs a GPU's warps emit); with parts, one sort of all rows by (part,
    # first key) instead of a sort per part (a Python round each: BENCHMARKS.md, session 7)
    order = np.argsort(primary, kind="stable") if parts is None else np.lexsort((primary, parts))
    if len(keys) > 1:
        ranked = np.take(primary, order)
        tied = ranked[1:] == ranked[:-1]
        if parts is not None:
            tied &= parts[1:] == parts[:-1]  # (the order keeps parts sorted: parts[order] is parts)
        if tied.any():
            order = np.lexsort(keys if parts is None else (*keys, parts))  # the later words decide
    return order


def _order_within_chunks(records: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """``records`` (chunk parts joined in chunk order, part i from row ``starts[i]``) with each
    part in canonical order: one vectorized check, and one sort of all rows if any is out of order."""
    if records.shape[1] == 0 or len(records) < 2:
        return records
    counts = np.diff(np.append(starts, len(records)))
    parts = np.repeat(np.arange(len(starts), dtype=np.uint32), counts)
    order = _sort_order(_word_keys(records), parts)
    return records if order is None else np.take(records, order, axis=0)


def merge(program: Program, chunks: dict[int, ChunkOutcome], global_buffers: dict[str, np.ndarray]) -> ProgramResult:
    """Merge one program's chunk outcomes in chunk order: records are joined once, then each
    chunk's part is put in canonical order (the file's records: by chunk, then by words)."""
    result = ProgramResult(program=program.name)
    accumulators = new_accumulators(program.bindings)
    record_parts: list[np.ndarray] = []
    record_indices: list[int] = []
    for index in sorted(chunks):
        plan, outcome = chunks[index].plan, chunks[index].outcome
        result.instructions += outcome.instructions
        result.jit_chunks += outcome.path == "jit"
        if outcome.fault is not None:
            result.faults.append(ChunkFault(plan, outcome.fault))
            continue
        for name, accumulator in accumulators.items():
            accumulator.add(outcome.outputs[name])
        result.dropped += outcome.dropped
        if len(outcome.records):
            record_parts.append(outcome.records)
            record_indices.append(index)
    result.outputs = {name: accumulator.result() for name, accumulator in accumulators.items()}
    result.outputs.update({name: np.array(value, dtype=np.uint32) for name, value in global_buffers.items()})
    if record_parts:
        counts = np.array([len(part) for part in record_parts], dtype=np.int64)
        starts = np.cumsum(counts) - counts
        result.records = _order_within_chunks(np.concatenate(record_parts), starts)
        result.record_chunks = np.repeat(np.array(record_indices, dtype=np.uint32), counts)
    else:
        result.records = np.zeros((0, program.emit_words), dtype=np.uint32)
    return result
