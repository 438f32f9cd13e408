"""The hand-written baseline of bench/scan.py: bench/kernels/scan_kernels.cu compiled with NVRTC
(vyre's compile_source), launched through vyre's thin driver helpers over the whole data set in
one launch per pass, timed with CUDA events, and its per-chunk results read back for checking.

Run it before a megakernel is resident: loading a module (cuModuleLoadData) and cuMemFree wait
for every running kernel of the context, and the resident megakernel never ends.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from cuda.bindings import driver as cu
from scan_reference import HASH_BLOCK, ChunkExpectation, Scan, kept_records, offset_records, sorted_rows

from vyre_runtime.backends.cuda import driver
from vyre_runtime.backends.cuda.build import compile_source
from vyre_runtime.vir0.program import Program

SOURCE = Path(__file__).resolve().parent / "kernels" / "scan_kernels.cu"
BLOCK = 256  # SCAN_BLOCK in the .cu
SPAN = 64 << 10  # bytes per block: line count, histogram, literal
DFA_SPAN = 256  # bytes per thread: DFA count
MAX_STATIC_SHARED = 48 << 10  # dynamic shared memory without opting in
LITERAL_RECORDS = 1 << 21  # record capacity of the literal search (2 words each)
KEPT_CAPACITY = 1 << 16  # filter_compact's kept words per chunk (its `kept` binding's size)
TIMEOUT_S = 30.0

# The kernels' one parameter (struct ScanArgs in the .cu: same fields, sizes and offsets).
SCAN_ARGS = np.dtype(
    [
        ("data", "<u8"),
        ("total", "<u8"),
        ("span", "<u8"),
        ("chunk", "<u8"),
        ("out", "<u8"),
        ("records", "<u8"),
        ("record_count", "<u8"),
        ("table", "<u8"),
        ("table_length", "<u4"),
        ("record_capacity", "<u4"),
    ],
    align=True,
)


@dataclass
class Timing:
    gb_per_s: float
    seconds: float  # of all timed passes
    passes: int


class Events:
    """A pair of CUDA events around work on one stream: elapsed milliseconds between them."""

    def __init__(self) -> None:
        flags = cu.CUevent_flags.CU_EVENT_DEFAULT
        self.start = driver.check(cu.cuEventCreate(flags), "cuEventCreate")
        self.end = driver.check(cu.cuEventCreate(flags), "cuEventCreate")

    def record(self, event, stream: driver.Stream) -> None:
        driver.check(cu.cuEventRecord(event, stream.handle), "cuEventRecord")

    def elapsed_s(self) -> float:
        return float(driver.check(cu.cuEventElapsedTime(self.start, self.end), "cuEventElapsedTime")) / 1e3

    def destroy(self) -> None:
        for event in (self.start, self.end):
            cu.cuEventDestroy(event)


class HandWritten:
    """The compiled kernels, their output buffers and a stream, for one data size and chunk size."""

    def __init__(self, arch: str, total: int, chunk: int) -> None:
        if chunk % SPAN or chunk % HASH_BLOCK or total % HASH_BLOCK:
            raise ValueError(f"the chunk size must be a multiple of {SPAN} bytes and the total of {HASH_BLOCK}")
        self.total, self.chunk = total, chunk
        self.chunks = math.ceil(total / chunk)
        built = compile_source(SOURCE.read_text(), arch, name=SOURCE.name)
        self.module = driver.Module(built.cubin)
        self.stream = driver.Stream()
        blocks = total // HASH_BLOCK
        self.out = driver.DeviceMemory(self.chunks * 256 * 4)
        self.records = driver.DeviceMemory(max(LITERAL_RECORDS * 2, blocks * 3, self.chunks * KEPT_CAPACITY) * 4)
        self.record_count = driver.DeviceMemory(4)
        self.tables: list[driver.DeviceMemory] = []

    def _table(self, data: bytes) -> driver.DeviceMemory:
        memory = driver.DeviceMemory(len(data))
        driver.upload(self.stream, memory.pointer, data, TIMEOUT_S)
        self.tables.append(memory)
        return memory

    def _launch_plan(self, scan: Scan, program: Program, data_pointer: int) -> tuple[int, int, np.ndarray]:
        """(grid, dynamic shared bytes, argument record) of one pass of ``scan`` over the data."""
        args = np.zeros(1, dtype=SCAN_ARGS)
        args["data"], args["total"], args["chunk"] = data_pointer, self.total, self.chunk
        args["out"], args["records"] = self.out.pointer, self.records.pointer
        args["record_count"] = self.record_count.pointer
        shared = 0
        if scan.kind in ("count", "histogram", "literal", "checksum", "filter"):
            args["span"] = SPAN
            grid = math.ceil(self.total / SPAN)
        elif scan.kind == "blocks":
            args["span"] = HASH_BLOCK
            grid = math.ceil(self.total / HASH_BLOCK / BLOCK)
        elif scan.kind == "dfa":
            args["span"] = DFA_SPAN
            grid = math.ceil(self.total / DFA_SPAN / BLOCK)
        else:
            raise ValueError(scan.kind)
        if scan.kind == "literal":
            needle = program.tables[0].data
            if not 1 <= len(needle) <= 16:
                raise ValueError(f"the hand-written literal search takes 1..16 bytes, not {len(needle)}")
            args["table"], args["table_length"] = self._table(needle).pointer, len(needle)
            args["record_capacity"] = LITERAL_RECORDS
        if scan.kind == "filter":
            capacity = program.bindings[program.binding_index("kept")].words
            if capacity > KEPT_CAPACITY:
                raise ValueError(f"the hand-written filter keeps {KEPT_CAPACITY} words per chunk, not {capacity}")
            args["record_capacity"] = capacity
        if scan.kind == "dfa":
            table = program.tables[0].data
            states = int(np.frombuffer(table[:4], "<u4")[0])
            shared = states * 256 * 4
            if shared > MAX_STATIC_SHARED:
                raise ValueError(f"a {states}-state DFA does not fit the kernel's shared memory")
            args["table"], args["table_length"] = self._table(table[4:]).pointer, states
        return grid, shared, args

    def _zero_outputs(self) -> None:
        for memory in (self.out, self.record_count):
            driver.check(cu.cuMemsetD8Async(memory.pointer, 0, memory.nbytes, self.stream.handle), "cuMemsetD8Async")

    def run(
        self, scan: Scan, program: Program, data_pointer: int, passes: int
    ) -> tuple[Timing, dict[int, ChunkExpectation]]:
        """One checked pass (its per-chunk results), then ``passes`` timed passes."""
        if data_pointer % 16:
            raise ValueError("the data must be 16-byte aligned")
        function = self.module.function(scan.kernel)
        grid, shared, args = self._launch_plan(scan, program, data_pointer)
        argument = driver.StructArgument(args)
        self._zero_outputs()
        driver.launch(function, grid, BLOCK, self.stream, argument, shared)
        self.stream.wait(TIMEOUT_S, f"{scan.kernel}")
        results = self._results(scan, int(args["record_capacity"][0]))
        events = Events()
        try:
            events.record(events.start, self.stream)
            for _ in range(passes):
                driver.launch(function, grid, BLOCK, self.stream, argument, shared)
            events.record(events.end, self.stream)
            self.stream.wait(TIMEOUT_S + passes, f"{passes} passes of {scan.kernel}")
            seconds = events.elapsed_s()
        finally:
            events.destroy()
        return Timing(passes * self.total / seconds / 1e9, seconds, passes), results

    def _results(self, scan: Scan, record_capacity: int) -> dict[int, ChunkExpectation]:
        out = np.frombuffer(driver.download(self.stream, self.out.pointer, self.out.nbytes, TIMEOUT_S), "<u4")
        results: dict[int, ChunkExpectation] = {}
        if scan.kind in ("count", "dfa", "literal"):
            values = {i: out[i : i + 1].copy() for i in range(self.chunks)}
        elif scan.kind == "histogram":
            values = {i: out[i * 256 : (i + 1) * 256].copy() for i in range(self.chunks)}
        elif scan.kind == "checksum":
            values = {i: out[2 * i : 2 * i + 2].copy() for i in range(self.chunks)}
        elif scan.kind == "filter":
            values = {i: out[i : i + 1].copy() for i in range(self.chunks)}
        else:
            values = dict.fromkeys(range(self.chunks))
        records_by_chunk: dict[int, np.ndarray | None] = dict.fromkeys(range(self.chunks))
        if scan.kind == "literal":
            count = int(np.frombuffer(driver.download(self.stream, self.record_count.pointer, 4, TIMEOUT_S), "<u4")[0])
            if count > LITERAL_RECORDS:
                raise ValueError(f"the hand-written literal search found {count} matches, more than it keeps")
            words = np.zeros(0, dtype="<u4")
            if count:
                words = np.frombuffer(driver.download(self.stream, self.records.pointer, count * 8, TIMEOUT_S), "<u4")
            offsets = words[0::2].astype(np.uint64) | (words[1::2].astype(np.uint64) << np.uint64(32))
            chunk_of = offsets // np.uint64(self.chunk)
            for i in range(self.chunks):
                records_by_chunk[i] = offset_records(offsets[chunk_of == i])
        elif scan.kind == "filter":
            words = np.frombuffer(
                driver.download(self.stream, self.records.pointer, self.chunks * record_capacity * 4, TIMEOUT_S),
                "<u4",
            ).reshape(self.chunks, record_capacity)
            for i in range(self.chunks):  # slots 0..count-1 of each chunk (those that fit)
                records_by_chunk[i] = kept_records(words[i, : min(int(values[i][0]), record_capacity)])
        elif scan.kind == "blocks":
            blocks = self.total // HASH_BLOCK
            rows = np.frombuffer(
                driver.download(self.stream, self.records.pointer, blocks * 12, TIMEOUT_S), "<u4"
            ).reshape(blocks, 3)
            per_chunk = self.chunk // HASH_BLOCK
            for i in range(self.chunks):
                records_by_chunk[i] = sorted_rows(rows[i * per_chunk : (i + 1) * per_chunk].copy())
        for i in range(self.chunks):
            results[i] = ChunkExpectation(values[i], records_by_chunk[i])
        return results

    def close(self) -> None:
        """Free everything (only while no megakernel is resident: cuMemFree waits for kernels)."""
        for memory in [self.out, self.records, self.record_count, *self.tables]:
            memory.free()
        self.module.unload()
        self.stream.destroy()
