"""Stream files through a VIR0 program chunk by chunk and merge the per-chunk results.

This is the path behind `vyre run`: read each chunk's region (owned bytes plus the program's
overlap) with pread into a buffer from a small pool, submit it to the Megakernel as a
RUN_PROGRAM slot, keep several chunks in flight, and merge the results in chunk order by each
binding's combine rule. A faulting chunk is reported with its file range and does not stop the
other chunks. (The io_uring ingest replaces the pread loop on Linux in a later issue.)
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from vyre_runtime.chunking import ChunkPlan, plan_chunks
from vyre_runtime.combine import new_accumulators
from vyre_runtime.errors import InputError
from vyre_runtime.host_service import SlotFaultInfo
from vyre_runtime.megakernel import Megakernel
from vyre_runtime.vir0.program import Program

DEFAULT_CHUNK_SIZE = 16 << 20


@dataclass(frozen=True)
class RunOptions:
    chunk_size: int = DEFAULT_CHUNK_SIZE
    lanes: int | None = None  # None: the program's .lanes
    fuel: int | None = None  # None: the program's .fuel
    emit_capacity: int = 65536  # records per chunk
    in_flight: int = 4  # chunks submitted ahead of the one being merged


@dataclass(frozen=True)
class ChunkFault:
    chunk: ChunkPlan
    fault: SlotFaultInfo

    def describe(self) -> str:
        chunk = self.chunk
        return f"chunk {chunk.index} (file bytes {chunk.own_start}..{chunk.own_end}): {self.fault.describe()}"


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


def run_file(program: Program, path: str, options: RunOptions, megakernel: Megakernel) -> FileResult:
    """Run ``program`` over every chunk of the file at ``path`` and merge the results."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as error:
        raise InputError(f"cannot open {path}: {error.strerror}", "check the path and its permissions") from error
    started = time.perf_counter()
    try:
        size = os.fstat(fd).st_size
        result = FileResult(path=path, size=size)
        handle = megakernel.register_program(program)  # fresh global buffers for every file
        accumulators = new_accumulators(program.bindings)
        buffer_size = min(size, options.chunk_size + 2 * program.overlap)
        pool = [bytearray(buffer_size) for _ in range(max(1, options.in_flight))]
        in_flight: deque = deque()
        record_parts: list[np.ndarray] = []
        chunk_parts: list[np.ndarray] = []

        def merge_oldest() -> None:
            plan, future, buffer = in_flight.popleft()
            outcome = future.result()
            pool.append(buffer)
            result.chunks += 1
            result.instructions += outcome.instructions
            if outcome.fault is not None:
                result.faults.append(ChunkFault(plan, outcome.fault))
                return
            for name, accumulator in accumulators.items():
                accumulator.add(outcome.outputs[name])
            result.dropped += outcome.dropped
            if len(outcome.records):
                record_parts.append(_canonical_order(outcome.records))
                chunk_parts.append(np.full(len(outcome.records), plan.index, dtype=np.uint32))

        for plan in plan_chunks(size, options.chunk_size, program.overlap):
            if not pool:
                merge_oldest()
            buffer = pool.pop()
            region = _read_region(fd, path, plan, buffer)
            future = megakernel.submit(
                handle,
                region,
                lanes=options.lanes,
                fuel=options.fuel,
                emit_capacity=options.emit_capacity,
                own_lo=plan.own_lo,
                own_hi=plan.own_hi,
                file_offset=plan.region_start,
                chunk_index=plan.index,
            )
            in_flight.append((plan, future, buffer))
        while in_flight:
            merge_oldest()
        result.outputs = {name: acc.result() for name, acc in accumulators.items()}
        result.outputs.update({k: v.copy() for k, v in megakernel.registry.programs[handle].global_buffers.items()})
        megakernel.unregister_program(handle)  # one registration per file: release it
        if record_parts:
            result.records = np.concatenate(record_parts)
            result.record_chunks = np.concatenate(chunk_parts)
        else:
            result.records = np.zeros((0, program.emit_words), dtype=np.uint32)
        result.seconds = time.perf_counter() - started
        return result
    finally:
        os.close(fd)


def run_files(
    program: Program, paths: Sequence[str], options: RunOptions | None = None, megakernel: Megakernel | None = None
) -> list[FileResult]:
    """Run over each file in turn; opens a Megakernel (backend "auto") unless one is given."""
    options = options or RunOptions()
    if megakernel is not None:
        return [run_file(program, path, options, megakernel) for path in paths]
    with Megakernel(backend="auto") as owned:
        return [run_file(program, path, options, owned) for path in paths]
