"""The CUDA device's run staging without a GPU: a released run's outputs, records and context
record are kept for the next run of its program (CudaDevice._spare_runs). Reused, they must not
show the earlier run's results; spares of one emit capacity per program are kept (runs with ever
new capacities would otherwise each keep theirs); unregistering the program returns them."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from vyre_runtime.registry import Registry
from vyre_runtime.vir0 import isa
from vyre_runtime.vir0.program import Binding, Instruction, Program

pytest.importorskip("cuda.bindings")
from vyre_runtime.backends.cuda import abi
from vyre_runtime.backends.cuda.device import CudaDevice

CAPACITY = 64  # records in each table


class FakeChunk:
    def __init__(self, nbytes: int, pointer: int) -> None:
        self.nbytes, self.device_pointer = nbytes, pointer
        self.memory = np.zeros(nbytes, dtype=np.uint8)

    def view(self, dtype: np.dtype | str, count: int) -> np.ndarray:
        return self.memory[: count * np.dtype(dtype).itemsize].view(dtype)

    def byte_view(self, count: int) -> memoryview:
        return memoryview(self.memory)[:count]


class FakeArena:
    def __init__(self) -> None:
        self.made: list[FakeChunk] = []
        self.released: list[FakeChunk] = []

    def allocate(self, nbytes: int) -> FakeChunk:
        self.made.append(FakeChunk(nbytes, 0x7000_0000 + 0x10_0000 * len(self.made)))
        return self.made[-1]

    def release(self, chunk: FakeChunk) -> None:
        self.released.append(chunk)


@pytest.fixture
def device():
    """A CudaDevice with what staging and reading a run needs, and no GPU behind it."""
    device = object.__new__(CudaDevice)
    device.registry = Registry()
    device._lock, device._jit_lock = threading.Lock(), threading.Lock()
    device._runs, device._fused_runs, device._spare_runs, device._live_programs = {}, {}, {}, set()
    device._table_words, device._global_pointers = {}, {}
    device.regions, device._region_chunks, device._region_buffers = np.zeros(CAPACITY, abi.REGION), {}, {}
    device.contexts, device.programs = np.zeros(CAPACITY, abi.CONTEXT), np.zeros(CAPACITY, abi.PROGRAM)
    device.context = type("Context", (), {"enter": lambda self: None})()
    device._upload_program = lambda index, field: None
    device.arena = FakeArena()
    return device


def register(device) -> int:
    program = Program(
        name="emitter",
        registers=2,
        lanes=4,
        bindings=(Binding("hits", 2, init=7),),
        emit_words=2,
        code=(Instruction(isa.Op.EXIT),),
    )
    handle = device.registry.add_program(program)
    device._live_programs.add(handle)  # (program_registered's last step)
    return handle


def stage(device, program: int, emit_capacity: int = 16, fuel: int | None = None) -> int:
    context = device.registry.add_context(fuel, emit_capacity)
    device._stage_context(program, context)
    return context


def run_on_the_device(device, context: int) -> None:
    """What the kernel writes while it runs ``context``: outputs, two records, the counters."""
    staged = device._runs[context]
    staged.outputs[0].view(np.uint32, 2)[:] = [100, 200]
    staged.records.view(np.uint32, 4)[:] = [1, 2, 3, 4]
    record = device.contexts[context % CAPACITY]
    record["emitted"], record["instructions"], record["lanes"], record["dropped"] = 2, 40, 4, 1


def release(device, context: int) -> None:
    device.run_released(context, 0)
    device.registry.release_run(context, 0)


def test_a_reused_run_staging_shows_nothing_of_the_run_before(device):
    program = register(device)
    first = stage(device, program, fuel=1000)
    run_on_the_device(device, first)
    result = device.run_result(program, first)
    assert result.outputs["hits"].tolist() == [100, 200] and result.records.tolist() == [[1, 2], [3, 4]]
    assert result.dropped == 1 and result.instructions == 40
    release(device, first)
    made = len(device.arena.made)
    second = stage(device, program, fuel=5)
    assert len(device.arena.made) == made and not device.arena.released  # the same staging, reused
    record = device.contexts[second % CAPACITY]
    assert record["handle"] == second and record["fuel"] == 5 and record["emit_capacity"] == 16
    assert record["emitted"] == record["instructions"] == record["dropped"] == record["lanes"] == 0
    assert record["fault_lane"] == abi.NO_FAULT_LANE
    assert device._runs[second].outputs[0].view(np.uint32, 2).tolist() == [7, 7]  # from the init word again
    assert device.run_result(program, second) is None  # nothing ran yet: no result of the first run
    assert device.contexts[first % CAPACITY]["handle"] == 0  # the released run's record names nothing


def test_spares_of_another_emit_capacity_go_back_to_the_arena(device):
    program = register(device)
    first = stage(device, program, emit_capacity=16)
    first_chunks = [*device._runs[first].outputs.values(), device._runs[first].records]
    release(device, first)
    second = stage(device, program, emit_capacity=32)  # a new capacity: fresh staging
    release(device, second)
    assert device.arena.released == first_chunks  # the capacity-16 spares went
    assert list(device._spare_runs) == [(program, 32)]


def test_unregistering_a_program_returns_its_spares_and_a_late_runs_staging(device):
    program = register(device)
    first, second = stage(device, program), stage(device, program)
    release(device, first)
    chunks = [*device._runs[second].outputs.values(), device._runs[second].records]
    device.program_unregistered(program)
    assert len(device.arena.released) == 2 and not device._spare_runs
    release(device, second)  # a run that finished as the program went: no spare of a dead program
    assert device.arena.released[2:] == chunks and not device._spare_runs


def test_a_run_region_record_holds_the_fields_a_structured_write_would(device):
    """_stage_region stores REGION records as words (_put_region): the same bytes as
    _write_record's field by field record, handle last; a bytes region is copied to staging."""
    device.regions = np.zeros(CAPACITY, abi.REGION)
    device._region_chunks, device._region_buffers, device.host_bytes_copied = {}, {}, 0
    device._empty_region = FakeChunk(1, 0x6000_0000)
    device.registry.index_capacity["region"] = CAPACITY
    expected = np.zeros(CAPACITY, abi.REGION)
    pointer, length = 0x12_3456_789A, (1 << 33) + 5
    handle = device.registry.add_region(memoryview(b"abc"))
    device._put_region(handle, pointer, length)
    device._write_record(expected, handle, "region", {"pointer": pointer, "length": length})
    assert device.regions.tobytes() == expected.tobytes()
    data = device.registry.add_region(memoryview(b"x" * 40).cast("B"))
    device._stage_region(data)
    record = device.regions[data % CAPACITY]
    chunk = device._region_chunks[data]
    assert record["handle"] == data and record["pointer"] == chunk.device_pointer and record["length"] == 40
    assert chunk.view(np.uint8, 40).tobytes() == b"x" * 40 and device.host_bytes_copied == 40
    for source in (memoryview(b"0123456789")[::2], memoryview(b"abcdefghijkl").cast("H", (2, 3))):  # strided; 2-D
        odd = device.registry.add_region(source)
        device._stage_region(odd)
        assert device._region_chunks[odd].view(np.uint8, source.nbytes).tobytes() == source.tobytes()
    empty = device.registry.add_region(memoryview(b""))
    device._stage_region(empty)
    assert device.regions[empty % CAPACITY]["pointer"] == 0x6000_0000 and empty not in device._region_chunks


