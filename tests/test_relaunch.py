"""Pause and relaunch over the same ring (docs/PROTOCOL.md, 6.5), and the SHUTDOWN opcode, on
the CPU backend and on the protocol helper both backends share. The CUDA side of the same
contract is tests/test_cuda_relaunch.py."""

from __future__ import annotations

import numpy as np
import pytest
from host_programs import counting_program
from ring_checks import COUNTER, add_one, assert_stopped_device_lost_none, slot_status

from vyre_runtime.errors import BackendError
from vyre_runtime.megakernel import Megakernel
from vyre_runtime.protocol import ioqueue, resume
from vyre_runtime.protocol.codec import SlotRequest, new_image, ring_view
from vyre_runtime.protocol.layout import (
    ControlWord,
    DeviceState,
    IoState,
    Layout,
    SlotFault,
    SlotState,
    SlotWord,
)
from vyre_runtime.protocol.opcodes import BuiltinOpcode, metric_index


def test_slots_published_while_paused_wait_in_the_ring_and_run_once_after_the_relaunch():
    with Megakernel(backend="cpu", slots=256, tenants=2, workers=2) as mk:
        mk.set_tenant_enabled(1, False)
        held = add_one(mk, 40, tenant=1)  # a paused tenant: PUBLISHED across the pause
        served = add_one(mk, 40)
        assert all(future.result(5).ok for future in served)
        mk.pause(timeout=5)
        assert int(mk.image[ControlWord.DEVICE_STATE]) == DeviceState.EXITED
        while_stopped = add_one(mk, 40)
        assert (slot_status(mk, while_stopped) == SlotState.PUBLISHED).all()
        assert (slot_status(mk, held) == SlotState.PUBLISHED).all()
        mk.set_tenant_enabled(1, True)
        assert mk.relaunch(timeout=5) == {}
        assert int(mk.image[ControlWord.DEVICE_STATE]) == DeviceState.SERVING
        assert int(mk.image[ControlWord.PAUSE]) == 0
        assert all(future.result(5).ok for future in held + while_stopped)
        assert mk.wait(timeout=5)
        assert mk.observables()[COUNTER] == 120  # each slot ran exactly once
        stats = mk.stats()
        assert stats.published == stats.completed == 120 and stats.stray_completions == 0
        assert int(mk.image[ControlWord.CLAIM_COUNT]) == int(mk.image[ControlWord.DONE_COUNT]) == 120


def test_registered_programs_and_io_resources_serve_again_after_a_relaunch():
    with Megakernel(backend="cpu", slots=64, workers=1) as mk:
        handle = mk.register_program(counting_program())
        mk.register_resource(3, b"0123456789abcdef")
        mk.pause(timeout=5)
        run = mk.submit(handle, b"abcdef")
        load = mk.publish(BuiltinOpcode.LOAD_MISS, (3, 4, 0, 8, 20))
        mk.relaunch(timeout=5)
        outcome = run.result(5)
        assert outcome.ok and outcome.outputs["hits"][0] == 8 and outcome.outputs["bytes"][0] == 8 * 6
        assert load.result(5).results[0] == 8
        assert mk.observables()[20:22].tobytes() == b"456789ab"


def test_relaunch_of_a_running_device_pauses_it_first_and_loses_nothing():
    with Megakernel(backend="cpu", slots=256, workers=2) as mk:
        futures = add_one(mk, 100)
        mk.relaunch(timeout=5)
        futures += add_one(mk, 100)
        assert all(future.result(5).ok for future in futures)
        assert mk.observables()[COUNTER] == 200


def test_a_slot_a_stopped_device_left_claimed_fails_with_the_reason_and_never_runs_again():
    with Megakernel(backend="cpu", slots=64, workers=1) as mk:
        mk.pause(timeout=5)
        orphan = add_one(mk, 1)[0]
        # what a device that died holding the slot leaves behind: CLAIMED, and nobody to finish it
        mk.image[mk.layout.slot(orphan.slot) + SlotWord.STATUS] = SlotState.CLAIMED
        faulted = mk.relaunch(timeout=5)
        assert list(faulted) == [orphan.slot] and "CLAIMED" in faulted[orphan.slot]
        with pytest.raises(BackendError, match="CLAIMED"):
            orphan.result(5)
        assert mk.observables()[COUNTER] == 0
        assert add_one(mk, 1)[0].result(5).ok  # the ring serves on
        stats = mk.stats()
        assert stats.device_faults == stats.faulted == 1


