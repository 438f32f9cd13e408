"""Fused runs (Megakernel.register_fused) for the CPU and GPU tests: random groups of
tests/differential.py programs, run fused and one by one, and a raw fused RUN_PROGRAM slot."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from differential import LARGE_EMIT_CAPACITY, comparable, deterministic_program

from vyre_runtime.host_service import RunOutcome, SlotOutcome
from vyre_runtime.megakernel import Megakernel
from vyre_runtime.protocol.opcodes import MAX_FUSED_MEMBERS, BuiltinOpcode
from vyre_runtime.vir0.program import Program

Place = Callable[[Megakernel, bytes], Any]  # where a run's bytes lie: bytes, host_memory, a DeviceBuffer


@dataclass(frozen=True)
class FusedCase:
    programs: list[Program]
    data: bytes
    emit_capacity: int
    lanes: list[int | None]  # per member; None: the program's default
    own_lo: int
    own_hi: int
    file_offset: int
    chunk_index: int


def fused_case(seed: int) -> FusedCase:
    """1..MAX_FUSED_MEMBERS programs whose results VIR0 fully determines, over one region."""
    rng = random.Random(seed)
    members = rng.randint(1, MAX_FUSED_MEMBERS)
    programs = [deterministic_program(rng) for _ in range(members)]
    data = rng.randbytes(rng.choice((0, 1, 7, 64, 300, 4099)))
    own_lo = rng.randint(0, len(data))
    return FusedCase(
        programs=programs,
        data=data,
        emit_capacity=rng.choice((0, LARGE_EMIT_CAPACITY)),
        lanes=[rng.choice((None, 1, 33, 257)) for _ in range(members)],
        own_lo=own_lo,
        own_hi=rng.randint(own_lo, len(data)),
        file_offset=rng.choice((0, 5, 1 << 33)),
        chunk_index=rng.randrange(1 << 32),
    )


def as_bytes(megakernel: Megakernel, data: bytes) -> bytes:
    return data


def _submit(megakernel: Megakernel, handle: int, case: FusedCase, region: Any, lanes: Any) -> Any:
    return megakernel.submit(
        handle,
        region,
        lanes=lanes,
        emit_capacity=case.emit_capacity,
        own_lo=case.own_lo,
        own_hi=case.own_hi,
        file_offset=case.file_offset,
        chunk_index=case.chunk_index,
    )


def run_fused(megakernel: Megakernel, case: FusedCase, place: Place = as_bytes) -> list[RunOutcome]:
    """The case's programs as one fused group (fresh registrations: fresh global buffers)."""
    handles = [megakernel.register_program(program) for program in case.programs]
    group = megakernel.register_fused(handles)
    try:
        return _submit(megakernel, group, case, place(megakernel, case.data), case.lanes).result(60)
    finally:
        megakernel.unregister_program(group)
        for handle in handles:
            megakernel.unregister_program(handle)


def run_separately(megakernel: Megakernel, case: FusedCase, place: Place = as_bytes) -> list[RunOutcome]:
    """The case's programs one RUN_PROGRAM slot each, over the same bytes and arguments."""
    outcomes = []
    for program, lanes in zip(case.programs, case.lanes):
        handle = megakernel.register_program(program)
        try:
            outcomes.append(_submit(megakernel, handle, case, place(megakernel, case.data), lanes).result(60))
        finally:
            megakernel.unregister_program(handle)
    return outcomes


def comparable_members(outcomes: list[RunOutcome]) -> list[dict[str, Any]]:
    return [comparable(outcome) for outcome in outcomes]


def publish_fused_slot(
    megakernel: Megakernel, group: int, data: bytes, *, lanes_word: int = 0, context: int | None = None
) -> tuple[SlotOutcome, list[Any]]:
    """A RUN_PROGRAM slot naming ``group`` over ``data``, its arguments written by hand: how a
    device answers a fused slot the host API would never publish. Returns the slot's outcome and
    the backend's per-member results (None for a member that never ran)."""
    registry = megakernel.registry
    members = len(registry.fused[group].members)
    fused_run, region = registry.add_run([None] * members, 16, memoryview(data), registry.fused[group], [0] * members)
    try:
        megakernel.device.run_prepared(group, fused_run, region)
        args = (group, fused_run if context is None else context, region, 0, 0, len(data), 0, len(data), 0, 0, 0)
        outcome = megakernel.publish(BuiltinOpcode.RUN_PROGRAM, (*args, lanes_word)).result(10)
        return outcome, megakernel.device.run_result(group, fused_run)
    finally:
        megakernel.service.release_run(fused_run, region)
