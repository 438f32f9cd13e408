"""The JIT on a real GPU: JIT'd programs give bit-identical results to the interpreter and to the
CPU backend, and a hot swap to a new variant loses and repeats no slot.

Run on the H100 (`scripts/gpu_session.sh tests`); skipped without a usable GPU."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from differential import comparable, deterministic_case
from host_programs import counting_program, text_with_needles
from wide_programs import WIDE_PROGRAMS

from vyre_runtime.backends.selection import cuda_unavailable_reason
from vyre_runtime.jit_policy import JitPolicy
from vyre_runtime.megakernel import Megakernel
from vyre_runtime.vir0 import asm

pytestmark = pytest.mark.gpu
_REASON = cuda_unavailable_reason()
if _REASON is not None:
    pytest.skip(f"no usable CUDA GPU: {_REASON}", allow_module_level=True)

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.vasm"))
NEEDLES = [b"vyre", b"error", b"warning", b"fatal", b"panic", b"\n", b"\n\n"]
JIT_SEEDS = int(os.environ.get("VYRE_JIT_SEEDS", "150"))
SHUTDOWN_S = float(os.environ.get("VYRE_GPU_SHUTDOWN_S", "10"))


def _same(mine, reference, where: str) -> None:
    assert mine.fault == reference.fault, where
    assert {k: v.tolist() for k, v in mine.outputs.items()} == {k: v.tolist() for k, v in reference.outputs.items()}, (
        where
    )
    assert sorted(map(tuple, mine.records.tolist())) == sorted(map(tuple, reference.records.tolist())), where
    assert (mine.dropped, mine.instructions) == (reference.dropped, reference.instructions), where


def test_examples_run_natively_with_the_interpreters_and_the_cpus_results():
    programs = [asm.assemble_program(path.read_text(), source_name=path.name) for path in EXAMPLES]
    cases = [
        (seed, text_with_needles(seed, size, NEEDLES), lanes)
        for seed, size, lanes in ((1, 0, None), (2, 1, None), (3, 5000, None), (4, 70_001, 33), (5, 300_000, None))
    ]
    with Megakernel(backend="cpu", slots=64, workers=2) as cpu:
        expected = {}
        for program in programs:
            handle = cpu.register_program(program)
            for seed, data, lanes in cases:
                expected[program.name, seed] = cpu.submit(handle, data, lanes=lanes).result(120)
    gpu = Megakernel(backend="cuda", slots=256, jit="request")
    try:
        handles = [gpu.register_program(program) for program in programs]
        for program, handle in zip(programs, handles):
            for seed, data, lanes in cases:
                interpreted = gpu.submit(handle, data, lanes=lanes).result(60)
                assert interpreted.path == "interpreted"
                _same(interpreted, expected[program.name, seed], f"{program.name} interpreted, seed {seed}")
        gpu.jit(*handles)
        for program, handle in zip(programs, handles):
            for seed, data, lanes in cases:
                native = gpu.submit(handle, data, lanes=lanes).result(60)
                assert native.path == "jit", program.name
                _same(native, expected[program.name, seed], f"{program.name} JIT, seed {seed}")
        states = gpu.stats().programs
        assert {states[h].state for h in handles} == {"jit"}
        assert all(states[h].runs_jit == len(cases) == states[h].runs_interpreted for h in handles)
        assert gpu.stats().stray_completions == 0
    finally:
        gpu.shutdown(timeout=SHUTDOWN_S)


def test_random_programs_jitted_match_the_interpreter_and_the_cpu_bit_for_bit():
    cases = [deterministic_case(seed) for seed in range(JIT_SEEDS)]
    with Megakernel(backend="cpu", slots=256, workers=2) as cpu:
        reference = []
        for program, data, capacity in cases:
            handle = cpu.register_program(program)
            reference.append(comparable(cpu.submit(handle, data, emit_capacity=capacity).result(60)))
            cpu.unregister_program(handle)
    gpu = Megakernel(backend="cuda", slots=256, jit="request")
    try:
        handles = [gpu.register_program(program) for program, _, _ in cases]
        interpreted = [gpu.submit(h, data, emit_capacity=c) for h, (_, data, c) in zip(handles, cases)]
        interpreted = [future.result(60) for future in interpreted]
        gpu.jit(*handles)  # one variant holding every program: one NVRTC build
        native = [gpu.submit(h, data, emit_capacity=c) for h, (_, data, c) in zip(handles, cases)]
        native = [future.result(60) for future in native]
        for seed, (program, _, _) in enumerate(cases):
            where = f"seed {seed}: {[i.mnemonic for i in program.code]}"
            assert interpreted[seed].path == "interpreted" and native[seed].path == "jit", where
            assert comparable(interpreted[seed]) == reference[seed], where
            assert comparable(native[seed]) == reference[seed], where
    finally:
        gpu.shutdown(timeout=SHUTDOWN_S)


# Loops of input loads (the JIT's loop-load paths: speculative trips, jit_prefetch, full-warp block
# copies): strides that stay, grow, run backwards or are 0; misaligned words; loads that fault at
# the region's end or past a table; exits mid-loop; partial warps; fuel running out inside the loop.
AHEAD_PROGRAMS = [
    # forward, the lanes' words interleaved; the loop runs 8 bytes past the region: the last loads fault
    """.program ahead_forward
