"""Pause, relaunch and module swap of the resident CUDA megakernel over the same ring
(docs/PROTOCOL.md, 6.5), and the SHUTDOWN opcode routed through the dispatcher (skipped cleanly
without a usable GPU). The CPU side of the same contract is tests/test_relaunch.py."""

from __future__ import annotations

import time

import numpy as np
import pytest
from cuda_resident import SHUTDOWN_S, resident
from host_programs import counting_program
from ring_checks import COUNTER, DEVICE_HELD, add_one, assert_stopped_device_lost_none, slot_status

from vyre_runtime.backends.cuda import build
from vyre_runtime.backends.selection import cuda_unavailable_reason
from vyre_runtime.errors import BackendError
from vyre_runtime.megakernel import Megakernel
from vyre_runtime.protocol.codec import SlotRequest
from vyre_runtime.protocol.layout import ControlWord, DeviceState, SlotState
from vyre_runtime.protocol.opcodes import BuiltinOpcode
from vyre_runtime.vir0 import isa
from vyre_runtime.vir0.program import Instruction, Program

pytestmark = pytest.mark.gpu
_REASON = cuda_unavailable_reason()
if _REASON is not None:
    pytest.skip(f"no usable CUDA GPU: {_REASON}", allow_module_level=True)


def _counters(mk: Megakernel) -> tuple[int, int]:
    return int(mk.image[ControlWord.CLAIM_COUNT]), int(mk.image[ControlWord.DONE_COUNT])


def _settled_counters(mk: Megakernel, expected_done: int) -> tuple[int, int]:
    """The device adds to its counters just after DONE (docs/PROTOCOL.md, 6.2): let them land."""
    settle = time.monotonic() + 2
    while _counters(mk)[1] != expected_done and time.monotonic() < settle:
        time.sleep(0.001)
    return _counters(mk)


def test_relaunch_serves_slots_published_while_paused_and_while_stopped_exactly_once():
    with resident(slots=256, tenants=2) as mk:
        handle = mk.register_program(counting_program())
        mk.set_tenant_enabled(1, False)
        held = add_one(mk, 50, tenant=1)  # a paused tenant: PUBLISHED across the pause
        served = add_one(mk, 50)
        assert all(future.result(10).ok for future in served)
        mk.pause(timeout=SHUTDOWN_S)
        assert int(mk.image[ControlWord.DEVICE_STATE]) == DeviceState.EXITED
        assert "paused" in mk.device.health()
        while_stopped = add_one(mk, 50)
        run = mk.submit(handle, b"abcdef")
        assert (slot_status(mk, while_stopped) == SlotState.PUBLISHED).all()
        assert (slot_status(mk, held) == SlotState.PUBLISHED).all()
        mk.set_tenant_enabled(1, True)
        assert mk.relaunch(timeout=SHUTDOWN_S) == {}
        assert mk.device.health() is None
        assert int(mk.image[ControlWord.DEVICE_STATE]) == DeviceState.SERVING
        assert all(future.result(10).ok for future in held + while_stopped)
        outcome = run.result(10)  # the program table and staging carried over
        assert outcome.ok and outcome.outputs["hits"][0] == 8 and outcome.outputs["bytes"][0] == 48
        assert mk.wait(timeout=10)
        assert mk.observables()[COUNTER] == 150  # every slot ran exactly once
        assert _settled_counters(mk, 151) == (151, 151)
        stats = mk.stats()
        assert stats.published == stats.completed == 151 and stats.stray_completions == 0


