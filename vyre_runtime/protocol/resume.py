"""Resuming a ring whose device stopped: what the host does, while no device runs, before it
launches a device again over the same image (docs/PROTOCOL.md, 6.5 "Pause and relaunch").

A device that paused gracefully leaves nothing to repair: every slot it claimed is DONE or
FAULT. A device that died (or exited without being asked) may leave slots CLAIMED or WAIT_IO and
IO entries half answered. Nothing will ever complete those, so the host completes them here, in
the device's place: it is the only writer while no device runs (PROTOCOL.md, 3.1).
"""

from __future__ import annotations

import numpy as np

from vyre_runtime.protocol.codec import ring_view
from vyre_runtime.protocol.layout import (
    IO_ENTRY_WORDS,
    ControlWord,
    DeviceState,
    IoState,
    IoWord,
    Layout,
    SlotFault,
    SlotState,
    SlotWord,
)
from vyre_runtime.protocol.opcodes import metric_index

MASK32 = 0xFFFFFFFF
# what the host records for a slot it faults in place of a stopped device (Device.internal_errors)
ORPHAN_REASON = (
    "the device stopped while this slot was {state} (claimed, possibly partly run) and nothing "
    "completed it; it was faulted INTERNAL instead of being run a second time: publish it again "
    "if running it twice is safe"
)


def orphaned_slots(image: np.ndarray, layout: Layout) -> np.ndarray:
    """Slots a device holds (CLAIMED or WAIT_IO): orphans once no device runs."""
    status = ring_view(image, layout)[:, SlotWord.STATUS]
    return np.flatnonzero((status == SlotState.CLAIMED) | (status == SlotState.WAIT_IO))


def fault_orphaned_slots(image: np.ndarray, layout: Layout) -> dict[int, str]:
    """Complete every orphaned slot as FAULT INTERNAL, counted as a device counts a completion
    (DONE_COUNT, FAULT_COUNT, its opcode's metric), results first and status last.

    Returns slot -> why it was faulted. The caller guarantees that no device thread runs.
    """
    ring = ring_view(image, layout)
    reasons: dict[int, str] = {}
    for slot in orphaned_slots(image, layout).tolist():
        state = SlotState(int(ring[slot, SlotWord.STATUS]))
        metric = metric_index(int(ring[slot, SlotWord.OPCODE]))
        if metric >= 0:
            image[layout.metrics + metric] = (int(image[layout.metrics + metric]) + 1) & MASK32
        for word in (ControlWord.DONE_COUNT, ControlWord.FAULT_COUNT):
            image[word] = (int(image[word]) + 1) & MASK32
        ring[slot, SlotWord.RESULT0 :] = [int(SlotFault.INTERNAL), 0, 0, 0]
        ring[slot, SlotWord.STATUS] = SlotState.FAULT  # status last
        reasons[slot] = ORPHAN_REASON.format(state=state.name)
    return reasons


def reset_io_entries(image: np.ndarray, layout: Layout) -> int:
    """Every IO entry back to EMPTY; returns how many were not. A request of a stopped device is
    never taken back by it; left as it is, the entry would be lost to every later LOAD_MISS.
    The caller guarantees that no device thread runs and that the host services no IO meanwhile."""
    statuses = image[layout.io_queue + IoWord.STATUS : layout.doorbell : IO_ENTRY_WORDS]
    busy = int(np.count_nonzero(statuses != IoState.EMPTY))
    statuses[:] = IoState.EMPTY  # a strided view of the image: writes through
    return busy


def prepare_relaunch(image: np.ndarray, layout: Layout) -> dict[int, str]:
    """Make the image ready for a new launch over it (PROTOCOL.md 6.5, steps 1 to 3 before the
    launch): orphans faulted, IO entries EMPTY, PAUSE 0, DEVICE_STATE NOT_STARTED (so the host's
    wait for SERVING sees the new device's word, not the old one's). Returns the faulted slots
    with their reasons. SHUTDOWN is left alone: a ring that was shut down is not resumed."""
    reasons = fault_orphaned_slots(image, layout)
    reset_io_entries(image, layout)
    image[ControlWord.PAUSE] = 0
    image[ControlWord.DEVICE_STATE] = DeviceState.NOT_STARTED
    return reasons


__all__ = ["ORPHAN_REASON", "fault_orphaned_slots", "orphaned_slots", "prepare_relaunch", "reset_io_entries"]
