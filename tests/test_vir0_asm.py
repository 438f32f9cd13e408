"""VIR0 assembly text: the syntax of docs/VIR0.md, its errors, `.dfa`, and the builder."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vyre_runtime.errors import AssembleError, VerifyError
from vyre_runtime.vir0 import isa
from vyre_runtime.vir0.asm import assemble, assemble_program, disassemble, f32_bits_of, signature
from vyre_runtime.vir0.builder import R0, R1, R2, R3, F32Bits, ProgramBuilder, r
from vyre_runtime.vir0.container import encode
from vyre_runtime.vir0.dfa import compile_patterns
from vyre_runtime.vir0.isa import IMM_FORM, Op
from vyre_runtime.vir0.program import Binding, Instruction, Program, Table

HEAD = ".program t\n"


def _code(body: str, head: str = HEAD) -> tuple[Instruction, ...]:
    return assemble_program(head + body).code


def _one(line: str, head: str = HEAD) -> Instruction:
    return _code(f"{line}\nexit\n", head)[0]


def _error(text: str) -> AssembleError:
    with pytest.raises(AssembleError) as caught:
        assemble(text)
    return caught.value


def _error_at(text: str, line: int, column: int, message: str) -> AssembleError:
    error = _error(text)
    assert (error.line, error.column) == (line, column), error.message
    assert message in error.message
    assert error.message.startswith(f"line {line}, column {column}: ")
    assert error.fix
    return error


# ---------------------------------------------------------------- directives and defaults


def test_a_minimal_program_gets_the_documented_defaults() -> None:
    program = assemble_program(".program tiny\n    exit\n")
    assert program == Program("tiny", (Instruction(Op.EXIT),), 16, 0, 0, 1 << 24, 1024)


def test_every_setting_directive_sets_its_program_field() -> None:
    program = assemble_program(
        ".program my-prog.v2\n.registers 8\n.emit 3\n.overlap 0x40\n.fuel 1000\n.lanes 33\nexit\n"
    )
    assert (program.name, program.registers, program.emit_words, program.overlap, program.fuel, program.lanes) == (
        "my-prog.v2",
        8,
        3,
        64,
        1000,
        33,
    )


def test_directives_and_mnemonics_are_case_insensitive() -> None:
    assert _code(".REGISTERS 4\nLI r1, 2\nEXIT\n") == (Instruction(Op.LI, 1, 0, 0, 2), Instruction(Op.EXIT))


def test_comments_start_with_semicolon_or_hash_but_not_inside_quotes() -> None:
    program = assemble_program(
        '.program c ; name\n# whole line\n.table t "a;b#c" ; comment\n'
        "countb r0, r0, r0, ';' # comment\nexit;comment\n"
    )
    assert program.tables == (Table("t", b"a;b#c"),)
    assert program.code[0].imm == ord(";")


def test_crlf_line_endings_are_accepted() -> None:
    assert assemble(".program t\r\n.registers 2\r\nexit\r\n") == assemble(".program t\n.registers 2\nexit\n")


def test_string_tables_decode_every_escape() -> None:
    program = assemble_program(HEAD + '.table t "a\\n\\t\\r\\0\\\\\\"\\\'\\x41\\xfF é"\nexit\n')
    assert program.tables[0].data == b"a\n\t\r\0\\\"'A\xff " + "é".encode()


def test_hex_tables_allow_whitespace_and_may_be_empty() -> None:
    program = assemble_program(HEAD + ".table h hex 00ff 10 AB\n.table e hex\nexit\n")
    assert program.tables == (Table("h", b"\x00\xff\x10\xab"), Table("e", b""))


@pytest.mark.parametrize(
    ("form", "expected"),
    [
        ("u8 1, 2, 0x30, -1", b"\x01\x02\x30\xff"),
        ("u16 1, 0xBEEF, -2", struct.pack("<HHH", 1, 0xBEEF, 0xFFFE)),
        ("u32 1, 0xDEADBEEF, -1, 'a'", struct.pack("<IIII", 1, 0xDEADBEEF, 0xFFFFFFFF, 97)),
        ("u8", b""),
    ],
)
def test_number_tables_are_little_endian(form: str, expected: bytes) -> None:
    assert assemble_program(f"{HEAD}.table t {form}\nexit\n").tables[0].data == expected


def test_bindings_default_to_run_sum_init_zero() -> None:
    program = assemble_program(
        HEAD + ".binding a 4\n.binding g 1 global\n.binding m 2 run max init=-1\n.binding x 3 global none init=0x10\n"
        "exit\n"
    )
    assert program.bindings == (
        Binding("a", 4),
        Binding("g", 1, isa.Scope.GLOBAL, isa.Combine.NONE),
        Binding("m", 2, isa.Scope.RUN, isa.Combine.MAX, 0xFFFFFFFF),
        Binding("x", 3, isa.Scope.GLOBAL, isa.Combine.NONE, 16),
    )


# ---------------------------------------------------------------- operands


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("42", 42),
        ("0x2A", 42),
        ("0b101010", 42),
        ("-1", 0xFFFFFFFF),
        ("-2147483648", 0x80000000),
        ("'a'", 97),
        ("'\\n'", 10),
        ("'\\x00'", 0),
        ("4294967295", 0xFFFFFFFF),
        ("-0x10", 0xFFFFFFF0),
    ],
)
def test_integer_immediates(text: str, value: int) -> None:
    assert _one(f"li r1, {text}") == Instruction(Op.LI, 1, 0, 0, value)


def test_a_binary_op_with_a_number_last_uses_the_immediate_form() -> None:
    assert _one("add r1, r2, 5") == Instruction(Op.ADD | IMM_FORM, 1, 2, 0, 5)
    assert _one("add r1, r2, r5") == Instruction(Op.ADD, 1, 2, 5, 0)
    assert _one("and r1, r2, 'x'") == Instruction(Op.AND | IMM_FORM, 1, 2, 0, ord("x"))


@pytest.mark.parametrize(
    ("text", "bits"),
    [
        ("1.5", 0x3FC00000),
        ("-2.0", 0xC0000000),
        ("0.1", 0x3DCCCCCD),
        ("1e3", 0x447A0000),
        ("-0.0", 0x80000000),
        (".5", 0x3F000000),
        ("inf", 0x7F800000),
        ("-inf", 0xFF800000),
        ("nan", 0x7FC00000),
        ("0x7fc00001", 0x7FC00001),
        ("0b1", 1),
        ("1e-45", 1),  # rounds to the smallest subnormal
        ("1e39", 0x7F800000),  # overflows to infinity
        ("3.4028235e38", 0x7F7FFFFF),
        # Just above the halfway point between 1.0 and the next f32: rounding once goes up;
        # rounding via a double first lands exactly on the halfway point and goes down to 1.0.
        ("1.0000000596046447753906251", 0x3F800001),
    ],
)
def test_float_immediates_of_f_ops_are_correctly_rounded_f32_bits(text: str, bits: int) -> None:
    assert _one(f"fadd r1, r2, {text}") == Instruction(Op.FADD | IMM_FORM, 1, 2, 0, bits)


def test_f32_rounding_agrees_with_numpy_for_doubles() -> None:
    import random

    import numpy as np

    rng = random.Random(5)
    for _ in range(3000):
        value = struct.unpack("<d", rng.randbytes(8))[0]
        if value != value:
            continue
        with np.errstate(over="ignore"):
            expected = int(np.array([value], dtype=np.float64).astype(np.float32).view(np.uint32)[0])
        assert f32_bits_of(value) == expected, value


def test_registers_pairs_records_labels_tables_bindings_and_special_registers() -> None:
    program = assemble_program(
        '.program all\n.registers 8\n.emit 2\n.table lit "ab"\n.dfa d "x"\n.binding h 256\n'
        "top: sreg r1, lane_id\n"
        "    add64 r2, r4, r6\n"
        "    findl r0, r1, r2, lit\n"
        "    dfa r2, r0, r1, d\n"
        "    hist r0, r1, r2, h\n"
        "    sel r0, r1, r2, r3\n"
        "    emit r6\n"
        "    jnz r0, top\n"
        "    jmp end\n"
        "end: first: exit\n"
    )
    assert program.code == (
        Instruction(Op.SREG, 1, 0, 0, isa.SpecialRegister.LANE_ID),
        Instruction(Op.ADD64, 2, 4, 6),
        Instruction(Op.FINDL, 0, 1, 2, 0),
        Instruction(Op.DFA, 2, 0, 1, 1),
        Instruction(Op.HIST, 0, 1, 2, 0),
        Instruction(Op.SEL, 0, 1, 2, 3),
        Instruction(Op.EMIT, 0, 6),
        Instruction(Op.JNZ, 0, 0, 0, 0),
        Instruction(Op.JMP, 0, 0, 0, 9),
        Instruction(Op.EXIT),
    )


def test_operands_follow_the_opcode_table_roles() -> None:
    assert signature(isa.BY_NAME["sto"]) == "sto reg, reg, binding, imm"
    assert signature(isa.BY_NAME["add"]) == "add reg, reg, reg|number"
    assert signature(isa.BY_NAME["fmul"]) == "fmul reg, reg, reg|float"
    assert signature(isa.BY_NAME["exit"]) == "exit"
    assert _one("sto r1, r2, out, -4", HEAD + ".binding out 8\n") == Instruction(Op.STO, 1, 2, 0, 0xFFFFFFFC)


# ---------------------------------------------------------------- disassembly


def test_disassembly_prints_every_directive_labels_and_float_bits() -> None:
    blob = assemble(
        ".program d\n.table t u8 1, 2\n.binding b 4 global\nloop: fmul r1, r1, 2.0\nli r2, 70000\n"
        "li r3, -8\njnz r1, loop\nexit\n"
    )
    assert disassemble(blob) == (
        ".program d\n.registers 16\n.emit 0\n.overlap 0\n.fuel 16777216\n.lanes 1024\n"
        ".table t hex 0102\n.binding b 4 global none init=0\n\n"
        "L0:\n    fmul r1, r1, 0x40000000  ; 2.0\n    li r2, 0x11170\n    li r3, -8\n    jnz r1, L0\n    exit\n"
    )
    assert assemble(disassemble(blob)) == blob


def test_a_long_table_disassembles_and_reassembles() -> None:
    blob = assemble(HEAD + '.dfa big "abcdefgh" "zzz"\nexit\n')
    assert assemble(disassemble(blob)) == blob


# ---------------------------------------------------------------- errors, each at its line and column


def test_unknown_mnemonic_suggests_close_names() -> None:
    error = _error_at(HEAD + "    ad r1, r2, r3\n", 2, 5, "unknown mnemonic 'ad'")
    assert "'add'" in error.fix


def test_unknown_directive_suggests_close_names() -> None:
    error = _error_at(HEAD + ".registr 4\nexit\n", 2, 1, "unknown directive '.registr'")
    assert ".registers" in error.fix


@pytest.mark.parametrize(
    ("line", "column", "message"),
    [
        ("add r1, r2", 1, "add takes 3 operands, got 2"),
        ("exit r1", 6, "exit takes 0 operands, got 1"),
        ("mov r1, r2, r3", 13, "mov takes 2 operands, got 3"),
        ("add r1, 5, r2", 9, "operand 2 of add must be a register, got '5'"),
        ("mov table, r1", 5, "operand 1 of mov must be a register"),
        ("add r1 r2, r3", 8, "expected ',' before 'r2'"),
        ("add r1,, r2, r3", 8, "missing operand before ','"),
        ("add r1, r2, r3,", 15, "missing operand after ','"),
        ("add r1, r2: r3", 11, "unexpected ':'"),
        ("li r1, 0xZZ", 8, "bad number '0xZZ'"),
        ("li r1, 12abc", 8, "bad number"),
        ("li r1, 4294967296", 8, "does not fit in 32 bits"),
        ("li r1, -2147483649", 8, "does not fit in 32 bits"),
        ("li r1, " + "9" * 100, 8, "bad number"),
        ("li r1, 1.5", 8, "li takes an integer, not the float 1.5"),
        ("li r1, 'ab'", 8, "2 bytes, not one"),
        ("countb r1, r2, r3, 256", 20, "byte value 256 is out of range"),
        ("fadd r1, r2, 2", 14, "ambiguous"),
        ("fadd r1, r2, two", 14, "bad float immediate"),
        ("fadd r1, r2, 1e99999", 14, "too long or too extreme"),
        ("mov r64, r1", 5, "register r64 does not exist"),
        ("mov r99999999999999999999, r1", 5, "does not exist"),
        ("mov r16, r1", 5, "register r16 is outside the 16 registers"),
        ("add64 r15, r0, r0", 7, "the pair r15:r16 is outside"),
        ("sreg r1, lane_idd", 10, "unknown special register 'lane_idd'"),
        ("jmp nowhere", 5, "undefined label 'nowhere'"),
        ("emit r0", 6, "emit needs an emit record"),
        ("ldt8 r1, r2, missing, 0", 14, "unknown table 'missing'"),
        ("ldo r1, r2, missing, 0", 13, "unknown binding 'missing'"),
    ],
)
def test_instruction_errors_point_at_the_operand(line: str, column: int, message: str) -> None:
    _error_at(f"{HEAD}{line}\nexit\n", 2, column, message)


def test_an_emit_record_that_runs_past_the_registers_is_an_error() -> None:
    _error_at(".program t\n.registers 4\n.emit 3\nemit r2\nexit\n", 4, 6, "the 3-word record r2..r4")


def test_a_binding_named_where_a_table_is_expected_is_an_error() -> None:
    _error_at(HEAD + ".binding b 4\nldt8 r1, r2, b, 0\nexit\n", 3, 14, "'b' is a binding, not a table")


def test_a_label_used_but_defined_twice_or_at_the_end_is_an_error() -> None:
    _error_at(HEAD + "top: nop\ntop: exit\n", 3, 1, "label 'top' is defined twice (first on line 2)")
    _error_at(HEAD + "jmp end\nexit\nend:\n", 2, 5, "no instruction follows it")


def test_undefined_label_suggests_defined_ones() -> None:
    assert "'loop'" in _error_at(HEAD + "loop: jmp lop\n", 2, 11, "undefined label 'lop'").fix


@pytest.mark.parametrize(
    ("text", "line", "column", "message"),
    [
        ('.table t "abc\nexit\n', 2, 10, "unterminated string"),
        ('.table t "a\\qb"\nexit\n', 2, 12, "bad escape"),
        ('.table t "\\x4"\nexit\n', 2, 11, "bad escape"),
        ("li r1, 'a\nexit\n", 2, 8, "unterminated character literal"),
        (".table t hex 0g\nexit\n", 2, 14, "'0g' is not hex digits"),
        (".table t hex 0 ff\nexit\n", 2, 16, "odd number of digits"),
        (".table t u8 256\nexit\n", 2, 13, "u8 value 256 is out of range"),
        (".table t u16 1 2\nexit\n", 2, 16, "expected ','"),
        (".table t\nexit\n", 2, 1, "has no contents"),
        ('.table t "a" "b"\nexit\n', 2, 14, "unexpected"),
        (".table 9t hex\nexit\n", 2, 8, "'9t' is not a valid table name"),
        (".table t hex\n.binding t 1\nexit\n", 3, 10, "'t' is already declared as a table on line 2"),
        (".binding b 1 global sum\nexit\n", 2, 21, "a global binding cannot combine sum"),
        (".binding b 1 none\nexit\n", 2, 14, "a run binding cannot combine none"),
        (".binding b 0\nexit\n", 2, 12, "binding words 0 is out of range"),
        (".binding b 1 run run\nexit\n", 2, 18, "unexpected 'run'"),
        (".binding b\nexit\n", 2, 1, "needs a word count"),
        (".binding b 1 init=x\nexit\n", 2, 19, "bad number 'x'"),
        (".registers 65\nexit\n", 2, 12, ".registers 65 is out of range"),
        (".registers 4\n.registers 5\nexit\n", 3, 1, ".registers is given twice (first on line 2)"),
        (".fuel 0\nexit\n", 2, 7, "out of range"),
        (".program again\nexit\n", 2, 1, ".program is given twice"),
        (".dfa d\nexit\n", 2, 1, "at least one pattern"),
        ('.dfa d "a" ""\nexit\n', 2, 12, "empty DFA pattern"),
        (".dfa d abc\nexit\n", 2, 8, "not a quoted string"),
        (": exit\n", 2, 1, "expected a directive, label or instruction, found ':'"),
    ],
)
def test_directive_and_lexical_errors_point_at_the_culprit(text: str, line: int, column: int, message: str) -> None:
    _error_at(HEAD + text, line, column, message)


def test_a_program_name_must_be_valid_and_present() -> None:
    _error_at(".program 1abc\nexit\n", 1, 10, "not a valid program name")
    _error_at(".program " + "x" * 65 + "\nexit\n", 1, 10, "longer than 64 bytes")
    _error_at("exit\n", 1, 1, "no .program line")


def test_a_program_needs_instructions_that_cannot_fall_off_the_end() -> None:
    _error_at(HEAD, 1, 1, "no instructions")
    _error_at(HEAD + "nop\n  li r1, 2 ; last\n", 3, 3, "run off its end after li")


def test_verifier_errors_point_at_the_instruction_line() -> None:
    _error_at(HEAD + ".binding small 4\nnop\n  hist r0, r1, r2, small\nexit\n", 4, 3, "256 words")
    _error_at(HEAD + '.dfa d "x"\nnop\n   dfae r0, r1, r2, d\nexit\n', 4, 4, "dfae emits")


def test_tables_of_the_wrong_kind_are_errors_at_the_operand() -> None:
    _error_at(HEAD + '.table raw "abc"\ndfa r0, r1, r2, raw\nexit\n', 3, 17, "'raw' is not a DFA table")
    _error_at(HEAD + ".table empty hex\nfindl r0, r1, r2, empty\nexit\n", 3, 19, "is empty")


def test_too_many_tables_or_bindings_are_errors() -> None:
    tables = "".join(f".table t{i} hex\n" for i in range(isa.MAX_TABLES + 1))
    _error_at(HEAD + tables + "exit\n", isa.MAX_TABLES + 2, 1, "more than 64 tables")
    bindings = "".join(f".binding b{i} 1\n" for i in range(isa.MAX_BINDINGS + 1))
    _error_at(HEAD + bindings + "exit\n", isa.MAX_BINDINGS + 2, 1, "more than 16 bindings")


def test_assemble_rejects_bytes_input() -> None:
    with pytest.raises(AssembleError, match="expected text"):
        assemble(b".program t\nexit\n")  # type: ignore[arg-type]


def test_errors_carry_the_source_name_for_the_cli() -> None:
    with pytest.raises(AssembleError) as caught:
        assemble(".program t\nbad\n", source_name="x.vasm")
    assert caught.value.source_name == "x.vasm"  # type: ignore[attr-defined]


# ---------------------------------------------------------------- .dfa against a brute-force reference


def _run_dfa(table: bytes, data: bytes) -> int:
    """The `dfa` intrinsic's count, as docs/VIR0.md defines it."""
    state, count = 0, 0
    for byte in data:
        transition = struct.unpack_from("<I", table, 4 + 4 * (256 * state + byte))[0]
        state = transition & ~isa.DFA_ACCEPT_BIT
        count += bool(transition & isa.DFA_ACCEPT_BIT)
    return count


