"""Thin helpers over the CUDA driver API (`cuda.bindings.driver`), close to the C names.

Every call's CUresult is checked (`check`): a failure raises BackendError naming the call, the
CUresult and what to do. Nothing here ever blocks without a deadline: a stream is waited on by
polling `cuStreamQuery` (`Stream.wait`), never by `cuStreamSynchronize`, and side work runs on
non-blocking streams, so nothing queues behind the resident kernel (DESIGN.md, invariants).

Host memory the kernel reads is *registered*, not allocated by CUDA: an anonymous mmap, pinned
and mapped with `cuMemHostRegister(DEVICEMAP | PORTABLE)`. The memory stays owned by Python (the
mmap object the NumPy views hold), so a view handed out (the image, a global buffer) stays valid
after the device is closed and unregisters its memory; with `cuMemHostAlloc` the same view would
point at freed memory after `cuMemFreeHost`.
"""

from __future__ import annotations

import ctypes
import functools
import mmap
import threading
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from cuda.bindings import driver as cu

from vyre_runtime import hostmem
from vyre_runtime.errors import BackendError

SUCCESS = cu.CUresult.CUDA_SUCCESS
NOT_READY = cu.CUresult.CUDA_ERROR_NOT_READY
NOT_FOUND = cu.CUresult.CUDA_ERROR_NOT_FOUND
POLL_FIRST_S = 20e-6  # stream polling starts here and backs off ...
POLL_MAX_S = 1e-3  # ... to this

# Errors after which the context is unusable until the process restarts.
STICKY = frozenset(
    {
        cu.CUresult.CUDA_ERROR_ILLEGAL_ADDRESS,
        cu.CUresult.CUDA_ERROR_LAUNCH_FAILED,
        cu.CUresult.CUDA_ERROR_HARDWARE_STACK_ERROR,
        cu.CUresult.CUDA_ERROR_ILLEGAL_INSTRUCTION,
        cu.CUresult.CUDA_ERROR_MISALIGNED_ADDRESS,
        cu.CUresult.CUDA_ERROR_INVALID_ADDRESS_SPACE,
        cu.CUresult.CUDA_ERROR_INVALID_PC,
        cu.CUresult.CUDA_ERROR_ASSERT,
        cu.CUresult.CUDA_ERROR_ECC_UNCORRECTABLE,
    }
)
_FIXES = {
    cu.CUresult.CUDA_ERROR_NO_DEVICE: "no CUDA GPU is visible: use backend='cpu' (check CUDA_VISIBLE_DEVICES)",
    cu.CUresult.CUDA_ERROR_SYSTEM_DRIVER_MISMATCH: "the NVIDIA kernel module and libcuda differ: reboot or reinstall",
    cu.CUresult.CUDA_ERROR_CALL_REQUIRES_NEWER_DRIVER: "update the NVIDIA driver to one that supports CUDA 13",
    cu.CUresult.CUDA_ERROR_OUT_OF_MEMORY: "free GPU or pinned host memory, or use a smaller ring (slots=...)",
    cu.CUresult.CUDA_ERROR_INVALID_IMAGE: "rebuild the kernel: `python -m vyre_runtime.backends.cuda.build`",
    cu.CUresult.CUDA_ERROR_NO_BINARY_FOR_GPU: "the cubin targets another GPU: build for this device's sm_XY",
    cu.CUresult.CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED: "this memory is already pinned; pass it as a region",
}


def error_name(result: Any) -> str:
    """`CUDA_ERROR_X (description)`; the description needs the driver, the name does not."""
    try:
        name = cu.CUresult(result).name
    except ValueError:
        return f"CUresult {int(result)}"
    try:
        status, text = cu.cuGetErrorString(result)
        if status == SUCCESS and text:
            return f"{name} ({text.decode(errors='replace')})"
    except Exception:  # no driver library: the enum name is all there is
        pass
    return name


def check(result: tuple, what: str) -> Any:
    """Unpack a cuda.bindings result tuple: raise BackendError unless it starts with CUDA_SUCCESS.

    Returns None, the one value, or the tuple of values after the status.
    """
    status, *values = result
    if status != SUCCESS:
        if status in STICKY:
            fix = "the GPU context is unusable after this error: restart the process (and report the bug)"
        else:
            fix = _FIXES.get(status, "run `vyre doctor`; it checks the driver, the GPU and the kernel build")
        raise BackendError(f"CUDA {what} failed: {error_name(status)}", fix)
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def address(handle: Any) -> int:
    """The integer value of a CUdeviceptr / pointer-like handle."""
    return int(handle)


