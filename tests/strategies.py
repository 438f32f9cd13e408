"""Random VALID VIR0 programs, for property tests (hypothesis) and fuzzing (seeded random).

One generator, two sources of choices: ``programs()`` draws from hypothesis (so failures
shrink), ``random_program(rng)`` draws from a ``random.Random`` (fast, for volume). Every
program covers the verifier's rules by construction: fields are drawn per Role from
isa.OPCODES (registers inside the register file, pairs and records that fit, tables of the
right kind, bindings, jumps to valid targets, every opcode and both forms of binary ops) and
the last instruction is a terminator. ``verify`` accepts every program generated here.
"""

from __future__ import annotations

import random
import string
from collections.abc import Sequence
from typing import Protocol, TypeVar

import numpy as np
from hypothesis import strategies as st

from vyre_runtime.vir0 import isa
from vyre_runtime.vir0.dfa import compile_patterns
from vyre_runtime.vir0.isa import Role
from vyre_runtime.vir0.program import Binding, Instruction, Program, Table

T = TypeVar("T")

# Values at the edges of every printing and parsing rule (decimal / negative / hex forms,
# signed limits, NaN and infinity bit patterns).
INTERESTING_U32 = (
    0,
    1,
    2,
    7,
    0xFF,
    0x100,
    0xFFFF,
    0x10000,
    0x7FFFFFFF,
    0x80000000,
    0xFFFF0000,
    0xFFFF0001,
    0xFFFFFFFE,
    0xFFFFFFFF,
    0x3F800000,
    0x7F800000,
    0xFF800000,
    0x7FC00000,
    0x7FC00001,
    0x00000001,
)
TERMINATOR_NAMES = ("exit", "trap", "jmp")
HISTOGRAM_WORDS = 256
_FIRST = string.ascii_letters + "_"
_REST = string.ascii_letters + string.digits + "_"


class Chooser(Protocol):
    def integer(self, low: int, high: int) -> int: ...
    def choice(self, options: Sequence[T]) -> T: ...
    def raw(self, size: int) -> bytes: ...


class RandomChooser:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def integer(self, low: int, high: int) -> int:
        return self.rng.randint(low, high)

    def choice(self, options: Sequence[T]) -> T:
        return options[self.rng.randrange(len(options))]

    def raw(self, size: int) -> bytes:
        return self.rng.randbytes(size)


class HypothesisChooser:
    def __init__(self, draw: st.DrawFn) -> None:
        self.draw = draw

    def integer(self, low: int, high: int) -> int:
        return self.draw(st.integers(low, high))

    def choice(self, options: Sequence[T]) -> T:
        return self.draw(st.sampled_from(options))

    def raw(self, size: int) -> bytes:
        return self.draw(st.binary(min_size=size, max_size=size))


def _u32(chooser: Chooser) -> int:
    if chooser.integer(0, 2) == 0:
        return chooser.integer(0, 0xFFFFFFFF)
    return chooser.choice(INTERESTING_U32)


# Valid names that are also keywords of the assembly syntax; the assembler must read them by position.
TRICKY_NAMES = ("hex", "u8", "u32", "run", "global", "sum", "none", "r1", "r63", "lane_id", "L0", "exit", "init")


def _identifier(chooser: Chooser, taken: set[str], first: str = _FIRST, rest: str = _REST) -> str:
    length = chooser.choice((0, 1, 3, 8, 20, isa.MAX_NAME_BYTES))
    if length == 0:
        name = chooser.choice(TRICKY_NAMES)
    else:
        name = chooser.choice(first) + "".join(chooser.choice(rest) for _ in range(length - 1))
    while name in taken:  # unique names; the suffix keeps it an identifier
        name = name[: isa.MAX_NAME_BYTES - 2] + "_" + chooser.choice(string.digits)
    taken.add(name)
    return name


def _dfa_table_data(chooser: Chooser) -> bytes:
    if chooser.integer(0, 1):
        patterns = [
            bytes(chooser.choice(b"abc\x00\xff") for _ in range(chooser.integer(1, 4)))
            for _ in range(chooser.integer(1, 3))
        ]
        return compile_patterns(patterns)
    # A raw valid DFA: arbitrary targets below the state count, arbitrary accept bits. The words
    # come from a drawn seed, not drawn one by one, to keep hypothesis's buffer small.
    states = chooser.integer(1, 3)
    words = np.random.default_rng(chooser.integer(0, 0xFFFFFFFF)).integers(0, 1 << 32, 256 * states, dtype=np.uint32)
    transitions = (words % np.uint32(states)) | (words & np.uint32(isa.DFA_ACCEPT_BIT))
    return states.to_bytes(4, "little") + transitions.astype("<u4").tobytes()


def _tables(chooser: Chooser, taken: set[str]) -> tuple[Table, ...]:
    tables = []
    for _ in range(chooser.choice((0, 0, 1, 2, 4))):
        raw = chooser.integer(0, 2) == 0
        data = chooser.raw(chooser.choice((0, 1, 3, 4, 17, 40))) if raw else _dfa_table_data(chooser)
        tables.append(Table(_identifier(chooser, taken), data))
    return tuple(tables)


def _bindings(chooser: Chooser, taken: set[str]) -> tuple[Binding, ...]:
    bindings = []
    for _ in range(chooser.choice((0, 0, 1, 2, 3))):
        words = chooser.choice((1, 2, 8, HISTOGRAM_WORDS, 300))
        if chooser.integer(0, 3) == 0:
            scope, combine = isa.Scope.GLOBAL, isa.Combine.NONE
        else:
            scope, combine = isa.Scope.RUN, chooser.choice([c for c in isa.Combine if c != isa.Combine.NONE])
        bindings.append(Binding(_identifier(chooser, taken), words, scope, combine, _u32(chooser)))
    return tuple(bindings)


