"""Build VIR0 programs from Python: one method per mnemonic, derived from isa.OPCODES.

    from vyre_runtime.vir0.builder import ProgramBuilder, r

    b = ProgramBuilder("count_newlines", emit_words=0)
    total = b.binding("total", 1)
    b.sreg(r(0), "region_len")
    b.li(r(1), 0)
    b.countb(r(2), r(1), r(0), ord("\\n"))
    b.atadd(r(3), r(1), r(2), total)
    b.exit()
    blob = b.encode()

Operands follow the assembly order (d, a, b, imm; unused fields left out). Registers are
``Register`` objects (``r(3)`` or ``R3``) so that a plain int is always a number: a binary op
whose last operand is an int is emitted in its immediate form. For f-ops the immediate is a
Python float (rounded to f32) or ``F32Bits(0x3F800000)`` for raw bits. Tables and bindings are
named by their strings, special registers by name or SpecialRegister, jump targets by Label.
Names and labels are resolved in ``build``, so they may be declared or placed after use.
"""

from __future__ import annotations

import dataclasses
import keyword
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, NamedTuple, TypeVar

import numpy as np

from vyre_runtime.errors import VerifyError
from vyre_runtime.vir0 import container, isa
from vyre_runtime.vir0.asm import (
    PAIR_ROLES,
    REGISTER_ROLES,
    SPECIAL_REGISTERS,
    TABLE_ROLES,
    f32_bits_of,
    operand_fields,
    signature,
    takes_float_immediate,
)
from vyre_runtime.vir0.dfa import compile_patterns
from vyre_runtime.vir0.isa import OpInfo, Role
from vyre_runtime.vir0.program import Binding, Instruction, Program, Table
from vyre_runtime.vir0.verify import verify

EnumT = TypeVar("EnumT", bound=IntEnum)


@dataclass(frozen=True)
class Register:
    """Register ``index`` (a pair or emit record is named by its first register)."""

    index: int

    def __repr__(self) -> str:
        return f"r{self.index}"


REGISTERS = tuple(Register(index) for index in range(isa.MAX_REGISTERS))
# R0 .. R63 as module constants, for `from vyre_runtime.vir0.builder import R1`.
globals().update({f"R{register.index}": register for register in REGISTERS})


def r(index: int) -> Register:
    """Register ``index`` (0..63)."""
    if not isinstance(index, int) or not 0 <= index < isa.MAX_REGISTERS:
        raise VerifyError(f"register {index!r} does not exist", f"VIR0 has r0..r{isa.MAX_REGISTERS - 1}")
    return REGISTERS[index]


class F32Bits(NamedTuple):
    """Raw IEEE binary32 bits as an f-op immediate (a plain float is rounded to f32 instead)."""

    bits: int


