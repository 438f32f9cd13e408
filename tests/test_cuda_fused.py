"""Fused runs on a real GPU: every member's result equals the CPU backend's (the reference), over
pageable bytes, host-mapped memory (copied once into device staging) and device memory."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from fused_cases import comparable_members, fused_case, publish_fused_slot, run_fused, run_separately
from host_programs import counting_program, faulting_program, text_with_needles
from test_cuda_backend import resident

from vyre_runtime.backends.selection import cuda_unavailable_reason
from vyre_runtime.cli import load_program_file
from vyre_runtime.megakernel import Megakernel
from vyre_runtime.protocol.layout import SlotFault

pytestmark = pytest.mark.gpu
_REASON = cuda_unavailable_reason()
if _REASON is not None:
    pytest.skip(f"no usable CUDA GPU: {_REASON}", allow_module_level=True)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SEEDS = int(os.environ.get("VYRE_FUSED_SEEDS", "60"))
PLACE_BYTES = 1 << 16  # the largest fused_case region is smaller
MISALIGN = 3  # host-mapped regions start off a 16-byte boundary: the staging copy must keep offsets


class Placements:
    """Where a case's bytes lie on the GPU: one host-mapped and one device buffer, reused by the
    (sequential) runs of a test."""

    def __init__(self, megakernel: Megakernel) -> None:
        self.host = megakernel.host_memory(PLACE_BYTES + MISALIGN)
        self.device = megakernel.device_buffer(PLACE_BYTES)

    def host_mapped(self, megakernel: Megakernel, data: bytes) -> np.ndarray:
        view = self.host[MISALIGN : MISALIGN + len(data)]
        view[:] = np.frombuffer(data, dtype=np.uint8)
        return view

    def device_resident(self, megakernel: Megakernel, data: bytes) -> object:
        self.device.upload(data)
        return self.device.slice(0, len(data))


@pytest.fixture(scope="module")
def cpu():
    with Megakernel(backend="cpu", slots=64, workers=2) as megakernel:
        yield megakernel


def test_random_fused_groups_match_the_cpu_backend_member_for_member(cpu):
    with resident(slots=256) as gpu:
        places = Placements(gpu)
        for seed in range(SEEDS):
            case = fused_case(seed)
            reference = comparable_members(run_separately(cpu, case))
            assert comparable_members(run_fused(cpu, case)) == reference, f"cpu, seed {seed}"
            for name, place in (
                ("bytes", None),
                ("host-mapped", places.host_mapped),
                ("device", places.device_resident),
            ):
                fused = run_fused(gpu, case) if place is None else run_fused(gpu, case, place)
                assert comparable_members(fused) == reference, f"{name}, seed {seed}"


def test_example_programs_fused_over_a_large_host_mapped_region_match_the_cpu(cpu):
    programs = [load_program_file(str(EXAMPLES / name)) for name in ("histogram.vasm", "line_count.vasm")]
    programs.append(load_program_file(str(EXAMPLES / "literal_search.vasm")))
    data = text_with_needles(7, 3 << 20, [b"vyre", b"\n"])
    with resident(slots=64) as gpu:
        memory = gpu.host_memory(len(data) + 64)
        region = memory[5 : 5 + len(data)]
        region[:] = np.frombuffer(data, dtype=np.uint8)
        outcomes = {}
        for name, megakernel, place in (("gpu", gpu, region), ("cpu", cpu, data)):
            handles = [megakernel.register_program(program) for program in programs]
            group = megakernel.register_fused(handles)
            outcomes[name] = megakernel.submit(group, place, own_lo=100, own_hi=len(data) - 77).result(60)
        assert all(outcome.ok for outcome in outcomes["gpu"])
        assert comparable_members(outcomes["gpu"]) == comparable_members(outcomes["cpu"])


def test_faulting_members_and_malformed_slots_match_the_cpu(cpu):
    with resident(slots=64) as gpu:
        answers = {}
        for name, megakernel in (("gpu", gpu), ("cpu", cpu)):
            programs = (faulting_program("oob"), counting_program(), faulting_program("trap"))
            group = megakernel.register_fused([megakernel.register_program(p) for p in programs])
            members = megakernel.submit(group, b"some bytes").result(10)
            good, results = publish_fused_slot(megakernel, group, b"abcd")
            bad_context, unran = publish_fused_slot(megakernel, group, b"abcd", context=999_999)
            bad_lanes, _ = publish_fused_slot(megakernel, group, b"abcd", lanes_word=4)
            assert unran == [None, None, None]
            answers[name] = (
                comparable_members(members),
                good.results,
                [r.instructions for r in results],
                bad_context.fault,
                bad_lanes.fault,
            )
        assert answers["gpu"] == answers["cpu"]
        members, results, *_, bad_context, bad_lanes = answers["gpu"]
        assert results[:2] == (3, 0b101)
        assert (bad_context.code, bad_context.detail) == (SlotFault.BAD_HANDLE, 999_999)
        assert (bad_lanes.code, bad_lanes.detail) == (SlotFault.BAD_ARGUMENT, 4)


def test_many_large_staged_runs_copied_with_waiting_workers_help_match_in_place_runs_across_a_pause():
    # More fused runs at once than the kernel's help board has jobs (64), each several 256 KiB
    # pieces long, of lengths no piece size divides and off a 16-byte boundary: most are copied
    # by the owner and waiting workers together, some by the owner alone (board full). Half are
    # in flight when the kernel pauses: the pause drains them and the relaunch serves the rest.
    programs = [load_program_file(str(EXAMPLES / name)) for name in ("histogram.vasm", "line_count.vasm")]
    runs, base = 80, (1 << 20) + 4099
    sizes = [base + 4099 * k for k in range(runs)]
    alphabet = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz \n", dtype=np.uint8)
    data = alphabet[np.random.default_rng(11).integers(0, len(alphabet), sum(sizes))]
    with resident(slots=512) as gpu:
        memory = gpu.host_memory(sum(sizes) + 16 * runs)
        regions, at, taken = [], 0, 0
        for k, size in enumerate(sizes):
            at += k % 16  # each region starts at a different offset within 16 bytes
            memory[at : at + size] = data[taken : taken + size]
            regions.append(memory[at : at + size])
            at, taken = at + size, taken + size
        handles = [gpu.register_program(program) for program in programs]
        group = gpu.register_fused(handles)
        first = [gpu.submit(group, region) for region in regions[: runs // 2]]
        gpu.pause(timeout=60)
        gpu.relaunch(timeout=60)
        fused = first + [gpu.submit(group, region) for region in regions[runs // 2 :]]
        separate = [[gpu.submit(handle, region) for handle in handles] for region in regions]
        for k, (together, apart) in enumerate(zip(fused, separate)):
            members = together.result(120)
            assert all(member.ok for member in members), f"run {k}"
            assert comparable_members(members) == comparable_members([f.result(120) for f in apart]), f"run {k}"
