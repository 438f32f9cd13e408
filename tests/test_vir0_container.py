"""The VIR0 container is canonical and the verifier enforces every static rule.

Malformed containers are built with ``_container`` below, a second, knob-laden writer of the
layout in container.py (checked against ``encode`` first), and sealed with a correct length
and digest so that each test reaches the rule it names instead of the digest check.
"""

from __future__ import annotations

import importlib
import struct

import blake3
import pytest

from vyre_runtime.errors import DecodeError, VerifyError
from vyre_runtime.vir0 import container, isa
from vyre_runtime.vir0.container import HEADER, SECTION_ENTRY, SectionKind, decode, encode
from vyre_runtime.vir0.dfa import compile_patterns
from vyre_runtime.vir0.isa import IMM_FORM, Op
from vyre_runtime.vir0.program import Binding, Instruction, Program, Table
from vyre_runtime.vir0.verify import dfa_state_count, load, verify

EXIT = Instruction(Op.EXIT)


def _program(**overrides: object) -> Program:
    fields: dict[str, object] = {
        "name": "sample",
        "code": (Instruction(Op.LI, 1, 0, 0, 7), Instruction(Op.ADD | IMM_FORM, 2, 1, 0, 5), EXIT),
        "registers": 4,
        "emit_words": 2,
        "tables": (Table("lit", b"abc"), Table("dfa", compile_patterns([b"ab"]))),
        "bindings": (Binding("out", 300), Binding("total", 1, isa.Scope.GLOBAL, isa.Combine.NONE, 9)),
    }
    fields.update(overrides)
    return Program(**fields)  # type: ignore[arg-type]


def _align4(n: int) -> int:
    return (n + 3) & ~3


def _seal(body: bytes, section_count: int, *, version: int = 1, flags: int = 0, reserved: int = 0) -> bytes:
    """Header with a correct body length and digest in front of ``body``."""
    digest = blake3.blake3(body).digest()
    return HEADER.pack(b"VIR0", version, flags, section_count, reserved, len(body), digest) + body


def _container(
    sections: list[tuple[int, bytes]],
    *,
    gap: dict[int, bytes] | None = None,
    entry_reserved: int = 0,
    trailing: bytes = b"",
) -> bytes:
    """Lay out sections as encode does; ``gap[i]`` replaces the padding before section i."""
    gap = gap or {}
    table_size = SECTION_ENTRY.size * len(sections)
    entries, payload = bytearray(), bytearray()
    offset = table_size
    for i, (kind, data) in enumerate(sections):
        padding = gap.get(i, bytes(_align4(offset) - offset))
        offset += len(padding)
        payload += padding
        entries += SECTION_ENTRY.pack(kind, entry_reserved, offset, len(data))
        payload += data
        offset += len(data)
    return _seal(bytes(entries + payload) + trailing, len(sections))


def _sections(blob: bytes) -> list[tuple[int, bytes]]:
    """The (kind, data) sections of a canonical blob."""
    count = struct.unpack_from("<H", blob, 8)[0]
    body = blob[HEADER.size :]
    out = []
    for i in range(count):
        kind, _, offset, length = SECTION_ENTRY.unpack_from(body, i * SECTION_ENTRY.size)
        out.append((kind, body[offset : offset + length]))
    return out


def _replace(blob: bytes, kind: int, data: bytes) -> bytes:
    return _container([(k, data if k == kind else d) for k, d in _sections(blob)])