def test_a_run_result_reads_each_counter_and_fault_field_from_its_own_word(device):
    """run_result reads a context record's first words by index (_CONTEXT_WORD): each field the
    kernel writes holds a distinct value, instructions needs its high word and path says JIT."""
    program = register(device)
    context = stage(device, program, fuel=1000)
    record = device.contexts[context % CAPACITY]
    assert record["fuel"] == 1000  # the fuel store went to fuel's word
    values = {"emitted": 1, "dropped": 3, "fault_lane": 2, "fault_code": int(isa.FaultCode.TRAP), "fault_pc": 11}
    values |= {"fault_detail": 13, "lanes": 4, "path": int(abi.RunPath.JIT), "instructions": (5 << 32) + 17}
    for name, value in values.items():
        record[name] = value
    result = device.run_result(program, context)
    assert result.records.shape == (1, 2) and result.dropped == 3 and result.lanes == 4
    assert result.instructions == (5 << 32) + 17 and result.path == "jit"
    fault = result.fault
    assert (fault.code, fault.pc, fault.lane, fault.detail) == (isa.FaultCode.TRAP, 11, 2, 13)


def test_a_released_fused_run_hands_everything_on_after_its_records_are_gone(device):
    """run_released clears a fused run's records (its own, each member's context, the region),
    then hands on under one lock hold: member staging to the spares, the copied region's chunk to
    the arena, the device staging block to the free blocks (taken again by the next run)."""
    from vyre_runtime.backends.cuda.device import PoolBlock
    from vyre_runtime.backends.cuda.free_blocks import FreeBlocks

    device.fused_runs = np.zeros(CAPACITY, abi.FUSED_RUN)
    device._staging_free, device.host_bytes_copied = FreeBlocks(), 0
    allocated: list[PoolBlock] = []
    device._device_allocate = lambda nbytes: allocated.append(PoolBlock(0x5000_0000, nbytes)) or allocated[-1]
    program = register(device)
    group = device.registry.fused[device.registry.add_fused((program,))]
    for _ in range(2):
        fused, region = device.registry.add_run([None], 16, memoryview(b"y" * 40).cast("B"), group, [0])
        device.run_prepared(group.handle, fused, region)
        (member,) = device.registry.fused_runs[fused].contexts
        record = device.fused_runs[fused % CAPACITY]
        assert record["handle"] == fused and record["staging"] == 0x5000_0000 and record["count"] == 1
        assert device.contexts[member % CAPACITY]["handle"] == member
        chunk = device._region_chunks[region]
        device.run_released(fused, region)
        device.registry.release_run(fused, region)
        assert device.fused_runs[fused % CAPACITY]["handle"] == 0 and device.contexts[member % CAPACITY]["handle"] == 0
        assert device.regions[region % CAPACITY]["handle"] == 0
        assert device.arena.released[-1] is chunk and not device._runs and not device._fused_runs
        assert list(device._spare_runs) == [(program, 16)] and device._staging_free.count_at_least(1) == 1
    assert len(allocated) == 1  # the second run took the first one's block again


