"""Host memory for large regions (vyre_runtime.hostmem): zeroed, aligned, private, and advised
onto huge pages where it is large enough; small requests stay plain pages."""

from __future__ import annotations

import mmap

import numpy as np
import pytest

from vyre_runtime import hostmem


@pytest.mark.parametrize("nbytes", [0, 1, 4096, 12345, (2 << 20) - 1])
def test_small_regions_are_plain_page_aligned_zeroed_memory(nbytes: int) -> None:
    memory = hostmem.anonymous(nbytes)
    assert memory.dtype == np.uint8 and memory.nbytes == max(1, nbytes)
    assert memory.ctypes.data % mmap.PAGESIZE == 0 and not memory.any()
    memory[:] = 7  # writable


@pytest.mark.parametrize("nbytes", [2 << 20, (6 << 20) + 4096])
def test_large_regions_start_on_a_huge_page_boundary(nbytes: int) -> None:
    memory = hostmem.anonymous(nbytes)
    assert memory.nbytes == nbytes and memory.ctypes.data % hostmem.HUGE_PAGE == 0
    assert not memory.any()
    memory[-1] = 1
    assert memory[-1] == 1


def test_huge_pages_can_be_declined_and_the_memory_is_private() -> None:
    memory = hostmem.anonymous(4 << 20, huge_pages=False)
    assert memory.ctypes.data % mmap.PAGESIZE == 0 and memory.nbytes == 4 << 20
    address = memory.ctypes.data
    with open("/proc/self/maps") as maps:  # private ("p"), not shared shmem, whose THP ignores the advice
        for line in maps:
            start, end = (int(bound, 16) for bound in line.split()[0].split("-"))
            if start <= address < end:
                break
    assert line.split()[1].endswith("p")


def test_thp_mode_names_the_setting_and_huge_page_bytes_reads_smaps() -> None:
    mode = hostmem.thp_mode()
    assert mode in ("always", "madvise", "never") or mode.startswith("unknown")
    if mode in ("always", "madvise"):
        before = hostmem.anon_huge_page_bytes()
        memory = hostmem.anonymous(8 << 20)
        memory[:: mmap.PAGESIZE] = 1  # fault it in
        assert hostmem.anon_huge_page_bytes() >= before  # the kernel may still decline (fragmentation)
    assert hostmem.anon_huge_page_bytes() >= -1