def _positions_where_a_pattern_ends(patterns: list[bytes], data: bytes) -> int:
    return sum(any(data[: end + 1].endswith(p) for p in patterns) for end in range(len(data)))


_small_bytes = st.lists(st.sampled_from(b"abc\x00"), min_size=1, max_size=5).map(bytes)


@settings(max_examples=300, deadline=None)
@given(patterns=st.lists(_small_bytes, min_size=1, max_size=5), data=st.lists(st.sampled_from(b"abcd\x00")).map(bytes))
def test_dfa_counts_the_positions_where_some_pattern_ends(patterns: list[bytes], data: bytes) -> None:
    table = compile_patterns(patterns)
    assert _run_dfa(table, data) == _positions_where_a_pattern_ends(patterns, data)


def test_the_dfa_directive_builds_the_same_table_as_compile_patterns() -> None:
    program = assemble_program(HEAD + '.dfa words "he" "she" "his" "hers"\nexit\n')
    assert program.tables == (Table("words", compile_patterns([b"he", b"she", b"his", b"hers"])),)
    assert _run_dfa(program.tables[0].data, b"ushers") == 2  # "she" and "he" end together, then "hers"


def test_the_dfa_has_one_state_per_trie_node() -> None:
    table = compile_patterns([b"ab", b"ac"])
    assert struct.unpack_from("<I", table)[0] == 4