class _Context:
    """What a program declares, so each field can be drawn valid for its role."""

    def __init__(self, registers: int, emit_words: int, tables: tuple[Table, ...], bindings: tuple[Binding, ...]):
        self.registers = registers
        self.emit_words = emit_words
        self.tables = tables
        self.bindings = bindings
        self.literal_tables = [i for i, t in enumerate(tables) if t.data]
        self.dfa_tables = [i for i, t in enumerate(tables) if _is_dfa(t.data)]
        self.histogram_bindings = [i for i, b in enumerate(bindings) if b.words >= HISTOGRAM_WORDS]

    def can_fill(self, info: isa.OpInfo) -> bool:
        for role in (info.d, info.a, info.b, info.imm):
            if role in (Role.PAIR_READ, Role.PAIR_WRITE, Role.PAIR_READ_WRITE) and self.registers < 2:
                return False
            if role == Role.RECORD_READ and self.emit_words == 0:
                return False
            if role == Role.TABLE and not self.tables:
                return False
            if role == Role.LITERAL_TABLE and not self.literal_tables:
                return False
            if role == Role.DFA_TABLE and not self.dfa_tables:
                return False
            if role == Role.BINDING and not self.bindings:
                return False
        if info.code == isa.Op.HIST and not self.histogram_bindings:
            return False
        return not (info.code == isa.Op.DFAE and self.emit_words == 0)

    def field(self, chooser: Chooser, info: isa.OpInfo, role: Role, code_length: int) -> int:
        if role == Role.UNUSED:
            return 0
        if role in (Role.REG_WRITE, Role.REG_READ, Role.REG_READ_WRITE, Role.IMM_REG_READ):
            return chooser.integer(0, self.registers - 1)
        if role in (Role.PAIR_READ, Role.PAIR_WRITE, Role.PAIR_READ_WRITE):
            return chooser.integer(0, self.registers - 2)
        if role == Role.RECORD_READ:
            return chooser.integer(0, self.registers - self.emit_words)
        if role == Role.IMMEDIATE:
            return _u32(chooser)
        if role == Role.BYTE:
            return chooser.integer(0, 255)
        if role == Role.JUMP_TARGET:
            return chooser.integer(0, code_length - 1)
        if role == Role.TABLE:
            return chooser.integer(0, len(self.tables) - 1)
        if role == Role.LITERAL_TABLE:
            return chooser.choice(self.literal_tables)
        if role == Role.DFA_TABLE:
            return chooser.choice(self.dfa_tables)
        if role == Role.BINDING:
            if info.code == isa.Op.HIST:
                return chooser.choice(self.histogram_bindings)
            return chooser.integer(0, len(self.bindings) - 1)
        if role == Role.SPECIAL:
            return int(chooser.choice(list(isa.SpecialRegister)))
        raise AssertionError(f"strategies.py does not know role {role!r}; add it")


def _is_dfa(data: bytes) -> bool:
    from vyre_runtime.vir0.verify import dfa_state_count

    try:
        dfa_state_count(data)
    except ValueError:
        return False
    return True


def _instruction(chooser: Chooser, context: _Context, info: isa.OpInfo, code_length: int) -> Instruction:
    is_imm = info.has_imm_form and chooser.integer(0, 1) == 1
    roles = isa.effective_roles(info, is_imm)
    values = [context.field(chooser, info, role, code_length) for role in roles]
    return Instruction(info.code | (isa.IMM_FORM if is_imm else 0), *values)


def generate_program(chooser: Chooser, max_instructions: int = 24) -> Program:
    """A random program that ``verify`` accepts."""
    taken: set[str] = set()
    registers = chooser.choice((1, 2, 3, 8, 16, 33, isa.MAX_REGISTERS))
    emit_words = chooser.integer(0, min(isa.MAX_EMIT_WORDS, registers))
    tables = _tables(chooser, taken)
    bindings = _bindings(chooser, taken)
    context = _Context(registers, emit_words, tables, bindings)
    fillable = [info for info in isa.OPCODES if context.can_fill(info)]
    terminators = [isa.BY_NAME[name] for name in TERMINATOR_NAMES]
    length = chooser.integer(1, max_instructions)
    code = [_instruction(chooser, context, chooser.choice(fillable), length) for _ in range(length - 1)]
    code.append(_instruction(chooser, context, chooser.choice(terminators), length))
    return Program(
        name=_identifier(chooser, set(), first=_FIRST, rest=_REST + ".-"),
        code=tuple(code),
        registers=registers,
        emit_words=emit_words,
        overlap=chooser.choice((0, 1, 64, isa.MAX_OVERLAP)),
        fuel=chooser.choice((1, 1000, 1 << 24, 0xFFFFFFFF)),
        lanes=chooser.choice((1, 32, 33, 1024, isa.MAX_LANES)),
        tables=tables,
        bindings=bindings,
    )


@st.composite
def programs(draw: st.DrawFn, max_instructions: int = 24) -> Program:
    """Hypothesis strategy: valid programs over every opcode (see module docstring)."""
    return generate_program(HypothesisChooser(draw), max_instructions)


def random_program(rng: random.Random, max_instructions: int = 24) -> Program:
    """A valid program from a seeded ``random.Random`` (for fuzzing volume without hypothesis)."""
    return generate_program(RandomChooser(rng), max_instructions)
