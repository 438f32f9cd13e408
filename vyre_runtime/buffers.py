"""Data regions that live where the device computes: `DeviceBuffer`, its slices, and foreign
device arrays.

    with Megakernel() as mk:
        buffer = mk.device_buffer(256 << 20)      # device memory on CUDA, host memory on the CPU
        buffer.upload(data)
        run = mk.submit(handle, buffer.slice(0, 1 << 20)).result(10)   # read in place, no staging

A run over a `DeviceBuffer` (or a `BufferSlice` of one) reads the buffer where it lies: on the
CUDA backend the kernel reads device memory directly (no copy into mapped staging, nothing over
PCIe); on the CPU backend the buffer is a NumPy uint8 array the interpreter reads in place. Code
written against this interface runs on either backend unchanged.

On CUDA, ``submit`` also takes any object exposing ``__cuda_array_interface__`` (a CuPy array, a
PyTorch CUDA tensor): C-contiguous memory of any dtype, read as its raw bytes (`foreign_region`).

Lifetime: a buffer belongs to the Megakernel that made it and is usable until ``free()`` or that
Megakernel's shutdown, whichever comes first. ``free()`` never frees device memory while the
resident kernel runs (cuMemFree waits for every kernel of the context, the resident one
included, which never ends): the memory goes back to the Megakernel's pool, is reused by later
``device_buffer`` calls of a fitting size, and is returned to CUDA at shutdown. A buffer freed
while runs that read it are in flight stays reserved until the last of them completes.

Ordering: ``upload`` returns once the bytes are on the device; the caller must not overwrite (or
free) memory that a run still in flight is reading (wait for its future first). A foreign array's
producer stream (``__cuda_array_interface__`` v3 ``stream``) is waited on, bounded, before the run.

compute-sanitizer: buffers are allocated while the resident kernel runs, and memcheck judges the
kernel's accesses against the allocations of its launch time, so it may report reads of a
DeviceBuffer as out of bounds (the same reason the device pool for code exists, cuda/device.py).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from vyre_runtime.errors import DispatchError

CUDA_ARRAY_INTERFACE = "__cuda_array_interface__"


def as_bytes(data: Any) -> np.ndarray:
    """A C-contiguous bytes-like object or NumPy array as a flat uint8 view (no copy)."""
    if isinstance(data, np.ndarray):
        if not data.flags.c_contiguous:
            raise DispatchError(
                "an array to upload must be C-contiguous", "pass np.ascontiguousarray(array) or a bytes copy"
            )
        return data.reshape(-1).view(np.uint8)
    try:
        view = memoryview(data)
    except TypeError:
        raise DispatchError(
            f"cannot upload a {type(data).__name__}", "pass bytes, a bytearray, a memoryview or a NumPy array"
        ) from None
    if not view.c_contiguous:
        raise DispatchError("a buffer to upload must be C-contiguous", "pass a contiguous copy (bytes(view))")
    return np.frombuffer(view.cast("B"), dtype=np.uint8)


def _is_integer(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_range(what: str, offset: int, length: int, size: int) -> None:
    if not (_is_integer(offset) and _is_integer(length)) or offset < 0 or length < 0 or offset + length > size:
        raise DispatchError(
            f"{what} [{offset}, {offset}+{length}) does not lie inside the {size}-byte buffer",
            "pass 0 <= offset and offset + length <= buffer.nbytes",
        )


class DeviceBuffer:
    """Memory a run reads in place. Made by ``Megakernel.device_buffer(nbytes)``; see the module
    docstring for its lifetime. Subclasses provide `_pointer`, `_write`, `_read` and `_release`."""

    backend = ""  # "cpu" or "cuda"

    def __init__(self, nbytes: int, owner: Any) -> None:
        self.nbytes = nbytes
        self.owner = owner  # the backend device it belongs to (a run on another device is refused)
        self._freed = False

    # ------------------------------------------------------------------ what subclasses provide

    def _pointer(self) -> int:
        raise NotImplementedError

    def _write(self, offset: int, source: np.ndarray) -> None:
        raise NotImplementedError

    def _read(self, offset: int, length: int) -> np.ndarray:
        raise NotImplementedError

    def _release(self) -> None:
        raise NotImplementedError

    def _closed_reason(self) -> str | None:
        """Why the buffer is unusable although never freed (its Megakernel shut down), else None."""
        return None

    # ------------------------------------------------------------------ the interface

    @property
    def freed(self) -> bool:
        return self._freed or self._closed_reason() is not None

    def check_usable(self) -> None:
        """DispatchError if the buffer was freed or its Megakernel shut down."""
        if self._freed:
            raise DispatchError("this device buffer was freed", "allocate a new one with Megakernel.device_buffer()")
        reason = self._closed_reason()
        if reason is not None:
            raise DispatchError(f"this device buffer is gone: {reason}", "allocate a new one on a running Megakernel")

    @property
    def device_pointer(self) -> int:
        """Where the device sees byte 0 (a device address on CUDA, a host address on the CPU)."""
        self.check_usable()
        return self._pointer()

    def __len__(self) -> int:
        return self.nbytes

    def slice(self, offset: int, length: int | None = None) -> BufferSlice:
        """A view of ``length`` bytes from ``offset`` (default: to the end); submit() takes it as a
        region. It shares the buffer's memory and lifetime."""
        length = self.nbytes - offset if length is None else length
        _check_range("slice", offset, length, self.nbytes)
        return BufferSlice(self, int(offset), int(length))

    def upload(self, data: Any, offset: int = 0) -> None:
        """Copy ``data`` (bytes-like or a C-contiguous array, any dtype as its bytes) to
        ``[offset, offset + len)``; returns when it is there (a bounded wait on CUDA)."""
        self.check_usable()
        source = as_bytes(data)
        _check_range("upload", offset, source.nbytes, self.nbytes)
        if source.nbytes:
            self._write(offset, source)

    def download(self, offset: int = 0, length: int | None = None) -> np.ndarray:
        """A fresh uint8 array with a copy of ``[offset, offset + length)`` (default: to the end)."""
        self.check_usable()
        length = self.nbytes - offset if length is None else length
        _check_range("download", offset, length, self.nbytes)
        if length == 0:
            return np.zeros(0, dtype=np.uint8)
        return self._read(offset, length)

    def free(self) -> None:
        """Give the memory back (to the Megakernel's pool on CUDA: see the module docstring).
        Idempotent; the buffer and its slices are unusable afterwards."""
        if not self._freed:
            self._freed = True
            if self._closed_reason() is None:
                self._release()

    def __enter__(self) -> DeviceBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.free()

    def __repr__(self) -> str:
        state = "freed" if self.freed else f"at {self._pointer():#x}"
        return f"<{type(self).__name__} {self.backend} {self.nbytes} bytes {state}>"


