"""What a backend device offers the host API (Megakernel / HostService).

The ring in ``image`` is the whole work protocol (docs/PROTOCOL.md); these hooks only move the
host-side tables a slot's handles refer to (Registry) to where the device can read them, and
bring a run's results back.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np


class Device(Protocol):
    name: str  # "cpu" or "cuda"
    image: np.ndarray  # the shared protocol image, u32 words, in memory the device can reach
    internal_errors: dict[int, str]  # slot -> description of a backend failure on it (FAULT INTERNAL)

    def start(self) -> None:
        """Begin serving the ring (launch workers / the resident kernel)."""

    def ring_doorbell(self, slots: list[int], priorities: list[int]) -> None:
        """A hint that these slots were just published; never needed for correctness."""

    def stop(self, timeout: float) -> bool:
        """Set SHUTDOWN and wait up to ``timeout``; False if the device is still busy."""

    def pause(self, timeout: float) -> bool:
        """Set PAUSE and wait up to ``timeout`` for the device to exit with the ring resumable:
        claimed slots finished, the rest left PUBLISHED (docs/PROTOCOL.md, 6.5); False if busy."""

    def relaunch(self, cubin: Any = None) -> dict[int, str]:
        """Serve the same ring again after the device exited (never after SHUTDOWN); returns the
        slots it faulted INTERNAL because the old device left them claimed, with the reasons."""

    def close(self) -> None:
        """Release device resources after a successful stop."""

    def program_registered(self, handle: int) -> None:
        """Make registry.programs[handle] readable by the device (upload code and tables)."""

    def program_unregistered(self, handle: int) -> None:
        """The program is gone: the device must treat its handle as unknown (BAD_HANDLE)."""

    def fused_registered(self, handle: int) -> None:
        """Make registry.fused[handle] (a fused group's member list) readable by the device."""

    def fused_unregistered(self, handle: int) -> None:
        """The fused group is gone: the device must treat its handle as unknown (BAD_HANDLE)."""

    def dfa_registered(self, handle: int) -> None:
        """Make registry.dfas[handle] readable by the device."""

    def opcode_bound(self, opcode: int, program: int) -> None:
        """A user opcode now runs ``program``."""

    def run_prepared(self, program: int, context: int, region: int) -> None:
        """Before a RUN_PROGRAM slot is published: stage its context and data region (for a
        fused group, ``context`` is a registry.fused_runs handle: every member's context)."""

    def run_result(self, program: int, context: int) -> Any:
        """After the slot completed: the run's result (outputs, records, dropped, instructions), or
        None if the program never ran (the slot faulted on a bad handle or argument); for a
        fused run, a list of those, one per member in member order."""

    def run_released(self, context: int, region: int) -> None:
        """The host is done with this run: recycle its staging memory."""

    def host_memory(self, nbytes: int) -> np.ndarray:
        """Page-aligned host memory (uint8) that regions may lie in and the device reads in place
        (pinned and device-mapped on CUDA); it lives as long as the device."""
