"""Watched channel calls on the GPU: the megakernel's watcher warp serves them, exactly once, with
exact counters, next to doorbell traffic, across a pause and relaunch (docs/PROTOCOL.md, Watched
channels). Both host paths: the compiled call and the Python one."""

from __future__ import annotations

import time

import pytest
from cuda_resident import resident

from vyre_runtime import channel_native
from vyre_runtime.backends.selection import cuda_unavailable_reason
from vyre_runtime.protocol.layout import ControlWord, SlotWord
from vyre_runtime.protocol.opcodes import BuiltinOpcode

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(cuda_unavailable_reason() is not None, reason=str(cuda_unavailable_reason())),
]


@pytest.mark.parametrize("native", ["1", "0"])
def test_watched_calls_are_served_exactly_once_with_exact_counters(native, monkeypatch):
    monkeypatch.setenv(channel_native.NATIVE_ENV, native)
    with resident(slots=256) as mk:
        before = mk.stats()
        obs = mk.layout.observable_base
        with mk.channel() as channel, mk.channel(tenant=0) as other:
            assert channel._watch is not None and other._watch is not None
            assert channel.call(BuiltinOpcode.STORE_U32, (3, 0)).ok
            for _ in range(2000):
                channel.call(BuiltinOpcode.ATOMIC_ADD, (3, 1))
                other.call(BuiltinOpcode.ATOMIC_ADD, (3, 2))
                mk.publish(BuiltinOpcode.ATOMIC_ADD, (4, 1)).result(10)  # the doorbell path beside it
            assert int(mk.image[obs + 3]) == 6000
            assert int(mk.image[obs + 4]) == 2000
            assert channel.call(BuiltinOpcode.COMPARE_SWAP, (3, 6000, 9)).results[0] == 6000
            assert channel.call(BuiltinOpcode.MEMCPY, (3, 5, 2)).results[0] == 2
            assert channel.call(BuiltinOpcode.LOAD_U32, (6, 7)).results[0] == 2000
            fault = channel.call(BuiltinOpcode.STORE_U32, (10**6, 1)).fault
            assert fault is not None and fault.detail == 10**6
            base = mk.layout.slot(channel.slot)
            assert int(mk.image[base + SlotWord.PRIORITY]) & 0x80  # it went the watched way
        mk.wait(timeout=10)
        calls = 1 + 2 * 2000 + 2000 + 4
        deadline = time.monotonic() + 5
        while True:  # the dispatcher copies the device's counters into the image on an idle pass
            after = mk.stats()
            if after.device_done - before.device_done == calls or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        assert after.completed - before.completed == calls
        assert after.device_done - before.device_done == calls
        assert after.device_claims - before.device_claims == calls
        assert after.device_faults - before.device_faults == 1
        assert int(mk.image[ControlWord.WATCH]) == 0


def test_watched_calls_survive_a_pause_and_relaunch():
    with resident(slots=256) as mk, mk.channel() as channel:
        assert channel.call(BuiltinOpcode.NOP).ok
        mk.pause(10)
        mk.relaunch()
        for k in range(100):
            assert channel.call(BuiltinOpcode.STORE_U32, (1, k)).ok
        assert int(mk.image[mk.layout.observable_base + 1]) == 99
