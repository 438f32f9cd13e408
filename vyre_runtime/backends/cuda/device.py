"""The CUDA backend's device: one resident megakernel serving the ring in host-mapped memory.

The host side of docs/PROTOCOL.md on a GPU. Everything the kernel reads or writes while it runs
is host-mapped memory registered at construction (the image, the record tables) or staged per
run (arena.py); code, tables and DFAs live in device memory, uploaded on a non-blocking side
stream with a bounded wait. The kernel is launched once (`start`), told to stop through the
SHUTDOWN word (`stop`), and only then is anything unpinned or freed (`close`): no free and no
implicitly synchronising call while it runs (DESIGN.md, invariants). Between the two it may be
paused (`pause`: the PAUSE word) and launched again over the same ring (`relaunch`), with the
same build or a new cubin: every table, pool and buffer carries over (docs/PROTOCOL.md, 6.5).

One resident megakernel per process: loading a module waits for a running kernel (measured on
an H100: cuModuleLoadData blocks until it exits, as do cuMemFree and cuMemHostUnregister), so a
second CUDA device is refused while one is resident, and `backend="auto"` then takes the CPU.

Records: the kernel finds the record of handle h at index `h % capacity` of its table and checks
that the record holds h (abi.py). The registry never hands out a handle whose index a live
handle of the same kind holds (Registry.index_capacity), and a record is written fields first,
`handle` last, so the kernel sees either no record or a whole one.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from array import array
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vyre_runtime.backends.cpu.results import Fault, RunResult
from vyre_runtime.backends.cuda import abi, build, driver, header, jit
from vyre_runtime.backends.cuda.arena import Chunk, StagingArena, size_class
from vyre_runtime.backends.cuda.buffers import BufferPool, CudaBuffer
from vyre_runtime.backends.cuda.free_blocks import FreeBlocks
from vyre_runtime.buffers import DeviceRegion
from vyre_runtime.errors import BackendError, DispatchError
from vyre_runtime.protocol import codec, resume
from vyre_runtime.protocol.layout import ControlWord, DeviceState, Layout, layout_digest
from vyre_runtime.protocol.opcodes import MAX_FUSED_MEMBERS, USER_OPCODE_BASE, USER_OPCODE_COUNT
from vyre_runtime.registry import Registry
from vyre_runtime.vir0.isa import MAX_BINDINGS, FaultCode, Scope
from vyre_runtime.vir0.program import Program, encode_code
from vyre_runtime.vir0.verify import dfa_state_count

PROGRAM_CAPACITY = 1024
DFA_CAPACITY = 256
FUSED_CAPACITY = 256
STAGING_SLACK = 32  # a fused run's copy starts at the source's 16-byte boundary and ends on one
SPARE_RUN_RECORDS = 1024  # contexts/regions beyond one per slot: submitters waiting for a slot hold one
START_TIMEOUT_S = 10.0  # launch -> DEVICE_STATE SERVING
EXIT_GRACE_S = 2.0  # a kernel told to stop after a failed start
COPY_TIMEOUT_S = 10.0  # one upload or download on the side stream
COPY_MIN_BYTES_PER_S = 1e9  # a DeviceBuffer copy gets COPY_TIMEOUT_S plus its bytes at this rate
IDLE_SLEEP_NS = 2000
DEVICE_POOL_BYTES = 64 << 20  # device memory for programs' code and tables, taken before launch
# Device memory per worker block for RUN-scope outputs too large for the kernel's shared stage
# (STAGE_WORDS): filter_compact's 65537 words fit. Larger outputs stay in host-mapped memory.
RUN_SCRATCH_BYTES = 512 << 10
POOL_ALIGNMENT = 256
SCAN_INTERVAL_NS = 1_000_000  # the dispatcher reads every status word this often anyway
MAX_RECORD_BYTES = 1 << 30  # records staged for one run
GRID_LIMIT_ENV = "VYRE_CUDA_MAX_BLOCKS"  # cap the persistent grid (sanitizer runs, sharing the GPU)
QUEUE_GLOBAL = "vyre_queue"  # the kernel's device-memory work queue, zeroed before each launch
ALIGN = 16  # code, TABLE records and table bytes in a program's device block
FAULT_CODES = frozenset(int(code) for code in FaultCode)

# Kernels launched and not yet seen to exit, process-wide. Freeing memory may wait for every
# kernel of the context, a resident one included, so a device closing while another device's
# kernel still runs hands its memory to the last one out (`_release`).
_live_kernels: set[int] = set()
_deferred: list[Any] = []
_process_lock = threading.Lock()


def kernel_resident() -> bool:
    """Whether a megakernel launched by this process may still be running."""
    with _process_lock:
        return bool(_live_kernels)


def _refuse_second_kernel() -> None:
    # Loading a module while a resident kernel runs waits for that kernel (it never ends), the
    # kernel's work queue is a module global, and the first kernel holds the SMs: one per process.
    if kernel_resident():
        raise BackendError(
            "a CUDA megakernel is already resident in this process; a second one cannot load beside it",
            "shut the other Megakernel down first, or share it (backend='auto' falls back to the CPU)",
        )


@dataclass(frozen=True)
class PoolBlock:
    """A piece of the device pool (code or a table); freed with the pool in close()."""

    pointer: int
    nbytes: int


@dataclass
class _StagedFusedRun:
    """A fused run's host-side holdings: its member contexts and its device staging block."""

    contexts: tuple[int, ...]
    staging: driver.DeviceMemory | PoolBlock | None = None


@dataclass
class _StagedRun:
    program: int
    emit_words: int
    emit_capacity: int
    outputs: dict[int, Chunk] = field(default_factory=dict)  # binding index -> RUN buffer
    records: Chunk | None = None
    # what a later run of the same program reuses (CudaDevice._spare_runs): the context record
    # as staged (handle 0, fuel set per run) and each RUN output's bytes with their initial image
    record: np.ndarray | None = None
    words: memoryview | None = None  # ``record`` as u32 words (_stage_context's stores)
    # (an output's bytes, its initial image): a run starts each RUN output with one byte copy
    # (a NumPy fill per output cost several times that); a large output: (its words, the init
    # word), a fill in place (INIT_IMAGE_WORDS)
    inits: list[tuple[memoryview, bytes] | tuple[np.ndarray, int]] = field(default_factory=list)
    views: dict[int, np.ndarray] = field(default_factory=dict)  # binding index -> its RUN output's words


