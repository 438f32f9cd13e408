"""`RunTemplate`: the options of `Megakernel.submit` checked once, for many runs of one program.

A stream submits one run per chunk, thousands of them with the same program and options, and
each run's host work bounds its GB/s (BENCHMARKS.md: the stream thread is busy in Python). The
template resolves the handle's fused group, checks lanes, fuel, emit capacity, tenant and
priority when it is made; `submit` then checks only what varies per run (the region and its
owned range, the file offset and chunk index) and stages and publishes the run.
`Megakernel.submit` is a template used once, so both take the same path.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

import numpy as np

from vyre_runtime.errors import DispatchError, ProtocolError
from vyre_runtime.protocol.codec import SlotRequest
from vyre_runtime.protocol.layout import Priority
from vyre_runtime.protocol.opcodes import BuiltinOpcode
from vyre_runtime.vir0.isa import MAX_LANES

if TYPE_CHECKING:
    from vyre_runtime.megakernel import Megakernel

U32 = 0xFFFFFFFF
# one run of RunTemplate.submit_many: (data, own_lo, own_hi or None, file_offset, chunk_index)
RunSpec = tuple[Any, int, int | None, int, int]


class RunTemplate:
    """RUN_PROGRAM of ``handle`` with fixed options (Megakernel.run_template)."""

    def __init__(
        self,
        megakernel: Megakernel,
        handle: int,
        *,
        lanes: int | Sequence[int | None] | None = None,
        fuel: int | Sequence[int | None] | None = None,
        emit_capacity: int = 65536,
        tenant: int = 0,
        priority: Priority = Priority.NORMAL,
        timeout: float | None = None,
    ) -> None:
        registry = megakernel.registry
        self._group = registry.fused.get(handle)
        if self._group is None and handle not in registry.programs:
            raise DispatchError(f"program handle {handle} is not registered", "use register_program's handle")
        members = 1 if self._group is None else len(self._group.members)
        self._lanes = _per_member("lanes", lanes, members, MAX_LANES, str(MAX_LANES))
        self._fuel = _per_member("fuel", fuel, members, U32, "2^32-1")
        if not 0 <= emit_capacity <= U32:
            raise DispatchError(f"emit_capacity={emit_capacity}; allowed 0..2^32-1 records")
        self._priority = Priority(priority)
        SlotRequest(BuiltinOpcode.RUN_PROGRAM, (), tenant, self._priority).validate(megakernel.layout)
        self._megakernel = megakernel
        self.handle = handle
        self._emit_capacity = emit_capacity
        self._tenant = tenant
        self._timeout = timeout
        # each member's lanes travel in a fused run's record; then the slot's LANES word is 0
        self._lanes_word = (self._lanes[0] or 0) if self._group is None else 0
        self._member_lanes = [count or 0 for count in self._lanes]

    def submit(
        self, data: Any, *, own_lo: int = 0, own_hi: int | None = None, file_offset: int = 0, chunk_index: int = 0
    ) -> Future:
        """Run the program over ``data`` (as Megakernel.submit takes it), owning bytes
        ``own_lo..own_hi`` of it; the future resolves as submit()'s does."""
        self._check_registered()
        args, run = self._stage(data, own_lo, own_hi, file_offset, chunk_index)
        try:
            return self._megakernel._publish_runs([args], [run], self._tenant, self._priority, self._timeout)[0]
        except BaseException:
            self._megakernel.service.release_run(run[1], run[2])
            raise

    def submit_many(self, runs: Sequence[RunSpec]) -> list[Future]:
        """submit() for several runs, each given as (data, own_lo, own_hi, file_offset,
        chunk_index): each is checked and staged as submit() does, then all are published as one
        batch (Megakernel._publish_runs: one allocation, lock hold and doorbell ring), so a stream
        that has several chunks ready pays the publication once. All or none: if one run fails its
        checks or staging, or the batch cannot be published, the staged runs are released and
        nothing is published. The batch takes that many ring slots at once: keep it to a small
        share of the ring."""
        if not runs:
            return []
        self._check_registered()
        staged_args: list[tuple[int, ...]] = []
        staged_runs: list[tuple[int, int, int]] = []
        try:
            for data, own_lo, own_hi, file_offset, chunk_index in runs:
                args, run = self._stage(data, own_lo, own_hi, file_offset, chunk_index)
                staged_args.append(args)
                staged_runs.append(run)
            return self._megakernel._publish_runs(staged_args, staged_runs, self._tenant, self._priority, self._timeout)
        except BaseException:
            release_run = self._megakernel.service.release_run
            for _, context, region in staged_runs:
                release_run(context, region)
            raise

    def _check_registered(self) -> None:
        registry, handle = self._megakernel.registry, self.handle
        if self._group is not None:
            if registry.fused.get(handle) is not self._group:
                raise DispatchError(f"fused group {handle} is not registered any more", "make a new template")
        elif handle not in registry.programs:
            raise DispatchError(f"program handle {handle} is not registered", "use register_program's handle")

    def _stage(
        self, data: Any, own_lo: int, own_hi: int | None, file_offset: int, chunk_index: int
    ) -> tuple[tuple[int, ...], tuple[int, int, int]]:
        """Check one run's arguments, take its context and region, stage it on the device:
        the slot's argument words and the run's (program, context, region) handles."""
        megakernel, registry, handle = self._megakernel, self._megakernel.registry, self.handle
        if type(data) is np.ndarray and data.dtype == np.uint8 and data.ndim == 1 and data.flags.c_contiguous:
            view, length = memoryview(data), data.nbytes  # host bytes (a stream's arena): the common case
        else:
            view, length = megakernel._region_data(data)
        own_hi = length if own_hi is None else own_hi
        if not (_integral(own_lo) and _integral(own_hi) and _integral(file_offset) and _integral(chunk_index)):
            raise ProtocolError(  # (a float passed the range checks below, then failed half-staged)
                f"own_lo={own_lo!r}, own_hi={own_hi!r}, file_offset={file_offset!r} and chunk_index={chunk_index!r} "
                "must be integers"
            )
        if length > U32 or not 0 <= own_lo <= own_hi <= length:
            raise DispatchError(f"own range {own_lo}..{own_hi} must lie inside the {length}-byte region")
        if not 0 <= file_offset < 1 << 64 or not 0 <= chunk_index <= U32:
            raise ProtocolError(f"file_offset={file_offset} must be a u64 and chunk_index={chunk_index} a u32")
        # all or none (a kind's records all in use: nothing to release)
        context, region = registry.add_run(self._fuel, self._emit_capacity, view, self._group, self._member_lanes)
        try:
            megakernel.device.run_prepared(handle, context, region)
        except BaseException:
            megakernel.service.release_run(context, region)
            raise
        # every word is a u32 by the checks above and the registry's handles; the opcode, tenant
        # and priority were validated when the template was made
        args = (
            handle, context, region, 0, 0, length, own_lo, own_hi,
            file_offset & U32, file_offset >> 32, chunk_index, self._lanes_word,
        )  # fmt: skip
        return args, (handle, context, region)


def _integral(value: Any) -> bool:
    return type(value) is int or isinstance(value, (int, np.integer))


def _per_member(name: str, value: Any, members: int, high: int, high_text: str) -> list[int | None]:
    """A submit option as one value per program run (a fused group's members, else one): a
    scalar (or None, each program's default) applies to all; a sequence lists one per member."""
    values = list(value) if isinstance(value, (list, tuple)) else [value] * members
    if len(values) != members:
        raise DispatchError(
            f"{name} lists {len(values)} values for {members} program(s)", f"pass one {name} per member, or one for all"
        )
    for item in values:
        is_integer = isinstance(item, (int, np.integer)) and not isinstance(item, bool)
        if item is not None and (not is_integer or not 1 <= item <= high):
            raise DispatchError(f"{name}={item}; allowed 1..{high_text}")
    return values
