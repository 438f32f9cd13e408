"""f32 instructions on registers that hold IEEE-754 binary32 bit patterns, vectorized over lanes.

NumPy float32 ufuncs compute in binary32 with round-to-nearest-even and no flush-to-zero, so
fadd/fsub/fmul/fdiv/fsqrt are the IEEE results; what NumPy leaves open is fixed here
(docs/VIR0.md §8.4): every NaN an arithmetic op produces becomes CANONICAL_NAN,
fmin/fmax follow the one-NaN and signed-zero rules, conversions to integers saturate. The run
silences NumPy's floating-point warnings once (``np.errstate`` around the whole run).
"""

from __future__ import annotations

import numpy as np

from vyre_runtime.backends.cpu.alu import Binary, Unary, binary_factory, flag, low_word, unary_factory
from vyre_runtime.backends.cpu.step import Factory
from vyre_runtime.vir0.isa import CANONICAL_NAN, Op

U32 = np.uint32
F32 = np.float32
SIGN = U32(0x80000000)


def as_float(bits: np.ndarray) -> np.ndarray:
    return bits.view(F32)


def canonical(result: np.ndarray) -> np.ndarray:
    """Bits of a float32 result with every NaN replaced by the canonical NaN."""
    return np.where(np.isnan(result), U32(CANONICAL_NAN), result.view(U32))


def _arithmetic(operation: np.ufunc) -> Binary:
    return lambda a, b: canonical(operation(as_float(a), as_float(b)))


def _min_max(pick_first: np.ufunc, zero_bits: np.ufunc) -> Binary:
    """fmin/fmax: one NaN gives the other operand's bits, two give the canonical NaN.

    Equal operands keep ``zero_bits(a, b)``: identical bits for equal nonzero values, and for
    -0 vs +0 ``or`` yields -0 (fmin) and ``and`` yields +0 (fmax), in either order.
    """

    def operation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        x, y = as_float(a), as_float(b)
        result = np.where(pick_first(x, y), a, np.where(pick_first(y, x), b, zero_bits(a, b)))
        nan_a, nan_b = np.isnan(x), np.isnan(y)
        return np.where(nan_a, np.where(nan_b, U32(CANONICAL_NAN), b), np.where(nan_b, a, result))

    return operation


def _to_integer(low: float, high: float) -> Unary:
    """Truncate toward zero, saturate to [low, high], NaN to 0 (float64 holds every f32 exactly)."""

    def operation(a: np.ndarray) -> np.ndarray:
        value = as_float(a).astype(np.float64)
        clipped = np.clip(np.trunc(value), low, high)
        return low_word(np.where(np.isnan(value), 0.0, clipped).astype(np.int64))

    return operation


FLOAT_BINARY: dict[int, Binary] = {
    Op.FADD: _arithmetic(np.add),
    Op.FSUB: _arithmetic(np.subtract),
    Op.FMUL: _arithmetic(np.multiply),
    Op.FDIV: _arithmetic(np.divide),
    Op.FMIN: _min_max(np.less, np.bitwise_or),
    Op.FMAX: _min_max(np.greater, np.bitwise_and),
    Op.FLT: lambda a, b: flag(as_float(a) < as_float(b)),
    Op.FLE: lambda a, b: flag(as_float(a) <= as_float(b)),
    Op.FEQ: lambda a, b: flag(as_float(a) == as_float(b)),
}

FLOAT_UNARY: dict[int, Unary] = {
    Op.FSQRT: lambda a: canonical(np.sqrt(as_float(a))),
    Op.FNEG: lambda a: a ^ SIGN,  # bit operations: a NaN's payload passes through
    Op.FABS: lambda a: a & ~SIGN,
    Op.ITOF: lambda a: a.view(np.int32).astype(F32).view(U32),  # a C int->float cast: one rounding, to nearest even
    Op.UTOF: lambda a: a.astype(F32).view(U32),
    Op.FTOI: _to_integer(-(2.0**31), 2.0**31 - 1),
    Op.FTOU: _to_integer(0.0, 2.0**32 - 1),
}

HANDLERS: dict[int, Factory] = {
    **{code: binary_factory(operation) for code, operation in FLOAT_BINARY.items()},
    **{code: unary_factory(operation) for code, operation in FLOAT_UNARY.items()},
}