def test_relaunch_is_refused_once_the_ring_was_shut_down():
    mk = Megakernel(backend="cpu", slots=16, workers=1)
    mk.shutdown(timeout=2)
    with pytest.raises(BackendError, match="shut down"):
        mk.relaunch()
    with pytest.raises(BackendError, match="not resumed"):
        mk.device.relaunch()


def test_a_refused_relaunch_leaves_the_device_paused_and_a_plain_relaunch_resumes_it():
    with Megakernel(backend="cpu", slots=16, workers=1) as mk:
        with pytest.raises(BackendError, match="no cubin"):
            mk.relaunch(cubin=b"\x7fELF")
        waiting = mk.publish(BuiltinOpcode.NOP)
        assert mk.service.status_column[waiting.slot] == SlotState.PUBLISHED
        mk.relaunch()
        assert waiting.result(5).ok


def test_shutdown_of_a_paused_megakernel_fails_what_still_waits():
    mk = Megakernel(backend="cpu", slots=16, workers=1)
    mk.pause(timeout=2)
    waiting = add_one(mk, 3)
    mk.shutdown(timeout=2)
    for future in waiting:
        with pytest.raises(BackendError, match="shut down"):
            future.result(1)


def test_the_shutdown_opcode_leaves_every_unclaimed_slot_published_and_loses_none():
    mk = Megakernel(backend="cpu", slots=512, workers=2)
    requests = [SlotRequest(BuiltinOpcode.ATOMIC_ADD, (COUNTER, 1))] * 150
    futures = mk.batch([*requests, SlotRequest(BuiltinOpcode.SHUTDOWN), *requests])
    assert mk.device.stop(timeout=5)  # the workers leave after what they claimed
    assert_stopped_device_lost_none(mk, futures)
    mk.shutdown(timeout=2)
    assert all(future.done() for future in futures)


def test_prepare_relaunch_completes_orphans_resets_io_and_keeps_everything_else():
    layout = Layout(slots=16, io_entries=4)
    image = new_image(layout)
    ring = ring_view(image, layout)
    states = {0: SlotState.DONE, 1: SlotState.CLAIMED, 2: SlotState.WAIT_IO, 3: SlotState.PUBLISHED}
    for slot, state in states.items():
        ring[slot, SlotWord.OPCODE] = BuiltinOpcode.LOAD_MISS if slot == 2 else BuiltinOpcode.NOP
        ring[slot, SlotWord.ARG0 :] = np.arange(12) + 100
        ring[slot, SlotWord.STATUS] = state
    untouched = ring[[0, 3]].copy()
    entry = ioqueue.post_request(image, layout, resource=1, offset=0, nbytes=4, destination=0)
    image[ControlWord.PAUSE] = 1
    image[ControlWord.DEVICE_STATE] = DeviceState.EXITED
    image[ControlWord.DONE_COUNT] = 0xFFFFFFFF  # counters wrap as a device's do

    reasons = resume.prepare_relaunch(image, layout)

    assert sorted(reasons) == [1, 2] and "CLAIMED" in reasons[1] and "WAIT_IO" in reasons[2]
    assert (ring[[0, 3]] == untouched).all()  # an unreaped DONE and a PUBLISHED slot stay as they are
    for slot in (1, 2):
        assert ring[slot, SlotWord.STATUS] == SlotState.FAULT
        assert ring[slot, SlotWord.RESULT0 :].tolist() == [SlotFault.INTERNAL, 0, 0, 0]
        assert ring[slot, SlotWord.ARG0 : SlotWord.RESULT0].tolist() == list(range(100, 108))
    assert int(image[ControlWord.DONE_COUNT]) == 1 and int(image[ControlWord.FAULT_COUNT]) == 2
    for opcode in (BuiltinOpcode.NOP, BuiltinOpcode.LOAD_MISS):
        assert image[layout.metrics + metric_index(opcode)] == 1
    assert ioqueue.decode(image, layout) == [] and entry == 0
    assert int(image[layout.io_queue]) == IoState.EMPTY
    assert int(image[ControlWord.PAUSE]) == 0
    assert int(image[ControlWord.DEVICE_STATE]) == DeviceState.NOT_STARTED
