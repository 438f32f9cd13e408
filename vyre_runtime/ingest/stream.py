"""The stream pipeline: inputs -> reads into arena chunks -> RUN_PROGRAM slots -> merged results.

    free chunk slot --plan--> reads in flight (io_uring READ_FIXED or preadv, matched by
    user_data) --last read lands--> one RUN_PROGRAM slot per program over the chunk's bytes,
    in place (GPU-visible arena: no copy), or one fused slot running every program over them
    (the runs of every chunk whose reads landed in one pass go out as one batch per program)
    --every run done--> outcomes kept by chunk index, slot freed --input finished--> merged per
    program in chunk order (results.py)

Fusion (StreamOptions.fuse; on by default on CUDA): the programs of an input form one fused group
(Megakernel.register_fused; a group of one for a single program), and each chunk is one
RUN_PROGRAM slot whose bytes cross PCIe once, as wide loads with many in flight, into device
staging, instead of once per program and as each program's own loads (a checksum's 4-byte words:
one PCIe latency each, ~2 GB/s per block). Every program then sees
the chunk with the group's widest overlap as context (unfused, each sees its own `.overlap`):
the same results for programs that, as Program.overlap asks, count only what is anchored in the
owned range and need no more than their overlap of context.

A slot is reused only after every run over it finished (DESIGN.md, "Exactly once"); the chunk
plan attributes each byte to one chunk, so a match spanning a boundary is counted once (the
overlap is read into both neighbours' regions). One thread drives everything: the readers'
submission sides are single-threaded (reader.py), and the Megakernel's host service resolves
the run futures on its own thread.

An input that cannot be opened or read (ENOENT, EACCES, EIO, truncated while read) gets its
error in its FileResult; the others go on and lose nothing.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from vyre_runtime.chunking import ChunkPlan
from vyre_runtime.errors import BackendError, DispatchError, InputError, VyreError
from vyre_runtime.ingest.arena import PAGE, Arena, round_up
from vyre_runtime.ingest.reader import ReadCompletion, Reader, open_reader
from vyre_runtime.ingest.results import ChunkOutcome, FileResult, ProgramResult, merge
from vyre_runtime.ingest.sources import STDIN_NAME, Piece, Source
from vyre_runtime.megakernel import Megakernel
from vyre_runtime.protocol.layout import Priority
from vyre_runtime.protocol.opcodes import MAX_FUSED_MEMBERS
from vyre_runtime.run_template import RunTemplate
from vyre_runtime.vir0.isa import MAX_LANES
from vyre_runtime.vir0.program import Program

DEFAULT_CHUNK_SIZE = 16 << 20
# Arena chunk slots when not given (fewer when the inputs need fewer: run() sizes the arena): a GPU
# consumes a chunk per 256-thread block at ~1 GB/s, so it needs dozens of chunks running, and as
# many again being read, to keep PCIe busy (H100: 16 MiB x 96, 128 reads of 4 MiB in flight);
# CPU workers need only a few.
DEFAULT_CHUNKS = {"cuda": 96, "cpu": 8}
ProgressCallback = Callable[[int, int], None]  # (bytes read so far, bytes known in total)
ABORT_RUN_WAIT_S = 5.0  # how long an aborted run() waits for runs still reading the arena
FUSION_BACKENDS = ("cuda",)  # where fusing saves work by default: one PCIe pass per chunk, not one per program
RUN_POLL_S = 0.0005  # how often a thread waiting for reads looks at the running slots
FUSED_RUN = -1  # ChunkSlot.futures' program index of a fused run's future (every program's outcome)
# runs of one program (or fused group) published as one batch (RunTemplate.submit_many): the slots
# whose reads landed in one pass go out together; a batch takes its ring slots all at once, so it
# stays a small share of the ring
RUN_BATCH = 64
RUN_PRIORITY = Priority.NORMAL  # the stream's runs' (their templates', and what a batch may take)


@dataclass(frozen=True)
class StreamOptions:
    chunk_size: int = DEFAULT_CHUNK_SIZE  # bytes each chunk owns
    chunks: int | None = None  # arena chunk slots (chunks read or processed at once); None: per backend
    chunks_per_slot: int = 1  # consecutive chunks read into one arena slot (one RUN_PROGRAM each): bigger
    # reads and more runs in flight for the same arena size; programs still see `chunk_size` chunks
    read_size: int = 4 << 20  # bytes per read; a chunk is filled by several reads in flight
    queue_depth: int = 128  # reads in flight per ring (io-wq copies them from the page cache in parallel)
    rings: int = 1  # io_uring instances (inputs are spread over them)
    reader: str = "auto"  # "auto" | "io_uring" | "preadv"
    direct: bool = False  # O_DIRECT where the file system allows it
    sqpoll: bool = False  # a kernel thread polls the submission queue
    lanes: int | None = None  # None: each program's .lanes
    fuel: int | None = None  # None: each program's .fuel
    emit_capacity: int = 65536  # records per chunk and program
    fuse: bool | None = None  # one fused slot per chunk for all programs (staged on CUDA); None: on on CUDA
    jit: bool = False  # JIT-compile the programs before the first chunk (CUDA; Megakernel.jit)

    def check(self) -> None:
        for name in ("chunk_size", "chunks", "chunks_per_slot", "read_size", "queue_depth", "rings"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise DispatchError(f"{name}={getattr(self, name)} must be at least 1")
        if self.lanes is not None and not 1 <= self.lanes <= MAX_LANES:
            raise DispatchError(f"lanes={self.lanes}; allowed 1..{MAX_LANES}")
        if self.fuel is not None and not 1 <= self.fuel <= 0xFFFFFFFF:
            raise DispatchError(f"fuel={self.fuel}; allowed 1..2^32-1")
        if not 0 <= self.emit_capacity <= 0xFFFFFFFF:
            raise DispatchError(f"emit_capacity={self.emit_capacity}; allowed 0..2^32-1 records")
        if self.direct and self.read_size % PAGE:
            raise DispatchError(f"read_size={self.read_size} must be a multiple of {PAGE} with O_DIRECT")


@dataclass
class StreamStats:
    reader: str = ""
    fallback_reason: str | None = None
    bytes_read: int = 0  # I/O volume: overlaps are read into both neighbours, O_DIRECT reads whole pages
    bytes_processed: int = 0  # input bytes whose chunk went to the programs (each byte once)
    host_bytes_copied: int = 0  # through a host bounce: pipe overlaps, reader and backend staging copies
    reads: int = 0
    short_reads: int = 0
    runs: int = 0
    seconds: float = 0.0
    # slot-seconds spent reading (first read queued -> last landed) and running (launch -> reaped):
    # divided by `seconds`, the mean number of slots in each state (where the pipeline waits)
    reading_slot_seconds: float = 0.0
    running_slot_seconds: float = 0.0

    @property
    def gigabytes_per_second(self) -> float:
        return self.bytes_processed / self.seconds / 1e9 if self.seconds else 0.0


@dataclass(eq=False)  # compared by identity: a slot is one arena slot's state, not a value
class ChunkSlot:
    index: int  # arena chunk slot
    source: Source | None = None
    plan: ChunkPlan | None = None  # what the slot holds: its chunks' union (region and owned bytes)
    plans: list[ChunkPlan] = field(default_factory=list)  # the chunks the programs run over
    data_offset: int = 0  # where region byte 0 sits in the slot
    reads_left: int = 0
    region_end: int = 0  # sequential: the stream position the region reached
    taken_at: float = 0.0  # perf_counter when the slot left the free list
    launched_at: float = 0.0  # ... when its runs were submitted
    futures: list[tuple[ChunkPlan, int, concurrent.futures.Future]] = field(default_factory=list)
    runs_done: int = 0  # of `futures`, counted by the stream thread from the completion events


class StreamPipeline:
    """Stream inputs through ``programs`` on ``megakernel``; see the module docstring."""

    def __init__(
        self,
        programs: Sequence[Program],
        megakernel: Megakernel,
        options: StreamOptions | None = None,
        progress: ProgressCallback | None = None,
        reader_factory: Callable[[StreamOptions], Reader] | None = None,
    ) -> None:
        if not programs:
            raise DispatchError("a stream needs at least one program")
        self.programs = list(programs)
        self.megakernel = megakernel
        options = options or StreamOptions()
        options.check()
        if options.chunks is None:
            options = replace(options, chunks=DEFAULT_CHUNKS.get(megakernel.backend, 8))
        if options.fuse is None:  # the CPU reads host memory at memory speed: nothing to save there
            fusable = len(programs) <= MAX_FUSED_MEMBERS
            options = replace(options, fuse=fusable and megakernel.backend in FUSION_BACKENDS)
        if options.fuse and len(programs) > MAX_FUSED_MEMBERS:
            raise DispatchError(
                f"fuse=True needs 1..{MAX_FUSED_MEMBERS} programs, not {len(programs)}",
                "pass fuse=False (or None: fused where it helps), or fewer programs",
            )
        self.options = options
        self.progress = progress
        self.reader_factory = reader_factory or _open_reader  # tests inject faults through a wrapper
        self.overlap = max(program.overlap for program in self.programs)
        self.stats = StreamStats()
        self._readers: list[Reader] = []
        self._backlog: list[deque[Piece]] = []
        self._pieces: dict[int, Piece] = {}
        self._next_user_data = 1
        self._free: deque[ChunkSlot] = deque()
        self._running: dict[int, ChunkSlot] = {}  # arena slot index -> its slot while its runs are in flight
        self._ready: list[ChunkSlot] = []  # slots whose reads all landed, launched together (_launch_ready)
        # a RunTemplate per program (or fused group) handle of the open inputs: a chunk's run is
        # checked and staged with the options validated once (Megakernel.run_template)
        self._templates: dict[int, RunTemplate] = {}
        # a slot per finished run, appended by the thread that resolves the run's future (deque
        # appends are thread-safe): the stream thread counts them instead of polling every
        # running slot's futures on every pass
        self._run_events: deque[ChunkSlot] = deque()
        self._run_signal = threading.Event()  # set after each append to _run_events
        self._total_known = 0
        self.arena: Arena | None = None
        self.reader_name, self.fallback_reason = "", None
        self._closed = False
        self._jitted = False
        self._mergers: concurrent.futures.ThreadPoolExecutor | None = None  # (_merge_all)

    def _jit_programs(self) -> None:
        """options.jit: compile the programs to native code before the first chunk. The swap is
        by code, so the handles each input registers afresh run natively too."""
        if self._jitted or not self.options.jit:
            return
        handles = [self.megakernel.register_program(program) for program in self.programs]
        try:
            self.megakernel.jit(*handles)
        finally:
            for handle in handles:
                self.megakernel.unregister_program(handle)
        self._jitted = True

    # ------------------------------------------------------------------ public

    def run(self, paths: Sequence[str]) -> list[FileResult]:
        """Stream ``paths``; may be called again (the arena and the rings are kept: pinning and
        registering them is the expensive part of starting a stream). `close()` releases them."""
        if self._closed:
            raise DispatchError("this stream pipeline is closed", "make a new StreamPipeline")
        options = self.options
        self._jit_programs()  # before the clock: a build is a one-off (and cached on disk)
        started = time.perf_counter()
        self.stats = StreamStats()
        self._ensure_arena(paths)
        if options.fuse:  # every chunk slot's runs find device staging without allocating it
            region_bytes = options.chunk_size + 2 * self.overlap
            self.megakernel.reserve_run_staging(region_bytes, self.arena.count * options.chunks_per_slot)
        self._free = deque(ChunkSlot(i) for i in range(self.arena.count))
        self._running, self._pieces, self._total_known = {}, {}, 0  # progress totals are per run()
        self._ready = []
        self._run_events.clear()
        device_copied_before = getattr(self.megakernel.device, "host_bytes_copied", 0)
        waiting = deque(
            Source(i, path, self.overlap, options.chunk_size, options.direct) for i, path in enumerate(paths)
        )
        planning: list[Source] = []
        results: dict[int, FileResult] = {}
        try:
            if not self._readers:
                self._open_readers(self.arena)
            reader_copied_before = sum(r.host_bytes_copied for r in self._readers)
            self.stats.reader, self.stats.fallback_reason = self.reader_name, self.fallback_reason
            while waiting or planning or self._busy():
                self._plan(waiting, planning, results)
                self._launch_ready()  # (a pipe's last chunk may complete while planning)
                self._pump()
                progressed = self._reap_reads(timeout=0.0)
                if self._running:
                    # finished runs are reaped here, by the thread that holds the GIL anyway: the
                    # service thread, woken by its poll, waits for a busy stream thread to let go
                    # of the GIL (up to the 5 ms switch interval), and the slots wait with it
                    self.megakernel.poll()
                progressed |= self._reap_runs()
                self._finish(planning, results)
                if not progressed:
                    self._wait_a_little()
        except BaseException:  # a reader error, a progress callback's KeyboardInterrupt, ...
            self._abort(planning)
            raise
        self.stats.seconds = time.perf_counter() - started
        device_copies = getattr(self.megakernel.device, "host_bytes_copied", 0) - device_copied_before
        reader_copies = sum(r.host_bytes_copied for r in self._readers) - reader_copied_before
        self.stats.host_bytes_copied += device_copies + reader_copies
        return [results[i] for i in range(len(paths))]

    def _ensure_arena(self, paths: Sequence[str]) -> None:
        """An arena of `options.chunks` slots, or fewer when regular files that need fewer are
        all there is to read (pinning costs ~0.2 s per GiB: `vyre run` over small files should not
        pin gigabytes). An arena kept from an earlier run() that is too small for these inputs is
        replaced, with the rings that registered it; none of its reads or runs is in flight."""
        options = self.options
        slot_owned = options.chunks_per_slot * options.chunk_size
        wanted = 0
        for path in paths:
            try:
                info = os.stat(path) if path != STDIN_NAME else None
            except OSError:
                continue  # its error is reported when the input is opened
            if info is None or not stat.S_ISREG(info.st_mode):
                wanted = options.chunks  # stdin, a pipe, a device: its size is unknown
                break
            wanted += max(1, -(-info.st_size // slot_owned))
            if wanted >= options.chunks:  # the full arena: no need to look at the rest
                break
        count = max(1, min(options.chunks, wanted))
        if self.arena is not None and self.arena.count < count:
            arena, self.arena = self.arena, None
            drained = False
            try:
                drained = self._close_readers()
            finally:  # as in close(): lent again only if no read can still land in it
                hand_back = self.megakernel.release_host_memory if drained else self.megakernel.retire_host_memory
                hand_back(arena.memory)
        if self.arena is None:
            slot_bytes = slot_owned + 2 * self.overlap + (2 * PAGE if options.direct else 0)
            self.arena = Arena(round_up(slot_bytes, PAGE), count, self.megakernel.host_memory)

    def close(self) -> None:
        """Close the rings and hand the arena back to the Megakernel for reuse."""
        if self._closed:
            return
        self._closed = True
        if self._mergers is not None:
            self._mergers.shutdown(wait=True)
        arena, self.arena = self.arena, None
        drained = False
        try:
            drained = self._close_readers()
        finally:
            if arena is not None:  # lent again only if no read can still land in it
                hand_back = self.megakernel.release_host_memory if drained else self.megakernel.retire_host_memory
                hand_back(arena.memory)

    def __enter__(self) -> StreamPipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ readers

    def _open_readers(self, arena: Arena) -> None:
        options = self.options
        for _ in range(options.rings):
            reader = self.reader_factory(options)
            self._readers.append(reader)
            self._backlog.append(deque())
            reader.register_buffers(arena.buffers())
        first = self._readers[0]
        self.reader_name, self.fallback_reason = first.name, first.fallback_reason

    def _close_readers(self) -> bool:
        """Close every reader (the first close error is raised after all were tried); True if no
        read can land in the arena any more (reader.py: ``drained``)."""
        readers, self._readers, self._backlog = self._readers, [], []
        drained, first_error = True, None
        for reader in readers:
            try:
                reader.close()
            except Exception as error:  # its reads may still be in flight
                drained, first_error = False, first_error or error
                continue
            drained &= getattr(reader, "drained", True)
        if first_error is not None:
            raise first_error
        return drained

    def _abort(self, planning: list[Source]) -> None:
        """run() is leaving on an exception: close the rings (they wait for reads in flight, then
        cancel them), wait a while for runs over the arena, then give back what the unfinished
        inputs hold (descriptors, program handles). An arena a read or run may still touch is
        retired: never used by the next run() nor lent by close() (it would be written under its
        next owner)."""
        try:
            drained = self._close_readers()
        except Exception:
            drained = False
        running = list(self._running.values())
        futures = [future for slot in running for _, _, future in slot.futures]
        _, pending = concurrent.futures.wait(futures, timeout=ABORT_RUN_WAIT_S)
        busy = {id(slot.source) for slot in running if any(f in pending for _, _, f in slot.futures)}
        self._running, self._pieces, self._free, self._ready = {}, {}, deque(), []
        for source in planning:
            if id(source) not in busy:
                for handle in self._handles_to_unregister(source):
                    with contextlib.suppress(VyreError):
                        self._unregister_handle(handle)
            source.close()  # the readers' own references went with the readers
        if (not drained or pending) and self.arena is not None:
            self.megakernel.retire_host_memory(self.arena.memory)
            self.arena = None  # the next run() takes fresh memory

    def _reader_of(self, source: Source) -> int:
        return source.position % len(self._readers)

    def _reads_in_flight(self) -> bool:
        return any(reader.in_flight for reader in self._readers)

    def _busy(self) -> bool:
        return bool(self._pieces or self._running or self._ready)

    def _queue(self, piece: Piece, source: Source) -> None:
        self._backlog[self._reader_of(source)].append(piece)

    def _pump(self) -> None:
        """Hand backlogged reads to their readers as far as each one's depth allows."""
        for reader, backlog in zip(self._readers, self._backlog):
            queued = 0
            while backlog and reader.in_flight < reader.depth:
                piece = backlog.popleft()
                user_data = self._next_user_data
                self._next_user_data += 1
                self._pieces[user_data] = piece
                reader.prep_read(piece.file, piece.address, piece.length, piece.offset, user_data, piece.buffer_index)
                queued += 1
            if queued:
                reader.submit()
                self.stats.reads += queued

    # ------------------------------------------------------------------ planning

    def _plan(self, waiting: deque[Source], planning: list[Source], results: dict[int, FileResult]) -> None:
        """Give free chunk slots to the next chunks, inputs in order, opening inputs as needed."""
        while self._free:
            source = next((s for s in planning if self._can_plan(s)), None)
            if source is None:
                if not waiting or len(planning) >= self.options.chunks:
                    return
                source = waiting.popleft()
                planning.append(source)  # from here on, _abort and _finish give back what it holds
                self._open(source)
                short = source.out_of_descriptors or source.out_of_records
                if short and any(s.fd >= 0 for s in planning if s is not source):
                    # no descriptor or device record left while other inputs are open: give back
                    # what it took and wait for one of them to finish
                    planning.remove(source)
                    self._unregister(source)
                    source.retry_later()
                    waiting.appendleft(source)
                    return
                continue
            if source.sequential:
                self._start_sequential_chunk(source)
            else:
                plans = source.next_plans(self.options.chunks_per_slot)
                if plans:
                    self._start_positional_chunk(source, plans)

    @staticmethod
    def _can_plan(source: Source) -> bool:
        if source.error is not None or source.planning_done:
            return False
        return not (source.sequential and source.reading)

    def _open(self, source: Source) -> None:
        source.started = time.perf_counter()
        try:  # first: a device whose record tables are full (CUDA) costs no descriptor
            for program in self.programs:
                source.program_handles.append(self.megakernel.register_program(program))  # fresh globals
            if self.options.fuse:
                source.fused_handle = self.megakernel.register_fused(source.program_handles)
        except VyreError as error:  # this input waits for others to finish, or fails; not the run
            source.error, source.planning_done, source.out_of_records = error, True, True
            return
        source.open()
        if source.error is not None:
            source.planning_done = True
            return
        reader = self._readers[self._reader_of(source)]
        try:
            source.handle = reader.add_file(source.fd)
        except VyreError as error:  # e.g. out of descriptors (preadv dups): this input fails, not the run
            source.error, source.planning_done = error, True
            return
        source.outcomes = [{} for _ in self.programs]
        if source.size is not None:
            self._total_known += source.size
        if source.size == 0:
            source.planning_done = True

    def _take_slot(self) -> ChunkSlot:
        # the slot freed last (LIFO): its memory is the likeliest still in the CPU's caches, and the
        # reads into it then stay in L3 instead of streaming through DRAM (BENCHMARKS.md, ingest)
        slot = self._free.pop()
        slot.taken_at = time.perf_counter()
        return slot

    def _start_positional_chunk(self, source: Source, plans: list[ChunkPlan]) -> None:
        slot = self._take_slot()
        first_plan, last_plan = plans[0], plans[-1]
        plan = ChunkPlan(
            first_plan.index, first_plan.region_start, last_plan.region_end, first_plan.own_start, last_plan.own_end
        )
        first, slot.data_offset, length = source.slot_layout(plan)
        slot.source, slot.plan, slot.plans = source, plan, plans
        source.slots_busy += 1
        address = self.arena.chunk_address(slot.index)
        buffer_index = self.arena.buffer_index(slot.index)
        read_size = self.options.read_size
        pieces = []
        for start in range(0, length, read_size):
            piece_length = min(read_size, length - start)
            needed = max(0, min(start + piece_length, slot.data_offset + plan.region_length) - start)
            pieces.append(
                Piece(slot, source.handle, first + start, address + start, piece_length, needed, buffer_index)
            )
        slot.reads_left = len(pieces)
        for piece in pieces:
            self._queue(piece, source)

    def _start_sequential_chunk(self, source: Source) -> None:
        slot = self._take_slot()
        slot.source, slot.plan, slot.plans, slot.data_offset = source, None, [], 0
        source.slots_busy += 1
        source.reading = True
        region_start = source.sequential_region_start()
        carry = source.carry
        if carry:  # the overlap shared with the previous chunk: the pipe cannot be read twice
            self.arena.chunk(slot.index)[: len(carry)] = memoryview(carry)
            self.stats.host_bytes_copied += len(carry)
        slot.region_end = region_start + len(carry)
        if source.ended:  # the carry is all there is: the stream ended inside the previous region
            slot.reads_left = 1
            self._complete_sequential_chunk(slot, source)
            return
        self._read_more_sequential(slot, source)

    def _read_more_sequential(self, slot: ChunkSlot, source: Source) -> None:
        region_start = source.sequential_region_start()
        wanted = min(self.options.read_size, source.sequential_target() - slot.region_end)
        address = self.arena.chunk_address(slot.index) + slot.region_end - region_start
        slot.reads_left = 1
        piece = Piece(slot, source.handle, -1, address, wanted, wanted, self.arena.buffer_index(slot.index))
        self._queue(piece, source)

    # ------------------------------------------------------------------ reads

    def _reap_reads(self, timeout: float) -> bool:
        """Hand the landed reads on; with one ring, wait up to ``timeout`` s for one (in
        io_uring_enter, the GIL released: a landing read wakes this thread at once)."""
        progressed = False
        for reader in self._readers:
            if not reader.in_flight:
                continue
            wait = timeout if len(self._readers) == 1 else 0.0
            completions = reader.wait(1 if wait else 0, timeout=wait)
            for completion in completions:
                self._on_read(completion)
            progressed |= bool(completions)
        self._launch_ready()
        return progressed

    def _on_read(self, completion: ReadCompletion) -> None:
        piece = self._pieces.pop(completion.user_data)
        slot, result = piece.slot, completion.result
        source = slot.source
        assert source is not None  # a slot with reads in flight belongs to a source
        if result >= 0 and result < piece.needed:
            self.stats.short_reads += 1
        if source.error is not None:  # the input already failed: just let its slot drain
            self._read_finished(slot)
            return
        if result < 0:
            where = "the stream" if piece.offset < 0 else f"offset {piece.offset}"
            self._fail(
                source,
                InputError(
                    f"reading {source.path} at {where} failed: {os.strerror(-result)}",
                    "check the device or file system (the media may be failing); other files were not affected",
                ),
            )
            self._read_finished(slot)
            return
        if source.sequential:
            self._on_sequential_read(slot, source, piece, result)
            return
        arrived = min(result, piece.needed)
        source.bytes_read += arrived
        self.stats.bytes_read += arrived
        if arrived < piece.needed:
            if result == 0:
                self._fail(
                    source,
                    InputError(
                        f"{source.path} ended at {piece.offset} bytes while reading; it shrank during the run",
                        "do not truncate files while vyre reads them",
                    ),
                )
                self._read_finished(slot)
                return
            self._read_rest(source, piece, result)
            return
        self._read_finished(slot)

    def _read_rest(self, source: Source, piece: Piece, result: int) -> None:
        """A short positional read: queue the rest (buffered: it is no longer page-aligned)."""
        file = piece.file
        if source.direct_active and result % PAGE:
            reader = self._readers[self._reader_of(source)]
            try:
                if source.buffered_handle < 0:
                    source.buffered_handle = reader.add_file(source.open_buffered())
            except (OSError, VyreError) as error:  # e.g. out of descriptors: this input fails, not the run
                reason = error if isinstance(error, VyreError) else InputError(
                    f"cannot reopen {source.path} to finish a short O_DIRECT read: {error.strerror}",
                    "raise the open-file limit (ulimit -n) or read without --direct",
                )  # fmt: skip
                self._fail(source, reason)
                self._read_finished(piece.slot)
                return
            file = source.buffered_handle
        rest = Piece(
            piece.slot,
            file,
            piece.offset + result,
            piece.address + result,
            piece.length - result,
            piece.needed - result,
            piece.buffer_index,
        )
        self._queue(rest, source)

    def _on_sequential_read(self, slot: ChunkSlot, source: Source, piece: Piece, result: int) -> None:
        slot.region_end += result
        source.bytes_read += result
        self.stats.bytes_read += result
        if result and slot.region_end < source.sequential_target():
            self._read_more_sequential(slot, source)
            return
        source.ended = result == 0
        self._complete_sequential_chunk(slot, source)

    def _complete_sequential_chunk(self, slot: ChunkSlot, source: Source) -> None:
        """The region is full or the stream ended: launch the chunk and hand its overlap on."""
        region_start = source.sequential_region_start()
        plan = source.sequential_plan(region_start, slot.region_end, source.ended)
        source.reading = False
        own_end = (source.next_index + 1) * source.chunk_size
        if source.ended and slot.region_end <= own_end:
            source.planning_done = True
            source.size = slot.region_end
            self._total_known += source.size
        else:  # hand the shared overlap on; past EOF too: bytes after own_end belong to the next chunk
            next_start = max(0, own_end - source.overlap)
            chunk = self.arena.chunk(slot.index)
            source.carry = bytes(chunk[next_start - region_start : slot.region_end - region_start])
        source.next_index += 1
        slot.plan, slot.plans = plan, [] if plan is None else [plan]
        self._read_finished(slot)

    def _read_finished(self, slot: ChunkSlot) -> None:
        slot.reads_left -= 1
        if slot.reads_left:
            return
        source = slot.source
        assert source is not None
        if source.error is not None or slot.plan is None:
            self._release(slot)
            return
        self._ready.append(slot)

    # ------------------------------------------------------------------ runs

    def _launch_ready(self) -> None:
        """Launch the slots whose reads all landed since the last call: one RUN_PROGRAM per
        program per chunk (or one fused run per chunk), the runs of each program handle
        published in batches (RunTemplate.submit_many) instead of one publication each."""
        if not self._ready:
            return
        ready, self._ready = self._ready, []
        now = time.perf_counter()
        batches: dict[int, list[tuple[ChunkSlot, ChunkPlan, int, int]]] = {}  # handle -> its runs, in order
        for slot in ready:
            source = slot.source
            assert source is not None
            slot.launched_at = now
            self.stats.reading_slot_seconds += now - slot.taken_at
            self._running[slot.index] = slot  # first: an interrupted launch leaves its runs where _abort waits
            for plan in slot.plans:
                self._plan_runs(batches, slot, source, plan)
        # a batch takes its slots all or none: an eighth of the ring at most, so it never waits for
        # more than a small ring can free (Megakernel(slots=16) streams too), and no more than the
        # ring has free now (at least one): slots held by others (a paused tenant's stay PUBLISHED)
        # may leave fewer than that for good, and a larger batch would wait for them until
        # publish_timeout and fail the input, where runs one at a time go through
        most = max(1, min(RUN_BATCH, self.megakernel.layout.slots // 8))
        try:
            for handle, runs in batches.items():
                first = 0
                while first < len(runs):
                    size = max(1, min(most, self.megakernel._takeable_count(RUN_PRIORITY)))
                    self._submit(handle, runs[first : first + size])
                    first += size
        finally:
            for slot in ready:
                if not slot.futures:  # nothing was submitted (the input failed): done at once
                    self._run_finished(slot)
                for _, _, future in slot.futures:
                    future.add_done_callback(lambda _, slot=slot: self._run_finished(slot))
        if self.progress is not None:
            self.progress(self.stats.bytes_processed, self._total_known)

    def _plan_runs(
        self,
        batches: dict[int, list[tuple[ChunkSlot, ChunkPlan, int, int]]],
        slot: ChunkSlot,
        source: Source,
        plan: ChunkPlan,
    ) -> None:
        """Queue chunk ``plan``'s runs: one per program, each with its own overlap's share (the
        slot's bytes start at file offset slot.plan.region_start); fused, one for all programs
        over the chunk with the widest overlap (FUSED_RUN stands for its futures' program index:
        the future resolves to every program's outcome)."""
        if source.error is not None:  # the input failed (a read, a submission): launch no more of it
            return
        self.stats.bytes_processed += plan.own_end - plan.own_start
        source.chunks += 1
        if source.fused_handle:
            batches.setdefault(source.fused_handle, []).append((slot, plan, FUSED_RUN, self.overlap))
            return
        for program_index, (program, handle) in enumerate(zip(self.programs, source.program_handles)):
            batches.setdefault(handle, []).append((slot, plan, program_index, program.overlap))

    def _submit(self, handle: int, runs: list[tuple[ChunkSlot, ChunkPlan, int, int]]) -> None:
        """Publish runs of ``handle`` (one input's program or fused group) as one batch, each over
        its chunk with ``overlap`` bytes of context on each side; a failed submission fails the
        input (its later runs are not launched)."""
        source = runs[0][0].source
        assert source is not None
        if source.error is not None:
            return
        template = self._templates.get(handle)
        if template is None:
            options = self.options
            template = self.megakernel.run_template(
                handle,
                lanes=options.lanes,
                fuel=options.fuel,
                emit_capacity=options.emit_capacity,
                priority=RUN_PRIORITY,
            )
            self._templates[handle] = template
        specs = []
        for slot, plan, _, overlap in runs:
            start = max(plan.region_start, plan.own_start - overlap)
            end = min(plan.region_end, plan.own_end + overlap)
            first = slot.data_offset + start - slot.plan.region_start
            region = self.arena.chunk(slot.index)[first : first + end - start]
            specs.append((region, plan.own_start - start, plan.own_end - start, start, plan.index))
        try:
            futures = template.submit_many(specs)
        except VyreError as error:
            self._fail(source, error)
            return
        for (slot, plan, program_index, _), future in zip(runs, futures):
            slot.futures.append((plan, program_index, future))
        self.stats.runs += len(futures)

    def _run_finished(self, slot: ChunkSlot) -> None:
        """A run of ``slot`` finished (called by whichever thread resolved its future)."""
        self._run_events.append(slot)
        if not self._run_signal.is_set():  # (set already: the stream thread looks at the deque anyway)
            self._run_signal.set()

    def _reap_runs(self) -> bool:
        finished = []
        while self._run_events:
            slot = self._run_events.popleft()
            if self._running.get(slot.index) is not slot:
                continue  # a run of an earlier, aborted run() finishing late: its slots are gone
            slot.runs_done += 1
            if slot.runs_done >= len(slot.futures):  # (a slot with no runs comes once, at 0)
                finished.append(slot)
        now = time.perf_counter()
        for slot in finished:
            del self._running[slot.index]
            self.stats.running_slot_seconds += now - slot.launched_at
            source = slot.source
            assert source is not None
            for plan, program_index, future in slot.futures:
                try:
                    outcome = future.result(0)
                except VyreError as error:  # the backend stopped or failed this run
                    self._fail(source, error)
                    continue
                except concurrent.futures.CancelledError:  # the Megakernel shut down with cancel
                    self._fail(
                        source,
                        BackendError("the Megakernel shut down before this chunk ran", "keep it open while streaming"),
                    )
                    continue
                if program_index == FUSED_RUN:
                    for outcomes, member_outcome in zip(source.outcomes, outcome):
                        outcomes[plan.index] = ChunkOutcome(plan, member_outcome)
                else:
                    source.outcomes[program_index][plan.index] = ChunkOutcome(plan, outcome)
            self._release(slot)
        return bool(finished)

    def _release(self, slot: ChunkSlot) -> None:
        source = slot.source
        assert source is not None
        source.slots_busy -= 1
        slot.source, slot.plan, slot.plans, slot.futures, slot.reads_left = None, None, [], [], 0
        slot.runs_done = 0
        self._free.append(slot)

    def _wait_a_little(self) -> None:
        """Nothing moved: wait for the next event without spinning (a spinning thread holds the
        GIL the host service needs to resolve the runs). With reads in flight on one ring, in the
        ring: a read that lands wakes the thread and its slot's refill goes out at once, which
        keeps the reads as deep as the queue allows; running slots are rechecked every
        RUN_POLL_S, the host service's own poll."""
        if self._reads_in_flight() and len(self._readers) == 1:
            self._reap_reads(timeout=RUN_POLL_S if self._running else 0.05)
            return
        if self._running:
            if self._reads_in_flight():
                time.sleep(0.0001)
                return
            # any running slot's run finishing wakes this thread (not just the oldest slot's:
            # slots finish out of order). Cleared before the deque is looked at: a callback
            # appends its event, then sets the signal, so no wake-up is lost.
            self._run_signal.clear()
            if not self._run_events:
                self._run_signal.wait(0.05)
        elif self._reads_in_flight() and len(self._readers) > 1:
            time.sleep(0.0001)

    # ------------------------------------------------------------------ finishing

    def _unregister(self, source: Source) -> None:
        """Give back an input's program handles (it has no runs)."""
        for handle in self._handles_to_unregister(source):
            self._unregister_handle(handle)
        source.program_handles, source.fused_handle = [], 0

    def _unregister_handle(self, handle: int) -> None:
        self._templates.pop(handle, None)
        self.megakernel.unregister_program(handle)

    @staticmethod
    def _handles_to_unregister(source: Source) -> list[int]:
        """An input's handles in the order they can go: its fused group before its members."""
        return [source.fused_handle] * bool(source.fused_handle) + source.program_handles

    def _fail(self, source: Source, error: VyreError) -> None:
        if source.error is None:
            source.error = error
        source.planning_done = True

    def _finish(self, planning: list[Source], results: dict[int, FileResult]) -> None:
        for source in [s for s in planning if s.planning_done and s.slots_busy == 0]:
            results[source.position] = self._file_result(source)
            # (only now: a merge that raises leaves the input to _abort, which gives back its
            # handles and descriptor; taken out first, they leaked)
            planning.remove(source)

    def _merge_all(self, merges: list[tuple[Program, dict[int, ChunkOutcome], dict]]) -> list[ProgramResult]:
        """Each program's merge, in program order. Several programs with many records merge side
        by side on a few threads: a merge is NumPy sorts and gathers that let the GIL go, and
        run one after another on the stream thread they were a third of a fused stream's time
        whose programs emit a record per block (BENCHMARKS.md, session 7)."""
        if len(merges) < 2 or sum(_record_count(outcomes) for _, outcomes, _ in merges) < PARALLEL_MERGE_RECORDS:
            return [merge(*arguments) for arguments in merges]
        if self._mergers is None:
            workers = max(1, min(len(self.programs), os.cpu_count() or 1))  # one merge per program
            self._mergers = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="vyre-merge")
        return list(self._mergers.map(lambda arguments: merge(*arguments), merges))

    def _file_result(self, source: Source) -> FileResult:
        size = source.size if source.size is not None else source.bytes_read
        result = FileResult(path=source.path, size=size, error=source.error, note=source.note)
        registry = self.megakernel.registry
        merges = []
        for program, handle, outcomes in zip(self.programs, source.program_handles, source.outcomes):
            global_buffers = {k: v.copy() for k, v in registry.programs[handle].global_buffers.items()}
            merges.append((program, outcomes, global_buffers))
        result.programs.extend(self._merge_all(merges))
        for handle in self._handles_to_unregister(source):
            self._unregister_handle(handle)
        result.chunks = source.chunks
        if source.handle >= 0 or source.buffered_handle >= 0:
            reader = self._readers[self._reader_of(source)]
            for handle in (source.handle, source.buffered_handle):
                if handle >= 0:
                    reader.remove_file(handle)
        source.close()
        result.seconds = time.perf_counter() - source.started
        return result


PARALLEL_MERGE_RECORDS = 1 << 16  # records an input's programs emitted, from which they merge side by side


def _record_count(outcomes: dict[int, ChunkOutcome]) -> int:
    return sum(len(chunk.outcome.records) for chunk in outcomes.values())


def _open_reader(options: StreamOptions) -> Reader:
    return open_reader(options.reader, options.queue_depth, sqpoll=options.sqpoll)


def run_files(
    programs: Sequence[Program],
    paths: Sequence[str],
    options: StreamOptions | None = None,
    megakernel: Megakernel | None = None,
    progress: ProgressCallback | None = None,
) -> tuple[list[FileResult], StreamStats]:
    """Stream ``paths`` through ``programs``; opens a Megakernel (backend "auto") unless given."""
    if megakernel is not None:
        with StreamPipeline(programs, megakernel, options, progress) as pipeline:
            return pipeline.run(paths), pipeline.stats
    with Megakernel(backend="auto") as owned, StreamPipeline(programs, owned, options, progress) as pipeline:
        return pipeline.run(paths), pipeline.stats


def run_file(
    program: Program, path: str, options: StreamOptions | None = None, megakernel: Megakernel | None = None
) -> ProgramResult:
    """One program over one file; the file's error (if any) is raised."""
    results, _ = run_files([program], [path], options, megakernel)
    if results[0].error is not None:
        raise results[0].error
    return results[0].programs[0]
