"""One input of a stream: how its bytes are cut into chunks and which reads fill each chunk.

Two kinds of source:
- **Positional** (regular files, block devices): the size is known, chunks are planned up front
  (chunking.plan_chunks with the largest overlap of the programs) and every chunk is filled by
  several reads in flight at absolute offsets, any number of chunks at once. With O_DIRECT, a
  read starts at the region start rounded down to the page and the chunk's data begins
  ``data_offset`` bytes into the slot, so no unaligned head needs a buffered read; a short
  O_DIRECT read in the middle (rare) is finished through a buffered descriptor.
- **Sequential** (pipes, sockets, character devices): no size, no offsets. One read at a time at
  the current position; a chunk ends at ``chunk_size + overlap`` bytes past its own start or at
  EOF. The ``2 x overlap`` bytes shared with the next chunk are copied into the next slot (the
  pipe cannot be read twice): those are the only bytes the host copies, and they are counted.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from dataclasses import dataclass, field
from typing import Any

from vyre_runtime.chunking import ChunkPlan, plan_chunks
from vyre_runtime.errors import InputError, VyreError
from vyre_runtime.ingest.arena import PAGE, round_up

STDIN_NAME = "-"


@dataclass
class Piece:
    """One read: ``length`` bytes at ``offset`` into ``address``; ``needed`` of them must arrive
    (an O_DIRECT read may ask for up to a page more than the region holds)."""

    slot: Any  # the stream's ChunkSlot
    file: int  # the reader's file handle
    offset: int  # -1: the current position (sequential sources)
    address: int
    length: int
    needed: int
    buffer_index: int


@dataclass
class Source:
    """The state of one input while it streams."""

    position: int  # index in the caller's list (results come back in this order)
    path: str
    overlap: int
    chunk_size: int
    direct: bool  # O_DIRECT asked for
    fd: int = -1
    buffered_fd: int = -1  # for a short O_DIRECT read's remainder; opened on demand
    handle: int = -1  # reader file handle of ``fd``
    buffered_handle: int = -1
    sequential: bool = False
    size: int | None = None  # None until a sequential source hits EOF
    direct_active: bool = False
    note: str = ""  # e.g. why O_DIRECT was not used
    error: VyreError | None = None
    out_of_descriptors: bool = False  # the open failed with EMFILE/ENFILE: it may work once others close
    out_of_records: bool = False  # registering its programs found the device's tables full: likewise
    planning_done: bool = False
    slots_busy: int = 0  # chunk slots reading for or running this source
    chunks: int = 0
    bytes_read: int = 0
    program_handles: list[int] = field(default_factory=list)
    fused_handle: int = 0  # the programs' fused group when the stream fuses them (0: none)
    outcomes: list[dict[int, Any]] = field(default_factory=list)  # per program: chunk index -> outcome
    _plans: Any = None
    # sequential sources: what the last chunk read and must hand on
    stream_position: int = 0
    next_index: int = 0
    carry: bytes = b""  # file bytes [next chunk's region start, stream_position)
    reading: bool = False  # a sequential chunk is being filled (one at a time)
    ended: bool = False  # a sequential read returned 0: the rest is in ``carry``, never read again
    started: float = 0.0

    # ------------------------------------------------------------------ opening

    def open(self) -> None:
        """Open the input; an unreadable one becomes this source's error, not an exception."""
        try:
            self.fd = os.dup(0) if self.path == STDIN_NAME else os.open(self.path, os.O_RDONLY)
            info = os.fstat(self.fd)
        except OSError as error:
            self.error = InputError(f"cannot open {self.path}: {error.strerror}", _open_fix(error))
            self.out_of_descriptors = error.errno in (errno.EMFILE, errno.ENFILE)
            return
        if stat.S_ISDIR(info.st_mode):
            self.error = InputError(f"{self.path} is a directory", "name the files in it (the CLI expands directories)")
            return
        # stdin is read from where the caller left it (like cat), even when it is a regular file,
        # so it is sequential; its file description is the caller's, so no O_DIRECT either
        positional = stat.S_ISREG(info.st_mode) or stat.S_ISBLK(info.st_mode)
        self.sequential = self.path == STDIN_NAME or not positional
        if not self.sequential:
            self.size = info.st_size if stat.S_ISREG(info.st_mode) else _block_device_size(self.fd)
            self._plans = plan_chunks(self.size, self.chunk_size, self.overlap)
            if self.direct:
                self._enable_direct()

    def _enable_direct(self) -> None:
        """O_DIRECT on the descriptor already open, by fcntl: a second open by path may find
        another file by now, and on a FIFO an O_DIRECT open fails (EINVAL) only after it met the
        writer, so the buffered reopen waited for a writer that had gone (and the run hung)."""
        try:
            fcntl.fcntl(self.fd, fcntl.F_SETFL, fcntl.fcntl(self.fd, fcntl.F_GETFL) | os.O_DIRECT)
            self.direct_active = True
        except OSError as error:
            if error.errno == errno.EINVAL:  # this file system has no O_DIRECT
                self.note = "O_DIRECT is not supported on this file system: read buffered"
            else:
                self.note = f"O_DIRECT was refused ({error.strerror}): read buffered"

    def open_buffered(self) -> int:
        """A second, buffered descriptor of the same file (through /proc/self/fd, so it is the
        same inode even if the path was removed or replaced since)."""
        if self.buffered_fd < 0:
            self.buffered_fd = os.open(f"/proc/self/fd/{self.fd}", os.O_RDONLY)
        return self.buffered_fd

    def retry_later(self) -> None:
        """Back to unopened after a shortage (descriptors, device records): opened again later."""
        self.close()
        self.error, self.out_of_descriptors, self.out_of_records, self.planning_done = None, False, False, False

    def close(self) -> None:
        for fd in (self.fd, self.buffered_fd):
            if fd >= 0:
                os.close(fd)
        self.fd = self.buffered_fd = -1

    # ------------------------------------------------------------------ chunk planning

    def next_plans(self, count: int) -> list[ChunkPlan]:
        """Up to ``count`` consecutive positional chunks ([] when every chunk is planned)."""
        plans = []
        for plan in self._plans:
            plans.append(plan)
            if len(plans) == count:
                break
        if len(plans) < count:
            self.planning_done = True
        return plans

    def slot_layout(self, plan: ChunkPlan) -> tuple[int, int, int]:
        """(first file offset read, data_offset in the slot, bytes to read) for a positional chunk."""
        if not self.direct_active:
            return plan.region_start, 0, plan.region_length
        first = plan.region_start - plan.region_start % PAGE
        return first, plan.region_start - first, round_up(plan.region_end - first, PAGE)

    def sequential_region_start(self) -> int:
        """File offset of the next sequential chunk's region byte 0."""
        return max(0, self.next_index * self.chunk_size - self.overlap)

    def sequential_target(self) -> int:
        """Stream position at which the next sequential chunk's region is full."""
        return (self.next_index + 1) * self.chunk_size + self.overlap

    def sequential_plan(self, region_start: int, region_end: int, at_eof: bool) -> ChunkPlan | None:
        """The plan of the chunk just read, or None if it owns no bytes (the stream ended)."""
        index = self.next_index
        own_start = index * self.chunk_size
        own_end = min((index + 1) * self.chunk_size, region_end) if at_eof else (index + 1) * self.chunk_size
        if own_end <= own_start:
            return None
        return ChunkPlan(index, region_start, region_end, own_start, own_end)


def _open_fix(error: OSError) -> str:
    if error.errno == errno.ENOENT:
        return "check the path"
    if error.errno in (errno.EACCES, errno.EPERM):
        return "grant read permission on the file or run as a user who has it"
    if error.errno in (errno.EMFILE, errno.ENFILE):
        return "raise the open-file limit (ulimit -n) or pass fewer --chunks (inputs open at once)"
    return "check the path and its permissions"


def _block_device_size(fd: int) -> int:
    end = os.lseek(fd, 0, os.SEEK_END)
    os.lseek(fd, 0, os.SEEK_SET)
    return end