class Label:
    """A jump target: create with ``ProgramBuilder.label()``, mark with ``place``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.pc: int | None = None

    def __repr__(self) -> str:
        where = "unplaced" if self.pc is None else f"pc {self.pc}"
        return f"Label({self.name!r}, {where})"


@dataclass(frozen=True)
class _Pending:
    """An instruction whose operands are resolved at build time (labels, names)."""

    info: OpInfo
    is_imm: bool
    operands: tuple[Any, ...]


def _enum_member(enum: type[EnumT], value: str | int, what: str) -> EnumT:
    choices = "|".join(member.name.lower() for member in enum)
    if isinstance(value, str) and value.upper() in enum.__members__:
        return enum[value.upper()]
    if isinstance(value, int) and value in enum.__members__.values():
        return enum(value)
    raise VerifyError(f"unknown binding {what} {value!r}", f"use one of {choices}")


def _method_name(mnemonic: str) -> str:
    return mnemonic + "_" if keyword.iskeyword(mnemonic) else mnemonic


class ProgramBuilder:
    """Accumulates declarations and instructions; ``build`` returns a verified Program."""

    def __init__(
        self,
        name: str,
        registers: int = 16,
        emit_words: int = 0,
        overlap: int = 0,
        fuel: int = 1 << 24,
        lanes: int = 1024,
    ) -> None:
        self.name = name
        self.registers = registers
        self.emit_words = emit_words
        self.overlap = overlap
        self.fuel = fuel
        self.lanes = lanes
        self._tables: list[Table] = []
        self._bindings: list[Binding] = []
        self._names: set[str] = set()
        self._code: list[_Pending] = []
        self._label_count = 0

    # -------------------------------------------------------- declarations

    def _claim(self, name: str) -> None:
        if name in self._names:
            raise VerifyError(f"the name {name!r} is declared twice", "tables and bindings share one namespace")
        self._names.add(name)

    def table(self, name: str, data: bytes) -> str:
        """Declare a read-only table; returns its name for use as an operand."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise VerifyError(f"table {name!r} data is a {type(data).__name__}", "pass bytes (e.g. 'text'.encode())")
        self._claim(name)
        self._tables.append(Table(name, bytes(data)))
        return name

    def dfa_table(self, name: str, patterns: Sequence[bytes]) -> str:
        """Declare a DFA table counting positions where a pattern ends (as ``.dfa``)."""
        data = compile_patterns(list(patterns))
        return self.table(name, data)

    def binding(
        self,
        name: str,
        words: int,
        scope: str | isa.Scope = "run",
        combine: str | isa.Combine | None = None,
        init: int = 0,
    ) -> str:
        """Declare an output binding; combine defaults to sum (run) or none (global)."""
        scope_value = _enum_member(isa.Scope, scope, "scope")
        if combine is None:
            combine = isa.Combine.NONE if scope_value == isa.Scope.GLOBAL else isa.Combine.SUM
        combine_value = _enum_member(isa.Combine, combine, "combine")
        if not isinstance(init, int) or not -(1 << 31) <= init <= 0xFFFFFFFF:
            raise VerifyError(f"binding {name!r} init {init} does not fit in 32 bits", "use -2^31..2^32-1")
        self._claim(name)
        self._bindings.append(Binding(name, words, scope_value, combine_value, init & 0xFFFFFFFF))
        return name

    # -------------------------------------------------------- labels

    def label(self, name: str | None = None) -> Label:
        """A new, not yet placed jump target."""
        self._label_count += 1
        return Label(name or f"label{self._label_count}")

    def place(self, label: Label) -> Label:
        """Mark ``label`` at the next instruction."""
        if label.pc is not None:
            raise VerifyError(f"{label!r} is placed twice", "create a new label with .label()")
        label.pc = len(self._code)
        return label

    # -------------------------------------------------------- instructions

    def emit_instruction(self, mnemonic: str, *operands: Any) -> ProgramBuilder:
        """Append instruction ``mnemonic`` (the generic form of the per-mnemonic methods)."""
        info = isa.BY_NAME.get(mnemonic)
        if info is None:
            raise VerifyError(f"unknown mnemonic {mnemonic!r}", "see isa.OPCODES for the instruction list")
        fields = operand_fields(info, False)
        if len(operands) != len(fields):
            raise VerifyError(
                f"{info.name} takes {len(fields)} operands, got {len(operands)}", f"call it as `{signature(info)}`"
            )
        is_imm = info.has_imm_form and not isinstance(operands[-1], Register)
        self._code.append(_Pending(info, is_imm, operands))
        return self

    def dfa(self, *arguments: Any) -> Any:
        """Two uses: ``dfa(name, patterns)`` declares a DFA table (returns the name), like
        ``dfa_table``; ``dfa(d, a, b, table)`` appends the ``dfa`` instruction."""
        if arguments and isinstance(arguments[0], str):
            return self.dfa_table(*arguments)
        return self.emit_instruction("dfa", *arguments)

    # -------------------------------------------------------- build

    def build(self) -> Program:
        """The verified Program (raises VerifyError naming the instruction at fault)."""
        shape = Program(
            self.name,
            (),
            registers=self.registers,
            emit_words=self.emit_words,
            overlap=self.overlap,
            fuel=self.fuel,
            lanes=self.lanes,
            tables=tuple(self._tables),
            bindings=tuple(self._bindings),
        )
        code = tuple(self._resolve(pc, pending, shape) for pc, pending in enumerate(self._code))
        return verify(dataclasses.replace(shape, code=code))

    def encode(self) -> bytes:
        """Canonical container bytes of the built program."""
        return container.encode(self.build())

    def _resolve(self, pc: int, pending: _Pending, shape: Program) -> Instruction:
        info = pending.info
        values = {"d": 0, "a": 0, "b": 0, "imm": 0}
        for position, ((name, role), operand) in enumerate(
            zip(operand_fields(info, pending.is_imm), pending.operands, strict=True), start=1
        ):

            def fail(expected: str, operand: Any = operand, position: int = position) -> VerifyError:
                return VerifyError(
                    f"instruction {pc} ({info.name}): operand {position} must be {expected}, got {operand!r}",
                    f"call it as `{signature(info)}`",
                )

            values[name] = _operand_value(role, operand, info, pending.is_imm, shape, fail)
        return Instruction(info.code | (isa.IMM_FORM if pending.is_imm else 0), **values)


