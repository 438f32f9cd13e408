"""A deliberately naive VIR0 interpreter: Python ints, one lane and one instruction at a time.

It shares no code with the NumPy backend (only the plain-Python models in cpu_harness), so a
differential test of random programs checks the vectorized implementation against a second,
obvious reading of docs/VIR0.md: the scheduling rule is applied literally (per group, the
live lanes at the smallest pc), collectives read every participant before anyone writes, and
where the notes leave an order to the backend it follows the CPU backend's documented choice
(pcs of one step in ascending order, lanes in id order, a step's records sorted by lane).
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
)
from references import fnv1a32 as fnv1a
from references import xxh32

from vyre_runtime.vir0.isa import BY_CODE, IMM_FORM, NO_MATCH, FaultCode, SpecialRegister
from vyre_runtime.vir0.program import Instruction, Program


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


COLLECTIVES = ("ballot", "shfl", "radd", "psum")


def run_lanes(program: Program, data: bytes, lanes: int, fuel: int, emit_capacity: int) -> ScalarResult:
    buffers = {b.name: [b.init] * b.words for b in program.bindings}
    result = ScalarResult(buffers)
    machine = _Machine(program, data, lanes, emit_capacity, result)
    pcs, fuel_left, alive = [0] * lanes, [fuel] * lanes, [True] * lanes
    faults: dict[int, tuple[FaultCode, int, int, int]] = {}

    def stop(lane: int, fault: tuple[FaultCode, int, int, int] | None) -> None:
        alive[lane] = False
        if fault is not None:
            faults[lane] = fault

    while any(alive):
        participants = []
        for first in range(0, lanes, 32):
            group = [lane for lane in range(first, min(first + 32, lanes)) if alive[lane]]
            if group:
                lowest = min(pcs[lane] for lane in group)
                participants += [lane for lane in group if pcs[lane] == lowest]
        step_records: list[tuple[int, list[int]]] = []
        for pc in sorted({pcs[lane] for lane in participants}):
            at_pc = []
            for lane in sorted(lane for lane in participants if pcs[lane] == pc):
                if fuel_left[lane] == 0:
                    stop(lane, (FaultCode.FUEL_EXHAUSTED, pc, lane, 0))
                else:
                    fuel_left[lane] -= 1
                    result.instructions += 1
                    at_pc.append(lane)
            instruction = program.code[pc]
            if BY_CODE[instruction.op & ~IMM_FORM].name in COLLECTIVES:
                machine.collective(instruction, at_pc)
                for lane in at_pc:
                    pcs[lane] = pc + 1
                continue
            for lane in at_pc:
                outcome = machine.execute(lane, pc, step_records)
                if isinstance(outcome, int):
                    pcs[lane] = outcome
                else:
                    stop(lane, None if outcome == "exit" else (outcome.code, pc, lane, outcome.detail))
        step_records.sort(key=lambda item: item[0])  # stable: a lane's own records keep their order
        for _, record in step_records:
            machine.append_record(record)
    if faults:
        result.fault = faults[min(faults)]
    return result


def run_one_lane(program: Program, data: bytes, fuel: int, emit_capacity: int) -> ScalarResult:
    return run_lanes(program, data, 1, fuel, emit_capacity)


class _Machine:
    def __init__(self, program: Program, data: bytes, lanes: int, emit_capacity: int, result: ScalarResult) -> None:
        self.program, self.data, self.lanes, self.emit_capacity, self.result = (
            program,
            data,
            lanes,
            emit_capacity,
            result,
        )
        self.regs = [[0] * program.registers for _ in range(lanes)]
        self.names = [b.name for b in program.bindings]
        self.tables = [t.data for t in program.tables]

    def append_record(self, record: list[int]) -> None:
        if len(self.result.records) < self.emit_capacity:
            self.result.records.append(record)
        else:
            self.result.dropped += 1

    def collective(self, instruction: Instruction, lanes: list[int]) -> None:
        name = BY_CODE[instruction.op & ~IMM_FORM].name
        d, a, b = instruction.d, instruction.a, instruction.b
        before = {lane: list(self.regs[lane]) for lane in lanes}  # every read before any write
        for lane in lanes:
            group = [p for p in lanes if p // 32 == lane // 32]
            if name == "ballot":
                value = sum(1 << (p % 32) for p in group if before[p][a])
            elif name == "radd":
                value = sum(before[p][a] for p in group) & MASK
            elif name == "psum":
                value = sum(before[p][a] for p in group if p < lane) & MASK
            else:
                source = lane // 32 * 32 + before[lane][b] % 32
                value = before[source][a] if source in group else before[lane][a]
            self.regs[lane][d] = value

    def special(self, lane: int, which: int) -> int:
        return {
            SpecialRegister.LANE_ID: lane,
            SpecialRegister.LANE_COUNT: self.lanes,
            SpecialRegister.GROUP_LANE: lane % 32,
            SpecialRegister.GROUP_ID: lane // 32,
            SpecialRegister.REGION_LEN: len(self.data),
            SpecialRegister.OWN_LO: 0,
            SpecialRegister.OWN_HI: len(self.data),
            SpecialRegister.FILE_OFFSET_LO: 0,
            SpecialRegister.FILE_OFFSET_HI: 0,
            SpecialRegister.CHUNK_INDEX: 0,
            SpecialRegister.EMIT_CAPACITY: self.emit_capacity,
        }[SpecialRegister(which)]

    def execute(self, lane: int, pc: int, step_records: list[tuple[int, list[int]]]) -> int | str | LaneFault:
        """Run one non-collective instruction for one lane: the next pc, "exit", or its fault."""
        program, data, tables, regs = self.program, self.data, self.tables, self.regs[lane]
        buffers, names = self.result.outputs, self.names

        def emit(record: list[int]) -> None:
            step_records.append((lane, record))

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

        instruction = program.code[pc]
        info = BY_CODE[instruction.op & ~IMM_FORM]
        name, d, a, b, imm = info.name, instruction.d, instruction.a, instruction.b, instruction.imm
        is_imm = bool(instruction.op & IMM_FORM)
        next_pc = pc + 1
        try:
            if name == "exit":
                return "exit"
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
                regs[d] = self.special(lane, imm)
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
            return fault
        return next_pc
