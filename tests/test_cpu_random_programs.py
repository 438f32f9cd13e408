"""CPU backend against random valid programs (tests/strategies.py).

One lane: bit-identical to a naive scalar interpreter written separately (cpu_scalar_reference).
Many lanes: never raises, and two runs of the same dispatch are identical (the oracle must be
deterministic, including records, dropped counts and the reported fault).
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from cpu_scalar_reference import run_one_lane
from strategies import RandomChooser, generate_program

from vyre_runtime.backends.cpu import Region, RunResult, run_program

FUEL = 400


def _case(seed: int):  # noqa: ANN202
    rng = random.Random(seed)
    program = generate_program(RandomChooser(rng))
    data = rng.randbytes(rng.choice([0, 1, 7, 64, 300]))
    return program, data, rng.choice([0, 2, 100])


@pytest.mark.parametrize("block", range(8))
def test_one_lane_matches_the_scalar_reference_on_random_programs(block: int) -> None:
    for seed in range(block * 60, (block + 1) * 60):
        program, data, capacity = _case(seed)
        mine = run_program(program, Region(data), lanes=1, fuel=FUEL, emit_capacity=capacity)
        reference = run_one_lane(program, data, FUEL, capacity)
        where = f"seed {seed}: {[i.mnemonic for i in program.code]}"
        fault = mine.fault and (mine.fault.code, mine.fault.pc, mine.fault.lane, mine.fault.detail)
        assert fault == reference.fault, where
        assert {name: words.tolist() for name, words in mine.outputs.items()} == reference.outputs, where
        assert mine.records.tolist() == reference.records and mine.dropped == reference.dropped, where
        assert mine.instructions == reference.instructions, where


def _same(first: RunResult, second: RunResult) -> bool:
    return (
        all(np.array_equal(first.outputs[name], second.outputs[name]) for name in first.outputs)
        and np.array_equal(first.records, second.records)
        and (first.dropped, first.fault, first.instructions) == (second.dropped, second.fault, second.instructions)
    )


@pytest.mark.parametrize("lanes", [33, 70])
def test_many_lanes_never_raise_and_repeat_exactly(lanes: int) -> None:
    for seed in range(1000, 1150):
        program, data, capacity = _case(seed)
        first = run_program(program, Region(data), lanes=lanes, fuel=FUEL, emit_capacity=capacity)
        second = run_program(program, Region(data), lanes=lanes, fuel=FUEL, emit_capacity=capacity)
        assert _same(first, second), f"seed {seed}"
        assert first.records.shape[1:] == (program.emit_words,) and first.records.shape[0] <= capacity
        assert first.fault is None or (0 <= first.fault.lane < lanes and 0 <= first.fault.pc < len(program.code))
