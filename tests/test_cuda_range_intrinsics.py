"""CUDA vs the CPU oracle on programs that hammer the range intrinsics (countb, findb, findl, hist,
fnv, xxh32, dfa) over random lane ranges: long and short, every alignment, lanes leaving a loop at
different times, a few ranges one byte too long (OOB_INPUT). The GPU runs these cooperatively per
warp with 16-byte loads (megakernel.cu, scan_step); results must stay bit-identical.
Skipped cleanly without a usable GPU; VYRE_RANGE_CASES sets the number of cases."""

from __future__ import annotations

import os
import random
import time

import numpy as np
import pytest

from vyre_runtime.backends.selection import cuda_unavailable_reason
from vyre_runtime.megakernel import Megakernel
from vyre_runtime.vir0 import asm

pytestmark = pytest.mark.gpu
_REASON = cuda_unavailable_reason()
if _REASON is not None:
    pytest.skip(f"no usable CUDA GPU: {_REASON}", allow_module_level=True)

CASES = int(os.environ.get("VYRE_RANGE_CASES", "150"))
BUDGET_S = float(os.environ.get("VYRE_RANGE_BUDGET_S", "120"))


def stress_program(
    rng: random.Random,
    lanes: int,
    hist_words: int,
    lit: bytes,
    byte1: int,
    byte2: int,
    iters_mask: int,
    oob_mask: int,
    dfa_patterns: list[str],
) -> str:
    """A program whose lanes draw random ranges and run every range intrinsic over each."""
    seed1, seed2 = rng.getrandbits(32) | 1, rng.getrandbits(32)
    pats = " ".join(f'"{p}"' for p in dfa_patterns)
    return f"""
.program scan_stress
.registers 24
.lanes {lanes}
.table lit hex {lit.hex()}
.dfa pats {pats}
.binding out {lanes * 8} run sum
.binding hist {hist_words} run sum
    sreg r0, lane_id
    sreg r1, region_len
    mul r2, r0, {seed1}
    xor r2, r2, {seed2}
    and r20, r2, {iters_mask}      ; iterations - 1: lanes leave the loop at different times
    li r21, 0
again:
    mul r2, r2, 0x85EBCA77
    xor r2, r2, 0x2545F491
    rotl r2, r2, 13
    add r3, r1, 1
    remu r4, r2, r3                ; start in [0, region_len]
    sub r5, r1, r4
    add r5, r5, 1
    rotl r6, r2, 7
    remu r5, r6, r5                ; len in [0, region_len - start]
    and r7, r2, 0x300
    jnz r7, keep_len
    and r5, r5, 63                 ; a quarter of the ranges are short
keep_len:
    and r7, r6, {oob_mask}
    jnz r7, in_range
    add r5, r5, 1                  ; rarely one byte too long: OOB_INPUT
in_range:
    countb r8, r4, r5, {byte1}
    findb r9, r4, r5, {byte2}
    findl r10, r4, r5, lit
    rotl r11, r2, 21
    remu r11, r11, {hist_words - 255}
    hist r11, r4, r5, hist
    li r12, 0x811c9dc5
    fnv r12, r4, r5
    mov r13, r2
    xxh32 r13, r4, r5
    li r14, 0
    dfa r14, r4, r5, pats
    shl r16, r0, 3
    atadd r23, r16, r8, out
    add r16, r16, 1
    atadd r23, r16, r9, out
    add r16, r16, 1
    atadd r23, r16, r10, out
    add r16, r16, 1
    atadd r23, r16, r12, out
    add r16, r16, 1
    atadd r23, r16, r13, out
    add r16, r16, 1
    atadd r23, r16, r14, out
    add r16, r16, 1
    atadd r23, r16, r15, out
    add r16, r16, 1
    atadd r23, r16, r4, out
    add r21, r21, 1
    geu r22, r20, r21
    jnz r22, again
    exit
"""


def data_for(rng: random.Random, size: int) -> bytes:
    mode = rng.randrange(4)
    if mode == 0:
        return rng.randbytes(size)
    alphabet = [bytes([b]) for b in (b"\n ae\x00\xff\x80" if mode == 1 else b"ab\n")]
    return b"".join(rng.choice(alphabet) for _ in range(size)) if size < 200_000 else (rng.choice(alphabet) * size)


