"""VIR0 assembly text <-> container bytes (`vyre asm` / `vyre disasm`).

The syntax is fixed in docs/VIR0.md §13. Nothing here lists instructions:
an instruction's operands are the fields isa.OPCODES marks as used, in the order d, a, b, imm
(``operand_fields``), and each operand is read or printed according to its Role. A binary op
whose last operand is a number is assembled in its immediate form (op | IMM_FORM).

Round-trip contract: ``assemble(disassemble(blob)) == blob`` for every blob ``verify.load``
accepts, so the disassembler prints every directive (defaults too), tables as hex, integer
immediates in a form the assembler reads back to the same u32, and f-op immediates as raw bits.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from fractions import Fraction

import numpy as np

from vyre_runtime.errors import AssembleError, VerifyError
from vyre_runtime.vir0 import container, isa
from vyre_runtime.vir0.dfa import compile_patterns
from vyre_runtime.vir0.isa import OpClass, OpInfo, Role, SpecialRegister
from vyre_runtime.vir0.program import Binding, Instruction, Program, Table
from vyre_runtime.vir0.verify import IDENTIFIER, PROGRAM_NAME, TERMINATORS, dfa_state_count, load, verify

# ---------------------------------------------------------------- operands, shared with builder.py

REGISTER_ROLES = frozenset({Role.REG_WRITE, Role.REG_READ, Role.REG_READ_WRITE, Role.IMM_REG_READ})
PAIR_ROLES = frozenset({Role.PAIR_WRITE, Role.PAIR_READ, Role.PAIR_READ_WRITE})
TABLE_ROLES = frozenset({Role.TABLE, Role.DFA_TABLE, Role.LITERAL_TABLE})
SPECIAL_REGISTERS: dict[str, SpecialRegister] = {member.name.lower(): member for member in SpecialRegister}

_ROLE_WORDS = {
    Role.PAIR_WRITE: "pair",
    Role.PAIR_READ: "pair",
    Role.PAIR_READ_WRITE: "pair",
    Role.RECORD_READ: "record",
    Role.IMMEDIATE: "imm",
    Role.BYTE: "byte",
    Role.JUMP_TARGET: "label",
    Role.TABLE: "table",
    Role.DFA_TABLE: "dfa_table",
    Role.LITERAL_TABLE: "literal_table",
    Role.BINDING: "binding",
    Role.SPECIAL: "special",
}


def operand_fields(info: OpInfo, is_imm: bool) -> tuple[tuple[str, Role], ...]:
    """(field, role) of each written operand: the used fields in the order d, a, b, imm."""
    roles = isa.effective_roles(info, is_imm)
    return tuple((name, role) for (name, _), role in zip(info.fields, roles, strict=True) if role != Role.UNUSED)


def takes_float_immediate(info: OpInfo) -> bool:
    """True when the immediate form's number is an f32 (bits or a float literal)."""
    return info.op_class == OpClass.FLOAT_BINARY


def signature(info: OpInfo) -> str:
    """How an instruction is written, e.g. ``add reg, reg, reg|number``."""
    words = [_ROLE_WORDS.get(role, "reg") for _, role in operand_fields(info, False)]
    if info.has_imm_form:
        words[-1] = "reg|float" if takes_float_immediate(info) else "reg|number"
    return f"{info.name} {', '.join(words)}".rstrip()


def f32_bits_of(value: Fraction | float, negative: bool = False) -> int:
    """IEEE binary32 bits nearest ``value`` (round to nearest even, subnormals kept, overflow to inf).

    Rounds from the exact value, so a decimal literal is rounded once, not via a double.
    """
    if isinstance(value, float):
        if value != value:
            return isa.CANONICAL_NAN
        negative = value < 0 or (value == 0 and str(value).startswith("-"))
        if value in (float("inf"), float("-inf")):
            return (negative << 31) | 0x7F800000
        value = Fraction(abs(value))
    sign = int(negative) << 31
    if value == 0:
        return sign
    numerator, denominator = value.numerator, value.denominator
    exponent = numerator.bit_length() - denominator.bit_length()
    if (numerator << max(-exponent, 0)) < (denominator << max(exponent, 0)):
        exponent -= 1  # now 2^exponent <= value < 2^(exponent + 1)
    exponent = max(exponent, -126)  # below the normal range the spacing stays 2^-149
    shift = 23 - exponent
    if shift >= 0:
        mantissa, remainder = divmod(numerator << shift, denominator)
        twice_remainder, unit = remainder << 1, denominator
    else:
        mantissa, remainder = divmod(numerator, denominator << -shift)
        twice_remainder, unit = remainder << 1, denominator << -shift
    if twice_remainder > unit or (twice_remainder == unit and mantissa & 1):
        mantissa += 1
    if mantissa == 1 << 24:
        mantissa >>= 1
        exponent += 1
    if exponent > 127:
        return sign | 0x7F800000
    if mantissa < 1 << 23:
        return sign | mantissa  # subnormal
    return sign | ((exponent + 127) << 23) | (mantissa - (1 << 23))