.registers 8
.lanes 64
.binding sum 1 run sum
    sreg r0, lane_id
    sreg r1, lane_count
    sreg r2, region_len
    shl r3, r0, 2
    shl r4, r1, 2
    add r2, r2, 8
    li r5, 0
loop:
    geu r6, r3, r2
    jnz r6, done
    ldi32 r7, r3, 0
    rotl r5, r5, 5
    add r5, r5, r7
    add r3, r3, r4
    jmp loop
done:
    li r6, 0
    atadd r6, r6, r5, sum
    exit
""",
    # a stride that grows every iteration, unaligned 16-bit loads at an offset
    """.program ahead_growing
.registers 8
.lanes 32
.binding sum 1 run sum
    sreg r0, lane_id
    sreg r2, region_len
    mov r3, r0
    li r4, 1
    li r5, 0
loop:
    add r6, r3, 3
    geu r6, r6, r2
    jnz r6, done
    ldi16 r7, r3, 1
    xor r5, r5, r7
    mul r5, r5, 31
    add r3, r3, r4
    add r4, r4, 1
    jmp loop
done:
    li r6, 0
    atadd r6, r6, r5, sum
    exit
""",
    # backward bytes from the end (the address wraps below 0 to leave the loop), two loads a trip
    """.program ahead_backward
.registers 10
.lanes 32
.binding sum 2 run sum
    sreg r0, lane_id
    sreg r2, region_len
    sub r3, r2, 1
    sub r3, r3, r0
    li r5, 0
    li r8, 0
loop:
    geu r6, r3, r2
    jnz r6, done
    ldi8 r7, r3, 0
    rotl r5, r5, 3
    add r5, r5, r7
    ldi8 r9, r0, 0
    add r8, r8, r9
    sub r3, r3, 32
    jmp loop
done:
    li r6, 0
    atadd r6, r6, r5, sum
    li r6, 1
    atadd r6, r6, r8, sum
    exit
""",
    # speculative trips (jit.py fast_loops): unaligned words (the funnel-shift load) and 16-bit
    # loads at odd offsets; the loop's bound leaves 1..3 bytes past the last whole word, so the
    # last trips' loads fault for some lanes only
    """.program fast_unaligned
.registers 10
.lanes 64
.binding sum 2 run sum
    sreg r0, lane_id
    sreg r1, lane_count
    sreg r2, region_len
    add r3, r0, 1           ; lane i starts at byte i + 1: most words are misaligned
    li r5, 0
    li r8, 0
loop:
    geu r6, r3, r2
    jnz r6, done
    ldi32 r7, r3, 0
    add r5, r5, r7
    ldi16 r9, r3, 2
    xor r8, r8, r9
    rotl r8, r8, 7
    add r3, r3, r1
    jmp loop
done:
    li r6, 0
    atadd r6, r6, r5, sum
    li r6, 1
    atadd r6, r6, r8, sum
    exit
""",
    # a table walked past its end (OOB_TABLE mid-loop, at a different trip in every lane) and an
    # exit in the middle of the loop body (a zero byte of the input ends the lane's walk)
    """.program fast_table_walk