# ---------------------------------------------------------------------- context and device


@dataclass(frozen=True)
class DeviceInfo:
    ordinal: int
    name: str
    sm_count: int
    compute_capability: tuple[int, int]
    can_map_host_memory: bool
    driver_version: int  # e.g. 13000 for CUDA 13.0
    total_memory: int  # bytes

    @property
    def arch(self) -> str:
        """The NVRTC target of this GPU, e.g. "sm_90"."""
        major, minor = self.compute_capability
        return f"sm_{major}{minor}"

    @property
    def driver_version_text(self) -> str:
        return f"{self.driver_version // 1000}.{self.driver_version % 1000 // 10}"


def init() -> None:
    """cuInit; a missing driver library becomes BackendError (cuda.bindings raises its own error)."""
    try:
        result = cu.cuInit(0)
    except Exception as error:  # cuda.pathfinder's DynamicLibNotFoundError and kin
        raise BackendError(
            f"the NVIDIA driver library (libcuda) cannot be loaded: {error}",
            "install the NVIDIA driver, or use backend='cpu'",
        ) from None
    check(result, "cuInit")


def device_info(ordinal: int = 0) -> DeviceInfo:
    init()
    count = check(cu.cuDeviceGetCount(), "cuDeviceGetCount")
    if ordinal >= count:
        raise BackendError(f"CUDA device {ordinal} does not exist ({count} visible)", "use backend='cpu'")
    device = check(cu.cuDeviceGet(ordinal), "cuDeviceGet")

    def attribute(which: cu.CUdevice_attribute) -> int:
        return int(check(cu.cuDeviceGetAttribute(which, device), f"cuDeviceGetAttribute({which.name})"))

    attributes = cu.CUdevice_attribute
    name = check(cu.cuDeviceGetName(256, device), "cuDeviceGetName")
    return DeviceInfo(
        ordinal=ordinal,
        name=name.split(b"\0", 1)[0].decode(errors="replace"),
        sm_count=attribute(attributes.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT),
        compute_capability=(
            attribute(attributes.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR),
            attribute(attributes.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR),
        ),
        can_map_host_memory=bool(attribute(attributes.CU_DEVICE_ATTRIBUTE_CAN_MAP_HOST_MEMORY)),
        driver_version=int(check(cu.cuDriverGetVersion(), "cuDriverGetVersion")),
        total_memory=int(check(cu.cuDeviceTotalMem(device), "cuDeviceTotalMem")),
    )


class Context:
    """The device's primary context, made current in whichever thread calls into CUDA.

    Host service threads and user threads both call the device (run_prepared, program_registered);
    `enter()` sets the context once per thread (a thread-local flag keeps it to one driver call).
    """

    def __init__(self, ordinal: int = 0) -> None:
        init()
        self.device = check(cu.cuDeviceGet(ordinal), "cuDeviceGet")
        self.handle = check(cu.cuDevicePrimaryCtxRetain(self.device), "cuDevicePrimaryCtxRetain")
        self._current = threading.local()
        self._released = False
        self.enter()

    def enter(self) -> None:
        if self._released:
            raise BackendError("this CUDA device is closed", "create a new Megakernel")
        if not getattr(self._current, "set", False):
            check(cu.cuCtxSetCurrent(self.handle), "cuCtxSetCurrent")
            self._current.set = True

    def release(self) -> None:
        if not self._released:
            self._released = True
            check(cu.cuDevicePrimaryCtxRelease(self.device), "cuDevicePrimaryCtxRelease")


# ---------------------------------------------------------------------- memory


# host pointer -> (bytes, where it was mapped) of every MappedMemory registered now: a failed
# registration names the ranges it overlaps (ALREADY_REGISTERED said nothing of whose they were)
_registered: dict[int, tuple[int, str]] = {}
# the arrays of MappedMemory dropped while still registered (a device that could not close: its
# kernel still ran). Freeing one would unmap a range CUDA still holds registered, and the next
# mapping at that address would fail with ALREADY_REGISTERED: they live as long as the process.
_kept_registered: list[np.ndarray] = []
_registered_lock = threading.Lock()