@pytest.mark.parametrize(("patterns", "message"), [([], "at least one"), ([b"a", b""], "empty"), (["a"], "not bytes")])
def test_compile_patterns_rejects_unusable_pattern_sets(patterns: list[bytes], message: str) -> None:
    with pytest.raises(VerifyError, match=message):
        compile_patterns(patterns)


def test_compile_patterns_rejects_more_states_than_a_table_can_hold() -> None:
    with pytest.raises(VerifyError, match="DFA states"):
        compile_patterns([bytes(10000)])


# ---------------------------------------------------------------- builder


EQUIVALENT_SOURCE = """
.program built
.registers 8
.emit 2
.overlap 16
.fuel 5000
.lanes 64
.table lit "needle"
.dfa pats "he" "she"
.binding hits 256
.binding seen 1 global none init=7
    sreg r0, region_len
    li r1, -1
    countb r2, r1, r0, 10
top:
    add r1, r1, 1
    add r2, r1, r3
    fmul r4, r4, 0.5
    fadd r4, r4, 0x7fc00001
    and r5, r5, 0xff
    not r6, r5
    ldt8 r3, r1, lit, 2
    findl r3, r1, r0, lit
    dfa r2, r1, r0, pats
    hist r1, r1, r0, hits
    atadd r3, r1, r2, seen
    emit r6
    ltu r7, r1, r0
    jnz r7, top
    jmp done
done:
    exit
"""


