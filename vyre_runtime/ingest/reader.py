"""The reader interface the stream pipeline uses, its io_uring implementation, and open_reader.

A reader queues reads of (file, offset, length) straight into caller-owned memory (an arena
chunk), hands them to the kernel (io_uring) or to worker threads (preadv), and reports each
completion by the ``user_data`` it was queued with, never by order (DESIGN.md section 3).
Neither path copies through a host bounce buffer: ``host_bytes_copied`` stays 0.

Contract shared by every reader:
- ``offset`` -1 reads at the file's current position (and advances it): the only valid offset
  for pipes and sockets. Any other offset is absolute and leaves the position alone.
- ``add_file(fd)`` takes the reader's own reference to the file: the caller may close ``fd``
  afterwards; ``remove_file`` drops it (refused while a read of that handle is in flight).
- A completion's ``result`` is the byte count (short reads as they are: at EOF, on a pipe) or
  ``-errno``; 0 is end of file. The caller resubmits the rest of a short read.
- Memory a read targets must stay valid until its completion was returned by ``wait`` or
  ``close()`` returned (close waits for reads in flight, then cancels the stragglers) and
  ``drained`` is True: after a close that timed out (a pipe that never delivers) a read may
  still land, so that memory must never be reused or handed to anyone else.
- One thread drives a reader (no locks on the submission side, like liburing's rings).
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import os
import resource
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol, runtime_checkable

from vyre_runtime.errors import IngestError
from vyre_runtime.ingest.uring import Ring
from vyre_runtime.ingest.uring import io_uring_status as io_uring_status
from vyre_runtime.ingest.uring_abi import MAX_BUFFER_BYTES, MAX_ENTRIES, MAX_REGISTERED_BUFFERS, SqeFlag

_U64_LIMIT = 1 << 64
MAX_READ_BYTES = (1 << 32) - 1  # sqe.len is 32 bits; the kernel returns at most 2 GiB - 4 KiB per read
CLOSE_TIMEOUT_S = 5.0
READER_KINDS = ("auto", "io_uring", "preadv")


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask: a container's share, not the host's)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_iowq_workers(cpus: int) -> int:
    """Two CPUs fewer than there are (at least 2, at most all): a warm read is a CPU copy, so the
    copy rate grows with the workers up to the CPUs (H100 host, 16 CPUs: 4 workers 22 GB/s, 8 33,
    12 42, 16 48), but the stream's own thread and the device's host threads need CPUs too.
    Histogram stream over a 4 GiB warm file, best GB/s with 14 / 16 workers / the kernel's caps
    (~25 workers): 27.6 / 22.3 / 16.1 in one run, 24.3 / 23.0 / 24.2 in another; 12 workers were
    slower (20.2). Raw reads with no consumer: 14 workers ~5% below 16. A weak preference: set
    DEFAULT_IOWQ_WORKERS (bench/ingest_sweep.py --iowq) to measure again."""
    return min(cpus, max(2, cpus - 2))


# io-wq workers the thread driving an io_uring reader may run (IORING_REGISTER_IOWQ_MAX_WORKERS,
# bound and unbound alike): a count, or KERNEL_CAPS to leave the kernel's (bound: min(SQ entries,
# 4 x CPUs); unbound: RLIMIT_NPROC, so with IOSQE_ASYNC up to one worker per read in flight).
# The caps belong to the thread, not the ring: later rings that thread drives find them in force,
# so the last capping reader a thread closes puts the thread's caps back (_ThreadCaps).
# Read when a reader opens (iowq_workers=None), so a benchmark may change it.
KERNEL_CAPS = 0
DEFAULT_IOWQ_WORKERS: int = default_iowq_workers(usable_cpus())


class _ThreadCaps:
    """Per thread: the io-wq caps in force before its first open capping reader, and how many
    such readers are open. Readers close in any order (a stream's rings), so only the last one
    restores, and only on the thread that set them (the caps are the calling task's)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._threads: dict[int, tuple[tuple[int, int], int]] = {}

    def opened(self, previous: tuple[int, int]) -> None:
        thread = threading.get_ident()
        with self._lock:
            original, count = self._threads.get(thread, (previous, 0))
            self._threads[thread] = (original, count + 1)

    def closed(self, opened_on: int) -> tuple[int, int] | None:
        """The caps to put back now, or None (other readers still open, or another thread)."""
        with self._lock:
            original, count = self._threads.get(opened_on, ((0, 0), 0))
            if count <= 1:
                self._threads.pop(opened_on, None)
            else:
                self._threads[opened_on] = (original, count - 1)
        if count != 1 or threading.get_ident() != opened_on or 0 in original:
            return None  # 0: the kernel reported no io-wq yet, nothing to put back
        return original


_thread_caps = _ThreadCaps()


class ReadCompletion(NamedTuple):
    user_data: int
    result: int  # bytes read (>= 0) or -errno


@runtime_checkable
class Reader(Protocol):
    name: str  # "io_uring" or "preadv"
    depth: int  # most reads in flight at once
    fallback_reason: str | None  # why io_uring was not used (auto selection), else None
    host_bytes_copied: int  # bytes copied through a host bounce buffer (0 on both real paths)

    def register_buffers(self, buffers: Sequence[tuple[int, int]]) -> None: ...
    def add_file(self, fd: int) -> int: ...
    def remove_file(self, handle: int) -> None: ...
    def prep_read(
        self, file: int, address: int, length: int, offset: int, user_data: int, buffer_index: int = -1
    ) -> None: ...
    def submit(self) -> int: ...
    def wait(self, minimum: int = 1, timeout: float | None = None) -> list[ReadCompletion]: ...
    @property
    def in_flight(self) -> int: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class ReadStats:
    reads_submitted: int
    reads_completed: int
    bytes_completed: int
    failed_completions: int  # completions with a negative result
    short_reads: int  # completions with fewer bytes than asked (EOF, pipes), not failures


class ReaderCore:
    """What both readers share: the depth limit, user_data in flight, file handles, registered
    buffers and telemetry. Subclasses move the bytes."""

    name = "?"

    def __init__(self, depth: int, max_files: int | None, fallback_reason: str | None = None) -> None:
        if not 1 <= depth <= MAX_ENTRIES:
            raise IngestError(f"reader depth must be 1..{MAX_ENTRIES}, got {depth}")
        self.depth = depth
        self.fallback_reason = fallback_reason
        self.host_bytes_copied = 0
        self._closed = False
        self._pending: dict[int, tuple[int, int]] = {}  # user_data -> (file handle, length): queued or in flight
        self._reads_of: dict[int, int] = {}  # open file handle -> its reads queued or in flight
        self._free_handles: list[int] = []  # a min-heap of handles given back
        self._next_handle = 0
        self._max_files = max_files
        self._buffers: list[tuple[int, int]] = []
        self._buffers_registered = False
        self._submitted = self._completed = self._bytes = self._failed = self._short = 0
        self._stragglers = False  # close() gave up on reads that may still land

    # ---- shared checks ----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise IngestError(f"the {self.name} reader is closed", "open a new reader with open_reader()")

    def _check_buffers(self, buffers: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
        self._check_open()
        if self._buffers_registered:
            raise IngestError("buffers are already registered with this reader", "register every buffer in one call")
        if self._pending:
            raise IngestError("register buffers before queueing reads", "call register_buffers once, first")
        if not 0 < len(buffers) <= MAX_REGISTERED_BUFFERS:
            raise IngestError(f"register 1..{MAX_REGISTERED_BUFFERS} buffers, got {len(buffers)}")
        checked = []
        for i, (address, length) in enumerate(buffers):
            if address <= 0 or not 0 < length <= MAX_BUFFER_BYTES:
                raise IngestError(
                    f"buffer {i} (address {address:#x}, {length} bytes) is not registrable",
                    "give a non-null address and 1 byte to 1 GiB per buffer; split a larger arena into several",
                )
            checked.append((int(address), int(length)))
        return checked

    def _allocate_handle(self) -> int:
        if self._free_handles:
            return heapq.heappop(self._free_handles)
        if self._max_files is not None and self._next_handle >= self._max_files:
            raise IngestError(
                f"all {self._max_files} file slots of the {self.name} reader are in use",
                "remove_file() a finished file before adding another",
            )
        self._next_handle += 1
        return self._next_handle - 1

    def _check_handle(self, handle: int) -> None:
        if handle not in self._reads_of:
            raise IngestError(f"file handle {handle} is not open in this reader", "use a handle add_file() returned")

    def _release_handle(self, handle: int) -> None:
        self._check_open()
        self._check_handle(handle)
        if self._reads_of[handle]:
            raise IngestError(
                f"file handle {handle} has {self._reads_of[handle]} reads in flight",
                "wait() for its completions before remove_file()",
            )
        del self._reads_of[handle]
        heapq.heappush(self._free_handles, handle)

    def _admit(self, file: int, address: int, length: int, offset: int, user_data: int, buffer_index: int) -> None:
        """Validate one read and count it as queued (before the subclass writes it anywhere)."""
        self._check_open()
        if len(self._pending) >= self.depth:
            raise IngestError(
                f"{self.depth} reads are already queued or in flight (the reader's depth)",
                "wait() for completions before queueing more",
            )
        if user_data in self._pending:
            raise IngestError(
                f"user_data {user_data} is already in flight", "give every read in flight its own user_data"
            )
        if not 0 <= user_data < _U64_LIMIT:
            raise IngestError(f"user_data must fit in 64 bits, got {user_data}")
        self._check_handle(file)
        if address <= 0 or not 0 <= length <= MAX_READ_BYTES or offset < -1:
            raise IngestError(
                f"read of {length} bytes at offset {offset} into {address:#x} is invalid",
                "give a non-null address, 0..4 GiB - 1 bytes, and an offset >= 0 (or -1: the file position)",
            )
        if buffer_index >= 0:
            if buffer_index >= len(self._buffers):
                raise IngestError(f"buffer_index {buffer_index} is not registered ({len(self._buffers)} buffers)")
            base, size = self._buffers[buffer_index]
            if not (base <= address and address + length <= base + size):
                raise IngestError(
                    f"[{address:#x}, +{length}) is not inside registered buffer {buffer_index} [{base:#x}, +{size})",
                    "pass the index of the buffer that holds the whole range, or -1",
                )
        elif buffer_index != -1:
            raise IngestError(f"buffer_index must be -1 or a registered buffer's index, got {buffer_index}")
        self._pending[user_data] = (file, length)
        self._reads_of[file] += 1

    def _finish(self, user_data: int, result: int) -> ReadCompletion:
        """Match a completion to its read by user_data (never by order) and count it."""
        entry = self._pending.pop(user_data, None)
        if entry is None:
            raise IngestError(f"a completion arrived for user_data {user_data}, which is not in flight")
        handle, length = entry
        self._reads_of[handle] -= 1
        self._completed += 1
        if result < 0:
            self._failed += 1
        else:
            self._bytes += result
            self._short += result < length
        return ReadCompletion(user_data, result)

    # ---- shared public surface --------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Reads queued or in flight (what counts against ``depth``)."""
        return len(self._pending)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def drained(self) -> bool:
        """Closed, and no read can land in the reader's memory any more."""
        return self._closed and not self._stragglers

    def stats(self) -> ReadStats:
        return ReadStats(self._submitted, self._completed, self._bytes, self._failed, self._short)

    def close(self) -> None:  # pragma: no cover - every reader overrides it
        raise NotImplementedError

    def __enter__(self) -> ReaderCore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at interpreter shutdown there is nobody to tell
            if not self._closed:
                self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} depth={self.depth} in_flight={self.in_flight} closed={self._closed}>"


class IoUringReader(ReaderCore):
    """Reads through one io_uring ring: a sparse registered-file table (handles are its
    indices), READ_FIXED into registered buffers, IOSQE_ASYNC by default so io-wq workers copy
    buffered reads in parallel (measured 32-40 GB/s against 5-6 GB/s inline, MEASURED-H100.md)."""

    name = "io_uring"
    cancel_user_data = _U64_LIMIT - 1  # the close-time cancel; reads may not use it

    def __init__(
        self,
        depth: int = 64,
        *,
        sqpoll: bool = False,
        force_async: bool = True,
        sq_thread_idle_ms: int = 1000,
        max_files: int = 1024,
        fallback_reason: str | None = None,
        iowq_workers: int | None = None,
        setup_flags: int = 0,
    ) -> None:
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if nofile != resource.RLIM_INFINITY:
            max_files = min(max_files, nofile)  # the kernel refuses a larger table (EMFILE)
        super().__init__(depth, max_files, fallback_reason)
        self._closed = True  # until the ring and its file table exist
        self._capped_on: int | None = None  # the thread whose io-wq caps this reader set
        entries = 1 << (depth - 1).bit_length()
        # CQ: 2x the SQ, never overflows
        self.ring = Ring(entries, sqpoll=sqpoll, sq_thread_idle_ms=sq_thread_idle_ms, flags=setup_flags)
        try:
            self.ring.register_files([-1] * max_files)
            self.iowq_workers = self._cap_workers(iowq_workers)
        except BaseException:
            self._restore_caps()
            self.ring.close()
            raise
        self._closed = False
        self._sqe_flags = SqeFlag.FIXED_FILE | (SqeFlag.ASYNC if force_async else 0)
        self._queued = 0  # prepared but not yet handed to the kernel

    def _cap_workers(self, iowq_workers: int | None) -> int:
        """Cap the io-wq workers that copy our reads (DEFAULT_IOWQ_WORKERS); returns the cap, 0
        where the kernel's caps stay."""
        asked = iowq_workers is not None
        if iowq_workers is None:
            iowq_workers = DEFAULT_IOWQ_WORKERS
        if iowq_workers < 0:
            raise IngestError(
                f"iowq_workers must be None (the default), {KERNEL_CAPS} (the kernel's caps) or a count, "
                f"got {iowq_workers}"
            )
        if iowq_workers == KERNEL_CAPS:
            return KERNEL_CAPS
        # both classes: forced-async buffered reads through registered files were measured running
        # as unbound work on 6.18 (a bound-only cap left 8 workers where 1 was asked)
        try:
            previous = self.ring.register_iowq_max_workers(iowq_workers, iowq_workers)
        except IngestError as exc:
            if asked or exc.errno != errno.EINVAL:
                raise
            return KERNEL_CAPS  # a kernel before 5.15 has no caps: the default does without them
        _thread_caps.opened(previous)
        self._capped_on = threading.get_ident()
        return iowq_workers

    def _restore_caps(self) -> None:
        """The thread's io-wq caps as they were before its capping readers (the last one out)."""
        capped_on, self._capped_on = self._capped_on, None
        if capped_on is None:
            return
        original = _thread_caps.closed(capped_on)
        if original is not None and not self.ring.closed:
            with contextlib.suppress(IngestError):  # teardown goes on; the caps stay as they are
                self.ring.register_iowq_max_workers(*original)

    def register_buffers(self, buffers: Sequence[tuple[int, int]]) -> None:
        checked = self._check_buffers(buffers)
        self.ring.register_buffers(checked)
        self._buffers, self._buffers_registered = checked, True

    def add_file(self, fd: int) -> int:
        self._check_open()
        handle = self._allocate_handle()
        try:
            self.ring.register_files_update(handle, [fd])
        except IngestError:
            heapq.heappush(self._free_handles, handle)
            raise
        self._reads_of[handle] = 0
        return handle

    def remove_file(self, handle: int) -> None:
        self._release_handle(handle)
        self.ring.register_files_update(handle, [-1])

    def prep_read(
        self, file: int, address: int, length: int, offset: int, user_data: int, buffer_index: int = -1
    ) -> None:
        if user_data == self.cancel_user_data:
            raise IngestError(f"user_data {user_data} is reserved by the io_uring reader")
        self._admit(file, address, length, offset, user_data, buffer_index)
        try:
            if buffer_index >= 0:
                self.ring.prep_read_fixed(file, address, length, offset, buffer_index, user_data, self._sqe_flags)
            else:
                self.ring.prep_read(file, address, length, offset, user_data, self._sqe_flags)
        except IngestError:
            self._pending.pop(user_data)
            self._reads_of[file] -= 1
            raise
        self._queued += 1

    def submit(self) -> int:
        self._check_open()
        if not self._queued:
            return 0
        taken = self.ring.submit()
        handed = self._queued if self.ring.sqpoll else min(taken, self._queued)
        self._queued -= handed
        self._submitted += handed
        return handed

    def _reap(self) -> list[ReadCompletion]:
        return [self._finish(user_data, result) for user_data, result, _ in self.ring.reap()]

    def wait(self, minimum: int = 1, timeout: float | None = None) -> list[ReadCompletion]:
        """Every completion ready, at least ``minimum`` (capped at the reads outstanding) unless
        ``timeout`` seconds pass first. Submits queued reads first."""
        self._check_open()
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
        self.submit()
        done = self._reap()
        need = min(minimum, len(done) + len(self._pending))
        while len(done) < need:
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            self.ring.wait_cqes(need - len(done), remaining)
            done += self._reap()
            if self._queued:  # the kernel took fewer than offered last time
                self.submit()
            if deadline is not None and time.monotonic() >= deadline:
                break
        return done

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Wait up to ``timeout`` for submitted reads, cancel the rest (a pipe that never
        delivers), then tear the ring down. Reads that were queued but never submitted are dropped."""
        if self._closed:
            return
        try:
            outstanding = len(self._pending) - self._queued
            self._stragglers = outstanding > 0  # until _drain saw them all complete
            if outstanding and not self.ring.closed:
                self._drain(outstanding, timeout)
        finally:
            self._closed = True
            self._pending.clear()
            self._restore_caps()
            self.ring.close()

    def _drain(self, outstanding: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        self.ring.wait_cqes(outstanding, timeout)
        outstanding -= len(self.ring.reap())
        if outstanding > 0 and self.ring.sq_space_left():
            self.ring.prep_cancel_all(self.cancel_user_data)
            self.ring.submit()
            while outstanding > 0 and time.monotonic() < deadline + 1.0:
                self.ring.wait_cqes(1, 0.05)
                outstanding -= sum(user_data != self.cancel_user_data for user_data, _, _ in self.ring.reap())
        self._stragglers = outstanding > 0


def open_reader(
    kind: str = "auto",
    depth: int = 64,
    *,
    sqpoll: bool = False,
    force_async: bool = True,
    sq_thread_idle_ms: int = 1000,
    workers: int | None = None,
    iowq_workers: int | None = None,
    setup_flags: int = 0,
) -> Reader:
    """A reader of ``kind``: "auto" (io_uring where io_uring_status() says yes, else preadv with
    ``fallback_reason`` set), "io_uring" (IngestError with the reason where unavailable), "preadv"."""
    from vyre_runtime.ingest.fallback import PreadvReader  # fallback imports ReaderCore from here

    if kind not in READER_KINDS:
        raise IngestError(f"unknown reader {kind!r}", f"use one of {', '.join(READER_KINDS)}")
    if kind == "preadv":
        return PreadvReader(depth, workers=workers)
    available, reason = io_uring_status()
    if not available:
        if kind == "io_uring":
            raise IngestError(f"io_uring is unavailable: {reason}", "use reader='preadv' (or 'auto')")
        return PreadvReader(depth, workers=workers, fallback_reason=reason)
    try:
        return IoUringReader(
            depth,
            sqpoll=sqpoll,
            force_async=force_async,
            sq_thread_idle_ms=sq_thread_idle_ms,
            iowq_workers=iowq_workers,
            setup_flags=setup_flags,
        )
    except IngestError as exc:
        if kind == "io_uring":
            raise
        return PreadvReader(depth, workers=workers, fallback_reason=exc.one_line())