def _f32_text(bits: int) -> str:
    return str(np.array([bits], dtype=np.uint32).view(np.float32)[0])


# ---------------------------------------------------------------- lexer


class TokenKind(Enum):
    WORD = "word"
    STRING = "string"
    CHAR = "character"
    COMMA = "','"
    COLON = "':'"


@dataclass(frozen=True)
class Token:
    kind: TokenKind
    text: str  # as written (for STRING and CHAR: including quotes)
    column: int  # 1-based
    value: bytes = b""  # STRING and CHAR: the bytes after escapes


_WORD = re.compile(r"[^\s,:;#\"']+")
_SIMPLE_ESCAPES = {"n": 10, "t": 9, "r": 13, "0": 0, "\\": 92, '"': 34, "'": 39}
_HEX_PAIR = re.compile(r"[0-9a-fA-F]{2}")


def _read_quoted(line: str, start: int, line_number: int) -> tuple[bytes, int]:
    quote = line[start]
    what = "string" if quote == '"' else "character literal"
    out = bytearray()
    i = start + 1
    while i < len(line):
        ch = line[i]
        if ch == quote:
            return bytes(out), i + 1
        if ch != "\\":
            out += ch.encode("utf-8")
            i += 1
            continue
        escape = line[i + 1 : i + 2]
        if escape in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[escape])
            i += 2
        elif escape == "x" and _HEX_PAIR.fullmatch(line[i + 2 : i + 4]):
            out.append(int(line[i + 2 : i + 4], 16))
            i += 4
        else:
            raise AssembleError(
                f"bad escape {line[i : i + 4]!r} in a {what}",
                line_number,
                i + 1,
                "use one of \\n \\t \\r \\0 \\\\ \\\" \\' or \\xHH (two hex digits)",
            )
    raise AssembleError(f"unterminated {what}", line_number, start + 1, f"close it with {quote}")


def tokenize(line: str, line_number: int) -> list[Token]:
    """Tokens of one source line; ``;`` or ``#`` outside quotes starts a comment."""
    tokens: list[Token] = []
    i = 0
    while i < len(line):
        ch = line[i]
        if ch.isspace():
            i += 1
        elif ch in ";#":
            break
        elif ch == ",":
            tokens.append(Token(TokenKind.COMMA, ch, i + 1))
            i += 1
        elif ch == ":":
            tokens.append(Token(TokenKind.COLON, ch, i + 1))
            i += 1
        elif ch in "\"'":
            value, end = _read_quoted(line, i, line_number)
            kind = TokenKind.STRING if ch == '"' else TokenKind.CHAR
            tokens.append(Token(kind, line[i:end], i + 1, value))
            i = end
        else:
            # Every character not handled above starts a word, so the match is never empty.
            end = _WORD.match(line, i).end()  # type: ignore[union-attr]
            tokens.append(Token(TokenKind.WORD, line[i:end], i + 1))
            i = end
    return tokens


# ---------------------------------------------------------------- numbers

_REGISTER = re.compile(r"[rR]([0-9]+)\Z")
_INTEGER = re.compile(r"(-?)(?:0[xX]([0-9a-fA-F]+)|0[bB]([01]+)|([0-9]+))\Z")
_DECIMAL_FLOAT = re.compile(r"([+-]?)((?:[0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)(?:[eE]([+-]?[0-9]+))?)\Z")
_MAX_NUMBER_CHARS = 80  # longer text cannot be a 32-bit value (and int() of huge text is slow)
_FLOAT_WORDS = {"inf": 0x7F800000, "+inf": 0x7F800000, "-inf": 0xFF800000, "nan": isa.CANONICAL_NAN}
U32_MAX = 0xFFFFFFFF


def _is_register(token: Token) -> bool:
    return token.kind is TokenKind.WORD and _REGISTER.match(token.text) is not None


