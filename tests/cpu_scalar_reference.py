"""A deliberately naive one-lane VIR0 interpreter: Python ints, one instruction at a time.

It shares no code with the NumPy backend (only the plain-Python models in cpu_harness), so a
differential test of random programs on one lane checks the vectorized implementation against
a second, obvious reading of docs/VIR0-NOTES.md. With one lane every collective is trivial: the
lane is its group's only participant.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cpu_harness import (
    FLOAT_BINARY_REFERENCE,
    FLOAT_UNARY_REFERENCE,
    INT64_REFERENCE,
    INT_BINARY_REFERENCE,
    INT_UNARY_REFERENCE,
    MASK,
    dfa_walk,
    fnv1a,
    xxh32,
)

from vyre_runtime.vir0.isa import BY_CODE, IMM_FORM, NO_MATCH, FaultCode, SpecialRegister
from vyre_runtime.vir0.program import Program


class LaneFault(Exception):  # noqa: N818 - control flow of the reference only
    def __init__(self, code: FaultCode, detail: int) -> None:
        super().__init__(code.name)
        self.code, self.detail = code, detail


@dataclass
class ScalarResult:
    outputs: dict[str, list[int]]
    records: list[list[int]] = field(default_factory=list)
    dropped: int = 0
    fault: tuple[FaultCode, int, int, int] | None = None  # code, pc, lane, detail
    instructions: int = 0


def _dfa_rows(table: bytes) -> list[list[int]]:
    states = int.from_bytes(table[:4], "little")
    words = [int.from_bytes(table[4 + 4 * i : 8 + 4 * i], "little") for i in range(states * 256)]
    return [words[s * 256 : (s + 1) * 256] for s in range(states)]


def run_one_lane(program: Program, data: bytes, fuel: int, emit_capacity: int) -> ScalarResult:
    regs = [0] * program.registers
    buffers = {b.name: [b.init] * b.words for b in program.bindings}
    names = [b.name for b in program.bindings]
    tables = [t.data for t in program.tables]
    result = ScalarResult(buffers)
    special = {
        SpecialRegister.LANE_ID: 0,
        SpecialRegister.LANE_COUNT: 1,
        SpecialRegister.GROUP_LANE: 0,
        SpecialRegister.GROUP_ID: 0,
        SpecialRegister.REGION_LEN: len(data),
        SpecialRegister.OWN_LO: 0,
        SpecialRegister.OWN_HI: len(data),
        SpecialRegister.FILE_OFFSET_LO: 0,
        SpecialRegister.FILE_OFFSET_HI: 0,
        SpecialRegister.CHUNK_INDEX: 0,
        SpecialRegister.EMIT_CAPACITY: emit_capacity,
    }

    def emit(record: list[int]) -> None:
        if len(result.records) < emit_capacity:
            result.records.append(record)
        else:
            result.dropped += 1

    def load(source: bytes, address: int, size: int, code: FaultCode) -> int:
        if address + size > len(source):
            raise LaneFault(code, address)
        return int.from_bytes(source[address : address + size], "little")

    def word_index(binding: int, index: int) -> list[int]:
        words = buffers[names[binding]]
        if index >= len(words):
            raise LaneFault(FaultCode.OOB_OUTPUT, index)
        return words

    def checked_range(start: int, length: int) -> bytes:
        if start + length > len(data):
            raise LaneFault(FaultCode.OOB_INPUT, start)
        return data[start : start + length]

    pc = 0
    while True:
        if result.instructions == fuel:
            result.fault = (FaultCode.FUEL_EXHAUSTED, pc, 0, 0)
            return result
        result.instructions += 1
        instruction = program.code[pc]
        info = BY_CODE[instruction.op & ~IMM_FORM]
        name, d, a, b, imm = info.name, instruction.d, instruction.a, instruction.b, instruction.imm
        is_imm = bool(instruction.op & IMM_FORM)
        next_pc = pc + 1
        try:
            if name == "exit":
                return result
            if name == "trap":
                raise LaneFault(FaultCode.TRAP, imm)
            if name == "jmp":
                next_pc = imm
            elif name in ("jz", "jnz"):
                if (regs[a] != 0) == (name == "jnz"):
                    next_pc = imm
            elif name == "nop":
                pass
            elif name == "mov":
                regs[d] = regs[a]
            elif name == "li":
                regs[d] = imm
            elif name == "sreg":
                regs[d] = special[SpecialRegister(imm)]
            elif name == "sel":
                regs[d] = regs[a] if regs[imm] != 0 else regs[b]
            elif name in INT_BINARY_REFERENCE or name in FLOAT_BINARY_REFERENCE:
                model = INT_BINARY_REFERENCE.get(name) or FLOAT_BINARY_REFERENCE[name]
                regs[d] = model(regs[a], imm if is_imm else regs[b])
            elif name in INT_UNARY_REFERENCE or name in FLOAT_UNARY_REFERENCE:
                regs[d] = (INT_UNARY_REFERENCE.get(name) or FLOAT_UNARY_REFERENCE[name])(regs[a])
            elif name in INT64_REFERENCE:
                pair_b, pair_result, model = INT64_REFERENCE[name]
                x = regs[a] | regs[a + 1] << 32
                y = (regs[b] | regs[b + 1] << 32) if pair_b else regs[b]
                value = model(x, y)
                if pair_result:
                    regs[d], regs[d + 1] = value & MASK, value >> 32
                else:
                    regs[d] = value
            elif name == "mulwu":
                value = regs[a] * regs[b]
                regs[d], regs[d + 1] = value & MASK, value >> 32
            elif name in ("ldi8", "ldi16", "ldi32"):
                regs[d] = load(data, (regs[a] + imm) & MASK, int(name[3:]) // 8, FaultCode.OOB_INPUT)
            elif name in ("ldt8", "ldt16", "ldt32"):
                regs[d] = load(tables[b], (regs[a] + imm) & MASK, int(name[3:]) // 8, FaultCode.OOB_TABLE)
            elif name in ("ldo", "sto"):
                index = (regs[a] + imm) & MASK
                words = word_index(b, index)
                if name == "ldo":
                    regs[d] = words[index]
                else:
                    words[index] = regs[d]
            elif name == "blen":
                regs[d] = len(buffers[names[b]])
            elif name == "tlen":
                regs[d] = len(tables[b])
            elif name.startswith("at"):
                words = word_index(imm, regs[a])
                old = words[regs[a]]
                operand = regs[b]
                new = {
                    "atadd": (old + operand) & MASK,
                    "atmin": min(old, operand),
                    "atmax": max(old, operand),
                    "atand": old & operand,
                    "ator": old | operand,
                    "atxor": old ^ operand,
                    "atxchg": operand,
                    "atcas": operand if old == regs[d] else old,
                }[name]
                words[regs[a]] = new
                regs[d] = old
            elif name == "emit":
                emit(regs[a : a + program.emit_words])
            elif name == "ballot":
                regs[d] = 1 if regs[a] else 0
            elif name in ("shfl", "radd"):
                regs[d] = regs[a]  # the only participant: itself (any other source lane is absent)
            elif name == "psum":
                regs[d] = 0
            elif name in ("countb", "findb", "findl"):
                start = regs[a]
                chunk = checked_range(start, regs[b])
                if name == "countb":
                    regs[d] = chunk.count(bytes([imm]))
                else:
                    found = chunk.find(bytes([imm]) if name == "findb" else tables[imm])
                    regs[d] = NO_MATCH if found < 0 else start + found
            elif name == "fnv":
                regs[d] = fnv1a(checked_range(regs[a], regs[b]), regs[d])
            elif name == "xxh32":
                regs[d] = xxh32(checked_range(regs[a], regs[b]), regs[d])
            elif name == "hist":
                chunk = checked_range(regs[a], regs[b])
                words = buffers[names[imm]]
                if regs[d] + 256 > len(words):
                    raise LaneFault(FaultCode.OOB_OUTPUT, regs[d])
                for byte in chunk:
                    words[regs[d] + byte] = (words[regs[d] + byte] + 1) & MASK
            elif name in ("dfa", "dfae"):
                start = regs[a]
                chunk = checked_range(start, regs[b])
                rows = _dfa_rows(tables[imm])
                if regs[d] >= len(rows):
                    raise LaneFault(FaultCode.OOB_TABLE, regs[d])
                state, count, matches = dfa_walk(rows, chunk, start, regs[d])
                if name == "dfae":
                    for offset, entered in matches:
                        emit(([offset, entered] + [0] * 8)[: program.emit_words])
                regs[d], regs[d + 1] = state, count & MASK
            else:  # pragma: no cover - a new opcode needs a line here
                raise AssertionError(f"the scalar reference does not know {name}")
        except LaneFault as fault:
            result.fault = (fault.code, pc, 0, fault.detail)
            return result
        pc = next_pc

