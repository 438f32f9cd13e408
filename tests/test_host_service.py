"""The host service on its own, with a stand-in for a device that cannot signal completions (a
GPU): the service polls such a device only while work is in flight, so a publication must wake
it from its idle sleep."""

from __future__ import annotations

import concurrent.futures
import threading
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


def _silent_service(released: list[int]) -> tuple[HostService, np.ndarray]:
    layout = Layout(slots=8, doorbells=8)
    image = np.zeros(layout.total_words, dtype=np.uint32)
    codec.init_image(image, layout)
    return HostService(image, layout, Registry(), SilentDevice(), released.extend), codec.ring_view(image, layout)


def test_a_publication_racing_the_service_going_to_sleep_still_wakes_it(monkeypatch):
    # track() reads the idle-sleep flag without the lock: a publication that the service's look
    # at _pending missed must still find the flag raised, else the service sleeps its whole
    # idle interval (60 s here) with the slot in flight and nobody polling the device
    monkeypatch.setattr(host_service, "SERVICE_INTERVAL_S", 60.0)
    released: list[int] = []
    service, ring = _silent_service(released)
    future = SlotFuture(service)

    def publish() -> None:  # another thread publishes slot 3, which the device completes at once
        ring[3, SlotWord.OPCODE] = BuiltinOpcode.NOP
        ring[3, SlotWord.STATUS] = SlotState.DONE
        service.track([3], [codec.SlotRequest(BuiltinOpcode.NOP)], [future], None)

    class Pending(dict):
        """Runs the publication between the service's read of its size and its going to sleep."""

        armed = True

        def __len__(self) -> int:
            size = super().__len__()
            if self.armed and threading.current_thread() is service._thread:
                self.armed = False
                publisher = threading.Thread(target=publish, daemon=True)
                publisher.start()
                publisher.join(0.5)  # (it may block waking us: we hold the service's condition)
            return size  # what the service read before the publication

    service._pending = Pending()
    service.start()
    try:
        done, _ = concurrent.futures.wait([future], timeout=10)
        assert done and future.result(0).ok and released == [3]
    finally:
        service.stop()


def test_a_waiter_whose_slot_now_holds_someone_elses_completion_still_times_out():
    # another thread reaped this future's slot and has yet to resolve it; meanwhile the slot was
    # published again (in bulk) and completed: the waiter cannot reap it, and must neither spin
    # on it forever (past its deadline) nor hold the GIL doing so
    released: list[int] = []
    service, ring = _silent_service(released)
    future = SlotFuture(service)
    service.track([3], [codec.SlotRequest(BuiltinOpcode.NOP)], [future], None)
    with service._lock:
        service._pending.pop(3)  # reaped, not resolved yet
    ticket = service.new_ticket(1)
    service.track_bulk(np.array([3]), ticket)
    ring[3, SlotWord.STATUS] = SlotState.DONE
    outcome: list[BaseException] = []

    def wait() -> None:
        try:
            future.result(timeout=0.05)
        except BaseException as error:
            outcome.append(error)

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    waiter.join(10)
    stuck = waiter.is_alive()
    future.set_result(None)  # lets a stuck waiter go
    waiter.join(10)
    assert not stuck and len(outcome) == 1 and isinstance(outcome[0], TimeoutError)
    assert service.reap() == 1 and ticket.done  # the bulk slot is reaped by a full scan
