"""Lane split on a real GPU: a run's lane batches executed by several worker blocks (megakernel.cu,
"lane split"; docs/PROTOCOL.md, "Lane split (CUDA)") give exactly the CPU backend's results:
outputs, the lowest faulting lane's fault, records and dropped counts, lane-instructions.

This module's kernel is built with LANE_SPLIT_MIN_BYTES=0u, so every run of two or more lane
batches (more than 256 lanes) is split, whatever its size; $VYRE_MEGAKERNEL_DEFINES adds to that
(scripts/lanesplit_gpu.sh runs the module with LANE_SPLIT=0u too: the same results, nothing split).
"""

from __future__ import annotations

import dataclasses
import os
import random
import time
from pathlib import Path

import numpy as np
import pytest
from cuda_resident import SHUTDOWN_S, resident
from differential import comparable, deterministic_case
from fused_cases import comparable_members, fused_case, run_fused, run_separately
from host_programs import text_with_needles
from test_cuda_backend import _big_output_program

from vyre_runtime.backends.cuda import build
from vyre_runtime.backends.selection import cuda_unavailable_reason
from vyre_runtime.megakernel import Megakernel
from vyre_runtime.vir0 import asm

pytestmark = pytest.mark.gpu
_REASON = cuda_unavailable_reason()
if _REASON is not None:
    pytest.skip(f"no usable CUDA GPU: {_REASON}", allow_module_level=True)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NEEDLES = [b"vyre", b"error", b"warning", b"fatal", b"panic", b"\n", b"\n\n"]
SEEDS = int(os.environ.get("VYRE_LANESPLIT_SEEDS", "150"))
SPLIT_DEFINES = "LANE_SPLIT_MIN_BYTES=0u"
STATS_GLOBAL = "vyre_lane_split_stats"  # megakernel.cu: runs split, pieces run by helper blocks
SPLITTING = "LANE_SPLIT=0" not in os.environ.get(build.DEFINES_ENV, "")  # (an A/B run turns it off)
MISALIGN = 3  # host-mapped bytes off a 16-byte boundary


@pytest.fixture(scope="module", autouse=True)
def every_run_of_several_batches_splits():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(build.DEFINES_ENV, f"{os.environ.get(build.DEFINES_ENV, '')} {SPLIT_DEFINES}".strip())
        yield


@pytest.fixture(scope="module")
def cpu():
    with Megakernel(backend="cpu", slots=256, workers=2) as megakernel:
        yield megakernel


def split_counts(megakernel: Megakernel) -> tuple[int, int]:
    """(runs split, lane pieces run by helper blocks) since the serving module was loaded."""
    from vyre_runtime.backends.cuda import driver

    device = megakernel.device
    pointer, nbytes = device._module.global_address(STATS_GLOBAL)
    raw = driver.download(device._side_stream, pointer, nbytes, 10.0)
    runs, helped = np.frombuffer(raw, dtype=np.uint64).tolist()
    return int(runs), int(helped)


def assert_split(before: tuple[int, int], after: tuple[int, int], *, helped: bool = True) -> None:
    if not SPLITTING:
        assert after == before, "LANE_SPLIT=0u: nothing is split"
        return
    assert after[0] > before[0], "no run was split"
    if helped:
        assert after[1] > before[1], "no helper block took a lane piece"


def same(mine, reference, where: str) -> None:
    assert comparable(mine) == comparable(reference), where
    assert mine.dropped == reference.dropped, where


def host_mapped(megakernel: Megakernel, data: bytes) -> np.ndarray:
    # (the CUDA backend rounds host memory up to whole pages: take exactly the data's bytes)
    view = megakernel.host_memory(len(data) + MISALIGN)[MISALIGN : MISALIGN + len(data)]
    view[:] = np.frombuffer(data, dtype=np.uint8)
    return view


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.vasm")), ids=lambda p: p.stem)
def test_every_example_split_over_blocks_matches_the_cpu_backend(cpu, path):
    program = asm.assemble_program(path.read_text(), source_name=str(path))
    on_cpu = cpu.register_program(program)
    with resident(slots=256) as gpu:
        on_gpu = gpu.register_program(program)
        before = split_counts(gpu)
        for seed, size in ((1, 5000), (2, 300_000)):
            data = text_with_needles(seed, size, NEEDLES)
            for lanes in (257, 4096):
                reference = cpu.submit(on_cpu, data, lanes=lanes).result(300)
                for where, region in (("bytes", data), ("host-mapped", host_mapped(gpu, data))):
                    mine = gpu.submit(on_gpu, region, lanes=lanes).result(60)
                    same(mine, reference, f"{path.stem}, {size} bytes {where}, {lanes} lanes")
        assert_split(before, split_counts(gpu), helped=False)


