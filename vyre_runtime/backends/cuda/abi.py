"""The CUDA backend's device-side records, defined once as NumPy structured dtypes.

The host fills these records and a slot's u32 handles select them. PROGRAM records live in device
memory (the host keeps a copy and uploads a record when it changes: every run reads its program's
record, and over PCIe that read was a round trip per run); the per-run records (CONTEXT, REGION,
FUSED_RUN) and the rest live in host-mapped memory, written by the host for each run. The
generated header (header.py) turns each dtype into a C struct with the same field order, sizes
and offsets, and a static_assert per offset, so host and kernel cannot disagree.

Tables are arrays of records indexed by ``handle % capacity``; every record starts with the
handle it holds, so the kernel detects a stale or unknown handle (FAULT BAD_HANDLE) instead of
reading someone else's record.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np

from vyre_runtime.protocol.opcodes import MAX_FUSED_MEMBERS
from vyre_runtime.vir0.isa import MAX_BINDINGS

# A read-only table of a program: bytes in device memory.
TABLE = np.dtype([("pointer", "<u8"), ("length", "<u4"), ("dfa_states", "<u4")], align=True)

# An output binding declaration; `global_pointer` is the persistent buffer of a GLOBAL binding.
BINDING = np.dtype(
    [("words", "<u4"), ("scope", "<u4"), ("init", "<u4"), ("reserved", "<u4"), ("global_pointer", "<u8")],
    align=True,
)

# A registered program: code and tables in device memory, bindings inline.
PROGRAM = np.dtype(
    [
        ("handle", "<u4"),
        ("instructions", "<u4"),
        ("registers", "<u4"),
        ("emit_words", "<u4"),
        ("fuel", "<u4"),
        ("lanes", "<u4"),
        ("table_count", "<u4"),
        ("binding_count", "<u4"),
        ("jit_id", "<u4"),  # the loaded module's native function for this code (jit.py); 0: interpret
        ("reserved", "<u4"),
        ("code", "<u8"),  # instructions, 8 bytes each, exactly as in the container
        ("tables", "<u8"),  # TABLE[table_count]
        ("bindings", BINDING, (MAX_BINDINGS,)),
    ],
    align=True,
)

# One run's parameters (host-written) and results (device-written), in host-mapped memory.
CONTEXT = np.dtype(
    [
        ("handle", "<u4"),
        ("fuel", "<u4"),  # 0: the program's default
        ("emit_capacity", "<u4"),
        ("emitted", "<u4"),  # device: records written (atomic)
        ("dropped", "<u4"),  # device: records refused (atomic)
        ("fault_lane", "<u4"),  # device: lowest faulting lane, 0xFFFFFFFF if none
        ("fault_code", "<u4"),
        ("fault_pc", "<u4"),
        ("fault_detail", "<u4"),
        ("lanes", "<u4"),  # device: lanes the run used
        ("path", "<u4"),  # device: RunPath the run took
        ("instructions", "<u8"),  # device: lane-instructions executed (fuel consumed)
        ("records", "<u8"),  # u32[emit_capacity * emit_words]
        ("outputs", "<u8", (MAX_BINDINGS,)),  # u32 buffer per RUN binding (host pre-fills init)
    ],
    align=True,
)


class RunPath(IntEnum):
    """How the device executed a run (CONTEXT.path): the truth behind Megakernel.stats()'s
    per-program paths, written by the kernel rather than assumed by the host."""

    NOT_RUN = 0  # the slot faulted before the program started (a handle or an argument)
    INTERPRETED = 1
    JIT = 2


# A data region the kernel may read: device memory or host-mapped memory.
REGION = np.dtype([("handle", "<u4"), ("reserved", "<u4"), ("pointer", "<u8"), ("length", "<u8")], align=True)

RECORDS = {"Table": TABLE, "Binding": BINDING, "Program": PROGRAM, "Context": CONTEXT, "Region": REGION}

NO_FAULT_LANE = 0xFFFFFFFF

# A DFA table registered for the DFA_STEP built-in, in device memory.
DFA = np.dtype([("handle", "<u4"), ("states", "<u4"), ("transitions", "<u8")], align=True)

# A fused group (Megakernel.register_fused): its member programs' handles, in run order.
FUSED = np.dtype([("handle", "<u4"), ("count", "<u4"), ("members", "<u4", (MAX_FUSED_MEMBERS,))], align=True)

# One fused run in flight: each member's run-context handle and lane count (0: the program's
# default), and the device memory a host-mapped region is copied into first (0: read in place).
FUSED_RUN = np.dtype(
    [
        ("handle", "<u4"),
        ("count", "<u4"),
        ("contexts", "<u4", (MAX_FUSED_MEMBERS,)),
        ("lanes", "<u4", (MAX_FUSED_MEMBERS,)),
        ("staging", "<u8"),
        ("staging_bytes", "<u8"),
    ],
    align=True,
)

# The kernel's one parameter, passed by value: where everything is, and the geometry.
PARAMS = np.dtype(
    [
        ("image", "<u8"),  # the shared protocol image (host-mapped), u32 words
        ("programs", "<u8"),
        ("contexts", "<u8"),
        ("regions", "<u8"),
        ("dfas", "<u8"),
        ("user_programs", "<u8"),  # u32[USER_OPCODE_COUNT]: program handle bound to each user opcode
        ("fused", "<u8"),  # FUSED[fused_capacity]
        ("fused_runs", "<u8"),  # FUSED_RUN[fused_run_capacity]
        # device memory, run_scratch_words u32 per worker block (block b: the (b - 1)th): where a
        # run's RUN-scope outputs live while it runs when the shared stage is too small; 0: none
        ("run_scratch", "<u8"),
        ("program_capacity", "<u4"),
        ("context_capacity", "<u4"),
        ("region_capacity", "<u4"),
        ("dfa_capacity", "<u4"),
        ("fused_capacity", "<u4"),
        ("fused_run_capacity", "<u4"),
        ("slots", "<u4"),
        ("ring", "<u4"),  # word offsets inside the image (protocol.layout.Layout)
        ("tenants", "<u4"),
        ("tenant_masks", "<u4"),
        ("metrics", "<u4"),
        ("observables", "<u4"),
        ("observable_count", "<u4"),
        ("debug_log", "<u4"),
        ("debug_capacity", "<u4"),
        ("io_queue", "<u4"),
        ("io_entries", "<u4"),
        ("doorbell", "<u4"),
        ("doorbells", "<u4"),
        ("idle_sleep_ns", "<u4"),  # back-off ceiling of an idle block
        ("scan_interval_ns", "<u4"),  # how often the dispatcher scans every status word anyway
        ("run_scratch_words", "<u4"),  # a multiple of 4 (each block's scratch is 16-byte aligned)
    ],
    align=True,
)

RECORDS.update({"Dfa": DFA, "Fused": FUSED, "FusedRun": FUSED_RUN, "Params": PARAMS})
