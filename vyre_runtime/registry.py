"""Host-side tables that slot arguments refer to by handle: programs, run contexts, data
regions, DFA tables, user-opcode bindings and LOAD_MISS resources.

A slot carries only u32 handles; a backend resolves them here (the CPU backend directly, the
CUDA backend through device copies of these tables). Handle 0 is never valid, so a zeroed
argument cannot name anything; an unknown handle ends the slot as FAULT(BAD_HANDLE).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vyre_runtime.errors import DispatchError, ProtocolError
from vyre_runtime.protocol.opcodes import MAX_FUSED_MEMBERS, is_user_opcode, tenant_window
from vyre_runtime.vir0.isa import Scope
from vyre_runtime.vir0.program import Program

MAX_HANDLE = 0xFFFFFFFF
MIN_FUSED_MEMBERS = 1  # a group of one: a single program whose host-mapped input is staged in device memory first
ResourceLoader = Callable[[int, int], bytes]  # (offset, nbytes) -> bytes


@dataclass
class RegisteredProgram:
    handle: int
    program: Program
    global_buffers: dict[str, np.ndarray]


@dataclass
class RunContext:
    """Per-run parameters and, once the run ends, its result (set by the backend)."""

    handle: int
    fuel: int | None
    emit_capacity: int
    result: Any = None


@dataclass(frozen=True)
class FusedGroup:
    """Programs that run one after another over the same bytes from one RUN_PROGRAM slot
    (docs/PROTOCOL.md, "Fused runs"); ``members`` are program handles, in result order."""

    handle: int
    members: tuple[int, ...]


@dataclass
class FusedRun:
    """One fused run in flight: a run context per member (in member order) and each member's
    lane count (0: the program's default). Its ``result`` is one result per member."""

    handle: int
    contexts: tuple[int, ...]
    lanes: tuple[int, ...]


@dataclass
class Registry:
    programs: dict[int, RegisteredProgram] = field(default_factory=dict)
    contexts: dict[int, RunContext] = field(default_factory=dict)
    regions: dict[int, Any] = field(default_factory=dict)  # handle -> bytes-like
    fused: dict[int, FusedGroup] = field(default_factory=dict)  # fused-group handle -> its members
    fused_runs: dict[int, FusedRun] = field(default_factory=dict)  # a fused run's context handle
    dfas: dict[int, np.ndarray] = field(default_factory=dict)  # handle -> (states, 256) uint32
    opcode_programs: dict[int, int] = field(default_factory=dict)  # user opcode -> program handle
    resources: dict[int, ResourceLoader] = field(default_factory=dict)
    # A backend whose device finds a record at index `handle % capacity` (the CUDA tables) sets
    # the capacity per kind ("program", "context", "region", "dfa"); a new handle of that kind
    # then never lands on an index a live handle of the same kind holds (see _new_handle).
    index_capacity: dict[str, int] = field(default_factory=dict)
    # programs and fused groups removed so far: what was checked against the registry before a
    # removal (Megakernel.submit's templates) is checked again after it
    removals: int = 0
    _next: int = 1
    _wrapped: bool = False  # the counter passed MAX_HANDLE: a new handle may equal a live one
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _live_indices: dict[str, set[int]] = field(default_factory=dict)

    def _new_handle(self, kind: str) -> int:
        """The next handle; with an index capacity for ``kind``, the next whose index is free.

        One counter serves every kind, so a long-lived context would otherwise collide with a
        later one after `capacity` handles: skipping occupied indices keeps `handle % capacity`
        unique among live handles of a kind (at most `capacity` are live at once).
        Once the counter has wrapped (2^32 handles: days of a busy stream, two per run), a handle
        still live in any kind is skipped too: the kernel tells a fused group from a program by
        its handle alone, so the two must never share one.
        """
        with self._lock:
            return self._take_handle(kind)

    def _new_handles(self, kinds: tuple[str, ...]) -> list[int]:
        """_new_handle for each of ``kinds`` under one lock hold (a run's context and region:
        one lock round per run, not one per handle); all or none."""
        taken: list[tuple[str, int]] = []
        with self._lock:
            try:
                for kind in kinds:
                    taken.append((kind, self._take_handle(kind)))
            except BaseException:  # (a kind's records all in use) the handles taken go back
                self._drop_indices(taken)
                raise
        return [handle for _, handle in taken]

    def _take_handle(self, kind: str) -> int:
        """_new_handle's work; call with the lock held."""
        capacity = self.index_capacity.get(kind)
        live = self._live_indices.setdefault(kind, set())
        if capacity is not None and len(live) >= capacity:
            raise DispatchError(
                f"all {capacity} {kind} records of this device are in use",
                "wait for runs to complete (or register fewer programs / DFAs on one Megakernel)",
            )
        while True:
            handle = self._next
            if self._next < MAX_HANDLE:
                self._next += 1
            else:
                self._next, self._wrapped = 1, True
            if self._wrapped and self._handle_live(handle):
                continue
            if capacity is None or handle % capacity not in live:
                break
        if capacity is not None:
            live.add(handle % capacity)
        return handle

    def _handle_live(self, handle: int) -> bool:
        tables = (self.programs, self.contexts, self.regions, self.fused, self.fused_runs, self.dfas)
        return any(handle in table for table in tables)

    def _forget_handle(self, kind: str, handle: int) -> None:
        with self._lock:
            self._drop_indices([(kind, handle)])

    def _drop_indices(self, handles: list[tuple[str, int]]) -> None:
        """Free the indices of these (kind, handle)s for new handles; call with the lock held."""
        for kind, handle in handles:
            capacity = self.index_capacity.get(kind)
            if capacity is not None:
                self._live_indices.get(kind, set()).discard(handle % capacity)

    def add_program(self, program: Program) -> int:
        handle = self._new_handle("program")
        buffers = {
            b.name: np.full(b.words, b.init, dtype=np.uint32) for b in program.bindings if b.scope == Scope.GLOBAL
        }
        self.programs[handle] = RegisteredProgram(handle, program, buffers)
        return handle

    def add_context(self, fuel: int | None, emit_capacity: int) -> int:
        handle = self._new_handle("context")
        self.contexts[handle] = RunContext(handle, fuel, emit_capacity)
        return handle

    def add_fused(self, members: tuple[int, ...]) -> int:
        """A fused group of registered programs (the checks with their fixes: _check_fused)."""
        self._check_fused(members)
        handle = self._new_handle("fused")
        self.fused[handle] = FusedGroup(handle, members)
        return handle

    def _check_fused(self, members: tuple[int, ...]) -> None:
        if not MIN_FUSED_MEMBERS <= len(members) <= MAX_FUSED_MEMBERS:
            raise DispatchError(
                f"a fused group has {MIN_FUSED_MEMBERS}..{MAX_FUSED_MEMBERS} programs, not {len(members)}",
                "split more programs over several groups",
            )
        for member in members:
            if isinstance(member, bool) or not isinstance(member, int):
                raise DispatchError(f"fused member {member!r} is not a program handle", "pass register_program's")
            if member in self.fused:
                raise DispatchError(f"handle {member} is a fused group; groups do not nest", "list its programs")
            if member not in self.programs:
                raise DispatchError(f"program handle {member} is not registered", "use register_program's handle")
        if len(set(members)) != len(members):
            duplicate = next(m for m in members if members.count(m) > 1)
            raise DispatchError(
                f"program {duplicate} appears twice in the fused group",
                "register the program twice (each handle has its own global buffers) or list it once",
            )

    def groups_using(self, program: int) -> list[int]:
        """Fused groups that have ``program`` as a member."""
        return [group.handle for group in self.fused.values() if program in group.members]

    def remove_fused(self, handle: int) -> None:
        if self.fused.pop(handle, None) is None:
            raise DispatchError(f"fused group {handle} is not registered", "use register_fused's handle")
        self.removals += 1
        self._forget_handle("fused", handle)

    def add_run(
        self,
        fuel: list[int | None],
        emit_capacity: int,
        data: Any,
        group: FusedGroup | None = None,
        lanes: list[int] | None = None,
    ) -> tuple[int, int]:
        """A run's handles, taken under one lock hold, all or none: (context, region) with the
        run context (``fuel[0]``) and ``data`` as the region; for a fused ``group``, the context
        is its fused run (a context per member, ``fuel`` and ``lanes`` one per member)."""
        if group is None:
            context, region = self._new_handles(("context", "region"))
            self.contexts[context] = RunContext(context, fuel[0], emit_capacity)
        else:
            *members, context, region = self._new_handles(("context",) * len(fuel) + ("fused_run", "region"))
            for member, member_fuel in zip(members, fuel):
                self.contexts[member] = RunContext(member, member_fuel, emit_capacity)
            self.fused_runs[context] = FusedRun(context, tuple(members), tuple(lanes or [0] * len(fuel)))
        self.regions[region] = data
        return context, region

    def add_region(self, data: Any) -> int:
        handle = self._new_handle("region")
        self.regions[handle] = data
        return handle

    def add_dfa(self, table: bytes) -> int:
        from vyre_runtime.vir0.verify import dfa_state_count

        try:
            states = dfa_state_count(table)
        except ValueError as error:
            raise DispatchError(f"not a valid DFA table: {error}", "build it with vir0.compile_patterns") from None
        handle = self._new_handle("dfa")
        self.dfas[handle] = np.frombuffer(table, dtype="<u4", offset=4).reshape(states, 256).copy()
        return handle

    def bind_opcode(self, opcode: int, program_handle: int, tenant: int) -> None:
        if not is_user_opcode(opcode) or opcode not in tenant_window(tenant):
            window = tenant_window(tenant)
            raise ProtocolError(
                f"opcode {opcode:#x} is not in tenant {tenant}'s user window {window.start:#x}..{window.stop - 1:#x}"
            )
        if program_handle in self.fused:
            raise DispatchError(
                f"handle {program_handle} is a fused group; a user opcode runs one program", "submit() the group"
            )
        if program_handle not in self.programs:
            raise DispatchError(f"program handle {program_handle} is not registered", "use register_program's handle")
        self.opcode_programs[opcode] = program_handle

    def add_resource(self, resource: int, loader: ResourceLoader) -> None:
        if not 0 <= resource <= MAX_HANDLE:
            raise DispatchError(f"resource id {resource} is not a u32")
        self.resources[resource] = loader

    def remove_program(self, handle: int) -> None:
        """Forget a program and every user opcode bound to it."""
        if self.programs.pop(handle, None) is None:
            raise DispatchError(f"program handle {handle} is not registered", "use register_program's handle")
        self.removals += 1
        self._forget_handle("program", handle)
        for opcode in [op for op, bound in self.opcode_programs.items() if bound == handle]:
            del self.opcode_programs[opcode]

    def release_run(self, context: int, region: int) -> None:
        """Forget a run's context (a fused run's member contexts with it) and its region; their
        indices are freed under one lock hold."""
        forgotten: list[tuple[str, int]] = []
        fused_run = self.fused_runs.pop(context, None)
        if fused_run is not None:
            forgotten.append(("fused_run", context))
            for member_context in fused_run.contexts:
                if self.contexts.pop(member_context, None) is not None:
                    forgotten.append(("context", member_context))
        if self.contexts.pop(context, None) is not None:
            forgotten.append(("context", context))
        if self.regions.pop(region, None) is not None:
            forgotten.append(("region", region))
        if forgotten:
            with self._lock:
                self._drop_indices(forgotten)
