"""The VIR0 instruction set: the one opcode table everything else derives from.

The assembler, disassembler, verifier, CPU interpreter dispatch, the generated CUDA header and
the opcode tables in docs/VIR0.md all read ``OPCODES`` below. Add an instruction here first.

Encoding (docs/VIR0.md, "Instructions"): every instruction is 8 bytes, little-endian:
``op:u8 d:u8 a:u8 b:u8 imm:u32``. Bit 7 of ``op`` (``IMM_FORM``) selects the immediate form of
binary ALU instructions: the second source operand is ``imm`` instead of register ``b``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

INSTRUCTION_BYTES = 8
IMM_FORM = 0x80
GROUP_SIZE = 32  # lanes per lane group (a warp on the GPU); fixed by the spec
NO_MATCH = 0xFFFFFFFF  # result of find intrinsics that find nothing
CANONICAL_NAN = 0x7FC00000  # every NaN an f32 arithmetic instruction produces

# Hard limits, checked by the decoder before it allocates anything.
MAX_PROGRAM_BYTES = 16 << 20
MAX_CODE_INSTRUCTIONS = 65536
MAX_REGISTERS = 64
MAX_TABLES = 64
MAX_TABLE_BYTES_TOTAL = 8 << 20
MAX_BINDINGS = 16
MAX_BINDING_WORDS = 1 << 24
MAX_EMIT_WORDS = 8
MAX_NAME_BYTES = 64
MAX_LANES = 1 << 20
MAX_OVERLAP = 1 << 20
MAX_DFA_STATES = 65536
DFA_ACCEPT_BIT = 0x80000000


class Role(IntEnum):
    """What an instruction field means; the verifier, assembler and docs read these."""

    UNUSED = 0  # field must be zero
    REG_WRITE = 1  # register written
    REG_READ = 2  # register read
    REG_READ_WRITE = 3  # register read then written
    PAIR_WRITE = 4  # registers n, n+1 written as one 64-bit value (n = low word)
    PAIR_READ = 5  # registers n, n+1 read as one 64-bit value
    PAIR_READ_WRITE = 6  # pair read then written
    RECORD_READ = 7  # registers n .. n+emit_words-1 read (an emit record)
    IMMEDIATE = 8  # any 32-bit value
    BYTE = 9  # immediate that must be < 256
    JUMP_TARGET = 10  # instruction index inside the code section
    TABLE = 11  # index of a read-only table
    DFA_TABLE = 12  # index of a table that must hold a valid DFA
    LITERAL_TABLE = 13  # index of a non-empty table (a literal)
    BINDING = 14  # index of an output binding
    SPECIAL = 15  # a SpecialRegister number
    IMM_REG_READ = 16  # the imm field names a register that is read (SEL's condition)


class OpClass(IntEnum):
    CONTROL = 0
    MOVE = 1
    INT_BINARY = 2
    INT_UNARY = 3
    FLOAT_BINARY = 4
    FLOAT_UNARY = 5
    INT64 = 6
    MEMORY = 7
    ATOMIC = 8
    EMIT = 9
    COLLECTIVE = 10
    INTRINSIC = 11


@dataclass(frozen=True)
class OpInfo:
    code: int
    name: str  # assembler mnemonic
    op_class: OpClass
    d: Role
    a: Role
    b: Role
    imm: Role
    semantics: str  # one line, normative; docs/VIR0.md expands edge cases
    has_imm_form: bool = False  # bit 7 selects `b := imm`

    @property
    def fields(self) -> tuple[tuple[str, Role], ...]:
        return (("d", self.d), ("a", self.a), ("b", self.b), ("imm", self.imm))


class SpecialRegister(IntEnum):
    """Values read with ``sreg d, NAME``; per lane, constant for the whole run."""

    LANE_ID = 0
    LANE_COUNT = 1
    GROUP_LANE = 2  # LANE_ID % 32
    GROUP_ID = 3  # LANE_ID // 32
    REGION_LEN = 4  # readable bytes in the input region
    OWN_LO = 5  # first byte offset this run is responsible for (overlap attribution)
    OWN_HI = 6  # one past the last byte offset this run is responsible for
    FILE_OFFSET_LO = 7  # file offset of region byte 0, low word
    FILE_OFFSET_HI = 8  # ... high word
    CHUNK_INDEX = 9
    EMIT_CAPACITY = 10  # records the hit buffer of this run can hold


class FaultCode(IntEnum):
    """Why a lane stopped abnormally. 0 means no fault."""

    NONE = 0
    OOB_INPUT = 1  # input-region access or range outside [0, REGION_LEN)
    OOB_TABLE = 2  # table access outside the table, or a DFA state >= n_states
    OOB_OUTPUT = 3  # binding word index outside the binding
    FUEL_EXHAUSTED = 4  # the lane's instruction budget ran out
    TRAP = 5  # the program executed `trap`; detail = the user code
    BAD_INSTRUCTION = 6  # undecodable instruction (never reached by verified code)


class Scope(IntEnum):
    RUN = 0  # fresh buffer per run, filled with `init`; merged across chunks by `combine`
    GLOBAL = 1  # one buffer shared by every run of a registration (global counters)


class Combine(IntEnum):
    """How the host merges a RUN binding across the chunks of a stream (element-wise)."""

    NONE = 0  # only for GLOBAL bindings
    SUM = 1  # wrapping u32 addition
    MIN = 2  # unsigned
    MAX = 3  # unsigned
    OR = 4
    AND = 5
    XOR = 6
    CONCAT = 7  # keep every chunk's buffer, in chunk order


R, W, RW = Role.REG_READ, Role.REG_WRITE, Role.REG_READ_WRITE
P, PW, PRW = Role.PAIR_READ, Role.PAIR_WRITE, Role.PAIR_READ_WRITE
U, IMM = Role.UNUSED, Role.IMMEDIATE


def _op(code, name, cls, d, a, b, imm, semantics, imm_form=False) -> OpInfo:
    return OpInfo(code, name, cls, d, a, b, imm, semantics, imm_form)


_C, _M = OpClass.CONTROL, OpClass.MOVE
_IB, _IU = OpClass.INT_BINARY, OpClass.INT_UNARY
_FB, _FU = OpClass.FLOAT_BINARY, OpClass.FLOAT_UNARY
_I64, _MEM, _AT = OpClass.INT64, OpClass.MEMORY, OpClass.ATOMIC
_E, _COL, _INT = OpClass.EMIT, OpClass.COLLECTIVE, OpClass.INTRINSIC


def _ib(code: int, name: str, semantics: str) -> OpInfo:
    return _op(code, name, _IB, W, R, R, U, semantics, imm_form=True)


def _fb(code: int, name: str, semantics: str) -> OpInfo:
    return _op(code, name, _FB, W, R, R, U, semantics, imm_form=True)


def _un(code: int, name: str, cls: OpClass, semantics: str) -> OpInfo:
    return _op(code, name, cls, W, R, U, U, semantics)


OPCODES: tuple[OpInfo, ...] = (
    # control
    _op(0x00, "nop", _C, U, U, U, U, "no effect"),
    _op(0x01, "exit", _C, U, U, U, U, "the lane finishes normally"),
    _op(0x02, "trap", _C, U, U, U, IMM, "the lane faults with TRAP, detail = imm"),
    _op(0x03, "jmp", _C, U, U, U, Role.JUMP_TARGET, "pc = imm"),
    _op(0x04, "jz", _C, U, R, U, Role.JUMP_TARGET, "if a == 0: pc = imm"),
    _op(0x05, "jnz", _C, U, R, U, Role.JUMP_TARGET, "if a != 0: pc = imm"),
    # moves
    _op(0x08, "mov", _M, W, R, U, U, "d = a"),
    _op(0x09, "li", _M, W, U, U, IMM, "d = imm"),
    _op(0x0A, "sreg", _M, W, U, U, Role.SPECIAL, "d = special register imm"),
    _op(0x0B, "sel", _M, W, R, R, Role.IMM_REG_READ, "d = (r[imm] != 0) ? a : b"),
    # 32-bit integer binary (imm form: b := imm)
    _ib(0x10, "add", "d = (a + b) mod 2^32"),
    _ib(0x11, "sub", "d = (a - b) mod 2^32"),
    _ib(0x12, "mul", "d = (a * b) mod 2^32"),
    _ib(0x13, "mulhu", "d = (a * b) >> 32, unsigned"),
    _ib(0x14, "mulhs", "d = (a * b) >> 32, signed"),
    _ib(0x15, "divu", "d = a / b unsigned, truncating; b == 0 gives 0xFFFFFFFF"),
    _ib(0x16, "divs", "d = a / b signed, toward zero; b == 0 gives -1; INT_MIN / -1 gives INT_MIN"),
    _ib(0x17, "remu", "d = a % b unsigned; b == 0 gives a"),
    _ib(0x18, "rems", "d = a % b signed, sign of a; b == 0 gives a; INT_MIN % -1 gives 0"),
    _ib(0x19, "and", "d = a & b"),
    _ib(0x1A, "or", "d = a | b"),
    _ib(0x1B, "xor", "d = a ^ b"),
    _ib(0x1C, "shl", "d = a << b; b >= 32 gives 0"),
    _ib(0x1D, "shr", "d = a >> b logical; b >= 32 gives 0"),
    _ib(0x1E, "sar", "d = a >> b arithmetic; b >= 32 gives 0 or 0xFFFFFFFF by the sign of a"),
    _ib(0x1F, "rotl", "d = a rotated left by b % 32"),
    _ib(0x20, "rotr", "d = a rotated right by b % 32"),
    _ib(0x21, "minu", "d = min(a, b) unsigned"),
    _ib(0x22, "mins", "d = min(a, b) signed"),
    _ib(0x23, "maxu", "d = max(a, b) unsigned"),
    _ib(0x24, "maxs", "d = max(a, b) signed"),
    _ib(0x25, "eq", "d = 1 if a == b else 0"),
    _ib(0x26, "ne", "d = 1 if a != b else 0"),
    _ib(0x27, "ltu", "d = 1 if a < b unsigned else 0"),
    _ib(0x28, "lts", "d = 1 if a < b signed else 0"),
    _ib(0x29, "leu", "d = 1 if a <= b unsigned else 0"),
    _ib(0x2A, "les", "d = 1 if a <= b signed else 0"),
    _ib(0x2B, "gtu", "d = 1 if a > b unsigned else 0"),
    _ib(0x2C, "gts", "d = 1 if a > b signed else 0"),
    _ib(0x2D, "geu", "d = 1 if a >= b unsigned else 0"),
    _ib(0x2E, "ges", "d = 1 if a >= b signed else 0"),
    # 32-bit integer unary
    _un(0x30, "not", _IU, "d = ~a"),
    _un(0x31, "neg", _IU, "d = (0 - a) mod 2^32"),
    _un(0x32, "popcnt", _IU, "d = number of set bits of a"),
    _un(0x33, "clz", _IU, "d = leading zero bits of a; clz(0) = 32"),
    _un(0x34, "ctz", _IU, "d = trailing zero bits of a; ctz(0) = 32"),
    _un(0x35, "bswap", _IU, "d = a with its 4 bytes reversed"),
    # f32 binary (registers hold IEEE-754 binary32 bit patterns; imm form: b := imm bits)
    _fb(0x38, "fadd", "d = a + b, round to nearest even"),
    _fb(0x39, "fsub", "d = a - b, round to nearest even"),
    _fb(0x3A, "fmul", "d = a * b, round to nearest even (never fused)"),
    _fb(0x3B, "fdiv", "d = a / b, correctly rounded"),
    _fb(0x3C, "fmin", "d = IEEE minimum; one NaN operand gives the other; fmin(-0, +0) = -0"),
    _fb(0x3D, "fmax", "d = IEEE maximum; one NaN operand gives the other; fmax(-0, +0) = +0"),
    _fb(0x3E, "flt", "d = 1 if a < b else 0 (0 if either is NaN)"),
    _fb(0x3F, "fle", "d = 1 if a <= b else 0 (0 if either is NaN)"),
    _fb(0x40, "feq", "d = 1 if a == b else 0 (0 if either is NaN; -0 == +0)"),
    # f32 unary and conversions
    _un(0x41, "fsqrt", _FU, "d = sqrt(a), correctly rounded; sqrt(negative) = NaN"),
    _un(0x42, "fneg", _FU, "d = a with its sign bit flipped (bit operation, NaN kept)"),
    _un(0x43, "fabs", _FU, "d = a with its sign bit cleared (bit operation, NaN kept)"),
    _un(0x44, "itof", _FU, "d = f32(signed a), round to nearest even"),
    _un(0x45, "utof", _FU, "d = f32(unsigned a), round to nearest even"),
    _un(0x46, "ftoi", _FU, "d = i32(trunc(a)), saturating; NaN gives 0"),
    _un(0x47, "ftou", _FU, "d = u32(trunc(a)), saturating; NaN and negatives give 0"),
    # 64-bit integers on register pairs (n = low word, n+1 = high word)
    _op(0x48, "add64", _I64, PW, P, P, U, "d:d+1 = (a:a+1 + b:b+1) mod 2^64"),
    _op(0x49, "sub64", _I64, PW, P, P, U, "d:d+1 = (a:a+1 - b:b+1) mod 2^64"),
    _op(0x4A, "mul64", _I64, PW, P, P, U, "d:d+1 = (a:a+1 * b:b+1) mod 2^64"),
    _op(0x4B, "shl64", _I64, PW, P, R, U, "d:d+1 = a:a+1 << b; b >= 64 gives 0"),
    _op(0x4C, "shr64", _I64, PW, P, R, U, "d:d+1 = a:a+1 >> b logical; b >= 64 gives 0"),
    _op(0x4D, "ltu64", _I64, W, P, P, U, "d = 1 if a:a+1 < b:b+1 unsigned else 0"),
    _op(0x4E, "eq64", _I64, W, P, P, U, "d = 1 if a:a+1 == b:b+1 else 0"),
    _op(0x4F, "mulwu", _I64, PW, R, R, U, "d:d+1 = a * b, full unsigned 64-bit product"),
    # memory
    _op(0x50, "ldi8", _MEM, W, R, U, IMM, "d = input[a + imm], zero-extended"),
    _op(0x51, "ldi16", _MEM, W, R, U, IMM, "d = u16 LE at input[a + imm], zero-extended"),
    _op(0x52, "ldi32", _MEM, W, R, U, IMM, "d = u32 LE at input[a + imm]"),
    _op(0x53, "ldt8", _MEM, W, R, Role.TABLE, IMM, "d = table[b][a + imm], zero-extended"),
    _op(0x54, "ldt16", _MEM, W, R, Role.TABLE, IMM, "d = u16 LE at table[b][a + imm]"),
    _op(0x55, "ldt32", _MEM, W, R, Role.TABLE, IMM, "d = u32 LE at table[b][a + imm]"),
    _op(0x56, "ldo", _MEM, W, R, Role.BINDING, IMM, "d = binding[b] word (a + imm)"),
    _op(0x57, "sto", _MEM, R, R, Role.BINDING, IMM, "binding[b] word (a + imm) = d"),
    _op(0x58, "blen", _MEM, W, U, Role.BINDING, U, "d = words in binding[b]"),
    _op(0x59, "tlen", _MEM, W, U, Role.TABLE, U, "d = bytes in table[b]"),
    # atomics on binding words: d = old value; word = op(word, b)
    _op(0x60, "atadd", _AT, W, R, R, Role.BINDING, "old = w[a]; w[a] = old + b; d = old"),
    _op(0x61, "atmin", _AT, W, R, R, Role.BINDING, "old = w[a]; w[a] = minu(old, b); d = old"),
    _op(0x62, "atmax", _AT, W, R, R, Role.BINDING, "old = w[a]; w[a] = maxu(old, b); d = old"),
    _op(0x63, "atand", _AT, W, R, R, Role.BINDING, "old = w[a]; w[a] = old & b; d = old"),
    _op(0x64, "ator", _AT, W, R, R, Role.BINDING, "old = w[a]; w[a] = old | b; d = old"),
    _op(0x65, "atxor", _AT, W, R, R, Role.BINDING, "old = w[a]; w[a] = old ^ b; d = old"),
    _op(0x66, "atxchg", _AT, W, R, R, Role.BINDING, "old = w[a]; w[a] = b; d = old"),
    _op(0x67, "atcas", _AT, RW, R, R, Role.BINDING, "old = w[a]; if old == d: w[a] = b; d = old"),
    # emit
    _op(0x68, "emit", _E, U, Role.RECORD_READ, U, U, "append record r[a .. a+emit_words-1]"),
    # lane-group collectives over the lanes of the group executing this instruction together
    _op(0x69, "ballot", _COL, W, R, U, U, "d = bit mask of group lanes with a != 0"),
    _op(0x6A, "shfl", _COL, W, R, R, U, "d = a of group lane (b % 32), own a if it is not here"),
    _op(0x6B, "radd", _COL, W, R, U, U, "d = wrapping sum of a over the participating lanes"),
    _op(0x6C, "psum", _COL, W, R, U, U, "d = exclusive prefix sum of a in group-lane order"),
    # coarse intrinsics over the input byte range [a, a + b)
    _op(0x70, "countb", _INT, W, R, R, Role.BYTE, "d = count of bytes == imm in the range"),
    _op(0x71, "findb", _INT, W, R, R, Role.BYTE, "d = offset of first byte == imm, or NO_MATCH"),
    _op(0x72, "findl", _INT, W, R, R, Role.LITERAL_TABLE, "d = offset of first literal inside range"),
    _op(0x73, "fnv", _INT, RW, R, R, U, "d = FNV-1a-32 of the range, starting from hash d"),
    _op(0x74, "xxh32", _INT, RW, R, R, U, "d = xxHash32 of the range with seed d"),
    _op(0x75, "hist", _INT, R, R, R, Role.BINDING, "binding[imm] word (d + byte) += 1 per byte"),
    _op(0x76, "dfa", _INT, PRW, R, R, Role.DFA_TABLE, "d = end state, d+1 = matches"),
    _op(0x77, "dfae", _INT, PRW, R, R, Role.DFA_TABLE, "as dfa, and emit each match"),
)

BY_CODE: dict[int, OpInfo] = {info.code: info for info in OPCODES}
BY_NAME: dict[str, OpInfo] = {info.name: info for info in OPCODES}


class Op(IntEnum):
    """Opcode numbers by upper-case mnemonic, for code that builds programs."""

    locals().update({info.name.upper(): info.code for info in OPCODES})


def decode_opcode(op_byte: int) -> tuple[OpInfo, bool] | None:
    """(info, immediate form) for an opcode byte, or None if the byte names no instruction."""
    info = BY_CODE.get(op_byte & ~IMM_FORM)
    if info is None:
        return None
    is_imm = bool(op_byte & IMM_FORM)
    if is_imm and not info.has_imm_form:
        return None
    return info, is_imm


def effective_roles(info: OpInfo, is_imm: bool) -> tuple[Role, Role, Role, Role]:
    """Roles of (d, a, b, imm) for this form: the imm form moves operand b into imm."""
    if is_imm:
        return info.d, info.a, Role.UNUSED, Role.IMMEDIATE
    return info.d, info.a, info.b, info.imm


def _check_table() -> None:
    codes = [info.code for info in OPCODES]
    names = [info.name for info in OPCODES]
    if len(set(codes)) != len(codes) or len(set(names)) != len(names):
        raise RuntimeError("isa.OPCODES has a duplicate code or name")
    if any(code & IMM_FORM for code in codes):
        raise RuntimeError("isa.OPCODES uses bit 7, which is reserved for the immediate form")


_check_table()
