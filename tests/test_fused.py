"""Fused runs on the CPU backend (the reference): one RUN_PROGRAM slot runs every member of a
group over the same bytes, and each member's result equals its own run's, faults included."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fused_cases import comparable_members, fused_case, publish_fused_slot, run_fused, run_separately
from host_programs import counting_program, faulting_program
from hypothesis import given, settings
from hypothesis import strategies as st

from vyre_runtime.errors import DispatchError
from vyre_runtime.megakernel import Megakernel
from vyre_runtime.protocol.layout import SlotFault
from vyre_runtime.protocol.opcodes import MAX_FUSED_MEMBERS, USER_OPCODE_BASE


@pytest.fixture(scope="module")
def megakernel() -> Iterator[Megakernel]:
    with Megakernel(backend="cpu", slots=64, workers=2) as mk:
        yield mk


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 1 << 32))
def test_every_member_of_a_fused_run_equals_its_own_run(megakernel, seed):
    case = fused_case(seed)
    fused = run_fused(megakernel, case)
    assert len(fused) == len(case.programs)
    assert comparable_members(fused) == comparable_members(run_separately(megakernel, case))


def test_members_see_the_same_bytes_and_keep_their_own_lanes_and_globals(megakernel):
    counters = [megakernel.register_program(counting_program()) for _ in range(3)]
    group = megakernel.register_fused(counters)
    first = megakernel.submit(group, b"x" * 100, lanes=[2, None, 5]).result(10)
    second = megakernel.submit(group, b"y" * 7, lanes=3).result(10)
    assert [int(outcome.outputs["hits"][0]) for outcome in first] == [2, 8, 5]  # counting_program: 8 lanes
    assert [int(outcome.outputs["bytes"][0]) for outcome in first] == [200, 800, 500]
    assert [int(outcome.outputs["hits"][0]) for outcome in second] == [3, 3, 3]
    assert all(outcome.ok for outcome in [*first, *second])


def test_a_faulting_member_reports_its_own_fault_and_the_others_still_run(megakernel):
    counter, trap, oob = (
        megakernel.register_program(program)
        for program in (counting_program(), faulting_program("trap"), faulting_program("oob"))
    )
    group = megakernel.register_fused([trap, counter, oob])
    faulted_before = megakernel.stats().faulted
    trapped, counted, out_of_bounds = megakernel.submit(group, b"abc").result(10)
    assert trapped.fault is not None and trapped.fault.code == SlotFault.TRAP and trapped.fault.detail == 1234
    assert counted.ok and int(counted.outputs["hits"][0]) == 8 and int(counted.outputs["bytes"][0]) == 8 * 3
    assert out_of_bounds.fault is not None and out_of_bounds.fault.code == SlotFault.OOB_INPUT
    assert out_of_bounds.fault.detail == 1 << 30  # a region offset, as in its own run
    alone = megakernel.submit(oob, b"abc").result(10)
    assert alone.fault == out_of_bounds.fault
    assert megakernel.stats().faulted == faulted_before + 1  # only the lone run's slot ended FAULT


def test_the_slot_of_a_fused_run_counts_members_faults_and_instructions(megakernel):
    counter, trap = (megakernel.register_program(p) for p in (counting_program(), faulting_program("trap")))
    group = megakernel.register_fused([counter, trap])
    outcome, results = publish_fused_slot(megakernel, group, b"abcd")
    assert all(result is not None for result in results)
    members, faulted, low, high = outcome.results
    assert outcome.ok and members == 2 and faulted == 0b10
    assert low | high << 32 == 8 * 6 + 4 * 1  # counting_program: 6 instructions x 8 lanes; trap: 1 x 4


@pytest.mark.parametrize("bad", ["context", "lanes"])
def test_a_malformed_fused_slot_faults_before_any_member_runs(megakernel, bad):
    group = megakernel.register_fused([megakernel.register_program(counting_program()) for _ in range(2)])
    if bad == "context":
        outcome, results = publish_fused_slot(megakernel, group, b"abcd", context=999_999)
        expected = (SlotFault.BAD_HANDLE, 999_999)
    else:
        outcome, results = publish_fused_slot(megakernel, group, b"abcd", lanes_word=4)
        expected = (SlotFault.BAD_ARGUMENT, 4)
    assert outcome.fault is not None and (outcome.fault.code, outcome.fault.detail) == expected
    assert results == [None, None]


def test_fuel_is_per_member_and_one_running_dry_leaves_the_others(megakernel):
    handles = [megakernel.register_program(counting_program()) for _ in range(2)]
    group = megakernel.register_fused(handles)
    outcomes = megakernel.submit(group, b"abc", fuel=[1, None]).result(10)
    assert outcomes[0].fault is not None and outcomes[0].fault.code == SlotFault.FUEL_EXHAUSTED
    assert outcomes[1].ok


@pytest.mark.parametrize(
    ("members", "message"),
    [
        (lambda h: [], f"1..{MAX_FUSED_MEMBERS} programs, not 0"),
        (lambda h: h[:1] * (MAX_FUSED_MEMBERS + 1), f"not {MAX_FUSED_MEMBERS + 1}"),
        (lambda h: [h[0], h[1], h[0]], "appears twice"),
        (lambda h: [h[0], 424_242], "not registered"),
        (lambda h: [h[0], "1"], "not a program handle"),
        (lambda h: [h[0], h[2]], "groups do not nest"),
    ],
    ids=["none", "nine", "duplicate", "unknown", "not-a-handle", "nested"],
)
def test_register_fused_refuses_bad_groups_with_a_fix(megakernel, members, message):
    handles = [megakernel.register_program(counting_program()) for _ in range(2)]
    handles.append(megakernel.register_fused(handles))
    with pytest.raises(DispatchError, match=message) as raised:
        megakernel.register_fused(members(handles))
    assert raised.value.fix != DispatchError.default_fix


def test_register_fused_takes_a_sequence(megakernel):
    with pytest.raises(DispatchError, match="sequence of program handles"):
        megakernel.register_fused(7)  # type: ignore[arg-type]


def test_a_member_cannot_be_unregistered_while_its_group_exists(megakernel):
    handles = [megakernel.register_program(counting_program()) for _ in range(2)]
    group = megakernel.register_fused(handles)
    with pytest.raises(DispatchError, match=f"member of fused group\\(s\\) \\[{group}\\]"):
        megakernel.unregister_program(handles[0])
    megakernel.unregister_program(group)
    with pytest.raises(DispatchError, match="not registered"):
        megakernel.submit(group, b"abc")
    for handle in handles:
        megakernel.unregister_program(handle)


@pytest.mark.parametrize("fused", [False, True])
def test_a_run_short_of_a_region_record_gives_back_its_context(megakernel, fused):
    """CUDA's record tables are fixed (the registry's index capacities): a run that got its
    context (a fused run: its members' contexts too) but no region record gives them back; a
    batch whose third run is refused so leaves every record as it found it."""
    program = megakernel.register_program(counting_program())
    handle = megakernel.register_fused([program]) if fused else program
    registry = megakernel.registry
    before = (len(registry.contexts), len(registry.fused_runs), len(registry.regions))
    registry.index_capacity["region"] = len(registry.regions) + 2
    try:
        with pytest.raises(DispatchError, match="region records"):
            megakernel.run_template(handle).submit_many([(b"abcd", 0, 4, 0, i) for i in range(3)])
    finally:
        del registry.index_capacity["region"]
    assert (len(registry.contexts), len(registry.fused_runs), len(registry.regions)) == before
    if fused:
        megakernel.unregister_program(handle)
    megakernel.unregister_program(program)


def test_a_group_is_not_a_user_opcode_and_per_member_options_must_match_its_size(megakernel):
    group = megakernel.register_fused([megakernel.register_program(counting_program()) for _ in range(2)])
    with pytest.raises(DispatchError, match="user opcode runs one program"):
        megakernel.bind_opcode(USER_OPCODE_BASE, group)
    with pytest.raises(DispatchError, match="lists 3 values for 2 program"):
        megakernel.submit(group, b"abc", lanes=[1, 2, 3])
    with pytest.raises(DispatchError, match="fuel=0"):
        megakernel.submit(group, b"abc", fuel=[0, None])


def test_a_run_template_runs_as_submit_does_and_checks_its_options_once(megakernel):
    counters = [megakernel.register_program(counting_program()) for _ in range(2)]
    group = megakernel.register_fused(counters)
    with pytest.raises(DispatchError, match="lanes lists 3 values"):
        megakernel.run_template(group, lanes=[1, 2, 3])
    template = megakernel.run_template(group, lanes=[2, None])
    data = bytearray(b"z" * 64)
    via_template = [template.submit(memoryview(data), own_lo=4, own_hi=60, chunk_index=i).result(10) for i in range(3)]
    via_submit = megakernel.submit(group, bytes(data), lanes=[2, None], own_lo=4, own_hi=60).result(10)
    assert all(comparable_members(outcomes) == comparable_members(via_submit) for outcomes in via_template)
    with pytest.raises(DispatchError, match="own range"):
        template.submit(b"abc", own_lo=2, own_hi=5)
    runs = [(memoryview(data), 4, 60, 64 * i, i) for i in range(5)]  # one batch (a stream's ready chunks)
    assert all(comparable_members(f.result(10)) == comparable_members(via_submit) for f in template.submit_many(runs))
    assert template.submit_many([]) == []
    contexts, published = len(megakernel.registry.contexts), megakernel.stats().published
    with pytest.raises(DispatchError, match="own range"):  # all or none: the first run is released again
        template.submit_many([(b"abcd", 0, 4, 0, 0), (b"abc", 2, 5, 0, 1)])
    assert len(megakernel.registry.contexts) == contexts and megakernel.stats().published == published
    megakernel.reserve_run_staging(1 << 20, 4)  # nothing to reserve on the CPU backend
    megakernel.unregister_program(group)
    with pytest.raises(DispatchError, match="not registered"):
        template.submit(b"abc")
    for counter in counters:
        megakernel.unregister_program(counter)
