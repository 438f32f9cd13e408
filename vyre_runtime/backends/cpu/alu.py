"""Moves, 32-bit integer and 64-bit pair instructions, vectorized over lanes.

Each operation is a pure function of uint32 lane vectors (the immediate form passes its imm as a
1-element array, which broadcasts), so the same code serves both forms. Edge cases follow
docs/VIR0.md §8.3: divisions never trap, shifts >= the width give 0 (or the sign
for sar), rotates use the amount mod 32, clz/ctz(0) = 32, comparisons give 0 or 1.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from vyre_runtime.backends.cpu.machine import Machine
from vyre_runtime.backends.cpu.step import Factory, Lanes, Step, StepContext
from vyre_runtime.vir0.isa import Op, SpecialRegister

U32 = np.uint32
U64 = np.uint64
I32 = np.int32
I64 = np.int64
MASK32 = 0xFFFFFFFF
Binary = Callable[[np.ndarray, np.ndarray], np.ndarray]
Unary = Callable[[np.ndarray], np.ndarray]


def low_word(values: np.ndarray) -> np.ndarray:
    """The low 32 bits of int64/uint64 values as uint32 (explicit, never a lossy C cast)."""
    return (values & MASK32).astype(U32)


def signed(values: np.ndarray) -> np.ndarray:
    return values.view(I32).astype(I64)


def flag(condition: np.ndarray) -> np.ndarray:
    return condition.astype(U32)


# ---------------------------------------------------------------- 32-bit binary


def _divu(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    zero = b == 0
    return np.where(zero, U32(MASK32), a // np.where(zero, U32(1), b))


def _remu(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    zero = b == 0
    return np.where(zero, a, a % np.where(zero, U32(1), b))


def _signed_divide(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(quotient, remainder, b == 0) truncating toward zero, computed in int64 so INT_MIN / -1 fits."""
    x, y = signed(a), signed(b)
    zero = y == 0
    y = np.where(zero, 1, y)
    remainder = np.fmod(x, y)  # C semantics: the sign of the dividend
    return (x - remainder) // y, remainder, zero


def _divs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    quotient, _, zero = _signed_divide(a, b)
    return low_word(np.where(zero, -1, quotient))  # INT_MIN / -1 = 2^31 wraps to INT_MIN


