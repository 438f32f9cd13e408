"""VIR0: the bytecode language of vyre-runtime (docs/VIR0.md).

Text goes in through ``assemble`` (or Python through ``ProgramBuilder``), bytes come out of
``encode``; untrusted bytes become a runnable Program only through ``load`` (decode + verify).
"""

from vyre_runtime.vir0 import isa
from vyre_runtime.vir0.asm import assemble, assemble_program, disassemble, disassemble_program
from vyre_runtime.vir0.builder import F32Bits, Label, ProgramBuilder, Register, r
from vyre_runtime.vir0.container import decode, encode
from vyre_runtime.vir0.dfa import compile_patterns
from vyre_runtime.vir0.program import Binding, Instruction, Program, Table
from vyre_runtime.vir0.verify import load, verify

__all__ = [
    "Binding",
    "F32Bits",
    "Instruction",
    "Label",
    "Program",
    "ProgramBuilder",
    "Register",
    "Table",
    "assemble",
    "assemble_program",
    "compile_patterns",
    "decode",
    "disassemble",
    "disassemble_program",
    "encode",
    "isa",
    "load",
    "r",
    "verify",
]