def _rejects(blob: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        decode(blob)


# ---------------------------------------------------------------- round trip and canonical form


def test_encode_then_decode_returns_an_equal_program() -> None:
    program = _program()
    assert decode(encode(program)) == program


def test_the_test_writer_matches_encode_so_malformed_variants_differ_only_where_intended() -> None:
    blob = encode(_program())
    assert _container(_sections(blob)) == blob


def test_equal_programs_have_identical_bytes_and_digest() -> None:
    assert encode(_program()) == encode(_program())
    assert container.program_digest(encode(_program())) == encode(_program())[16:48]


def test_optional_sections_are_omitted_when_empty() -> None:
    blob = encode(Program("bare", (EXIT,)))
    assert [kind for kind, _ in _sections(blob)] == [SectionKind.INFO, SectionKind.CODE, SectionKind.NAMES]
    assert load(blob) == Program("bare", (EXIT,))


def test_decode_rejects_non_bytes() -> None:
    with pytest.raises(DecodeError, match="expected bytes"):
        decode("VIR0")  # type: ignore[arg-type]


# ---------------------------------------------------------------- header


def test_blob_shorter_than_the_header_is_rejected() -> None:
    _rejects(encode(_program())[:47], "shorter than the 48-byte header")


def test_blob_over_the_program_size_limit_is_rejected_before_parsing() -> None:
    _rejects(bytes(isa.MAX_PROGRAM_BYTES + 1), "over the")


def test_wrong_magic_is_rejected() -> None:
    _rejects(b"VIR1" + encode(_program())[4:], "magic")


@pytest.mark.parametrize(("keyword", "value", "message"), [("version", 2, "version 2"), ("flags", 1, "reserved")])
def test_unknown_version_or_flags_are_rejected(keyword: str, value: int, message: str) -> None:
    body = encode(_program())[HEADER.size :]
    _rejects(_seal(body, 5, **{keyword: value}), message)


def test_reserved_header_field_is_rejected() -> None:
    _rejects(_seal(encode(_program())[HEADER.size :], 5, reserved=1), "reserved")


def test_body_length_that_disagrees_with_the_blob_is_rejected() -> None:
    blob = bytearray(encode(_program()))
    struct.pack_into("<I", blob, 12, len(blob))
    _rejects(bytes(blob), "header says the body is")


def test_wrong_digest_is_rejected() -> None:
    blob = bytearray(encode(_program()))
    blob[-1] ^= 1
    _rejects(bytes(blob), "digest")


@pytest.mark.parametrize("count", [0, 2, 6, 0xFFFF])
def test_section_count_outside_three_to_five_is_rejected(count: int) -> None:
    _rejects(_seal(encode(_program())[HEADER.size :], count), "sections")


# ---------------------------------------------------------------- section layout


def test_trailing_bytes_after_the_last_section_are_rejected() -> None:
    _rejects(_container(_sections(encode(_program())), trailing=b"\0\0\0\0"), "trailing bytes")


def test_non_zero_padding_between_sections_is_rejected() -> None:
    sections = _sections(encode(Program("abc", (EXIT,), tables=(Table("t", b"x"),))))
    # Canonical sections all have lengths that are multiples of 4, so there is never padding to
    # corrupt. A 9-byte CODE section needs 3 padding bytes after it; make one of them non-zero
    # (the layout is checked before CODE's own length rule).
    sections[1] = (SectionKind.CODE, sections[1][1] + b"\0")
    _rejects(_container(sections, gap={2: b"\0\0\1"}), "non-zero padding")


def test_a_section_at_a_non_canonical_offset_is_rejected() -> None:
    _rejects(_container(_sections(encode(_program())), gap={1: bytes(4)}), "canonical offset")


def test_misordered_sections_are_rejected() -> None:
    sections = _sections(encode(_program()))
    sections[1], sections[2] = sections[2], sections[1]
    _rejects(_container(sections), "ascending")


def test_a_repeated_section_kind_is_rejected() -> None:
    sections = _sections(encode(Program("bare", (EXIT,))))
    _rejects(_container([sections[0], sections[1], sections[1], sections[2]]), "ascending")


def test_an_unknown_section_kind_is_rejected() -> None:
    sections = _sections(encode(Program("bare", (EXIT,))))
    _rejects(_container([*sections[:2], (9, sections[2][1])]), "kind 9")


def test_a_non_zero_reserved_field_in_a_section_entry_is_rejected() -> None:
    _rejects(_container(_sections(encode(_program())), entry_reserved=1), "reserved")


def test_a_section_running_past_the_blob_is_rejected() -> None:
    blob = bytearray(encode(Program("bare", (EXIT,))))
    struct.pack_into("<I", blob, HEADER.size + 2 * SECTION_ENTRY.size + 8, 1 << 20)  # NAMES length
    _rejects(_seal(bytes(blob[HEADER.size :]), 3), "past the end")


def test_a_missing_required_section_is_rejected() -> None:
    sections = _sections(encode(_program()))
    _rejects(_container([s for s in sections if s[0] != SectionKind.CODE]), "CODE section is missing")


@pytest.mark.parametrize("kind", [SectionKind.TABLES, SectionKind.BINDINGS])
def test_an_optional_section_present_but_empty_is_rejected(kind: SectionKind) -> None:
    sections = _sections(encode(Program("bare", (EXIT,))))
    _rejects(_container([*sections[:2], (kind, struct.pack("<I", 0)), sections[2]]), "omit the section")


# ---------------------------------------------------------------- INFO and CODE


@pytest.mark.parametrize(
    ("info", "message"),
    [
        ((0, 0, 0, 1, 1), "0 registers"),
        ((isa.MAX_REGISTERS + 1, 0, 0, 1, 1), "65 registers"),
        ((16, isa.MAX_EMIT_WORDS + 1, 0, 1, 1), "emit records"),
        ((16, 0, isa.MAX_OVERLAP + 1, 1, 1), "overlap"),
        ((16, 0, 0, 0, 1), "fuel is 0"),
        ((16, 0, 0, 1, 0), "lane count 0"),
        ((16, 0, 0, 1, isa.MAX_LANES + 1), "lane count"),
    ],
)
def test_info_values_outside_their_limits_are_rejected(info: tuple[int, ...], message: str) -> None:
    _rejects(_replace(encode(Program("bare", (EXIT,))), SectionKind.INFO, container.INFO.pack(*info)), message)


def test_info_of_the_wrong_size_is_rejected() -> None:
    _rejects(_replace(encode(Program("bare", (EXIT,))), SectionKind.INFO, bytes(20)), "INFO section is 20 bytes")


def test_code_that_is_not_whole_instructions_is_rejected() -> None:
    _rejects(_replace(encode(Program("bare", (EXIT,))), SectionKind.CODE, bytes(12)), "not a multiple of 8")


def test_empty_code_is_rejected() -> None:
    _rejects(_replace(encode(Program("bare", (EXIT,))), SectionKind.CODE, b""), "1..65536 instructions")


def test_code_over_the_instruction_limit_is_rejected() -> None:
    code = EXIT.to_bytes() * (isa.MAX_CODE_INSTRUCTIONS + 1)
    _rejects(_replace(encode(Program("bare", (EXIT,))), SectionKind.CODE, code), "1..65536 instructions")


# ---------------------------------------------------------------- TABLES, BINDINGS, NAMES


def _one_table_blob() -> bytes:
    return encode(Program("p", (EXIT,), tables=(Table("t", b"abcde"),)))


def test_table_data_padding_must_be_zero() -> None:
    tables = bytearray(dict(_sections(_one_table_blob()))[SectionKind.TABLES])
    tables[-1] = 1
    _rejects(_replace(_one_table_blob(), SectionKind.TABLES, bytes(tables)), "bad padding after table 0")


def test_a_table_at_a_non_canonical_offset_is_rejected() -> None:
    tables = struct.pack("<III", 1, 16, 1) + bytes(8)
    _rejects(_replace(_one_table_blob(), SectionKind.TABLES, tables), "not canonical")


def test_a_table_running_past_its_section_is_rejected() -> None:
    tables = struct.pack("<III", 1, 12, 100) + bytes(4)
    _rejects(_replace(_one_table_blob(), SectionKind.TABLES, tables), "out of bounds")


def test_trailing_bytes_in_the_tables_section_are_rejected() -> None:
    tables = dict(_sections(_one_table_blob()))[SectionKind.TABLES] + bytes(4)
    _rejects(_replace(_one_table_blob(), SectionKind.TABLES, tables), "trailing bytes in the TABLES")


def test_more_tables_than_the_limit_are_rejected() -> None:
    tables = struct.pack("<I", isa.MAX_TABLES + 1) + struct.pack("<II", 0, 0) * (isa.MAX_TABLES + 1)
    _rejects(_replace(_one_table_blob(), SectionKind.TABLES, tables), "over its limit|tables")


def test_tables_over_the_total_byte_limit_are_rejected() -> None:
    size = isa.MAX_TABLE_BYTES_TOTAL + 4
    tables = struct.pack("<III", 1, 12, size) + bytes(size)
    _rejects(_replace(_one_table_blob(), SectionKind.TABLES, tables), "tables hold more than")


def _one_binding_blob() -> bytes:
    return encode(Program("p", (EXIT,), bindings=(Binding("b", 4),)))


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ((2, 1, 0, 4, 0), "unknown scope 2"),
        ((0, 8, 0, 4, 0), "combine 8"),
        ((0, 1, 1, 4, 0), "reserved"),
        ((0, 1, 0, 0, 0), "0 words"),
        ((0, 1, 0, isa.MAX_BINDING_WORDS + 1, 0), "words"),
    ],
)
def test_binding_entries_outside_their_enums_and_limits_are_rejected(entry: tuple[int, ...], message: str) -> None:
    data = struct.pack("<I", 1) + container.BINDING_ENTRY.pack(*entry)
    _rejects(_replace(_one_binding_blob(), SectionKind.BINDINGS, data), message)


