"""VIR0 -> CUDA C++: JIT'd programs as native functions inside a megakernel variant.

A JIT'd program is the interpreter's own batch loop (megakernel.cu `run_batch`: min-pc
scheduling, fuel, participants) with the code fetch replaced by a `switch (pc)` whose case k
calls `exec_op<byte>()`, the very template the interpreter's `execute()` dispatches to, with
instruction k's opcode byte as the template argument and its operands as constants: no fetch,
no decode, no opcode switch, and register indices constant (the register file lives in registers
instead of local memory). Semantics are those of the interpreter by construction: the same code
computes every result, fault, emitted record, fuel step and instruction count, in the same lane
order. Fuel
checks stay (VIR0 programs may loop; the verifier proves no termination).

What a function depends on is the code and the register count alone (tables, bindings, lanes
and fuel are read from the run at run time), so programs with the same code share one function,
and a variant's build is cached by the text it generates (build.py's cache key covers it).

A variant = megakernel.cu compiled with -DVYRE_JIT and a generated `vyre_jit.h` holding the
functions and `jit_run_batch(S, L)`, which selects one by `S.jit_id` (the PROGRAM record's
`jit_id`, written by the host only while the loaded module holds that id; an id it does not hold
falls back to the interpreter).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import blake3

from vyre_runtime.backends.cuda import build
from vyre_runtime.errors import BackendError
from vyre_runtime.vir0.program import Program, encode_code
from vyre_runtime.vir0.verify import verify

JIT_HEADER_NAME = "vyre_jit.h"
JIT_DEFINE = "VYRE_JIT"
# A variant keeps 4 worker blocks per SM (<= 64 registers) instead of the ~2 its native
# functions' live registers would leave (see megakernel.cu, VYRE_MIN_BLOCKS_PER_SM).
JIT_DEFINES = (JIT_DEFINE, "VYRE_MIN_BLOCKS_PER_SM=4")
# Instructions per variant: NVRTC's time grows with every specialized case (~ms each).
MAX_VARIANT_INSTRUCTIONS = 16384


def code_key(program: Program) -> str:
    """What a JIT'd function depends on: BLAKE3 over the registers count and the code bytes."""
    hasher = blake3.blake3(program.registers.to_bytes(4, "little"))
    hasher.update(encode_code(program.code))
    return hasher.hexdigest()


def _words(instruction_bytes: bytes) -> tuple[int, int]:
    return int.from_bytes(instruction_bytes[:4], "little"), int.from_bytes(instruction_bytes[4:8], "little")