def _equivalent_builder() -> ProgramBuilder:
    b = ProgramBuilder("built", registers=8, emit_words=2, overlap=16, fuel=5000, lanes=64)
    lit = b.table("lit", b"needle")
    pats = b.dfa("pats", [b"he", b"she"])
    hits = b.binding("hits", 256)
    seen = b.binding("seen", 1, scope="global", init=7)
    top, done = b.label(), b.label()
    b.sreg(R0, "region_len")
    b.li(R1, -1)
    b.countb(R2, R1, R0, 10)
    b.place(top)
    b.add(R1, R1, 1).add(R2, R1, R3)
    b.fmul(r(4), r(4), 0.5)
    b.fadd(r(4), r(4), F32Bits(0x7FC00001))
    b.and_(r(5), r(5), 0xFF)
    b.not_(r(6), r(5))
    b.ldt8(R3, R1, lit, 2)
    b.findl(R3, R1, R0, lit)
    b.dfa(R2, R1, R0, pats)
    b.hist(R1, R1, R0, hits)
    b.atadd(R3, R1, R2, seen)
    b.emit(r(6))
    b.ltu(r(7), R1, R0)
    b.jnz(r(7), top)
    b.jmp(done)
    b.place(done)
    b.exit()
    return b


def test_the_builder_produces_the_same_bytes_as_equivalent_assembly() -> None:
    assert _equivalent_builder().encode() == assemble(EQUIVALENT_SOURCE)
    assert _equivalent_builder().build() == assemble_program(EQUIVALENT_SOURCE)


