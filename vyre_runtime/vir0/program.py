"""The in-memory form of a VIR0 program: what the container encodes and the verifier checks."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import NamedTuple

from vyre_runtime.vir0.isa import (
    BY_CODE,
    IMM_FORM,
    INSTRUCTION_BYTES,
    Combine,
    Scope,
)

_INSTRUCTION = struct.Struct("<BBBBI")


class Instruction(NamedTuple):
    """One 8-byte instruction. ``op`` carries bit 7 (immediate form) as encoded."""

    op: int
    d: int = 0
    a: int = 0
    b: int = 0
    imm: int = 0

    def to_bytes(self) -> bytes:
        return _INSTRUCTION.pack(self.op, self.d, self.a, self.b, self.imm & 0xFFFFFFFF)

    @property
    def mnemonic(self) -> str:
        info = BY_CODE.get(self.op & ~IMM_FORM)
        return info.name if info else f"op{self.op:#04x}"


def encode_code(code: tuple[Instruction, ...]) -> bytes:
    return b"".join(instruction.to_bytes() for instruction in code)


def decode_code(blob: bytes) -> tuple[Instruction, ...]:
    count = len(blob) // INSTRUCTION_BYTES
    return tuple(Instruction(*_INSTRUCTION.unpack_from(blob, i * INSTRUCTION_BYTES)) for i in range(count))


@dataclass(frozen=True)
class Table:
    """A named read-only byte table (constants, literals, DFA transitions)."""

    name: str
    data: bytes


@dataclass(frozen=True)
class Binding:
    """A declared output buffer of u32 words."""

    name: str
    words: int
    scope: Scope = Scope.RUN
    combine: Combine = Combine.SUM
    init: int = 0  # every word starts at this value


@dataclass(frozen=True)
class Program:
    """A whole VIR0 program. Build one with the assembler or ``vir0.builder``."""

    name: str
    code: tuple[Instruction, ...]
    registers: int = 16
    emit_words: int = 0  # 0: the program never emits
    overlap: int = 0  # bytes of context the program needs on each side of its owned range
    fuel: int = 1 << 24  # default per-lane instruction budget
    lanes: int = 1024  # default lane count per run
    tables: tuple[Table, ...] = field(default_factory=tuple)
    bindings: tuple[Binding, ...] = field(default_factory=tuple)

    def table_index(self, name: str) -> int:
        for index, table in enumerate(self.tables):
            if table.name == name:
                return index
        raise KeyError(name)

    def binding_index(self, name: str) -> int:
        for index, binding in enumerate(self.bindings):
            if binding.name == name:
                return index
        raise KeyError(name)
