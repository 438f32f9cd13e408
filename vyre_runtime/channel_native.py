"""The compiled fast path of a watched channel call (docs/PROTOCOL.md, Watched channels).

A channel call in Python costs ~2 us of interpreter time around a round trip the GPU finishes in
a few: a dozen memoryview stores and loads, the spin loop, the clock. This module compiles a few
dozen lines of C with the system C compiler, once, into the vyre cache directory, and calls them
through ctypes, which releases the GIL while the call spins. The protocol constants are passed as
-D flags from the Python definitions, so the C text spells no protocol number.

No compiler (or a failed build, or VYRE_CHANNEL_NATIVE=0): `load()` returns None and Channel
keeps its Python path, which writes the same words in the same order.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

from vyre_runtime.cache import cache_root
from vyre_runtime.protocol.layout import HINT_MASK, PRIORITY_BITS, SlotState, SlotWord

NATIVE_ENV = "VYRE_CHANNEL_NATIVE"  # "0": never compile, always the Python path
BUILD_TIMEOUT_S = 60.0

# Status codes vyre_channel_call returns besides a SlotState
NOT_EMPTY = -1  # the slot was not EMPTY: a previous call was abandoned; nothing written
TIMED_OUT = -2  # no DONE or FAULT before the deadline; the publication stays in flight

_SOURCE = r"""
#include <stdint.h>
#include <time.h>

struct vyre_channel {
    volatile uint32_t* slot;  /* the slot's 16 words in the mapped image */
    uint32_t tenant;
    uint32_t priority;        /* the PRIORITY word's low bits, PRIORITY_WATCHED included */
    uint32_t seq;             /* the previous call's sequence (mod 2^24) */
    uint32_t reserved;
    int64_t timeout_ns;
    uint32_t results[4];
};

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static inline void relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Publishes one watched call (status last), spins until DONE or FAULT, copies the results into
   c->results, hands the slot back EMPTY and returns the final status; NOT_EMPTY or TIMED_OUT. */
int vyre_channel_call(struct vyre_channel* c, uint32_t opcode, uint32_t a0, uint32_t a1, uint32_t a2) {
    volatile uint32_t* s = c->slot;
    if (__atomic_load_n(&s[ST_WORD], __ATOMIC_ACQUIRE) != ST_EMPTY) return NOT_EMPTY;
    uint32_t seq = (c->seq + 1u) & HINT_MASK;
    /* ARG3 must change where the watcher compares it (mod 2^24): it proves the read */
    if ((s[ARG3_WORD] & HINT_MASK) == seq) seq = (seq + 1u) & HINT_MASK;
    c->seq = seq;
    s[ST_WORD + 1] = opcode;
    s[ST_WORD + 2] = c->tenant;
    s[ST_WORD + 3] = c->priority | seq << PRIORITY_BITS;
    s[ARG3_WORD - 3] = a0;
    s[ARG3_WORD - 2] = a1;
    s[ARG3_WORD - 1] = a2;
    __atomic_thread_fence(__ATOMIC_RELEASE); /* ARG0..2 before the sequence's echo */
    s[ARG3_WORD] = seq;
    for (int w = ARG3_WORD + 1; w < 16; w++) s[w] = 0;
    __atomic_store_n(&s[ST_WORD], ST_PUBLISHED, __ATOMIC_RELEASE); /* the payload, then the status */
    int64_t deadline = 0;
    uint32_t state;
    for (uint32_t n = 1;; n++) {
        state = __atomic_load_n(&s[ST_WORD], __ATOMIC_ACQUIRE);
        if (state >= ST_DONE && state != ST_WAIT_IO) break;
        if ((n & 1023u) == 0) { /* the clock now and then: a spin is ~10-40 ns */
            int64_t t = now_ns();
            if (!deadline) deadline = t + c->timeout_ns;
            else if (t > deadline) return TIMED_OUT;
        }
        relax();
    }
    for (int k = 0; k < 4; k++) c->results[k] = s[RESULT0_WORD + k];
    __atomic_store_n(&s[ST_WORD], ST_EMPTY, __ATOMIC_RELEASE); /* the copies, then the hand-back */
    return (int)state;
}
"""


class ChannelState(ctypes.Structure):
    """struct vyre_channel: one channel's slot and call state, shared with the C call."""

    _fields_ = [
        ("slot", ctypes.c_void_p),
        ("tenant", ctypes.c_uint32),
        ("priority", ctypes.c_uint32),
        ("seq", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32),
        ("timeout_ns", ctypes.c_int64),
        ("results", ctypes.c_uint32 * 4),
    ]


def _defines() -> list[str]:
    values = {
        "ST_WORD": int(SlotWord.STATUS),
        "ARG3_WORD": int(SlotWord.ARG0) + 3,
        "RESULT0_WORD": int(SlotWord.RESULT0),
        "HINT_MASK": f"{HINT_MASK}u",
        "PRIORITY_BITS": f"{PRIORITY_BITS}u",
        "NOT_EMPTY": NOT_EMPTY,
        "TIMED_OUT": TIMED_OUT,
    }
    values |= {f"ST_{state.name}": f"{int(state)}u" for state in SlotState}
    return [f"-D{name}={value}" for name, value in values.items()]


_lock = threading.Lock()
_loaded: dict[str, ctypes._CFuncPtr | None] = {}


def _build(compiler: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        source = Path(scratch) / "channel.c"
        source.write_text(_SOURCE)
        built = Path(scratch) / target.name
        command = [compiler, "-O2", "-shared", "-fPIC", *_defines(), "-o", str(built), str(source)]
        subprocess.run(command, check=True, capture_output=True, timeout=BUILD_TIMEOUT_S)
        os.replace(built, target)  # atomic: another process never loads a half-written library


def load() -> ctypes._CFuncPtr | None:
    """vyre_channel_call, compiled at first use (cached on disk by its source and flags), or None."""
    if os.environ.get(NATIVE_ENV, "1") == "0":
        return None
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not compiler:
        return None
    key = hashlib.sha256("\0".join([_SOURCE, *_defines(), compiler]).encode()).hexdigest()[:24]
    with _lock:
        if key in _loaded:
            return _loaded[key]
        target = cache_root() / "native" / f"vyre_channel_{key}.so"
        function = None
        try:
            # a library we did not build is never loaded: a symlink or a non-regular file at the
            # target (the cache directory's rule, vyre_runtime.cache) is replaced by a fresh build
            if target.is_symlink() or not target.is_file():
                _build(compiler, target)
            function = ctypes.CDLL(str(target)).vyre_channel_call  # CDLL: the GIL is released per call
            function.argtypes = [ctypes.c_void_p] + [ctypes.c_uint32] * 4
            function.restype = ctypes.c_int
        except (OSError, subprocess.SubprocessError, AttributeError):
            function = None  # no working compiler here: the Python path serves
        _loaded[key] = function
        return function


__all__ = ["NATIVE_ENV", "NOT_EMPTY", "TIMED_OUT", "ChannelState", "load"]
