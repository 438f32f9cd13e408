"""Random valid programs whose results every conforming backend must reproduce bit for bit.

docs/VIR0.md section 7.7 leaves exactly five things unspecified: values an atomic returns under
contention, what `ldo` reads from a word another lane writes, the final value of a word written
by racing stores or by atomics of mixed kinds, the order of emitted records (and which C are kept
on overflow), and the relative timing of groups. The generator here keeps every program clear of
items 1-3 by construction, and the comparison (`comparable`) handles item 4:

- No `ldo`, `sto`, `atxchg` or `atcas`: nothing reads a binding word, and the only writes are
  atomics.
- Each binding gets one commutative kind (add, min, max, and, or, xor); only atomics of that
  kind touch it (`hist` counts as add), so every word's final value is determined.
- An atomic's destination (the value it returns) is the *sink* register, the last one, which no
  instruction reads (no operand, pair, record or `sel` condition includes it).
- Records: compared as sorted lists, and the emit capacity is 0 (every record dropped: only the
  count matters) or large; with `dropped > 0` only `len(records) + dropped` is compared.

Everything else (ALU, floats, 64-bit pairs, collectives under the scheduling rule, intrinsics,
faults of the lowest lane, fuel) is exercised as strategies.py draws it.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import numpy as np
from strategies import HISTOGRAM_WORDS, RandomChooser, _Context, _identifier, _tables

from vyre_runtime.vir0 import isa
from vyre_runtime.vir0.isa import Op, Role
from vyre_runtime.vir0.program import Binding, Instruction, Program

EXCLUDED = frozenset({Op.LDO, Op.STO, Op.ATXCHG, Op.ATCAS})
ATOMIC_KIND = {
    Op.ATADD: "add",
    Op.HIST: "add",
    Op.ATMIN: "min",
    Op.ATMAX: "max",
    Op.ATAND: "and",
    Op.ATOR: "or",
    Op.ATXOR: "xor",
}
KINDS = ("add", "min", "max", "and", "or", "xor")
KIND_COMBINE = {
    "add": isa.Combine.SUM,
    "min": isa.Combine.MIN,
    "max": isa.Combine.MAX,
    "and": isa.Combine.AND,
    "or": isa.Combine.OR,
    "xor": isa.Combine.XOR,
}
LARGE_EMIT_CAPACITY = 1 << 16
READS = (Role.REG_READ, Role.REG_READ_WRITE, Role.IMM_REG_READ)


class _DeterministicContext(_Context):
    """strategies._Context with the sink register kept out of every read and binding kinds obeyed."""

    def __init__(self, registers: int, emit_words: int, tables, bindings, kinds: list[str]) -> None:
        super().__init__(registers, emit_words, tables, bindings)
        self.kinds = kinds
        self.sink = registers - 1

    def can_fill(self, info: isa.OpInfo) -> bool:
        if info.code in EXCLUDED:
            return False
        if info.code in (Op.HIST, *ATOMIC_KIND) and not self._bindings_for(info):
            return False
        roles = (info.d, info.a, info.b, info.imm)
        pairs = any(role in (Role.PAIR_READ, Role.PAIR_WRITE, Role.PAIR_READ_WRITE) for role in roles)
        if pairs and self.registers < 3:  # a pair needs two registers below the sink
            return False
        if Role.RECORD_READ in roles and self.emit_words > self.registers - 1:
            return False
        return super().can_fill(info)

    def _bindings_for(self, info: isa.OpInfo) -> list[int]:
        kind = ATOMIC_KIND[Op(info.code)]
        found = [i for i, k in enumerate(self.kinds) if k == kind]
        if info.code == Op.HIST:
            found = [i for i in found if self.bindings[i].words >= HISTOGRAM_WORDS]
        return found

    def field(self, chooser: Any, info: isa.OpInfo, role: Role, code_length: int) -> int:
        below_sink = self.registers - 1  # registers 0 .. sink-1
        if info.code in ATOMIC_KIND and info.code != Op.HIST:
            if role == Role.REG_WRITE:
                return self.sink  # the value an atomic returns is never read
            if role == Role.BINDING:
                return chooser.choice(self._bindings_for(info))
        if info.code == Op.HIST and role == Role.BINDING:
            return chooser.choice(self._bindings_for(info))
        if role in (*READS, Role.REG_WRITE):
            return chooser.integer(0, below_sink - 1)
        if role in (Role.PAIR_READ, Role.PAIR_WRITE, Role.PAIR_READ_WRITE):
            return chooser.integer(0, below_sink - 2)
        if role == Role.RECORD_READ:
            return chooser.integer(0, below_sink - self.emit_words)
        return super().field(chooser, info, role, code_length)


def _bindings(chooser: Any, taken: set[str]) -> tuple[tuple[Binding, ...], list[str]]:
    bindings, kinds = [], []
    for _ in range(chooser.choice((0, 1, 2, 3))):
        kind = chooser.choice(KINDS)
        words = chooser.choice((1, 2, 8, HISTOGRAM_WORDS, 300))
        init = chooser.choice((0, 1, 0xFFFFFFFF, chooser.integer(0, 0xFFFFFFFF)))
        if chooser.integer(0, 3) == 0:
            binding = Binding(_identifier(chooser, taken), words, isa.Scope.GLOBAL, isa.Combine.NONE, init)
        else:
            binding = Binding(_identifier(chooser, taken), words, isa.Scope.RUN, KIND_COMBINE[kind], init)
        bindings.append(binding)
        kinds.append(kind)
    return tuple(bindings), kinds


def _lane_prologue(registers: int) -> list[Instruction]:
    """r0 = lane id, r1 = group lane: random branches then split the lanes (never the sink)."""
    prologue = [Instruction(Op.SREG, 0, 0, 0, isa.SpecialRegister.LANE_ID)]
    if registers > 2:
        prologue.append(Instruction(Op.SREG, 1, 0, 0, isa.SpecialRegister.GROUP_LANE))
    return prologue


def deterministic_program(rng: random.Random, max_instructions: int = 24) -> Program:
    """A random valid program whose outputs, sorted records, dropped count, fault and instruction
    count are the same on every conforming backend (see the module docstring)."""
    chooser = RandomChooser(rng)
    taken: set[str] = set()
    registers = chooser.choice((2, 3, 8, 16, 33, isa.MAX_REGISTERS))
    emit_words = chooser.integer(0, min(isa.MAX_EMIT_WORDS, registers - 1))
    tables = _tables(chooser, taken)
    bindings, kinds = _bindings(chooser, taken)
    context = _DeterministicContext(registers, emit_words, tables, bindings, kinds)
    fillable = [info for info in isa.OPCODES if context.can_fill(info)]
    terminators = [isa.BY_NAME[name] for name in ("exit", "trap", "jmp")]
    prologue = _lane_prologue(registers)
    length = chooser.integer(1, max_instructions)
    total = len(prologue) + length

    def draw(info: isa.OpInfo) -> Instruction:
        is_imm = info.has_imm_form and chooser.integer(0, 1) == 1
        values = [context.field(chooser, info, role, total) for role in isa.effective_roles(info, is_imm)]
        return Instruction(info.code | (isa.IMM_FORM if is_imm else 0), *values)

    body = [draw(chooser.choice(fillable)) for _ in range(length - 1)]
    body.append(draw(chooser.choice(terminators)))
    return Program(
        name=f"differential_{rng.randrange(1 << 30)}",
        code=(*prologue, *body),
        registers=registers,
        emit_words=emit_words,
        overlap=0,
        fuel=300,
        lanes=chooser.choice((1, 2, 32, 33, 70)),
        tables=tables,
        bindings=bindings,
    )


def deterministic_case(seed: int) -> tuple[Program, bytes, int]:
    """(program, input bytes, emit capacity) for one differential comparison."""
    rng = random.Random(seed)
    program = deterministic_program(rng)
    data = rng.randbytes(rng.choice((0, 1, 7, 64, 300)))
    return program, data, rng.choice((0, LARGE_EMIT_CAPACITY))


def comparable(outcome: Any) -> dict[str, Any]:
    """What two backends must agree on for a program of this module (a RunOutcome in)."""
    records = np.asarray(outcome.records, dtype=np.uint32)
    summary: dict[str, Any] = {
        "fault": None if outcome.fault is None else tuple(int(x) for x in dataclasses.astuple(outcome.fault)),
        "outputs": {name: np.asarray(words).tolist() for name, words in outcome.outputs.items()},
        "emitted": len(records) + int(outcome.dropped),
        "instructions": int(outcome.instructions),
    }
    if outcome.dropped == 0 and records.size:
        summary["records"] = sorted(map(tuple, records.tolist()))
    return summary


def uses_only_deterministic_operations(program: Program) -> bool:
    """The static half of the rules above (the generator's own test checks it)."""
    sink = program.registers - 1
    for instruction in program.code:
        decoded = isa.decode_opcode(instruction.op)
        assert decoded is not None
        info, is_imm = decoded
        if info.code in EXCLUDED:
            return False
        roles = isa.effective_roles(info, is_imm)
        for (name, _), role in zip(info.fields, roles):
            value = getattr(instruction, name)
            if role in READS and value == sink:
                return False
            if role in (Role.PAIR_READ, Role.PAIR_READ_WRITE) and sink in (value, value + 1):
                return False
            if role == Role.RECORD_READ and value + program.emit_words > sink:
                return False
            is_atomic = info.code in ATOMIC_KIND and info.code != Op.HIST
            if role == Role.REG_WRITE and value == sink and not is_atomic:
                return False
    return True


__all__ = ["comparable", "deterministic_case", "deterministic_program", "uses_only_deterministic_operations"]