# CONTEXT field -> its first u32 word in a record (run_result reads a record as words)
_CONTEXT_WORD = {name: offset // 4 for name, (_, offset) in abi.CONTEXT.fields.items()}
_FUEL_WORD = _CONTEXT_WORD["fuel"]
# the words run_result reads of a context record: the counters and fault, up to instructions
(_HANDLE, _EMITTED, _DROPPED, _FAULT_LANE, _FAULT_CODE, _FAULT_PC, _FAULT_DETAIL, _LANES, _PATH, _INSTRUCTIONS) = (
    _CONTEXT_WORD[name]
    for name in (
        "handle", "emitted", "dropped", "fault_lane", "fault_code", "fault_pc", "fault_detail", "lanes", "path",
        "instructions",
    )
)  # fmt: skip
_COUNTER_WORDS = _INSTRUCTIONS + 2  # instructions is a u64: its two words end what run_result reads
_JIT_PATH = int(abi.RunPath.JIT)
# _put_region stores a REGION record as words: handle, reserved, pointer (u64), length (u64)
assert [abi.REGION.fields[name][1] for name in ("handle", "reserved", "pointer", "length")] == [0, 4, 8, 16]
assert abi.REGION.itemsize == 24
# a FUSED_RUN record as u32 words (_fused_run_prepared builds one per run as a list of ints: a
# structured record filled field by field cost ~10 us per run)
_FUSED_RUN_WORD = {name: offset // 4 for name, (_, offset) in abi.FUSED_RUN.fields.items()}
_FUSED_RUN_WORDS = abi.FUSED_RUN.itemsize // 4
_FR_COUNT, _FR_CONTEXTS, _FR_LANES, _FR_STAGING, _FR_STAGING_BYTES = (
    _FUSED_RUN_WORD[name] for name in ("count", "contexts", "lanes", "staging", "staging_bytes")
)
assert _FUSED_RUN_WORD["handle"] == 0 and abi.FUSED_RUN.itemsize % 4 == 0


# RUN outputs up to this many words start from a cached image (_init_image); larger ones fill
# in place: the cache outlives every device, and 256 images of up to MAX_BINDING_WORDS words
# (64 MiB) each could hold 16 GiB, while a fill costs little next to such an output's copy-back
INIT_IMAGE_WORDS = 1 << 14


@functools.lru_cache(maxsize=256)
def _init_image(words: int, init: int) -> bytes:
    """The bytes a RUN output of ``words`` words starts from (every word ``init``): made once per
    (size, init word) and shared by the staged runs of every program with such an output."""
    return np.full(words, init, dtype="<u4").tobytes()


def _align(offset: int) -> int:
    return -(-offset // ALIGN) * ALIGN


class CudaDevice:
    watches_channels = True  # the megakernel's watcher warp serves watched channel calls (PROTOCOL.md)
    name = "cuda"
    completion_signal = False  # the GPU cannot call Python: the host polls the ring
    supports_jit = True  # programs can run as native code in a megakernel variant (jit.py)

    def __init__(
        self,
        layout: Layout,
        registry: Registry,
        on_complete: Callable[[], None],
        *,
        sm_reserve: float = 0.1,
        arch: str | None = None,
        ordinal: int = 0,
        idle_sleep_ns: int = IDLE_SLEEP_NS,
        scan_interval_ns: int = SCAN_INTERVAL_NS,
        device_pool_bytes: int = DEVICE_POOL_BYTES,
        run_scratch_bytes: int = RUN_SCRATCH_BYTES,
    ) -> None:
        if not 0.0 <= sm_reserve < 1.0:
            raise BackendError(f"sm_reserve={sm_reserve}; allowed 0 <= sm_reserve < 1 (a share of the SMs)")
        if run_scratch_bytes < 0:
            raise BackendError(f"run_scratch_bytes={run_scratch_bytes}; allowed >= 0 (0: no device scratch)")
        _refuse_second_kernel()
        self.layout = layout
        self.registry = registry
        self.on_complete = on_complete  # unused: nothing on the GPU can call it
        self.sm_reserve = sm_reserve
        self.idle_sleep_ns = idle_sleep_ns
        self.scan_interval_ns = scan_interval_ns
        self.internal_errors: dict[int, str] = {}
        self.host_bytes_copied = 0  # region bytes copied into staging (zero-copy regions add none)
        self.grid = self.block = 0
        self.close_errors: list[Exception] = []
        self._lock = threading.Lock()
        self._upload_lock = threading.Lock()
        # id(record table) -> its u32 words on a flat memoryview, words per record (_record_view)
        self._table_words: dict[int, tuple[memoryview, int]] = {}
        self._mapped: list[driver.MappedMemory] = []
        self._device_memory: list[driver.DeviceMemory] = []
        self._pool: driver.DeviceMemory | None = None
        # per worker block, u32 words (a multiple of 4); allocated for the grid at each launch
        self.run_scratch_words = run_scratch_bytes // 16 * 4
        self._run_scratch: driver.DeviceMemory | None = None
        self._runs: dict[int, _StagedRun] = {}
        self._fused_runs: dict[int, _StagedFusedRun] = {}
        # device staging for fused runs over host-mapped regions: taken per run, returned when it
        # is released, lent again best-fit, never freed while the kernel runs (cuMemFree waits)
        self._staging_free: FreeBlocks[driver.DeviceMemory | PoolBlock] = FreeBlocks()
        # a released run's staging (outputs, records, its context record) kept for the next run
        # of the same program and emit capacity: a stream runs one program per chunk thousands
        # of times, and staging it afresh (allocations, a record built field by field) was most
        # of a run's host cost. Kept for one emit capacity per program (_keep_spare); dropped
        # when the program is unregistered.
        self._spare_runs: dict[tuple[int, int], list[_StagedRun]] = {}
        self._live_programs: set[int] = set()
        self._last_mapped: driver.MappedMemory | None = None  # where the last region lay
        # each program's code + tables block by its contents (program_registered)
        self._code_blocks: dict[bytes, driver.DeviceMemory | PoolBlock] = {}
        self._region_chunks: dict[int, Chunk | None] = {}
        self._region_buffers: dict[int, CudaBuffer] = {}  # region -> the DeviceBuffer it reads (held)
        self._buffer_pool: BufferPool | None = None  # made by the first device_buffer()
        self._global_pointers: dict[int, dict[int, int]] = {}  # program -> binding index -> pointer
        # code key -> jit id of the LOADED module (empty for the plain kernel); a PROGRAM record's
        # jit_id is written from it, under _jit_lock, so no record ever names another module's id
        self._jit_ids: dict[str, int] = {}
        self._jit_lock = threading.Lock()
        self._module: driver.Module | None = None
        self._names: dict[str, str] = {}  # symbol -> lowered name in self._module
        self._kernel_stream: driver.Stream | None = None
        self._argument: driver.StructArgument | None = None
        self._launched = self._exited = self._closed = False
        self.context = driver.Context(ordinal)
        try:
            self.info = driver.device_info(ordinal)
            if not self.info.can_map_host_memory:
                raise BackendError(
                    f"{self.info.name} cannot map host memory, which the ring lives in", "use backend='cpu'"
                )
            self.arch = arch or self.info.arch
            self._side_stream = driver.Stream()
            self.arena = StagingArena()
            self.arena.release(self.arena.allocate(1))  # its first block exists before the launch
            self._pool = driver.DeviceMemory(device_pool_bytes) if device_pool_bytes else None
            self._pool_used = 0
            image_memory = self._map(layout.total_words * 4)
            self._image_pointer = image_memory.device_pointer
            self.image = image_memory.view(np.uint32, layout.total_words)
            codec.init_image(self.image, layout)
            run_records = layout.slots + SPARE_RUN_RECORDS
            self.capacities = {"program": PROGRAM_CAPACITY, "context": run_records, "region": run_records}
            self.capacities["dfa"] = DFA_CAPACITY
            self.capacities.update({"fused": FUSED_CAPACITY, "fused_run": run_records})
            # The program table lives in device memory: every run reads its program's record (440
            # bytes), and over PCIe that read cost a round trip per run; `programs` is the host's
            # copy, uploaded record by record as it changes (_upload_program).
            self.programs = np.zeros(PROGRAM_CAPACITY, dtype=abi.PROGRAM)
            self._programs_memory = self._device_allocate(self.programs.nbytes)
            self._device_copy(self._programs_memory, self.programs)
            self._programs_pointer = self._programs_memory.pointer
            self.contexts, self._contexts_pointer = self._table(abi.CONTEXT, run_records)
            self.regions, self._regions_pointer = self._table(abi.REGION, run_records)
            self.dfas, self._dfas_pointer = self._table(abi.DFA, DFA_CAPACITY)
            self.fused, self._fused_pointer = self._table(abi.FUSED, FUSED_CAPACITY)
            self.fused_runs, self._fused_runs_pointer = self._table(abi.FUSED_RUN, run_records)
            self.user_programs, self._user_programs_pointer = self._table(np.dtype("<u4"), USER_OPCODE_COUNT)
            self._empty_region = self.arena.allocate(1)  # a valid address for 0-byte regions
        except BaseException:
            self._release()
            raise
        registry.index_capacity.update(self.capacities)

    # ------------------------------------------------------------------ memory helpers

    def _map(self, nbytes: int) -> driver.MappedMemory:
        memory = driver.MappedMemory(nbytes)
        self._mapped.append(memory)
        return memory

    def host_memory(self, nbytes: int) -> np.ndarray:
        """Pinned, device-mapped host memory (page-aligned) that regions can lie in: the kernel
        reads it in place over PCIe. It lives until the device closes (unpinning waits for the
        resident kernel, so it cannot be given back earlier)."""
        self.context.enter()
        return self._map(nbytes).array

    def _table(self, dtype: np.dtype, capacity: int) -> tuple[np.ndarray, int]:
        memory = self._map(dtype.itemsize * capacity)
        return memory.view(dtype, capacity), memory.device_pointer

    def _device_allocate(self, nbytes: int) -> driver.DeviceMemory | PoolBlock:
        """Device memory for code, tables and DeviceBuffers: carved from the pool allocated before the launch
        (so tools like compute-sanitizer, which know the allocations of launch time, see every
        access in bounds); a fresh cuMemAlloc only when the pool is used up."""
        with self._lock:
            size = (max(1, nbytes) + POOL_ALIGNMENT - 1) // POOL_ALIGNMENT * POOL_ALIGNMENT
            if self._pool is not None and self._pool_used + size <= self._pool.nbytes:
                block = PoolBlock(self._pool.pointer + self._pool_used, nbytes)
                self._pool_used += size
                return block
        self.context.enter()
        memory = driver.DeviceMemory(nbytes)
        with self._lock:
            self._device_memory.append(memory)  # freed in close(), never while the kernel runs
        return memory

    def _device_copy(self, memory: driver.DeviceMemory, data: bytes | np.ndarray) -> None:
        """Copy to device memory on the non-blocking side stream and wait for it, bounded."""
        self._upload_at(memory.pointer, data)

    def _upload_at(self, pointer: int, data: bytes | np.ndarray) -> None:
        with self._upload_lock:  # one waiter at a time on the shared side stream
            driver.upload(self._side_stream, pointer, data, COPY_TIMEOUT_S)

    def _upload_program(self, index: int, field: str | None = None) -> None:
        """Copy program record ``index`` (or just its u32 ``field``) from the host's copy to the
        device table. A whole record goes in with handle 0, then its handle in a second copy. No run
        names a handle before its registration returns, and a run naming a stale handle of the
        same index reads 0 or the new handle (warp 0 reads all the words at once, unordered): a
        mismatch either way, so BAD_HANDLE, never a mix of two records taken for one."""
        record = self.programs[index : index + 1]
        base = self._programs_pointer + index * abi.PROGRAM.itemsize
        if field is None:
            staged = record.copy()
            staged["handle"] = 0
            self._upload_at(base, staged.view(np.uint8))
            field = "handle"
        self._upload_at(base + abi.PROGRAM.fields[field][1], record[field].copy().view(np.uint8))

    def _device_address(self, data: Any) -> tuple[int | None, int]:
        """(device address, bytes) of a region the kernel can read in place, else (None, bytes).
        The bytes of a ``bytes`` object are copied without asking the driver whether another
        library pinned and mapped them (two cuPointerGetAttribute calls: ~10 us per tiny submit
        on the H100's host); other memory is asked about, so pinned memory is read in place."""
        if type(data) is memoryview and type(data.obj) is bytes and data.c_contiguous:
            # Python's heap (submit(bytes)): never inside memory this device mapped, nor pinned
            # by anyone: answered without finding its address (a NumPy view: ~2 us per run)
            nbytes = data.nbytes
            return (self._empty_region.device_pointer, 0) if nbytes == 0 else (None, nbytes)
        try:
            pointer, nbytes = driver.host_pointer_of(data)
        except (ValueError, TypeError, BufferError):  # not C-contiguous: it will be copied
            return None, memoryview(data).nbytes
        if nbytes == 0:
            return self._empty_region.device_pointer, 0
        last = self._last_mapped  # a stream's regions all lie in its arena
        if last is not None and last.registered and last.contains(pointer, nbytes):
            return last.device_address(pointer), nbytes
        for memory in self._mapped + self.arena.blocks:
            if memory.registered and memory.contains(pointer, nbytes):
                self._last_mapped = memory
                return memory.device_address(pointer), nbytes
        if isinstance(getattr(data, "obj", data), bytes):  # Python's heap: nobody pinned it
            return None, nbytes
        return driver.mapped_device_pointer(pointer, nbytes), nbytes

    def _write_record(self, table: np.ndarray, handle: int, kind: str, values: dict[str, Any]) -> None:
        """Fill the record of ``handle``: every field first, ``handle`` last (the kernel's check)."""
        index = self._record_index(table, handle, kind)
        staged = np.zeros((), dtype=table.dtype)
        for name, value in values.items():
            staged[name] = value
        self._put_record(table, index, handle, staged)

    def _put_region(self, region: int, pointer: int, nbytes: int) -> None:
        """_write_record of a REGION record, stored as its u32 words (a run's region: no
        structured record built field by field): handle 0, the rest, then the handle."""
        index = self._record_index(self.regions, region, "region")
        words, stride = self._record_view(self.regions)
        base = index * stride
        words[base] = 0  # invalid while it changes
        fields = array("I", (0, pointer & 0xFFFFFFFF, pointer >> 32, nbytes & 0xFFFFFFFF, nbytes >> 32))
        words[base + 1 : base + 6] = fields  # reserved, u64, u64
        words[base] = region  # last

    def _record_index(self, table: np.ndarray, handle: int, kind: str) -> int:
        """Where ``handle``'s record goes; refused if another live handle holds that index."""
        index = handle % len(table)
        words, stride = self._record_view(table)
        current = words[index * stride]
        if current not in (0, handle):
            raise BackendError(
                f"{kind} record {index} still holds handle {current}; handle {handle} cannot take it",
                "please report this bug (the registry should never hand out a live index)",
            )
        return index

    def _put_record(self, table: np.ndarray, index: int, handle: int, staged: np.ndarray) -> None:
        """Store a record built with handle 0 at ``index``, then its handle (the kernel's check).
        The stores go through the table's u32 words (three slice stores, no per-field views)."""
        self._put_words(table, index, handle, memoryview(staged.reshape(1).view(np.uint32)))

    def _put_words(self, table: np.ndarray, index: int, handle: int, words: memoryview | list[int]) -> None:
        """_put_record of a record given as its u32 words (``words[0]``, its handle, unused).
        The stores go through a memoryview (~40 ns each; a NumPy row costs microseconds)."""
        view, stride = self._record_view(table)
        base = index * stride
        rest = words[1:] if type(words) is memoryview else array("I", words[1:])
        view[base] = 0  # invalid while it changes
        view[base + 1 : base + stride] = rest
        view[base] = handle  # last

    def _record_view(self, table: np.ndarray) -> tuple[memoryview, int]:
        """``table``'s u32 words on a flat memoryview, and the words per record: record i starts
        at word i * stride (the per-run stores and loads, without a NumPy row view each). Made
        once per table; a run looks it up about ten times (one dict read each)."""
        entry = self._table_words.get(id(table))
        if entry is None:
            assert table.dtype.names[0] == "handle" and table.dtype.fields["handle"][1] == 0
            stride = table.dtype.itemsize // 4
            entry = self._table_words[id(table)] = (memoryview(table.view(np.uint32).reshape(-1)), stride)
        return entry

    # ------------------------------------------------------------------ registration

    def program_registered(self, handle: int) -> None:
        entry = self.registry.programs[handle]
        program = entry.program
        code = encode_code(program.code)
        tables = np.zeros(len(program.tables), dtype=abi.TABLE)
        offset = _align(len(code))
        tables_offset = offset
        offset = _align(offset + tables.nbytes)
        placed = []
        for table in program.tables:
            placed.append(offset)
            offset = _align(offset + len(table.data))
        blob = bytearray(max(offset, ALIGN))
        blob[: len(code)] = code
        for index, (table, start) in enumerate(zip(program.tables, placed)):
            blob[start : start + len(table.data)] = table.data
            try:
                states = dfa_state_count(table.data)
            except ValueError:
                states = 0
            tables[index] = (0, len(table.data), states)  # pointer filled in below
        # one device block: code, TABLE records, table bytes; the records hold addresses inside
        # the block, so it is allocated before they are filled in, and copied last. The block is
        # read-only and never freed while the kernel runs, so a program registered again (a
        # stream registers its programs afresh for every input) reuses the block of the same
        # contents instead of taking device memory per registration.
        contents = bytes(blob)  # the TABLE records' addresses still 0: the same for every copy
        with self._lock:
            memory = self._code_blocks.get(contents)
        fresh = memory is None
        if fresh:
            memory = self._device_allocate(len(blob))
        for index, start in enumerate(placed):
            tables["pointer"][index] = memory.pointer + start
        if fresh:
            blob[tables_offset : tables_offset + tables.nbytes] = tables.tobytes()
            self._device_copy(memory, bytes(blob))
            with self._lock:
                self._code_blocks[contents] = memory
        bindings = np.zeros(MAX_BINDINGS, dtype=abi.BINDING)
        pointers: dict[int, int] = {}
        for index, binding in enumerate(program.bindings):
            global_pointer = 0
            if binding.scope == Scope.GLOBAL:
                chunk = self.arena.allocate(binding.words * 4)  # lives until close()
                view = chunk.view(np.uint32, binding.words)
                view[:] = entry.global_buffers.get(binding.name, np.full(binding.words, binding.init, np.uint32))
                entry.global_buffers[binding.name] = view  # host readers see the device's updates live
                global_pointer = pointers[index] = chunk.device_pointer
            bindings[index] = (binding.words, int(binding.scope), binding.init, 0, global_pointer)
        self._global_pointers[handle] = pointers
        with self._jit_lock:
            self._write_program_record(handle, program, memory, tables_offset, bindings)
        with self._lock:
            self._live_programs.add(handle)

    def _write_program_record(
        self, handle: int, program: Program, memory: Any, tables_offset: int, bindings: np.ndarray
    ) -> None:
        self._write_record(
            self.programs,
            handle,
            "program",
            {
                "jit_id": self._jit_ids.get(jit.code_key(program), 0),
                "instructions": len(program.code),
                "registers": program.registers,
                "emit_words": program.emit_words,
                "fuel": program.fuel,
                "lanes": program.lanes,
                "table_count": len(program.tables),
                "binding_count": len(program.bindings),
                "code": memory.pointer,
                "tables": memory.pointer + tables_offset,
                "bindings": bindings,
            },
        )
        self._upload_program(handle % len(self.programs))

    # ------------------------------------------------------------------ JIT variants

    def build_variant(self, programs: Mapping[str, Program]) -> jit.Variant:
        """The megakernel with ``programs`` (code key -> program) JIT'd in, for this GPU (NVRTC,
        through the build cache; runs on the caller's thread, no GPU work)."""
        return jit.build_variant(programs, self.arch)

    def jit_ids(self) -> dict[str, int]:
        """Code key -> jit id of the loaded module (empty: the plain kernel)."""
        with self._jit_lock:
            return dict(self._jit_ids)

    def set_jit_ids(self, ids: Mapping[str, int]) -> None:
        """Point every registered program's record at the LOADED module's functions (``ids``:
        code key -> jit id; empty: interpret everything). Call it with {} before a module swap
        and with the new module's ids once it serves: one u32 store per record, so a run reads
        either 0 (interpret) or an id of the module that runs it."""
        with self._jit_lock:
            self._jit_ids = dict(ids)
            for handle, entry in list(self.registry.programs.items()):
                index = handle % len(self.programs)
                if int(self.programs["handle"][index]) == handle:
                    self.programs["jit_id"][index] = self._jit_ids.get(jit.code_key(entry.program), 0)
                    self._upload_program(index, "jit_id")

    def program_unregistered(self, handle: int) -> None:
        # the record's handle goes to 0 first, so the kernel answers BAD_HANDLE from now on; its
        # device memory cannot be freed while the kernel runs (cuMemFree synchronizes), so it
        # stays with the device until close(); its spare run staging goes back to the arena
        with self._lock:
            self._live_programs.discard(handle)
            keys = [key for key in self._spare_runs if key[0] == handle]
            spares = [run for key in keys for run in self._spare_runs.pop(key)]
        self._release_staging(spares)
        index = handle % len(self.programs)
        with self._jit_lock:  # serialised with registrations, which write records under it
            if int(self.programs["handle"][index]) == handle:
                self.programs["handle"][index] = 0
                self._upload_program(index, "handle")

    def fused_registered(self, handle: int) -> None:
        members = self.registry.fused[handle].members
        padded = np.zeros(MAX_FUSED_MEMBERS, dtype="<u4")
        padded[: len(members)] = members
        self._write_record(self.fused, handle, "fused group", {"count": len(members), "members": padded})

    def fused_unregistered(self, handle: int) -> None:
        self.fused["handle"][handle % len(self.fused)] = 0  # BAD_HANDLE from now on

    def dfa_registered(self, handle: int) -> None:
        transitions = np.ascontiguousarray(self.registry.dfas[handle], dtype="<u4")
        memory = self._device_allocate(transitions.nbytes)
        self._device_copy(memory, transitions)
        values = {"states": transitions.shape[0], "transitions": memory.pointer}
        self._write_record(self.dfas, handle, "DFA", values)

    def opcode_bound(self, opcode: int, program: int) -> None:
        self.user_programs[opcode - USER_OPCODE_BASE] = program  # one aligned u32 store

    # ------------------------------------------------------------------ runs

    def run_prepared(self, program: int, context: int, region: int) -> None:
        group = self.registry.fused.get(program)
        if group is not None:
            self._fused_run_prepared(group.members, context, region)
            return
        self._stage_context(program, context)
        self._stage_region(region)

    def _fused_run_prepared(self, members: tuple[int, ...], fused_context: int, region: int) -> None:
        """Every member's context, the region, and (for a region in host memory) a device staging
        block the kernel copies the bytes into once, so the members read HBM, not PCIe."""
        fused_run = self.registry.fused_runs[fused_context]
        staged = _StagedFusedRun(fused_run.contexts)
        data = self.registry.regions[region]
        length = 0 if isinstance(data, DeviceRegion) else memoryview(data).nbytes
        size = size_class(length + STAGING_SLACK) if length else 0
        with self._lock:  # one lock hold: the run's holdings and a released staging block
            self._fused_runs[fused_context] = staged  # before anything can fail: run_released returns it all
            if size:
                staged.staging = self._staging_free.take(size)
        if size and staged.staging is None:
            staged.staging = self._device_allocate(size)
        for member, member_context in zip(members, fused_run.contexts):
            self._stage_context(member, member_context)
        self._stage_region(region)
        index = self._record_index(self.fused_runs, fused_context, "fused run")
        count = len(members)
        words = [0] * _FUSED_RUN_WORDS  # built whole, stored once (_put_words)
        words[_FR_COUNT] = count
        words[_FR_CONTEXTS : _FR_CONTEXTS + count] = fused_run.contexts
        words[_FR_LANES : _FR_LANES + count] = fused_run.lanes
        if staged.staging is not None:  # two u64s, low word first
            pointer, nbytes = staged.staging.pointer, staged.staging.nbytes
            words[_FR_STAGING : _FR_STAGING + 2] = pointer & 0xFFFFFFFF, pointer >> 32
            words[_FR_STAGING_BYTES : _FR_STAGING_BYTES + 2] = nbytes & 0xFFFFFFFF, nbytes >> 32
        self._put_words(self.fused_runs, index, fused_context, words)

    def reserve_staging(self, nbytes: int, count: int) -> int:
        """Make sure ``count`` fused runs over regions of up to ``nbytes`` find device staging
        without allocating: the missing blocks are carved from one allocation now, so a stream
        pays for them when it starts instead of in its first chunks (each cuMemAlloc while the
        kernel runs costs milliseconds; 96 of them were 0.4 s of a stream's first run). Blocks
        are lent best-fit like any released one. Returns how many blocks were added: none when
        the GPU cannot spare them all at once (the runs then allocate as they go, as before:
        only as many blocks as run at a time, not one per chunk slot)."""
        size = size_class(nbytes + STAGING_SLACK)
        with self._lock:
            missing = count - self._staging_free.count_at_least(size)
        if missing <= 0:
            return 0
        self.context.enter()
        try:
            memory = driver.DeviceMemory(size * missing)
        except BackendError:  # out of device memory: an optimisation, not a requirement
            return 0
        with self._lock:
            self._device_memory.append(memory)  # freed in close(), never while the kernel runs
            for block in range(missing):
                self._staging_free.put(size, PoolBlock(memory.pointer + block * size, size))
        return missing

    def _stage_context(self, program: int, context: int) -> None:
        """A run context's record: fuel and emit capacity in, RUN outputs and records staged;
        the staging of an earlier run of the program is reused when one was released."""
        run = self.registry.contexts[context]
        key = (program, run.emit_capacity)
        self.context.enter()  # growing the arena registers memory (here or in _stage_region)
        with self._lock:
            spares = self._spare_runs.get(key)
            staged = spares.pop() if spares else None
            if staged is not None:
                self._runs[context] = staged  # before anything can fail: run_released returns it all
        if staged is None:
            entry = self.registry.programs[program].program
            self._check_record_bytes(run.emit_capacity, entry.emit_words)
            staged = _StagedRun(program, entry.emit_words, run.emit_capacity)
            with self._lock:
                self._runs[context] = staged  # (as above)
        words = staged.words
        if words is None:
            words = self._allocate_run_staging(staged)
        for output, image in staged.inits:  # RUN outputs start from their init word
            output[:] = image
        words[_FUEL_WORD] = run.fuel or 0
        index = self._record_index(self.contexts, context, "context")
        self._put_words(self.contexts, index, context, words)

    @staticmethod
    def _check_record_bytes(emit_capacity: int, emit_words: int) -> None:
        record_bytes = emit_capacity * emit_words * 4
        if record_bytes > MAX_RECORD_BYTES:
            raise DispatchError(
                f"emit_capacity {emit_capacity} x {emit_words} words needs {record_bytes} bytes of "
                f"records; the CUDA backend stages at most {MAX_RECORD_BYTES} per run",
                "lower emit_capacity",
            )

    def _allocate_run_staging(self, staged: _StagedRun) -> memoryview:
        """A fresh run's RUN outputs and records in the staging arena, and its context record
        (returned as its u32 words)."""
        entry = self.registry.programs[staged.program].program
        outputs = np.zeros(MAX_BINDINGS, dtype="<u8")
        globals_ = self._global_pointers.get(staged.program, {})
        for index, binding in enumerate(entry.bindings):
            if binding.scope == Scope.GLOBAL:
                outputs[index] = globals_.get(index, 0)
                continue
            chunk = staged.outputs[index] = self.arena.allocate(binding.words * 4)
            view = staged.views[index] = chunk.view(np.uint32, binding.words)
            if binding.words <= INIT_IMAGE_WORDS:
                staged.inits.append((memoryview(view).cast("B"), _init_image(binding.words, binding.init)))
            else:
                staged.inits.append((view, binding.init))
            outputs[index] = chunk.device_pointer
        record_bytes = staged.emit_capacity * staged.emit_words * 4
        if record_bytes:
            staged.records = self.arena.allocate(record_bytes)
        record = np.zeros((), dtype=abi.CONTEXT)
        record["emit_capacity"] = staged.emit_capacity
        record["fault_lane"] = abi.NO_FAULT_LANE
        record["records"] = staged.records.device_pointer if staged.records else 0
        record["outputs"] = outputs
        staged.record = record
        staged.words = memoryview(record.reshape(1).view(np.uint32))
        return staged.words

    def _stage_region(self, region: int) -> None:
        data = self.registry.regions[region]
        if isinstance(data, DeviceRegion):  # device memory: the kernel reads it where it lies
            pointer, nbytes = self._device_region_address(region, data)
            self._put_region(region, pointer, nbytes)
            return
        pointer, nbytes = self._device_address(data)
        chunk = None
        if pointer is None:  # pageable memory: copy it into staging the kernel can read
            chunk = self.arena.allocate(nbytes)
            chunk.byte_view(nbytes)[:] = _flat_bytes(data)  # (memoryviews: no NumPy views per run)
            pointer = chunk.device_pointer
            with self._lock:  # (read in place, a region holds nothing: no lock round)
                self._region_chunks[region] = chunk
                self.host_bytes_copied += nbytes
        self._put_region(region, pointer, nbytes)

    def _device_region_address(self, region: int, data: DeviceRegion) -> tuple[int, int]:
        """(device address, bytes) of a region in device memory: a DeviceBuffer of this device
        (held until the run is released, so free() cannot recycle it under the run), or a foreign
        device array, checked to lie inside one allocation of this GPU and waited for on the
        stream its __cuda_array_interface__ names."""
        buffer = data.buffer
        if buffer is not None:
            if not isinstance(buffer, CudaBuffer) or buffer.owner is not self:
                raise DispatchError(
                    "this DeviceBuffer belongs to another Megakernel", "allocate it with this one's device_buffer()"
                )
            buffer.hold()
            with self._lock:
                self._region_buffers[region] = buffer
            return buffer.device_pointer + data.offset, data.nbytes
        if data.nbytes == 0:
            return self._empty_region.device_pointer, 0
        self.context.enter()
        found = driver.pointer_range(data.device_pointer)
        if found is None:
            raise DispatchError(
                f"the region at {data.device_pointer:#x} ({type(data.owner).__name__}) is not memory CUDA knows",
                "pass a CuPy array or PyTorch CUDA tensor of this process, or a DeviceBuffer",
            )
        start, size, ordinal = found
        if ordinal != self.info.ordinal:
            raise DispatchError(
                f"the region lives on GPU {ordinal}; this Megakernel runs on GPU {self.info.ordinal}",
                "move the array to this GPU (cupy.cuda.Device / tensor.to(device))",
            )
        if data.device_pointer + data.nbytes > start + size:
            raise DispatchError(
                f"the region [{data.device_pointer:#x}, +{data.nbytes}) runs past the end of its allocation",
                "check the array's shape and dtype",
            )
        if data.stream is not None:  # __cuda_array_interface__ v3: the producer's work must be done
            driver.ForeignStream(data.stream).wait(COPY_TIMEOUT_S, "the array's producer stream")
        return data.device_pointer, data.nbytes

    # ------------------------------------------------------------------ device buffers

    def device_buffer(self, nbytes: int) -> CudaBuffer:
        """``nbytes`` of device memory runs read in place (Megakernel.device_buffer; see
        vyre_runtime/buffers.py and cuda/buffers.py for the lifetime: recycled, freed at close)."""
        if self._closed:
            raise BackendError("this CUDA device is closed", "create a new Megakernel")
        with self._lock:
            if self._buffer_pool is None:
                self._buffer_pool = BufferPool(
                    self, self._device_allocate, self._copy_in, self._copy_out, lambda: self._closed
                )
            pool = self._buffer_pool
        return pool.take(nbytes)

    def _copy_in(self, pointer: int, source: np.ndarray) -> None:
        self.context.enter()
        with self._upload_lock:  # one waiter at a time on the shared side stream
            driver.upload(self._side_stream, pointer, source, COPY_TIMEOUT_S + source.nbytes / COPY_MIN_BYTES_PER_S)

    def _copy_out(self, pointer: int, nbytes: int) -> np.ndarray:
        self.context.enter()
        with self._upload_lock:
            timeout = COPY_TIMEOUT_S + nbytes / COPY_MIN_BYTES_PER_S
            return driver.download_array(self._side_stream, pointer, nbytes, timeout)

    def run_result(self, program: int, context: int) -> RunResult | list[RunResult | None] | None:
        fused_run = self.registry.fused_runs.get(context)
        if fused_run is not None:
            members = self.registry.fused[program].members
            return [
                self.run_result(member, member_context) for member, member_context in zip(members, fused_run.contexts)
            ]
        staged = self._runs.get(context)  # (one dict read: atomic, no lock)
        index = context % len(self.contexts)
        # one read of the device-written fields (the words up to the u64 instructions)
        words, stride = self._record_view(self.contexts)
        record = words[index * stride : index * stride + _COUNTER_WORDS].tolist()
        if staged is None or record[_HANDLE] != context:
            return None
        instructions = record[_INSTRUCTIONS] | record[_INSTRUCTIONS + 1] << 32
        fault_lane = record[_FAULT_LANE]
        if instructions == 0 and fault_lane == abi.NO_FAULT_LANE:
            return None  # the slot faulted before the program ran (handle, argument)
        entry = self.registry.programs[program]
        outputs = {}
        views = staged.views
        for index_, binding in enumerate(entry.program.bindings):
            if binding.scope == Scope.GLOBAL:
                outputs[binding.name] = np.array(entry.global_buffers[binding.name], dtype=np.uint32)
            else:
                outputs[binding.name] = views[index_].copy()
        words = staged.emit_words
        emitted = min(record[_EMITTED], staged.emit_capacity)
        if staged.records is not None and emitted:
            records = staged.records.view(np.uint32, emitted * words).reshape(emitted, words).copy()
        else:
            records = np.zeros((0, words), dtype=np.uint32)
        fault = None
        if fault_lane != abi.NO_FAULT_LANE:
            code = record[_FAULT_CODE]
            fault = Fault(
                FaultCode(code) if code in FAULT_CODES else code,  # type: ignore[arg-type]
                record[_FAULT_PC],
                fault_lane,
                record[_FAULT_DETAIL],
            )
        return RunResult(
            outputs=outputs,
            records=records,
            dropped=record[_DROPPED],
            fault=fault,
            lanes=record[_LANES],
            instructions=instructions,
            path="jit" if record[_PATH] == _JIT_PATH else "interpreted",
        )

    def run_released(self, context: int, region: int) -> None:
        # the records go first: no run names the run's staging, region or block any more once
        # they are handed on (to a spare run, the arena, the free blocks, the buffer pool); then
        # everything is handed on under one lock hold
        fused = self._fused_runs.get(context)  # (one dict read: atomic; popped below, under the lock)
        contexts = (context,) if fused is None else fused.contexts
        if fused is not None:
            self._clear_record(self.fused_runs, context)
        for member_context in contexts:
            self._clear_record(self.contexts, member_context)
        self._clear_record(self.regions, region)
        stale: list[_StagedRun] = []
        with self._lock:
            fused = self._fused_runs.pop(context, None)
            region_chunk = self._region_chunks.pop(region, None)
            region_buffer = self._region_buffers.pop(region, None)
            for member_context in contexts:
                self._keep_spare(member_context, stale)
            if fused is not None and fused.staging is not None:
                self._staging_free.put(fused.staging.nbytes, fused.staging)
        self._release_staging(stale)
        if region_buffer is not None:  # after its record is gone: the buffer may be recycled now
            region_buffer.unhold()
        if region_chunk is not None:
            self.arena.release(region_chunk)

    def _clear_record(self, table: np.ndarray, handle: int) -> None:
        words, stride = self._record_view(table)
        base = (handle % len(table)) * stride
        if words[base] == handle:
            words[base] = 0

    def _keep_spare(self, context: int, stale: list[_StagedRun]) -> None:
        """Keep a released run context's staging for the next run of its program, or add it to
        ``stale`` (for the arena) with any spares it displaces. Call with the lock held, after
        the context's record was cleared."""
        staged = self._runs.pop(context, None)
        if staged is None:
            return
        if staged.record is not None and staged.program in self._live_programs:
            key = (staged.program, staged.emit_capacity)
            spares = self._spare_runs.get(key)
            if spares is None:  # spares of one emit capacity per program: those of another go
                # back to the arena (runs with ever new capacities would each keep theirs)
                for other in [k for k in self._spare_runs if k[0] == staged.program]:
                    stale += self._spare_runs.pop(other)
                spares = self._spare_runs[key] = []
            spares.append(staged)
        else:
            stale.append(staged)

    def _release_staging(self, runs: list[_StagedRun]) -> None:
        for staged in runs:
            for chunk in [*staged.outputs.values(), staged.records]:
                if chunk is not None:
                    self.arena.release(chunk)

    def ring_doorbell(self, slots: list[int], priorities: list[int]) -> None:
        pass  # the kernel reads the image's doorbell (Megakernel writes it) and scans the ring

    # ------------------------------------------------------------------ lifecycle

    def _params(self, module: driver.Module) -> np.ndarray:
        layout = self.layout
        values = {
            "image": self._image_pointer,
            "programs": self._programs_pointer,
            "contexts": self._contexts_pointer,
            "regions": self._regions_pointer,
            "dfas": self._dfas_pointer,
            "user_programs": self._user_programs_pointer,
            "fused": self._fused_pointer,
            "fused_runs": self._fused_runs_pointer,
            "fused_capacity": len(self.fused),
            "fused_run_capacity": len(self.fused_runs),
            "program_capacity": len(self.programs),
            "context_capacity": len(self.contexts),
            "region_capacity": len(self.regions),
            "dfa_capacity": len(self.dfas),
            "slots": layout.slots,
            "ring": layout.ring,
            "tenants": layout.tenants,
            "tenant_masks": layout.tenant_masks,
            "metrics": layout.metrics,
            "observables": layout.observable_base,
            "observable_count": layout.observables,
            "debug_log": layout.debug_log,
            "debug_capacity": layout.debug_records,
            "io_queue": layout.io_queue,
            "io_entries": layout.io_entries,
            "doorbell": getattr(layout, "doorbell", 0),
            "doorbells": getattr(layout, "doorbells", 0),
            "idle_sleep_ns": self.idle_sleep_ns,
            "scan_interval_ns": self.scan_interval_ns,
            "run_scratch": self._run_scratch.pointer if self._run_scratch else 0,
            "run_scratch_words": self.run_scratch_words if self._run_scratch else 0,
        }
        missing = [name for name in abi.PARAMS.names if name not in values and not name.startswith("reserved")]
        if missing:
            raise BackendError(
                f"the kernel's Params has fields the host does not fill: {', '.join(missing)}",
                "update CudaDevice._params in vyre_runtime/backends/cuda/device.py with abi.PARAMS",
            )
        params = np.zeros(1, dtype=abi.PARAMS)
        for name in abi.PARAMS.names:
            params[name] = values.get(name, 0)
        return params

    def start(self) -> None:
        """Build (or take from the cache) the kernel, check its digests, launch it, wait for SERVING."""
        self.context.enter()
        codec.check_image(self.image, self.layout)
        _refuse_second_kernel()
        self._module, self._names = self._load_checked(build.build_megakernel(self.arch))
        self._launch()

    def _load_checked(self, built: build.BuildResult) -> tuple[driver.Module, dict[str, str]]:
        """Load a cubin as a new module and check that it is a megakernel of this host (its
        symbols, ISA and layout digests); a module that fails a check is unloaded again."""
        module = driver.Module(built.cubin)
        try:
            names = built.names
            missing = [symbol for symbol in build.MEGAKERNEL_SYMBOLS if symbol not in names]
            if missing:
                raise BackendError(
                    f"the kernel build names no lowered symbol for {', '.join(missing)}",
                    "build it with build.compile_source(..., symbols=build.MEGAKERNEL_SYMBOLS)",
                )
            for symbol, expected, what in (
                (build.ISA_DIGEST_GLOBAL, header.isa_digest(), "ISA (vir0/isa.py)"),
                (build.LAYOUT_DIGEST_GLOBAL, layout_digest(), "protocol layout"),
            ):
                found = module.read_u32(names[symbol], self._side_stream, COPY_TIMEOUT_S)
                if found != expected:
                    raise BackendError(
                        f"the loaded kernel was built for another {what}: digest {found:#010x}, "
                        f"this host {expected:#010x}",
                        "clear the cubin cache ($VYRE_CACHE_DIR/cubin) and rebuild",
                    )
        except BaseException:
            self.close_errors += _free(module)
            raise
        return module, names

    def _launch(self) -> None:
        """Launch the loaded module's kernel over this device's image and tables, wait for SERVING.
        Its module globals start fresh: the work queue is zeroed before every launch."""
        module, names = self._module, self._names
        self.block = module.read_u32(names[build.BLOCK_THREADS_GLOBAL], self._side_stream, COPY_TIMEOUT_S)
        function = module.function(names[build.KERNEL_FUNCTION])
        self._zero_queue(module)
        per_sm = driver.max_active_blocks_per_sm(function, self.block)
        if per_sm < 1:
            raise BackendError(
                f"the megakernel cannot run one block of {self.block} threads on an SM of {self.info.name}",
                "reduce the kernel's registers or shared memory (see the NVRTC build log)",
            )
        usable_sms = max(1, int(self.info.sm_count * (1.0 - self.sm_reserve)))
        self.grid = max(2, per_sm * usable_sms)  # block 0 dispatches; every other block works
        limit = os.environ.get(GRID_LIMIT_ENV)
        if limit:  # e.g. under compute-sanitizer, where hundreds of polling blocks crawl
            self.grid = max(2, min(self.grid, int(limit)))
        self._ensure_run_scratch()
        self._argument = driver.StructArgument(self._params(module))
        previous, self._kernel_stream = self._kernel_stream, driver.Stream()  # a fresh stream per launch
        if previous is not None:
            self.close_errors += _free(previous)  # idle: its kernel exited
        driver.launch(function, self.grid, self.block, self._kernel_stream, self._argument)
        with _process_lock:
            self._launched, self._exited = True, False
            _live_kernels.add(id(self))
        try:
            self._wait_serving()
        except BaseException:
            self._abandon_start()
            raise

    def _ensure_run_scratch(self) -> None:
        """Device scratch for every worker block of ``self.grid`` (no kernel runs now: a smaller
        one of an earlier launch can be freed). Allocated before the launch, like the pool, so
        compute-sanitizer knows it."""
        if not self.run_scratch_words:
            return
        nbytes = (self.grid - 1) * self.run_scratch_words * 4
        if self._run_scratch is not None and self._run_scratch.nbytes >= nbytes:
            return
        if self._run_scratch is not None:
            self.close_errors += _free(self._run_scratch)
            self._run_scratch = None
        self._run_scratch = driver.DeviceMemory(nbytes)

    def _zero_queue(self, module: driver.Module) -> None:
        try:
            pointer, nbytes = module.global_address(QUEUE_GLOBAL)
        except BackendError:
            return  # a kernel without a device-side queue
        driver.upload(self._side_stream, pointer, np.zeros(nbytes, dtype=np.uint8), COPY_TIMEOUT_S)

    def _wait_serving(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        pause = 1e-4
        while True:
            state = int(self.image[ControlWord.DEVICE_STATE])
            if state == DeviceState.SERVING:
                return
            if state == DeviceState.REFUSED:
                raise BackendError(
                    "the megakernel refused this image: its layout digest or geometry differs from the kernel's",
                    "rebuild the kernel from this vyre-runtime (clear $VYRE_CACHE_DIR/cubin)",
                )
            if self._kernel_finished():
                raise BackendError("the megakernel exited before it began serving", "run `vyre doctor`")
            if time.monotonic() >= deadline:
                raise BackendError(
                    f"the megakernel did not begin serving within {START_TIMEOUT_S:.0f} s (grid {self.grid}, "
                    f"block {self.block})",
                    "another program may hold the GPU's SMs; check `nvidia-smi`, or lower the GPU's load",
                )
            time.sleep(pause)
            pause = min(pause * 2, 0.01)

    def _abandon_start(self) -> None:
        """After a failed start or relaunch: tell a launched kernel to stop and give it a moment
        (PAUSE, not SHUTDOWN: the ring stays resumable by another relaunch)."""
        self.image[ControlWord.PAUSE] = 1
        deadline = time.monotonic() + EXIT_GRACE_S
        while time.monotonic() < deadline and not self._kernel_finished():
            time.sleep(0.001)

    def _kernel_finished(self) -> bool:
        """True once the kernel is no longer running (exited, or killed by a sticky error)."""
        if not self._launched or self._exited:
            return True
        try:
            finished = self._kernel_stream.query()
        except BackendError:
            finished = True  # a sticky error ended it
        if finished:
            with _process_lock:
                self._exited = True
                _live_kernels.discard(id(self))
        return finished

    def stop(self, timeout: float) -> bool:
        """Set SHUTDOWN and poll (never synchronize) until the kernel exits or ``timeout``."""
        self.image[ControlWord.SHUTDOWN] = 1
        return self._wait_exit(timeout)

    def pause(self, timeout: float) -> bool:
        """Stop the kernel so that `relaunch` can resume the ring: set PAUSE and poll (never
        synchronize) until it exits or ``timeout``; True once it exited (at once if it already had).

        The kernel claims nothing more, its workers finish every slot already claimed or queued
        (DONE or FAULT), every other slot stays as it is (PUBLISHED: served after the relaunch),
        the device queue is left empty and DEVICE_STATE says EXITED (docs/PROTOCOL.md, 6.5). The
        host may go on publishing and reaping meanwhile. False: a slot still runs (a long
        program); call again, the word stays set.
        """
        if self._closed:
            raise BackendError("this CUDA device is closed", "create a new Megakernel")
        self.image[ControlWord.PAUSE] = 1
        return self._wait_exit(timeout)

    def relaunch(
        self, cubin: build.BuildResult | bytes | None = None, *, jit_ids: Mapping[str, int] | None = None
    ) -> dict[int, str]:
        """Launch the megakernel again over the same ring, once the previous launch has exited
        (`pause` returned True, or it exited without being asked); returns the slots it had to
        fault (below). The foundation of a hot swap: with ``cubin``, a new build takes over.

        ``cubin``: None launches the loaded module again. A ``build.BuildResult``
        (``build.build_megakernel`` / ``build.compile_source(..., symbols=build.MEGAKERNEL_SYMBOLS)``)
        or the cubin's bytes (its symbols then must be the extern "C" names megakernel.cu uses)
        is loaded as a new module first (only now: loading waits for a resident kernel) and
        checked as start() checks a build: ISA and layout digests. A build that fails the check
        is unloaded and BackendError raised; the old module stays, the device stays stopped, and
        relaunch() may be called again. Once the new module passed, the old one is unloaded,
        and the program records' JIT ids become ``jit_ids`` (a JIT variant's code key -> id;
        None or {}: interpret everything), so they always name functions of the loaded module.

        Preserved, and valid in the new launch: the image (ring, counters, heartbeat, doorbell,
        tenant masks, debug log, observables), the program, context, region and DFA tables and
        opcode bindings, the device pool with every program's code and tables, every
        DeviceBuffer, staging chunk and global buffer: every handle stays valid and every slot
        in flight resolves. PUBLISHED (and YIELD, REQUEUE) slots are served by the new launch;
        DONE and FAULT slots not reaped yet stay as they are, for the host to reap once.

        Reset: the module's globals (the work queue ``vyre_queue`` is zeroed before the launch;
        the digests and block size are read-only), PAUSE and DEVICE_STATE. A slot the previous
        launch left CLAIMED or WAIT_IO (it died holding it; never after a pause that returned
        True) may have partly run: it is not run again but completed FAULT INTERNAL, its reason in
        ``internal_errors`` (its future fails with it). IO entries go back to EMPTY.

        The caller guarantees: no host thread answers IO requests meanwhile (Megakernel.relaunch
        holds the host service's IO off), and a new ``cubin`` implements this runtime's ABI: the
        same vyre_abi.h (the digests prove the protocol and ISA constants, not the rest), the same
        Params and record layouts (abi.py), the same exported symbols, and no __device__ global
        the host must fill other than ``vyre_queue`` (any other starts as the cubin initialises it,
        on every launch).

        BackendError: the kernel still runs (pause first); the CUDA context died of a sticky
        error (not resumable in this process); the ring was shut down (SHUTDOWN is final); the
        device is closed; the cubin failed its checks; the launch did not serve in time (the
        device is stopped again, PAUSE set: relaunch may be retried).
        """
        if self._closed or not self._launched:
            raise BackendError("this CUDA device is closed or was never started", "create a new Megakernel")
        self.context.enter()
        if not self._kernel_finished():
            raise BackendError(
                "the megakernel is still running: a relaunch needs it stopped",
                "pause() it first and wait until that returns True (Megakernel.relaunch does both)",
            )
        self._refuse_dead_context()
        if self.image[ControlWord.SHUTDOWN]:
            raise BackendError(
                "this ring was shut down (shutdown() or a SHUTDOWN slot); a shut-down ring is not resumed",
                "create a new Megakernel",
            )
        _refuse_second_kernel()
        if cubin is not None:
            module, names = self._load_checked(_kernel_build(cubin, self.arch))
            previous, self._module, self._names = self._module, module, names
            if previous is not None:  # no kernel runs now: unloading cannot wait on one
                self.close_errors += _free(previous)
            # the program records name the functions of the module that is loaded, whatever
            # happens to this launch: a relaunch(None) after a failed one runs this module again
            self.set_jit_ids(jit_ids or {})
        reasons = resume.prepare_relaunch(self.image, self.layout)
        self.internal_errors.update(reasons)
        self._launch()
        return reasons

    def _refuse_dead_context(self) -> None:
        """A kernel that ended in an error took the context with it (CUDA errors of a kernel are
        sticky): nothing can be launched or copied in it any more."""
        status = self._kernel_stream.status()
        if status not in (driver.SUCCESS, driver.NOT_READY):
            raise BackendError(
                f"the megakernel died with {driver.error_name(status)}: the CUDA context is unusable and the ring "
                "cannot be resumed in this process",
                "shut this Megakernel down (its futures fail) and restart the process",
            )

    def _wait_exit(self, timeout: float) -> bool:
        """Poll (never synchronize) until the kernel exits or ``timeout``; True once it exited."""
        if self._launched and not self._closed:
            self.context.enter()  # cuStreamQuery from whichever thread shuts down
        deadline = time.monotonic() + timeout
        pause = 1e-4
        while not self._kernel_finished():
            if time.monotonic() >= deadline:
                return False
            time.sleep(pause)
            pause = min(pause * 2, 0.01)
        return True

    def health(self) -> str | None:
        """None while all is well; else one sentence on what is wrong with the device."""
        if int(self.image[ControlWord.DEVICE_STATE]) == DeviceState.REFUSED:
            return "the megakernel refused the image (layout digest or geometry mismatch) and is not serving"
        if not self._launched or self._closed:
            return None
        self.context.enter()
        status = self._kernel_stream.status()
        if status == driver.NOT_READY:
            return None
        if status == driver.SUCCESS:
            if self.image[ControlWord.SHUTDOWN]:
                return None
            if self.image[ControlWord.PAUSE]:
                return "the megakernel is paused: nothing serves the ring until relaunch()"
            return (
                "the megakernel exited although no shutdown was requested; nothing serves the ring "
                "(relaunch() resumes it)"
            )
        return (
            f"the GPU reported {driver.error_name(status)}: the megakernel is dead and the CUDA context is "
            "unusable; restart the process"
        )

    def close(self) -> None:
        """Unpin and free everything, once the kernel has exited; a kernel still running keeps
        its memory (leaked rather than pulled from under it)."""
        if self._closed:
            return
        if not self._kernel_finished():
            return  # stop() failed: freeing now could wait forever on the resident kernel
        self._closed = True
        self._release()

    def _release(self) -> None:
        resources: list[Any] = [
            self._module,
            *self._device_memory,
            self._pool,
            self._run_scratch,
            *self._mapped,
            getattr(self, "arena", None),
        ]
        resources += [getattr(self, "_side_stream", None), self._kernel_stream]
        resources = [r for r in resources if r is not None]
        self._module, self._device_memory, self._mapped, self._pool = None, [], [], None
        self._run_scratch, self._code_blocks = None, {}
        self._snapshot_globals()
        try:
            self.context.enter()  # this thread frees: the context must be current here
        except BackendError as error:
            self.close_errors.append(error)
        with _process_lock:
            others_running = bool(_live_kernels - {id(self)})
            if others_running:
                _deferred.extend(resources)
                resources = []
            else:
                resources, _deferred[:] = [*_deferred, *resources], []
        for resource in resources:
            self.close_errors += _free(resource)
        try:
            self.context.release()
        except BackendError as error:
            self.close_errors.append(error)

    def _snapshot_globals(self) -> None:
        """Global buffers become plain host arrays again (their mapped views stay valid too)."""
        for entry in self.registry.programs.values():
            for name, buffer in entry.global_buffers.items():
                entry.global_buffers[name] = np.array(buffer, dtype=np.uint32)


def _kernel_build(cubin: build.BuildResult | bytes, arch: str) -> build.BuildResult:
    """A relaunch's cubin as a build: raw bytes name their symbols as megakernel.cu declares them
    (extern "C", so the lowered names are the names themselves)."""
    if isinstance(cubin, build.BuildResult):
        return cubin
    if isinstance(cubin, (bytes, bytearray, memoryview)):
        names = {symbol: symbol for symbol in build.MEGAKERNEL_SYMBOLS}
        return build.BuildResult(bytes(cubin), "", arch, "", names)
    raise BackendError(
        f"relaunch(cubin=...) takes a build.BuildResult or the cubin's bytes, not {type(cubin).__name__}",
        "pass build.build_megakernel(arch) or build.compile_source(source, arch, symbols=build.MEGAKERNEL_SYMBOLS)",
    )


def _flat_bytes(data: Any) -> memoryview:
    """A region's bytes as a flat unsigned-byte memoryview (a copy if they are not contiguous)."""
    view = memoryview(data)
    if not view.c_contiguous:
        view = memoryview(view.tobytes())
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


def _free(resource: Any) -> list[Exception]:
    """Release one resource, best effort: close() must finish even in a broken context."""
    try:
        if isinstance(resource, StagingArena):
            return resource.unregister_all()
        if isinstance(resource, driver.MappedMemory):
            resource.unregister()
        elif isinstance(resource, driver.DeviceMemory):
            resource.free()
        elif isinstance(resource, driver.Module):
            resource.unload()
        elif isinstance(resource, driver.Stream):
            resource.destroy()
    except Exception as error:
        return [error]
    return []


__all__ = ["CudaDevice", "kernel_resident"]
