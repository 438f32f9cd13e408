"""MappedMemory.unregister's outcomes without a GPU (the driver call replaced): a refused unpin keeps
the pages (CUDA may still hold the range: freed, the next mmap there would be refused), "not
registered" and sticky errors do not, and every outcome leaves the ledger and the flag cleared."""

from __future__ import annotations

import numpy as np
import pytest

driver = pytest.importorskip("vyre_runtime.backends.cuda.driver")
from vyre_runtime.errors import BackendError  # noqa: E402

cu = driver.cu


def _pinned(nbytes: int = 8192) -> driver.MappedMemory:
    """A MappedMemory as a successful registration leaves it (no driver call made)."""
    memory = object.__new__(driver.MappedMemory)
    memory.nbytes, memory.array = nbytes, np.zeros(nbytes, dtype=np.uint8)
    memory.host_pointer = memory.device_pointer = memory.array.ctypes.data
    memory.where, memory.registered = "this test", True
    with driver._registered_lock:
        driver._registered[memory.host_pointer] = (nbytes, memory.where)
    return memory


@pytest.mark.parametrize(
    ("status", "kept"),
    [
        (cu.CUresult.CUDA_SUCCESS, False),
        (cu.CUresult.CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED, False),
        (cu.CUresult.CUDA_ERROR_INVALID_CONTEXT, True),
        (cu.CUresult.CUDA_ERROR_ILLEGAL_ADDRESS, False),  # sticky: CUDA is done for in this process
    ],
)
def test_unregister_keeps_the_pages_only_when_cuda_may_still_hold_them(monkeypatch, status, kept) -> None:
    calls = []
    monkeypatch.setattr(cu, "cuMemHostUnregister", lambda pointer: calls.append(pointer) or (status,))
    memory = _pinned()
    before = len(driver._kept_registered)
    if status == cu.CUresult.CUDA_SUCCESS:
        memory.unregister()
    else:
        with pytest.raises(BackendError, match="cuMemHostUnregister"):
            memory.unregister()
    assert calls == [memory.host_pointer]
    assert not memory.registered and memory.host_pointer not in driver._registered
    assert (len(driver._kept_registered) - before == 1) is kept
    if kept:
        assert driver._kept_registered[-1] is memory.array
    memory.unregister()  # once only: the second call does nothing
    assert calls == [memory.host_pointer]
