"""CPU interpreter: loads, stores, atomics, emit and bindings (docs/VIR0.md §8.6-8.8)."""

from __future__ import annotations

import numpy as np
import pytest
from cpu_harness import MASK, global_binding, op, out, per_lane_program, program, run

from vyre_runtime.backends.cpu import Region, run_program
from vyre_runtime.vir0.isa import FaultCode, SpecialRegister
from vyre_runtime.vir0.program import Binding

COVERS = frozenset(
    {"ldi8", "ldi16", "ldi32", "ldt8", "ldt16", "ldt32", "ldo", "sto", "blen", "tlen", "emit"}
    | {"atadd", "atmin", "atmax", "atand", "ator", "atxor", "atxchg", "atcas"}
)

LANE = op("sreg", d=0, imm=SpecialRegister.LANE_ID)
DATA = bytes(range(0x10, 0x30))  # 32 bytes: byte i = 0x10 + i


def load_at(load: str, base: int, imm: int, data: bytes = DATA, table: bytes | None = None):
    """Run one load of `load` at r[a] = base, offset imm; return (value or None, fault)."""
    b = 0
    code = [op("li", d=1, imm=base), op(load, d=2, a=1, b=b, imm=imm), op("li", d=0, imm=0), op("sto", d=2, a=0, b=0)]
    prog = program([*code, op("exit")], bindings=[out(1)], tables={"t": table} if table is not None else None)
    result = run(prog, data)
    return (None if result.fault else result.outputs["out"][0]), result.fault


@pytest.mark.parametrize(("load", "size"), [("ldi8", 1), ("ldi16", 2), ("ldi32", 4)])
def test_input_load_is_little_endian_unaligned_and_zero_extended(load: str, size: int) -> None:
    data = bytes([0xF1, 0x82, 0x93, 0xA4, 0xB5])
    value, fault = load_at(load, 0, 1, data)
    assert fault is None and value == int.from_bytes(data[1 : 1 + size], "little")


@pytest.mark.parametrize(("load", "size"), [("ldi8", 1), ("ldi16", 2), ("ldi32", 4)])
def test_input_load_touching_the_region_end_is_valid_and_one_past_faults(load: str, size: int) -> None:
    value, fault = load_at(load, len(DATA) - size, 0)
    assert fault is None and value == int.from_bytes(DATA[-size:], "little")
    value, fault = load_at(load, len(DATA) - size, 1)
    assert fault is not None
    assert (fault.code, fault.pc, fault.detail) == (FaultCode.OOB_INPUT, 1, len(DATA) - size + 1)


def test_input_address_wraps_modulo_2_pow_32() -> None:
    value, fault = load_at("ldi8", MASK, 3)  # 0xFFFFFFFF + 3 = 2
    assert fault is None and value == DATA[2]
    value, fault = load_at("ldi32", 0xFFFFFFFE, 0)  # no overflow in the bounds check
    assert fault is not None and (fault.code, fault.detail) == (FaultCode.OOB_INPUT, 0xFFFFFFFE)


@pytest.mark.parametrize(("load", "data"), [("ldi8", b""), ("ldi16", b"a"), ("ldi32", b"abc")])
def test_input_load_from_a_region_shorter_than_the_load_faults(load: str, data: bytes) -> None:
    _, fault = load_at(load, 0, 0, data)
    assert fault is not None and (fault.code, fault.detail) == (FaultCode.OOB_INPUT, 0)
    _, fault = load_at(load.replace("ldi", "ldt"), 0, 0, table=data)
    assert fault is not None and (fault.code, fault.detail) == (FaultCode.OOB_TABLE, 0)


@pytest.mark.parametrize(("load", "size"), [("ldt8", 1), ("ldt16", 2), ("ldt32", 4)])
def test_table_load_reads_the_table_and_faults_past_its_end(load: str, size: int) -> None:
    table = bytes([9, 8, 7, 6, 5, 4])
    value, fault = load_at(load, 1, 1, table=table)
    assert fault is None and value == int.from_bytes(table[2 : 2 + size], "little")
    _, fault = load_at(load, 6 - size, 1, table=table)
    assert fault is not None and (fault.code, fault.pc, fault.detail) == (FaultCode.OOB_TABLE, 1, 7 - size)


def test_ldo_sto_use_word_index_a_plus_imm_and_a_lane_sees_its_own_stores() -> None:
    code = [LANE, op("add", d=1, a=0, imm=100, immediate=True), op("sto", d=1, a=0, b=0, imm=2)]
    code += [
        op("ldo", d=2, a=0, b=0, imm=2),
        op("add", d=2, a=2, imm=1, immediate=True),
        op("sto", d=2, a=0, b=0, imm=10),
    ]
    code += [op("li", d=3, imm=MASK), op("ldo", d=4, a=3, b=0, imm=1), op("sto", d=4, a=0, b=0, imm=20), op("exit")]
    result = run(program(code, bindings=[out(32, init=7)]), lanes=4)
    words = result.outputs["out"].tolist()
    assert words[2:6] == [100, 101, 102, 103]  # sto at lane + 2
    assert words[10:14] == [101, 102, 103, 104]  # ldo saw the lane's own store
    assert words[20:24] == [7, 7, 7, 7]  # index 0xFFFFFFFF + 1 wraps to word 0 (init 7)


