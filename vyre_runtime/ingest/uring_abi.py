"""The io_uring ABI as Python sees it: syscall numbers, mmap offsets, limits, the operation and
flag numbers (liburing's names), and ctypes mirrors of the kernel's structures
(include/uapi/linux/io_uring.h), checked at import: a wrong mirror would corrupt memory the
kernel shares with us, so a mismatch refuses to import. `uring.py` drives the ring with them.
"""

from __future__ import annotations

import ctypes
import struct
from enum import IntEnum, IntFlag

SYS_IO_URING_SETUP = 425  # the same numbers on x86-64 and aarch64 (the unified syscall table)
SYS_IO_URING_ENTER = 426
SYS_IO_URING_REGISTER = 427

IORING_OFF_SQ_RING = 0
IORING_OFF_CQ_RING = 0x8000000
IORING_OFF_SQES = 0x10000000

MAX_ENTRIES = 32768  # IORING_MAX_ENTRIES
MAX_REGISTERED_BUFFERS = 1 << 14  # IORING_MAX_REG_BUFFERS
MAX_BUFFER_BYTES = 1 << 30  # the kernel refuses a registered buffer over 1 GiB (io_buffer_validate)
IO_URING_OP_SUPPORTED = 1
DISABLE_ENV = "VYRE_DISABLE_IO_URING"


class Op(IntEnum):
    """SQE opcodes we use (enum io_uring_op). READ_FIXED is 4; 22 is plain READ (the seed's bug)."""

    NOP = 0
    READV = 1
    READ_FIXED = 4
    ASYNC_CANCEL = 14
    READ = 22


class SetupFlag(IntFlag):
    IOPOLL = 1 << 0
    SQPOLL = 1 << 1
    SQ_AFF = 1 << 2
    CQSIZE = 1 << 3
    CLAMP = 1 << 4
    ATTACH_WQ = 1 << 5
    R_DISABLED = 1 << 6
    SUBMIT_ALL = 1 << 7
    COOP_TASKRUN = 1 << 8  # completions do not interrupt the submitting task (no IPI); 5.19+
    TASKRUN_FLAG = 1 << 9
    SQE128 = 1 << 10
    CQE32 = 1 << 11
    SINGLE_ISSUER = 1 << 12  # one task submits; 6.0+
    DEFER_TASKRUN = 1 << 13  # completion work runs only in io_uring_enter(GETEVENTS); needs SINGLE_ISSUER; 6.1+


class SqeFlag(IntFlag):
    FIXED_FILE = 1 << 0  # sqe.fd is an index into the registered file table
    IO_DRAIN = 1 << 1
    IO_LINK = 1 << 2
    IO_HARDLINK = 1 << 3
    ASYNC = 1 << 4  # go straight to an io-wq worker: buffered reads copy in parallel


class EnterFlag(IntFlag):
    GETEVENTS = 1 << 0
    SQ_WAKEUP = 1 << 1
    SQ_WAIT = 1 << 2
    EXT_ARG = 1 << 3


IORING_SQ_NEED_WAKEUP = 1 << 0
IORING_ASYNC_CANCEL_ANY = 1 << 2


class Feature(IntFlag):
    """IORING_FEAT_* bits the kernel reports in io_uring_params.features."""

    SINGLE_MMAP = 1 << 0
    NODROP = 1 << 1
    SUBMIT_STABLE = 1 << 2
    RW_CUR_POS = 1 << 3
    CUR_PERSONALITY = 1 << 4
    FAST_POLL = 1 << 5
    POLL_32BITS = 1 << 6
    SQPOLL_NONFIXED = 1 << 7
    EXT_ARG = 1 << 8
    NATIVE_WORKERS = 1 << 9
    RSRC_TAGS = 1 << 10
    CQE_SKIP = 1 << 11
    LINKED_FILE = 1 << 12
    REG_REG_RING = 1 << 13
    RECVSEND_BUNDLE = 1 << 14
    MIN_TIMEOUT = 1 << 15
    RW_ATTR = 1 << 16
    NO_IOWAIT = 1 << 17


class RegisterOp(IntEnum):
    REGISTER_BUFFERS = 0
    UNREGISTER_BUFFERS = 1
    REGISTER_FILES = 2
    UNREGISTER_FILES = 3
    REGISTER_FILES_UPDATE = 6
    REGISTER_PROBE = 8
    REGISTER_IOWQ_MAX_WORKERS = 19  # caps on io-wq workers [bound, unbound] of the calling task; 5.15+


