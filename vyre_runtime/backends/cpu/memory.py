"""Loads, stores, atomics and emit, vectorized over lanes, every access bounds-checked.

A lane whose access is out of bounds faults and the instruction has no effect for it; the other
lanes of the step proceed (docs/VIR0.md §8.6-8.7). Atomics are applied as if serialized
in lane id order, so they are linearizable and deterministic on the CPU.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from vyre_runtime.backends.cpu.machine import Machine
from vyre_runtime.backends.cpu.step import Factory, Lanes, Step, StepContext
from vyre_runtime.vir0.isa import FaultCode, Op

U32 = np.uint32
I64 = np.int64


UNALIGNED = {2: np.dtype("<u2"), 4: np.dtype("<u4")}


def gather_le(data: np.ndarray, address: np.ndarray, size: int) -> np.ndarray:
    """Little-endian unsigned values of ``size`` bytes at each (in-bounds, unaligned) address."""
    if size == 1 or not len(address):  # (no address: the data may be shorter than one word)
        return data[address].astype(U32)
    # A view with a 1-byte stride holds the word starting at every byte offset: one gather
    # reads every lane's unaligned word.
    words = np.ndarray((len(data) - size + 1,), dtype=UNALIGNED[size], buffer=data, strides=(1,))
    return words[address].astype(U32)


def _byte_load(size: int, from_table: bool) -> Factory:
    """ldi8/16/32 (input region, OOB_INPUT) and ldt8/16/32 (table b, OOB_TABLE)."""
    code = FaultCode.OOB_TABLE if from_table else FaultCode.OOB_INPUT

    def factory(ctx: StepContext) -> Step:
        d, a, offset, pc = ctx.d, ctx.a, U32(ctx.imm), ctx.pc
        table = ctx.tables[ctx.b] if from_table else None

        def step(m: Machine, lanes: Lanes) -> None:
            data = m.input if table is None else table
            address = m.regs[a, lanes] + offset  # wraps mod 2^32 like the hardware
            ok = address.astype(I64) + size <= len(data)
            if not ok.all():
                lanes = m.fault_where(lanes, ok, code, pc, address)
                address = address[ok]
            m.regs[d, lanes] = gather_le(data, address, size)

        return step

    return factory


def _word_access(store: bool) -> Factory:
    """ldo / sto: binding word (r[a] + imm) mod 2^32, OOB_OUTPUT past the binding's end."""

    def factory(ctx: StepContext) -> Step:
        d, a, binding, offset, pc = ctx.d, ctx.a, ctx.b, U32(ctx.imm), ctx.pc
        words = ctx.binding_words[binding]

        def step(m: Machine, lanes: Lanes) -> None:
            index = m.regs[a, lanes] + offset
            ok = index < words
            if not ok.all():
                lanes = m.fault_where(lanes, ok, FaultCode.OOB_OUTPUT, pc, index)
                index = index[ok]
            buffer = m.bindings[binding]
            if store:
                buffer[index] = m.regs[d, lanes]  # racing stores: the highest lane's value lands
            else:
                m.regs[d, lanes] = buffer[index]

        return step

    return factory


def _constant(value_of: Callable[[StepContext], int]) -> Factory:
    def factory(ctx: StepContext) -> Step:
        d, value = ctx.d, U32(value_of(ctx))

        def step(m: Machine, lanes: Lanes) -> None:
            m.regs[d, lanes] = value

        return step

    return factory


# ---------------------------------------------------------------- atomics

COMMUTATIVE: dict[int, np.ufunc] = {
    Op.ATADD: np.add,  # uint32: wraps
    Op.ATMIN: np.minimum,  # unsigned
    Op.ATMAX: np.maximum,
    Op.ATAND: np.bitwise_and,
    Op.ATOR: np.bitwise_or,
    Op.ATXOR: np.bitwise_xor,
}


def segmented_inclusive_scan(operation: np.ufunc, values: np.ndarray, segment: np.ndarray) -> np.ndarray:
    """Inclusive scan of an associative ``operation`` restarting at each segment (Hillis-Steele)."""
    result = values.copy()
    shift = 1
    while shift < len(result):
        same = segment[shift:] == segment[:-shift]
        if not same.any():
            break
        result[shift:] = np.where(same, operation(result[:-shift], result[shift:]), result[shift:])
        shift *= 2
    return result


