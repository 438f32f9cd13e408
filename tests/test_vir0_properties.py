"""Round trips over random valid programs (tests/strategies.py): bytes, text and builder agree."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from strategies import programs

from vyre_runtime.vir0 import isa
from vyre_runtime.vir0.asm import assemble, disassemble, operand_fields, takes_float_immediate
from vyre_runtime.vir0.builder import F32Bits, ProgramBuilder, r
from vyre_runtime.vir0.container import decode, encode
from vyre_runtime.vir0.isa import Role
from vyre_runtime.vir0.program import Program
from vyre_runtime.vir0.verify import load, verify

ROUND_TRIPS = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@ROUND_TRIPS
@given(programs())
def test_generated_programs_are_valid(program: Program) -> None:
    assert verify(program) is program


@ROUND_TRIPS
@given(programs())
def test_encoding_then_decoding_returns_an_equal_program(program: Program) -> None:
    assert decode(encode(program)) == program
    assert load(encode(program)) == program


@ROUND_TRIPS
@given(programs())
def test_decoding_then_encoding_returns_identical_bytes(program: Program) -> None:
    blob = encode(program)
    assert encode(decode(blob)) == blob


@ROUND_TRIPS
@given(programs())
def test_disassembly_reassembles_to_identical_bytes(program: Program) -> None:
    blob = encode(program)
    assert assemble(disassemble(blob)) == blob


@ROUND_TRIPS
@given(programs())
def test_disassembly_of_reassembled_text_is_stable(program: Program) -> None:
    text = disassemble(encode(program))
    assert disassemble(assemble(text)) == text


def _builder_for(program: Program) -> ProgramBuilder:
    """Drive the builder through the same program, operand by operand."""
    b = ProgramBuilder(
        program.name, program.registers, program.emit_words, program.overlap, program.fuel, program.lanes
    )
    for table in program.tables:
        b.table(table.name, table.data)
    for binding in program.bindings:
        b.binding(binding.name, binding.words, binding.scope, binding.combine, binding.init)
    labels = [b.label() for _ in program.code]
    for pc, instruction in enumerate(program.code):
        info, is_imm = isa.decode_opcode(instruction.op)  # type: ignore[misc]
        operands: list[object] = []
        for name, role in operand_fields(info, is_imm):
            value = getattr(instruction, name)
            if role == Role.JUMP_TARGET:
                operands.append(labels[value])
            elif role in (Role.TABLE, Role.DFA_TABLE, Role.LITERAL_TABLE):
                operands.append(program.tables[value].name)
            elif role == Role.BINDING:
                operands.append(program.bindings[value].name)
            elif role == Role.SPECIAL:
                operands.append(isa.SpecialRegister(value))
            elif role == Role.IMMEDIATE and is_imm and takes_float_immediate(info):
                operands.append(F32Bits(value))
            elif role in (Role.IMMEDIATE, Role.BYTE):
                operands.append(value)
            else:
                operands.append(r(value))
        b.place(labels[pc])
        b.emit_instruction(info.name, *operands)
    return b


@ROUND_TRIPS
@given(programs())
def test_the_builder_reproduces_every_program(program: Program) -> None:
    assert _builder_for(program).encode() == encode(program)