@dataclass(frozen=True)
class BufferSlice:
    """``length`` bytes of ``buffer`` from ``offset``: a region for submit(), no copy."""

    buffer: DeviceBuffer
    offset: int
    length: int

    @property
    def nbytes(self) -> int:
        return self.length

    @property
    def device_pointer(self) -> int:
        return self.buffer.device_pointer + self.offset

    def __len__(self) -> int:
        return self.length

    def slice(self, offset: int, length: int | None = None) -> BufferSlice:
        length = self.length - offset if length is None else length
        _check_range("slice", offset, length, self.length)
        return BufferSlice(self.buffer, self.offset + int(offset), int(length))

    def upload(self, data: Any, offset: int = 0) -> None:
        source = as_bytes(data)
        _check_range("upload", offset, source.nbytes, self.length)
        self.buffer.upload(source, self.offset + offset)

    def download(self, offset: int = 0, length: int | None = None) -> np.ndarray:
        length = self.length - offset if length is None else length
        _check_range("download", offset, length, self.length)
        return self.buffer.download(self.offset + offset, length)


class HostBuffer(DeviceBuffer):
    """The CPU backend's DeviceBuffer: a NumPy uint8 array the interpreter reads in place.

    Bytes-like where Python allows a class to be (``memoryview(buffer)`` on Python 3.12+), and
    always through ``buffer.array`` or ``np.asarray(buffer)``."""

    backend = "cpu"

    def __init__(self, nbytes: int, owner: Any) -> None:
        super().__init__(nbytes, owner)
        self._array: np.ndarray | None = np.zeros(nbytes, dtype=np.uint8)

    @property
    def array(self) -> np.ndarray:
        """The buffer's memory as a writable uint8 array (no copy)."""
        self.check_usable()
        return self._array  # type: ignore[return-value]  # not freed: check_usable

    def _pointer(self) -> int:
        return self.array.ctypes.data

    def _write(self, offset: int, source: np.ndarray) -> None:
        self.array[offset : offset + source.nbytes] = source

    def _read(self, offset: int, length: int) -> np.ndarray:
        return self.array[offset : offset + length].copy()

    def _release(self) -> None:
        self._array = None  # runs in flight hold a memoryview, which keeps the memory alive

    def host_view(self, offset: int, length: int) -> memoryview:
        return memoryview(self.array)[offset : offset + length]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self.array if dtype is None else self.array.astype(dtype)

    if sys.version_info >= (3, 12):

        def __buffer__(self, flags: int) -> memoryview:
            return memoryview(self.array)


