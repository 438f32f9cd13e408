"""CPU interpreter: instruction semantics (docs/VIR0.md), one behaviour per test.

Arithmetic is checked lane-parallel: lane i loads operand pair i from tables, applies the
instruction, stores the result, and the whole column is compared with a plain-Python model.
Every opcode in isa.OPCODES must appear in one of the CPU test tables (last test).
"""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
from cpu_harness import (
    CANONICAL_NAN,
    FLOAT_BINARY_REFERENCE,
    FLOAT_UNARY_REFERENCE,
    INT64_REFERENCE,
    INT_BINARY_REFERENCE,
    INT_MIN,
    INT_UNARY_REFERENCE,
    INTERESTING_F32,
    INTERESTING_U32,
    MASK,
    op,
    out,
    per_lane_program,
    program,
    run,
)

from vyre_runtime.backends.cpu import Region, run_program
from vyre_runtime.vir0.isa import OPCODES, FaultCode, SpecialRegister

RNG = random.Random(1234)


def _pairs(values: list[int], extra_random: int) -> tuple[list[int], list[int]]:
    pairs = list(itertools.product(values, repeat=2))
    pairs += [(RNG.getrandbits(32), RNG.getrandbits(32)) for _ in range(extra_random)]
    pairs += [(RNG.getrandbits(32), RNG.choice([0, 1, MASK, 31, 32, 33, 64])) for _ in range(extra_random // 4)]
    return [a for a, _ in pairs], [b for _, b in pairs]


def run_binary(name: str, a: list[int], b: list[int]) -> list[int]:
    body = [op(name, d=4, a=2, b=3), op("sto", d=4, a=0, b=0)]
    result = run(per_lane_program(body, [a, b], len(a)), lanes=len(a))
    assert result.fault is None, result.fault and result.fault.describe()
    return result.outputs["out"].tolist()


def run_binary_immediate(name: str, a: list[int], imm: int) -> list[int]:
    body = [op(name, d=4, a=2, imm=imm, immediate=True), op("sto", d=4, a=0, b=0)]
    result = run(per_lane_program(body, [a], len(a)), lanes=len(a))
    assert result.fault is None
    return result.outputs["out"].tolist()


def run_unary(name: str, a: list[int]) -> list[int]:
    body = [op(name, d=4, a=2), op("sto", d=4, a=0, b=0)]
    result = run(per_lane_program(body, [a], len(a)), lanes=len(a))
    assert result.fault is None
    return result.outputs["out"].tolist()


def assert_column(name: str, a: list[int], b: list[int] | None, got: list[int], reference) -> None:
    for i, value in enumerate(got):
        expected = reference(a[i]) if b is None else reference(a[i], b[i])
        operands = f"{a[i]:#010x}" if b is None else f"{a[i]:#010x}, {b[i]:#010x}"
        assert value == expected, f"{name}({operands}) = {value:#010x}, expected {expected:#010x}"


# ---------------------------------------------------------------- integers


@pytest.mark.parametrize("name", sorted(INT_BINARY_REFERENCE))
def test_integer_binary_op_matches_reference_on_edges_and_random_values(name: str) -> None:
    a, b = _pairs(INTERESTING_U32, 300)
    assert_column(name, a, b, run_binary(name, a, b), INT_BINARY_REFERENCE[name])


@pytest.mark.parametrize("name", sorted(INT_BINARY_REFERENCE))
def test_integer_immediate_form_uses_imm_as_operand_b(name: str) -> None:
    a = INTERESTING_U32 + [RNG.getrandbits(32) for _ in range(40)]
    for imm in (0, 1, 31, 32, 0x80000000, MASK):
        got = run_binary_immediate(name, a, imm)
        assert_column(name, a, [imm] * len(a), got, INT_BINARY_REFERENCE[name])


@pytest.mark.parametrize("name", sorted(INT_UNARY_REFERENCE))
def test_integer_unary_op_matches_reference(name: str) -> None:
    a = INTERESTING_U32 + [1 << k for k in range(32)] + [RNG.getrandbits(32) for _ in range(200)]
    assert_column(name, a, None, run_unary(name, a), INT_UNARY_REFERENCE[name])


@pytest.mark.parametrize(
    ("name", "a", "b", "expected"),
    [
        ("divu", 7, 0, 0xFFFFFFFF),
        ("remu", 7, 0, 7),
        ("divs", 7, 0, 0xFFFFFFFF),
        ("rems", 0xFFFFFFF9, 0, 0xFFFFFFF9),
        ("divs", INT_MIN, MASK, INT_MIN),
        ("rems", INT_MIN, MASK, 0),
        ("divs", 0xFFFFFFF9, 2, 0xFFFFFFFD),  # -7 / 2 = -3 (toward zero)
        ("rems", 0xFFFFFFF9, 2, MASK),  # -7 % 2 = -1 (sign of the dividend)
        ("rems", 7, 0xFFFFFFFE, 1),  # 7 % -2 = 1
        ("shl", 1, 32, 0),
        ("shr", MASK, 32, 0),
        ("sar", INT_MIN, 32, MASK),
        ("sar", 0x7FFFFFFF, 100, 0),
        ("rotl", 0x80000001, 33, 0x00000003),
        ("rotr", 0x80000001, 32, 0x80000001),
        ("mulhu", MASK, MASK, 0xFFFFFFFE),
        ("mulhs", MASK, MASK, 0),  # -1 * -1 = 1
        ("mulhs", INT_MIN, 2, MASK),  # -2^31 * 2 = -2^32
        ("lts", MASK, 0, 1),
        ("ltu", MASK, 0, 0),
    ],
)
def test_integer_edge_case_from_the_notes(name: str, a: int, b: int, expected: int) -> None:
    assert run_binary(name, [a], [b]) == [expected]


def test_clz_and_ctz_of_zero_are_32() -> None:
    assert run_unary("clz", [0]) == [32]
    assert run_unary("ctz", [0]) == [32]


def test_destination_may_equal_a_source_register() -> None:
    code = [op("li", d=2, imm=5), op("li", d=3, imm=7), op("add", d=2, a=2, b=2), op("sub", d=3, a=2, b=3)]
    code += [op("sto", d=2, a=4, b=0), op("li", d=4, imm=1), op("sto", d=3, a=4, b=0), op("exit")]
    assert run(program(code, bindings=[out(2)])).outputs["out"].tolist() == [10, 3]


# ---------------------------------------------------------------- floats


def _float_pairs(extra: int) -> tuple[list[int], list[int]]:
    return _pairs(INTERESTING_F32, extra)


@pytest.mark.parametrize("name", sorted(FLOAT_BINARY_REFERENCE))
def test_float_binary_op_matches_ieee_reference(name: str) -> None:
    a, b = _float_pairs(400)
    assert_column(name, a, b, run_binary(name, a, b), FLOAT_BINARY_REFERENCE[name])


@pytest.mark.parametrize("name", sorted(FLOAT_BINARY_REFERENCE))
def test_float_immediate_form_takes_imm_as_f32_bits(name: str) -> None:
    a = INTERESTING_F32
    for imm in (0x3F800000, 0x80000000, 0x7FC00000, 0x00000001):
        assert_column(name, a, [imm] * len(a), run_binary_immediate(name, a, imm), FLOAT_BINARY_REFERENCE[name])


@pytest.mark.parametrize("name", sorted(FLOAT_UNARY_REFERENCE))
def test_float_unary_op_matches_reference(name: str) -> None:
    a = INTERESTING_F32 + [RNG.getrandbits(32) for _ in range(300)]
    if name in ("itof", "utof"):
        a += [*INTERESTING_U32, 16777217, 16777219, 33554435, 0x7FFFFFC0, 0xFFFFFF80, 0xFFFFFF7F]
    assert_column(name, a, None, run_unary(name, a), FLOAT_UNARY_REFERENCE[name])


def test_arithmetic_nans_are_canonical_whatever_the_input_payload() -> None:
    payload_nan, infinity, negative_infinity = 0xFFC12345, 0x7F800000, 0xFF800000
    invalid = {
        "fadd": (infinity, negative_infinity),
        "fsub": (infinity, infinity),
        "fmul": (0, infinity),
        "fdiv": (0, 0),
    }
    for name, (x, y) in invalid.items():
        assert run_binary(name, [payload_nan, 0x3F800000, x], [0x3F800000, 0x7F800001, y]) == [CANONICAL_NAN] * 3
    assert run_unary("fsqrt", [0xBF800000, payload_nan]) == [CANONICAL_NAN, CANONICAL_NAN]


def test_fneg_and_fabs_keep_a_nan_payload() -> None:
    assert run_unary("fneg", [0x7FC12345]) == [0xFFC12345]
    assert run_unary("fabs", [0xFFC12345]) == [0x7FC12345]


def test_fmin_fmax_signed_zeros_in_either_order() -> None:
    zeros = [0x80000000, 0x00000000]
    assert run_binary("fmin", zeros, zeros[::-1]) == [0x80000000, 0x80000000]
    assert run_binary("fmax", zeros, zeros[::-1]) == [0x00000000, 0x00000000]


def test_fmin_fmax_with_one_nan_return_the_other_operand_bits() -> None:
    assert run_binary("fmin", [0x7FC12345, 0x3F800000], [0x3F800000, 0xFFC00001]) == [0x3F800000, 0x3F800000]
    assert run_binary("fmax", [0x7F800001, 0x7FC12345], [0x80000000, 0x7FC00001]) == [0x80000000, CANONICAL_NAN]


def test_subnormals_are_kept_as_inputs_and_results() -> None:
    smallest, min_normal = 0x00000001, 0x00800000
    assert run_binary("fadd", [smallest], [smallest]) == [0x00000002]
    assert run_binary("fmul", [min_normal], [0x3F000000]) == [0x00400000]  # 2^-126 * 0.5
    assert run_binary("fsub", [min_normal], [0x007FFFFF]) == [smallest]


@pytest.mark.parametrize(
    ("name", "bits", "expected"),
    [
        ("ftoi", 0x4F000000, 0x7FFFFFFF),  # 2^31 saturates
        ("ftoi", 0xCF000000, 0x80000000),  # -2^31 fits
        ("ftoi", 0xCF000001, 0x80000000),  # below -2^31 saturates
        ("ftoi", 0x7F800000, 0x7FFFFFFF),
        ("ftoi", 0xFF800000, 0x80000000),
        ("ftoi", 0x7FC00000, 0),
        ("ftoi", 0xBFF00000, MASK),  # -1.875 -> -1
        ("ftou", 0x4F800000, MASK),  # 2^32 saturates
        ("ftou", 0x4F7FFFFF, 0xFFFFFF00),
        ("ftou", 0xBF000000, 0),  # -0.5 truncates to 0
        ("ftou", 0xBF800000, 0),  # -1.0
        ("ftou", 0xFFC00000, 0),
    ],
)
def test_float_to_integer_saturates_and_maps_nan_to_zero(name: str, bits: int, expected: int) -> None:
    assert run_unary(name, [bits]) == [expected]


def test_integer_to_float_rounds_to_nearest_even() -> None:
    assert run_unary("utof", [16777217, 16777219, MASK]) == [0x4B800000, 0x4B800002, 0x4F800000]
    assert run_unary("itof", [MASK, 0x80000000]) == [0xBF800000, 0xCF000000]


# ---------------------------------------------------------------- 64-bit pairs


def _u64_values() -> list[int]:
    edges = [0, 1, 2, 63, 64, 65, 0xFFFFFFFF, 0x100000000, 0x1FFFFFFFF, 2**63, 2**64 - 1, 0x7FFFFFFFFFFFFFFF]
    return edges + [RNG.getrandbits(64) for _ in range(40)]


@pytest.mark.parametrize("name", sorted(INT64_REFERENCE))
def test_pair_op_matches_reference_including_carries(name: str) -> None:
    pair_b, pair_result, reference = INT64_REFERENCE[name]
    pairs = list(itertools.product(_u64_values(), repeat=2))
    if not pair_b:
        pairs = [(x, y % 70 if i % 3 else y & MASK) for i, (x, y) in enumerate(pairs)]
    columns = [[x & MASK for x, _ in pairs], [x >> 32 for x, _ in pairs], [y & MASK for _, y in pairs]]
    columns.append([y >> 32 for _, y in pairs])
    body = [op(name, d=6, a=2, b=4)]  # a = r2:r3, b = r4:r5 (or r4 alone)
    body += [op("shl", d=8, a=0, imm=1, immediate=True), op("sto", d=6, a=8, b=0), op("sto", d=7, a=8, b=0, imm=1)]
    result = run(per_lane_program(body, columns, 2 * len(pairs)), lanes=len(pairs))
    words = result.outputs["out"].reshape(-1, 2)
    for (x, y), (low, high) in zip(pairs, words.tolist(), strict=True):
        expected = reference(x, y)
        got = low | high << 32 if pair_result else low
        assert got == expected, f"{name}({x:#x}, {y:#x}) = {got:#x}, expected {expected:#x}"


def test_mulwu_gives_the_full_unsigned_product() -> None:
    a = INTERESTING_U32 + [RNG.getrandbits(32) for _ in range(50)]
    b = [RNG.getrandbits(32) for _ in a]
    body = [op("mulwu", d=6, a=2, b=3), op("shl", d=8, a=0, imm=1, immediate=True)]
    body += [op("sto", d=6, a=8, b=0), op("sto", d=7, a=8, b=0, imm=1)]
    words = run(per_lane_program(body, [a, b], 2 * len(a)), lanes=len(a)).outputs["out"].reshape(-1, 2)
    assert [low | high << 32 for low, high in words.tolist()] == [x * y for x, y in zip(a, b, strict=True)]


def test_pair_result_may_overlap_its_sources() -> None:
    # add64 r3, r2, r4: the result pair r3:r4 overlaps both r2:r3 and r4:r5; reads come first
    code = [op("li", d=2, imm=MASK), op("li", d=3, imm=1), op("li", d=4, imm=1), op("li", d=5, imm=2)]
    code += [op("add64", d=3, a=2, b=4), op("li", d=0, imm=0), op("sto", d=3, a=0, b=0)]
    code += [op("li", d=0, imm=1), op("sto", d=4, a=0, b=0), op("exit")]
    # (1:0xFFFFFFFF) + (2:1) = 0x1_FFFFFFFF + 0x2_00000001 = 0x4_00000000
    assert run(program(code, bindings=[out(2)])).outputs["out"].tolist() == [0, 4]


# ---------------------------------------------------------------- moves and special registers


def test_mov_li_and_sel_with_condition_read_before_the_write() -> None:
    code = [op("li", d=1, imm=11), op("li", d=2, imm=22), op("li", d=3, imm=1), op("mov", d=4, a=1)]
    code += [op("sel", d=3, a=1, b=2, imm=3), op("li", d=5, imm=0), op("sel", d=5, a=1, b=2, imm=5)]
    code += [op("li", d=0, imm=0), op("sto", d=3, a=0, b=0), op("sto", d=4, a=0, b=0, imm=1)]
    code += [op("sto", d=5, a=0, b=0, imm=2), op("exit")]
    assert run(program(code, bindings=[out(3)])).outputs["out"].tolist() == [11, 11, 22]


def test_special_registers_report_the_dispatch() -> None:
    specials = list(SpecialRegister)
    code = [op("sreg", d=0, imm=SpecialRegister.LANE_ID), op("mul", d=1, a=0, imm=len(specials), immediate=True)]
    for k, special in enumerate(specials):
        code += [op("sreg", d=2, imm=special), op("sto", d=2, a=1, b=0, imm=k)]
    code.append(op("exit"))
    lanes = 70
    region = Region(b"x" * 100, own_lo=10, own_hi=90, file_offset=(5 << 32) | 7, chunk_index=3)
    prog = program(code, bindings=[out(lanes * len(specials))])
    result = run_program(prog, region, lanes=lanes, emit_capacity=9)
    rows = result.outputs["out"].reshape(lanes, len(specials))
    for lane in (0, 33, 69):
        expected = {
            SpecialRegister.LANE_ID: lane,
            SpecialRegister.LANE_COUNT: lanes,
            SpecialRegister.GROUP_LANE: lane % 32,
            SpecialRegister.GROUP_ID: lane // 32,
            SpecialRegister.REGION_LEN: 100,
            SpecialRegister.OWN_LO: 10,
            SpecialRegister.OWN_HI: 90,
            SpecialRegister.FILE_OFFSET_LO: 7,
            SpecialRegister.FILE_OFFSET_HI: 5,
            SpecialRegister.CHUNK_INDEX: 3,
            SpecialRegister.EMIT_CAPACITY: 9,
        }
        assert {SpecialRegister(k): v for k, v in enumerate(rows[lane].tolist())} == expected


def test_own_hi_defaults_to_the_region_length() -> None:
    code = [op("sreg", d=1, imm=SpecialRegister.OWN_HI), op("li", d=0, imm=0), op("sto", d=1, a=0, b=0), op("exit")]
    assert run(program(code, bindings=[out(1)]), b"abcde").outputs["out"].tolist() == [5]


# ---------------------------------------------------------------- control, fuel, faults


def test_nop_jmp_jz_jnz_follow_their_conditions() -> None:
    code = [
        op("nop"),
        op("li", d=1, imm=0),
        op("jz", a=1, imm=4),  # taken
        op("trap", imm=1),
        op("jnz", a=1, imm=3),  # not taken: r1 == 0
        op("li", d=1, imm=9),
        op("jnz", a=1, imm=8),  # taken
        op("trap", imm=2),
        op("jmp", imm=10),
        op("trap", imm=3),
        op("li", d=0, imm=0),
        op("sto", d=1, a=0, b=0),
        op("exit"),
    ]
    result = run(program(code, bindings=[out(1)]))
    assert result.fault is None and result.outputs["out"].tolist() == [9]
    assert result.instructions == 10  # nop li jz jnz li jnz jmp li sto exit


def test_trap_faults_with_the_user_code_and_keeps_earlier_stores() -> None:
    code = [op("li", d=1, imm=5), op("sto", d=1, a=2, b=0), op("trap", imm=0xDEADBEEF)]
    result = run(program(code, bindings=[out(1)]), lanes=3)
    assert result.fault is not None
    assert (result.fault.code, result.fault.pc, result.fault.lane, result.fault.detail) == (
        FaultCode.TRAP,
        2,
        0,
        0xDEADBEEF,
    )
    assert result.outputs["out"].tolist() == [5]
    assert "trap" in result.fault.describe() and "0xdeadbeef" in result.fault.describe()


def test_infinite_loop_ends_with_fuel_exhausted_not_a_hang() -> None:
    result = run(program([op("nop"), op("jmp", imm=0)]), lanes=64, fuel=1001)
    assert result.fault is not None
    assert (result.fault.code, result.fault.lane, result.fault.detail) == (FaultCode.FUEL_EXHAUSTED, 0, 0)
    assert result.fault.pc == 1  # 1001 instructions: nop, jmp, ..., nop; the next (a jmp) faults
    assert result.instructions == 1001 * 64


def test_fuel_exactly_enough_completes_and_one_less_faults_at_the_last_instruction() -> None:
    code = [op("li", d=1, imm=1), op("li", d=0, imm=0), op("sto", d=1, a=0, b=0), op("exit")]
    prog = program(code, bindings=[out(1)])
    assert run(prog, fuel=4).fault is None
    fault = run(prog, fuel=3).fault
    assert fault is not None and (fault.code, fault.pc) == (FaultCode.FUEL_EXHAUSTED, 3)


def test_default_fuel_and_lanes_come_from_the_program() -> None:
    prog = program([op("jmp", imm=0)], fuel=50, lanes=40)
    result = run_program(prog, Region(b""))
    assert result.lanes == 40 and result.instructions == 50 * 40
    assert result.fault is not None and result.fault.code == FaultCode.FUEL_EXHAUSTED


def test_lanes_with_different_loop_lengths_run_out_of_fuel_independently() -> None:
    # lane i loops 10 * i times; with fuel 200 only the long-looping lanes fault, the rest finish
    code = [
        op("sreg", d=0, imm=SpecialRegister.LANE_ID),
        op("mul", d=1, a=0, imm=10, immediate=True),
        op("jz", a=1, imm=5),
        op("sub", d=1, a=1, imm=1, immediate=True),
        op("jmp", imm=2),
        op("li", d=2, imm=1),
        op("sto", d=2, a=0, b=0),
        op("exit"),
    ]
    result = run(program(code, bindings=[out(40)]), lanes=40, fuel=200)
    finished = result.outputs["out"].tolist()
    # a lane needs 2 + 3 * 10i + 4 instructions
    assert finished == [1 if 6 + 30 * i <= 200 else 0 for i in range(40)]
    assert result.fault is not None and result.fault.lane == 7 and result.fault.code == FaultCode.FUEL_EXHAUSTED


def test_lowest_faulting_lane_is_reported_while_other_lanes_complete() -> None:
    code = [
        op("sreg", d=0, imm=SpecialRegister.LANE_ID),
        op("eq", d=1, a=0, imm=9, immediate=True),
        op("jnz", a=1, imm=9),
        op("eq", d=1, a=0, imm=5, immediate=True),
        op("jnz", a=1, imm=10),
        op("li", d=2, imm=1),
        op("sto", d=2, a=0, b=0),
        op("exit"),
        op("exit"),
        op("trap", imm=99),  # pc 9: lane 9
        op("ldi8", d=3, a=0, imm=1000),  # pc 10: lane 5 reads past the region
        op("exit"),
    ]
    result = run(program(code, bindings=[out(12)]), b"0123456789", lanes=12)
    assert result.outputs["out"].tolist() == [0 if lane in (5, 9) else 1 for lane in range(12)]
    assert result.fault is not None
    assert (result.fault.code, result.fault.pc, result.fault.lane, result.fault.detail) == (
        FaultCode.OOB_INPUT,
        10,
        5,
        1005,
    )


def test_instructions_counts_lane_instructions_including_a_faulting_one() -> None:
    code = [op("li", d=1, imm=100), op("ldi8", d=2, a=1), op("exit")]
    result = run(program(code), b"abc", lanes=5)
    assert result.fault is not None and result.instructions == 2 * 5


def test_every_opcode_has_a_cpu_test() -> None:
    import test_cpu_collectives
    import test_cpu_intrinsics
    import test_cpu_memory

    covered = set(INT_BINARY_REFERENCE) | set(INT_UNARY_REFERENCE) | set(FLOAT_BINARY_REFERENCE)
    covered |= set(FLOAT_UNARY_REFERENCE) | set(INT64_REFERENCE) | {"mulwu", "mov", "li", "sel", "sreg"}
    covered |= {"nop", "exit", "trap", "jmp", "jz", "jnz"}
    covered |= test_cpu_memory.COVERS | test_cpu_intrinsics.COVERS | test_cpu_collectives.COVERS
    assert {info.name for info in OPCODES} - covered == set()


def test_result_records_are_empty_with_zero_emit_words() -> None:
    result = run(program([op("exit")]), lanes=2)
    assert result.records.shape == (0, 0) and result.records.dtype == np.uint32 and result.dropped == 0