def test_a_bindings_section_of_the_wrong_size_is_rejected() -> None:
    data = dict(_sections(_one_binding_blob()))[SectionKind.BINDINGS] + bytes(4)
    _rejects(_replace(_one_binding_blob(), SectionKind.BINDINGS, data), "does not match its count")


def _names(*names: bytes, pad: bytes = b"\0") -> bytes:
    out = bytearray(struct.pack("<I", len(names)))
    for name in names:
        out += struct.pack("<I", len(name)) + name
        out += pad * (_align4(len(out)) - len(out))
    return bytes(out)


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (_names(b"p", b"extra"), "2 names for 1 program"),
        (_names(b"p", pad=b"\1"), "bad padding after name 0"),
        (_names(b"\xff\xfe"), "not UTF-8"),
        (_names(b"x" * 65), "65 bytes"),
        (struct.pack("<I", 1), "name 0 is truncated"),
        (_names(b"p") + bytes(4), "trailing bytes in the NAMES"),
        (b"\0\0", "NAMES section is truncated"),
        (struct.pack("<I", 0xFFFFFFFF), "names"),
    ],
)
def test_malformed_names_are_rejected(names: bytes, message: str) -> None:
    _rejects(_replace(encode(Program("p", (EXIT,))), SectionKind.NAMES, names), message)


