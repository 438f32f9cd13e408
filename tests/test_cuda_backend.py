"""The CUDA backend end to end on a real GPU: the resident megakernel serves the same protocol as
the CPU backend and reproduces its results bit for bit (skipped cleanly without a usable GPU)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from cuda_resident import SHUTDOWN_S, resident
from differential import comparable, deterministic_case
from host_programs import counting_program, faulting_program, text_with_needles

from vyre_runtime.backends.selection import cuda_unavailable_reason
from vyre_runtime.errors import BackendError
from vyre_runtime.megakernel import Megakernel
from vyre_runtime.protocol.codec import SlotRequest, encode_packed
from vyre_runtime.protocol.layout import ControlWord, DeviceState, SlotFault
from vyre_runtime.protocol.opcodes import USER_OPCODE_BASE, BuiltinOpcode
from vyre_runtime.vir0 import asm, isa
from vyre_runtime.vir0.dfa import compile_patterns
from vyre_runtime.vir0.program import Binding, Instruction, Program

pytestmark = pytest.mark.gpu
_REASON = cuda_unavailable_reason()
if _REASON is not None:
    pytest.skip(f"no usable CUDA GPU: {_REASON}", allow_module_level=True)

Op = isa.Op
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NEEDLES = [b"vyre", b"error", b"warning", b"fatal", b"panic", b"\n", b"\n\n"]
DIFFERENTIAL_SEEDS = int(os.environ.get("VYRE_DIFFERENTIAL_SEEDS", "300"))  # longer soaks on a GPU machine


@pytest.fixture
def gpu():
    """A fresh Megakernel per test: a process holds one resident CUDA megakernel at a time."""
    with resident(slots=256, tenants=4) as megakernel:
        yield megakernel


@pytest.fixture(scope="module")
def cpu():
    with Megakernel(backend="cpu", slots=256, tenants=4, workers=2) as megakernel:
        yield megakernel


def test_the_megakernel_starts_serves_a_nop_and_stops_within_its_deadline():
    started = time.monotonic()
    megakernel = Megakernel(backend="cuda", slots=64)
    assert megakernel.backend == "cuda"
    assert int(megakernel.image[ControlWord.DEVICE_STATE]) == DeviceState.SERVING
    assert megakernel.device.health() is None and megakernel.device.grid >= 2
    assert megakernel.publish(BuiltinOpcode.NOP).result(10).ok
    megakernel.shutdown(timeout=SHUTDOWN_S)
    assert int(megakernel.image[ControlWord.DEVICE_STATE]) == DeviceState.EXITED
    assert megakernel.device.close_errors == []
    assert time.monotonic() - started < 60
    assert megakernel.observables().shape == (256,)  # the image stays readable after close


def test_a_second_cuda_megakernel_is_refused_while_one_is_resident_and_auto_takes_the_cpu(gpu):
    with pytest.raises(BackendError, match="already resident"):
        Megakernel(backend="cuda", slots=16)
    with Megakernel(backend="auto", slots=16) as fallback:
        assert fallback.backend == "cpu"
    assert gpu.publish(BuiltinOpcode.NOP).result(5).ok


def test_builtins_run_and_return_results(gpu):
    assert gpu.publish(BuiltinOpcode.STORE_U32, (5, 40)).result(5).ok
    assert gpu.publish(BuiltinOpcode.ATOMIC_ADD, (5, 2)).result(5).results[0] == 40
    assert gpu.publish(BuiltinOpcode.LOAD_U32, (5, 8)).result(5).results[0] == 42
    assert gpu.publish(BuiltinOpcode.COMPARE_SWAP, (5, 42, 7)).result(5).results[0] == 42
    assert gpu.publish(BuiltinOpcode.MEMCPY, (5, 6, 1)).result(5).ok
    assert gpu.observables()[5:9].tolist() == [7, 7, 0, 42]
    packed = encode_packed([(BuiltinOpcode.STORE_U32, (9, 1)), (BuiltinOpcode.ATOMIC_ADD, (9, 2))])
    assert gpu.publish(BuiltinOpcode.PACKED_SLOT, packed).result(5).results[0] == 1
    assert gpu.observables()[9] == 3
    out_of_range = gpu.publish(BuiltinOpcode.STORE_U32, (256, 1)).result(5)
    assert out_of_range.fault.code == SlotFault.BAD_ARGUMENT


def test_dfa_step_walks_a_dfa_registered_while_the_kernel_runs(gpu):
    dfa = gpu.register_dfa(compile_patterns([b"ab"]))
    data = b"xxabab"
    words = np.frombuffer(data.ljust(8, b"\0"), dtype="<u4").tolist()
    outcome = gpu.publish(BuiltinOpcode.DFA_STEP, (dfa, 0, len(data), *words)).result(5)
    assert outcome.ok and outcome.results[1] == 2


def test_batch_fence_counts_an_epoch_and_keeps_its_tag(gpu):
    before = gpu.stats().epoch
    futures = gpu.batch([SlotRequest(BuiltinOpcode.NOP)] * 10, tag=77)
    assert all(f.result(5).ok for f in futures)
    assert gpu.stats().epoch == before + 1 and int(gpu.image[ControlWord.LAST_FENCE_TAG]) == 77


def test_printf_records_reach_the_host_and_overflow_is_counted():
    with resident(slots=64, debug_records=4) as megakernel:
        futures = [megakernel.publish(BuiltinOpcode.PRINTF, (1, i, 0)) for i in range(6)]
        assert [f.result(5).results[0] for f in futures].count(1) == 4
        assert megakernel.stats().debug_dropped == 2
        assert len(megakernel.debug_records()) == 4


def test_load_miss_fills_observables_or_faults_with_io_error(gpu):
    gpu.register_resource(3, b"0123456789abcdef")
    outcome = gpu.publish(BuiltinOpcode.LOAD_MISS, (3, 4, 0, 8, 20)).result(10)
    assert outcome.ok and outcome.results[0] == 8
    assert gpu.observables()[20:22].tobytes() == b"456789ab"
    assert gpu.publish(BuiltinOpcode.LOAD_MISS, (4, 0, 0, 8, 20)).result(10).fault.code == SlotFault.IO_ERROR


def test_submit_runs_a_program_and_returns_outputs(gpu):
    handle = gpu.register_program(counting_program())
    result = gpu.submit(handle, b"x" * 100, lanes=5).result(10)
    assert result.ok and result.outputs["hits"].tolist() == [5] and result.outputs["bytes"].tolist() == [500]


def test_a_region_already_in_mapped_memory_is_read_in_place(gpu):
    from vyre_runtime.backends.cuda.driver import MappedMemory

    pinned = MappedMemory(1 << 16)
    try:
        pinned.array[:1000] = 7
        handle = gpu.register_program(counting_program())
        before = gpu.device.host_bytes_copied
        result = gpu.submit(handle, pinned.array[:1000], lanes=3).result(10)
        assert result.outputs["bytes"].tolist() == [3000] and gpu.device.host_bytes_copied == before
        assert gpu.submit(handle, bytes(1000), lanes=1).result(10).ok
        assert gpu.device.host_bytes_copied == before + 1000  # pageable bytes are copied once
    finally:  # its runs are done: no kernel reads it now (dropped registered, it would be kept for good)
        pinned.unregister()


def test_staging_memory_grows_while_the_kernel_runs(gpu):
    """A region larger than the arena's first block registers a new block mid-run."""
    handle = gpu.register_program(counting_program())
    blocks = len(gpu.device.arena.blocks)
    data = bytes(48 << 20)
    assert gpu.submit(handle, data, lanes=2).result(30).outputs["bytes"].tolist() == [2 * len(data) & 0xFFFFFFFF]
    assert len(gpu.device.arena.blocks) > blocks
    assert gpu.publish(BuiltinOpcode.NOP).result(5).ok