def _mapped_where() -> str:
    """Where a mapping is made (the innermost callers outside this module), for the errors."""
    frames = [f for f in traceback.extract_stack(limit=8)[:-2] if not f.filename.endswith("driver.py")]
    return " < ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(frames[-3:]))


def _overlapping(host_pointer: int, nbytes: int) -> str:
    with _registered_lock:
        hits = [
            f"{size} bytes at {start:#x} (mapped at {where})"
            for start, (size, where) in _registered.items()
            if start < host_pointer + nbytes and host_pointer < start + size
        ]
    return "; it overlaps " + ", ".join(hits) if hits else ""


class MappedMemory:
    """Page-aligned host memory, pinned and mapped into the device's address space.

    ``array`` is a uint8 view of all of it (Python owns the memory: see the module docstring);
    ``device_pointer`` is where the kernel sees byte 0.
    """

    def __init__(self, nbytes: int, huge_pages: bool = True) -> None:
        self.registered = False
        self.nbytes = max(mmap.PAGESIZE, -(-nbytes // mmap.PAGESIZE) * mmap.PAGESIZE)
        # zeroed, private; from 2 MiB on, on transparent huge pages (hostmem: faster to pin, and
        # the ingest arena's reads land in fewer, larger pages)
        self.array = hostmem.anonymous(self.nbytes, huge_pages)
        self.host_pointer = self.array.ctypes.data
        self.where = _mapped_where()
        flags = cu.CU_MEMHOSTREGISTER_DEVICEMAP | cu.CU_MEMHOSTREGISTER_PORTABLE
        status = cu.cuMemHostRegister(self.host_pointer, self.nbytes, flags)
        if status[0] != SUCCESS:
            overlap = _overlapping(self.host_pointer, self.nbytes)
            check(status, f"cuMemHostRegister({self.nbytes} bytes at {self.host_pointer:#x}){overlap}")
        self.registered = True
        with _registered_lock:
            _registered[self.host_pointer] = (self.nbytes, self.where)
        try:
            self.device_pointer = address(
                check(cu.cuMemHostGetDevicePointer(self.host_pointer, 0), "cuMemHostGetDevicePointer")
            )
        except BackendError:
            self.unregister()
            raise

    def view(self, dtype: np.dtype | str, count: int, offset: int = 0) -> np.ndarray:
        dtype = np.dtype(dtype)
        return self.array[offset : offset + count * dtype.itemsize].view(dtype)

    @functools.cached_property
    def byte_view(self) -> memoryview:
        """The whole memory as unsigned bytes on a memoryview, made once."""
        return memoryview(self.array).cast("B")

    def contains(self, host_pointer: int, nbytes: int) -> bool:
        return self.host_pointer <= host_pointer and host_pointer + nbytes <= self.host_pointer + self.nbytes

    def device_address(self, host_pointer: int) -> int:
        return self.device_pointer + (host_pointer - self.host_pointer)

    def unregister(self) -> None:
        """Unpin (only once the kernel can no longer touch it); the memory stays valid for Python.
        A refused unpin (other than "not registered") keeps the pages for the life of the process,
        as a dropped registered mapping does: CUDA may still hold the range. After a sticky error
        nothing CUDA does matters any more, and they are freed as usual."""
        if not self.registered:
            return
        status = cu.cuMemHostUnregister(self.host_pointer)[0]
        self.registered = False
        with _registered_lock:
            _registered.pop(self.host_pointer, None)
        if status not in (SUCCESS, cu.CUresult.CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED) and status not in STICKY:
            _kept_registered.append(self.array)
        check((status,), "cuMemHostUnregister")

    def __del__(self) -> None:
        if getattr(self, "registered", False):  # never unpinned: keep its pages mapped (see _kept_registered)
            _kept_registered.append(self.array)
            warnings.warn(
                f"pinned host memory ({self.nbytes} bytes, mapped at {self.where}) was dropped while still "
                "registered with CUDA: it is kept for the life of the process",
                ResourceWarning,
                stacklevel=2,
            )


class DeviceMemory:
    """A cuMemAlloc block of device memory."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = max(1, nbytes)
        self.pointer = address(check(cu.cuMemAlloc(self.nbytes), f"cuMemAlloc({self.nbytes} bytes)"))

    def free(self) -> None:
        if self.pointer:
            pointer, self.pointer = self.pointer, 0
            check(cu.cuMemFree(pointer), "cuMemFree")


def mapped_device_pointer(host_pointer: int, nbytes: int) -> int | None:
    """The device address of host memory someone pinned and mapped, or None for pageable memory."""
    if nbytes == 0:
        return None
    attribute = cu.CUpointer_attribute.CU_POINTER_ATTRIBUTE_DEVICE_POINTER
    first = cu.cuPointerGetAttribute(attribute, host_pointer)
    last = cu.cuPointerGetAttribute(attribute, host_pointer + nbytes - 1)
    if first[0] != SUCCESS or last[0] != SUCCESS:
        return None  # CUDA_ERROR_INVALID_VALUE: not memory CUDA knows; not sticky
    start = address(first[1])
    return start if address(last[1]) - start == nbytes - 1 else None


def pointer_range(pointer: int) -> tuple[int, int, int] | None:
    """(start, bytes, device ordinal) of the allocation holding ``pointer``, or None for memory
    CUDA does not know (not allocated, mapped or registered by a context of this process)."""
    attributes = cu.CUpointer_attribute
    values = []
    for attribute in (
        attributes.CU_POINTER_ATTRIBUTE_RANGE_START_ADDR,
        attributes.CU_POINTER_ATTRIBUTE_RANGE_SIZE,
        attributes.CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL,
    ):
        status, value = cu.cuPointerGetAttribute(attribute, pointer)
        if status != SUCCESS:
            return None  # CUDA_ERROR_INVALID_VALUE: not memory CUDA knows; not sticky
        values.append(int(value))
    return values[0], values[1], values[2]


# ---------------------------------------------------------------------- streams and copies


class Stream:
    """A non-blocking stream: it never waits for (or on) the legacy default stream."""

    def __init__(self) -> None:
        flags = cu.CUstream_flags.CU_STREAM_NON_BLOCKING
        self.handle = check(cu.cuStreamCreate(flags), "cuStreamCreate(NON_BLOCKING)")

    def query(self) -> bool:
        """True when all its work finished, False while some runs; raises on a (sticky) error."""
        (status,) = cu.cuStreamQuery(self.handle)
        if status == SUCCESS:
            return True
        if status == NOT_READY:
            return False
        check((status,), "cuStreamQuery")
        return False  # unreachable: check raised

    def status(self) -> Any:
        """The raw CUresult of cuStreamQuery (for health reports)."""
        return cu.cuStreamQuery(self.handle)[0]

    def wait(self, timeout: float, what: str) -> None:
        """Poll until the stream's work is done; BackendError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        pause = POLL_FIRST_S
        while not self.query():
            if time.monotonic() >= deadline:
                raise BackendError(
                    f"CUDA {what} did not finish within {timeout:.1f} s",
                    "the GPU may be wedged or saturated; check `nvidia-smi` and `vyre doctor`",
                )
            time.sleep(pause)
            pause = min(pause * 2, POLL_MAX_S)

    def destroy(self) -> None:
        if self.handle is not None:
            handle, self.handle = self.handle, None
            check(cu.cuStreamDestroy(handle), "cuStreamDestroy")  # returns at once; frees when idle


class ForeignStream(Stream):
    """A stream someone else created (a CUstream handle, or 1 / 2 for the legacy / per-thread
    default stream, as __cuda_array_interface__ names them): waited on, never destroyed."""

    def __init__(self, handle: int) -> None:
        self.handle = cu.CUstream(handle)

    def destroy(self) -> None:
        pass


def upload(stream: Stream, device_pointer: int, data: bytes | np.ndarray, timeout: float) -> None:
    """Copy host bytes to device memory on ``stream`` and wait for it (bounded)."""
    source = np.ascontiguousarray(np.frombuffer(data, dtype=np.uint8) if isinstance(data, bytes) else data)
    if source.nbytes == 0:
        return
    check(cu.cuMemcpyHtoDAsync(device_pointer, source, source.nbytes, stream.handle), "cuMemcpyHtoDAsync")
    stream.wait(timeout, f"upload of {source.nbytes} bytes")  # `source` stays alive until here


def download(stream: Stream, device_pointer: int, nbytes: int, timeout: float) -> bytes:
    """Copy device bytes to the host on ``stream`` and wait for it (bounded)."""
    target = np.zeros(nbytes, dtype=np.uint8)
    check(cu.cuMemcpyDtoHAsync(target, device_pointer, nbytes, stream.handle), "cuMemcpyDtoHAsync")
    stream.wait(timeout, f"download of {nbytes} bytes")
    return target.tobytes()


def download_array(stream: Stream, device_pointer: int, nbytes: int, timeout: float) -> np.ndarray:
    """Like `download`, into a fresh uint8 array (no bytes copy of large reads)."""
    target = np.empty(nbytes, dtype=np.uint8)
    if nbytes:
        check(cu.cuMemcpyDtoHAsync(target, device_pointer, nbytes, stream.handle), "cuMemcpyDtoHAsync")
        stream.wait(timeout, f"download of {nbytes} bytes")
    return target


# ---------------------------------------------------------------------- modules and launch


class Module:
    """A loaded cubin: functions, globals, occupancy."""

    def __init__(self, cubin: bytes) -> None:
        self.handle = check(cu.cuModuleLoadData(cubin), "cuModuleLoadData")

    def function(self, name: str) -> Any:
        return check(cu.cuModuleGetFunction(self.handle, name.encode()), f"cuModuleGetFunction({name})")

    def global_address(self, name: str) -> tuple[int, int]:
        """(device pointer, bytes) of a module-scope __device__ variable."""
        pointer, nbytes = check(cu.cuModuleGetGlobal(self.handle, name.encode()), f"cuModuleGetGlobal({name})")
        return address(pointer), int(nbytes)

    def read_u32(self, name: str, stream: Stream, timeout: float) -> int:
        pointer, nbytes = self.global_address(name)
        if nbytes != 4:
            raise BackendError(f"kernel global {name} is {nbytes} bytes, not a u32", "rebuild the kernel")
        return int.from_bytes(download(stream, pointer, 4, timeout), "little")

    def unload(self) -> None:
        if self.handle is not None:
            handle, self.handle = self.handle, None
            check(cu.cuModuleUnload(handle), "cuModuleUnload")


def max_active_blocks_per_sm(function: Any, block_threads: int, dynamic_shared_bytes: int = 0) -> int:
    return int(
        check(
            cu.cuOccupancyMaxActiveBlocksPerMultiprocessor(function, block_threads, dynamic_shared_bytes),
            "cuOccupancyMaxActiveBlocksPerMultiprocessor",
        )
    )


class StructArgument:
    """One kernel parameter passed by value: a NumPy record and the void*[1] that points at it.

    cuLaunchKernel copies the bytes at launch; both arrays are kept alive by this object anyway.
    """

    def __init__(self, record: np.ndarray) -> None:
        self.record = np.ascontiguousarray(record).copy()
        self.pointers = np.array([self.record.ctypes.data], dtype=np.uint64)  # void* kernelParams[1]


def launch(
    function: Any, grid: int, block: int, stream: Stream, argument: StructArgument, shared_bytes: int = 0
) -> None:
    check(
        cu.cuLaunchKernel(function, grid, 1, 1, block, 1, 1, shared_bytes, stream.handle, argument.pointers, 0),
        f"cuLaunchKernel(grid={grid}, block={block})",
    )


def host_pointer_of(data: Any) -> tuple[int, int]:
    """(address, bytes) of a C-contiguous bytes-like object, without copying it."""
    if type(data) is memoryview and data.c_contiguous and not data.readonly and data.nbytes:
        # a writable view (a stream's arena chunk, once per run): ctypes finds its address in
        # a fraction of NumPy's frombuffer + .ctypes.data
        return ctypes.addressof(ctypes.c_char.from_buffer(data)), data.nbytes
    array = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data.reshape(-1)
    return array.ctypes.data, array.nbytes


__all__ = [
    "Context",
    "DeviceInfo",
    "DeviceMemory",
    "ForeignStream",
    "MappedMemory",
    "Module",
    "Stream",
    "StructArgument",
    "check",
    "device_info",
    "download",
    "download_array",
    "error_name",
    "launch",
    "mapped_device_pointer",
    "max_active_blocks_per_sm",
    "pointer_range",
    "upload",
]
