"""The host service on its own, with a stand-in for a device that cannot signal completions (a
GPU): the service polls such a device only while work is in flight, so a publication must wake
it from its idle sleep."""

from __future__ import annotations

import concurrent.futures
import time

import numpy as np

from vyre_runtime import host_service
from vyre_runtime.host_service import HostService, SlotFuture
from vyre_runtime.protocol import codec
from vyre_runtime.protocol.layout import Layout, SlotState, SlotWord
from vyre_runtime.protocol.opcodes import BuiltinOpcode
from vyre_runtime.registry import Registry


class SilentDevice:
    """Completes slots only when the test says so and never calls notify(), like a GPU."""

    completion_signal = False

    def __init__(self) -> None:
        self.internal_errors: dict[int, str] = {}


def test_a_publication_wakes_a_service_sleeping_idle_to_poll_a_device_that_cannot_signal(monkeypatch):
    # an idle interval far longer than the test's deadline: the slot is reaped in time only if
    # publishing it woke the service (before, it slept its whole idle interval: a stream whose
    # runs had all been reaped waited up to 50 ms for each new round of runs)
    monkeypatch.setattr(host_service, "SERVICE_INTERVAL_S", 60.0)
    layout = Layout(slots=8, doorbells=8)
    image = np.zeros(layout.total_words, dtype=np.uint32)
    codec.init_image(image, layout)
    released: list[int] = []
    service = HostService(image, layout, Registry(), SilentDevice(), lambda slots: released.extend(slots))
    service.start()
    try:
        deadline = time.monotonic() + 10
        while not service._idle_sleep and time.monotonic() < deadline:  # nothing in flight: asleep idle
            time.sleep(0.001)
        assert service._idle_sleep
        future = SlotFuture(service)
        request = codec.SlotRequest(BuiltinOpcode.NOP)
        service.track([3], [request], [future], None)
        ring = codec.ring_view(image, layout)
        ring[3, SlotWord.OPCODE] = BuiltinOpcode.NOP
        ring[3, SlotWord.STATUS] = SlotState.DONE  # the device completes it, silently
        # concurrent.futures.wait does not reap (SlotFuture.result would reap in this thread)
        done, _ = concurrent.futures.wait([future], timeout=20)
        assert done and future.result(0).ok and released == [3]
    finally:
        service.stop()
