"""Watched channel calls on the host side (docs/PROTOCOL.md, Watched channels), both the compiled
path and the Python one. The CPU device has no watcher; it serves the marked publications through
its scan, which is enough to check the words a watched call writes and the results it returns."""

from __future__ import annotations

import time

import pytest

from vyre_runtime import channel_native
from vyre_runtime.errors import BackendError
from vyre_runtime.megakernel import Megakernel
from vyre_runtime.protocol.layout import (
    HINT_MASK,
    PRIORITY_BITS,
    PRIORITY_WATCHED,
    WATCH_TENANT_SHIFT,
    WATCH_VALID,
    WATCH_WORDS,
    ControlWord,
    SlotState,
    SlotWord,
)
from vyre_runtime.protocol.opcodes import BuiltinOpcode


@pytest.fixture(params=["native", "python"])
def mk(request, monkeypatch, tmp_path):
    monkeypatch.setenv("VYRE_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv(channel_native.NATIVE_ENV, "1" if request.param == "native" else "0")
    with Megakernel(backend="cpu", slots=64, workers=1) as mk:
        mk._watch_free = list(range(WATCH_WORDS))  # as if the device had a watcher
        yield mk


def test_watched_calls_write_the_sequence_and_return_results(mk):
    with mk.channel() as channel:
        assert channel._watch == 0
        assert (channel._native is not None) == (channel_native.load() is not None)
        word = int(mk.image[ControlWord.WATCH])
        assert word == WATCH_VALID | 0 << WATCH_TENANT_SHIFT | channel.slot
        assert channel.call(BuiltinOpcode.STORE_U32, (7, 40)).ok
        assert channel.call(BuiltinOpcode.ATOMIC_ADD, (7, 2)).results[0] == 40
        assert channel.call(BuiltinOpcode.LOAD_U32, (7, 8)).results[0] == 42
        assert channel.call(BuiltinOpcode.COMPARE_SWAP, (8, 42, 5)).results[0] == 42
        assert channel.call(BuiltinOpcode.MEMCPY, (7, 9, 2)).results[0] == 2
        assert list(mk.image[mk.layout.observable_base + 7 : mk.layout.observable_base + 11]) == [42, 5, 42, 5]
        fault = channel.call(BuiltinOpcode.STORE_U32, (10**6, 1)).fault
        assert fault is not None and fault.detail == 10**6
        base = mk.layout.slot(channel.slot)
        priority = int(mk.image[base + SlotWord.PRIORITY])
        seq = priority >> PRIORITY_BITS
        assert priority & PRIORITY_WATCHED and int(mk.image[base + SlotWord.ARG0 + 3]) == seq
        assert channel.call(BuiltinOpcode.NOP).ok
        assert int(mk.image[base + SlotWord.PRIORITY]) >> PRIORITY_BITS == (seq + 1) & HINT_MASK
        # not watchable (a big MEMCPY, DFA-sized argument lists): the doorbell path, unmarked
        assert channel.call(BuiltinOpcode.MEMCPY, (7, 20, 17)).results[0] == 17
        assert not int(mk.image[base + SlotWord.PRIORITY]) & PRIORITY_WATCHED
        assert channel.call(BuiltinOpcode.NOP).ok
    assert int(mk.image[ControlWord.WATCH]) == 0 and 0 in mk._watch_free
    stats = mk.stats()
    assert stats.completed >= 9


def test_the_sequence_skips_a_value_arg3_already_holds(mk):
    with mk.channel() as channel:
        base = mk.layout.slot(channel.slot)
        channel.call(BuiltinOpcode.NOP)
        seq = int(mk.image[base + SlotWord.PRIORITY]) >> PRIORITY_BITS
        mk.image[base + SlotWord.ARG0 + 3] = (seq + 1) & HINT_MASK  # as a doorbell call's ARG3 could
        channel.call(BuiltinOpcode.NOP)
        assert int(mk.image[base + SlotWord.PRIORITY]) >> PRIORITY_BITS == (seq + 2) & HINT_MASK


def test_the_sequence_skips_a_value_arg3_holds_in_its_low_24_bits(mk):
    # the watcher compares ARG3 mod 2^24 with the hint bits: a doorbell call's ARG3 whose low 24
    # bits are the next sequence would pass the echo check with that call's stale ARG0 .. 2
    with mk.channel() as channel:
        base = mk.layout.slot(channel.slot)
        channel.call(BuiltinOpcode.NOP)
        seq = int(mk.image[base + SlotWord.PRIORITY]) >> PRIORITY_BITS
        mk.image[base + SlotWord.ARG0 + 3] = 1 << 24 | (seq + 1) & HINT_MASK
        channel.call(BuiltinOpcode.NOP)
        assert int(mk.image[base + SlotWord.PRIORITY]) >> PRIORITY_BITS == (seq + 2) & HINT_MASK


def test_watch_words_run_out_and_channels_fall_back(mk, monkeypatch):
    channels = [mk.channel() for _ in range(WATCH_WORDS + 1)]
    assert [c._watch for c in channels] == [*range(WATCH_WORDS), None]
    assert channels[-1].call(BuiltinOpcode.NOP).ok
    for channel in channels:
        channel.close()
    monkeypatch.setenv("VYRE_CHANNEL_WATCH", "0")
    with mk.channel() as channel:
        assert channel._watch is None


def test_a_symlink_at_the_compiled_library_is_rebuilt_not_loaded(monkeypatch, tmp_path):
    monkeypatch.setenv("VYRE_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv(channel_native.NATIVE_ENV, "1")
    monkeypatch.setattr(channel_native, "_loaded", {})
    if channel_native.load() is None:
        pytest.skip("no working C compiler here: the Python path serves, nothing is loaded")
    (library,) = (tmp_path / "native").glob("vyre_channel_*.so")
    planted = tmp_path / "planted.so"
    planted.write_bytes(b"not a library")
    library.unlink()
    library.symlink_to(planted)
    monkeypatch.setattr(channel_native, "_loaded", {})
    assert channel_native.load() is not None
    assert library.is_file() and not library.is_symlink()
    assert planted.read_bytes() == b"not a library"


def test_a_slot_whose_abandoned_watched_call_kept_its_watch_word_gets_no_second_one(mk, monkeypatch):
    # An abandoned watched call keeps its WATCH word (only the watcher can serve it) while its
    # slot goes back to the free list. A new channel on that slot must not get a second word
    # naming it: two lane groups of the watcher would both serve every call (an ATOMIC_ADD twice).
    channel = mk.channel()
    slot, kept = channel.slot, channel._watch
    mk.set_tenant_enabled(0, False)  # the call stays PUBLISHED: abandoned at its deadline
    with pytest.raises(BackendError):
        channel.call(BuiltinOpcode.NOP, timeout=0.05)
    channel.close()
    assert int(mk.image[ControlWord.WATCH + kept]) & WATCH_VALID  # kept
    monkeypatch.setattr(mk, "_allocate", lambda priorities, timeout: [slot])  # the same slot again
    again = mk.channel()

    def naming(slot: int) -> list[int]:
        words = [int(w) for w in mk.image[ControlWord.WATCH : ControlWord.WATCH + WATCH_WORDS]]
        return [k for k, word in enumerate(words) if word & WATCH_VALID and word & 0xFFFFF == slot]

    assert naming(slot) == [kept] and again._watch == kept  # the same tenant: the kept word is its
    mk.set_tenant_enabled(0, True)
    deadline = time.monotonic() + 5
    while int(mk.image[mk.layout.slot(slot)]) == SlotState.PUBLISHED and time.monotonic() < deadline:
        time.sleep(0.001)
    again.close()
    assert naming(slot) == [] and kept in mk._watch_free


def test_a_kept_watch_word_of_another_tenant_leaves_the_new_channel_unwatched(monkeypatch, tmp_path):
    monkeypatch.setenv("VYRE_CACHE_DIR", str(tmp_path))
    with Megakernel(backend="cpu", slots=64, tenants=2, workers=1) as mk:
        mk._watch_free = list(range(WATCH_WORDS))
        channel = mk.channel()
        slot, kept = channel.slot, channel._watch
        mk.set_tenant_enabled(0, False)
        with pytest.raises(BackendError):
            channel.call(BuiltinOpcode.NOP, timeout=0.05)
        channel.close()
        monkeypatch.setattr(mk, "_allocate", lambda priorities, timeout: [slot])
        other = mk.channel(tenant=1)
        # the kept word still serves the abandoned call (tenant 0); a second word for the slot
        # would serve tenant 1's calls beside it: the new channel takes the doorbell path
        assert other._watch is None
        words = [int(w) for w in mk.image[ControlWord.WATCH : ControlWord.WATCH + WATCH_WORDS]]
        assert [k for k, w in enumerate(words) if w & WATCH_VALID and w & 0xFFFFF == slot] == [kept]
        mk.set_tenant_enabled(0, True)
        other.close()
