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
from vyre_runtime.protocol.opcodes import is_user_opcode, tenant_window
from vyre_runtime.vir0.isa import Scope
from vyre_runtime.vir0.program import Program

MAX_HANDLE = 0xFFFFFFFF
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


@dataclass
class Registry:
    programs: dict[int, RegisteredProgram] = field(default_factory=dict)
    contexts: dict[int, RunContext] = field(default_factory=dict)
    regions: dict[int, Any] = field(default_factory=dict)  # handle -> bytes-like
    dfas: dict[int, np.ndarray] = field(default_factory=dict)  # handle -> (states, 256) uint32
    opcode_programs: dict[int, int] = field(default_factory=dict)  # user opcode -> program handle
    resources: dict[int, ResourceLoader] = field(default_factory=dict)
    # A backend whose device finds a record at index `handle % capacity` (the CUDA tables) sets
    # the capacity per kind ("program", "context", "region", "dfa"); a new handle of that kind
    # then never lands on an index a live handle of the same kind holds (see _new_handle).
    index_capacity: dict[str, int] = field(default_factory=dict)
    _next: int = 1
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _live_indices: dict[str, set[int]] = field(default_factory=dict)

    def _new_handle(self, kind: str) -> int:
        """The next handle; with an index capacity for ``kind``, the next whose index is free.

        One counter serves every kind, so a long-lived context would otherwise collide with a
        later one after `capacity` handles: skipping occupied indices keeps `handle % capacity`
        unique among live handles of a kind (at most `capacity` are live at once).
        """
        with self._lock:
            capacity = self.index_capacity.get(kind)
            live = self._live_indices.setdefault(kind, set())
            if capacity is not None and len(live) >= capacity:
                raise DispatchError(
                    f"all {capacity} {kind} records of this device are in use",
                    "wait for runs to complete (or register fewer programs / DFAs on one Megakernel)",
                )
            while True:
                handle = self._next
                self._next = self._next + 1 if self._next < MAX_HANDLE else 1
                if capacity is None or handle % capacity not in live:
                    break
            if capacity is not None:
                live.add(handle % capacity)
            return handle

    def _forget_handle(self, kind: str, handle: int) -> None:
        capacity = self.index_capacity.get(kind)
        if capacity is not None:
            with self._lock:
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
        self._forget_handle("program", handle)
        for opcode in [op for op, bound in self.opcode_programs.items() if bound == handle]:
            del self.opcode_programs[opcode]

    def release_run(self, context: int, region: int) -> None:
        if self.contexts.pop(context, None) is not None:
            self._forget_handle("context", context)
        if self.regions.pop(region, None) is not None:
            self._forget_handle("region", region)
