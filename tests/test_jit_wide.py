"""jit_wide.py's plans checked against the trips they replace, without a GPU.

Random straight trip bodies (the ops the affine proof follows, the ones it must give up on, and
loads of every size) are run on random entry registers, input alignments and region lengths.
The plan's C is evaluated as written: its addresses and vote; when the vote passes, every planned
read (a span's pieces, a plain read) must be aligned to its size and inside the region, and every
planned load's value must equal what the load reads when the trips run one instruction at a time.
A wrong proof (a redefined register, a wrap mod 2^32, a negative stride, a span past the end)
fails here rather than as a misread word on the GPU."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from vyre_runtime.backends.cuda import jit_wide
from vyre_runtime.vir0 import isa
from vyre_runtime.vir0.program import Instruction, Program

MASK = 0xFFFFFFFF
REGISTERS = 8  # r0..r5 the body's, r6/r7 mostly load destinations
SIZES = {isa.Op.LDI8: 1, isa.Op.LDI16: 2, isa.Op.LDI32: 4}
PIECE_BYTES = {"uint4": 16, "uint2": 8, "uint32_t": 4, "uint16_t": 2, "uint8_t": 1}
BASE = 0x10000000  # the input's address, plus a misalignment per case
MEMORY = 768  # bytes with values; reads further on (inside a longer region) give zeros


def _random_instruction(rng: random.Random) -> Instruction:
    d, a, b = (rng.randrange(6) for _ in range(3))
    imm = rng.choice([0, 1, 2, 3, 4, 8, 12, 16, -4 & MASK, -16 & MASK, rng.getrandbits(32)])
    kind = rng.randrange(12)
    if kind == 0:
        return Instruction(isa.Op.MOV, d, a)
    if kind == 1:
        return Instruction(isa.Op.ADD, d, a, b)
    if kind in (2, 3):
        return Instruction(isa.Op.ADD | isa.IMM_FORM, d, a, 0, imm)
    if kind == 4:
        return Instruction(isa.Op.SUB | isa.IMM_FORM, d, a, 0, imm)
    if kind == 5:
        return Instruction(isa.Op.XOR, d, a, b)
    if kind == 6:
        return Instruction(isa.Op.LI, d, 0, 0, imm)
    dest = rng.randrange(6, REGISTERS) if rng.random() < 0.7 else d
    offset = rng.choice([0, 1, 2, 3, 4, 8, 12, 16, -4 & MASK])
    return Instruction(rng.choice(list(SIZES)), dest, a, 0, offset)


def _loop_body(rng: random.Random) -> list[Instruction]:
    """A loop's shape: words (or bytes) at small offsets from r3, r3 then advanced by an
    immediate (forwards or backwards) or by a stride register r1."""
    size_op = rng.choice(list(SIZES))
    body = [Instruction(size_op, 6 + k % 2, 3, 0, k * SIZES[size_op]) for k in range(rng.randrange(1, 5))]
    step = rng.choice([Instruction(isa.Op.ADD, 3, 3, 1), Instruction(isa.Op.ADD | isa.IMM_FORM, 3, 3, 0, 0)])
    if step.op & isa.IMM_FORM:
        step = step._replace(imm=rng.choice([4, 8, 16, len(body) * SIZES[size_op], -16 & MASK]))
    noise = [_random_instruction(rng) for _ in range(rng.randrange(0, 2))]
    return [*body, *noise, step]


def _entry(rng: random.Random) -> list[int]:
    return [
        rng.choice([rng.getrandbits(32), rng.randrange(300), rng.randrange(300) & ~3, rng.randrange(300) & ~15])
        if rng.random() < 0.9
        else -rng.randrange(1, 40) & MASK
        for _ in range(isa.MAX_REGISTERS)
    ]


@dataclass
class Vector:
    """A uint4/uint2 piece as the C reads it (.x .y .z .w)."""

    x: int
    y: int
    z: int = 0
    w: int = 0


def _python(expression: str) -> str:
    """The plan's C expressions (u32 arithmetic, masked by the caller) as Python."""
    expression = re.sub(r"\b(0x[0-9a-f]+|\d+)u\b", r"\1", expression)
    return expression.replace("L.r[", "L[").replace("&&", " and ").replace("(uint32_t)", "")


@dataclass(frozen=True)
class Region:
    """The input as a case places it: its bytes, its address, its length."""

    memory: bytes
    address: int
    length: int

    def read(self, at: int, size: int) -> bytes:
        """A planned read: it must be aligned to its size and inside the region."""
        assert (self.address + at) % size == 0, f"a {size}-byte read at {at} is not aligned"
        assert at + size <= self.length, f"a {size}-byte read at {at} is past the region's {self.length} bytes"
        return self.memory[at : at + size] if at + size <= MEMORY else bytes(size)

    def load(self, at: int, size: int) -> tuple[bool, int]:
        """What the stepped trip's load sees: inside the region, and its value (0 outside)."""
        inside = at + size <= self.length
        return inside, int.from_bytes(self.memory[at : at + size], "little") if inside and at + size <= MEMORY else 0