def _rems(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    _, remainder, zero = _signed_divide(a, b)
    return np.where(zero, a, low_word(remainder))


def _shl(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.where(b < 32, a << (b & U32(31)), U32(0))  # numpy shifts >= width are undefined


def _shr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.where(b < 32, a >> (b & U32(31)), U32(0))


def _sar(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a.view(I32) >> np.minimum(b, U32(31)).astype(I32)).view(U32)  # by >= 32 = by 31: sign fill


def rotl(a: np.ndarray, b: np.ndarray | int) -> np.ndarray:
    s = np.asarray(b, dtype=U32) & U32(31)
    return (a << s) | (a >> ((U32(32) - s) & U32(31)))


def _rotr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    s = b & U32(31)
    return (a >> s) | (a << ((U32(32) - s) & U32(31)))


def _mulhs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return low_word((signed(a) * signed(b)) >> 32)  # |product| <= 2^62: exact in int64


def _signed_compare(compare: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Binary:
    return lambda a, b: flag(compare(a.view(I32), b.view(I32)))


INT_BINARY: dict[int, Binary] = {
    Op.ADD: lambda a, b: a + b,
    Op.SUB: lambda a, b: a - b,
    Op.MUL: lambda a, b: a * b,
    Op.MULHU: lambda a, b: ((a.astype(U64) * b.astype(U64)) >> U64(32)).astype(U32),
    Op.MULHS: _mulhs,
    Op.DIVU: _divu,
    Op.DIVS: _divs,
    Op.REMU: _remu,
    Op.REMS: _rems,
    Op.AND: lambda a, b: a & b,
    Op.OR: lambda a, b: a | b,
    Op.XOR: lambda a, b: a ^ b,
    Op.SHL: _shl,
    Op.SHR: _shr,
    Op.SAR: _sar,
    Op.ROTL: rotl,
    Op.ROTR: _rotr,
    Op.MINU: np.minimum,
    Op.MINS: lambda a, b: np.minimum(a.view(I32), b.view(I32)).view(U32),
    Op.MAXU: np.maximum,
    Op.MAXS: lambda a, b: np.maximum(a.view(I32), b.view(I32)).view(U32),
    Op.EQ: lambda a, b: flag(a == b),
    Op.NE: lambda a, b: flag(a != b),
    Op.LTU: lambda a, b: flag(a < b),
    Op.LTS: _signed_compare(np.less),
    Op.LEU: lambda a, b: flag(a <= b),
    Op.LES: _signed_compare(np.less_equal),
    Op.GTU: lambda a, b: flag(a > b),
    Op.GTS: _signed_compare(np.greater),
    Op.GEU: lambda a, b: flag(a >= b),
    Op.GES: _signed_compare(np.greater_equal),
}


# ---------------------------------------------------------------- 32-bit unary


def bit_length(a: np.ndarray) -> np.ndarray:
    """Bits needed for each uint32 (0 for 0): float64 holds every u32 exactly, frexp gives the exponent."""
    return np.frexp(a.astype(np.float64))[1]


def _popcount(a: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(a).astype(U32)
    a = a - ((a >> U32(1)) & U32(0x55555555))
    a = (a & U32(0x33333333)) + ((a >> U32(2)) & U32(0x33333333))
    a = (a + (a >> U32(4))) & U32(0x0F0F0F0F)
    return (a * U32(0x01010101)) >> U32(24)


def _ctz(a: np.ndarray) -> np.ndarray:
    lowest = a & (U32(0) - a)
    return np.where(a == 0, U32(32), (bit_length(lowest) - 1).astype(U32))


INT_UNARY: dict[int, Unary] = {
    Op.NOT: lambda a: ~a,
    Op.NEG: lambda a: U32(0) - a,
    Op.POPCNT: _popcount,
    Op.CLZ: lambda a: (32 - bit_length(a)).astype(U32),
    Op.CTZ: _ctz,
    Op.BSWAP: lambda a: a.byteswap(),
}


# ---------------------------------------------------------------- factories


def binary_factory(operation: Binary) -> Factory:
    """``d = op(a, b)`` or, in the immediate form, ``d = op(a, imm)``."""

    def factory(ctx: StepContext) -> Step:
        d, a, b = ctx.d, ctx.a, ctx.b
        if ctx.is_imm:
            imm = np.array([ctx.imm], dtype=U32)

            def step_imm(m: Machine, lanes: Lanes) -> None:
                m.regs[d, lanes] = operation(m.regs[a, lanes], imm)

            return step_imm

        def step(m: Machine, lanes: Lanes) -> None:
            regs = m.regs
            regs[d, lanes] = operation(regs[a, lanes], regs[b, lanes])

        return step

    return factory


def unary_factory(operation: Unary) -> Factory:
    def factory(ctx: StepContext) -> Step:
        d, a = ctx.d, ctx.a

        def step(m: Machine, lanes: Lanes) -> None:
            m.regs[d, lanes] = operation(m.regs[a, lanes])

        return step

    return factory


def _mov(ctx: StepContext) -> Step:
    return unary_factory(lambda a: a)(ctx)


def _li(ctx: StepContext) -> Step:
    d, value = ctx.d, U32(ctx.imm)

    def step(m: Machine, lanes: Lanes) -> None:
        m.regs[d, lanes] = value

    return step


def _sreg(ctx: StepContext) -> Step:
    d, which = ctx.d, SpecialRegister(ctx.imm)
    per_lane: dict[SpecialRegister, Callable[[np.ndarray], np.ndarray]] = {
        SpecialRegister.LANE_ID: lambda ids: ids,
        SpecialRegister.GROUP_LANE: lambda ids: ids & U32(31),
        SpecialRegister.GROUP_ID: lambda ids: ids >> U32(5),
    }
    if which in per_lane:
        of_ids = per_lane[which]

        def step_lane(m: Machine, lanes: Lanes) -> None:
            m.regs[d, lanes] = of_ids(m.lane_ids[lanes])

        return step_lane

    def step(m: Machine, lanes: Lanes) -> None:
        m.regs[d, lanes] = m.special[which]

    return step


def _sel(ctx: StepContext) -> Step:
    d, a, b, condition = ctx.d, ctx.a, ctx.b, ctx.imm

    def step(m: Machine, lanes: Lanes) -> None:
        regs = m.regs
        regs[d, lanes] = np.where(regs[condition, lanes] != 0, regs[a, lanes], regs[b, lanes])

    return step


MOVES: dict[int, Factory] = {Op.MOV: _mov, Op.LI: _li, Op.SREG: _sreg, Op.SEL: _sel}


# ---------------------------------------------------------------- 64-bit pairs


def read_pair(m: Machine, n: int, lanes: Lanes) -> np.ndarray:
    return m.regs[n, lanes].astype(U64) | (m.regs[n + 1, lanes].astype(U64) << U64(32))


def write_pair(m: Machine, n: int, lanes: Lanes, value: np.ndarray) -> None:
    low, high = low_word(value), (value >> U64(32)).astype(U32)  # both computed before either write
    m.regs[n, lanes] = low
    m.regs[n + 1, lanes] = high


def _shift64(shift: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    def operation(x: np.ndarray, amount: np.ndarray) -> np.ndarray:
        amount = amount.astype(U64)
        return np.where(amount < 64, shift(x, amount & U64(63)), U64(0))

    return operation


# (pair source b?, pair result?, operation over uint64 values)
INT64: dict[int, tuple[bool, bool, Callable[[np.ndarray, np.ndarray], np.ndarray]]] = {
    Op.ADD64: (True, True, lambda x, y: x + y),
    Op.SUB64: (True, True, lambda x, y: x - y),
    Op.MUL64: (True, True, lambda x, y: x * y),
    Op.SHL64: (False, True, _shift64(np.left_shift)),
    Op.SHR64: (False, True, _shift64(np.right_shift)),
    Op.LTU64: (True, False, lambda x, y: flag(x < y)),
    Op.EQ64: (True, False, lambda x, y: flag(x == y)),
}


def _int64_factory(
    pair_b: bool, pair_result: bool, operation: Callable[[np.ndarray, np.ndarray], np.ndarray]
) -> Factory:
    def factory(ctx: StepContext) -> Step:
        d, a, b = ctx.d, ctx.a, ctx.b

        def step(m: Machine, lanes: Lanes) -> None:
            y = read_pair(m, b, lanes) if pair_b else m.regs[b, lanes]
            result = operation(read_pair(m, a, lanes), y)
            if pair_result:
                write_pair(m, d, lanes, result)
            else:
                m.regs[d, lanes] = result

        return step

    return factory


def _mulwu(ctx: StepContext) -> Step:
    d, a, b = ctx.d, ctx.a, ctx.b

    def step(m: Machine, lanes: Lanes) -> None:
        write_pair(m, d, lanes, m.regs[a, lanes].astype(U64) * m.regs[b, lanes].astype(U64))

    return step


HANDLERS: dict[int, Factory] = {
    **MOVES,
    **{code: binary_factory(operation) for code, operation in INT_BINARY.items()},
    **{code: unary_factory(operation) for code, operation in INT_UNARY.items()},
    **{code: _int64_factory(*spec) for code, spec in INT64.items()},
    Op.MULWU: _mulwu,
}
