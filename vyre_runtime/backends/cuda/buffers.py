"""The CUDA backend's DeviceBuffer: device memory a run reads in place, recycled, never freed
while the resident kernel runs (vyre_runtime/buffers.py has the interface and the lifetime).

cuMemFree waits for every kernel of the context, the resident megakernel included, which never
ends: so `free()` hands the memory to this pool instead, and a later `device_buffer` of the same
size class takes it again. The device frees the pool's memory in close(), after the kernel has
exited (CudaDevice._release). A buffer freed while runs read it (`hold`) goes back to the pool
only when the last of them is released.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

from vyre_runtime.backends.cuda import driver
from vyre_runtime.backends.cuda.arena import size_class
from vyre_runtime.buffers import DeviceBuffer


class BufferPool:
    """Device memory for DeviceBuffers: a free list per size class (arena.size_class).

    ``allocate(nbytes)`` makes new device memory that the device frees at close;
    ``copy_in(pointer, array)`` / ``copy_out(pointer, nbytes)`` are the device's bounded copies on
    its non-blocking side stream; ``closed()`` says whether the device has shut down."""

    def __init__(
        self,
        owner: object,
        allocate: Callable[[int], driver.DeviceMemory],
        copy_in: Callable[[int, np.ndarray], None],
        copy_out: Callable[[int, int], np.ndarray],
        closed: Callable[[], bool],
    ) -> None:
        self.owner = owner
        self.allocate = allocate
        self.copy_in = copy_in
        self.copy_out = copy_out
        self.closed = closed
        self._free: dict[int, list[driver.DeviceMemory]] = {}
        self._lock = threading.Lock()
        self.allocated_bytes = 0  # device memory this pool ever took from CUDA
        self.reused = 0  # buffers served from the free list

    def take(self, nbytes: int) -> CudaBuffer:
        size = size_class(max(1, nbytes))
        with self._lock:
            free = self._free.get(size)
            memory = free.pop() if free else None
            if memory is not None:
                self.reused += 1
        if memory is None:
            memory = self.allocate(size)
            with self._lock:
                self.allocated_bytes += memory.nbytes
        return CudaBuffer(self, memory, nbytes)

    def give(self, memory: driver.DeviceMemory) -> None:
        with self._lock:
            self._free.setdefault(memory.nbytes, []).append(memory)

    @property
    def free_bytes(self) -> int:
        with self._lock:
            return sum(memory.nbytes for free in self._free.values() for memory in free)


class CudaBuffer(DeviceBuffer):
    """``nbytes`` of device memory (a block of the pool, possibly larger); see the module docstring."""

    backend = "cuda"

    def __init__(self, pool: BufferPool, memory: driver.DeviceMemory, nbytes: int) -> None:
        super().__init__(nbytes, pool.owner)
        self._pool = pool
        self._memory = memory
        self._holds = 0  # runs in flight that read this buffer
        self._given = False  # its memory went back to the pool (once)
        self._lock = threading.Lock()

    def _closed_reason(self) -> str | None:
        return "the Megakernel that made it has shut down" if self._pool.closed() else None

    def _pointer(self) -> int:
        return self._memory.pointer

    def _write(self, offset: int, source: np.ndarray) -> None:
        self._pool.copy_in(self._memory.pointer + offset, source)

    def _read(self, offset: int, length: int) -> np.ndarray:
        return self._pool.copy_out(self._memory.pointer + offset, length)

    def _release(self) -> None:
        self._recycle_if_idle()

    def hold(self) -> None:
        """A run that reads this buffer is staged: keep the memory out of the pool until `unhold`."""
        with self._lock:
            self.check_usable()
            self._holds += 1

    def unhold(self) -> None:
        with self._lock:
            self._holds -= 1
        self._recycle_if_idle()

    def _recycle_if_idle(self) -> None:
        """Freed, no run reading it, not yet given back, the device still open: back to the pool."""
        with self._lock:
            recycle = self._freed and self._holds == 0 and not self._given and not self._pool.closed()
            self._given = self._given or recycle
        if recycle:
            self._pool.give(self._memory)

    @property
    def runs_in_flight(self) -> int:
        return self._holds


__all__ = ["BufferPool", "CudaBuffer"]
