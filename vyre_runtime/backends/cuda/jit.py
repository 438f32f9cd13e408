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

import os
from collections.abc import Mapping
from dataclasses import dataclass

import blake3

from vyre_runtime.backends.cuda import build
from vyre_runtime.errors import BackendError
from vyre_runtime.vir0 import isa
from vyre_runtime.vir0.program import Instruction, Program, encode_code
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


_BRANCHES = frozenset({isa.Op.JMP, isa.Op.JZ, isa.Op.JNZ})
_ENDS_LANE = frozenset({isa.Op.EXIT, isa.Op.TRAP})
_Op = isa.Op
# Ops after which a lane that ran them is still live: no fault (megakernel.cu exec_op: no
# lane_fault on any path; divisions by 0 have defined results) and no exit. Every other op may
# end a lane (exit, trap, bounds checks of loads/stores/atomics/ranges). A list of the safe ops,
# so a new op is taken as lane-ending until someone adds it here.
_KEEPS_LANE = frozenset(
    {_Op.NOP, _Op.JMP, _Op.JZ, _Op.JNZ, _Op.MOV, _Op.LI, _Op.SREG, _Op.SEL, _Op.BLEN, _Op.TLEN, _Op.EMIT}
    | {_Op.BALLOT, _Op.SHFL, _Op.RADD, _Op.PSUM}
    | {op for op in _Op if _Op.ADD <= op <= _Op.GES}  # integer binary ops
    | {op for op in _Op if _Op.NOT <= op <= _Op.BSWAP}  # integer unary ops
    | {op for op in _Op if _Op.FADD <= op <= _Op.FTOU}  # float ops
    | {op for op in _Op if _Op.ADD64 <= op <= _Op.MULWU}  # 64-bit pairs
)


def _base_op(instruction: Instruction) -> int:
    """The opcode without the immediate-form bit (`add r0, r1, 1` is an add)."""
    return instruction.op & ~isa.IMM_FORM


def _keeps_lane(instruction: Instruction) -> bool:
    return _base_op(instruction) in _KEEPS_LANE


@dataclass(frozen=True)
class _Block:
    """Straight-line instructions first..last: only `last` may branch, exit or trap."""

    first: int
    last: int
    successors: tuple[int, ...]  # leaders a lane may continue at after `last`


def basic_blocks(program: Program) -> list[_Block]:
    """The program's basic blocks: leaders are pc 0, every branch target and every instruction
    after a branch, exit or trap; a block runs from its leader up to the next branch/exit/trap,
    or to just before the next leader (then it falls through to it)."""
    code = program.code
    leaders = {0}
    for pc, instruction in enumerate(code):
        if instruction.op in _BRANCHES:
            leaders.add(instruction.imm)
        if instruction.op in _BRANCHES | _ENDS_LANE and pc + 1 < len(code):
            leaders.add(pc + 1)
    blocks = []
    for first in sorted(leaders):
        last = first
        while code[last].op not in _BRANCHES | _ENDS_LANE and last + 1 not in leaders:
            last += 1  # verified code ends with a terminator: this stays inside the code
        op = code[last].op
        if op == isa.Op.JMP:
            successors: tuple[int, ...] = (code[last].imm,)
        elif op in (isa.Op.JZ, isa.Op.JNZ):
            successors = tuple(dict.fromkeys((code[last].imm, last + 1)))
        elif op in _ENDS_LANE:
            successors = ()
        else:
            successors = (last + 1,)
        blocks.append(_Block(first, last, successors))
    return blocks


def _segments(program: Program, block: _Block) -> list[range]:
    """A block's pcs cut after every op that may end a lane: inside a segment only its last
    instruction can, so a lane live at a segment's start runs (and pays for) all of it."""
    segments, start = [], block.first
    for pc in range(block.first, block.last + 1):
        if not _keeps_lane(program.code[pc]) or pc == block.last:
            segments.append(range(start, pc + 1))
            start = pc + 1
    return segments


