"""Handles: after the registry's counter wraps, never one still live in any kind; a run's
handles are taken all or none and their indices freed when it is released."""

from __future__ import annotations

import pytest
from host_programs import counting_program

from vyre_runtime.errors import DispatchError
from vyre_runtime.registry import MAX_HANDLE, Registry


def test_a_wrapped_counter_skips_handles_live_in_any_kind() -> None:
    registry = Registry()
    program = registry.add_program(counting_program())  # handle 1, kept for the whole test
    region = registry.add_region(b"abc")  # handle 2
    registry._next = MAX_HANDLE  # four billion handles later
    context = registry.add_context(None, 0)
    assert context == MAX_HANDLE
    # the kernel tells a fused group from a program by the handle alone: 1 must not come back
    group = registry.add_fused((program,))
    assert group not in (program, region)
    assert registry.add_region(b"d") not in (program, region, context, group)


def test_before_the_counter_wraps_handles_simply_count() -> None:
    registry = Registry()
    handles = [registry.add_region(b"x") for _ in range(5)]
    assert handles == [1, 2, 3, 4, 5]


def test_a_run_takes_its_handles_all_or_none() -> None:
    registry = Registry(index_capacity={"context": 4, "region": 2, "fused_run": 4})
    program = registry.add_program(counting_program())
    group = registry.fused[registry.add_fused((program,))]
    runs = [registry.add_run([None], 16, b"a"), registry.add_run([7], 16, b"b", group, [3])]
    context, region = runs[0]
    assert registry.contexts[context].fuel is None and registry.regions[region] == b"a"
    fused, fused_region = runs[1]
    assert registry.regions[fused_region] == b"b"
    (member,) = registry.fused_runs[fused].contexts
    assert registry.contexts[member].fuel == 7 and registry.fused_runs[fused].lanes == (3,)
    live = {kind: set(indices) for kind, indices in registry._live_indices.items()}
    with pytest.raises(DispatchError, match="region records"):  # both regions in use
        registry.add_run([None], 16, b"c")
    # the context the failed run took first went back: no handle or index leaked
    assert {kind: set(indices) for kind, indices in registry._live_indices.items()} == live
    assert len(registry.contexts) == 2 and len(registry.regions) == 2


def test_releasing_a_run_frees_every_index_it_took() -> None:
    registry = Registry(index_capacity={"context": 2, "region": 1, "fused_run": 1})
    program = registry.add_program(counting_program())
    group = registry.fused[registry.add_fused((program,))]
    for _ in range(3):  # each run reuses the indices the last one freed
        context, region = registry.add_run([None, None], 16, b"x", group, [0, 0])
        registry.release_run(context, region)
        assert not registry.contexts and not registry.regions and not registry.fused_runs
        assert all(not indices for indices in registry._live_indices.values())


@pytest.mark.parametrize("fused", [False, True])
def test_a_run_whose_slot_fails_internally_gives_back_its_handles(monkeypatch, fused) -> None:
    """A backend bug ends the slot FAULT INTERNAL: the caller gets the error, and the run's context
    and region (a fused run's member contexts too) are released like any finished run's."""
    from vyre_runtime.errors import BackendError
    from vyre_runtime.megakernel import Megakernel
    from vyre_runtime.protocol.opcodes import BuiltinOpcode

    with Megakernel(backend="cpu", slots=16, workers=1) as megakernel:
        handle = megakernel.register_program(counting_program())
        if fused:
            handle = megakernel.register_fused([handle])
        execute = megakernel.device._execute

        def broken(context, slot, opcode, args):
            if opcode == BuiltinOpcode.RUN_PROGRAM:
                raise RuntimeError("a backend bug")
            return execute(context, slot, opcode, args)

        monkeypatch.setattr(megakernel.device, "_execute", broken)
        with pytest.raises(BackendError, match="the backend failed on slot"):
            megakernel.submit(handle, b"x" * 64).result(10)
        registry = megakernel.registry
        assert not registry.contexts and not registry.regions and not registry.fused_runs
        monkeypatch.setattr(megakernel.device, "_execute", execute)
        assert megakernel.submit(handle, b"x" * 64).result(10) is not None  # the runtime serves on