def translate(program: Program, jit_id: int) -> str:
    """CUDA C++ for ``program`` (verified here) as `vyre_jit_<jit_id>(S, L)`: one batch of lanes."""
    if jit_id <= 0:
        raise BackendError(f"jit id {jit_id}: ids start at 1 (0 means 'interpret')")
    verify(program)  # only verified code is specialized: its registers and jumps are in range
    code = encode_code(program.code)
    cases = []
    for pc, instruction in enumerate(program.code):
        word0, imm = _words(code[pc * 8 : pc * 8 + 8])
        byte, d, a, b = word0 & 0xFF, (word0 >> 8) & 0xFF, (word0 >> 16) & 0xFF, word0 >> 24
        cases.append(
            f"        case {pc}u: exec_op<{byte:#04x}u>(S, L, part, participants, {d}u, {a}u, {b}u, {imm:#x}u);"
            f" break;  // {instruction.mnemonic}"
        )
    name = program.name.replace("*/", "* /")
    return "\n".join(
        [
            f"// {name}: {len(program.code)} instructions, {program.registers} registers",
            f"__device__ __noinline__ void vyre_jit_{jit_id}(RunShared& S, Lane& io) {{",
            "    Lane L;  // a private copy: constant indices keep its registers out of local memory",
            "    L.id = io.id; L.live = io.live; L.instructions = io.instructions;",
            "    L.fault_lane = io.fault_lane; L.fault_code = io.fault_code;",
            "    L.fault_pc = io.fault_pc; L.fault_detail = io.fault_detail;",
            "#pragma unroll",
            f"    for (uint32_t i = 0; i < {program.registers}u; i++) L.r[i] = 0;",
            "    L.pc = 0;",
            "    L.fuel = S.fuel;",
            "    while (true) {  // run_batch's scheduler, step for step",
            "        uint32_t my_pc = L.live ? L.pc : 0xffffffffu;",
            "        uint32_t pc = __reduce_min_sync(FULL_MASK, my_pc);",
            "        if (pc == 0xffffffffu) break;",
            "        bool part = L.live && L.pc == pc;",
            "        if (part && L.fuel == 0) {",
            "            lane_fault(L, FAULT_FUEL_EXHAUSTED, 0);",
            "            part = false;",
            "        }",
            "        uint32_t participants = __ballot_sync(FULL_MASK, part);",
            "        if (participants == 0) continue;",
            "        if (part) {",
            "            L.fuel--;",
            "            L.instructions++;",
            "        }",
            "        switch (pc) {",
            *cases,
            "        default:  // unreachable for verified code (jumps stay inside it)",
            "            if (part) lane_fault(L, FAULT_BAD_INSTRUCTION, 0);",
            "            break;",
            "        }",
            "    }",
            "    io.live = L.live; io.pc = L.pc; io.fuel = L.fuel; io.instructions = L.instructions;",
            "    io.fault_lane = L.fault_lane; io.fault_code = L.fault_code;",
            "    io.fault_pc = L.fault_pc; io.fault_detail = L.fault_detail;",
            "}",
        ]
    )


@dataclass(frozen=True)
class Variant:
    """A megakernel build holding JIT'd functions: ``ids`` maps code_key -> jit_id."""

    build: build.BuildResult
    ids: Mapping[str, int]

    @property
    def cubin(self) -> bytes:
        return self.build.cubin


def variant_header(programs: Mapping[str, Program]) -> tuple[str, dict[str, int]]:
    """vyre_jit.h for ``programs`` (code_key -> program; one function per distinct key, ids in
    key order so the same set always gives the same text) and its code_key -> jit_id map."""
    total = sum(len(program.code) for program in programs.values())
    if total > MAX_VARIANT_INSTRUCTIONS:
        raise BackendError(
            f"a JIT variant of {total} instructions; at most {MAX_VARIANT_INSTRUCTIONS} are compiled into one",
            "JIT fewer or smaller programs (the rest stay interpreted)",
        )
    ids = {key: index + 1 for index, key in enumerate(sorted(programs))}
    parts = [
        "// GENERATED by vyre_runtime/backends/cuda/jit.py: JIT'd VIR0 programs. Do not edit.",
        "#pragma once",
        "",
    ]
    parts += [translate(programs[key], ids[key]) + "\n" for key in sorted(programs)]
    parts.append("__device__ __forceinline__ bool jit_run_batch(RunShared& S, Lane& L) {")
    parts.append("    switch (S.jit_id) {")
    parts += [f"        case {jit_id}u: vyre_jit_{jit_id}(S, L); return true;" for jit_id in ids.values()]
    parts += ["        default: return false;  // not in this module: interpret", "    }", "}", ""]
    return "\n".join(parts), ids


def build_variant(
    programs: Mapping[str, Program], arch: str = build.DEFAULT_ARCH, *, use_cache: bool = True
) -> Variant:
    """The megakernel with ``programs`` (code_key -> program) JIT'd in; no GPU needed."""
    text, ids = variant_header(programs)
    result = build.build_megakernel(
        arch, use_cache=use_cache, extra_headers=((JIT_HEADER_NAME, text),), defines=JIT_DEFINES
    )
    return Variant(result, ids)


__all__ = ["Variant", "build_variant", "code_key", "translate", "variant_header"]