def _step(code: bytes, program: Program, pc: int, indent: str, *, full: bool) -> list[str]:
    """One instruction for every thread of a converged warp: live lanes take part (their fuel
    was charged for the segment, _segments); the others call along (collectives need the whole
    warp) and are left untouched. ``full``: all 32 lanes are live here (a constant the compiler
    folds: no predicate per result)."""
    word0, imm = _words(code[pc * 8 : pc * 8 + 8])
    byte, d, a, b = word0 & 0xFF, (word0 >> 8) & 0xFF, (word0 >> 16) & 0xFF, word0 >> 24
    collective = program.code[pc].op == isa.Op.SHFL  # the only op that reads `participants`
    participants = ("FULL_MASK" if full else "__ballot_sync(FULL_MASK, part)") if collective else "0u"
    return [
        f"{indent}{{  // {pc}: {program.code[pc].mnemonic}",
        f"{indent}    bool part = {'true' if full else 'L.live'};",
        f"{indent}    exec_op<{byte:#04x}u>(S, L, part, {participants}, {d}u, {a}u, {b}u, {imm:#x}u);",
        f"{indent}}}",
    ]


_INPUT_LOADS = {isa.Op.LDI8: 1, isa.Op.LDI16: 2, isa.Op.LDI32: 4}


def _in_loops(blocks: list[_Block]) -> set[int]:
    """Leaders of the blocks on a cycle of the control flow (a block reachable from itself)."""
    successors = {block.first: block.successors for block in blocks}
    looping = set()
    for block in blocks:
        seen, stack = set(), list(block.successors)
        while stack:
            leader = stack.pop()
            if leader == block.first:
                looping.add(block.first)
                break
            if leader not in seen:
                seen.add(leader)
                stack += successors[leader]
    return looping


def _prefetch(program: Program, pc: int, indent: str) -> list[str]:
    """An input load in a loop asks L2 for its next strides' bytes first (megakernel.cu
    jit_prefetch: a hint, no architectural read; its register operand read before the load)."""
    instruction = program.code[pc]
    size = _INPUT_LOADS.get(instruction.op)
    if size is None:
        return []
    return [f"{indent}jit_prefetch(S, L, L.r[{instruction.a}] + {instruction.imm:#x}u, {size}u, last{pc});"]


def _hot_first(block: _Block) -> tuple[int, ...]:
    """The block's successors, the likelier first (the order only saves a vote): a backward
    target (a loop's back edge), else the fall-through (a forward branch leaves a loop)."""
    if len(block.successors) < 2:
        return block.successors
    target, through = block.successors
    return block.successors if target <= block.first else (through, target)


# Ops a speculative loop trip may run (_fast_loop): no effect outside the lane's registers, so
# a trip can be thrown away and run again. The pure ops of _KEEPS_LANE, and input and table
# loads, whose bound check (a fault) only marks the trip as not kept. Emits, stores, atomics,
# the range intrinsics and the collectives stay on the stepped path.
_SPECULABLE = (_KEEPS_LANE - {_Op.EMIT, _Op.BALLOT, _Op.SHFL, _Op.RADD, _Op.PSUM}) | {
    _Op.LDI8,
    _Op.LDI16,
    _Op.LDI32,
    _Op.LDT8,
    _Op.LDT16,
    _Op.LDT32,
}
# Loop trips one speculative step runs, then one vote keeps or drops them all: more trips put
# more of the loop's loads in flight together (a lane's loop otherwise waits for one at a time).
# At most FAST_LOOP_TRIPS, and at most FAST_LOOP_INSTRUCTIONS instructions in all (NVRTC's time
# grows with the text).
FAST_LOOP_TRIPS = 8
# Tuning and A/B runs: $VYRE_JIT_FAST_LOOPS=N takes N as FAST_LOOP_TRIPS (and N x 8 instructions as
# the step's cap); "0" turns the speculative trips off. It changes the text, so the cache key.
FAST_LOOPS_ENV = "VYRE_JIT_FAST_LOOPS"
FAST_LOOP_INSTRUCTIONS = 64


def _trips_wanted() -> int:
    word = os.environ.get(FAST_LOOPS_ENV, "")
    if not word:
        return FAST_LOOP_TRIPS
    if not word.isdigit() or int(word) > 64:
        raise BackendError(f"${FAST_LOOPS_ENV} is {word!r}", "set it to a trip count 0..64 (0: off), or unset it")
    return int(word)