def _integer(token: Token, line: int) -> int:
    """The integer a WORD or CHAR token spells (may be negative or large; callers range-check)."""
    if token.kind is TokenKind.CHAR:
        if len(token.value) != 1:
            raise AssembleError(
                f"character literal {token.text} is {len(token.value)} bytes, not one",
                line,
                token.column,
                "write one ASCII character or an escape like '\\x41'",
            )
        return token.value[0]
    match = _INTEGER.match(token.text) if token.kind is TokenKind.WORD else None
    if match is None or len(token.text) > _MAX_NUMBER_CHARS:
        raise AssembleError(
            f"bad number {token.text!r}",
            line,
            token.column,
            "write a decimal (42, -1), hex (0x2a), binary (0b101) or character ('a') number",
        )
    sign, hex_digits, binary_digits, decimal_digits = match.groups()
    if hex_digits is not None:
        value = int(hex_digits, 16)
    elif binary_digits is not None:
        value = int(binary_digits, 2)
    else:
        value = int(decimal_digits)
    return -value if sign else value


def _u32(token: Token, line: int, what: str = "number") -> int:
    """A 32-bit value; negative numbers are two's complement."""
    value = _integer(token, line)
    if not -(1 << 31) <= value <= U32_MAX:
        raise AssembleError(
            f"{what} {token.text} does not fit in 32 bits",
            line,
            token.column,
            "use a value in -2147483648..4294967295",
        )
    return value & U32_MAX


def _in_range(token: Token, line: int, what: str, low: int, high: int) -> int:
    value = _integer(token, line)
    if not low <= value <= high:
        raise AssembleError(f"{what} {token.text} is out of range", line, token.column, f"use {low}..{high}")
    return value


def _decimal_float_bits(text: str) -> int | None:
    """f32 bits of a decimal literal like -1.5e3, or None when it is too long or its exponent too
    large to evaluate exactly (such text could make the exact rational arbitrarily expensive)."""
    match = _DECIMAL_FLOAT.match(text)
    if match is None or len(text) > _MAX_NUMBER_CHARS:
        return None
    sign, magnitude, exponent = match.groups()
    if abs(int(exponent or 0)) > 1000:
        return None
    return f32_bits_of(Fraction(magnitude), negative=sign == "-")


def _float_bits(token: Token, line: int) -> int:
    """An f-op immediate: a float literal (rounded to f32), inf, -inf, nan, or raw bits in hex/binary."""
    text = token.text.lower() if token.kind is TokenKind.WORD else ""
    if text in _FLOAT_WORDS:
        return _FLOAT_WORDS[text]
    if text.startswith(("0x", "0b")):
        return _u32(token, line, "float bit pattern")
    match = _DECIMAL_FLOAT.match(text)
    if match and ("." in text or "e" in text):
        bits = _decimal_float_bits(text)
        if bits is None:
            raise AssembleError(
                f"float literal {token.text} is too long or too extreme",
                line,
                token.column,
                "write at most 80 characters with an exponent within +-1000, or inf / 0.0",
            )
        return bits
    fix = "write the value with a '.' (2.0), inf, -inf, nan, or the raw f32 bits in hex (0x40000000)"
    if match:
        raise AssembleError(
            f"float immediate {token.text} is ambiguous: a decimal integer is neither a float nor bits",
            line,
            token.column,
            fix,
        )
    raise AssembleError(f"bad float immediate {token.text!r}", line, token.column, fix)


# ---------------------------------------------------------------- parser


def _suggest(name: str, candidates: Iterable[str], otherwise: str) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=3)
    if close:
        return "did you mean " + " or ".join(repr(c) for c in close) + "?"
    return otherwise


@dataclass
class _WrittenInstruction:
    info: OpInfo
    operands: list[Token]
    line: int
    column: int


@dataclass
class _Symbol:
    kind: str  # "table" or "binding"
    index: int
    line: int


_SETTINGS: dict[str, tuple[str, int, int]] = {
    # directive: (Program field, lowest, highest)
    ".registers": ("registers", 1, isa.MAX_REGISTERS),
    ".emit": ("emit_words", 0, isa.MAX_EMIT_WORDS),
    ".overlap": ("overlap", 0, isa.MAX_OVERLAP),
    ".fuel": ("fuel", 1, U32_MAX),
    ".lanes": ("lanes", 1, isa.MAX_LANES),
}
_DIRECTIVES = (".program", *_SETTINGS, ".table", ".dfa", ".binding")
_TABLE_WIDTHS = {"u8": 1, "u16": 2, "u32": 4}
_SCOPES = {scope.name.lower(): scope for scope in isa.Scope}
_COMBINES = {combine.name.lower(): combine for combine in isa.Combine}


