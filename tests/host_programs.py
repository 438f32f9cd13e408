"""Small programs and data the host-API, CLI, ingest and CUDA tests share."""

from __future__ import annotations

import random

from vyre_runtime.vir0 import isa
from vyre_runtime.vir0.program import Binding, Instruction, Program

Op = isa.Op


def counting_program() -> Program:
    """Every lane adds 1 to `hits` and the region length to `bytes`."""
    return Program(
        name="counter",
        registers=4,
        lanes=8,
        bindings=(Binding("hits", 1), Binding("bytes", 1)),
        code=(
            Instruction(Op.LI, d=0, imm=1),
            Instruction(Op.LI, d=1, imm=0),
            Instruction(Op.ATADD, d=2, a=1, b=0, imm=0),
            Instruction(Op.SREG, d=3, imm=isa.SpecialRegister.REGION_LEN),
            Instruction(Op.ATADD, d=2, a=1, b=3, imm=1),
            Instruction(Op.EXIT),
        ),
    )


def faulting_program(kind: str) -> Program:
    body = {
        "oob": (Instruction(Op.LI, d=0, imm=1 << 30), Instruction(Op.LDI8, d=1, a=0), Instruction(Op.EXIT)),
        "fuel": (Instruction(Op.JMP, imm=0),),
        "trap": (Instruction(Op.TRAP, imm=1234),),
    }[kind]
    return Program(name=f"faulty_{kind}", registers=2, lanes=4, code=body)


# Counts one per lane in every chunk but chunk 1, which traps with detail 77: a fault that must
# stay with its chunk while the other chunks still count.
TRAP_ON_SECOND_CHUNK = """
.program trap_on_second_chunk
.registers 4
.lanes 4
.binding seen 1 run sum
    sreg r0, chunk_index
    eq r1, r0, 1
    jnz r1, bad
    li r2, 1
    li r3, 0
    atadd r3, r3, r2, seen
    exit
bad:
    trap 77
"""


def text_with_needles(seed: int, size: int, needles: list[bytes]) -> bytes:
    """Lower-case text and newlines with about one needle per 100 bytes at random spots."""
    rng = random.Random(seed)
    data = bytearray(rng.choice(b"abcdefghijklmnopqrstuvwxyz \n") for _ in range(size))
    for _ in range(size // 100):
        needle = rng.choice(needles)
        spot = rng.randrange(max(1, size - len(needle)))
        data[spot : spot + len(needle)] = needle
    return bytes(data)
