"""Stream files through a VIR0 program chunk by chunk and merge the per-chunk results.

This is the CPU path behind `vyre run`: read each chunk's region (owned bytes plus the program's
overlap) with pread, run the program over it, merge outputs by each binding's combine rule.
A faulting chunk is reported with its file offset and does not stop the other chunks.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from vyre_runtime.backends.cpu import Fault, Region, run_program
from vyre_runtime.chunking import ChunkPlan, plan_chunks
from vyre_runtime.combine import new_accumulators
from vyre_runtime.errors import InputError
from vyre_runtime.vir0.isa import Scope
from vyre_runtime.vir0.program import Program

DEFAULT_CHUNK_SIZE = 16 << 20


@dataclass(frozen=True)
class RunOptions:
    chunk_size: int = DEFAULT_CHUNK_SIZE
    lanes: int | None = None  # None: the program's .lanes
    fuel: int | None = None  # None: the program's .fuel
    emit_capacity: int = 65536  # records per chunk


@dataclass(frozen=True)
class ChunkFault:
    chunk: ChunkPlan
    fault: Fault

    def describe(self) -> str:
        return f"chunk {self.chunk.index} (file bytes {self.chunk.own_start}..{self.chunk.own_end}): {self.fault.describe()}"


@dataclass
class FileResult:
    """Everything one file produced: merged outputs, records, drops, faults, timing."""

    path: str
    size: int
    chunks: int = 0
    outputs: dict[str, np.ndarray | list[np.ndarray]] = field(default_factory=dict)
    records: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.uint32))
    record_chunks: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint32))
    dropped: int = 0
    faults: list[ChunkFault] = field(default_factory=list)
    instructions: int = 0
    seconds: float = 0.0


def _read_region(fd: int, path: str, plan: ChunkPlan, buffer: bytearray) -> memoryview:
    view = memoryview(buffer)[: plan.region_length]
    done = 0
    while done < plan.region_length:
        try:
            got = os.preadv(fd, [view[done:]], plan.region_start + done)
        except OSError as error:
            raise InputError(
                f"reading {path} at offset {plan.region_start + done} failed: {error.strerror}",
                "check the device or file system; the file may be on failing media",
            ) from error
        if got == 0:
            raise InputError(
                f"{path} ended at {plan.region_start + done} bytes while reading; it shrank during the run",
                "do not modify files while vyre reads them",
            )
        done += got
    return view


def _canonical_order(records: np.ndarray) -> np.ndarray:
    """Records sorted by their words: backends append in different orders (docs/VIR0.md, Emit)."""
    if records.shape[1] == 0:
        return records
    return records[np.lexsort(records.T[::-1])]


def run_file(program: Program, path: str, options: RunOptions = RunOptions()) -> FileResult:
    """Run ``program`` over every chunk of the file at ``path`` and merge the results."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as error:
        raise InputError(f"cannot open {path}: {error.strerror}", "check the path and its permissions") from error
    started = time.perf_counter()
    try:
        size = os.fstat(fd).st_size
        result = FileResult(path=path, size=size)
        accumulators = new_accumulators(program.bindings)
        global_buffers = {
            b.name: np.full(b.words, b.init, dtype=np.uint32) for b in program.bindings if b.scope == Scope.GLOBAL
        }
        buffer = bytearray(min(size, options.chunk_size + 2 * program.overlap))
        record_parts: list[np.ndarray] = []
        chunk_parts: list[np.ndarray] = []
        for plan in plan_chunks(size, options.chunk_size, program.overlap):
            region_bytes = _read_region(fd, path, plan, buffer)
            region = Region(
                data=region_bytes,
                own_lo=plan.own_lo,
                own_hi=plan.own_hi,
                file_offset=plan.region_start,
                chunk_index=plan.index,
            )
            run = run_program(
                program,
                region,
                lanes=options.lanes,
                fuel=options.fuel,
                emit_capacity=options.emit_capacity,
                global_buffers=global_buffers,
            )
            result.chunks += 1
            result.instructions += run.instructions
            if run.fault is not None:
                result.faults.append(ChunkFault(plan, run.fault))
                continue
            for name, accumulator in accumulators.items():
                accumulator.add(run.outputs[name])
            result.dropped += run.dropped
            if len(run.records):
                record_parts.append(_canonical_order(run.records))
                chunk_parts.append(np.full(len(run.records), plan.index, dtype=np.uint32))
        result.outputs = {name: acc.result() for name, acc in accumulators.items()}
        result.outputs.update(global_buffers)
        if record_parts:
            result.records = np.concatenate(record_parts)
            result.record_chunks = np.concatenate(chunk_parts)
        else:
            result.records = np.zeros((0, program.emit_words), dtype=np.uint32)
        result.seconds = time.perf_counter() - started
        return result
    finally:
        os.close(fd)


def run_files(program: Program, paths: Sequence[str], options: RunOptions = RunOptions()) -> list[FileResult]:
    return [run_file(program, path, options) for path in paths]