def _check_name(token: Token, line: int, pattern: re.Pattern[str], what: str, fix: str) -> str:
    if token.kind is not TokenKind.WORD or not pattern.match(token.text):
        raise AssembleError(f"{token.text!r} is not a valid {what}", line, token.column, fix)
    if len(token.text.encode("utf-8")) > isa.MAX_NAME_BYTES:
        raise AssembleError(f"{what} {token.text!r} is longer than {isa.MAX_NAME_BYTES} bytes", line, token.column)
    return token.text


@dataclass
class _Assembly:
    """Everything the source declares, collected line by line and resolved at the end."""

    name: str | None = None
    settings: dict[str, int] = field(default_factory=dict)
    setting_lines: dict[str, int] = field(default_factory=dict)
    tables: list[Table] = field(default_factory=list)
    bindings: list[Binding] = field(default_factory=list)
    symbols: dict[str, _Symbol] = field(default_factory=dict)
    labels: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (pc, line)
    code: list[_WrittenInstruction] = field(default_factory=list)
    table_bytes: int = 0

    # -------------------------------------------------------- lines

    def read_line(self, tokens: list[Token], line: int) -> None:
        position = 0
        while position + 1 < len(tokens) and tokens[position + 1].kind is TokenKind.COLON:
            self._define_label(tokens[position], line)
            position += 2
        if position == len(tokens):
            return
        head = tokens[position]
        rest = tokens[position + 1 :]
        if head.kind is not TokenKind.WORD:
            raise AssembleError(
                f"expected a directive, label or instruction, found {head.text!r}",
                line,
                head.column,
                "start the line with a mnemonic, a `.directive` or `label:`",
            )
        if head.text.startswith("."):
            self._directive(head, rest, line)
        else:
            self._instruction(head, rest, line)

    def _define_label(self, token: Token, line: int) -> None:
        name = _check_name(token, line, IDENTIFIER, "label", "use letters, digits and _ (not first a digit)")
        if name in self.labels:
            raise AssembleError(
                f"label {name!r} is defined twice (first on line {self.labels[name][1]})",
                line,
                token.column,
                "rename one of the labels",
            )
        self.labels[name] = (len(self.code), line)

    def _instruction(self, head: Token, rest: list[Token], line: int) -> None:
        mnemonic = head.text.lower()
        info = isa.BY_NAME.get(mnemonic)
        if info is None:
            raise AssembleError(
                f"unknown mnemonic {head.text!r}",
                line,
                head.column,
                _suggest(mnemonic, isa.BY_NAME, "see isa.OPCODES (docs/VIR0.md) for the instruction list"),
            )
        if len(self.code) >= isa.MAX_CODE_INSTRUCTIONS:
            raise AssembleError(f"more than {isa.MAX_CODE_INSTRUCTIONS} instructions", line, head.column)
        self.code.append(_WrittenInstruction(info, _comma_separated(rest, line), line, head.column))

    # -------------------------------------------------------- directives

    def _directive(self, head: Token, rest: list[Token], line: int) -> None:
        directive = head.text.lower()
        if directive == ".program":
            self._program(head, rest, line)
        elif directive in _SETTINGS:
            self._setting(directive, head, rest, line)
        elif directive == ".table":
            self._table(head, rest, line)
        elif directive == ".dfa":
            self._dfa(head, rest, line)
        elif directive == ".binding":
            self._binding(head, rest, line)
        else:
            raise AssembleError(
                f"unknown directive {head.text!r}",
                line,
                head.column,
                _suggest(directive, _DIRECTIVES, "directives: " + " ".join(_DIRECTIVES)),
            )

    def _program(self, head: Token, rest: list[Token], line: int) -> None:
        if self.name is not None:
            raise AssembleError(".program is given twice", line, head.column, "keep one .program line")
        if len(rest) != 1:
            raise AssembleError(".program takes one name", line, head.column, "write `.program NAME`")
        self.name = _check_name(rest[0], line, PROGRAM_NAME, "program name", "use letters, digits, _ . -")

    def _setting(self, directive: str, head: Token, rest: list[Token], line: int) -> None:
        program_field, low, high = _SETTINGS[directive]
        if directive in self.setting_lines:
            raise AssembleError(
                f"{directive} is given twice (first on line {self.setting_lines[directive]})",
                line,
                head.column,
                f"keep one {directive} line",
            )
        if len(rest) != 1:
            raise AssembleError(f"{directive} takes one number", line, head.column, f"write `{directive} N`")
        self.settings[program_field] = _in_range(rest[0], line, directive, low, high)
        self.setting_lines[directive] = line

    def _declare(self, kind: str, name_token: Token | None, head: Token, line: int) -> str:
        if name_token is None:
            raise AssembleError(f".{kind} needs a name", line, head.column, f"write `.{kind} NAME ...`")
        name = _check_name(name_token, line, IDENTIFIER, f"{kind} name", "use letters, digits and _")
        if name in self.symbols:
            previous = self.symbols[name]
            raise AssembleError(
                f"{name!r} is already declared as a {previous.kind} on line {previous.line}",
                line,
                name_token.column,
                "tables and bindings share one namespace; rename one",
            )
        return name

    def _add_table(self, name: str, data: bytes, head: Token, line: int) -> None:
        if len(self.tables) >= isa.MAX_TABLES:
            raise AssembleError(f"more than {isa.MAX_TABLES} tables", line, head.column, "merge tables")
        self.table_bytes += len(data)
        if self.table_bytes > isa.MAX_TABLE_BYTES_TOTAL:
            raise AssembleError(
                f"tables hold more than {isa.MAX_TABLE_BYTES_TOTAL} bytes", line, head.column, "shrink the tables"
            )
        self.symbols[name] = _Symbol("table", len(self.tables), line)
        self.tables.append(Table(name, data))

    def _table(self, head: Token, rest: list[Token], line: int) -> None:
        name = self._declare("table", rest[0] if rest else None, head, line)
        body = rest[1:]
        form = body[0] if body else None
        if form is None:
            raise AssembleError(
                f"table {name!r} has no contents", line, head.column, 'add "text", hex 00ff.., or u8|u16|u32 1, 2'
            )
        if form.kind is TokenKind.STRING and len(body) == 1:
            data = form.value
        elif form.kind is TokenKind.WORD and form.text.lower() == "hex":
            data = _hex_table(body[1:], line)
        elif form.kind is TokenKind.WORD and form.text.lower() in _TABLE_WIDTHS:
            width = _TABLE_WIDTHS[form.text.lower()]
            bits = 8 * width
            numbers = [
                _in_range(token, line, form.text.lower() + " value", -(1 << (bits - 1)), (1 << bits) - 1)
                for token in _comma_separated(body[1:], line)
            ]
            data = b"".join((n & ((1 << bits) - 1)).to_bytes(width, "little") for n in numbers)
        else:
            token = body[1] if form.kind is TokenKind.STRING else form
            raise AssembleError(
                f"unexpected {token.text!r} in table {name!r}",
                line,
                token.column,
                'write one "string", or hex 00ff.., or u8|u16|u32 followed by numbers',
            )
        self._add_table(name, data, head, line)

    def _dfa(self, head: Token, rest: list[Token], line: int) -> None:
        name = self._declare("dfa", rest[0] if rest else None, head, line)
        patterns = []
        for token in rest[1:]:
            if token.kind is TokenKind.COMMA:
                continue
            if token.kind is not TokenKind.STRING:
                raise AssembleError(
                    f"DFA pattern {token.text!r} is not a quoted string", line, token.column, 'write "pattern"'
                )
            if not token.value:
                raise AssembleError("empty DFA pattern", line, token.column, "remove the empty pattern")
            patterns.append(token.value)
        try:
            data = compile_patterns(patterns)
        except VerifyError as error:
            raise AssembleError(error.message, line, head.column, error.fix) from None
        self._add_table(name, data, head, line)

    def _binding(self, head: Token, rest: list[Token], line: int) -> None:
        name = self._declare("binding", rest[0] if rest else None, head, line)
        if len(self.bindings) >= isa.MAX_BINDINGS:
            raise AssembleError(f"more than {isa.MAX_BINDINGS} bindings", line, head.column, "merge bindings")
        if len(rest) < 2:
            raise AssembleError(
                f"binding {name!r} needs a word count",
                line,
                head.column,
                "write `.binding NAME WORDS [run|global] [sum|min|max|or|and|xor|concat|none] [init=N]`",
            )
        words = _in_range(rest[1], line, "binding words", 1, isa.MAX_BINDING_WORDS)
        scope_token: Token | None = None
        combine_token: Token | None = None
        init = 0
        seen_init = False
        for token in rest[2:]:
            word = token.text.lower() if token.kind is TokenKind.WORD else ""
            if word in _SCOPES and scope_token is None:
                scope_token = token
            elif word in _COMBINES and combine_token is None:
                combine_token = token
            elif word.startswith("init=") and not seen_init:
                value_token = Token(TokenKind.WORD, token.text[5:], token.column + 5)
                init = _u32(value_token, line, "init")
                seen_init = True
            else:
                raise AssembleError(
                    f"unexpected {token.text!r} in binding {name!r}",
                    line,
                    token.column,
                    "options are one scope (run|global), one combine (sum|min|max|or|and|xor|concat|none), init=N",
                )
        scope = _SCOPES[scope_token.text.lower()] if scope_token else isa.Scope.RUN
        default_combine = isa.Combine.NONE if scope == isa.Scope.GLOBAL else isa.Combine.SUM
        combine = _COMBINES[combine_token.text.lower()] if combine_token else default_combine
        if (scope == isa.Scope.GLOBAL) != (combine == isa.Combine.NONE):
            culprit = combine_token or scope_token or head
            raise AssembleError(
                f"a {scope.name.lower()} binding cannot combine {combine.name.lower()}",
                line,
                culprit.column,
                "a global binding has combine none; a run binding one of sum|min|max|or|and|xor|concat",
            )
        self.symbols[name] = _Symbol("binding", len(self.bindings), line)
        self.bindings.append(Binding(name, words, scope, combine, init))

    # -------------------------------------------------------- resolution

    def program(self) -> Program:
        if self.name is None:
            raise AssembleError("the program has no .program line", 1, 1, "start the source with `.program NAME`")
        if not self.code:
            raise AssembleError("the program has no instructions", 1, 1, "add instructions, ending with exit")
        last = self.code[-1]
        if last.info.code not in TERMINATORS:
            raise AssembleError(
                f"the code can run off its end after {last.info.name}",
                last.line,
                last.column,
                "end the program with exit, trap or jmp",
            )
        defaults = Program(self.name, ())
        settings = {name: self.settings.get(name, getattr(defaults, name)) for name, _, _ in _SETTINGS.values()}
        shape = Program(self.name, (), tables=tuple(self.tables), bindings=tuple(self.bindings), **settings)
        code = tuple(_OperandResolver(self, shape, written).instruction() for written in self.code)
        program = dataclasses.replace(shape, code=code)
        try:
            return verify(program)
        except VerifyError as error:
            # The verifier names the instruction index; point at the line that wrote it.
            match = re.match(r"instruction (\d+)", error.message)
            written = self.code[int(match.group(1))] if match else None
            line, column = (written.line, written.column) if written else (1, 1)
            raise AssembleError(error.message, line, column, error.fix) from None


