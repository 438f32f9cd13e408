"""Small programs the host-API tests of every backend share (tests/test_megakernel.py, test_cuda_backend.py)."""

from __future__ import annotations

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