# ---- the kernel's structures (include/uapi/linux/io_uring.h), checked below -------------------


class IoSqringOffsets(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint32) for name in ("head", "tail", "ring_mask", "ring_entries", "flags")] + [
        ("dropped", ctypes.c_uint32),
        ("array", ctypes.c_uint32),
        ("resv1", ctypes.c_uint32),
        ("user_addr", ctypes.c_uint64),
    ]


class IoCqringOffsets(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint32) for name in ("head", "tail", "ring_mask", "ring_entries", "overflow")] + [
        ("cqes", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("resv1", ctypes.c_uint32),
        ("user_addr", ctypes.c_uint64),
    ]


class IoUringParams(ctypes.Structure):
    _fields_ = [
        ("sq_entries", ctypes.c_uint32),
        ("cq_entries", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("sq_thread_cpu", ctypes.c_uint32),
        ("sq_thread_idle", ctypes.c_uint32),
        ("features", ctypes.c_uint32),
        ("wq_fd", ctypes.c_uint32),
        ("resv", ctypes.c_uint32 * 3),
        ("sq_off", IoSqringOffsets),
        ("cq_off", IoCqringOffsets),
    ]


class IoUringSqe(ctypes.Structure):
    """The 64-byte SQE; each union is named after the member a read uses."""

    _fields_ = [
        ("opcode", ctypes.c_uint8),
        ("flags", ctypes.c_uint8),
        ("ioprio", ctypes.c_uint16),
        ("fd", ctypes.c_int32),
        ("off", ctypes.c_uint64),
        ("addr", ctypes.c_uint64),
        ("len", ctypes.c_uint32),
        ("rw_flags", ctypes.c_uint32),  # also cancel_flags
        ("user_data", ctypes.c_uint64),
        ("buf_index", ctypes.c_uint16),
        ("personality", ctypes.c_uint16),
        ("file_index", ctypes.c_uint32),
        ("addr3", ctypes.c_uint64),
        ("pad2", ctypes.c_uint64),
    ]


class IoUringCqe(ctypes.Structure):
    _fields_ = [("user_data", ctypes.c_uint64), ("res", ctypes.c_int32), ("flags", ctypes.c_uint32)]


class Iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class IoUringFilesUpdate(ctypes.Structure):
    _fields_ = [("offset", ctypes.c_uint32), ("resv", ctypes.c_uint32), ("fds", ctypes.c_uint64)]


class KernelTimespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_int64), ("tv_nsec", ctypes.c_int64)]


class IoUringGeteventsArg(ctypes.Structure):
    _fields_ = [
        ("sigmask", ctypes.c_uint64),
        ("sigmask_sz", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
        ("ts", ctypes.c_uint64),
    ]


class IoUringProbeOp(ctypes.Structure):
    _fields_ = [
        ("op", ctypes.c_uint8),
        ("resv", ctypes.c_uint8),
        ("flags", ctypes.c_uint16),
        ("resv2", ctypes.c_uint32),
    ]


class IoUringProbe(ctypes.Structure):
    _fields_ = [
        ("last_op", ctypes.c_uint8),
        ("ops_len", ctypes.c_uint8),
        ("resv", ctypes.c_uint16),
        ("resv2", ctypes.c_uint32 * 3),
        ("ops", IoUringProbeOp * 256),
    ]


# One SQE in one struct.pack_into call (the hot path); same layout as IoUringSqe.
SQE_FORMAT = struct.Struct("<BBHiQQIIQHHIQQ")
CQE_FORMAT = struct.Struct("<QiI")
U64_MAX = 0xFFFF_FFFF_FFFF_FFFF
U32_MAX = 0xFFFF_FFFF

# Layout self-check: a wrong mirror would corrupt kernel-shared memory, so refuse to import.
for _structure, _size in (
    (IoSqringOffsets, 40),
    (IoCqringOffsets, 40),
    (IoUringParams, 120),
    (IoUringSqe, 64),
    (IoUringCqe, 16),
    (Iovec, 16),
    (IoUringFilesUpdate, 16),
    (IoUringGeteventsArg, 24),
    (IoUringProbe, 16 + 8 * 256),
):
    assert ctypes.sizeof(_structure) == _size, (_structure.__name__, ctypes.sizeof(_structure))
assert SQE_FORMAT.size == 64 and CQE_FORMAT.size == 16
assert IoUringSqe.user_data.offset == 32 and IoUringSqe.buf_index.offset == 40