# ---------------------------------------------------------------- verifier: declarations


def _verify_rejects(program: Program, message: str) -> None:
    with pytest.raises(VerifyError, match=message):
        verify(program)


@pytest.mark.parametrize("name", ["", "1abc", "has space", "a/b", "x" * 65])
def test_invalid_program_names_are_rejected(name: str) -> None:
    _verify_rejects(Program(name, (EXIT,)), "program name")


def test_a_program_name_the_decoder_would_reject_is_rejected_by_the_verifier_too() -> None:
    # Regression: verify accepted 65-byte program names that encode() then wrote and decode() refused.
    program = Program("a" * 65, (EXIT,))
    _verify_rejects(program, "over 64 bytes")
    with pytest.raises(DecodeError):
        decode(encode(program))


@pytest.mark.parametrize("name", ["1t", "a-b", "", "t" * 65])
def test_table_and_binding_names_must_be_identifiers(name: str) -> None:
    _verify_rejects(Program("p", (EXIT,), tables=(Table(name, b""),)), "not an identifier")
    _verify_rejects(Program("p", (EXIT,), bindings=(Binding(name, 1),)), "not an identifier")


def test_a_table_and_a_binding_may_not_share_a_name() -> None:
    _verify_rejects(Program("p", (EXIT,), tables=(Table("x", b""),), bindings=(Binding("x", 1),)), "declared twice")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"registers": 0}, "registers"),
        ({"registers": 65}, "registers"),
        ({"emit_words": 9}, "emit records"),
        ({"overlap": isa.MAX_OVERLAP + 1}, "overlap"),
        ({"fuel": 0}, "fuel"),
        ({"fuel": 1 << 32}, "fuel"),
        ({"lanes": 0}, "lanes"),
        ({"code": ()}, "0 instructions"),
        ({"code": (EXIT,) * (isa.MAX_CODE_INSTRUCTIONS + 1)}, "instructions"),
        ({"tables": tuple(Table(f"t{i}", b"") for i in range(isa.MAX_TABLES + 1))}, "at most"),
        ({"bindings": tuple(Binding(f"b{i}", 1) for i in range(isa.MAX_BINDINGS + 1))}, "at most"),
        ({"tables": (Table("big", bytes(isa.MAX_TABLE_BYTES_TOTAL + 1)),)}, "tables hold more"),
        ({"bindings": (Binding("b", 0),)}, "0 words"),
        ({"bindings": (Binding("b", 1, init=-1),)}, "not a u32"),
    ],
)
def test_declarations_outside_their_limits_are_rejected(overrides: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {"name": "p", "code": (EXIT,), **overrides}
    _verify_rejects(Program(**fields), message)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("scope", "combine"),
    [(isa.Scope.GLOBAL, isa.Combine.SUM), (isa.Scope.GLOBAL, isa.Combine.CONCAT), (isa.Scope.RUN, isa.Combine.NONE)],
)
def test_global_bindings_combine_none_and_run_bindings_a_real_combine(scope: isa.Scope, combine: isa.Combine) -> None:
    _verify_rejects(Program("p", (EXIT,), bindings=(Binding("b", 1, scope, combine),)), "global binding has combine")


