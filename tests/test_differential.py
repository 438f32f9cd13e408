"""The differential generator (tests/differential.py) itself: every program it makes verifies,
stays clear of the unspecified behaviours of docs/VIR0.md 7.7, and two different CPU schedules
(the NumPy backend and the one-lane-at-a-time scalar reference) agree on what is compared."""

from __future__ import annotations

import types

import pytest
from cpu_scalar_reference import run_lanes
from differential import comparable, deterministic_case, uses_only_deterministic_operations

from vyre_runtime.backends.cpu import Region, run_program
from vyre_runtime.vir0.verify import verify


def test_generated_programs_verify_and_avoid_unspecified_behaviour() -> None:
    for seed in range(400):
        program, _, _ = deterministic_case(seed)
        verify(program)
        assert uses_only_deterministic_operations(program), f"seed {seed}"


def _as_outcome(fault, outputs, records, dropped, instructions) -> types.SimpleNamespace:
    return types.SimpleNamespace(
        fault=fault, outputs=outputs, records=records, dropped=dropped, instructions=instructions
    )


@pytest.mark.parametrize("block", range(3))
def test_numpy_backend_and_scalar_reference_agree_on_generated_programs(block: int) -> None:
    for seed in range(block * 40, (block + 1) * 40):
        program, data, capacity = deterministic_case(seed)
        mine = run_program(program, Region(data), emit_capacity=capacity)
        reference = run_lanes(program, data, program.lanes, program.fuel, capacity)
        fault = mine.fault and (int(mine.fault.code), mine.fault.pc, mine.fault.lane, mine.fault.detail)
        reference_fault = reference.fault and tuple(int(x) for x in reference.fault)
        left = comparable(_as_outcome(None, mine.outputs, mine.records, mine.dropped, mine.instructions))
        right = comparable(
            _as_outcome(None, reference.outputs, reference.records, reference.dropped, reference.instructions)
        )
        assert (fault, left) == (reference_fault, right), f"seed {seed}"
