"""io_uring through raw syscalls (425 setup, 426 enter, 427 register) with ctypes; no liburing.

Why no wrapper: ``IORING_REGISTER_BUFFERS`` must accept iovecs that point at arbitrary pinned
memory (an mmap'd arena that CUDA also maps), and the Python wrappers accept only their own
buffer types (see ../shared/design/ANCHORS.md, section C). The vocabulary is liburing's:
``Ring.get_sqe``, ``prep_read_fixed``, ``submit``, ``submit_and_wait``, ``peek_cqe``/``cqe_seen``.

Memory ordering (the ring is shared with the kernel, which may run on another CPU):
- SQ: we write the SQE, then store the SQ tail with release semantics, so the kernel never sees
  a tail that covers a half-written SQE. We read the SQ head (the kernel's) with acquire.
- CQ: we load the CQ tail with acquire, then read the CQEs below it, then store the CQ head with
  release, so the kernel never overwrites a CQE we have not read yet.
On x86-64 (TSO) plain loads are acquire and plain stores are release at the hardware level, and
CPython issues every ctypes load and store in program order, so plain ctypes accesses suffice.
TSO still lets a load pass an earlier store, which matters once: with SQPOLL we store the tail
and then read ``IORING_SQ_NEED_WAKEUP``; liburing puts a full fence there, and so do we
(libatomic's ``atomic_thread_fence``). Without libatomic, ``wait_cqes`` wakes the SQ thread
whenever submitted SQEs are still unconsumed, so a missed wakeup delays work but never loses it.
On aarch64 (weakly ordered) head and tail go through libatomic's ``__atomic_load_4`` (acquire)
and ``__atomic_store_4`` (release); without libatomic io_uring reports itself unavailable there.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import mmap
import os
import platform
import resource
import sys
import time
from collections.abc import Sequence
from enum import IntFlag
from typing import Any

from vyre_runtime.errors import IngestError
from vyre_runtime.ingest.uring_abi import (
    CQE_FORMAT,
    DISABLE_ENV,
    IO_URING_OP_SUPPORTED,
    IORING_ASYNC_CANCEL_ANY,
    IORING_OFF_CQ_RING,
    IORING_OFF_SQ_RING,
    IORING_OFF_SQES,
    IORING_SQ_NEED_WAKEUP,
    MAX_BUFFER_BYTES,
    MAX_ENTRIES,
    MAX_REGISTERED_BUFFERS,
    SQE_FORMAT,
    SYS_IO_URING_ENTER,
    SYS_IO_URING_REGISTER,
    SYS_IO_URING_SETUP,
    U32_MAX,
    U64_MAX,
    EnterFlag,
    Feature,
    IoUringCqe,
    IoUringFilesUpdate,
    IoUringGeteventsArg,
    IoUringParams,
    IoUringProbe,
    IoUringSqe,
    Iovec,
    KernelTimespec,
    Op,
    RegisterOp,
    SetupFlag,
)

# ---- syscalls -----------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)  # our own handle: restype here does not leak elsewhere
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long

_FIXES = {
    ("io_uring_setup", errno.EPERM): "io_uring is disabled (kernel.io_uring_disabled or seccomp); use reader='preadv'",
    ("io_uring_setup", errno.ENOSYS): "io_uring is disabled (kernel.io_uring_disabled or seccomp); use reader='preadv'",
    ("io_uring_setup", errno.EACCES): "io_uring is disabled (kernel.io_uring_disabled or seccomp); use reader='preadv'",
    ("io_uring_setup", errno.ENOMEM): "raise RLIMIT_MEMLOCK (ulimit -l) or use a smaller queue depth",
    ("io_uring_setup", errno.EMFILE): "too many open files: close some or raise RLIMIT_NOFILE (ulimit -n)",
    ("io_uring_setup", errno.EINVAL): "this kernel does not support these ring flags or sizes; use defaults",
    ("mmap", errno.ENOMEM): "raise RLIMIT_MEMLOCK (ulimit -l) or vm.max_map_count, or use a smaller queue depth",
    ("register_buffers", errno.ENOMEM): "raise RLIMIT_MEMLOCK (ulimit -l) or use smaller buffers",
    ("register_buffers", errno.EFAULT): (
        "register anonymous or CUDA-pinned memory (not a file-backed mmap), at most 1 GiB per buffer"
    ),
    ("register_buffers", errno.EOPNOTSUPP): "register anonymous or CUDA-pinned memory, not a file-backed mmap",
    ("register_buffers", errno.EBUSY): "buffers are already registered: call unregister_buffers first",
    ("register_files", errno.EMFILE): "raise RLIMIT_NOFILE (ulimit -n) or register fewer file slots",
    ("register_files", errno.EBUSY): "files are already registered: call unregister_files first",
    ("register_files_update", errno.EBADF): "the file descriptor is not open",
    ("io_uring_enter", errno.EEXIST): (
        "a SINGLE_ISSUER ring was used from another thread: drive each ring from the thread that opened it"
    ),
    ("register_iowq_max_workers", errno.EINVAL): "this kernel has no io-wq worker caps (5.15+); leave them unset",
    ("io_uring_enter", errno.EBUSY): "the completion queue is full: reap completions before submitting more",
    ("io_uring_enter", errno.EAGAIN): "the kernel is out of resources: reap completions and submit fewer reads",
}


def _raise_errno(call: str, code: int, fix: str | None = None) -> None:
    name = errno.errorcode.get(code, str(code))
    error = IngestError(f"{call} failed: {name} ({os.strerror(code)})", fix or _FIXES.get((call, code)))
    error.errno = code
    raise error


def _sys(call: str, number: int, *args: int | ctypes.c_void_p | None) -> int:
    """One syscall; every argument goes as a full register (a bare int would be a 32-bit vararg)."""
    result = _syscall(
        ctypes.c_long(number), *(a if isinstance(a, ctypes.c_void_p) else ctypes.c_long(a or 0) for a in args)
    )
    if result < 0:
        _raise_errno(call, ctypes.get_errno())
    return result


# ---- memory ordering (module docstring) ---------------------------------------------------

_WEAKLY_ORDERED = platform.machine() not in ("x86_64", "AMD64", "i686", "x86")


def _load_libatomic() -> ctypes.CDLL | None:
    path = ctypes.util.find_library("atomic") or "libatomic.so.1"
    try:
        return ctypes.CDLL(path)
    except OSError:
        return None


_libatomic = _load_libatomic()
_ATOMIC_ACQUIRE, _ATOMIC_RELEASE, _ATOMIC_SEQ_CST = 2, 3, 5  # __ATOMIC_* memory orders


def _libatomic_function(name: str, restype: type | None, *argtypes: type) -> Any:
    function = getattr(_libatomic, name, None)  # getattr: a "__name" in a class body would be mangled
    if function is not None:
        function.restype, function.argtypes = restype, list(argtypes)
    return function


_fence = _libatomic_function("atomic_thread_fence", None, ctypes.c_int)
_load_acquire = _libatomic_function("__atomic_load_4", ctypes.c_uint32, ctypes.c_void_p, ctypes.c_int)
_store_release = _libatomic_function("__atomic_store_4", None, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int)


class _Word:
    """A u32 the kernel shares with us: ``load()`` is acquire, ``store(v)`` release (see the module
    docstring): plain ctypes accesses on x86-64, libatomic calls where the CPU is weakly ordered."""

    __slots__ = ("load", "store")

    def __init__(self, address: int, weakly_ordered: bool | None = None) -> None:
        if _WEAKLY_ORDERED if weakly_ordered is None else weakly_ordered:
            self.load = lambda: _load_acquire(address, _ATOMIC_ACQUIRE)
            self.store = lambda value: _store_release(address, value, _ATOMIC_RELEASE)
        else:
            cell = ctypes.c_uint32.from_address(address)
            self.load = lambda: cell.value
            self.store = lambda value: setattr(cell, "value", value)


def full_fence() -> None:
    """A sequentially consistent fence (a no-op where libatomic is missing; see wait_cqes)."""
    if _fence is not None:
        _fence(_ATOMIC_SEQ_CST)


def _address_of(region: mmap.mmap) -> int:
    anchor = ctypes.c_char.from_buffer(region)  # a transient export; released before close()
    address = ctypes.addressof(anchor)
    del anchor
    return address


# mmap.mmap keeps a dup of the fd (two extra fds per ring) unless told not to (Python 3.13+).
_NO_DUP: dict[str, bool] = {"trackfd": False} if sys.version_info >= (3, 13) else {}


# Setup flags Ring(flags=...) takes (sqpoll and cq_entries have their own arguments): the ones
# that change only how completions reach the submitting task, which the Ring handles.
_EXTRA_SETUP_FLAGS = SetupFlag.SUBMIT_ALL | SetupFlag.COOP_TASKRUN | SetupFlag.SINGLE_ISSUER | SetupFlag.DEFER_TASKRUN


def _is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


# ---- the ring ------------------------------------------------------------------------------


class Ring:
    """One io_uring instance: SQ and CQ rings and the SQE array mapped into this process.

    ``entries`` (a power of two, at most 32768) SQEs; the CQ holds ``cq_entries`` (default twice
    the SQ, the kernel's choice). ``sqpoll`` starts a kernel thread that polls the SQ and sleeps
    after ``sq_thread_idle_ms`` idle milliseconds. Not thread-safe: one thread drives a ring.
    """

    def __init__(
        self,
        entries: int = 64,
        *,
        sqpoll: bool = False,
        sq_thread_idle_ms: int = 2000,
        cq_entries: int | None = None,
        flags: int = 0,
    ) -> None:
        self.fd = -1
        self._maps: list[mmap.mmap] = []
        if not (_is_power_of_two(entries) and entries <= MAX_ENTRIES):
            raise IngestError(f"ring entries must be a power of two in 1..{MAX_ENTRIES}, got {entries}")
        if flags & ~_EXTRA_SETUP_FLAGS:
            raise IngestError(
                f"setup flags {SetupFlag(flags & ~_EXTRA_SETUP_FLAGS)!r} are not supported by Ring(flags=...)",
                f"pass only {' | '.join(str(flag.name) for flag in SetupFlag if flag & _EXTRA_SETUP_FLAGS)}",
            )
        if flags & SetupFlag.DEFER_TASKRUN and not flags & SetupFlag.SINGLE_ISSUER:
            raise IngestError("DEFER_TASKRUN needs SINGLE_ISSUER", "pass SetupFlag.SINGLE_ISSUER | DEFER_TASKRUN")
        params = IoUringParams()
        params.flags = flags
        if sqpoll:
            params.flags |= SetupFlag.SQPOLL
            params.sq_thread_idle = sq_thread_idle_ms
        if cq_entries is not None:
            if not (_is_power_of_two(cq_entries) and entries <= cq_entries <= 2 * MAX_ENTRIES):
                raise IngestError(
                    f"cq_entries must be a power of two in {entries}..{2 * MAX_ENTRIES}, got {cq_entries}"
                )
            params.flags |= SetupFlag.CQSIZE
            params.cq_entries = cq_entries
        try:
            self.fd = _sys("io_uring_setup", SYS_IO_URING_SETUP, entries, ctypes.c_void_p(ctypes.addressof(params)))
        except IngestError as exc:
            if sqpoll and exc.errno == errno.EPERM:
                exc.fix = "SQPOLL needs CAP_SYS_NICE on kernels before 5.13; open the ring without sqpoll"
            raise
        try:
            self._map_rings(params)
        except BaseException:
            self.close()
            raise
        self.sqpoll = sqpoll
        self.setup_flags = SetupFlag(params.flags)
        # DEFER_TASKRUN: completions are posted only inside io_uring_enter(GETEVENTS), so looking
        # at the CQ tail alone would never see them; cq_ready() runs that work when the CQ looks empty
        self._deferred = bool(flags & SetupFlag.DEFER_TASKRUN)
        self.features = Feature(params.features)
        self.sq_entries, self.cq_entries = params.sq_entries, params.cq_entries
        self._sq_tail = 0  # our next SQE; the kernel sees it once submit() stores the SQ tail
        self._cq_head_local = self._cq_head.load()
        self._ext_arg = bool(self.features & Feature.EXT_ARG)

    def _map_rings(self, params: IoUringParams) -> None:
        sq_off, cq_off = params.sq_off, params.cq_off
        sq_size = sq_off.array + params.sq_entries * 4
        cq_size = cq_off.cqes + params.cq_entries * CQE_FORMAT.size
        single = bool(params.features & Feature.SINGLE_MMAP)
        if single:
            sq_size = cq_size = max(sq_size, cq_size)
        sq_ring = self._map(sq_size, IORING_OFF_SQ_RING)
        cq_ring = sq_ring if single else self._map(cq_size, IORING_OFF_CQ_RING)
        sqes = self._map(params.sq_entries * SQE_FORMAT.size, IORING_OFF_SQES)
        sq, cq, self._sqes_address = _address_of(sq_ring), _address_of(cq_ring), _address_of(sqes)
        self._sq_head, self._sq_tail_word = _Word(sq + sq_off.head), _Word(sq + sq_off.tail)
        self._sq_flags = ctypes.c_uint32.from_address(sq + sq_off.flags)
        self._sq_mask = ctypes.c_uint32.from_address(sq + sq_off.ring_mask).value
        self._cq_head, self._cq_tail = _Word(cq + cq_off.head), _Word(cq + cq_off.tail)
        self._cq_mask = ctypes.c_uint32.from_address(cq + cq_off.ring_mask).value
        self._cq_overflow = ctypes.c_uint32.from_address(cq + cq_off.overflow)
        # The SQ array indirection stays the identity, as liburing sets it up: SQE i is slot i.
        array = (ctypes.c_uint32 * params.sq_entries).from_address(sq + sq_off.array)
        array[:] = range(params.sq_entries)
        self._sqe_memory = memoryview(
            (ctypes.c_char * (params.sq_entries * SQE_FORMAT.size)).from_address(self._sqes_address)
        )
        self._cqe_memory = memoryview(
            (ctypes.c_char * (params.cq_entries * CQE_FORMAT.size)).from_address(cq + cq_off.cqes)
        )

    def _map(self, length: int, offset: int) -> mmap.mmap:
        try:
            region = mmap.mmap(self.fd, length, mmap.MAP_SHARED | mmap.MAP_POPULATE, offset=offset, **_NO_DUP)
        except OSError as exc:
            _raise_errno("mmap", exc.errno or errno.ENOMEM)
        self._maps.append(region)
        return region

    # ---- lifetime --------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self.fd < 0

    def close(self) -> None:
        """Unmap the rings and close the ring fd, exactly once. The kernel cancels or finishes
        in-flight requests on its own time: memory they target must outlive them (see readers)."""
        self._sqe_memory = self._cqe_memory = None  # type: ignore[assignment]
        maps, self._maps = self._maps, []
        for region in reversed(maps):
            if not region.closed:
                region.close()
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    def __enter__(self) -> Ring:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def _check_open(self) -> None:
        if self.fd < 0:
            raise IngestError("the io_uring ring is closed", "open a new Ring")

    # ---- submission ------------------------------------------------------------------------

    def sq_space_left(self) -> int:
        self._check_open()
        return self.sq_entries - ((self._sq_tail - self._sq_head.load()) & U32_MAX)

    def _next_sqe_offset(self) -> int:
        self._check_open()
        if (self._sq_tail - self._sq_head.load()) & U32_MAX >= self.sq_entries:
            raise IngestError(
                f"the submission queue is full ({self.sq_entries} entries)", "submit() before preparing more"
            )
        index = self._sq_tail & self._sq_mask
        self._sq_tail = (self._sq_tail + 1) & U32_MAX
        return index * SQE_FORMAT.size

    def get_sqe(self) -> IoUringSqe:
        """The next free SQE, zeroed, as a view into the ring (for ops without a prep_* method)."""
        offset = self._next_sqe_offset()
        ctypes.memset(self._sqes_address + offset, 0, SQE_FORMAT.size)
        return IoUringSqe.from_address(self._sqes_address + offset)

    def _prep(
        self, op: int, fd: int, address: int, length: int, offset: int, user_data: int, flags: int, buf: int
    ) -> None:
        SQE_FORMAT.pack_into(
            self._sqe_memory, self._next_sqe_offset(), op, flags, 0, fd, offset & U64_MAX, address, length, 0,
            user_data, buf, 0, 0, 0, 0,
        )  # fmt: skip

    def prep_read(self, fd: int, address: int, length: int, offset: int, user_data: int, sqe_flags: int = 0) -> None:
        """IORING_OP_READ: ``length`` bytes at ``offset`` (-1: the file position) into ``address``.
        Like liburing's get_sqe + prep_read + sqe_set_data in one call."""
        self._prep(Op.READ, fd, address, length, offset, user_data, sqe_flags, 0)

    def prep_read_fixed(
        self, fd: int, address: int, length: int, offset: int, buf_index: int, user_data: int, sqe_flags: int = 0
    ) -> None:
        """IORING_OP_READ_FIXED: like prep_read, into registered buffer ``buf_index`` (the range
        [address, address + length) must lie inside it)."""
        self._prep(Op.READ_FIXED, fd, address, length, offset, user_data, sqe_flags, buf_index)

    def prep_readv(
        self, fd: int, iovecs_address: int, count: int, offset: int, user_data: int, sqe_flags: int = 0
    ) -> None:
        """IORING_OP_READV: ``count`` struct iovec at ``iovecs_address`` (kept alive until submitted;
        FEAT_SUBMIT_STABLE lets them go once submit() returns)."""
        self._prep(Op.READV, fd, iovecs_address, count, offset, user_data, sqe_flags, 0)

    def prep_nop(self, user_data: int, sqe_flags: int = 0) -> None:
        self._prep(Op.NOP, -1, 0, 0, 0, user_data, sqe_flags, 0)

    def prep_cancel_all(self, user_data: int) -> None:
        """IORING_OP_ASYNC_CANCEL with IORING_ASYNC_CANCEL_ANY: cancel every request in flight."""
        SQE_FORMAT.pack_into(
            self._sqe_memory, self._next_sqe_offset(), Op.ASYNC_CANCEL, 0, 0, -1, 0, 0, 0, IORING_ASYNC_CANCEL_ANY,
            user_data, 0, 0, 0, 0, 0,
        )  # fmt: skip

    def _flush(self) -> int:
        """Publish prepared SQEs: the tail store is release (after the SQE writes). Returns how
        many SQEs the kernel has not consumed yet."""
        self._sq_tail_word.store(self._sq_tail)
        return (self._sq_tail - self._sq_head.load()) & U32_MAX

    def _wakeup_flag(self) -> int:
        if not self.sqpoll:
            return 0
        full_fence()  # store (tail) -> load (flags): TSO may reorder these; liburing fences here
        return EnterFlag.SQ_WAKEUP if self._sq_flags.value & IORING_SQ_NEED_WAKEUP else 0

    def enter(
        self, to_submit: int, min_complete: int, flags: int, arg: int = 0, arg_size: int = 0, tolerate: int = 0
    ) -> int:
        """The raw io_uring_enter(2); EINTR is retried (a Python signal handler runs in between);
        the errno ``tolerate`` comes back as its negative instead of raising."""
        self._check_open()
        while True:
            result = _syscall(
                ctypes.c_long(SYS_IO_URING_ENTER), ctypes.c_long(self.fd), ctypes.c_long(to_submit),
                ctypes.c_long(min_complete), ctypes.c_long(flags), ctypes.c_void_p(arg), ctypes.c_long(arg_size),
            )  # fmt: skip
            if result >= 0:
                return result
            code = ctypes.get_errno()
            if code == tolerate:
                return -code
            if code != errno.EINTR:
                _raise_errno("io_uring_enter", code)

    def submit(self) -> int:
        """Hand prepared SQEs to the kernel; returns how many it took (with SQPOLL: how many were
        published; the SQ thread takes them, woken if it sleeps)."""
        self._check_open()
        pending = self._flush()
        if self.sqpoll:
            wakeup = self._wakeup_flag()
            if wakeup:
                self.enter(0, 0, wakeup)
            return pending
        return self.enter(pending, 0, 0) if pending else 0

    def submit_and_wait(self, wait_nr: int) -> int:
        self._check_open()
        pending = self._flush()
        if self.sqpoll:
            self.enter(0, wait_nr, EnterFlag.GETEVENTS | self._wakeup_flag())
            return pending
        return self.enter(pending, wait_nr, EnterFlag.GETEVENTS)

    # ---- completion ------------------------------------------------------------------------

    def cq_ready(self) -> int:
        self._check_open()
        ready = (self._cq_tail.load() - self._cq_head_local) & U32_MAX
        if ready or not self._deferred:
            return ready
        self.enter(0, 0, EnterFlag.GETEVENTS)  # post the deferred completions (never blocks: min 0)
        return (self._cq_tail.load() - self._cq_head_local) & U32_MAX

    def peek_cqe(self) -> IoUringCqe | None:
        """The oldest unseen CQE (a copy), or None; call cqe_seen() once it is handled."""
        if self.cq_ready() == 0:
            return None
        return IoUringCqe.from_buffer_copy(self._cqe_memory, (self._cq_head_local & self._cq_mask) * CQE_FORMAT.size)

    def cqe_seen(self) -> None:
        self._check_open()
        self._cq_head_local = (self._cq_head_local + 1) & U32_MAX
        self._cq_head.store(self._cq_head_local)  # release: the kernel may reuse the entry now

    def reap(self) -> list[tuple[int, int, int]]:
        """Every CQE ready now as (user_data, res, flags); advances the CQ head once."""
        if self._deferred:
            self.cq_ready()  # runs deferred completion work when the CQ looks empty
        self._check_open()
        head, tail = self._cq_head_local, self._cq_tail.load()  # acquire: entries below tail are whole
        if head == tail:
            return []
        mask, memory, unpack = self._cq_mask, self._cqe_memory, CQE_FORMAT.unpack_from
        entries = [unpack(memory, ((head + i) & mask) * 16) for i in range((tail - head) & U32_MAX)]
        self._cq_head_local = tail
        self._cq_head.store(tail)  # release, after the reads above
        return entries

    @property
    def cq_overflow(self) -> int:
        """CQEs the kernel could not post (with FEAT_NODROP it holds them back instead)."""
        self._check_open()
        return self._cq_overflow.value

    def wait_cqes(self, count: int, timeout: float | None = None) -> int:
        """Block until ``count`` CQEs are ready or ``timeout`` seconds pass; returns how many are
        ready. Never waits past the timeout (EXT_ARG timespec; without it, short sleeps)."""
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
        nap = 0.00005
        while True:
            ready = self.cq_ready()
            if ready >= count:
                return ready
            flags = EnterFlag.GETEVENTS
            if self.sqpoll and (self._sq_tail - self._sq_head.load()) & U32_MAX:
                flags |= EnterFlag.SQ_WAKEUP  # unconsumed SQEs: make sure the SQ thread is awake
            if deadline is None:
                self.enter(0, count, flags)
                continue
            remaining = deadline - time.monotonic()
            if self._ext_arg:
                spec = KernelTimespec(int(max(remaining, 0.0)), int(max(remaining, 0.0) % 1.0 * 1e9))
                arg = IoUringGeteventsArg(0, 8, 0, ctypes.addressof(spec))
                address, size = ctypes.addressof(arg), ctypes.sizeof(arg)
                self.enter(0, count, flags | EnterFlag.EXT_ARG, address, size, tolerate=errno.ETIME)
            else:
                self.enter(0, 0, flags)  # runs pending task work without blocking
                if self.cq_ready() < count and remaining > 0:
                    time.sleep(min(nap, remaining))
                    nap = min(nap * 2, 0.001)
            if time.monotonic() >= deadline:
                return self.cq_ready()

    # ---- registration ----------------------------------------------------------------------

    def _register(self, call: str, op: int, arg: int, count: int) -> int:
        self._check_open()
        return _sys(call, SYS_IO_URING_REGISTER, self.fd, op, ctypes.c_void_p(arg or None), count)

    def register_buffers(self, buffers: Sequence[tuple[int, int]]) -> None:
        """IORING_REGISTER_BUFFERS over (address, length) pairs: any pinnable memory (anonymous
        mmap, malloc, CUDA pinned), at most 1 GiB each and 16384 in all. The kernel pins the pages
        (RLIMIT_MEMLOCK applies without CAP_IPC_LOCK)."""
        if not 0 < len(buffers) <= MAX_REGISTERED_BUFFERS:
            raise IngestError(f"register 1..{MAX_REGISTERED_BUFFERS} buffers, got {len(buffers)}")
        iovecs = (Iovec * len(buffers))()
        for i, (address, length) in enumerate(buffers):
            if address <= 0 or not 0 < length <= MAX_BUFFER_BYTES:
                raise IngestError(
                    f"buffer {i} (address {address:#x}, {length} bytes) is not registrable",
                    "give a non-null address and 1 byte to 1 GiB per buffer; split a larger arena into several",
                )
            iovecs[i] = Iovec(address, length)
        self._register("register_buffers", RegisterOp.REGISTER_BUFFERS, ctypes.addressof(iovecs), len(buffers))

    def unregister_buffers(self) -> None:
        self._register("unregister_buffers", RegisterOp.UNREGISTER_BUFFERS, 0, 0)

    def register_files(self, fds: Sequence[int]) -> None:
        """IORING_REGISTER_FILES; -1 entries leave a slot empty (a sparse table to fill later)."""
        table = (ctypes.c_int32 * len(fds))(*fds)
        self._register("register_files", RegisterOp.REGISTER_FILES, ctypes.addressof(table), len(fds))

    def register_files_update(self, offset: int, fds: Sequence[int]) -> None:
        """IORING_REGISTER_FILES_UPDATE: put ``fds`` into slots offset.. (-1 empties a slot). The
        table keeps its own reference to each file, so the caller may close its fd afterwards."""
        table = (ctypes.c_int32 * len(fds))(*fds)
        update = IoUringFilesUpdate(offset, 0, ctypes.addressof(table))
        self._register("register_files_update", RegisterOp.REGISTER_FILES_UPDATE, ctypes.addressof(update), len(fds))

    def unregister_files(self) -> None:
        self._register("unregister_files", RegisterOp.UNREGISTER_FILES, 0, 0)

    def register_iowq_max_workers(self, bound: int = 0, unbound: int = 0) -> tuple[int, int]:
        """IORING_REGISTER_IOWQ_MAX_WORKERS: cap the io-wq workers of this ring's submitting task
        (the SQ thread with SQPOLL): ``bound`` (work that finishes: the kernel's default cap is
        min(SQ entries, 4 x CPUs)) and ``unbound`` (work that may wait forever, like a pipe; the
        default is RLIMIT_NPROC); 0 leaves a cap as it is. Returns the caps in force before. The
        caps belong to the task's io-wq, shared by every ring that task submits to, and outlive
        the ring."""
        if not (0 <= bound <= U32_MAX and 0 <= unbound <= U32_MAX):
            raise IngestError(f"io-wq worker caps must be 0..{U32_MAX}, got {bound}, {unbound}")
        caps = (ctypes.c_uint32 * 2)(bound, unbound)
        self._register("register_iowq_max_workers", RegisterOp.REGISTER_IOWQ_MAX_WORKERS, ctypes.addressof(caps), 2)
        return int(caps[0]), int(caps[1])

    def probe(self) -> frozenset[int]:
        """IORING_REGISTER_PROBE: the opcodes this kernel supports."""
        probe = IoUringProbe()
        self._register("register_probe", RegisterOp.REGISTER_PROBE, ctypes.addressof(probe), 256)
        return frozenset(op.op for op in probe.ops[: probe.ops_len] if op.flags & IO_URING_OP_SUPPORTED)


# ---- availability --------------------------------------------------------------------------


_AVAILABLE = (True, "io_uring is available")
_available_here: list[bool] = []


def _kernel_status() -> tuple[bool, str]:
    if _available_here:  # only success is remembered: EMFILE or ENOMEM may pass
        return _AVAILABLE
    if platform.system() != "Linux":
        return False, f"io_uring is Linux-only (this is {platform.system()})"
    if platform.machine() not in ("x86_64", "aarch64", "arm64"):
        return False, f"io_uring syscall numbers are only wired for x86_64 and aarch64 (this is {platform.machine()})"
    if _WEAKLY_ORDERED and _load_acquire is None:
        return False, "on aarch64 the ring needs libatomic.so.1 for acquire/release ordering; install libatomic1"
    try:
        with Ring(2):
            pass
    except IngestError as exc:
        return False, exc.one_line()
    _available_here.append(True)
    return _AVAILABLE


def io_uring_status() -> tuple[bool, str]:
    """Whether a ring can be set up here, and why not (``VYRE_DISABLE_IO_URING=1`` says no)."""
    if os.environ.get(DISABLE_ENV, "") not in ("", "0"):
        return False, f"io_uring is disabled by {DISABLE_ENV}={os.environ[DISABLE_ENV]}"
    return _kernel_status()


def _names(flags: int, enum: type[IntFlag]) -> list[str]:
    known = {member.value: member.name for member in enum}
    return [known.get(1 << bit, f"bit{bit}") for bit in range(32) if flags >> bit & 1]


def probe_features() -> dict[str, Any]:
    """What ``vyre doctor`` reports: features, the ops we need, SQPOLL, registered buffers, limits."""
    available, reason = io_uring_status()
    report: dict[str, Any] = {"available": available, "reason": reason, "kernel": platform.release()}
    memlock = resource.getrlimit(resource.RLIMIT_MEMLOCK)[0]
    report["memlock_limit"] = "unlimited" if memlock == resource.RLIM_INFINITY else memlock
    if not available:
        return report
    with Ring(8) as ring:
        ops = ring.probe()
        report["features"] = _names(ring.features, Feature)
        report["features_mask"] = int(ring.features)
        report["ext_arg"] = bool(ring.features & Feature.EXT_ARG)
        report["ops_supported"] = len(ops)
        report["read"] = Op.READ in ops
        report["read_fixed"] = Op.READ_FIXED in ops
        report["async_cancel"] = Op.ASYNC_CANCEL in ops
        try:
            ring.register_iowq_max_workers(0, 0)  # 0, 0: reads the caps, changes none
            report["iowq_max_workers"] = True
        except IngestError as exc:
            report["iowq_max_workers"] = exc.one_line()
        page = mmap.mmap(-1, mmap.PAGESIZE)
        try:
            ring.register_buffers([(_address_of(page), mmap.PAGESIZE)])
            ring.unregister_buffers()
            report["registered_buffers"] = True
        except IngestError as exc:
            report["registered_buffers"] = exc.one_line()
        finally:
            page.close()
    try:
        with Ring(2, sqpoll=True, sq_thread_idle_ms=10):
            report["sqpoll"] = True
    except IngestError as exc:
        report["sqpoll"] = exc.one_line()
    report["setup_flags"] = [flag.name for flag in _OPTIONAL_SETUP_FLAGS if _accepts(flag)]
    return report


# Setup flags newer kernels take, each with what it needs alongside (DEFER_TASKRUN: SINGLE_ISSUER).
_OPTIONAL_SETUP_FLAGS = (SetupFlag.COOP_TASKRUN, SetupFlag.SINGLE_ISSUER, SetupFlag.DEFER_TASKRUN)


def _accepts(flag: SetupFlag) -> bool:
    """Whether this kernel sets up a ring with ``flag`` (EINVAL: it does not know it)."""
    needs = SetupFlag.SINGLE_ISSUER if flag == SetupFlag.DEFER_TASKRUN else 0
    try:
        with Ring(2, flags=flag | needs):
            return True
    except IngestError:
        return False
