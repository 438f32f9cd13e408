"""Static verifier: a program that passes can only fail at run time with a defined fault.

Checks (docs/VIR0.md, "Verification"): declarations in range, names unique identifiers, every
instruction decodes, every field fits its role (registers < registers, pairs and emit records
inside the register file, jump targets inside the code, table and binding indices declared,
DFA tables well formed, unused fields zero), and the code cannot run off its end.
"""

from __future__ import annotations

import re
import struct

from vyre_runtime.errors import VerifyError
from vyre_runtime.vir0 import isa
from vyre_runtime.vir0.isa import Role
from vyre_runtime.vir0.program import Instruction, Program

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
PROGRAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\Z")
TERMINATORS = frozenset({isa.Op.EXIT, isa.Op.TRAP, isa.Op.JMP})
HISTOGRAM_WORDS = 256


def dfa_state_count(data: bytes) -> int:
    """States of a DFA table, or raise ValueError if ``data`` is not a valid DFA table.

    Table layout: u32 n_states, then n_states x 256 u32 transitions; a transition is the
    target state, with DFA_ACCEPT_BIT set when entering it counts as a match.
    """
    if len(data) < 4:
        raise ValueError("a DFA table needs at least its 4-byte state count")
    (states,) = struct.unpack_from("<I", data)
    if not 1 <= states <= isa.MAX_DFA_STATES:
        raise ValueError(f"{states} DFA states; allowed 1..{isa.MAX_DFA_STATES}")
    if len(data) != 4 + 4 * 256 * states:
        raise ValueError(f"a DFA of {states} states is {4 + 1024 * states} bytes, this table is {len(data)}")
    import numpy as np  # local: only verification of DFA tables needs it

    transitions = np.frombuffer(data, dtype="<u4", offset=4)
    if int((transitions & ~np.uint32(isa.DFA_ACCEPT_BIT)).max()) >= states:
        raise ValueError("a DFA transition targets a state >= the state count")
    return states


def _where(pc: int, instruction: Instruction) -> str:
    return f"instruction {pc} ({instruction.mnemonic})"


def _check_declarations(program: Program) -> None:
    if not PROGRAM_NAME.match(program.name):
        raise VerifyError(f"program name {program.name!r} is not a valid name", "use letters, digits, _ . -")
    if len(program.name.encode()) > isa.MAX_NAME_BYTES:
        # The decoder rejects longer names, so a longer one would encode to an unloadable blob.
        raise VerifyError(f"program name {program.name!r} is over {isa.MAX_NAME_BYTES} bytes", "shorten it")
    if not 1 <= program.registers <= isa.MAX_REGISTERS:
        raise VerifyError(f"{program.registers} registers; allowed 1..{isa.MAX_REGISTERS}")
    if not 0 <= program.emit_words <= isa.MAX_EMIT_WORDS:
        raise VerifyError(f"emit records of {program.emit_words} words; allowed 0..{isa.MAX_EMIT_WORDS}")
    if not 0 <= program.overlap <= isa.MAX_OVERLAP:
        raise VerifyError(f"overlap {program.overlap}; allowed 0..{isa.MAX_OVERLAP}")
    if not 1 <= program.fuel <= 0xFFFFFFFF:
        raise VerifyError(f"default fuel {program.fuel}; allowed 1..2^32-1")
    if not 1 <= program.lanes <= isa.MAX_LANES:
        raise VerifyError(f"default lanes {program.lanes}; allowed 1..{isa.MAX_LANES}")
    if not 1 <= len(program.code) <= isa.MAX_CODE_INSTRUCTIONS:
        raise VerifyError(f"{len(program.code)} instructions; allowed 1..{isa.MAX_CODE_INSTRUCTIONS}")
    if len(program.tables) > isa.MAX_TABLES or len(program.bindings) > isa.MAX_BINDINGS:
        raise VerifyError(f"at most {isa.MAX_TABLES} tables and {isa.MAX_BINDINGS} bindings")
    if sum(len(t.data) for t in program.tables) > isa.MAX_TABLE_BYTES_TOTAL:
        raise VerifyError(f"tables hold more than {isa.MAX_TABLE_BYTES_TOTAL} bytes")
    seen: set[str] = set()
    for kind, name in [("table", t.name) for t in program.tables] + [("binding", b.name) for b in program.bindings]:
        if not IDENTIFIER.match(name) or len(name.encode()) > isa.MAX_NAME_BYTES:
            raise VerifyError(f"{kind} name {name!r} is not an identifier of at most {isa.MAX_NAME_BYTES} bytes")
        if name in seen:
            raise VerifyError(f"the name {name!r} is declared twice", "give every table and binding its own name")
        seen.add(name)
    for binding in program.bindings:
        if not 1 <= binding.words <= isa.MAX_BINDING_WORDS:
            raise VerifyError(f"binding {binding.name!r} has {binding.words} words; allowed 1..{isa.MAX_BINDING_WORDS}")
        if not 0 <= binding.init <= 0xFFFFFFFF:
            raise VerifyError(f"binding {binding.name!r} init {binding.init} is not a u32")
        if (binding.scope == isa.Scope.GLOBAL) != (binding.combine == isa.Combine.NONE):
            raise VerifyError(
                f"binding {binding.name!r}: a global binding has combine none, a run binding a real combine",
                "declare `global none` or `run sum|min|max|or|and|xor|concat`",
            )