# ---------------------------------------------------------------- verifier: instruction fields by role


def _code(*instructions: Instruction) -> Program:
    return _program(code=(*instructions, EXIT))


@pytest.mark.parametrize(
    ("instruction", "message"),
    [
        (Instruction(Op.NOP, 1), "field d must be 0"),  # UNUSED
        (Instruction(Op.EXIT, 0, 0, 0, 1), "field imm must be 0"),  # UNUSED imm
        (Instruction(Op.ADD | IMM_FORM, 1, 1, 2, 0), "field b must be 0"),  # imm form frees b
        (Instruction(Op.MOV, 4, 0), "names r4"),  # REG_WRITE
        (Instruction(Op.MOV, 0, 4), "names r4"),  # REG_READ
        (Instruction(Op.ATCAS, 4, 0, 0, 0), "names r4"),  # REG_READ_WRITE
        (Instruction(Op.SEL, 0, 0, 0, 4), "names r4"),  # IMM_REG_READ
        (Instruction(Op.ADD64, 3, 0, 0), "pair r3:r4"),  # PAIR_WRITE
        (Instruction(Op.ADD64, 0, 3, 0), "pair r3:r4"),  # PAIR_READ
        (Instruction(Op.DFA, 3, 0, 0, 1), "pair r3:r4"),  # PAIR_READ_WRITE
        (Instruction(Op.EMIT, 0, 3), "record r3..r4"),  # RECORD_READ
        (Instruction(Op.COUNTB, 0, 0, 0, 256), "byte value"),  # BYTE
        (Instruction(Op.JMP, 0, 0, 0, 3), "jumps to 3"),  # JUMP_TARGET
        (Instruction(Op.LDT8, 0, 0, 2), "names table 2"),  # TABLE
        (Instruction(Op.FINDL, 0, 0, 0, 2), "names table 2"),  # LITERAL_TABLE index
        (Instruction(Op.DFA, 0, 0, 0, 0), "not a valid DFA"),  # DFA_TABLE kind
        (Instruction(Op.DFA, 0, 0, 0, 2), "names table 2"),  # DFA_TABLE index
        (Instruction(Op.STO, 0, 0, 2), "names binding 2"),  # BINDING
        (Instruction(Op.ATADD, 0, 0, 0, 2), "names binding 2"),  # BINDING in imm
        (Instruction(Op.SREG, 0, 0, 0, len(isa.SpecialRegister)), "special register"),  # SPECIAL
        (Instruction(0x07), "not a VIR0 instruction"),  # unassigned opcode
        (Instruction(Op.MOV | IMM_FORM, 0, 0), "not a VIR0 instruction"),  # imm form of a unary op
        (Instruction(Op.MOV, 256, 0), "not a byte"),
        (Instruction(Op.LI, 0, 0, 0, 1 << 32), "not a u32"),
        (Instruction(Op.LI, 0, 0, 0, -1), "not a u32"),
    ],
)
def test_each_role_violation_is_rejected_naming_the_instruction(instruction: Instruction, message: str) -> None:
    with pytest.raises(VerifyError, match=message) as caught:
        verify(_code(instruction))
    assert "instruction 0" in caught.value.message


