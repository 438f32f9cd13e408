"""Device-side bodies of the built-in slot opcodes (docs/PROTOCOL.md, "Built-in opcodes").

Each body takes the slot's 12 argument words and returns up to four result words, or raises
SlotFaultRaised. Observable-word addresses are bounds-checked: a built-in can only touch the
observable region, never control words (the seed let STORE_U32 overwrite any control word).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from vyre_runtime.errors import ProtocolError
from vyre_runtime.protocol import debuglog
from vyre_runtime.protocol.codec import decode_packed
from vyre_runtime.protocol.layout import ControlWord, Layout, SlotFault
from vyre_runtime.protocol.opcodes import BuiltinOpcode

MASK32 = 0xFFFFFFFF
DFA_STEP_MAX_BYTES = 36  # arguments 3..11 hold the bytes, little-endian


class SlotFaultRaised(Exception):  # noqa: N818 - control flow inside the device, never escapes it
    def __init__(self, code: SlotFault, detail: int = 0, pc: int = 0, lane: int = 0) -> None:
        super().__init__(code.name)
        self.code, self.detail, self.pc, self.lane = code, detail, pc, lane


@dataclass
class DeviceContext:
    """What a built-in body may touch: the image, its layout, the device lock, the slot."""

    image: np.ndarray
    layout: Layout
    lock: object  # threading.Lock: device-side read-modify-write among workers
    dfas: dict[int, np.ndarray]
    slot: int = 0
    tenant: int = 0

    def observable_range(self, first: int, count: int) -> slice:
        if first + count > self.layout.observables:
            raise SlotFaultRaised(SlotFault.BAD_ARGUMENT, detail=first)
        base = self.layout.observable_base + first
        return slice(base, base + count)


Body = Callable[[DeviceContext, tuple[int, ...]], tuple[int, ...]]


def nop(ctx: DeviceContext, args: tuple[int, ...]) -> tuple[int, ...]:
    return ()


def store_u32(ctx: DeviceContext, args: tuple[int, ...]) -> tuple[int, ...]:
    ctx.image[ctx.observable_range(args[0], 1)] = args[1]
    return ()


def atomic_add(ctx: DeviceContext, args: tuple[int, ...]) -> tuple[int, ...]:
    where = ctx.observable_range(args[0], 1)
    with ctx.lock:
        old = int(ctx.image[where][0])
        ctx.image[where] = (old + args[1]) & MASK32
    return (old,)


def load_u32(ctx: DeviceContext, args: tuple[int, ...]) -> tuple[int, ...]:
    value = int(ctx.image[ctx.observable_range(args[0], 1)][0])
    ctx.image[ctx.observable_range(args[1], 1)] = value
    return (value,)


def compare_swap(ctx: DeviceContext, args: tuple[int, ...]) -> tuple[int, ...]:
    where = ctx.observable_range(args[0], 1)
    with ctx.lock:
        old = int(ctx.image[where][0])
        if old == args[1]:
            ctx.image[where] = args[2]
    return (old,)


def memcpy(ctx: DeviceContext, args: tuple[int, ...]) -> tuple[int, ...]:
    source, destination, count = args[0], args[1], args[2]
    words = ctx.image[ctx.observable_range(source, count)].copy()  # copy first: ranges may overlap
    ctx.image[ctx.observable_range(destination, count)] = words
    return (count,)


def dfa_step(ctx: DeviceContext, args: tuple[int, ...]) -> tuple[int, ...]:
    table = ctx.dfas.get(args[0])
    if table is None:
        raise SlotFaultRaised(SlotFault.BAD_HANDLE, detail=args[0])
    state, count = args[1], args[2]
    if count > DFA_STEP_MAX_BYTES:
        raise SlotFaultRaised(SlotFault.BAD_ARGUMENT, detail=count)
    if state >= len(table):
        raise SlotFaultRaised(SlotFault.BAD_ARGUMENT, detail=state)
    data = np.asarray(args[3:12], dtype="<u4").tobytes()[:count]
    matches = 0
    for byte in data:
        transition = int(table[state, byte])
        state = transition & 0x7FFFFFFF
        matches += transition >> 31
    return (state, matches)


def batch_fence(ctx: DeviceContext, args: tuple[int, ...]) -> tuple[int, ...]:
    with ctx.lock:
        epoch = (int(ctx.image[ControlWord.EPOCH]) + 1) & MASK32
        ctx.image[ControlWord.EPOCH] = epoch
        ctx.image[ControlWord.LAST_FENCE_TAG] = args[1]
    return (epoch,)


def printf(ctx: DeviceContext, args: tuple[int, ...]) -> tuple[int, ...]:
    with ctx.lock:
        written = debuglog.append_record(ctx.image, ctx.layout, args[0], args[1], args[2], ctx.slot, ctx.tenant)
    return (int(written),)


def shutdown(ctx: DeviceContext, args: tuple[int, ...]) -> tuple[int, ...]:
    ctx.image[ControlWord.SHUTDOWN] = 1
    return ()


SIMPLE_BODIES: dict[int, Body] = {
    BuiltinOpcode.NOP: nop,
    BuiltinOpcode.STORE_U32: store_u32,
    BuiltinOpcode.ATOMIC_ADD: atomic_add,
    BuiltinOpcode.LOAD_U32: load_u32,
    BuiltinOpcode.COMPARE_SWAP: compare_swap,
    BuiltinOpcode.MEMCPY: memcpy,
    BuiltinOpcode.DFA_STEP: dfa_step,
    BuiltinOpcode.BATCH_FENCE: batch_fence,
    BuiltinOpcode.PRINTF: printf,
    BuiltinOpcode.SHUTDOWN: shutdown,
}


def packed_slot(ctx: DeviceContext, args: tuple[int, ...]) -> tuple[int, ...]:
    """Run each packed op in order; the slot's results are the last op's. A faulting op ends
    the slot as FAULT; the ops before it have taken effect (docs/PROTOCOL.md, PACKED_SLOT)."""
    try:
        ops = decode_packed(args)
    except ProtocolError:
        raise SlotFaultRaised(SlotFault.BAD_PACKED) from None
    results: tuple[int, ...] = ()
    for opcode, op_args in ops:
        padded = tuple(op_args) + (0,) * (12 - len(op_args))
        results = SIMPLE_BODIES[opcode](ctx, padded)
    return results
