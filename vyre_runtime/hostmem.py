"""Anonymous host memory for large regions (the ingest arena, mapped staging), optionally on
transparent huge pages.

Why huge pages: a 1.5 GiB arena is 393,216 pages of 4 KiB. Pinning it (cuMemHostRegister,
IORING_REGISTER_BUFFERS) walks every one, and a reader thread copying into it through its user
address (preadv) takes a TLB miss every 4 KiB. On 2 MiB pages both shrink 512-fold, and io_uring
(6.9+) coalesces a registered buffer of huge folios into a few large segments.

The mapping is private: a shared anonymous mapping (``mmap.mmap(-1, n)``'s default) is shmem, whose
huge pages follow ``shmem_enabled`` (usually "never"), not MADV_HUGEPAGE. With THP "madvise" (the
common default) the advice is what turns huge pages on; with "never" it is a no-op and the memory
is plain 4 KiB pages, which works the same, only slower to pin.
"""

from __future__ import annotations

import contextlib
import mmap
from pathlib import Path

import numpy as np

HUGE_PAGE = 2 << 20  # x86-64 and aarch64 (4 KiB granule) PMD size
THP_SETTING = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def anonymous(nbytes: int, huge_pages: bool = True) -> np.ndarray:
    """Zeroed, page-aligned private anonymous memory as a uint8 array of ``nbytes`` (at least 1).
    With ``huge_pages`` and at least one huge page of it: 2 MiB-aligned and advised MADV_HUGEPAGE.
    The array keeps the mapping alive (it is unmapped when the last view goes)."""
    size = max(1, nbytes)
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
    advice = getattr(mmap, "MADV_HUGEPAGE", None)  # Linux only
    if not huge_pages or advice is None or size < HUGE_PAGE:
        return np.frombuffer(mmap.mmap(-1, size, flags=flags), dtype=np.uint8)
    padded = -(-size // HUGE_PAGE) * HUGE_PAGE + HUGE_PAGE  # room to start on a 2 MiB boundary
    region = mmap.mmap(-1, padded, flags=flags)
    whole = np.frombuffer(region, dtype=np.uint8)
    skip = -whole.ctypes.data % HUGE_PAGE
    with contextlib.suppress(OSError):  # a kernel without THP: plain pages work the same
        region.madvise(advice, skip, padded - skip)
    return whole[skip : skip + size]


def thp_mode() -> str:
    """The system's THP setting ("always", "madvise", "never"), or why it is unknown."""
    try:
        text = THP_SETTING.read_text()
    except OSError as error:
        return f"unknown ({error.strerror})"
    chosen = [word.strip("[]") for word in text.split() if word.startswith("[")]
    return chosen[0] if chosen else text.strip()


def anon_huge_page_bytes() -> int:
    """How much of this process's anonymous memory lies on huge pages now (AnonHugePages of
    /proc/self/smaps_rollup), or -1 where unknown: for benchmarks and the doctor."""
    try:
        for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
            if line.startswith("AnonHugePages:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return -1