def _vote(plan: jit_wide.Plan, entry: list[int], region: Region) -> dict[str, object] | None:
    """The plan's names (addresses, pieces) when every test of its vote passes, else None."""
    names: dict[str, object] = {"L": entry, "jit_in_low": region.address & MASK}
    end = min(region.length, 1 << 32)
    for width in plan.widths:
        names[f"jit_stop{width}"] = 0 if end < width else min(end - width + 1, MASK)
    for line in plan.addresses:
        name, value = re.fullmatch(r"const uint32_t (\w+) = (.*);  // \d+ bytes", line).groups()
        names[name] = eval(_python(value), names) & MASK
    if not all(eval(_python(test), names) for test in plan.test):
        return None
    for line in plan.prelude:
        kind, name, unit, start = re.fullmatch(
            r"const (\w+) (\w+) = \*\(const \w+\*\)\(jit_in \+ (\w+) \+ (\d+)u\);", line
        ).groups()
        size = PIECE_BYTES[kind]
        raw = region.read(names[unit] + int(start), size)
        words = [int.from_bytes(raw[k : k + 4], "little") for k in range(0, size, 4)]
        names[name] = Vector(*words) if size >= 8 else int.from_bytes(raw, "little")
    return names


def _planned(line: str, names: dict[str, object], region: Region, at: int, size: int) -> int:
    """The value a planned load's line gives (a plain read must read the load's own address)."""
    expression = re.fullmatch(r"T\.r\[\d+\] = (.*);  // \d+(: aligned)?", line).group(1)
    plain = re.fullmatch(r"jit_read<(\d)u>\(jit_in \+ (\w+)\)", expression)
    if plain is None:
        return eval(_python(expression), names) & MASK
    assert names[plain.group(2)] == at, f"{line} reads elsewhere than {at}"
    return int.from_bytes(region.read(at, size), "little")


def _step(instruction: Instruction, registers: list[int]) -> None:
    """One non-load instruction of the body on the registers."""
    op = instruction.op & ~isa.IMM_FORM
    b = instruction.imm if instruction.op & isa.IMM_FORM else registers[instruction.b]
    a = registers[instruction.a]
    results = {isa.Op.MOV: a, isa.Op.ADD: (a + b) & MASK, isa.Op.SUB: (a - b) & MASK, isa.Op.XOR: a ^ b}
    registers[instruction.d] = instruction.imm if op == isa.Op.LI else results[op]


def _check(program: Program, trips: int, rng: random.Random) -> int:
    """Runs the plan on 10 random entries; returns how many passed the vote."""
    plan = jit_wide.plan(program, range(len(program.code)), trips)
    memory = bytes(rng.getrandbits(8) for _ in range(MEMORY))
    voted = 0
    for _ in range(10):
        entry = _entry(rng)
        lengths = [rng.randrange(MEMORY), 64, 256, MASK, 1 << 32] if rng.random() < 0.2 else [rng.randrange(MEMORY)]
        region = Region(memory, BASE + rng.choice([0, 0, 1, 2, 4, 8]), rng.choice(lengths))
        names = _vote(plan, entry, region)
        if names is None:
            continue
        voted += 1
        registers = list(entry)
        for trip in range(trips):
            for pc, instruction in enumerate(program.code):
                if instruction.op not in SIZES:
                    _step(instruction, registers)
                    continue
                at, size = (registers[instruction.a] + instruction.imm) & MASK, SIZES[instruction.op]
                inside, value = region.load(at, size)
                line = plan.lines.get((trip, pc))
                if line is not None:
                    assert inside, f"trip {trip} pc {pc}: planned, but its bytes are outside: {line}"
                    planned = _planned(line, names, region, at, size)
                    assert planned == value, f"trip {trip} pc {pc}: {line} gives {planned:#x}, not {value:#x}"
                registers[instruction.d] = value
    return voted


def test_planned_reads_are_aligned_inside_and_read_what_the_stepped_trips_read() -> None:
    voted = spans = 0
    for seed in range(1500):
        rng = random.Random(seed)
        body = _loop_body(rng) if seed % 2 else [_random_instruction(rng) for _ in range(rng.randrange(1, 8))]
        program = Program("trips", tuple(body), registers=REGISTERS)
        trips = rng.choice([1, 2, 3, 4, 8])
        try:
            voted += _check(program, trips, rng)
        except AssertionError as error:
            raise AssertionError(f"seed {seed}, {trips} trips of {body}: {error}") from None
        spans += bool(jit_wide.plan(program, range(len(body)), trips).prelude)
    assert voted > 1000 and spans > 300  # the cases reach the planned copy, spans included
