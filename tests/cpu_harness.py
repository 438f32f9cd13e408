"""Helpers for the CPU interpreter tests: build programs from mnemonics, run them, read results.

Deliberately independent of the assembler (written concurrently): programs are built from
``Instruction`` tuples. Also plain-Python reference models (slow, obvious) of the arithmetic and
the range intrinsics, written from docs/VIR0.md rather than from the implementation.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

import numpy as np

from vyre_runtime.backends.cpu import Region, RunResult, run_program
from vyre_runtime.vir0.isa import BY_NAME, DFA_ACCEPT_BIT, IMM_FORM, Combine, Scope
from vyre_runtime.vir0.program import Binding, Instruction, Program, Table

MASK = 0xFFFFFFFF
INT_MIN = 0x80000000
CANONICAL_NAN = 0x7FC00000


def op(name: str, d: int = 0, a: int = 0, b: int = 0, imm: int = 0, *, immediate: bool = False) -> Instruction:
    """One instruction by mnemonic; ``immediate=True`` selects the imm form of a binary op."""
    code = BY_NAME[name].code | (IMM_FORM if immediate else 0)
    return Instruction(code, d, a, b, imm & MASK)


def program(
    code: Sequence[Instruction],
    *,
    registers: int = 16,
    emit_words: int = 0,
    tables: dict[str, bytes] | None = None,
    bindings: Sequence[Binding] = (),
    fuel: int = 1 << 24,
    lanes: int = 1,
) -> Program:
    return Program(
        name="test",
        code=tuple(code),
        registers=registers,
        emit_words=emit_words,
        fuel=fuel,
        lanes=lanes,
        tables=tuple(Table(name, data) for name, data in (tables or {}).items()),
        bindings=tuple(bindings),
    )


def out(words: int, init: int = 0) -> Binding:
    return Binding("out", words, Scope.RUN, Combine.SUM, init)


def global_binding(name: str, words: int, init: int = 0) -> Binding:
    return Binding(name, words, Scope.GLOBAL, Combine.NONE, init)


def u32_table(values: Sequence[int]) -> bytes:
    return np.asarray([v & MASK for v in values], dtype="<u4").tobytes()


def run(prog: Program, data: bytes = b"", *, lanes: int = 1, **kwargs: object) -> RunResult:
    return run_program(prog, Region(data), lanes=lanes, **kwargs)  # type: ignore[arg-type]


LANE_PROLOGUE = (op("sreg", d=0, imm=0), op("shl", d=1, a=0, imm=2, immediate=True))  # r0 = lane, r1 = 4 * lane


def per_lane_program(
    body: Sequence[Instruction],
    operands: Sequence[Sequence[int]],
    out_words: int,
    *,
    out_init: int = 0,
    extra_bindings: Sequence[Binding] = (),
    extra_tables: dict[str, bytes] | None = None,
    **kwargs: object,
) -> Program:
    """Lane i loads operand columns k (tables t0, t1, ...) into r2, r3, ... then runs ``body``.

    ``body`` stores its results with ``sto`` into binding 0 ("out"), then any extra bindings;
    extra tables get the indices after the operand tables.
    """
    loads = [op("ldt32", d=2 + k, a=1, b=k) for k in range(len(operands))]
    tables = {f"t{k}": u32_table(column) for k, column in enumerate(operands)} | (extra_tables or {})
    bindings = [out(out_words, out_init), *extra_bindings]
    return program([*LANE_PROLOGUE, *loads, *body, op("exit")], tables=tables, bindings=bindings, **kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------- integer reference


def s32(x: int) -> int:
    return x - (1 << 32) if x & INT_MIN else x


def _trunc_div(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


def ref_divs(a: int, b: int) -> int:
    if b == 0:
        return MASK
    return _trunc_div(s32(a), s32(b)) & MASK


def ref_rems(a: int, b: int) -> int:
    if b == 0:
        return a
    x, y = s32(a), s32(b)
    return (x - _trunc_div(x, y) * y) & MASK


def _rotl(a: int, s: int) -> int:
    s %= 32
    return ((a << s) | (a >> (32 - s))) & MASK


INT_BINARY_REFERENCE = {
    "add": lambda a, b: (a + b) & MASK,
    "sub": lambda a, b: (a - b) & MASK,
    "mul": lambda a, b: (a * b) & MASK,
    "mulhu": lambda a, b: (a * b) >> 32,
    "mulhs": lambda a, b: ((s32(a) * s32(b)) >> 32) & MASK,
    "divu": lambda a, b: MASK if b == 0 else a // b,
    "divs": ref_divs,
    "remu": lambda a, b: a if b == 0 else a % b,
    "rems": ref_rems,
    "and": lambda a, b: a & b,
    "or": lambda a, b: a | b,
    "xor": lambda a, b: a ^ b,
    "shl": lambda a, b: 0 if b >= 32 else (a << b) & MASK,
    "shr": lambda a, b: 0 if b >= 32 else a >> b,
    "sar": lambda a, b: (s32(a) >> min(b, 31)) & MASK,
    "rotl": _rotl,
    "rotr": lambda a, b: _rotl(a, 32 - b % 32),
    "minu": min,
    "mins": lambda a, b: min(s32(a), s32(b)) & MASK,
    "maxu": max,
    "maxs": lambda a, b: max(s32(a), s32(b)) & MASK,
    "eq": lambda a, b: int(a == b),
    "ne": lambda a, b: int(a != b),
    "ltu": lambda a, b: int(a < b),
    "lts": lambda a, b: int(s32(a) < s32(b)),
    "leu": lambda a, b: int(a <= b),
    "les": lambda a, b: int(s32(a) <= s32(b)),
    "gtu": lambda a, b: int(a > b),
    "gts": lambda a, b: int(s32(a) > s32(b)),
    "geu": lambda a, b: int(a >= b),
    "ges": lambda a, b: int(s32(a) >= s32(b)),
}

INT_UNARY_REFERENCE = {
    "not": lambda a: ~a & MASK,
    "neg": lambda a: -a & MASK,
    "popcnt": lambda a: bin(a).count("1"),
    "clz": lambda a: 32 - a.bit_length(),
    "ctz": lambda a: 32 if a == 0 else (a & -a).bit_length() - 1,
    "bswap": lambda a: int.from_bytes(a.to_bytes(4, "little"), "big"),
}

INT64_REFERENCE = {  # name: (b is a pair, result is a pair, function of Python ints)
    "add64": (True, True, lambda x, y: (x + y) % 2**64),
    "sub64": (True, True, lambda x, y: (x - y) % 2**64),
    "mul64": (True, True, lambda x, y: (x * y) % 2**64),
    "shl64": (False, True, lambda x, s: 0 if s >= 64 else (x << s) % 2**64),
    "shr64": (False, True, lambda x, s: 0 if s >= 64 else x >> s),
    "ltu64": (True, False, lambda x, y: int(x < y)),
    "eq64": (True, False, lambda x, y: int(x == y)),
}

INTERESTING_U32 = [0, 1, 2, 3, 5, 7, 31, 32, 33, 63, 64, 0xFF, 0x7FFFFFFF, INT_MIN, 0x80000001, 0xFFFFFFFE, MASK]


# ---------------------------------------------------------------- float reference


def f32(bits: int) -> float:
    return struct.unpack("<f", struct.pack("<I", bits))[0]


_ROUNDS_TO_INFINITY = 2.0**128 - 2.0**103  # halfway between FLT_MAX and 2^128: ties go to even (inf)


def bits_of(value: float) -> int:
    """The binary32 nearest ``value`` (round to nearest even); NaN -> canonical NaN."""
    if math.isnan(value):
        return CANONICAL_NAN
    if abs(value) >= _ROUNDS_TO_INFINITY:
        return 0x7F800000 | (INT_MIN if value < 0 else 0)
    return struct.unpack("<I", struct.pack("<f", value))[0]


def is_nan(bits: int) -> bool:
    return (bits & 0x7F800000) == 0x7F800000 and (bits & 0x7FFFFF) != 0


def _fmin_max(a: int, b: int, smaller: bool) -> int:
    if is_nan(a) and is_nan(b):
        return CANONICAL_NAN
    if is_nan(a):
        return b
    if is_nan(b):
        return a
    x, y = f32(a), f32(b)
    if x == y:  # equal values; only +-0 can differ in bits
        return (a | b) if smaller else (a & b)
    return a if (x < y) == smaller else b


def _to_int(bits: int, low: int, high: int) -> int:
    if is_nan(bits):
        return 0
    value = f32(bits)
    if math.isinf(value):
        return (high if value > 0 else low) & MASK
    return min(max(math.trunc(value), low), high) & MASK


def _divide(x: float, y: float) -> float:
    if y == 0:
        if x == 0 or math.isnan(x):
            return math.nan
        return math.copysign(math.inf, x) * math.copysign(1.0, y)
    return x / y


def _sqrt(x: float) -> float:
    if math.isnan(x) or x < 0:
        return math.nan
    return math.sqrt(x)  # sqrt(-0) = -0


def _inf_arith(function):
    return lambda a, b: bits_of(function(f32(a), f32(b)))


FLOAT_BINARY_REFERENCE = {
    "fadd": _inf_arith(lambda x, y: x + y),
    "fsub": _inf_arith(lambda x, y: x - y),
    "fmul": _inf_arith(lambda x, y: x * y),
    "fdiv": _inf_arith(_divide),
    "fmin": lambda a, b: _fmin_max(a, b, smaller=True),
    "fmax": lambda a, b: _fmin_max(a, b, smaller=False),
    "flt": lambda a, b: int(f32(a) < f32(b)),
    "fle": lambda a, b: int(f32(a) <= f32(b)),
    "feq": lambda a, b: int(f32(a) == f32(b)),
}

FLOAT_UNARY_REFERENCE = {
    "fsqrt": lambda a: bits_of(_sqrt(f32(a))),
    "fneg": lambda a: a ^ INT_MIN,
    "fabs": lambda a: a & 0x7FFFFFFF,
    "itof": lambda a: bits_of(float(s32(a))),
    "utof": lambda a: bits_of(float(a)),
    "ftoi": lambda a: _to_int(a, -(2**31), 2**31 - 1),
    "ftou": lambda a: _to_int(a, 0, MASK),
}

INTERESTING_F32 = [
    0x00000000,
    0x80000000,
    0x3F800000,
    0xBF800000,
    0x3FC00000,
    0xBF000000,
    0x3F7FFFFF,  # 0, -0, 1, -1, 1.5, -.5
    0x00000001,
    0x807FFFFF,
    0x00800000,
    0x00400000,
    0x7F7FFFFF,
    0xFF7FFFFF,  # subnormals, min normal, max
    0x7F800000,
    0xFF800000,
    0x7FC00000,
    0x7F800001,
    0xFFC12345,
    0x7FBFFFFF,  # inf, -inf, NaNs (quiet/signaling)
    0x4F000000,
    0xCF000000,
    0x4F800000,
    0x4F7FFFFF,
    0xCF000001,
    0x4EFFFFFF,  # 2^31, -2^31, 2^32, near them
    0x33800000,
    0x34000000,
    0x4B800001,
    0x40490FDB,  # 2^-24, 2^-23, 2^24+2, pi
]


# ---------------------------------------------------------------- range intrinsics reference


def dfa_table(transitions: Sequence[Sequence[int]]) -> bytes:
    """A DFA table from per-state lists of 256 raw transitions (target | DFA_ACCEPT_BIT)."""
    flat = [t for row in transitions for t in row]
    return struct.pack(f"<I{len(flat)}I", len(transitions), *flat)


def random_dfa(rng: np.random.Generator, states: int, accept_rate: float = 0.05) -> list[list[int]]:
    targets = rng.integers(0, states, size=(states, 256))
    accept = rng.random((states, 256)) < accept_rate
    return [
        [int(t) | (DFA_ACCEPT_BIT if a else 0) for t, a in zip(tr, ac, strict=True)]
        for tr, ac in zip(targets, accept, strict=True)
    ]


def dfa_walk(
    transitions: Sequence[Sequence[int]], data: bytes, start: int, state: int
) -> tuple[int, int, list[tuple[int, int]]]:
    """(end state, matches, [(region offset, state entered)]) walking data that starts at ``start``."""
    matches = []
    for i, byte in enumerate(data):
        t = transitions[state][byte]
        state = t & (DFA_ACCEPT_BIT - 1)
        if t & DFA_ACCEPT_BIT:
            matches.append((start + i, state))
    return state, len(matches), matches
