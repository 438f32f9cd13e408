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
    if records.shape[1] == 0:
        return records
    return records[np.lexsort(records.T[::-1])]


def merge(program: Program, chunks: dict[int, ChunkOutcome], global_buffers: dict[str, np.ndarray]) -> ProgramResult:
    """Merge one program's chunk outcomes in chunk order."""
    result = ProgramResult(program=program.name)
    accumulators = new_accumulators(program.bindings)
    record_parts: list[np.ndarray] = []
    chunk_parts: list[np.ndarray] = []
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
            record_parts.append(canonical_order(outcome.records))
            chunk_parts.append(np.full(len(outcome.records), index, dtype=np.uint32))
    result.outputs = {name: accumulator.result() for name, accumulator in accumulators.items()}
    result.outputs.update({name: np.array(value, dtype=np.uint32) for name, value in global_buffers.items()})
    if record_parts:
        result.records = np.concatenate(record_parts)
        result.record_chunks = np.concatenate(chunk_parts)
    else:
        result.records = np.zeros((0, program.emit_words), dtype=np.uint32)
    return result
