"""Choosing a backend: "auto" takes CUDA when a usable GPU exists, else the CPU, and says which.

A backend never changes silently mid-run: the choice is made once, when the Megakernel opens.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from vyre_runtime.backends.base import Device
from vyre_runtime.errors import BackendError
from vyre_runtime.protocol.codec import new_image
from vyre_runtime.protocol.layout import Layout
from vyre_runtime.registry import Registry

BACKENDS = ("auto", "cpu", "cuda")


def cuda_unavailable_reason() -> str | None:
    """Why the CUDA backend cannot be used here, or None if it can (cached: asked once a process)."""
    global _cuda_reason
    if _cuda_reason is _UNKNOWN:
        _cuda_reason = _probe_cuda()
    return _cuda_reason  # type: ignore[return-value]


_UNKNOWN = object()
_cuda_reason: object = _UNKNOWN


def _probe_cuda() -> str | None:
    try:
        from vyre_runtime.backends.cuda import driver
    except ImportError:
        return "the cuda-bindings package is not installed: install vyre-runtime[cuda]"
    try:
        info = driver.device_info(0)
    except BackendError as error:  # no driver library, no GPU, a driver too old
        return error.message
    if not info.can_map_host_memory:
        return f"{info.name} cannot map host memory, which the ring lives in"
    return None


def _cuda_kernel_resident() -> bool:
    """A process serves one resident CUDA megakernel at a time (see cuda/device.py)."""
    from vyre_runtime.backends.cuda.device import kernel_resident

    return kernel_resident()


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def open_backend(
    name: str,
    layout: Layout,
    registry: Registry,
    workers: int | None,
    on_complete: Callable[[], None],
) -> Device:
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}", f"choose one of {', '.join(BACKENDS)}")
    if name == "cuda":
        reason = cuda_unavailable_reason()
        if reason:
            raise BackendError(f"backend 'cuda' is not available: {reason}", "use backend='cpu' or 'auto'")
    if name == "auto":
        name = "cuda" if cuda_unavailable_reason() is None and not _cuda_kernel_resident() else "cpu"
    if name == "cuda":
        from vyre_runtime.backends.cuda.device import CudaDevice

        return CudaDevice(layout, registry, on_complete)
    if workers is not None and not 1 <= workers <= 256:
        raise BackendError(f"workers={workers}; allowed 1..256")
    from vyre_runtime.backends.cpu.device import CpuDevice

    return CpuDevice(new_image(layout), layout, registry, workers or default_workers(), on_complete)