def test_an_emit_needs_a_declared_emit_record() -> None:
    _verify_rejects(_program(emit_words=0, code=(Instruction(Op.EMIT, 0, 0), EXIT)), "declares no emit record")


def test_dfae_needs_a_declared_emit_record() -> None:
    _verify_rejects(_program(emit_words=0, code=(Instruction(Op.DFAE, 0, 0, 0, 1), EXIT)), "dfae emits")


def test_findl_needs_a_non_empty_literal_table() -> None:
    program = _program(tables=(Table("empty", b""),), code=(Instruction(Op.FINDL, 0, 0, 0, 0), EXIT))
    _verify_rejects(program, "empty")


def test_a_histogram_binding_needs_256_words() -> None:
    _verify_rejects(_program(code=(Instruction(Op.HIST, 0, 0, 0, 1), EXIT)), "256 words")
    verify(_program(code=(Instruction(Op.HIST, 0, 0, 0, 0), EXIT)))  # "out" has 300 words


@pytest.mark.parametrize("last", [Op.EXIT, Op.TRAP, Op.JMP])
def test_code_ending_in_exit_trap_or_jmp_is_accepted(last: Op) -> None:
    verify(_program(code=(Instruction(Op.NOP), Instruction(last))))


@pytest.mark.parametrize("last", [Instruction(Op.NOP), Instruction(Op.JZ, 0, 0, 0, 0), Instruction(Op.LI, 0)])
def test_code_that_can_fall_off_its_end_is_rejected(last: Instruction) -> None:
    _verify_rejects(_program(code=(last,)), "fall off the end")


# ---------------------------------------------------------------- DFA tables


def _dfa(states: int, transitions: list[int] | None = None) -> bytes:
    words = transitions if transitions is not None else [0] * (256 * states)
    return struct.pack(f"<I{len(words)}I", states, *words)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\1\0", "4-byte state count"),
        (_dfa(0, []), "0 DFA states"),
        (struct.pack("<I", isa.MAX_DFA_STATES + 1), "DFA states"),
        (_dfa(1)[:-4], "is 1028 bytes"),
        (_dfa(1) + bytes(4), "is 1028 bytes"),
        (_dfa(2, [2] + [0] * 511), "targets a state >= the state count"),
        (_dfa(1, [0x80000001] + [0] * 255), "targets a state >= the state count"),
    ],
)
def test_invalid_dfa_tables_are_rejected(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        dfa_state_count(data)
    _verify_rejects(
        _program(tables=(Table("d", data),), code=(Instruction(Op.DFA, 0, 0, 0, 0), EXIT)), "not a valid DFA"
    )


def test_accept_bits_are_allowed_on_any_transition() -> None:
    assert dfa_state_count(_dfa(2, [0x80000001] * 512)) == 2


def test_verifying_many_dfa_instructions_checks_each_table_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # Regression: the verifier re-scanned a DFA table for every instruction naming it, so a blob
    # with an 8 MiB table and 65536 dfa instructions stalled load() for about half a minute.
    verifier = importlib.import_module("vyre_runtime.vir0.verify")  # the package's `verify` is the function

    calls: list[int] = []
    real = verifier.dfa_state_count

    def counting(data: bytes) -> int:
        calls.append(len(data))
        return real(data)

    monkeypatch.setattr(verifier, "dfa_state_count", counting)
    program = Program("many", (Instruction(Op.DFA, 0, 2, 3, 0),) * 1000 + (EXIT,), tables=(Table("d", _dfa(3)),))
    load(encode(program))
    assert len(calls) == 1


def test_load_is_decode_then_verify() -> None:
    invalid = _program(code=(Instruction(Op.NOP),))
    blob = encode(invalid)  # encode writes what it is given; load refuses it
    assert decode(blob) == invalid
    with pytest.raises(VerifyError):
        load(blob)