def test_global_buffers_show_the_devices_updates_live(gpu):
    program = Program(
        name="global_counter",
        registers=3,
        lanes=32,
        bindings=(Binding("total", 1, isa.Scope.GLOBAL, isa.Combine.NONE, 10),),
        code=(
            Instruction(Op.LI, d=0, imm=1),
            Instruction(Op.LI, d=1),
            Instruction(Op.ATADD, 2, 1, 0, 0),
            Instruction(Op.EXIT),
        ),
    )
    handle = gpu.register_program(program)
    for _ in range(3):
        assert gpu.submit(handle, b"").result(10).ok
    assert gpu.registry.programs[handle].global_buffers["total"].tolist() == [10 + 3 * 32]


@pytest.mark.parametrize(
    ("kind", "code"), [("oob", SlotFault.OOB_INPUT), ("fuel", SlotFault.FUEL_EXHAUSTED), ("trap", SlotFault.TRAP)]
)
def test_faulting_program_ends_its_slot_as_fault_and_later_slots_complete(gpu, kind, code):
    bad = gpu.register_program(faulting_program(kind))
    good = gpu.register_program(counting_program())
    faulted = gpu.submit(bad, b"abc", fuel=1000).result(30)
    assert faulted.fault is not None and faulted.fault.code == code and faulted.fault.lane == 0
    if kind == "trap":
        assert faulted.fault.detail == 1234
    later = [gpu.submit(good, b"abcd", lanes=3) for _ in range(20)]
    assert all(f.result(10).outputs["hits"].tolist() == [3] for f in later)
    assert gpu.device.health() is None


