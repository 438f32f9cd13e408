"""Handles after the registry's counter wraps: never one still live in any kind."""

from __future__ import annotations

from host_programs import counting_program

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
