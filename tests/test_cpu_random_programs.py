"""CPU backend against random valid programs (tests/strategies.py) and a naive reference.

cpu_scalar_reference runs one lane and one instruction at a time with plain Python ints; the
NumPy backend must agree bit for bit: outputs, records, dropped count, fault and instruction
count. Random programs are prefixed with lane-dependent registers so that lanes diverge.
"""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
from cpu_scalar_reference import run_lanes
from strategies import RandomChooser, generate_program

from vyre_runtime.backends.cpu import Region, RunResult, run_program
from vyre_runtime.vir0.isa import BY_CODE, IMM_FORM, Op, Role, SpecialRegister
from vyre_runtime.vir0.program import Instruction, Program

FUEL = 300


def with_lane_prologue(program: Program) -> Program:
    """Start with r0 = lane id (and r1 = group lane): random branches then split the lanes."""
    prologue = [Instruction(Op.SREG, 0, 0, 0, SpecialRegister.LANE_ID)]
    if program.registers > 1:
        prologue.append(Instruction(Op.SREG, 1, 0, 0, SpecialRegister.GROUP_LANE))
    shift = len(prologue)
    code = []
    for instruction in program.code:
        info = BY_CODE[instruction.op & ~IMM_FORM]
        if info.imm == Role.JUMP_TARGET:
            instruction = instruction._replace(imm=instruction.imm + shift)
        code.append(instruction)
    return dataclasses.replace(program, code=(*prologue, *code))


def _case(seed: int) -> tuple[Program, bytes, int]:
    rng = random.Random(seed)
    program = with_lane_prologue(generate_program(RandomChooser(rng)))
    data = rng.randbytes(rng.choice([0, 1, 7, 64, 300]))
    return program, data, rng.choice([0, 2, 100])


def assert_matches_reference(seed: int, lanes: int) -> RunResult:
    program, data, capacity = _case(seed)
    mine = run_program(program, Region(data), lanes=lanes, fuel=FUEL, emit_capacity=capacity)
    reference = run_lanes(program, data, lanes, FUEL, capacity)
    where = f"seed {seed}, {lanes} lanes: {[i.mnemonic for i in program.code]}"
    fault = mine.fault and (mine.fault.code, mine.fault.pc, mine.fault.lane, mine.fault.detail)
    assert fault == reference.fault, where
    assert {name: words.tolist() for name, words in mine.outputs.items()} == reference.outputs, where
    assert mine.records.tolist() == reference.records and mine.dropped == reference.dropped, where
    assert mine.instructions == reference.instructions, where
    return mine


@pytest.mark.parametrize("block", range(6))
def test_one_lane_matches_the_scalar_reference(block: int) -> None:
    for seed in range(block * 50, (block + 1) * 50):
        assert_matches_reference(seed, lanes=1)


@pytest.mark.parametrize("lanes", [2, 33, 70])
def test_many_diverging_lanes_match_the_scalar_reference(lanes: int) -> None:
    for seed in range(1000 + lanes * 100, 1000 + lanes * 100 + 60):
        assert_matches_reference(seed, lanes)


def test_a_dispatch_repeats_exactly() -> None:
    for seed in range(5000, 5040):
        program, data, capacity = _case(seed)
        first, second = (
            run_program(program, Region(data), lanes=45, fuel=FUEL, emit_capacity=capacity) for _ in range(2)
        )
        assert all(np.array_equal(first.outputs[name], second.outputs[name]) for name in first.outputs)
        assert np.array_equal(first.records, second.records)
        assert (first.dropped, first.fault, first.instructions) == (second.dropped, second.fault, second.instructions)