def test_unregistered_handles_fault_without_stopping_the_kernel(gpu):
    args = (999_999, 999_999, 999_999, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    assert gpu.publish(BuiltinOpcode.RUN_PROGRAM, args).result(5).fault.code == SlotFault.BAD_HANDLE
    assert gpu.publish(BuiltinOpcode.NOP).result(5).ok


def test_user_opcode_runs_its_bound_program(gpu):
    handle = gpu.register_program(counting_program())
    opcode = USER_OPCODE_BASE + 16 * 2 + 3  # tenant 2's window
    gpu.bind_opcode(opcode, handle, tenant=2)
    unbound = gpu.publish(opcode + 1, (), tenant=2).result(5)
    assert unbound.fault.code == SlotFault.BAD_OPCODE


def test_a_long_lived_run_never_shares_a_record_with_later_runs(gpu):
    """A paused tenant's run holds its context while more than a table's worth of later runs
    come and go (handles wrap around the table): every run keeps its own record."""
    handle = gpu.register_program(counting_program())
    gpu.set_tenant_enabled(1, False)
    held = gpu.submit(handle, b"held", lanes=2, tenant=1)
    try:
        capacity = gpu.device.capacities["context"]
        for start in range(0, capacity + 64, 128):
            batch = [gpu.submit(handle, b"x" * (i % 7), lanes=1) for i in range(start, start + 128)]
            assert [int(f.result(30).outputs["bytes"][0]) for f in batch] == [i % 7 for i in range(start, start + 128)]
    finally:
        gpu.set_tenant_enabled(1, True)
    assert held.result(10).outputs["bytes"].tolist() == [8]


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.vasm")), ids=lambda p: p.stem)
def test_every_example_matches_the_cpu_backend(gpu, cpu, path):
    program = asm.assemble_program(path.read_text(), source_name=str(path))
    on_gpu, on_cpu = gpu.register_program(program), cpu.register_program(program)
    for seed, size, lanes in ((1, 0, None), (2, 1, None), (3, 5000, None), (4, 70_001, 33), (5, 300_000, None)):
        data = text_with_needles(seed, size, NEEDLES)
        mine = gpu.submit(on_gpu, data, lanes=lanes).result(60)
        reference = cpu.submit(on_cpu, data, lanes=lanes).result(120)
        where = f"{path.stem}, seed {seed}, {size} bytes"
        assert mine.fault == reference.fault, where
        assert {k: v.tolist() for k, v in mine.outputs.items()} == {
            k: v.tolist() for k, v in reference.outputs.items()
        }, where
        assert sorted(map(tuple, mine.records.tolist())) == sorted(map(tuple, reference.records.tolist())), where
        assert mine.dropped == reference.dropped, where


def test_random_programs_match_the_cpu_backend_bit_for_bit():
    """tests/differential.py: programs whose results docs/VIR0.md fully determines."""
    with resident(slots=256) as gpu, Megakernel(backend="cpu", slots=256, workers=2) as cpu:
        for seed in range(DIFFERENTIAL_SEEDS):
            program, data, capacity = deterministic_case(seed)
            handles = [mk.register_program(program) for mk in (gpu, cpu)]
            futures = [mk.submit(h, data, emit_capacity=capacity) for mk, h in zip((gpu, cpu), handles)]
            mine, reference = (f.result(60) for f in futures)
            for mk, handle in zip((gpu, cpu), handles):  # a soak registers more programs than fit at once
                mk.unregister_program(handle)
            where = f"seed {seed}: {[i.mnemonic for i in program.code]}"
            assert comparable(mine) == comparable(reference), where


def test_shutdown_with_queued_work_does_not_hang():
    spin = Program(name="spin", registers=2, lanes=1024, code=(Instruction(Op.JMP, imm=0),))
    megakernel = Megakernel(backend="cuda", slots=256)
    handle = megakernel.register_program(spin)
    futures = [megakernel.submit(handle, b"", fuel=200_000) for _ in range(200)]
    started = time.monotonic()
    try:
        megakernel.shutdown(timeout=5)
    except BackendError as error:  # a kernel still busy past the deadline is reported, not waited on
        assert "still busy" in error.message
    assert time.monotonic() - started < 15
    for future in futures:
        assert future.done()


QUEUE_STRESS_S = float(os.environ.get("VYRE_QUEUE_STRESS_S", "20"))


def _counters(mk) -> tuple[int, int, int]:
    image = mk.image
    return int(image[ControlWord.CLAIM_COUNT]), int(image[ControlWord.DONE_COUNT]), int(image[ControlWord.FAULT_COUNT])


def test_bursts_then_trickles_run_every_slot_exactly_once():
    """Regression (bench/scan.py on an H100): after bursts of runs published while the tenant was
    paused, a trickle of single submissions let a worker take a work-queue position the
    dispatcher had not published yet (head passed tail): workers then ran stale queue entries of
    reaped slots, wrote FAULT BAD_HANDLE into free slots ("slot N is FAULT (holding unreaped
    results)") and never drained, so the kernel outlived its shutdown. Every publication must be
    claimed once and completed once, and nothing the host did not publish may ever complete."""
    program = asm.assemble_program((EXAMPLES / "xxh32_blocks.vasm").read_text())
    chunks, chunk = 64, 1 << 20
    data = np.random.default_rng(11).integers(0, 256, chunks * chunk, dtype=np.uint8)
    with resident(slots=4096) as mk:
        buffer = mk.device_buffer(len(data))
        buffer.upload(data)
        regions = [buffer.slice(i * chunk, chunk) for i in range(chunks)]
        handle = mk.register_program(program)
        expected = [None] * chunks
        published, rounds = 0, 0
        before = _counters(mk)
        deadline = time.monotonic() + QUEUE_STRESS_S
        while time.monotonic() < deadline or rounds < 4:
            futures = []
            mk.set_tenant_enabled(0, False)  # a burst: everything waits in the ring, then goes at once
            try:
                for i in range(1024):
                    futures.append((i % chunks, mk.submit(handle, regions[i % chunks], emit_capacity=257)))
            finally:
                mk.set_tenant_enabled(0, True)
            for i in range(128):  # then a trickle: one at a time, the queue mostly empty
                futures.append((i % chunks, mk.submit(handle, regions[i % chunks], emit_capacity=257)))
            for index, future in futures:
                result = future.result(60)
                assert result.ok, f"round {rounds}, chunk {index}: {result.fault}"
                records = sorted(map(tuple, result.records.tolist()))
                expected[index] = expected[index] or records
                assert records == expected[index] and len(records) == chunk // 4096, f"round {rounds}, chunk {index}"
            published += len(futures)
            rounds += 1
        assert mk.wait(timeout=30)
        settle = time.monotonic() + 2
        while (_counters(mk)[1] - before[1]) & 0xFFFFFFFF != published and time.monotonic() < settle:
            time.sleep(0.001)
        claims, done, faults = ((after - first) & 0xFFFFFFFF for after, first in zip(_counters(mk), before))
        assert (claims, done, faults) == (published, published, 0), f"after {rounds} rounds"
        stats = mk.stats()
        assert stats.published == stats.completed == published
        mk.unregister_program(handle)
        buffer.free()


def _big_output_program(words: int, faulting: bool, lanes: int = 300, spin: int = 0) -> Program:
    """Each lane stores its id and id + 1 at two words of its own (no two lanes write one word:
    VIR0 leaves the order of such stores open), lane 0 stores `words` into the last word, every
    lane counts with an atomic, and (``faulting``) lane 5 stores one word past the end: FAULT
    OOB_OUTPUT. ``spin``: each lane first counts to it (a run long enough for other blocks to
    take pieces of it, where its lanes are split)."""
    wait = f"    li r5, 0\nwait:\n    add r5, r5, 1\n    ltu r6, r5, {spin}\n    jnz r6, wait\n" if spin else ""
    source = f"""
.program big_outputs
.registers 8
.lanes {lanes}
.binding out {words} run concat init=0x5A5A5A5A
.binding hits 2 run sum init=3
{wait}    sreg r0, lane_id
    sreg r1, lane_count
    blen r2, out
    divu r3, r2, r1
    mul r3, r3, r0          ; lane * (words / lanes): at least 30 words apart
    sto r0, r3, out, 0
    add r4, r0, 1
    sto r4, r3, out, 1
    jnz r0, count
    sub r4, r2, 1
    sto r2, r4, out, 0      ; lane 0: the last word
count:
    li r5, 1
    li r6, 1
    atadd r7, r5, r6, hits
    eq r7, r0, {5 if faulting else 0xFFFF}
    jz r7, done
    sto r0, r2, out, 0      ; one past the end
done:
    exit
"""
    return asm.assemble_program(source)


# 9000 words: past the shared stage (device scratch); 65537: filter_compact's; 200000: past the
# per-block device scratch too (used in place, in host-mapped memory)
@pytest.mark.parametrize("words", [9000, 65537, 200_000])
@pytest.mark.parametrize("faulting", [False, True], ids=["ok", "oob"])
def test_run_outputs_past_the_shared_stage_match_the_cpu_backend(gpu, cpu, words, faulting):
    program = _big_output_program(words, faulting)
    on_gpu, on_cpu = gpu.register_program(program), cpu.register_program(program)
    mine = gpu.submit(on_gpu, b"abc").result(60)
    reference = cpu.submit(on_cpu, b"abc").result(60)
    assert comparable(mine) == comparable(reference)
    assert (reference.fault is not None) == faulting