def test_pause_finishes_every_claimed_run_and_the_relaunch_serves_the_rest():
    spin = Program(name="spin", registers=2, lanes=256, code=(Instruction(isa.Op.JMP, imm=0),))
    with resident(slots=512) as mk:
        handle = mk.register_program(spin)
        futures = [mk.submit(handle, b"", fuel=20_000) for _ in range(300)]
        mk.pause(timeout=SHUTDOWN_S)
        status = mk.service.status_column
        assert not np.isin(status, DEVICE_HELD).any()  # drained: nothing left claimed or queued
        # The reaper writes EMPTY before it resolves the futures, so a slot seen EMPTY belongs to a
        # future that is being resolved: it must be done a moment later, never left waiting.
        waiting = [(future, SlotState(int(status[future.slot]))) for future in futures if not future.done()]
        settled = (SlotState.PUBLISHED, SlotState.DONE, SlotState.FAULT)
        assert all(state in settled or (state == SlotState.EMPTY and future.result(10)) for future, state in waiting)
        mk.relaunch(timeout=SHUTDOWN_S)
        faults = [future.result(30).fault for future in futures]
        assert all(fault is not None and fault.code == isa.FaultCode.FUEL_EXHAUSTED for fault in faults)
        assert mk.wait(timeout=10)
        assert _settled_counters(mk, 300) == (300, 300)  # each claimed once, completed once


def test_relaunch_with_a_fresh_build_loads_it_as_a_new_module():
    with resident(slots=128) as mk:
        assert add_one(mk, 1)[0].result(10).ok
        old_module = mk.device._module
        fresh = build.build_megakernel(mk.device.arch, use_cache=False)  # NVRTC again: a new cubin object
        mk.pause(timeout=SHUTDOWN_S)
        waiting = add_one(mk, 20)
        mk.relaunch(cubin=fresh, timeout=SHUTDOWN_S)
        assert mk.device._module is not old_module and old_module.handle is None  # unloaded
        assert all(future.result(10).ok for future in waiting)
        mk.relaunch(cubin=fresh.cubin, timeout=SHUTDOWN_S)  # raw bytes, running device: paused first
        assert all(future.result(10).ok for future in add_one(mk, 20))
        assert mk.device.health() is None
        assert mk.observables()[COUNTER] == 41


def test_a_cubin_built_for_another_layout_is_refused_and_the_old_module_relaunches():
    source = build.KERNEL_SOURCE.read_text()
    marker = "vyre_layout_digest = VYRE_LAYOUT_DIGEST;"
    assert marker in source
    foreign = build.compile_source(
        source.replace(marker, "vyre_layout_digest = 0u;"), symbols=build.MEGAKERNEL_SYMBOLS, use_cache=False
    )
    with resident(slots=64) as mk:
        with pytest.raises(BackendError, match="another protocol layout"):
            mk.relaunch(cubin=foreign, timeout=SHUTDOWN_S)
        assert "paused" in mk.device.health()
        waiting = add_one(mk, 5)
        mk.relaunch(timeout=SHUTDOWN_S)
        assert all(future.result(10).ok for future in waiting)


def test_the_shutdown_opcode_with_slots_still_queued_loses_none():
    """The SHUTDOWN slot's contract: every slot completes or stays PUBLISHED. A worker running
    SHUTDOWN used to tell the other workers to leave while the dispatcher could still queue slots
    (one queued after they left stayed CLAIMED for good); now only the dispatcher ends the queue,
    after its last push. SHUTDOWN goes early in one doorbell batch, so the dispatcher is still
    pushing the batch when a worker runs it. (On an H100 this workload did not catch the old
    kernel: the dispatcher out-pushed the workers, who never saw the queue empty in the window.)"""
    add = SlotRequest(BuiltinOpcode.ATOMIC_ADD, (COUNTER, 1))
    for round_, before in enumerate((0, 0, 0, 300, 0, 0)):
        with resident(slots=2048) as mk:
            futures = mk.batch([*[add] * before, SlotRequest(BuiltinOpcode.SHUTDOWN), *[add] * (1500 - before)])
            deadline = time.monotonic() + SHUTDOWN_S
            while int(mk.image[ControlWord.DEVICE_STATE]) != DeviceState.EXITED and time.monotonic() < deadline:
                time.sleep(0.001)
            assert int(mk.image[ControlWord.DEVICE_STATE]) == DeviceState.EXITED, f"round {round_}"
            assert_stopped_device_lost_none(mk, futures, f"round {round_}")