def test_builder_methods_exist_for_every_mnemonic_with_keywords_suffixed() -> None:
    for info in isa.OPCODES:
        name = info.name + "_" if info.name in ("and", "or", "not") else info.name
        assert callable(getattr(ProgramBuilder, name)), info.name
    assert "add reg, reg, reg|number" in ProgramBuilder.add.__doc__


def test_builder_labels_may_be_placed_after_use() -> None:
    b = ProgramBuilder("fwd")
    end = b.label()
    b.jmp(end).nop()
    b.place(end)
    b.exit()
    assert b.build().code[0] == Instruction(Op.JMP, 0, 0, 0, 2)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda b: b.mov(1, R2), "operand 1 must be a register"),
        (lambda b: b.fadd(R1, R1, 1), "a float or F32Bits"),
        (lambda b: b.li(R1, "x"), "an int"),
        (lambda b: b.li(R1, 1 << 32), "a 32-bit int"),
        (lambda b: b.jmp(b.label()), "a placed label"),
        (lambda b: b.jmp(3), "a Label"),
        (lambda b: b.ldt8(R1, R1, "nope", 0), "declared table"),
        (lambda b: b.sreg(R1, "nope"), "special register"),
        (lambda b: b.countb(R1, R1, R1, 300), "byte value"),
        (lambda b: b.mov(r(20), R1), "names r20"),
    ],
)
def test_builder_misuse_raises_verify_error_naming_the_instruction(call: object, message: str) -> None:
    b = ProgramBuilder("bad")
    call(b)  # type: ignore[operator]
    b.exit()
    with pytest.raises(VerifyError, match=message):
        b.build()


def test_builder_rejects_bad_declarations_immediately() -> None:
    b = ProgramBuilder("bad")
    b.table("x", b"")
    with pytest.raises(VerifyError, match="declared twice"):
        b.binding("x", 1)
    with pytest.raises(VerifyError, match="unknown binding scope"):
        b.binding("y", 1, scope="forever")
    with pytest.raises(VerifyError, match="takes 3 operands"):
        b.add(R1, R2)
    with pytest.raises(VerifyError, match="does not exist"):
        r(64)
    label = b.place(b.label())
    with pytest.raises(VerifyError, match="placed twice"):
        b.place(label)


def test_builder_programs_encode_like_any_program() -> None:
    b = ProgramBuilder("enc")
    b.exit()
    assert b.encode() == encode(Program("enc", (Instruction(Op.EXIT),)))