def test_range_intrinsics_match_the_cpu_backend_bit_for_bit():
    rng = random.Random(12345)
    done, mismatches = 0, []
    with Megakernel(backend="cuda", slots=256) as gpu, Megakernel(backend="cpu", slots=256, workers=4) as cpu:
        began = time.monotonic()  # the budget is for cases: a cold NVRTC build of the kernel is not one
        for case in range(CASES):
            if time.monotonic() - began > BUDGET_S:
                break
            size = rng.choice((0, 1, 63, 64, 100, 1000, 4097, 20000, 70001, 300000))
            data = data_for(rng, size)
            lanes = rng.choice((1, 5, 32, 33, 64, 256, 257, 1024))
            hist_words = rng.choice((256, 300, 2000, 9000))  # 9000 words: not staged, global memory
            lit_len = rng.choice((1, 2, 3, 4, 8, 17, 65))
            if size >= lit_len and rng.random() < 0.7:
                at = rng.randrange(size - lit_len + 1)
                literal = data[at : at + lit_len]
            else:
                literal = bytes(rng.choice(b"ab\n") for _ in range(lit_len))
            text = stress_program(
                rng, lanes, hist_words, literal, rng.choice(b"\n a\x00\xff\x80b"), rng.choice(b"\n a\x00\xff\x80b"),
                rng.choice((0, 1, 3, 7)), rng.choice((0x3FF, 0xFFFF, 0xFFFFF)),
                rng.sample(["a", "ab", " a", "ba", "aab", "e"], 2),
            )  # fmt: skip
            program = asm.assemble_program(text)
            handles = [mk.register_program(program) for mk in (gpu, cpu)]
            futures = [mk.submit(h, data) for mk, h in zip((gpu, cpu), handles)]
            mine, reference = (f.result(120) for f in futures)
            for mk, handle in zip((gpu, cpu), handles):
                mk.unregister_program(handle)
            done += 1
            same_outputs = {k: np.asarray(v).tolist() for k, v in mine.outputs.items()} == {
                k: np.asarray(v).tolist() for k, v in reference.outputs.items()
            }
            if mine.fault != reference.fault or not same_outputs:
                mismatches.append((case, size, lanes, hist_words, literal, mine.fault, reference.fault))
    assert done >= min(CASES, 20), f"only {done} cases ran within {BUDGET_S} s"
    assert not mismatches, mismatches[:5]


# Range lengths of the edge test: empty, shorter than a vector, around one and several 16-byte
# vectors, around the streamed intrinsics' rounds (4 vectors) and L2 prefetch distance (32
# vectors), and "to the region's end" (the last: every length is clipped there).
EDGE_LENGTHS = (
    *range(18), 20, 31, 32, 33, 47, 48, 49, 63, 64, 65, 79, 80, 81, 127, 128, 129, 255, 256, 257,
    511, 512, 513, 527, 528, 529, 1023, 1024, 4096, 0xFFFFFFFF,
)  # fmt: skip
EDGE_STARTS = 36  # starts 0 .. 35: every alignment to 16 bytes, twice, and then some


def edge_program() -> str:
    """Lane i runs every range intrinsic over [i mod EDGE_STARTS, + EDGE_LENGTHS[i div EDGE_STARTS]),
    clipped to the region's end, and adds the results into its words of `out`."""
    lanes = EDGE_STARTS * len(EDGE_LENGTHS)
    lengths = b"".join(n.to_bytes(4, "little") for n in EDGE_LENGTHS)
    stores = "\n".join(
        f"    li r16, {k}\n    add r16, r16, r15\n    atadd r23, r16, r{reg}, out"
        for k, reg in enumerate((8, 9, 10, 12, 13, 14, 17))
    )
    return f"""
.program edge_ranges
.registers 24
.lanes {lanes}
.table lens hex {lengths.hex()}
.table lit hex 6162
.dfa pats "ab" "ba" "a"
.binding out {lanes * 8} run sum
.binding hist 256 run sum
    sreg r0, lane_id
    sreg r1, region_len
    remu r4, r0, {EDGE_STARTS}
    divu r5, r0, {EDGE_STARTS}
    shl r5, r5, 2
    ldt32 r5, r5, lens, 0
    sub r6, r1, r4
    minu r5, r5, r6                ; to the region's end at most
    countb r8, r4, r5, 97
    findb r9, r4, r5, 98
    findl r10, r4, r5, lit
    li r11, 0
    hist r11, r4, r5, hist
    li r12, 0x811c9dc5
    fnv r12, r4, r5
    mov r13, r0
    xxh32 r13, r4, r5
    li r14, 0
    dfa r14, r4, r5, pats
    mov r17, r15                   ; dfa's accepting transitions
    shl r15, r0, 3
{stores}
    exit
"""


@pytest.mark.parametrize("size", [100, 1000, 4103, 20000])
def test_edge_ranges_interpreted_and_jitted_match_the_cpu_backend(size: int) -> None:
    """Misaligned starts, ranges shorter than 16 bytes, empty ones and ones ending at the region's
    end, through the interpreter and the JIT (the streamed fnv/xxh32/dfa, the warp scans)."""
    rng = random.Random(size)
    data = bytes(rng.choice(b"aab\n\x00\xff") for _ in range(size))
    program = asm.assemble_program(edge_program())
    with Megakernel(backend="cpu", slots=16, workers=2) as cpu:
        reference = cpu.submit(cpu.register_program(program), data).result(120)
    assert reference.fault is None
    gpu = Megakernel(backend="cuda", slots=64, jit="request")
    try:
        handle = gpu.register_program(program)
        runs = [gpu.submit(handle, data).result(60)]
        gpu.jit(handle)
        runs.append(gpu.submit(handle, data).result(60))
        assert [run.path for run in runs] == ["interpreted", "jit"]
        for run in runs:
            assert run.fault == reference.fault, run.path
            for name, words in reference.outputs.items():
                assert np.asarray(run.outputs[name]).tolist() == np.asarray(words).tolist(), (run.path, name)
            assert run.instructions == reference.instructions, run.path
    finally:
        gpu.shutdown(timeout=10)