def test_random_programs_split_over_blocks_match_the_cpu_backend(cpu):
    """tests/differential.py programs (results docs/VIR0.md fully determines) on 257..2000 lanes."""
    with resident(slots=256) as gpu:
        before = split_counts(gpu)
        for seed in range(SEEDS):
            program, data, capacity = deterministic_case(seed)
            lanes = random.Random(seed).choice((257, 511, 1024, 2000))
            handles = [mk.register_program(program) for mk in (gpu, cpu)]
            futures = [mk.submit(h, data, lanes=lanes, emit_capacity=capacity) for mk, h in zip((gpu, cpu), handles)]
            mine, reference = (f.result(120) for f in futures)
            for mk, handle in zip((gpu, cpu), handles):
                mk.unregister_program(handle)
            same(mine, reference, f"seed {seed}, {lanes} lanes: {[i.mnemonic for i in program.code]}")
        assert_split(before, split_counts(gpu))


FAULT_KINDS = {
    "trap": "    trap {lane}",
    "oob": "    li r3, 0x40000000\n    ldi32 r4, r3, 0\n    exit",  # OOB_INPUT, detail the address
    "fuel": "spin_{lane}:\n    jmp spin_{lane}",  # FUEL_EXHAUSTED
}


def faulting_lanes_program(faults: dict[int, str]) -> str:
    """4096 lanes (16 batches); lanes below 1024 first spin a while, so the pieces of higher lanes
    fault first: the run must still report the lowest faulting lane. Lanes that do not fault add 1."""
    checks = "".join(f"    eq r1, r0, {lane}\n    jnz r1, fault_{lane}\n" for lane in faults)
    handlers = "".join(f"fault_{lane}:\n" + FAULT_KINDS[kind].format(lane=lane) + "\n" for lane, kind in faults.items())
    return f"""
.program split_faults
.registers 8
.lanes 4096
.binding survivors 1 run sum
    sreg r0, lane_id
    li r5, 0
    geu r1, r0, 1024
    jnz r1, check
wait:
    add r5, r5, 1
    ltu r1, r5, 3000
    jnz r1, wait
check:
{checks}    li r6, 0
    li r7, 1
    atadd r2, r6, r7, survivors
    exit
{handlers}"""


@pytest.mark.parametrize(
    "faults",
    [
        {300: "trap", 1000: "oob", 2100: "trap", 4000: "fuel"},
        {4000: "fuel", 2100: "trap"},
        {1000: "oob", 4095: "trap"},
        {40: "fuel", 3000: "oob"},
        {2047: "trap", 2048: "oob"},
    ],
    ids=lambda f: "-".join(map(str, f)),
)
def test_the_lowest_faulting_lane_wins_across_blocks(cpu, faults):
    program = asm.assemble_program(faulting_lanes_program(faults))
    on_cpu = cpu.register_program(program)
    reference = cpu.submit(on_cpu, b"some bytes", fuel=100_000).result(300)
    assert reference.fault is not None and reference.fault.lane == min(faults)
    with resident(slots=256) as gpu:
        on_gpu = gpu.register_program(program)
        before = split_counts(gpu)
        for _ in range(3):  # pieces finish in another order each time
            same(gpu.submit(on_gpu, b"some bytes", fuel=100_000).result(60), reference, str(faults))
        assert_split(before, split_counts(gpu))


EMITS = """
.program split_emits
.registers 4
.emit 2
.lanes 2048
    sreg r0, lane_id
    li r1, 0
again:
    emit r0
    add r1, r1, 1
    ltu r2, r1, 3
    jnz r2, again
    exit
"""


@pytest.mark.parametrize("capacity", [0, 1, 1000, 6143, 6144, 100_000])
def test_records_of_a_split_run_share_one_capacity_and_dropped_count(capacity):
    program = asm.assemble_program(EMITS)
    every = {(lane, k) for lane in range(2048) for k in range(3)}
    with resident(slots=256) as gpu:
        handle = gpu.register_program(program)
        before = split_counts(gpu)
        for _ in range(3):
            outcome = gpu.submit(handle, b"", emit_capacity=capacity).result(60)
            kept = list(map(tuple, outcome.records.tolist()))
            assert len(kept) == min(capacity, len(every))
            assert outcome.dropped == len(every) - len(kept)
            assert len(set(kept)) == len(kept) and set(kept) <= every
            assert outcome.instructions == 2048 * (2 + 4 * 3 + 1)
        assert_split(before, split_counts(gpu))


@pytest.mark.parametrize("words", [9000, 65537, 200_000])
@pytest.mark.parametrize("faulting", [False, True], ids=["ok", "oob"])
def test_split_run_outputs_in_device_scratch_or_in_place_match_the_cpu_backend(cpu, words, faulting):
    """300 lanes (2 batches): outputs that a single block would keep in its shared stage (9000
    words: no, past it), its device scratch (65537) or in place (200000) are all written by two blocks."""
    program = _big_output_program(words, faulting)
    on_cpu = cpu.register_program(program)
    reference = cpu.submit(on_cpu, b"abc").result(60)
    with resident(slots=256) as gpu:
        on_gpu = gpu.register_program(program)
        before = split_counts(gpu)
        same(gpu.submit(on_gpu, b"abc").result(60), reference, f"{words} words")
        assert_split(before, split_counts(gpu), helped=False)


