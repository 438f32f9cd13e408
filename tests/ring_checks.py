"""Checks on a ring after a pause, a relaunch or a SHUTDOWN slot, shared by the CPU and the CUDA
tests of the same contract (docs/PROTOCOL.md, 6.1 and 6.5)."""

from __future__ import annotations

import numpy as np
import pytest

from vyre_runtime.errors import BackendError
from vyre_runtime.megakernel import Megakernel
from vyre_runtime.protocol.layout import SlotState
from vyre_runtime.protocol.opcodes import BuiltinOpcode

COUNTER = 0  # observable every ATOMIC_ADD slot of these tests adds 1 to: how often slots ran
DEVICE_HELD = (SlotState.CLAIMED, SlotState.WAIT_IO)


def add_one(mk: Megakernel, count: int, tenant: int = 0) -> list:
    """Publish ``count`` slots that each add 1 to the COUNTER observable."""
    return [mk.publish(BuiltinOpcode.ATOMIC_ADD, (COUNTER, 1), tenant=tenant) for _ in range(count)]


def slot_status(mk: Megakernel, futures: list) -> np.ndarray:
    return mk.service.status_column[[future.slot for future in futures]]


def assert_stopped_device_lost_none(mk: Megakernel, futures: list, where: str = "") -> None:
    """After the device stopped on a SHUTDOWN slot: no slot is left held by the device, every
    future that resolved is DONE, every other slot still PUBLISHED, the counter counts exactly
    the ATOMIC_ADD slots that completed, and the shut-down ring is not resumed."""
    mk.poll()
    status = mk.service.status_column.copy()
    assert not np.isin(status, DEVICE_HELD).any(), f"{where}: a slot was lost CLAIMED"
    # A reaper hands a slot back (EMPTY) under the service's lock and resolves its future just
    # after, outside it (callbacks may publish): for that moment the future is pending while its
    # slot reads EMPTY. Such a future must resolve promptly; only a PUBLISHED slot's may stay pending.
    for future in futures:
        if not future.done() and status[future.slot] != SlotState.PUBLISHED:
            future.result(timeout=10)
    completed = [future for future in futures if future.done()]
    waiting = [future for future in futures if not future.done()]
    assert all(future.result(0).ok for future in completed), where
    assert (status[[future.slot for future in waiting]] == SlotState.PUBLISHED).all(), where
    ran = sum(1 for future in completed if future.result(0).opcode == BuiltinOpcode.ATOMIC_ADD)
    assert mk.observables()[COUNTER] == ran, where
    with pytest.raises(BackendError, match="shut down"):
        mk.relaunch()