def _comma_separated(tokens: list[Token], line: int) -> list[Token]:
    """The operands of ``a, b, c``; each operand is exactly one token."""
    operands: list[Token] = []
    for i, token in enumerate(tokens):
        expect_operand = i % 2 == 0
        if token.kind is TokenKind.COLON:
            raise AssembleError("unexpected ':'", line, token.column, "a label is written `name:` at the line start")
        if token.kind is TokenKind.COMMA and expect_operand:
            raise AssembleError("missing operand before ','", line, token.column, "remove the extra ','")
        if token.kind is not TokenKind.COMMA and not expect_operand:
            raise AssembleError(
                f"expected ',' before {token.text!r}", line, token.column, "separate operands with commas"
            )
        if expect_operand:
            operands.append(token)
    if tokens and tokens[-1].kind is TokenKind.COMMA:
        raise AssembleError("missing operand after ','", line, tokens[-1].column, "remove the trailing ','")
    return operands


def _hex_table(tokens: list[Token], line: int) -> bytes:
    for token in tokens:
        if token.kind is not TokenKind.WORD or not re.fullmatch(r"[0-9a-fA-F]+", token.text):
            raise AssembleError(
                f"{token.text!r} is not hex digits", line, token.column, "write pairs of hex digits: hex 00ff 10"
            )
    digits = "".join(token.text for token in tokens)
    if len(digits) % 2:
        raise AssembleError(
            "hex table has an odd number of digits", line, tokens[-1].column, "write two digits per byte"
        )
    return bytes.fromhex(digits)