@pytest.mark.parametrize("access", ["ldo", "sto"])
def test_binding_word_past_the_end_faults_oob_output_with_the_index(access: str) -> None:
    code = [op("li", d=1, imm=3), op(access, d=2, a=1, b=0, imm=2), op("exit")]
    result = run(program(code, bindings=[out(5)]))
    assert result.fault is not None
    assert (result.fault.code, result.fault.pc, result.fault.detail) == (FaultCode.OOB_OUTPUT, 1, 5)
    assert result.outputs["out"].tolist() == [0] * 5


def test_blen_and_tlen_report_sizes() -> None:
    code = [op("blen", d=1, b=0), op("tlen", d=2, b=1), op("li", d=0, imm=0), op("sto", d=1, a=0, b=0)]
    code += [op("sto", d=2, a=0, b=0, imm=1), op("exit")]
    prog = program(code, bindings=[out(9)], tables={"empty": b"", "seven": b"1234567"})
    assert run(prog).outputs["out"].tolist()[:2] == [9, 7]


# ---------------------------------------------------------------- atomics

ATOMIC_REFERENCE = {
    "atadd": lambda old, b: (old + b) & MASK,
    "atmin": min,
    "atmax": max,
    "atand": lambda old, b: old & b,
    "ator": lambda old, b: old | b,
    "atxor": lambda old, b: old ^ b,
    "atxchg": lambda old, b: b,
}


def atomic_program(name: str, index: list[int], operand: list[int], expected: list[int] | None = None, **kwargs):
    """Lane i: d = atomic(word index[i] of "out", operand[i]); stores the returned old value at old[i]."""
    columns = [index, operand] + ([expected] if expected is not None else [])
    d = 4 if expected is not None else 5  # atcas reads d: the expected column lands in r4
    body = [op(name, d=d, a=2, b=3, imm=0), op("sto", d=d, a=0, b=1)]
    return per_lane_program(body, columns, extra_bindings=[Binding("old", len(index))], **kwargs)


@pytest.mark.parametrize("name", sorted(ATOMIC_REFERENCE))
def test_atomic_on_distinct_words_returns_old_and_applies_op(name: str) -> None:
    operand = [5, 0x80000001, 0, MASK, 3, 0x7FFFFFFF, 12, 1]
    init = 0x80000000
    result = run(atomic_program(name, list(range(8)), operand, out_words=8, out_init=init), lanes=8)
    assert result.fault is None
    assert result.outputs["old"].tolist() == [init] * 8
    assert result.outputs["out"].tolist() == [ATOMIC_REFERENCE[name](init, b) for b in operand]


@pytest.mark.parametrize("name", sorted(ATOMIC_REFERENCE))
def test_contended_atomic_is_serialized_in_lane_order(name: str) -> None:
    rng = np.random.default_rng(5)
    lanes = 70
    index = rng.integers(0, 3, lanes).tolist()
    operand = [int(v) for v in rng.integers(0, 2**32, lanes, dtype=np.uint64)]
    result = run(atomic_program(name, index, operand, out_words=3), lanes=lanes)
    words = [0, 0, 0]
    olds = []
    for w, b in zip(index, operand, strict=True):  # the CPU's linearization: lane id order
        olds.append(words[w])
        words[w] = ATOMIC_REFERENCE[name](words[w], b)
    assert result.outputs["out"].tolist() == words
    assert result.outputs["old"].tolist() == olds


def test_atcas_swaps_only_when_the_word_equals_d_and_one_contender_wins() -> None:
    lanes = 40
    new = [100 + lane for lane in range(lanes)]
    result = run(atomic_program("atcas", [0] * lanes, new, [0] * lanes, out_words=1), lanes=lanes)
    assert result.outputs["out"].tolist() == [100]  # lane 0 saw 0 and won
    assert result.outputs["old"].tolist() == [0] + [100] * (lanes - 1)
    result = run(atomic_program("atcas", [0, 1], [7, 8], [0, 5], out_words=2), lanes=2)
    assert result.outputs["out"].tolist() == [7, 0] and result.outputs["old"].tolist() == [0, 0]


def test_atomic_index_ignores_imm_and_faults_past_the_binding_without_effect() -> None:
    result = run(atomic_program("atadd", [0, 9, 1], [1, 1, 1], out_words=4), lanes=3)
    assert result.fault is not None
    assert (result.fault.code, result.fault.lane, result.fault.detail) == (FaultCode.OOB_OUTPUT, 1, 9)
    assert result.outputs["out"].tolist() == [1, 1, 0, 0]
    every_lane_out = run(atomic_program("atcas", [4, 5], [1, 1], [0, 0], out_words=4), lanes=2)
    assert every_lane_out.fault is not None and every_lane_out.fault.lane == 0 and every_lane_out.fault.detail == 4


