"""A CUDA Megakernel for one test: the GPU test files share it (a process holds one resident
kernel, so each test's kernel must be shut down, within a deadline, before the next starts)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from vyre_runtime.megakernel import Megakernel

# Under compute-sanitizer the kernel runs many times slower: give shutdown a longer deadline
# there, or one test's kernel stays resident and every later test is refused.
SHUTDOWN_S = float(os.environ.get("VYRE_GPU_SHUTDOWN_S", "10"))


@contextlib.contextmanager
def resident(**options) -> Iterator[Megakernel]:
    """A CUDA Megakernel shut down with SHUTDOWN_S (a process holds one resident kernel)."""
    megakernel = Megakernel(backend="cuda", **options)
    try:
        yield megakernel
    finally:
        megakernel.shutdown(timeout=SHUTDOWN_S)