def _check_field(
    program: Program,
    pc: int,
    instruction: Instruction,
    field: str,
    role: Role,
    value: int,
    dfa_verdicts: dict[int, str] | None = None,
) -> None:
    def fail(message: str) -> VerifyError:
        return VerifyError(f"{_where(pc, instruction)}: field {field} {message}")

    registers = program.registers
    if role == Role.UNUSED:
        if value != 0:
            raise fail(f"must be 0, is {value}")
    elif role in (Role.REG_WRITE, Role.REG_READ, Role.REG_READ_WRITE, Role.IMM_REG_READ):
        if value >= registers:
            raise fail(f"names r{value}; the program declares {registers} registers (r0..r{registers - 1})")
    elif role in (Role.PAIR_WRITE, Role.PAIR_READ, Role.PAIR_READ_WRITE):
        if value + 1 >= registers:
            raise fail(f"names the pair r{value}:r{value + 1}; the program declares {registers} registers")
    elif role == Role.RECORD_READ:
        if program.emit_words == 0:
            raise fail("emits, but the program declares no emit record (.emit N)")
        if value + program.emit_words > registers:
            raise fail(f"record r{value}..r{value + program.emit_words - 1} runs past r{registers - 1}")
    elif role == Role.BYTE:
        if value > 0xFF:
            raise fail(f"is {value}; a byte value is 0..255")
    elif role == Role.JUMP_TARGET:
        if value >= len(program.code):
            raise fail(f"jumps to {value}; the code has {len(program.code)} instructions")
    elif role in (Role.TABLE, Role.LITERAL_TABLE, Role.DFA_TABLE):
        if value >= len(program.tables):
            raise fail(f"names table {value}; the program declares {len(program.tables)} tables")
        data = program.tables[value].data
        if role == Role.LITERAL_TABLE and not data:
            raise fail(f"names table {program.tables[value].name!r}, which is empty; a literal needs >= 1 byte")
        if role == Role.DFA_TABLE:
            # One verdict per table: re-scanning an 8 MiB table for each of 65536 dfa
            # instructions would let a hostile blob stall `load` for minutes.
            verdicts = {} if dfa_verdicts is None else dfa_verdicts
            if value not in verdicts:
                try:
                    dfa_state_count(data)
                    verdicts[value] = ""
                except ValueError as error:
                    verdicts[value] = str(error)
            if verdicts[value]:
                raise fail(f"names table {program.tables[value].name!r}, not a valid DFA: {verdicts[value]}")
    elif role == Role.BINDING:
        if value >= len(program.bindings):
            raise fail(f"names binding {value}; the program declares {len(program.bindings)} bindings")
    elif role == Role.SPECIAL and value not in isa.SpecialRegister.__members__.values():
        raise fail(f"names special register {value}, which does not exist")


def verify(program: Program) -> Program:
    """Raise VerifyError unless ``program`` obeys every static rule; return it otherwise."""
    _check_declarations(program)
    dfa_verdicts: dict[int, str] = {}
    for pc, instruction in enumerate(program.code):
        decoded = isa.decode_opcode(instruction.op)
        if decoded is None:
            raise VerifyError(f"instruction {pc}: opcode byte {instruction.op:#04x} is not a VIR0 instruction")
        info, is_imm = decoded
        for (field, _), role in zip(info.fields, isa.effective_roles(info, is_imm)):
            value = getattr(instruction, field)
            if field != "imm" and not 0 <= value <= 0xFF:
                raise VerifyError(f"{_where(pc, instruction)}: field {field} is {value}, not a byte")
            if field == "imm" and not 0 <= value <= 0xFFFFFFFF:
                raise VerifyError(f"{_where(pc, instruction)}: imm {value} is not a u32")
            _check_field(program, pc, instruction, field, role, value, dfa_verdicts)
        if info.code == isa.Op.HIST and program.bindings[instruction.imm].words < HISTOGRAM_WORDS:
            raise VerifyError(f"{_where(pc, instruction)}: a histogram binding needs >= {HISTOGRAM_WORDS} words")
        if info.code == isa.Op.DFAE and program.emit_words == 0:
            raise VerifyError(f"{_where(pc, instruction)}: dfae emits, but the program declares no emit record")
    last = program.code[-1].op
    if last not in TERMINATORS:
        raise VerifyError(
            f"the last instruction ({program.code[-1].mnemonic}) can fall off the end of the code",
            "end the program with exit, trap or jmp",
        )
    return program


def load(blob: bytes) -> Program:
    """Decode and verify a container: the only way untrusted bytes become a runnable Program."""
    from vyre_runtime.vir0.container import decode

    return verify(decode(blob))
