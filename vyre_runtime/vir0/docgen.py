"""Generate the reference tables and the worked example's bytes in docs/VIR0.md from the code.

docs/VIR0.md never carries a hand-typed opcode number, enum value, limit or container byte: the
blocks between its ``<!-- BEGIN GENERATED ... -->`` and ``<!-- END GENERATED ... -->`` lines
are printed here from ``isa.py``, ``program.py`` and ``container.py``, and
tests/test_docs_in_sync.py fails as soon as the document and the code disagree.

    python -m vyre_runtime.vir0.docgen            print the reference-tables block
    python -m vyre_runtime.vir0.docgen --write    rewrite every generated block of docs/VIR0.md
    python -m vyre_runtime.vir0.docgen --check    exit 1 if docs/VIR0.md is out of date

Numbers come from the code; the one-line descriptions of enum members and limits live in the
dictionaries below, and a member without a description stops the generator, so a new fault
code or special register cannot reach the document undescribed.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import struct
import sys
from collections.abc import Callable, Sequence
from enum import IntEnum
from pathlib import Path
from typing import NamedTuple

from vyre_runtime.docblocks import add_mode_arguments, markdown_table, replace_block, write_or_check
from vyre_runtime.vir0 import container, isa
from vyre_runtime.vir0.isa import (
    Combine,
    FaultCode,
    OpClass,
    OpInfo,
    Role,
    Scope,
    SpecialRegister,
)
from vyre_runtime.vir0.program import Binding, Instruction, Program, Table

DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "VIR0.md"
REGENERATE_COMMAND = "python -m vyre_runtime.vir0.docgen --write"

TABLES_BEGIN = "<!-- BEGIN GENERATED: python -m vyre_runtime.vir0.docgen -->"
TABLES_END = "<!-- END GENERATED -->"
EXAMPLE_BEGIN = "<!-- BEGIN GENERATED EXAMPLE: python -m vyre_runtime.vir0.docgen --write -->"
EXAMPLE_END = "<!-- END GENERATED EXAMPLE -->"

# ---------------------------------------------------------------- descriptions (prose only)

CLASS_TITLES: dict[OpClass, str] = {
    OpClass.CONTROL: "Control",
    OpClass.MOVE: "Moves and special registers",
    OpClass.INT_BINARY: "32-bit integer, binary (immediate form: `b := imm`)",
    OpClass.INT_UNARY: "32-bit integer, unary",
    OpClass.FLOAT_BINARY: "f32, binary (immediate form: `b := imm`, the f32 bit pattern)",
    OpClass.FLOAT_UNARY: "f32, unary and conversions",
    OpClass.INT64: "64-bit integers on register pairs (`n` = low word, `n+1` = high word)",
    OpClass.MEMORY: "Memory: input region, tables, bindings",
    OpClass.ATOMIC: "Atomics on binding words (`w` = the binding named by `imm`)",
    OpClass.EMIT: "Emit",
    OpClass.COLLECTIVE: "Lane-group collectives (over the participants of the step)",
    OpClass.INTRINSIC: "Coarse intrinsics over the input byte range `[a, a + b)`",
}

ROLE_DESCRIPTIONS: dict[Role, str] = {
    Role.UNUSED: "not written in assembly; the field must be 0",
    Role.REG_WRITE: "register written; index < `registers`",
    Role.REG_READ: "register read; index < `registers`",
    Role.REG_READ_WRITE: "register read, then written; index < `registers`",
    Role.PAIR_WRITE: "pair `rN:rN+1` written as one u64 (`rN` low word); `N + 1 < registers`",
    Role.PAIR_READ: "pair `rN:rN+1` read as one u64 (`rN` low word); `N + 1 < registers`",
    Role.PAIR_READ_WRITE: "pair read, then written; `N + 1 < registers`",
    Role.RECORD_READ: "registers `rN .. rN+emit_words-1` read; `emit_words >= 1`, `N + emit_words <= registers`",
    Role.IMMEDIATE: "any u32",
    Role.BYTE: "immediate `< 256`",
    Role.JUMP_TARGET: "instruction index `< len(code)`",
    Role.TABLE: "table index `< len(tables)`",
    Role.DFA_TABLE: "table index `< len(tables)`; that table is a valid DFA table",
    Role.LITERAL_TABLE: "table index `< len(tables)`; that table holds at least 1 byte",
    Role.BINDING: "binding index `< len(bindings)`",
    Role.SPECIAL: "a `SpecialRegister` number",
    Role.IMM_REG_READ: "the `imm` field names a register that is read; value < `registers`",
}

SPECIAL_DESCRIPTIONS: dict[SpecialRegister, str] = {
    SpecialRegister.LANE_ID: "this lane's id, `0 .. lane_count-1`",
    SpecialRegister.LANE_COUNT: "lanes in the run, `N`",
    SpecialRegister.GROUP_LANE: "`lane_id % 32`: position in the lane group",
    SpecialRegister.GROUP_ID: "`lane_id // 32`: the lane group",
    SpecialRegister.REGION_LEN: "bytes in the input region (`REGION_LEN`)",
    SpecialRegister.OWN_LO: "first region offset this run is responsible for",
    SpecialRegister.OWN_HI: "one past the last region offset this run is responsible for",
    SpecialRegister.FILE_OFFSET_LO: "file offset of region byte 0, bits 0..31",
    SpecialRegister.FILE_OFFSET_HI: "file offset of region byte 0, bits 32..63",
    SpecialRegister.CHUNK_INDEX: "index of this chunk in its stream",
    SpecialRegister.EMIT_CAPACITY: "records the run's hit buffer can hold (`C`)",
}

FAULT_DESCRIPTIONS: dict[FaultCode, tuple[str, str]] = {
    FaultCode.NONE: ("no fault (a lane that exits normally)", "0"),
    FaultCode.OOB_INPUT: (
        "input load or intrinsic range outside `[0, REGION_LEN)`",
        "load: the address `(r[a] + imm) mod 2^32`; intrinsic: the range start `r[a]`",
    ),
    FaultCode.OOB_TABLE: (
        "table load outside the table, or a DFA start state `>= n_states`",
        "load: the address `(r[a] + imm) mod 2^32`; `dfa`/`dfae`: the state `r[d]`",
    ),
    FaultCode.OOB_OUTPUT: (
        "binding word index outside the binding",
        "`ldo`/`sto`: the index `(r[a] + imm) mod 2^32`; atomics: `r[a]`; `hist`: the base `r[d]`",
    ),
    FaultCode.FUEL_EXHAUSTED: ("the lane tried to execute an instruction with fuel 0", "0"),
    FaultCode.TRAP: ("the lane executed `trap`", "the instruction's `imm`"),
    FaultCode.BAD_INSTRUCTION: (
        "undecodable instruction (unreachable in verified code)",
        "the opcode byte",
    ),
}

SCOPE_DESCRIPTIONS: dict[Scope, str] = {
    Scope.RUN: "a fresh buffer for every run, every word set to `init`; merged across a stream's chunks by `combine`",
    Scope.GLOBAL: "one buffer that persists across runs (created once with `init` unless the caller supplies it)",
}

COMBINE_DESCRIPTIONS: dict[Combine, str] = {
    Combine.NONE: "no merging; required for `global` bindings, forbidden for `run` bindings",
    Combine.SUM: "`x + y mod 2^32`, element-wise",
    Combine.MIN: "unsigned minimum, element-wise",
    Combine.MAX: "unsigned maximum, element-wise",
    Combine.OR: "bitwise or, element-wise",
    Combine.AND: "bitwise and, element-wise",
    Combine.XOR: "bitwise xor, element-wise",
    Combine.CONCAT: "no merging: every chunk's buffer is kept, in chunk order",
}

SECTION_DESCRIPTIONS: dict[container.SectionKind, str] = {
    container.SectionKind.INFO: "register count, emit record words, overlap, default fuel, default lanes",
    container.SectionKind.CODE: "the instructions, 8 bytes each",
    container.SectionKind.TABLES: "read-only tables; present iff the program has at least one table",
    container.SectionKind.BINDINGS: "output binding declarations; present iff the program has at least one binding",
    container.SectionKind.NAMES: "program name, then table names, then binding names",
}


class Limit(NamedTuple):
    name: str
    style: str  # "dec", "hex", "bytes" or "pow2": how the value is printed
    meaning: str


LIMITS: tuple[Limit, ...] = (
    Limit("INSTRUCTION_BYTES", "dec", "bytes per instruction"),
    Limit("IMM_FORM", "hex", "bit of the opcode byte that selects the immediate form"),
    Limit("GROUP_SIZE", "dec", "lanes per lane group"),
    Limit("NO_MATCH", "hex", "result of `findb`/`findl` when nothing is found"),
    Limit("CANONICAL_NAN", "hex", "the only NaN that f32 arithmetic produces"),
    Limit("DFA_ACCEPT_BIT", "hex", "bit of a DFA transition that marks a match"),
    Limit("MAX_PROGRAM_BYTES", "bytes", "container size, header included"),
    Limit("MAX_CODE_INSTRUCTIONS", "dec", "instructions (at least 1)"),
    Limit("MAX_REGISTERS", "dec", "registers per lane (at least 1)"),
    Limit("MAX_TABLES", "dec", "tables"),
    Limit("MAX_TABLE_BYTES_TOTAL", "bytes", "bytes in all tables together, padding excluded"),
    Limit("MAX_BINDINGS", "dec", "output bindings"),
    Limit("MAX_BINDING_WORDS", "pow2", "u32 words per binding (at least 1)"),
    Limit("MAX_EMIT_WORDS", "dec", "words per emit record"),
    Limit("MAX_NAME_BYTES", "dec", "UTF-8 bytes per name (program, table, binding)"),
    Limit("MAX_LANES", "pow2", "lanes per run (at least 1)"),
    Limit("MAX_OVERLAP", "pow2", "declared overlap bytes"),
    Limit("MAX_DFA_STATES", "dec", "states of a DFA table (at least 1)"),
)

PROGRAM_DIRECTIVES: dict[str, str] = {
    "registers": ".registers",
    "emit_words": ".emit",
    "overlap": ".overlap",
    "fuel": ".fuel",
    "lanes": ".lanes",
}


# ---------------------------------------------------------------- markdown helpers


def _described(mapping: dict, members: Sequence, what: str) -> None:
    missing = [member.name for member in members if member not in mapping]
    if missing:
        raise RuntimeError(f"vyre_runtime/vir0/docgen.py has no description of {what} {', '.join(missing)}; add one")


def _format_value(value: int, style: str) -> str:
    if style == "hex":
        return f"`{value:#0{10 if value > 0xFFFF else 4}X}`".replace("0X", "0x")
    if style == "bytes":
        return f"{value} ({value >> 20} MiB)" if value % (1 << 20) == 0 else str(value)
    if style == "pow2" and value & (value - 1) == 0:
        return f"{value} (2^{value.bit_length() - 1})"
    return str(value)


def operand_tokens(info: OpInfo) -> list[str]:
    """The operands of ``info`` as assembly writes them: its non-unused fields in order d, a, b, imm."""
    tokens = []
    for field, role in info.fields:
        if role == Role.UNUSED:
            continue
        tokens.append(_role_token(field, role))
    return tokens


def _role_token(field: str, role: Role) -> str:
    if role in (Role.REG_WRITE, Role.REG_READ, Role.REG_READ_WRITE):
        return f"r{field}"
    if role == Role.IMM_REG_READ:
        return "rc"
    if role in (Role.PAIR_WRITE, Role.PAIR_READ, Role.PAIR_READ_WRITE):
        return f"p{field}"
    return {
        Role.RECORD_READ: "record",
        Role.IMMEDIATE: "imm",
        Role.BYTE: "byte",
        Role.JUMP_TARGET: "label",
        Role.TABLE: "table",
        Role.DFA_TABLE: "dfa_table",
        Role.LITERAL_TABLE: "literal",
        Role.BINDING: "binding",
        Role.SPECIAL: "special",
    }[role]


def _role_tokens(role: Role) -> str:
    if role == Role.UNUSED:
        return "—"
    tokens = sorted(
        {_role_token(field, r) for info in isa.OPCODES for field, r in info.fields if r == role}
        | ({"imm"} if role == Role.IMMEDIATE else set())
    )
    return ", ".join(f"`{token}`" for token in tokens)


# ---------------------------------------------------------------- the reference-tables block


def _opcode_tables() -> str:
    out = []
    for op_class in OpClass:
        infos = [info for info in isa.OPCODES if info.op_class == op_class]
        if not infos:
            continue
        _described(CLASS_TITLES, [op_class], "opcode class")
        rows = [
            (
                f"`{info.code:#04x}`",
                f"`{info.name}`",
                ", ".join(operand_tokens(info)) or "—",
                "yes" if info.has_imm_form else "no",
                info.semantics,
            )
            for info in infos
        ]
        out.append(f"#### {CLASS_TITLES[op_class]}\n\n")
        out.append(markdown_table(("code", "mnemonic", "operands", "imm form", "semantics"), rows))
        out.append("\n")
    return "".join(out)


def _role_table() -> str:
    _described(ROLE_DESCRIPTIONS, list(Role), "operand role")
    rows = [(str(int(role)), role.name, _role_tokens(role), ROLE_DESCRIPTIONS[role]) for role in Role]
    return markdown_table(("role", "name", "operand", "static rule"), rows)


def _enum_table(enum: type[IntEnum], descriptions: dict, what: str, assembly_names: bool) -> str:
    _described(descriptions, list(enum), what)
    header = ("value", "assembly name" if assembly_names else "name", "meaning")
    rows = [(str(int(m)), f"`{m.name.lower()}`" if assembly_names else m.name, descriptions[m]) for m in enum]
    return markdown_table(header, rows)


def _fault_table() -> str:
    _described(FAULT_DESCRIPTIONS, list(FaultCode), "fault code")
    rows = [(str(int(code)), code.name, *FAULT_DESCRIPTIONS[code]) for code in FaultCode]
    return markdown_table(("code", "name", "cause", "detail"), rows)


def _limits_table() -> str:
    rows = [
        (f"`{limit.name}`", _format_value(getattr(isa, limit.name), limit.style), limit.meaning) for limit in LIMITS
    ]
    return markdown_table(("constant", "value", "meaning"), rows)


def _defaults_table() -> str:
    rows = []
    for field in dataclasses.fields(Program):
        if field.name in PROGRAM_DIRECTIVES:
            rows.append((f"`{field.name}`", f"`{PROGRAM_DIRECTIVES[field.name]}`", str(field.default)))
    for field in dataclasses.fields(Binding):
        if field.default is not dataclasses.MISSING:
            value = field.default.name.lower() if isinstance(field.default, IntEnum) else str(field.default)
            rows.append((f"binding `{field.name}`", "`.binding`", value))
    return markdown_table(("field", "directive", "default"), rows)


def _container_table() -> str:
    _described(SECTION_DESCRIPTIONS, list(container.SectionKind), "section kind")
    rows = [
        (
            str(int(kind)),
            kind.name,
            "yes" if kind in container.REQUIRED_SECTIONS else "no",
            SECTION_DESCRIPTIONS[kind],
        )
        for kind in container.SectionKind
    ]
    return markdown_table(("kind", "name", "required", "contents"), rows)


def _container_constants() -> str:
    rows = [
        ("magic", f"`{container.MAGIC.decode()}` (`{container.MAGIC.hex(' ')}`)"),
        ("version", str(container.VERSION)),
        ("header bytes", str(container.HEADER.size)),
        ("section-table entry bytes", str(container.SECTION_ENTRY.size)),
        ("INFO section bytes", str(container.INFO.size)),
        ("TABLES index entry bytes", str(container.TABLE_INDEX_ENTRY.size)),
        ("BINDINGS entry bytes", str(container.BINDING_ENTRY.size)),
    ]
    return markdown_table(("constant", "value"), rows)


def opcode_table_markdown() -> str:
    """The whole reference-tables block of docs/VIR0.md: opcodes by class, operand roles, special
    registers, fault codes, scopes, combines, limits, defaults and container constants."""
    parts = [
        "### Opcodes\n\n",
        _opcode_tables(),
        "### Operand roles\n\n",
        _role_table(),
        "\n### Special registers (`sreg rd, NAME`)\n\n",
        _enum_table(SpecialRegister, SPECIAL_DESCRIPTIONS, "special register", assembly_names=True),
        "\n### Fault codes\n\n",
        _fault_table(),
        "\n### Binding scopes\n\n",
        _enum_table(Scope, SCOPE_DESCRIPTIONS, "scope", assembly_names=True),
        "\n### Binding combines\n\n",
        _enum_table(Combine, COMBINE_DESCRIPTIONS, "combine", assembly_names=True),
        "\n### Limits and constants\n\n",
        _limits_table(),
        "\n### Program and binding defaults\n\n",
        _defaults_table(),
        "\n### Container sections\n\n",
        _container_table(),
        "\n### Container constants\n\n",
        _container_constants(),
    ]
    return "".join(parts)


# ---------------------------------------------------------------- the worked example


EXAMPLE_LABELS = {5: "loop", 14: "done"}


def example_program() -> Program:
    """The worked example of docs/VIR0.md: report every "ab" that starts in the owned range."""
    op, special = isa.Op, SpecialRegister
    return Program(
        name="find_ab",
        code=(
            Instruction(op.SREG, d=0, imm=special.OWN_LO),
            Instruction(op.SREG, d=1, imm=special.OWN_HI),
            Instruction(op.SREG, d=2, imm=special.REGION_LEN),
            Instruction(op.SREG, d=7, imm=special.FILE_OFFSET_LO),
            Instruction(op.LI, d=6, imm=1),
            Instruction(op.SUB, d=3, a=2, b=0),  # loop:
            Instruction(op.FINDL, d=4, a=0, b=3, imm=0),
            Instruction(op.GEU, d=5, a=4, b=1),
            Instruction(op.JNZ, a=5, imm=14),
            Instruction(op.ADD, d=5, a=4, b=7),
            Instruction(op.EMIT, a=5),
            Instruction(op.ATADD, d=5, a=9, b=6, imm=0),
            Instruction(op.ADD | isa.IMM_FORM, d=0, a=4, imm=1),
            Instruction(op.JMP, imm=5),
            Instruction(op.EXIT),  # done:
        ),
        registers=10,
        emit_words=1,
        overlap=1,
        lanes=1,
        tables=(Table("needle", b"ab"),),
        bindings=(Binding("hits", 1),),
    )


def disassemble_instruction(program: Program, instruction: Instruction, labels: dict[int, str]) -> str:
    """One instruction as assembly text (for annotations; the real disassembler is vir0.asm)."""
    decoded = isa.decode_opcode(instruction.op)
    if decoded is None:
        return f".word {instruction.to_bytes().hex()}"
    info, is_imm = decoded
    operands = []
    for (field, _), role in zip(info.fields, isa.effective_roles(info, is_imm), strict=True):
        value = getattr(instruction, field)
        if role == Role.UNUSED:
            continue
        if role == Role.IMMEDIATE:
            floats = info.op_class == OpClass.FLOAT_BINARY
            operands.append(f"{value:#010x}" if floats else str(value))
        elif role in (Role.BYTE,):
            operands.append(str(value))
        elif role == Role.JUMP_TARGET:
            operands.append(labels.get(value, f"L{value}"))
        elif role in (Role.TABLE, Role.DFA_TABLE, Role.LITERAL_TABLE):
            operands.append(program.tables[value].name)
        elif role == Role.BINDING:
            operands.append(program.bindings[value].name)
        elif role == Role.SPECIAL:
            operands.append(SpecialRegister(value).name.lower())
        else:
            operands.append(f"r{value}")
    return f"{info.name} {', '.join(operands)}".rstrip()


def _field_sizes(layout: struct.Struct) -> list[int]:
    return [struct.calcsize("<" + count + code) for count, code in re.findall(r"(\d*)([a-zA-Z])", layout.format)]


class _Annotator:
    """Walks a container and records (offset, bytes, meaning) rows, one per field."""

    def __init__(self, blob: bytes) -> None:
        self.blob = blob
        self.rows: list[tuple[int, bytes, str]] = []

    def add(self, offset: int, length: int, meaning: str) -> None:
        if length:
            self.rows.append((offset, self.blob[offset : offset + length], meaning))

    def fields(self, offset: int, layout: struct.Struct, meanings: Sequence[str]) -> None:
        values = layout.unpack_from(self.blob, offset)
        for size, value, meaning in zip(_field_sizes(layout), values, meanings, strict=True):
            shown = "" if isinstance(value, bytes) else f" = {value}"
            self.add(offset, size, meaning + shown)
            offset += size

    def padded(self, offset: int, length: int, meaning: str, chunk: int = 16) -> int:
        for start in range(0, length, chunk):
            self.add(offset + start, min(chunk, length - start), meaning if start == 0 else "(continued)")
        end = offset + length
        pad = (-end) % 4
        self.add(end, pad, "zero padding to a 4-byte boundary")
        return end + pad


def _annotate(program: Program, blob: bytes, labels: dict[int, str]) -> list[tuple[int, bytes, str]]:
    notes = _Annotator(blob)
    header = container.HEADER
    notes.fields(0, header, ("magic", "version", "flags", "section_count", "reserved", "body_length", ""))
    notes.rows.pop()
    digest_at = header.size - 32
    notes.add(digest_at, 16, f"BLAKE3-256 digest of the body (file bytes {header.size}..{len(blob) - 1}), bytes 0..15")
    notes.add(digest_at + 16, 16, "digest, bytes 16..31")
    body = header.size
    count = header.unpack_from(blob)[3]
    sections = []
    for i in range(count):
        at = body + i * container.SECTION_ENTRY.size
        kind, _, offset, length = container.SECTION_ENTRY.unpack_from(blob, at)
        sections.append((container.SectionKind(kind), body + offset, length))
        name = container.SectionKind(kind).name
        meaning = f"section {i}: kind {kind} ({name}), reserved 0, offset {offset}, length {length}"
        notes.add(at, container.SECTION_ENTRY.size, meaning)
    for kind, start, _length in sections:
        if kind == container.SectionKind.INFO:
            info_fields = ("registers", "emit_words", "overlap", "fuel", "lanes")
            notes.fields(start, container.INFO, tuple(f"INFO {name}" for name in info_fields))
        elif kind == container.SectionKind.CODE:
            for pc, instruction in enumerate(program.code):
                label = f"{labels[pc]}: " if pc in labels else ""
                text = disassemble_instruction(program, instruction, labels)
                notes.add(start + pc * isa.INSTRUCTION_BYTES, isa.INSTRUCTION_BYTES, f"CODE pc {pc}: {label}{text}")
        elif kind == container.SectionKind.TABLES:
            notes.fields(start, container.U32, ("TABLES count",))
            index = start + container.U32.size
            for i, table in enumerate(program.tables):
                notes.fields(
                    index + i * container.TABLE_INDEX_ENTRY.size,
                    container.TABLE_INDEX_ENTRY,
                    (f"table {i} ({table.name}) offset, from the section start", f"table {i} length"),
                )
            for i, (offset, table_length) in enumerate(
                container.TABLE_INDEX_ENTRY.unpack_from(blob, index + i * container.TABLE_INDEX_ENTRY.size)
                for i in range(len(program.tables))
            ):
                notes.padded(start + offset, table_length, f"table {i} data {program.tables[i].data!r}")
        elif kind == container.SectionKind.BINDINGS:
            notes.fields(start, container.U32, ("BINDINGS count",))
            for i, binding in enumerate(program.bindings):
                notes.fields(
                    start + container.U32.size + i * container.BINDING_ENTRY.size,
                    container.BINDING_ENTRY,
                    tuple(
                        f"binding {i} ({binding.name}) {f}" for f in ("scope", "combine", "reserved", "words", "init")
                    ),
                )
                scope_row, combine_row = notes.rows[-5], notes.rows[-4]
                notes.rows[-5] = (*scope_row[:2], f"{scope_row[2]} ({binding.scope.name.lower()})")
                notes.rows[-4] = (*combine_row[:2], f"{combine_row[2]} ({binding.combine.name.lower()})")
        elif kind == container.SectionKind.NAMES:
            notes.fields(start, container.U32, ("NAMES count",))
            at = start + container.U32.size
            for name in [program.name, *(t.name for t in program.tables), *(b.name for b in program.bindings)]:
                notes.fields(at, container.U32, ("name length",))
                at = notes.padded(at + container.U32.size, len(name.encode()), f"name {name!r}")
    return sorted(notes.rows)


def example_markdown() -> str:
    """The generated part of the worked example: the container's bytes, raw and annotated."""
    program = example_program()
    blob = container.encode(program)
    raw = [
        f"{offset:04x}  {' '.join(f'{byte:02x}' for byte in blob[offset : offset + 16])}"
        for offset in range(0, len(blob), 16)
    ]
    rows = [
        (
            f"`{offset:#06x}`",
            f"`{offset - container.HEADER.size}`" if offset >= container.HEADER.size else "—",
            f"`{data.hex(' ')}`",
            meaning,
        )
        for offset, data, meaning in _annotate(program, blob, EXAMPLE_LABELS)
    ]
    digest = container.program_digest(blob).hex()
    source = inspect.getsource(example_program)
    return (
        "Built in Python (`vyre_runtime.vir0.docgen.example_program`, the source of these bytes):\n\n"
        "```python\n" + source + "```\n\n"
        f"The container is {len(blob)} bytes (a {container.HEADER.size}-byte header and a "
        f"{len(blob) - container.HEADER.size}-byte body); its digest is\n`{digest}`.\n\n"
        "```text\n"
        + "\n".join(raw)
        + "\n```\n\n"
        + markdown_table(("file offset", "body offset", "bytes", "field"), rows)
    )


# ---------------------------------------------------------------- splicing blocks into the document


class GeneratedBlock(NamedTuple):
    begin: str
    end: str
    render: Callable[[], str]


BLOCKS: tuple[GeneratedBlock, ...] = (
    GeneratedBlock(TABLES_BEGIN, TABLES_END, opcode_table_markdown),
    GeneratedBlock(EXAMPLE_BEGIN, EXAMPLE_END, example_markdown),
)


def render_document(text: str) -> str:
    """``text`` with every generated block brought up to date."""
    for block in BLOCKS:
        text = replace_block(text, block.begin, block.end, block.render())
    return text


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vyre_runtime.vir0.docgen",
        description="Print (or rewrite in place) the generated blocks of docs/VIR0.md.",
    )
    add_mode_arguments(parser, DOC_PATH)
    args = parser.parse_args(argv)
    if not (args.write or args.check):
        sys.stdout.write(opcode_table_markdown())
        return 0
    return write_or_check(args, render_document, REGENERATE_COMMAND)


if __name__ == "__main__":
    sys.exit(main())
