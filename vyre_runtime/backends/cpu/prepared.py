"""Turn a verified Program into what the interpreter runs: per-pc kinds and step closures.

Done once per program and cached (keyed by the program object, held weakly), so a run neither
re-verifies nor re-decodes. The dispatch table is derived from ``isa.OPCODES``: importing this
module fails if any opcode lacks a handler or a handler names no opcode.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from vyre_runtime.backends.cpu import alu, collectives, floats, intrinsics, memory
from vyre_runtime.backends.cpu.dfa_walk import DfaTable
from vyre_runtime.backends.cpu.step import Factory, Step, StepContext
from vyre_runtime.errors import VerifyError
from vyre_runtime.vir0 import isa
from vyre_runtime.vir0.isa import Op, Role
from vyre_runtime.vir0.program import Binding, Program
from vyre_runtime.vir0.verify import verify


class Kind(IntEnum):
    """How the scheduler treats the instruction at a pc."""

    STEP = 0  # call its step closure, then pc + 1
    NOP = 1
    EXIT = 2
    TRAP = 3
    JMP = 4
    JZ = 5
    JNZ = 6


CONTROL: dict[int, Kind] = {
    Op.NOP: Kind.NOP,
    Op.EXIT: Kind.EXIT,
    Op.TRAP: Kind.TRAP,
    Op.JMP: Kind.JMP,
    Op.JZ: Kind.JZ,
    Op.JNZ: Kind.JNZ,
}

_HANDLER_MODULES = (alu, floats, memory, collectives, intrinsics)


def _dispatch_table() -> dict[int, Factory]:
    handlers: dict[int, Factory] = {}
    for module in _HANDLER_MODULES:
        for code, factory in module.HANDLERS.items():
            if code in handlers or code in CONTROL:
                raise RuntimeError(f"opcode {code:#04x} has two CPU handlers ({module.__name__})")
            handlers[int(code)] = factory
    codes = {info.code for info in isa.OPCODES}
    missing = codes - handlers.keys() - CONTROL.keys()
    unknown = (handlers.keys() | CONTROL.keys()) - codes
    if missing or unknown:
        names = sorted(isa.BY_CODE[code].name for code in missing)
        raise RuntimeError(f"CPU backend dispatch is out of sync with isa.OPCODES: missing {names}, unknown {unknown}")
    return handlers


HANDLERS = _dispatch_table()


@dataclass(frozen=True)
class PreparedProgram:
    """A verified program, decoded for the interpreter. Holds no reference to the Program."""

    name: str
    registers: int
    emit_words: int
    default_fuel: int
    default_lanes: int
    bindings: tuple[Binding, ...]
    kinds: tuple[Kind, ...]
    steps: tuple[Step | None, ...]
    operands: tuple[tuple[int, int], ...]  # per pc: (register a, imm) for control instructions


def _build(program: Program) -> PreparedProgram:
    tables = tuple(np.frombuffer(table.data, dtype=np.uint8) for table in program.tables)
    table_bytes = tuple(bytes(table.data) for table in program.tables)
    dfa_tables: dict[int, DfaTable] = {}
    kinds: list[Kind] = []
    steps: list[Step | None] = []
    for pc, instruction in enumerate(program.code):
        decoded = isa.decode_opcode(instruction.op)
        if decoded is None:  # unreachable for a verified program; never run an unknown opcode
            raise VerifyError(f"instruction {pc}: opcode byte {instruction.op:#04x} is not a VIR0 instruction")
        info, is_imm = decoded
        if info.imm == Role.DFA_TABLE and instruction.imm not in dfa_tables:
            dfa_tables[instruction.imm] = DfaTable(table_bytes[instruction.imm])
        kind = CONTROL.get(info.code, Kind.STEP)
        kinds.append(kind)
        if kind != Kind.STEP:
            steps.append(None)
            continue
        context = StepContext(
            pc=pc,
            info=info,
            is_imm=is_imm,
            d=instruction.d,
            a=instruction.a,
            b=instruction.b,
            imm=instruction.imm,
            emit_words=program.emit_words,
            tables=tables,
            table_bytes=table_bytes,
            dfa_tables=dfa_tables,
            binding_words=tuple(binding.words for binding in program.bindings),
        )
        steps.append(HANDLERS[info.code](context))
    return PreparedProgram(
        name=program.name,
        registers=program.registers,
        emit_words=program.emit_words,
        default_fuel=program.fuel,
        default_lanes=program.lanes,
        bindings=tuple(program.bindings),
        kinds=tuple(kinds),
        steps=tuple(steps),
        operands=tuple((instruction.a, instruction.imm) for instruction in program.code),
    )


_cache: dict[int, tuple[weakref.ref, PreparedProgram]] = {}
_cache_lock = threading.Lock()


def prepare(program: Program | PreparedProgram) -> PreparedProgram:
    """Verify and decode ``program`` once; later calls with the same object hit a cache."""
    if isinstance(program, PreparedProgram):
        return program
    key = id(program)
    entry = _cache.get(key)
    if entry is not None and entry[0]() is program:
        return entry[1]
    prepared = _build(verify(program))
    with _cache_lock:
        _cache[key] = (weakref.ref(program, lambda _gone, key=key: _cache.pop(key, None)), prepared)
    return prepared