def test_a_large_run_output_starts_from_its_init_word_without_a_process_wide_image(device):
    """RUN outputs start from a cached image of their initial bytes (_init_image); an output of
    up to MAX_BINDING_WORDS words (64 MiB) must not leave its image in the process-wide cache,
    which outlives every device (256 of them: 16 GiB), so a large one fills in place (review11)."""
    from vyre_runtime.backends.cuda import device as cuda_device

    words = 1 << 20  # 4 MiB
    program = Program(
        name="wide",
        registers=2,
        lanes=4,
        bindings=(Binding("small", 4, init=3), Binding("table", words, init=0xFFFFFFFF)),
        emit_words=0,
        code=(Instruction(isa.Op.EXIT),),
    )
    handle = device.registry.add_program(program)
    device._live_programs.add(handle)
    cuda_device._init_image.cache_clear()
    first = stage(device, handle)
    assert cuda_device._init_image.cache_info().currsize == 1  # the small output's image only
    device._runs[first].outputs[1].view(np.uint32, words)[:] = 5  # what the run wrote
    device._runs[first].outputs[0].view(np.uint32, 4)[:] = 5
    release(device, first)
    second = stage(device, handle)  # the spare staging, started afresh
    assert (device._runs[second].outputs[1].view(np.uint32, words) == 0xFFFFFFFF).all()
    assert device._runs[second].outputs[0].view(np.uint32, 4).tolist() == [3, 3, 3, 3]
