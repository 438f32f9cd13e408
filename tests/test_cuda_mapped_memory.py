"""Pinned host memory (driver.MappedMemory) on a real GPU: a mapping dropped while still registered
keeps its pages (freeing them would leave CUDA a registered range at an address the next mmap
reuses: ALREADY_REGISTERED), and a refused registration names the mapping it overlaps."""

from __future__ import annotations

import gc
import warnings

import pytest

from vyre_runtime.backends.selection import cuda_unavailable_reason

pytestmark = pytest.mark.gpu
_REASON = cuda_unavailable_reason()
if _REASON is not None:
    pytest.skip(f"no usable CUDA GPU: {_REASON}", allow_module_level=True)


@pytest.fixture()
def driver():
    from vyre_runtime.backends.cuda import driver

    context = driver.Context(0)
    yield driver
    context.release()


def test_a_mapping_dropped_while_registered_is_kept_and_later_mappings_succeed(driver) -> None:
    kept_before = len(driver._kept_registered)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(8):  # the same size each time: a freed range would be the next one's address
            memory = driver.MappedMemory(36864)
            pointer = memory.host_pointer
            del memory
            gc.collect()
    kept = driver._kept_registered[kept_before:]
    assert len(kept) == 8
    assert {array.ctypes.data for array in kept} >= {pointer}
    assert sum("dropped while still registered" in str(w.message) for w in caught) == 8
    for array in kept:  # still mapped and writable: nothing was unmapped under CUDA's registration
        array[:] = 7
        assert int(array[-1]) == 7
    fresh = driver.MappedMemory(36864)
    fresh.unregister()


def test_an_unregistered_mapping_is_freed_without_a_warning(driver) -> None:
    kept_before = len(driver._kept_registered)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        memory = driver.MappedMemory(8192)
        memory.unregister()
        memory.unregister()  # twice is a no-op
        del memory
        gc.collect()
    assert len(driver._kept_registered) == kept_before
    assert all(start != 0 for start in driver._registered)


def test_a_refused_registration_names_the_mapping_it_overlaps(driver, monkeypatch) -> None:
    from vyre_runtime import hostmem
    from vyre_runtime.errors import BackendError

    first = driver.MappedMemory(4096)
    try:
        monkeypatch.setattr(hostmem, "anonymous", lambda nbytes, huge_pages=True: first.array)
        with pytest.raises(BackendError) as refused:
            driver.MappedMemory(4096)
        message = str(refused.value)
        assert "CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED" in message
        assert f"overlaps 4096 bytes at {first.host_pointer:#x}" in message
        assert "test_cuda_mapped_memory.py" in message  # where the first one was mapped
    finally:
        first.unregister()
