"""Slot opcodes: the built-ins, the user range, tenant windows, and what a slot may carry.

Opcode space (docs/PROTOCOL.md, "Opcodes"):
    0x0000_0000 .. 0x0000_000B   built-ins (NOP .. RUN_PROGRAM)
    0x0000_000C .. 0x0000_0FFF   reserved for future built-ins: rejected
    0x0000_1000 .. 0x0000_13FF   user opcodes, each bound to a registered VIR0 program;
                                 tenant t owns the window USER_OPCODE_BASE + 16 t .. + 15
    0x0000_1400 .. 0xFFFF_FFFE   rejected
    0xFFFF_FFFF                  SHUTDOWN (all ones, so a zeroed slot can never mean shutdown)
"""

from __future__ import annotations

import operator
from enum import IntEnum

from vyre_runtime.errors import ProtocolError


class BuiltinOpcode(IntEnum):
    NOP = 0
    STORE_U32 = 1  # args: index, value                -> observable[index] = value
    ATOMIC_ADD = 2  # args: index, value               -> observable[index] += value; result0 = old
    LOAD_U32 = 3  # args: src, dst                     -> observable[dst] = observable[src]; result0 = value
    COMPARE_SWAP = 4  # args: index, expected, desired -> result0 = old
    MEMCPY = 5  # args: src, dst, count                -> observable words, overlap-safe
    DFA_STEP = 6  # args: dfa, state, n, bytes...      -> result0 = state, result1 = matches
    BATCH_FENCE = 7  # args: item count, tag           -> EPOCH += 1, LAST_FENCE_TAG = tag
    PRINTF = 8  # args: format id, a, b                -> one debug-log record
    LOAD_MISS = 9  # args: resource, offset lo/hi, bytes, dst observable -> host loads it
    PACKED_SLOT = 10  # args: several small built-ins in one slot
    RUN_PROGRAM = 11  # args: program, context, region ...  (see protocol.layout.RunArg)
    SHUTDOWN = 0xFFFFFFFF


BUILTIN_LIMIT = 0x1000
USER_OPCODE_BASE = 0x1000
USER_OPCODE_COUNT = 0x400
TENANT_WINDOW = 16
MAX_TENANTS = USER_OPCODE_COUNT // TENANT_WINDOW  # 64: every tenant gets a full window

# The built-ins a PACKED_SLOT may carry: short, with no waiting and no nested slots.
PACKABLE = frozenset(
    {
        BuiltinOpcode.NOP,
        BuiltinOpcode.STORE_U32,
        BuiltinOpcode.ATOMIC_ADD,
        BuiltinOpcode.LOAD_U32,
        BuiltinOpcode.COMPARE_SWAP,
        BuiltinOpcode.MEMCPY,
        BuiltinOpcode.PRINTF,
    }
)
# The built-ins the CUDA dispatcher runs in its own lanes and a watched channel call may carry
# (docs/PROTOCOL.md 4.9): a few observable accesses at most, MEMCPY of at most INLINE_MEMCPY_WORDS.
INLINE = PACKABLE - {BuiltinOpcode.PRINTF}
INLINE_MEMCPY_WORDS = 16
MAX_PACKED_OPS = 7  # 1 + 3 x 7 metadata bytes = 6 words, leaving 6 argument words
MAX_FUSED_MEMBERS = 8  # programs of one fused group (Megakernel.register_fused)

# Metrics: one counter per built-in, then one per user opcode (docs/PROTOCOL.md, "Metrics").
BUILTIN_METRIC_INDEX = {op: index for index, op in enumerate(BuiltinOpcode)}
USER_METRIC_BASE = 16
METRIC_WORDS = USER_METRIC_BASE + USER_OPCODE_COUNT


_BUILTIN_NUMBERS = frozenset(int(op) for op in BuiltinOpcode)
_BUILTIN_METRIC_BY_NUMBER = {int(op): index for op, index in BUILTIN_METRIC_INDEX.items()}


def is_builtin(opcode: int) -> bool:
    return opcode in _BUILTIN_NUMBERS


def is_user_opcode(opcode: int) -> bool:
    return USER_OPCODE_BASE <= opcode < USER_OPCODE_BASE + USER_OPCODE_COUNT


def tenant_window(tenant: int) -> range:
    """The user opcodes tenant ``tenant`` may bind and publish."""
    start = USER_OPCODE_BASE + tenant * TENANT_WINDOW
    return range(start, start + TENANT_WINDOW)


def metric_index(opcode: int) -> int:
    """Index into the metrics region for ``opcode``; -1 for an opcode with no counter."""
    if is_user_opcode(opcode):
        return USER_METRIC_BASE + opcode - USER_OPCODE_BASE
    return _BUILTIN_METRIC_BY_NUMBER.get(opcode, -1)


def validate_publish_opcode(opcode: int, tenant: int, tenant_count: int) -> None:
    """Reject what no slot may carry, before anything is written (host side of the contract)."""
    try:  # a float or a string must be refused here, not crash a later format or store
        opcode, tenant = operator.index(opcode), operator.index(tenant)
    except TypeError:
        raise ProtocolError(f"opcode {opcode!r} and tenant {tenant!r} must be integers") from None
    if not 0 <= opcode <= 0xFFFFFFFF:
        raise ProtocolError(f"opcode {opcode} is not a u32")
    if not 0 <= tenant < tenant_count:
        raise ProtocolError(f"tenant {tenant} is out of range: this ring has tenants 0..{tenant_count - 1}")
    if is_builtin(opcode):
        return
    if is_user_opcode(opcode):
        if opcode not in tenant_window(tenant):
            window = tenant_window(tenant)
            raise ProtocolError(
                f"user opcode {opcode:#x} is outside tenant {tenant}'s window {window.start:#x}..{window.stop - 1:#x}",
                "publish user opcodes from the tenant that owns their window",
            )
        return
    if opcode < BUILTIN_LIMIT:
        raise ProtocolError(f"opcode {opcode:#x} is reserved for future built-ins", "use a built-in or a user opcode")
    raise ProtocolError(
        f"opcode {opcode:#x} is not a built-in, a user opcode ({USER_OPCODE_BASE:#x}.."
        f"{USER_OPCODE_BASE + USER_OPCODE_COUNT - 1:#x}) or SHUTDOWN",
    )