@dataclass(frozen=True)
class DeviceRegion:
    """What submit() hands the CUDA backend for a region in device memory: where it is, how long,
    and what keeps it alive while the run is in flight."""

    device_pointer: int
    nbytes: int
    owner: Any  # a BufferSlice / DeviceBuffer, or the foreign array (kept referenced)
    buffer: DeviceBuffer | None = None  # set for our own buffers: ownership checks, in-flight holds
    offset: int = 0  # into ``buffer``
    stream: int | None = None  # a foreign array's producer stream (__cuda_array_interface__ v3)


def buffer_region(data: DeviceBuffer | BufferSlice) -> DeviceRegion:
    """The region of a whole buffer or a slice of one."""
    if isinstance(data, DeviceBuffer):
        buffer, offset, length = data, 0, data.nbytes
    else:
        buffer, offset, length = data.buffer, data.offset, data.length
    buffer.check_usable()
    return DeviceRegion(buffer._pointer() + offset, length, data, buffer, offset)


def foreign_region(array: Any) -> DeviceRegion:
    """The region of an object exposing ``__cuda_array_interface__``: its bytes, C-contiguous."""
    interface = getattr(array, CUDA_ARRAY_INTERFACE)
    name = type(array).__name__
    try:
        shape = tuple(int(n) for n in interface["shape"])
        itemsize = np.dtype(interface["typestr"]).itemsize
        pointer = int(interface["data"][0])
    except (KeyError, TypeError, ValueError, IndexError) as error:
        raise DispatchError(
            f"the {name}'s __cuda_array_interface__ is malformed ({error})",
            "pass a CuPy array or a PyTorch CUDA tensor, or a DeviceBuffer",
        ) from None
    if interface.get("mask") is not None:
        raise DispatchError(f"the {name} is a masked array", "pass the unmasked data")
    strides = interface.get("strides")
    if strides is not None:
        expected, step = [], itemsize
        for extent in reversed(shape):
            expected.append(step)
            step *= extent
        # a dimension of extent 1 may carry any stride and still be contiguous
        if any(extent > 1 and int(s) != e for extent, s, e in zip(shape, strides, reversed(expected))):
            raise DispatchError(
                f"the {name} (shape {shape}, strides {tuple(strides)}) is not C-contiguous; a region is one "
                "contiguous range of bytes",
                "pass a contiguous copy (cupy.ascontiguousarray(a), tensor.contiguous())",
            )
    nbytes = itemsize * int(np.prod(shape, dtype=np.int64))
    if nbytes and not pointer:
        raise DispatchError(f"the {name} has a null data pointer", "pass an allocated device array")
    stream = interface.get("stream") if int(interface.get("version", 0)) >= 3 else None
    return DeviceRegion(pointer, nbytes, array, None, 0, None if stream is None else int(stream))


def device_region_of(data: Any) -> DeviceRegion | None:
    """The DeviceRegion of a DeviceBuffer, a BufferSlice or a device array; None for host data."""
    if isinstance(data, (DeviceBuffer, BufferSlice)):
        return buffer_region(data)
    if isinstance(data, DeviceRegion):
        return data
    if hasattr(data, CUDA_ARRAY_INTERFACE) and not isinstance(data, (bytes, bytearray, memoryview, np.ndarray)):
        return foreign_region(data)
    return None


__all__ = [
    "BufferSlice",
    "DeviceBuffer",
    "DeviceRegion",
    "HostBuffer",
    "as_bytes",
    "buffer_region",
    "device_region_of",
    "foreign_region",
]