def apply_atomic(
    kind: int, buffer: np.ndarray, index: np.ndarray, operand: np.ndarray, expected: np.ndarray
) -> np.ndarray:
    """Apply one atomic per lane, serialized in lane order; return each lane's old value.

    Lanes hitting the same word see the effects of lower lanes first, exactly as a sequence of
    single-lane atomics would: a valid linearization, identical run after run.
    """
    if kind in COMMUTATIVE and index.min() == index.max():
        return _one_word_commutative(COMMUTATIVE[kind], buffer, int(index[0]), operand)
    order = np.argsort(index, kind="stable")
    word = index[order].astype(np.intp)
    value = operand[order]
    first = np.empty(len(word), dtype=bool)
    first[0] = True
    np.not_equal(word[1:], word[:-1], out=first[1:])
    segment = np.cumsum(first) - 1
    heads = np.flatnonzero(first)
    lasts = np.append(heads[1:] - 1, len(word) - 1)
    initial = buffer[word[heads]]
    if kind == Op.ATCAS:
        old = _serial_compare_and_swap(buffer, word, value, expected[order])
    else:
        previous = np.empty_like(value)  # per lane: the word's value just before its turn
        if kind == Op.ATXCHG:
            previous[1:] = value[:-1]
            final = value[lasts]
        else:
            operation = COMMUTATIVE[kind]
            running = segmented_inclusive_scan(operation, value, segment)
            previous[1:] = operation(initial[segment[1:]], running[:-1])
            final = operation(initial, running[lasts])
        previous[heads] = initial
        old = previous
        buffer[word[heads]] = final
    result = np.empty_like(old)
    result[order] = old
    return result


def _one_word_commutative(operation: np.ufunc, buffer: np.ndarray, word: int, operand: np.ndarray) -> np.ndarray:
    """The common case of every lane updating one counter: a plain running scan in lane order."""
    initial = buffer[word : word + 1]
    running = operation.accumulate(np.concatenate((initial, operand)))
    buffer[word] = running[-1]
    return running[:-1]


def _serial_compare_and_swap(
    buffer: np.ndarray, word: np.ndarray, value: np.ndarray, expected: np.ndarray
) -> np.ndarray:
    """atcas has no cheap scan form; lanes are few per word, so walk them in order."""
    old = np.empty_like(value)
    for i, (w, v, e) in enumerate(zip(word.tolist(), value.tolist(), expected.tolist())):
        current = int(buffer[w])
        old[i] = current
        if current == e:
            buffer[w] = v
    return old


def _atomic(kind: int) -> Factory:
    def factory(ctx: StepContext) -> Step:
        d, a, b, binding, pc = ctx.d, ctx.a, ctx.b, ctx.imm, ctx.pc
        words = ctx.binding_words[binding]

        def step(m: Machine, lanes: Lanes) -> None:
            regs = m.regs
            index, operand, expected = regs[a, lanes], regs[b, lanes], regs[d, lanes]
            ok = index < words
            if not ok.all():
                lanes = m.fault_where(lanes, ok, FaultCode.OOB_OUTPUT, pc, index)
                index, operand, expected = index[ok], operand[ok], expected[ok]
                if not len(index):
                    return
            regs[d, lanes] = apply_atomic(kind, m.bindings[binding], index, operand, expected)

        return step

    return factory


# ---------------------------------------------------------------- emit


def _emit(ctx: StepContext) -> Step:
    a, words = ctx.a, ctx.emit_words

    def step(m: Machine, lanes: Lanes) -> None:
        records = m.regs[a : a + words, lanes].T.copy()  # a copy: the registers change later
        m.emits.stage(m.index(lanes), records)

    return step


HANDLERS: dict[int, Factory] = {
    Op.LDI8: _byte_load(1, from_table=False),
    Op.LDI16: _byte_load(2, from_table=False),
    Op.LDI32: _byte_load(4, from_table=False),
    Op.LDT8: _byte_load(1, from_table=True),
    Op.LDT16: _byte_load(2, from_table=True),
    Op.LDT32: _byte_load(4, from_table=True),
    Op.LDO: _word_access(store=False),
    Op.STO: _word_access(store=True),
    Op.BLEN: _constant(lambda ctx: ctx.binding_words[ctx.b]),
    Op.TLEN: _constant(lambda ctx: len(ctx.tables[ctx.b])),
    **{kind: _atomic(kind) for kind in (*COMMUTATIVE, Op.ATXCHG, Op.ATCAS)},
    Op.EMIT: _emit,
}