class _OperandResolver:
    """Turns one written instruction into an Instruction, checking each operand against its role."""

    def __init__(self, assembly: _Assembly, shape: Program, written: _WrittenInstruction) -> None:
        self.assembly = assembly
        self.shape = shape  # declarations only (code empty)
        self.written = written
        self.info = written.info

    def fail(self, token: Token, message: str, fix: str | None = None) -> AssembleError:
        return AssembleError(message, self.written.line, token.column, fix)

    def instruction(self) -> Instruction:
        info, operands = self.info, self.written.operands
        expected = operand_fields(info, False)
        if len(operands) != len(expected):
            column = operands[len(expected)].column if len(operands) > len(expected) else self.written.column
            raise AssembleError(
                f"{info.name} takes {len(expected)} operand{'s' if len(expected) != 1 else ''}, got {len(operands)}",
                self.written.line,
                column,
                f"write `{signature(info)}`",
            )
        is_imm = info.has_imm_form and not _is_register(operands[-1])
        values = {"d": 0, "a": 0, "b": 0, "imm": 0}
        for position, ((name, role), token) in enumerate(
            zip(operand_fields(info, is_imm), operands, strict=True), start=1
        ):
            values[name] = self.operand(position, role, token, is_imm)
        return Instruction(info.code | (isa.IMM_FORM if is_imm else 0), **values)

    def operand(self, position: int, role: Role, token: Token, is_imm: bool) -> int:
        line = self.written.line
        if role in REGISTER_ROLES or role in PAIR_ROLES or role == Role.RECORD_READ:
            return self.register(position, role, token)
        if role == Role.IMMEDIATE:
            if is_imm and takes_float_immediate(self.info):
                return _float_bits(token, line)
            if token.kind is TokenKind.WORD and _DECIMAL_FLOAT.match(token.text) and not _INTEGER.match(token.text):
                bits = _decimal_float_bits(token.text)
                hint = f": {bits:#010x} is {token.text}" if bits is not None else ""
                raise self.fail(
                    token,
                    f"{self.info.name} takes an integer, not the float {token.text}",
                    f"write the f32 bits in hex{hint}",
                )
            return _u32(token, line, "immediate")
        if role == Role.BYTE:
            return _in_range(token, line, "byte value", 0, 255)
        if role == Role.JUMP_TARGET:
            return self.label(token)
        if role in TABLE_ROLES:
            return self.table(role, token)
        if role == Role.BINDING:
            return self.symbol("binding", token).index
        if role == Role.SPECIAL:
            return self.special(token)
        raise self.fail(token, f"operand {position} of {self.info.name} has no assembly syntax ({role.name})")

    def register(self, position: int, role: Role, token: Token) -> int:
        match = _REGISTER.match(token.text) if token.kind is TokenKind.WORD else None
        if match is None:
            raise self.fail(
                token,
                f"operand {position} of {self.info.name} must be a register, got {token.text!r}",
                f"write `{signature(self.info)}`",
            )
        digits = match.group(1).lstrip("0") or "0"
        index = int(digits) if len(digits) <= 4 else isa.MAX_REGISTERS  # long digit runs: out of range
        if index >= isa.MAX_REGISTERS:
            raise self.fail(token, f"register {token.text} does not exist", f"VIR0 has r0..r{isa.MAX_REGISTERS - 1}")
        last, what = index, f"register r{index}"
        if role in PAIR_ROLES:
            last, what = index + 1, f"the pair r{index}:r{index + 1}"
        elif role == Role.RECORD_READ:
            words = self.shape.emit_words
            if words == 0:
                raise self.fail(token, "emit needs an emit record, but the program declares none", "add `.emit N`")
            last, what = index + words - 1, f"the {words}-word record r{index}..r{index + words - 1}"
        registers = self.shape.registers
        if last >= registers:
            raise self.fail(
                token,
                f"{what} is outside the {registers} registers the program declares (r0..r{registers - 1})",
                f"raise .registers to {last + 1} or use lower registers",
            )
        return index

    def label(self, token: Token) -> int:
        labels = self.assembly.labels
        if token.kind is not TokenKind.WORD or token.text not in labels:
            raise self.fail(
                token, f"undefined label {token.text!r}", _suggest(token.text, labels, "define it: `name:`")
            )
        pc = labels[token.text][0]
        if pc >= len(self.assembly.code):
            raise self.fail(
                token, f"label {token.text!r} is at the end of the code; no instruction follows it", "add one"
            )
        return pc

    def symbol(self, kind: str, token: Token) -> _Symbol:
        symbol = self.assembly.symbols.get(token.text) if token.kind is TokenKind.WORD else None
        if symbol is None:
            names = [name for name, s in self.assembly.symbols.items() if s.kind == kind]
            declare = ".table NAME ... or .dfa NAME ..." if kind == "table" else ".binding NAME WORDS"
            raise self.fail(
                token, f"unknown {kind} {token.text!r}", _suggest(token.text, names, f"declare it: {declare}")
            )
        if symbol.kind != kind:
            raise self.fail(token, f"{token.text!r} is a {symbol.kind}, not a {kind}", f"name a {kind} here")
        return symbol

    def table(self, role: Role, token: Token) -> int:
        index = self.symbol("table", token).index
        data = self.shape.tables[index].data
        if role == Role.LITERAL_TABLE and not data:
            raise self.fail(token, f"table {token.text!r} is empty; {self.info.name} needs a literal of >= 1 byte")
        if role == Role.DFA_TABLE:
            try:
                dfa_state_count(data)
            except ValueError as error:
                raise self.fail(
                    token, f"table {token.text!r} is not a DFA table: {error}", f'build one with .dfa {token.text} "p"'
                ) from None
        return index

    def special(self, token: Token) -> int:
        name = token.text.lower() if token.kind is TokenKind.WORD else ""
        if name not in SPECIAL_REGISTERS:
            raise self.fail(
                token,
                f"unknown special register {token.text!r}",
                _suggest(name, SPECIAL_REGISTERS, "special registers: " + ", ".join(SPECIAL_REGISTERS)),
            )
        return int(SPECIAL_REGISTERS[name])