def test_commutative_atomics_over_many_lanes_give_a_deterministic_total() -> None:
    lanes = 1000
    code = [LANE, op("li", d=1, imm=0), op("atadd", d=2, a=1, b=0, imm=0)]
    code += [
        op("mul", d=3, a=0, imm=2654435761, immediate=True),
        op("li", d=1, imm=1),
        op("atmax", d=2, a=1, b=3, imm=0),
    ]
    code += [
        op("li", d=1, imm=2),
        op("atmin", d=2, a=1, b=3, imm=0),
        op("li", d=1, imm=3),
        op("atxor", d=2, a=1, b=3, imm=0),
    ]
    code += [op("li", d=4, imm=1), op("shl", d=4, a=4, b=0), op("li", d=1, imm=4), op("ator", d=2, a=1, b=4, imm=0)]
    code += [op("not", d=4, a=4), op("li", d=1, imm=5), op("atand", d=2, a=1, b=4, imm=0), op("exit")]
    result = run(program(code, bindings=[out(6, init=MASK)]), lanes=lanes)
    hashed = [(lane * 2654435761) & MASK for lane in range(lanes)]
    xor = MASK
    for value in hashed:
        xor ^= value
    expected = [(MASK + sum(range(lanes))) & MASK, MASK, min(hashed), xor, MASK, 0]
    assert result.outputs["out"].tolist() == expected


# ---------------------------------------------------------------- bindings


def test_run_bindings_are_fresh_per_run_and_filled_with_init() -> None:
    code = [op("li", d=0, imm=0), op("li", d=1, imm=1), op("atadd", d=2, a=0, b=1, imm=0), op("exit")]
    prog = program(code, bindings=[out(3, init=40)])
    assert run(prog, lanes=2).outputs["out"].tolist() == [42, 40, 40]
    assert run(prog, lanes=2).outputs["out"].tolist() == [42, 40, 40]


def test_global_binding_persists_across_runs_and_is_mutated_in_place() -> None:
    code = [op("li", d=0, imm=0), op("li", d=1, imm=1), op("atadd", d=2, a=0, b=1, imm=0), op("exit")]
    prog = program(code, bindings=[global_binding("total", 2, init=10)])
    created = run(prog, lanes=3).outputs["total"]
    assert created.tolist() == [13, 10]  # created from init when not supplied
    buffer = np.array([100, 0], dtype=np.uint32)
    first = run_program(prog, Region(b""), lanes=3, global_buffers={"total": buffer})
    assert first.outputs["total"] is buffer
    run_program(prog, Region(b""), lanes=4, global_buffers={"total": buffer})
    assert buffer.tolist() == [107, 0]


# ---------------------------------------------------------------- emit


def emit_program(emit_words: int) -> object:
    code = [LANE, op("mul", d=1, a=0, imm=10, immediate=True), op("add", d=2, a=0, imm=1, immediate=True)]
    code += [op("li", d=3, imm=MASK), op("emit", a=1), op("exit")]
    return program(code, emit_words=emit_words)


def test_emit_appends_records_of_emit_words_registers_in_lane_order() -> None:
    result = run(emit_program(3), lanes=40)
    assert result.records.dtype == np.uint32 and result.records.shape == (40, 3)
    assert result.records.tolist() == [[10 * i, i + 1, MASK] for i in range(40)]
    assert result.dropped == 0


def test_emit_past_capacity_is_counted_in_dropped_never_a_fault() -> None:
    result = run(emit_program(1), lanes=50, emit_capacity=16)
    assert result.fault is None and result.dropped == 34
    assert result.records[:, 0].tolist() == [10 * i for i in range(16)]
    result = run(emit_program(2), lanes=5, emit_capacity=0)
    assert result.records.shape == (0, 2) and result.dropped == 5


def test_divergent_emits_append_in_step_order_then_lane_order() -> None:
    # odd lanes jump to a lower pc than even lanes, so within each group they emit one step earlier
    code = [
        LANE,
        op("and", d=1, a=0, imm=1, immediate=True),
        op("jnz", a=1, imm=4),
        op("jmp", imm=6),
        op("emit", a=0),  # pc 4: odd lanes
        op("exit"),
        op("emit", a=0),  # pc 6: even lanes
        op("exit"),
    ]
    result = run(program(code, emit_words=1), lanes=64)
    assert result.records[:, 0].tolist() == list(range(1, 64, 2)) + list(range(0, 64, 2))


@pytest.mark.parametrize("lanes", [1, 3])
def test_an_emitted_record_keeps_the_values_of_the_emit_step(lanes: int) -> None:
    code = [op("li", d=0, imm=7), op("emit", a=0), op("li", d=0, imm=8), op("exit")]
    assert run(program(code, emit_words=1), lanes=lanes).records.tolist() == [[7]] * lanes
