"""Device buffers: regions a run reads where they lie (vyre_runtime/buffers.py).

CPU tests run everywhere: the CPU backend's buffer semantics, submit over a buffer or a slice
equals submit over the same bytes, every bad range is refused, foreign device arrays are parsed
and refused on the CPU, the CUDA buffer pool recycles memory only when no run reads it, and the
hand-written kernels of bench/scan.py compile with NVRTC. GPU tests (marker `gpu`) run the
examples over a DeviceBuffer on the resident megakernel and compare with the CPU backend bit for
bit; a CuPy / PyTorch test runs where those are importable.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from cuda_resident import resident
from host_programs import counting_program, faulting_program, text_with_needles

from vyre_runtime.backends.selection import cuda_unavailable_reason
from vyre_runtime.buffers import BufferSlice, DeviceBuffer, HostBuffer, device_region_of, foreign_region
from vyre_runtime.chunking import plan_chunks
from vyre_runtime.errors import BackendError, DispatchError
from vyre_runtime.megakernel import Megakernel
from vyre_runtime.protocol.layout import SlotFault
from vyre_runtime.vir0 import asm

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SCAN_KERNELS = ROOT / "bench" / "kernels" / "scan_kernels.cu"
NEEDLES = [b"vyre", b"error", b"warning", b"fatal", b"panic", b"\n"]
SCAN_EXAMPLES = ("line_count", "histogram", "literal_search", "fnv1a_blocks", "xxh32_blocks", "dfa_count")


def example(name: str):
    path = EXAMPLES / f"{name}.vasm"
    return asm.assemble_program(path.read_text(), source_name=str(path))


def text(seed: int, size: int) -> bytes:
    return text_with_needles(seed, size, NEEDLES)


def as_plain(result) -> tuple:
    """Everything a run returns, comparable with ==, records in a canonical order."""
    records = sorted(map(tuple, np.asarray(result.records).tolist()))
    return result.fault, {k: v.tolist() for k, v in result.outputs.items()}, records, result.dropped


@pytest.fixture
def mk():
    with Megakernel(backend="cpu", slots=64, workers=2) as megakernel:
        yield megakernel


class FakeDeviceArray:
    """An object with a __cuda_array_interface__, as CuPy and PyTorch expose it."""

    def __init__(self, shape, typestr="|u1", strides=None, pointer=0x7F0000000000, version=3, stream=None):
        self.__cuda_array_interface__ = {
            "shape": shape,
            "typestr": typestr,
            "data": (pointer, False),
            "strides": strides,
            "version": version,
            "stream": stream,
        }


# ---------------------------------------------------------------------- the CPU backend's buffers


def test_a_cpu_device_buffer_is_a_zeroed_numpy_array_read_in_place(mk):
    buffer = mk.device_buffer(1000)
    assert isinstance(buffer, HostBuffer) and isinstance(buffer, DeviceBuffer)
    assert buffer.backend == "cpu" and buffer.nbytes == len(buffer) == 1000 and buffer.owner is mk.device
    assert buffer.array.dtype == np.uint8 and not buffer.array.any()
    assert np.asarray(buffer) is buffer.array and buffer.device_pointer == buffer.array.ctypes.data
    assert isinstance(buffer.slice(0, 4), BufferSlice) and buffer.slice(0, 4).device_pointer == buffer.device_pointer
    buffer.array[:3] = [1, 2, 3]
    assert buffer.download(0, 4).tolist() == [1, 2, 3, 0]


def test_upload_and_download_copy_bytes_at_an_offset(mk):
    buffer = mk.device_buffer(64)
    buffer.upload(b"hello", 10)
    buffer.upload(np.array([0x04030201], dtype="<u4"), 20)  # any dtype uploads as its bytes
    assert bytes(buffer.download(10, 5)) == b"hello"
    assert buffer.download(20, 4).tolist() == [1, 2, 3, 4]
    downloaded = buffer.download()
    downloaded[:] = 0  # a copy: the buffer keeps its bytes
    assert bytes(buffer.download(10, 5)) == b"hello" and len(downloaded) == 64
    view = buffer.slice(8, 16)
    view.upload(b"xy")
    assert bytes(view.download(0, 7)) == b"xyhello" and bytes(buffer.download(8, 2)) == b"xy"


@pytest.mark.skipif(sys.version_info < (3, 12), reason="a Python class exports the buffer protocol from 3.12")
def test_a_cpu_device_buffer_is_bytes_like_where_python_allows_it(mk):
    buffer = mk.device_buffer(4)
    buffer.upload(b"abcd")
    assert bytes(memoryview(buffer)) == b"abcd"


@pytest.mark.parametrize("name", SCAN_EXAMPLES)
def test_submit_over_a_buffer_or_a_slice_equals_submit_over_the_same_bytes(mk, name):
    program = example(name)
    handle = mk.register_program(program)
    data = text(11, 50_000)
    buffer = mk.device_buffer(len(data) + 300)
    buffer.upload(data, 100)
    region = buffer.slice(100, len(data))
    for plan in plan_chunks(len(data), 12_288, program.overlap):  # chunks with overlap, as `vyre run` cuts them
        options = {"own_lo": plan.own_lo, "own_hi": plan.own_hi, "file_offset": plan.region_start}
        expected = mk.submit(handle, data[plan.region_start : plan.region_end], **options).result(30)
        got = mk.submit(handle, region.slice(plan.region_start, plan.region_length), **options).result(30)
        assert as_plain(got) == as_plain(expected), f"{name}, chunk {plan.index}"
    whole = mk.device_buffer(len(data))
    whole.upload(data)
    assert as_plain(mk.submit(handle, whole).result(30)) == as_plain(mk.submit(handle, data).result(30))


@pytest.mark.parametrize(
    ("offset", "length"), [(-1, 4), (0, 65), (60, 5), (64, 1), (1, -1), (0.5, 2)], ids=lambda v: repr(v)
)
def test_a_slice_outside_the_buffer_is_refused(mk, offset, length):
    buffer = mk.device_buffer(64)
    with pytest.raises(DispatchError, match="inside the 64-byte buffer"):
        buffer.slice(offset, length)


def test_ranges_past_a_slice_or_a_buffer_are_refused(mk):
    buffer = mk.device_buffer(64)
    view = buffer.slice(16, 16)
    assert view.slice(8).length == 8 and buffer.slice(64).length == 0 and buffer.slice(0).length == 64
    for call in (
        lambda: view.slice(10, 7),
        lambda: view.upload(bytes(17)),
        lambda: view.download(15, 2),
        lambda: buffer.upload(bytes(10), 60),
        lambda: buffer.download(0, 65),
    ):
        with pytest.raises(DispatchError):
            call()
    with pytest.raises(DispatchError, match="C-contiguous"):
        buffer.upload(np.arange(8, dtype=np.uint8)[::2])
    with pytest.raises(DispatchError, match="cannot upload"):
        buffer.upload(12345)


def test_own_range_beyond_a_slice_is_refused_like_beyond_bytes(mk):
    handle = mk.register_program(counting_program())
    buffer = mk.device_buffer(100)
    with pytest.raises(DispatchError, match="own range"):
        mk.submit(handle, buffer.slice(0, 10), own_hi=11)


def test_an_empty_slice_runs_over_zero_bytes(mk):
    handle = mk.register_program(counting_program())
    buffer = mk.device_buffer(8)
    assert mk.submit(handle, buffer.slice(8, 0), lanes=2).result(10).outputs["bytes"].tolist() == [0]


def test_a_program_reading_past_its_slice_faults_and_never_sees_the_rest_of_the_buffer(mk):
    bad = mk.register_program(faulting_program("oob"))
    buffer = mk.device_buffer(1 << 20)
    result = mk.submit(bad, buffer.slice(0, 16)).result(10)
    assert result.fault is not None and result.fault.code == SlotFault.OOB_INPUT


def test_device_buffer_sizes_must_be_positive_integers(mk):
    for size in (0, -5, 2.5, "16", True):
        with pytest.raises(DispatchError, match="positive number of bytes"):
            mk.device_buffer(size)


def test_a_freed_buffer_is_refused_and_free_is_idempotent(mk):
    handle = mk.register_program(counting_program())
    with mk.device_buffer(16) as buffer:
        view = buffer.slice(0, 8)
    assert buffer.freed
    buffer.free()
    for call in (
        lambda: mk.submit(handle, buffer),
        lambda: mk.submit(handle, view),
        lambda: buffer.upload(b"x"),
        lambda: buffer.download(),
        lambda: buffer.device_pointer,
        lambda: buffer.array,
    ):
        with pytest.raises(DispatchError, match="freed"):
            call()
    assert "freed" in repr(buffer)


def test_a_run_in_flight_keeps_reading_a_buffer_freed_under_it(mk):
    handle = mk.register_program(example("line_count"))
    buffer = mk.device_buffer(4000)
    buffer.upload(b"a\n" * 2000)
    mk.set_tenant_enabled(0, False)
    future = mk.submit(handle, buffer)
    buffer.free()
    mk.set_tenant_enabled(0, True)
    assert future.result(10).outputs["lines"].tolist() == [2000]


def test_a_buffer_of_another_megakernel_is_refused(mk):
    handle = mk.register_program(counting_program())
    with Megakernel(backend="cpu", slots=16, workers=1) as other:
        foreign = other.device_buffer(16)
        with pytest.raises(DispatchError, match="another Megakernel"):
            mk.submit(handle, foreign.slice(0, 8))


def test_device_buffer_after_shutdown_is_refused():
    megakernel = Megakernel(backend="cpu", slots=16, workers=1)
    megakernel.shutdown()
    with pytest.raises(BackendError, match="shut down"):
        megakernel.device_buffer(16)


# ---------------------------------------------------------------------- foreign device arrays


def test_a_cuda_array_interface_is_read_as_its_raw_bytes():
    region = foreign_region(FakeDeviceArray((3, 5), "<u4"))
    assert region.nbytes == 60 and region.device_pointer == 0x7F0000000000 and region.stream is None
    assert foreign_region(FakeDeviceArray((3, 5), "<u4", strides=(20, 4))).nbytes == 60  # explicit C strides
    assert foreign_region(FakeDeviceArray((1, 5), "<f8", strides=(999, 8))).nbytes == 40  # extent 1: any stride
    assert foreign_region(FakeDeviceArray((0,))).nbytes == 0
    assert foreign_region(FakeDeviceArray((4,), stream=1)).stream == 1  # v3: the producer's stream is waited on
    assert foreign_region(FakeDeviceArray((4,), version=2, stream=7)).stream is None


def test_a_non_contiguous_device_array_is_refused_with_a_fix():
    with pytest.raises(DispatchError, match="not C-contiguous") as caught:
        foreign_region(FakeDeviceArray((4, 4), "<u2", strides=(16, 4)))  # every other column
    assert "contiguous" in caught.value.fix
    with pytest.raises(DispatchError, match="not C-contiguous"):
        foreign_region(FakeDeviceArray((4, 4), "|u1", strides=(1, 4)))  # Fortran order


def test_a_malformed_cuda_array_interface_is_refused():
    broken = FakeDeviceArray((4,))
    del broken.__cuda_array_interface__["typestr"]
    with pytest.raises(DispatchError, match="malformed"):
        foreign_region(broken)
    with pytest.raises(DispatchError, match="null data pointer"):
        foreign_region(FakeDeviceArray((4,), pointer=0))


def test_host_data_is_not_a_device_region():
    for data in (b"abc", bytearray(3), memoryview(b"abc"), np.zeros(3, np.uint8)):
        assert device_region_of(data) is None


def test_the_cpu_backend_refuses_gpu_memory_with_a_fix(mk):
    handle = mk.register_program(counting_program())
    with pytest.raises(DispatchError, match="cannot read GPU memory") as caught:
        mk.submit(handle, FakeDeviceArray((16,)))
    assert "cupy.asnumpy" in caught.value.fix


# ---------------------------------------------------------------------- the CUDA buffer pool (no GPU)


class FakeMemory:
    def __init__(self, nbytes: int, pointer: int) -> None:
        self.nbytes, self.pointer = nbytes, pointer


@pytest.fixture
def pool():
    pytest.importorskip("cuda.bindings")
    from vyre_runtime.backends.cuda.buffers import BufferPool

    made: list[FakeMemory] = []
    copies: dict[int, bytes] = {}
    state = {"closed": False}

    def allocate(nbytes: int) -> FakeMemory:
        made.append(FakeMemory(nbytes, 0x1000_0000 * (len(made) + 1)))
        return made[-1]

    def copy_in(pointer: int, source: np.ndarray) -> None:
        copies[pointer] = source.tobytes()

    def copy_out(pointer: int, nbytes: int) -> np.ndarray:
        return np.frombuffer(copies.get(pointer, bytes(nbytes))[:nbytes], np.uint8).copy()

    pool = BufferPool("device", allocate, copy_in, copy_out, lambda: state["closed"])
    pool.made, pool.copies, pool.state = made, copies, state
    return pool


def test_a_freed_cuda_buffer_is_recycled_for_the_next_buffer_of_its_size_class(pool):
    first = pool.take(3 << 20)
    assert first.backend == "cuda" and first.owner == "device" and pool.made[0].nbytes == 3 << 20
    first.upload(b"abc", 5)
    assert pool.copies[first.device_pointer + 5] == b"abc"
    first.free()
    second = pool.take((3 << 20) - 100)  # same size class: the same memory, no new allocation
    assert second.device_pointer == pool.made[0].pointer and len(pool.made) == 1 and pool.reused == 1
    third = pool.take(1 << 20)
    assert len(pool.made) == 2 and third.device_pointer != second.device_pointer


def test_a_cuda_buffer_freed_while_runs_read_it_is_recycled_after_the_last_one(pool):
    buffer = pool.take(1 << 20)
    buffer.hold()
    buffer.hold()
    buffer.free()
    assert pool.free_bytes == 0 and buffer.runs_in_flight == 2
    buffer.unhold()
    assert pool.free_bytes == 0
    buffer.unhold()
    assert pool.free_bytes == 1 << 20
    buffer.free()
    assert pool.free_bytes == 1 << 20  # given back once
    with pytest.raises(DispatchError, match="freed"):
        buffer.hold()


def test_cuda_buffers_are_unusable_once_their_megakernel_has_shut_down(pool):
    buffer = pool.take(4096)
    pool.state["closed"] = True
    with pytest.raises(DispatchError, match="has shut down"):
        buffer.upload(b"x")
    buffer.free()  # nothing to give back: the device freed its memory
    assert pool.free_bytes == 0


# ---------------------------------------------------------------------- the CUDA device's regions (no GPU)


@pytest.fixture
def cuda_device(monkeypatch):
    """A CudaDevice with just what staging a region needs, and no GPU behind it."""
    pytest.importorskip("cuda.bindings")
    from vyre_runtime.backends.cuda import abi, driver
    from vyre_runtime.backends.cuda.device import CudaDevice
    from vyre_runtime.registry import Registry

    device = object.__new__(CudaDevice)
    device.registry = Registry()
    device._lock, device._upload_lock = threading.Lock(), threading.Lock()
    device._region_chunks, device._region_buffers, device._runs, device._device_memory = {}, {}, {}, []
    device._buffer_pool, device._closed, device.host_bytes_copied = None, False, 0
    device._fused_runs, device._table_words = {}, {}
    device.regions, device.contexts = np.zeros(64, abi.REGION), np.zeros(64, abi.CONTEXT)
    device.info = type("Info", (), {"ordinal": 0})()
    device.context = type("Context", (), {"enter": lambda self: None})()
    device._empty_region = FakeMemory(256, 0xE000)
    device._empty_region.device_pointer = 0xE000
    device._device_allocate = lambda nbytes: FakeMemory(nbytes, 0x5000_0000)
    device._copy_in = lambda pointer, source: None
    device._copy_out = lambda pointer, nbytes: np.zeros(nbytes, np.uint8)
    waited: list[int] = []

    class Stream:
        def __init__(self, handle: int) -> None:
            self.handle = handle

        def wait(self, timeout: float, what: str) -> None:
            waited.append(self.handle)

    monkeypatch.setattr(driver, "ForeignStream", Stream)
    device.waited = waited
    return device


def stage(device, data) -> tuple[int, np.ndarray]:
    """Stage ``data`` as a region the way submit() does; returns its handle and record."""
    region = device.registry.add_region(device_region_of(data))
    device._stage_region(region)
    return region, device.regions[region % len(device.regions)]


def test_a_device_buffer_slice_is_staged_as_its_device_address_without_a_copy(cuda_device):
    buffer = cuda_device.device_buffer(1 << 20)
    region, record = stage(cuda_device, buffer.slice(4096, 1000))
    assert record["handle"] == region and record["pointer"] == 0x5000_0000 + 4096 and record["length"] == 1000
    assert cuda_device.host_bytes_copied == 0 and buffer.runs_in_flight == 1
    buffer.free()  # a run reads it: not recycled yet
    assert cuda_device._buffer_pool.free_bytes == 0
    cuda_device.run_released(12345, region)
    assert buffer.runs_in_flight == 0 and cuda_device._buffer_pool.free_bytes == 1 << 20
    assert cuda_device.regions[region % 64]["handle"] == 0


def test_a_buffer_of_another_cuda_device_is_refused_when_staged(cuda_device, pool):
    with pytest.raises(DispatchError, match="another Megakernel"):
        stage(cuda_device, pool.take(4096))


def test_a_foreign_array_is_staged_after_checking_its_allocation_and_waiting_on_its_stream(cuda_device, monkeypatch):
    from vyre_runtime.backends.cuda import driver

    pointer = 0x7F0000000000
    allocation = {"range": (pointer - 256, 4096, 0)}
    monkeypatch.setattr(driver, "pointer_range", lambda p: allocation["range"])
    _, record = stage(cuda_device, FakeDeviceArray((1000,), "<u2", stream=1))
    assert record["pointer"] == pointer and record["length"] == 2000 and cuda_device.waited == [1]
    assert stage(cuda_device, FakeDeviceArray((0,)))[1]["pointer"] == 0xE000  # nothing to check or read
    for found, message in (
        (None, "not memory CUDA knows"),
        ((pointer, 4096, 1), "lives on GPU 1"),
        ((pointer, 100, 0), "runs past the end of its allocation"),
    ):
        allocation["range"] = found
        with pytest.raises(DispatchError, match=message):
            stage(cuda_device, FakeDeviceArray((1000,)))


# ---------------------------------------------------------------------- bench/scan.py without a GPU


def _nvrtc_reason() -> str | None:
    try:
        from vyre_runtime.backends.cuda import build

        build.nvrtc_version()
    except Exception as error:  # BackendError, or cuda-bindings missing altogether
        return str(error)
    return None


@pytest.mark.skipif(_nvrtc_reason() is not None, reason=f"NVRTC unavailable: {_nvrtc_reason()}")
def test_the_hand_written_scan_kernels_compile_with_nvrtc(tmp_path, monkeypatch):
    from vyre_runtime.backends.cuda import build

    monkeypatch.setenv(build.CACHE_ENV, str(tmp_path))
    result = build.compile_source(SCAN_KERNELS.read_text(), "sm_90", name=SCAN_KERNELS.name, use_cache=False)
    assert result.cubin.startswith(b"\x7fELF")
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from scan_reference import ALL_SCANS
    finally:
        sys.path.remove(str(ROOT / "bench"))
    for scan in ALL_SCANS:  # every kernel bench/scan.py and bench/jit.py launch is in the cubin
        assert scan.kernel.encode() + b"\0" in result.cubin, scan.kernel


def test_the_scan_bench_runs_and_verifies_on_the_cpu_backend(tmp_path):
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import scan
    finally:
        sys.path.remove(str(ROOT / "bench"))
    output = tmp_path / "scan.json"
    argv = ["--backend", "cpu", "--total-mib", "1", "--runs", "1", "--lanes", "64"]
    assert scan.main([*argv, "--programs", "line_count,literal_search,xxh32_blocks", "--output", str(output)]) == 0
    import json

    rows = json.loads(output.read_text())["rows"]
    assert set(rows) == {"line_count", "literal_search", "xxh32_blocks"}
    assert all(row["verified"] and row["interpreted_device_gb_s"] > 0 for row in rows.values())


# ---------------------------------------------------------------------- on a GPU

_CUDA_REASON = cuda_unavailable_reason()
ALLOCATE_DEADLINE_S = 20.0


def gpu_test(function):
    """The `gpu` marker, and a clean skip without a usable GPU."""
    function = pytest.mark.gpu(function)
    return pytest.mark.skipif(_CUDA_REASON is not None, reason=f"no usable CUDA GPU: {_CUDA_REASON}")(function)


def buffer_within_deadline(megakernel: Megakernel, nbytes: int) -> DeviceBuffer:
    """device_buffer, failing (not hanging) if cuMemAlloc were to wait for the resident kernel."""
    made: list = []
    failed: list = []

    def allocate() -> None:
        try:
            made.append(megakernel.device_buffer(nbytes))
        except BaseException as error:
            failed.append(error)

    worker = threading.Thread(target=allocate, daemon=True)
    worker.start()
    worker.join(ALLOCATE_DEADLINE_S)
    if failed:
        raise failed[0]
    assert made, f"device_buffer({nbytes}) did not return within {ALLOCATE_DEADLINE_S} s while the kernel runs"
    return made[0]


@pytest.fixture(scope="module")
def cpu():
    with Megakernel(backend="cpu", slots=256, workers=2) as megakernel:
        yield megakernel


@pytest.fixture
def gpu():
    """A fresh Megakernel per test: a process holds one resident CUDA megakernel at a time."""
    if _CUDA_REASON is not None:
        pytest.skip(f"no usable CUDA GPU: {_CUDA_REASON}")
    with resident(slots=512) as megakernel:
        yield megakernel


@gpu_test
@pytest.mark.parametrize("name", SCAN_EXAMPLES)
def test_examples_over_a_device_buffer_match_the_cpu_backend_bit_for_bit(gpu, cpu, name):
    program = example(name)
    data = text(5, 300_001)
    handle, reference = gpu.register_program(program), cpu.register_program(program)
    buffer = buffer_within_deadline(gpu, len(data) + 4096)
    buffer.upload(data, 4096)
    region = buffer.slice(4096, len(data))
    copied = gpu.device.host_bytes_copied
    plans = list(plan_chunks(len(data), 65_536, program.overlap))
    for lanes in (None, 33, 256):
        futures = []
        for plan in plans:
            options = {"own_lo": plan.own_lo, "own_hi": plan.own_hi, "file_offset": plan.region_start}
            options.update(lanes=lanes, chunk_index=plan.index)
            mine = gpu.submit(handle, region.slice(plan.region_start, plan.region_length), **options)
            theirs = cpu.submit(reference, data[plan.region_start : plan.region_end], **options)
            futures.append((plan, mine, theirs))
        for plan, mine, theirs in futures:
            assert as_plain(mine.result(60)) == as_plain(theirs.result(120)), (
                f"{name}, lanes {lanes}, chunk {plan.index}"
            )
    whole = gpu.submit(handle, region).result(60)
    assert as_plain(whole) == as_plain(cpu.submit(reference, data).result(120)), f"{name}, the whole region"
    assert gpu.device.host_bytes_copied == copied  # read in device memory: nothing was staged
    assert bytes(region.download()) == data
    buffer.free()


@gpu_test
def test_upload_and_download_round_trip_through_device_memory(gpu):
    data = np.random.default_rng(1).integers(0, 256, 3 << 20, dtype=np.uint8)
    buffer = buffer_within_deadline(gpu, len(data) + 100)
    assert buffer.backend == "cuda" and buffer.device_pointer % 256 == 0
    buffer.upload(data, 100)
    assert np.array_equal(buffer.download(100), data)
    assert np.array_equal(buffer.slice(1000, 77).download(), data[900:977])
    buffer.slice(50, 60).upload(b"x" * 60)
    assert bytes(buffer.download(50, 60)) == b"x" * 60 and buffer.download(110, 10).tolist() == data[10:20].tolist()
    buffer.free()


@gpu_test
def test_a_freed_gpu_buffer_is_recycled_only_after_the_runs_reading_it(gpu):
    handle = gpu.register_program(example("line_count"))
    size = 5 << 20  # a size class no other test uses
    buffer = buffer_within_deadline(gpu, size)
    buffer.upload(b"a\n" * (size // 2))
    pointer = buffer.device_pointer
    pool = gpu.device._buffer_pool
    free_before = pool.free_bytes
    gpu.set_tenant_enabled(0, False)
    try:
        future = gpu.submit(handle, buffer)
        buffer.free()
        assert pool.free_bytes == free_before  # a run still reads it
    finally:
        gpu.set_tenant_enabled(0, True)
    assert future.result(30).outputs["lines"].tolist() == [size // 2]
    assert pool.free_bytes == free_before + size
    again = buffer_within_deadline(gpu, size)
    assert again.device_pointer == pointer and pool.free_bytes == free_before
    again.free()


@gpu_test
def test_a_program_reading_past_its_device_slice_faults_and_the_kernel_keeps_serving(gpu):
    bad, good = gpu.register_program(faulting_program("oob")), gpu.register_program(counting_program())
    buffer = buffer_within_deadline(gpu, 1 << 20)
    result = gpu.submit(bad, buffer.slice(0, 16)).result(30)
    assert result.fault is not None and result.fault.code == SlotFault.OOB_INPUT
    assert gpu.submit(good, buffer.slice(0, 100), lanes=3).result(30).outputs["bytes"].tolist() == [300]
    assert gpu.device.health() is None
    buffer.free()


@gpu_test
def test_a_cpu_buffer_is_refused_by_a_gpu_megakernel(gpu, cpu):
    handle = gpu.register_program(counting_program())
    with pytest.raises(DispatchError, match="another Megakernel"):
        gpu.submit(handle, cpu.device_buffer(16))


@gpu_test
def test_gpu_buffers_are_unusable_once_their_megakernel_has_shut_down():
    with resident(slots=16) as megakernel:
        buffer = buffer_within_deadline(megakernel, 4096)
        buffer.upload(b"kept until shutdown")
    with pytest.raises(DispatchError, match="has shut down"):
        buffer.download()
    buffer.free()


def _device_arrays(module: str):
    """(contiguous uint8, contiguous uint32 of the same bytes, a non-contiguous view, host bytes),
    made before any megakernel starts: loading a library kernel waits for a resident one."""
    data = text(9, 200_000)
    words = np.frombuffer(data, dtype="<u4")
    if module == "cupy":
        cupy = pytest.importorskip("cupy")
        flat, wide = cupy.asarray(np.frombuffer(data, np.uint8)), cupy.asarray(words)
        strided = cupy.asarray(np.frombuffer(data, np.uint8).reshape(400, 500))[:, ::2]
    else:
        torch = pytest.importorskip("torch")
        if not torch.cuda.is_available():
            pytest.skip("torch has no CUDA device")
        flat = torch.frombuffer(bytearray(data), dtype=torch.uint8).to("cuda")
        wide = torch.from_numpy(words.view(np.int32).copy()).to("cuda")
        strided = flat.reshape(400, 500)[:, ::2]
    return flat, wide, strided, data


@gpu_test
@pytest.mark.parametrize("module", ["cupy", "torch"])
def test_a_cuda_array_interface_object_is_read_in_place(cpu, module):
    flat, wide, strided, data = _device_arrays(module)
    program = example("histogram")
    expected = as_plain(cpu.submit(cpu.register_program(program), data).result(60))
    with resident(slots=64) as megakernel:
        handle = megakernel.register_program(program)
        copied = megakernel.device.host_bytes_copied
        assert as_plain(megakernel.submit(handle, flat).result(60)) == expected
        assert as_plain(megakernel.submit(handle, wide).result(60)) == expected  # any dtype, as its bytes
        assert megakernel.device.host_bytes_copied == copied
        with pytest.raises(DispatchError, match="not C-contiguous"):
            megakernel.submit(handle, strided)
    del flat, wide, strided  # freed after the kernel has exited (freeing waits for kernels)