def _operand_value(
    role: Role, operand: Any, info: OpInfo, is_imm: bool, shape: Program, fail: Callable[[str], VerifyError]
) -> int:
    if role in REGISTER_ROLES or role in PAIR_ROLES or role == Role.RECORD_READ:
        if not isinstance(operand, Register):
            raise fail("a register such as r(1)")
        return operand.index
    if role == Role.IMMEDIATE and is_imm and takes_float_immediate(info):
        if isinstance(operand, F32Bits) and 0 <= operand.bits <= 0xFFFFFFFF:
            return operand.bits
        if isinstance(operand, (float, np.floating)):
            return f32_bits_of(float(operand))
        raise fail("a float or F32Bits(bits)")
    if role in (Role.IMMEDIATE, Role.BYTE):
        if isinstance(operand, bool) or not isinstance(operand, int):
            raise fail("an int")
        if not -(1 << 31) <= operand <= 0xFFFFFFFF:
            raise fail("a 32-bit int")
        return operand & 0xFFFFFFFF  # BYTE range is the verifier's to report
    if role == Role.JUMP_TARGET:
        if not isinstance(operand, Label):
            raise fail("a Label from .label()")
        if operand.pc is None:
            raise fail("a placed label (call .place(label))")
        return operand.pc
    if role in TABLE_ROLES or role == Role.BINDING:
        declared = shape.tables if role in TABLE_ROLES else shape.bindings
        names = [item.name for item in declared]
        if operand not in names:
            raise fail(f"the name of a declared {'table' if role in TABLE_ROLES else 'binding'} ({names})")
        return names.index(operand)
    if role == Role.SPECIAL:
        if isinstance(operand, isa.SpecialRegister):
            return int(operand)
        if isinstance(operand, str) and operand.lower() in SPECIAL_REGISTERS:
            return int(SPECIAL_REGISTERS[operand.lower()])
        raise fail(f"a special register ({', '.join(SPECIAL_REGISTERS)})")
    raise fail(f"something with role {role.name}")


def _instruction_method(info: OpInfo) -> Callable[..., ProgramBuilder]:
    def method(self: ProgramBuilder, *operands: Any) -> ProgramBuilder:
        return self.emit_instruction(info.name, *operands)

    method.__name__ = method.__qualname__ = _method_name(info.name)
    method.__doc__ = f"`{signature(info)}`: {info.semantics}"
    return method


for _info in isa.OPCODES:
    if _info.name != "dfa":  # `dfa` is defined above: it also declares DFA tables
        setattr(ProgramBuilder, _method_name(_info.name), _instruction_method(_info))