# ---------------------------------------------------------------- public API


def assemble_program(text: str, *, source_name: str = "<asm>") -> Program:
    """Parse and verify assembly text; raises AssembleError with the line and column at fault."""
    if not isinstance(text, str):
        raise AssembleError(f"expected text, got {type(text).__name__}", 1, 1, "decode the source as UTF-8 first")
    assembly = _Assembly()
    try:
        for line_number, line in enumerate(text.split("\n"), start=1):
            assembly.read_line(tokenize(line.rstrip("\r"), line_number), line_number)
        return assembly.program()
    except AssembleError as error:
        error.source_name = source_name  # type: ignore[attr-defined]  # for the CLI's "file:line:col"
        raise


def assemble(text: str, *, source_name: str = "<asm>") -> bytes:
    """Canonical container bytes of verified assembly text."""
    return container.encode(assemble_program(text, source_name=source_name))


def _format_integer(value: int) -> str:
    # Small values read best in decimal, values near 2^32 as negative offsets (-1, -4), the rest
    # in hex; each form assembles back to the same u32.
    if value < 1 << 16:
        return str(value)
    if value > U32_MAX - (1 << 16):
        return str(value - (1 << 32))
    return f"{value:#x}"


def _hex_lines(data: bytes) -> str:
    digits = data.hex()
    return " ".join(digits[i : i + 64] for i in range(0, len(digits), 64))