@pytest.mark.parametrize("words", [65537, 200_000])
def test_helper_blocks_write_outputs_in_device_scratch_or_in_place(cpu, words):
    """4096 lanes (16 batches) that each spin a while first: other blocks take pieces (asserted),
    so outputs in the owner's device scratch (65537 words) or in place in host memory (200000)
    are written from several SMs at once, and still match the CPU backend."""
    program = _big_output_program(words, False, lanes=4096, spin=2000)
    reference = cpu.submit(cpu.register_program(program), b"abc").result(120)
    with resident(slots=256) as gpu:
        on_gpu = gpu.register_program(program)
        before = split_counts(gpu)
        for _ in range(3):
            same(gpu.submit(on_gpu, b"abc").result(120), reference, f"{words} words")
        assert_split(before, split_counts(gpu), helped=True)


def test_fused_members_split_their_lanes_and_match_separate_cpu_runs(cpu):
    names = ("line_count", "histogram", "checksum", "literal_search")
    programs = [asm.assemble_program((EXAMPLES / f"{name}.vasm").read_text(), source_name=name) for name in names]
    data = text_with_needles(7, 1 << 20, NEEDLES)
    with resident(slots=256) as gpu:
        before = split_counts(gpu)
        handles = [gpu.register_program(program) for program in programs]
        group = gpu.register_fused(handles)
        references = [cpu.submit(cpu.register_program(p), data, lanes=2048).result(300) for p in programs]
        for region in (data, host_mapped(gpu, data)):
            members = gpu.submit(group, region, lanes=[2048] * len(programs)).result(60)
            for name, mine, reference in zip(names, members, references):
                same(mine, reference, f"fused {name}")
        for seed in range(min(SEEDS, 60)):
            case = fused_case(seed)
            rng = random.Random(seed)
            case = dataclasses.replace(case, lanes=[rng.choice((257, 700, 1500)) for _ in case.programs])
            assert comparable_members(run_fused(gpu, case)) == comparable_members(run_separately(cpu, case)), seed
        assert_split(before, split_counts(gpu))


SPIN = """
.program split_spin
.registers 4
.lanes 4096
.binding laps 1 run sum
    li r0, 0
again:
    add r0, r0, 1
    ltu r1, r0, 20000
    jnz r1, again
    li r2, 0
    atadd r3, r2, r0, laps
    exit
"""


def test_pause_mid_split_run_finishes_it_and_the_relaunch_runs_it_again():
    program = asm.assemble_program(SPIN)
    laps = 4096 * 20000
    with resident(slots=256) as gpu:
        handle = gpu.register_program(program)
        before = split_counts(gpu)
        running = [gpu.submit(handle, b"") for _ in range(4)]
        time.sleep(0.02)  # claimed by now, their pieces spread over blocks (a run takes ~10-100 ms)
        gpu.pause(timeout=60)
        assert "paused" in gpu.device.health()
        deadline = time.monotonic() + 10
        while not any(future.done() for future in running) and time.monotonic() < deadline:
            time.sleep(0.01)  # a claimed run completed before the device exited: the host reaps it
        assert any(future.done() for future in running), "no run was in flight at the pause"
        held = gpu.submit(handle, b"")  # published while paused: served after the relaunch
        gpu.relaunch(timeout=SHUTDOWN_S)
        for future in [*running, held]:  # the rest (published, unclaimed at the pause) ran after the relaunch
            outcome = future.result(60)
            assert outcome.fault is None and outcome.outputs["laps"].tolist() == [laps]
        again = gpu.submit(handle, b"").result(60)
        assert again.outputs["laps"].tolist() == [laps] and again.instructions == 4096 * (1 + 3 * 20000 + 3)
        assert_split(before, split_counts(gpu))


def test_jit_programs_split_over_blocks_match_the_cpu_backend(cpu):
    programs = [
        asm.assemble_program(path.read_text(), source_name=path.name) for path in sorted(EXAMPLES.glob("*.vasm"))
    ]
    data = text_with_needles(9, 300_000, NEEDLES)
    references = [cpu.submit(cpu.register_program(p), data, lanes=4096).result(300) for p in programs]
    gpu = Megakernel(backend="cuda", slots=256, jit="request")
    try:
        handles = [gpu.register_program(program) for program in programs]
        gpu.jit(*handles)
        before = split_counts(gpu)
        for program, handle, reference in zip(programs, handles, references):
            mine = gpu.submit(handle, data, lanes=4096).result(60)
            assert mine.path == "jit", program.name
            same(mine, reference, f"{program.name} JIT")
        assert_split(before, split_counts(gpu), helped=False)
    finally:
        gpu.shutdown(timeout=SHUTDOWN_S)