.registers 10
.lanes 96
.table steps "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
.binding sum 2 run sum
    sreg r0, lane_id
    sreg r2, region_len
    mov r3, r0
    li r5, 0
    li r8, 0
loop:
    geu r6, r3, r2
    jnz r6, done
    ldi8 r7, r3, 0
    jz r7, done             ; a zero byte: this lane is done
    remu r9, r7, 61
    add r9, r9, r0
    ldt8 r9, r9, steps, 0   ; past the table's 62 bytes for lanes >= 2: OOB_TABLE
    add r5, r5, r9
    mul r8, r8, 33
    add r8, r8, r7
    add r3, r3, 7
    jmp loop
done:
    li r6, 0
    atadd r6, r6, r5, sum
    li r6, 1
    atadd r6, r6, r8, sum
    exit
""",
]


def assert_jitted_match_the_cpu(programs: list, cases: list[tuple[bytes, int | None, int | None]]) -> None:
    """Every program over every (data, lanes, fuel) case: JIT'd on the GPU (path "jit") and
    interpreted on the CPU backend, the same results."""
    with Megakernel(backend="cpu", slots=64, workers=2) as cpu:
        handles = [cpu.register_program(program) for program in programs]
        expected = [
            [comparable(cpu.submit(h, data, lanes=lanes, fuel=fuel).result(60)) for data, lanes, fuel in cases]
            for h in handles
        ]
    gpu = Megakernel(backend="cuda", slots=256, jit="request")
    try:
        handles = [gpu.register_program(program) for program in programs]
        gpu.jit(*handles)
        for program, handle, wanted in zip(programs, handles, expected):
            for index, ((data, lanes, fuel), reference) in enumerate(zip(cases, wanted)):
                native = gpu.submit(handle, data, lanes=lanes, fuel=fuel).result(60)
                assert native.path == "jit", program.name
                assert comparable(native) == reference, f"{program.name}, case {index}"
    finally:
        gpu.shutdown(timeout=SHUTDOWN_S)


def test_loop_loads_jitted_give_the_cpus_results():
    rng = np.random.default_rng(11)
    programs = [asm.assemble_program(text) for text in AHEAD_PROGRAMS]
    cases = [
        (rng.integers(0, 256, size, dtype=np.uint8).tobytes(), lanes, fuel)
        for size, lanes, fuel in (
            (0, None, None),
            (3, None, None),
            (4096, None, None),
            (70_001, None, None),
            (70_001, 33, None),
            (100_000, 64, None),
            (100_000, 64, 900),  # fuel runs out inside the loop
            (100_000, 64, 61),  # ... in the first speculative trips
            (100_000, 64, 4321),  # ... after many kept trips, not on a trip boundary
            (100_000, 1024, 20_000),
            (262_147, 96, None),
        )
    ]
    assert_jitted_match_the_cpu(programs, cases)


def test_wide_trip_loads_give_the_cpus_results():
    """jit_wide's aligned and wide reads (tests/wide_programs.py): 16-byte-aligned spans, spans
    the vote refuses (4-aligned, misaligned: today's loads), a region ending inside a span (the
    lanes there fault, as interpreted), partial warps, and fuel running out inside the trips."""
    rng = np.random.default_rng(6)
    programs = [asm.assemble_program(text) for text in WIDE_PROGRAMS]
    cases = [
        (rng.integers(0, 256, size, dtype=np.uint8).tobytes(), lanes, fuel)
        for size, lanes, fuel in (
            (0, None, None),
            (3, None, None),
            (4096, None, None),  # lanes 8.. start at the region's end
            (4100, None, None),  # lane 8's span ends mid-vector: its second word faults
            (4110, 96, None),
            (32_768, None, None),  # every lane's bytes inside
            (32_790, 33, None),  # a partial warp: no speculative trips for the second
            (70_001, None, None),
            (70_001, 64, 61),  # fuel runs out in the first trips
            (70_001, 64, 900),  # ... after some kept steps, inside a trip
            (70_001, 1024, 4321),
        )
    ]
    assert_jitted_match_the_cpu(programs, cases)


def test_a_hot_program_is_swapped_to_native_code_while_runs_stream_and_no_run_is_lost_or_repeated():
    program = counting_program()
    rng = np.random.default_rng(5)
    sizes = rng.integers(0, 5000, 3000).tolist()
    gpu = Megakernel(backend="cuda", slots=256, jit=JitPolicy(mode="auto", hot_runs=50, settle_s=0.0))
    try:
        handle = gpu.register_program(program)
        futures = []
        done = threading.Event()

        def keep_submitting() -> None:
            for size in sizes:
                futures.append((size, gpu.submit(handle, bytes(size))))
            done.set()

        submitter = threading.Thread(target=keep_submitting)
        submitter.start()
        submitter.join(120)
        assert done.is_set()
        paths = []
        for size, future in futures:
            outcome = future.result(60)
            assert outcome.ok
            assert outcome.outputs["hits"].tolist() == [program.lanes]
            assert outcome.outputs["bytes"].tolist() == [program.lanes * size]
            paths.append(outcome.path)
        gpu.jit(handle, timeout=120)  # the hot build: done by now or soon; then runs go native
        after = gpu.submit(handle, b"abc").result(60)
        assert after.path == "jit" and after.outputs["bytes"].tolist() == [program.lanes * 3]
        stats = gpu.stats()
        path = stats.programs[handle]
        assert path.state == "jit"
        assert path.runs_interpreted + path.runs_jit == len(sizes) + 1
        assert path.runs_interpreted >= 50 and paths.count("interpreted") == path.runs_interpreted
        assert stats.stray_completions == 0
        assert stats.completed == stats.published
    finally:
        gpu.shutdown(timeout=SHUTDOWN_S)


def test_a_stream_with_jit_runs_every_chunk_natively_and_auto_counts_code_across_per_file_handles(tmp_path):
    from vyre_runtime.ingest.stream import StreamOptions, StreamPipeline

    program = asm.assemble_program((EXAMPLES[0].parent / "line_count.vasm").read_text())
    files = []
    for index in range(6):
        path = tmp_path / f"part{index}.txt"
        path.write_bytes(text_with_needles(index, 300_000, NEEDLES))
        files.append(path)
    expected = [path.read_bytes().count(b"\n") for path in files]
    options = StreamOptions(chunk_size=64 << 10, jit=True)
    with Megakernel(backend="cuda", slots=256, jit="request") as gpu, StreamPipeline([program], gpu, options) as stream:
        results = stream.run([str(path) for path in files])
        assert [r.programs[0].outputs["lines"].tolist() for r in results] == [[n] for n in expected]
        assert all(r.programs[0].jit_chunks == r.chunks > 1 for r in results)
    hot = JitPolicy(mode="auto", hot_runs=8, settle_s=0.0)
    options = StreamOptions(chunk_size=64 << 10)
    with Megakernel(backend="cuda", slots=256, jit=hot) as gpu, StreamPipeline([program], gpu, options) as stream:
        first = stream.run([str(path) for path in files[:2]])  # 10 chunks over two handles: hot
        probe = gpu.register_program(program)  # same code: its state is the code's
        deadline = time.monotonic() + 120
        while gpu.stats().programs[probe].state != "jit":  # the auto build and swap, not requested
            assert time.monotonic() < deadline, gpu.stats().programs[probe]
            time.sleep(0.05)
        later = stream.run([str(path) for path in files[2:]])
        assert [r.programs[0].outputs["lines"].tolist() for r in first + later] == [[n] for n in expected]
        assert all(r.programs[0].jit_chunks == r.chunks for r in later)


def test_relaunching_another_build_takes_the_native_ids_with_the_old_module():
    """JIT ids name functions of one module: a relaunch with another build (here the plain kernel)
    must leave every record interpreting, never pointing at a function the new module lacks."""
    from vyre_runtime.backends.cuda import build

    program = counting_program()
    with Megakernel(backend="cuda", slots=64, jit="request") as gpu:
        handle = gpu.register_program(program)
        gpu.jit(handle)
        native = gpu.submit(handle, b"abcd").result(60)
        gpu.relaunch(cubin=build.build_megakernel(gpu.device.arch))
        plain = gpu.submit(handle, b"abcd").result(60)
        assert (native.path, plain.path) == ("jit", "interpreted")
        assert gpu.stats().programs[handle].state == "interpreted"
        assert native.outputs["bytes"].tolist() == plain.outputs["bytes"].tolist() == [4 * program.lanes]
