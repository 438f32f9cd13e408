"""The reader for where io_uring is not: worker threads calling ``preadv`` straight into the
destination memory (a writable memoryview over the address, so nothing is copied through a
host buffer). ``os.preadv`` releases the GIL, so ``workers`` reads really run at once.
Same contract as the io_uring reader (reader.py): completions by user_data, errors as -errno.
"""

from __future__ import annotations

import ctypes
import os
import queue
import threading
import time
from collections.abc import Sequence

from vyre_runtime.errors import IngestError
from vyre_runtime.ingest.reader import CLOSE_TIMEOUT_S, ReadCompletion, ReaderCore, usable_cpus

# One thread per CPU: a warm read is a CPU copy, so the rate grows with the threads up to the CPUs
# (H100 host, 16 CPUs, 4 MiB reads: 8 threads 32 GB/s, 16 threads 47.6, 32 threads 41; bench/uring_rate.py)
DEFAULT_WORKERS = usable_cpus()


def _read_into(fd: int, address: int, length: int, offset: int) -> int:
    """One read into [address, address + length): bytes read, or -errno."""
    destination = memoryview((ctypes.c_char * length).from_address(address)).cast("B")
    try:
        return os.preadv(fd, [destination], offset) if offset >= 0 else os.readv(fd, [destination])
    except OSError as exc:
        return -(exc.errno or 5)  # EIO where the OS gave no errno


class PreadvReader(ReaderCore):
    """``depth`` reads in flight on ``workers`` threads (default min(depth, DEFAULT_WORKERS)). A handle is an
    index into a table of the reader's own duplicates of the caller's fds."""

    name = "preadv"

    def __init__(self, depth: int = 64, *, workers: int | None = None, fallback_reason: str | None = None) -> None:
        super().__init__(depth, None, fallback_reason)
        count = min(depth, DEFAULT_WORKERS) if workers is None else workers
        if count < 1:
            raise IngestError(f"a preadv reader needs at least one worker, got {workers}")
        self._fds: dict[int, int] = {}  # handle -> our dup of the caller's fd
        self._queued: list[tuple[int, int, int, int, int]] = []  # (user_data, fd, address, length, offset)
        self._work: queue.SimpleQueue[tuple[int, int, int, int, int] | None] = queue.SimpleQueue()
        self._done: list[tuple[int, int]] = []  # (user_data, result), appended by workers
        self._ready = threading.Condition(threading.Lock())
        self._workers = [
            threading.Thread(target=self._serve, name=f"vyre-preadv-{i}", daemon=True) for i in range(count)
        ]
        for worker in self._workers:
            worker.start()

    def _serve(self) -> None:
        while (item := self._work.get()) is not None:
            user_data, fd, address, length, offset = item
            if self._closed:  # close() came first: never start a read into memory being given back
                continue
            result = _read_into(fd, address, length, offset)
            with self._ready:
                self._done.append((user_data, result))
                self._ready.notify()

    def register_buffers(self, buffers: Sequence[tuple[int, int]]) -> None:
        """Nothing to pin here; kept so buffer_index ranges are checked exactly as on io_uring."""
        self._buffers, self._buffers_registered = self._check_buffers(buffers), True

    def add_file(self, fd: int) -> int:
        self._check_open()
        try:
            own = os.dup(fd)
        except OSError as exc:
            raise IngestError(
                f"cannot add fd {fd}: {os.strerror(exc.errno or 0)}", "pass an open file descriptor"
            ) from exc
        try:
            handle = self._allocate_handle()
        except IngestError:
            os.close(own)
            raise
        self._fds[handle] = own
        self._reads_of[handle] = 0
        return handle

    def remove_file(self, handle: int) -> None:
        self._release_handle(handle)
        os.close(self._fds.pop(handle))

    def prep_read(
        self, file: int, address: int, length: int, offset: int, user_data: int, buffer_index: int = -1
    ) -> None:
        self._admit(file, address, length, offset, user_data, buffer_index)
        self._queued.append((user_data, self._fds[file], address, length, offset))

    def submit(self) -> int:
        self._check_open()
        queued, self._queued = self._queued, []
        for item in queued:
            self._work.put(item)
        self._submitted += len(queued)
        return len(queued)

    def _take(self) -> list[ReadCompletion]:
        done, self._done = self._done, []  # caller holds self._ready
        return [self._finish(user_data, result) for user_data, result in done]

    def wait(self, minimum: int = 1, timeout: float | None = None) -> list[ReadCompletion]:
        """Every completion ready, at least ``minimum`` (capped at the reads outstanding) unless
        ``timeout`` seconds pass first. Submits queued reads first."""
        self._check_open()
        self.submit()
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
        with self._ready:
            need = min(minimum, len(self._pending))
            while len(self._done) < need:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._ready.wait(remaining)
            return self._take()

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Let the workers finish the reads handed to them (up to ``timeout``), stop and join them,
        and close the reader's fds. Queued reads never submitted are dropped. A worker blocked on a
        pipe that never delivers is left behind (a daemon thread) after the timeout, with its fd.
        ``timeout`` bounds the joins only: a worker blocked in a read cannot be interrupted."""
        if self._closed:
            return
        self._closed = True
        self._queued.clear()
        for _ in self._workers:
            self._work.put(None)
        deadline = time.monotonic() + timeout
        for worker in self._workers:
            worker.join(max(deadline - time.monotonic(), 0.0))
        stuck = any(worker.is_alive() for worker in self._workers)
        self._stragglers = stuck  # a stuck worker may still read into its memory: not drained
        fds, self._fds = self._fds, {}
        for handle, fd in fds.items():
            if stuck and self._reads_of.get(handle):
                continue  # a stuck worker may still read it: leaking the fd beats reading a reused number
            os.close(fd)
        self._pending.clear()