def fast_trips(loop_trip: int) -> int:
    """Trips of a speculative step for a loop of ``loop_trip`` instructions."""
    wanted = _trips_wanted()
    cap = FAST_LOOP_INSTRUCTIONS * wanted // FAST_LOOP_TRIPS
    return max(1, min(wanted, cap // loop_trip))


@dataclass(frozen=True)
class _Loop:
    """A simple cycle of blocks from ``header`` back to it: each block's last instruction goes on
    to the next block of the cycle (``stays``: the leader it must branch to) for every lane that
    keeps looping; every instruction is _SPECULABLE."""

    header: int
    blocks: tuple[_Block, ...]

    @property
    def trip(self) -> int:  # instructions (fuel) of one trip
        return sum(block.last - block.first + 1 for block in self.blocks)

    def stays(self, index: int) -> int:
        return self.blocks[(index + 1) % len(self.blocks)].first


def _reaches(blocks: Mapping[int, _Block], start: int, goal: int) -> bool:
    seen, stack = set(), [start]
    while stack:
        leader = stack.pop()
        if leader == goal:
            return True
        if leader not in seen:
            seen.add(leader)
            stack += blocks[leader].successors
    return False


def fast_loops(program: Program) -> dict[int, _Loop]:
    """Loops that run as speculative trips (header leader -> loop): from the header, every block
    has exactly one successor that leads back to the header (the other, if any, leaves the loop:
    a lane taking it drops the trip), and the path returns to the header without meeting another
    block twice."""
    blocks = {block.first: block for block in basic_blocks(program)}
    loops: dict[int, _Loop] = {}
    if _trips_wanted() == 0:
        return loops
    covered: set[int] = set()  # blocks of a loop found already (each cycle once, from its lowest leader)
    for header in sorted(_in_loops(list(blocks.values()))):
        if header in covered:
            continue
        path, leader = [], header
        while True:
            block = blocks[leader]
            if any(_base_op(program.code[pc]) not in _SPECULABLE for pc in range(block.first, block.last + 1)):
                break
            path.append(block)
            onward = [s for s in block.successors if _reaches(blocks, s, header)]
            if len(onward) != 1:
                break
            leader = onward[0]
            if leader == header:
                loops[header] = _Loop(header, tuple(path))
                covered.update(b.first for b in path)
                break
            if leader in (b.first for b in path):
                break
    return loops


_LOAD_SIZES = {
    _Op.LDI8: 1,
    _Op.LDI16: 2,
    _Op.LDI32: 4,
    _Op.LDT8: 1,
    _Op.LDT16: 2,
    _Op.LDT32: 4,
}


def _speculative_step(code: bytes, program: Program, pc: int) -> str:
    """Instruction ``pc`` in a speculative trip on the lane copy T: a load through jit_load
    (branch-free; a fault only clears `kept`), a branch with its own pc first (the loads before it
    do not advance T.pc), anything else as exec_op, the interpreter's own code."""
    word0, imm = _words(code[pc * 8 : pc * 8 + 8])
    byte, d, a, b = word0 & 0xFF, (word0 >> 8) & 0xFF, (word0 >> 16) & 0xFF, word0 >> 24
    op = _base_op(program.code[pc])
    size = _LOAD_SIZES.get(op)
    if size is not None:
        base, length = ("jit_in", "jit_len") if op in _INPUT_LOADS else (f"S.table_ptr[{b}]", f"S.table_len[{b}]")
        return f"T.r[{d}] = jit_load<{size}u>({base}, {length}, T.r[{a}] + {imm:#x}u, kept);  // {pc}"
    step = f"exec_op<{byte:#04x}u>(S, T, true, FULL_MASK, {d}u, {a}u, {b}u, {imm:#x}u);  // {pc}"
    return f"T.pc = {pc}u; {step}" if op in _BRANCHES else step


def _fast_loop(code: bytes, program: Program, loop: _Loop, trips: int) -> list[str]:
    """A full warp at the loop's header runs ``trips`` trips on a copy of its lanes (T): kept
    only if every lane had the fuel for all of them, stayed in the loop and faulted nowhere, which
    is exactly when stepping would have run the same instructions with the same results (the ops
    are _SPECULABLE: registers only). Otherwise the copy is dropped and the stepped path below
    runs from the same state. One vote per ``trips`` trips, no per-instruction fuel or pc."""
    fuel = trips * loop.trip
    lines = [
        f"        for (;;) {{  // {trips} trips of the loop at {loop.header}, kept all or none",
        "            Lane T = L;",
        "            bool stayed = true, kept = true;  // every branch went on in the loop; no load faulted",
    ]
    for trip in range(trips):
        for index, block in enumerate(loop.blocks):
            for pc in range(block.first, block.last + 1):
                lines.append("            " + _speculative_step(code, program, pc))
            if len(block.successors) > 1:
                lines.append(f"            stayed = stayed && T.pc == {loop.stays(index)}u;  // trip {trip}")
    lines += [
        f"            if (!__all_sync(FULL_MASK, stayed && kept && L.fuel >= {fuel}u)) break;",
        "#pragma unroll",
        "            for (uint32_t i = 0; i < VIR0_MAX_REGISTERS; i++) L.r[i] = T.r[i];",
        f"            L.fuel -= {fuel}u; L.instructions += {fuel}u;",
        "        }",
    ]
    return lines


def translate(program: Program, jit_id: int) -> str:
    """CUDA C++ for ``program`` (verified here) as `vyre_jit_<jit_id>(S, L)`: one batch of lanes.

    The function is the interpreter's scheduler (`run_batch`) with two ways to run a step:
    - converged: when every live lane of the warp stands at the same block leader with fuel for
      the whole block, the block's instructions run straight (no min-pc vote, no fetch) and, if
      every live lane then continues at the same leader, the next block follows at once. This
      is exactly what stepping does for such a warp: each instruction runs for the live lanes at
      it, a lane that faults drops out and pays no further fuel, and fuel cannot run out inside
      the block (checked on entry);
    - otherwise one scheduler step, as run_batch does it (min pc, fuel fault, participants).
    Both call exec_op<byte>, the interpreter's own instruction code.
    """
    if jit_id <= 0:
        raise BackendError(f"jit id {jit_id}: ids start at 1 (0 means 'interpret')")
    verify(program)  # only verified code is specialized: its registers and jumps are in range
    code = encode_code(program.code)
    blocks = basic_blocks(program)
    length = {block.first: block.last - block.first + 1 for block in blocks}

    def converged(leader: int) -> str:
        return f"__ballot_sync(FULL_MASK, L.live && L.pc == {leader}u && L.fuel >= {length[leader]}u) == live"

    def chain(block: _Block) -> list[str]:  # after a block: on to a successor's block, or schedule
        return [
            f"        if (live && {converged(next_)}) {{ if (live == FULL_MASK) goto F{next_}; goto B{next_}; }}"
            for next_ in _hot_first(block)
        ] + ["        continue;"]

    looping = _in_loops(blocks)
    loops = fast_loops(program)
    prefetched = sorted(
        pc
        for block in blocks
        if block.first in looping
        for pc in range(block.first, block.last + 1)
        if program.code[pc].op in _INPUT_LOADS
    )  # each keeps the last address it read in `last<pc>`
    body = []
    for block in blocks:
        segments = _segments(program, block)
        ends_lanes = not _keeps_lane(program.code[block.last])
        body.append(f"    B{block.first}:  // instructions {block.first}..{block.last}")
        for segment in segments:
            n = len(segment)
            body.append(f"    S{segment.start}:  // a segment: only its last instruction may end a lane")
            body.append(f"        if (L.live) {{ L.fuel -= {n}u; L.instructions += {n}u; }}  // {n} steps")
            for pc in segment:
                body += _prefetch(program, pc, "        ") if pc in prefetched else []
                body += _step(code, program, pc, "        ", full=False)
        if any(not _keeps_lane(program.code[segment[-1]]) for segment in segments):
            body.append("        live = __ballot_sync(FULL_MASK, L.live);")
        # else no lane ended in the block: `live` (the entry's) still holds
        body += chain(block)
        body.append(f"    F{block.first}:  // the same for a warp of 32 live lanes: no lane predicates")
        if block.first in loops:  # first whole trips, many at a time, then one at a time
            for trips in dict.fromkeys((fast_trips(loops[block.first].trip), 1)):
                body += _fast_loop(code, program, loops[block.first], trips)
            # the kept trips spent fuel: the block's own entry test (fuel for all of it) again
            vote = f"__all_sync(FULL_MASK, L.fuel >= {length[block.first]}u)"
            body.append(f"        if (!{vote}) continue;  // the scheduler: a fuel fault, or one step")
        for index, segment in enumerate(segments):
            if index:  # the previous segment ended with an op that may end a lane
                body.append(f"        if (!__all_sync(FULL_MASK, L.live)) goto S{segment.start};")
            n = len(segment)
            body.append(f"        L.fuel -= {n}u; L.instructions += {n}u;  // {n} steps")
            for pc in segment:
                body += _prefetch(program, pc, "        ") if pc in prefetched else []
                body += _step(code, program, pc, "        ", full=True)
        if ends_lanes:
            body.append("        live = __ballot_sync(FULL_MASK, L.live);")
            body += chain(block)
            continue
        body.append("        live = FULL_MASK;  // no lane ended: all 32 are live, so one vote decides")
        for next_ in _hot_first(block):
            vote = f"__all_sync(FULL_MASK, L.pc == {next_}u && L.fuel >= {length[next_]}u)"
            body.append(f"        if ({vote}) goto F{next_};")
        body.append("        continue;")
    cases = []
    for pc, instruction in enumerate(program.code):
        word0, imm = _words(code[pc * 8 : pc * 8 + 8])
        byte, d, a, b = word0 & 0xFF, (word0 >> 8) & 0xFF, (word0 >> 16) & 0xFF, word0 >> 24
        cases.append(
            f"            case {pc}u: exec_op<{byte:#04x}u>(S, L, part, participants, {d}u, {a}u, {b}u, {imm:#x}u);"
            f" break;  // {instruction.mnemonic}"
        )
    entries = [
        f"            case {block.first}u: if ({converged(block.first)}) {{ if (live == FULL_MASK) goto F{block.first};"
        f" goto B{block.first}; }} break;"
        for block in blocks
    ]
    name = program.name.replace("*/", "* /")
    return "\n".join(
        [
            f"// {name}: {len(program.code)} instructions in {len(blocks)} blocks, {program.registers} registers",
            f"__device__ __noinline__ void vyre_jit_{jit_id}(RunShared& S, Lane& io) {{",
            "    Lane L;  // a private copy: constant indices keep its registers out of local memory",
            "    L.id = io.id; L.live = io.live; L.instructions = io.instructions;",
            "    L.fault_lane = io.fault_lane; L.fault_code = io.fault_code;",
            "    L.fault_pc = io.fault_pc; L.fault_detail = io.fault_detail;",
            "#pragma unroll",
            f"    for (uint32_t i = 0; i < {program.registers}u; i++) L.r[i] = 0;",
            "    L.pc = 0;",
            "    L.fuel = S.fuel;",
            *(["    const unsigned char* const jit_in = S.input;  // for the fast loops' loads"] if loops else []),
            *(["    const uint64_t jit_len = S.region_len;"] if loops else []),
            "    uint32_t live;",
            *[f"    uint32_t last{pc} = 0;  // the address load {pc} read last (jit_prefetch)" for pc in prefetched],
            "    while (true) {",
            "        uint32_t pc = __reduce_min_sync(FULL_MASK, L.live ? L.pc : 0xffffffffu);",
            "        if (pc == 0xffffffffu) break;",
            "        live = __ballot_sync(FULL_MASK, L.live);",
            "        switch (pc) {  // a converged warp at a block leader runs the block straight",
            *entries,
            "            default: break;",
            "        }",
            "        {  // one scheduler step, run_batch's",
            "            bool part = L.live && L.pc == pc;",
            "            if (part && L.fuel == 0) {",
            "                lane_fault(L, FAULT_FUEL_EXHAUSTED, 0);",
            "                part = false;",
            "            }",
            "            uint32_t participants = __ballot_sync(FULL_MASK, part);",
            "            if (participants == 0) continue;",
            "            if (part) {",
            "                L.fuel--;",
            "                L.instructions++;",
            "            }",
            "            switch (pc) {",
            *cases,
            "            default:  // unreachable for verified code (jumps stay inside it)",
            "                if (part) lane_fault(L, FAULT_BAD_INSTRUCTION, 0);",
            "                break;",
            "            }",
            "        }",
            "        continue;",
            *body,
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