def disassemble_program(program: Program) -> str:
    """Assembly text for a verified Program (see ``disassemble``)."""
    lines = [f".program {program.name}"]
    lines += [f"{directive} {getattr(program, name)}" for directive, (name, _, _) in _SETTINGS.items()]
    lines += [f".table {table.name} hex {_hex_lines(table.data)}".rstrip() for table in program.tables]
    lines += [
        f".binding {b.name} {b.words} {isa.Scope(b.scope).name.lower()} {isa.Combine(b.combine).name.lower()} "
        f"init={_format_integer(b.init)}"
        for b in program.bindings
    ]
    lines.append("")
    targets: set[int] = set()
    decoded = []
    for instruction in program.code:
        opcode = isa.decode_opcode(instruction.op)
        if opcode is None:
            raise VerifyError(f"opcode byte {instruction.op:#04x} is not a VIR0 instruction")
        decoded.append(opcode)
        info, is_imm = opcode
        targets.update(
            getattr(instruction, name) for name, role in operand_fields(info, is_imm) if role == Role.JUMP_TARGET
        )
    for pc, (instruction, (info, is_imm)) in enumerate(zip(program.code, decoded, strict=True)):
        if pc in targets:
            lines.append(f"L{pc}:")
        operands, comment = [], ""
        for name, role in operand_fields(info, is_imm):
            value = getattr(instruction, name)
            if role in REGISTER_ROLES or role in PAIR_ROLES or role == Role.RECORD_READ:
                operands.append(f"r{value}")
            elif role == Role.IMMEDIATE and is_imm and takes_float_immediate(info):
                operands.append(f"{value:#010x}")
                comment = f"  ; {_f32_text(value)}"
            elif role == Role.IMMEDIATE:
                operands.append(_format_integer(value))
            elif role == Role.BYTE:
                operands.append(str(value))
            elif role == Role.JUMP_TARGET:
                operands.append(f"L{value}")
            elif role in TABLE_ROLES:
                operands.append(program.tables[value].name)
            elif role == Role.BINDING:
                operands.append(program.bindings[value].name)
            elif role == Role.SPECIAL:
                operands.append(SpecialRegister(value).name.lower())
            else:  # a new Role in isa.py needs a written form here and in _OperandResolver.operand
                raise VerifyError(f"{info.name}: operand role {role.name} has no assembly syntax")
        lines.append(f"    {info.name} {', '.join(operands)}".rstrip() + comment)
    return "\n".join(lines) + "\n"


def disassemble(blob: bytes) -> str:
    """Assembly text for container bytes; ``assemble(disassemble(blob)) == blob``."""
    return disassemble_program(load(blob))
