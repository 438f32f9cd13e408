"""Adversarial tests at every boundary of the ring protocol, at protocol level: codec, debug log,
IO queue, doorbell and the CPU device's state-machine steps called directly on an image, no threads.

`RecordingImage` logs every store into the image in order, so "status last" is checked as a
fact about the sequence of stores, not inferred from the final contents.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vyre_runtime.backends.cpu.builtins import DFA_STEP_MAX_BYTES, SIMPLE_BODIES, DeviceContext, SlotFaultRaised
from vyre_runtime.backends.cpu.builtins import packed_slot as run_packed_slot
from vyre_runtime.backends.cpu.device import CpuDevice
from vyre_runtime.errors import ProtocolError
from vyre_runtime.protocol import debuglog, ioqueue
from vyre_runtime.protocol.codec import (
    SlotRequest,
    counter_delta,
    decode_packed,
    doorbell_entry,
    doorbell_entry_slot,
    encode_packed,
    new_image,
    read_slot,
    ring_doorbell,
    words_from_bytes,
    write_slot,
)
from vyre_runtime.protocol.layout import (
    ARGS_PER_SLOT,
    DEBUG_RECORD_WORDS,
    SLOT_WORDS,
    ControlWord,
    DebugWord,
    IoError,
    IoOp,
    IoState,
    IoWord,
    Layout,
    Priority,
    RunArg,
    SlotFault,
    SlotState,
    SlotWord,
)
from vyre_runtime.protocol.opcodes import MAX_PACKED_OPS, PACKABLE, USER_OPCODE_BASE, BuiltinOpcode, metric_index
from vyre_runtime.registry import Registry
from vyre_runtime.vir0 import isa
from vyre_runtime.vir0.dfa import compile_patterns
from vyre_runtime.vir0.program import Instruction, Program

MASK32 = 0xFFFFFFFF
LAYOUT = Layout(slots=8, tenants=2, observables=16, debug_records=4, io_entries=2, doorbells=4)


class RecordingImage(np.ndarray):
    """A shared image that records, in order, the words touched by every store into it, through
    itself or through any view of it (a slice, a reshaped ring view, a strided column)."""

    stores: list[tuple[int, ...]] | None
    root: np.ndarray | None

    def __new__(cls, image: np.ndarray) -> RecordingImage:
        recording = np.asarray(image).view(cls)
        recording.stores, recording.root = [], recording
        return recording

    def __array_finalize__(self, obj: object) -> None:
        self.stores = getattr(obj, "stores", None)
        self.root = getattr(obj, "root", None)

    def _words(self) -> np.ndarray | None:
        """The root word index of every element of this array, or None if it is not a view of the root."""
        root = self.root
        if root is None or self.dtype != np.uint32 or not np.shares_memory(self, root):
            return None
        first = (self.__array_interface__["data"][0] - root.__array_interface__["data"][0]) // 4
        indices = np.arange(len(root), dtype=np.int64)[first:]
        return np.lib.stride_tricks.as_strided(indices, self.shape, tuple(2 * s for s in self.strides))

    def __setitem__(self, key: object, value: object) -> None:
        words = self._words()
        if self.stores is not None and words is not None:
            self.stores.append(tuple(np.unique(np.asarray(words[key])).tolist()))
        super().__setitem__(key, value)

    def stores_inside(self, first: int, count: int) -> list[tuple[int, ...]]:
        assert self.stores is not None
        return [words for words in self.stores if first <= words[0] and words[-1] < first + count]


def words(first: int, stop: int) -> tuple[int, ...]:
    return tuple(range(first, stop))


@pytest.fixture
def image() -> np.ndarray:
    return new_image(LAYOUT)


def publish(image: np.ndarray, index: int, request: SlotRequest) -> None:
    """The host's path: validate in full, then write (Megakernel does the same)."""
    request.validate(LAYOUT)
    write_slot(image, LAYOUT, index, request)


def fill_slot(image: np.ndarray, index: int, status: int, opcode: int = 1, tenant: int = 0) -> None:
    """Put raw words into a slot, as a device (or a corrupted ring) would leave them."""
    base = LAYOUT.slot(index)
    image[base : base + SLOT_WORDS] = [status, opcode, tenant, Priority.NORMAL, *range(100, 112)]


# ================================================================ slots: publishing


@pytest.mark.parametrize("index", [-1, LAYOUT.slots, LAYOUT.slots + 1, -LAYOUT.slots])
def test_publishing_outside_the_ring_is_rejected_and_writes_nothing(image, index):
    before = image.copy()
    with pytest.raises(ProtocolError, match="out of range"):
        publish(image, index, SlotRequest(BuiltinOpcode.NOP))
    with pytest.raises(ProtocolError, match="out of range"):
        read_slot(image, LAYOUT, index)
    assert np.array_equal(image, before)


@pytest.mark.parametrize(
    "state", [SlotState.PUBLISHED, SlotState.CLAIMED, SlotState.WAIT_IO, SlotState.YIELD, SlotState.REQUEUE]
)
def test_republishing_an_in_flight_slot_is_rejected_and_leaves_it_untouched(image, state):
    fill_slot(image, 3, state)
    before = image.copy()
    with pytest.raises(ProtocolError, match="in flight"):
        publish(image, 3, SlotRequest(BuiltinOpcode.STORE_U32, (1, 2)))
    assert np.array_equal(image, before)


@pytest.mark.parametrize("state", [SlotState.DONE, SlotState.FAULT])
def test_a_completed_slot_is_rejected_until_it_is_reaped(image, state):
    fill_slot(image, 3, state)
    before = image.copy()
    with pytest.raises(ProtocolError, match="unreaped results"):
        publish(image, 3, SlotRequest(BuiltinOpcode.NOP))
    assert np.array_equal(image, before)
    image[LAYOUT.slot(3) + SlotWord.STATUS] = SlotState.EMPTY  # the host reaps it
    publish(image, 3, SlotRequest(BuiltinOpcode.NOP))
    assert read_slot(image, LAYOUT, 3).state == SlotState.PUBLISHED


@pytest.mark.parametrize("status", [8, 0x10, MASK32])
def test_a_slot_with_an_unknown_status_is_neither_read_nor_republished(image, status):
    fill_slot(image, 2, status)
    before = image.copy()
    with pytest.raises(ProtocolError, match="not a slot state"):
        read_slot(image, LAYOUT, 2)
    with pytest.raises(ProtocolError, match="unknown"):
        publish(image, 2, SlotRequest(BuiltinOpcode.NOP))
    assert np.array_equal(image, before)


def test_publishing_clears_the_stale_arguments_of_the_previous_slot(image):
    fill_slot(image, 5, SlotState.EMPTY, opcode=7, tenant=1)
    publish(image, 5, SlotRequest(BuiltinOpcode.STORE_U32, (9, 10), tenant=0, priority=Priority.LOW))
    view = read_slot(image, LAYOUT, 5)
    assert (view.state, view.opcode, view.tenant, view.priority) == (SlotState.PUBLISHED, 1, 0, Priority.LOW)
    assert view.args == (9, 10) + (0,) * 10
    assert view.results == (0, 0, 0, 0)


def test_publication_writes_the_status_word_last_and_only_once(image):
    recording = RecordingImage(image)
    write_slot(recording, LAYOUT, 4, SlotRequest(BuiltinOpcode.ATOMIC_ADD, tuple(range(12))))
    base = LAYOUT.slot(4)
    stores = recording.stores_inside(base, SLOT_WORDS)
    assert stores == recording.stores  # nothing outside the slot is written
    assert stores[-1] == words(base + SlotWord.STATUS, base + SlotWord.STATUS + 1)
    assert all(base + SlotWord.STATUS not in touched for touched in stores[:-1])
    assert set().union(*map(set, stores[:-1])) == set(words(base + 1, base + SLOT_WORDS))  # whole payload


INVALID_REQUESTS = {
    "reserved 0xC": SlotRequest(0xC),
    "reserved 0xFFF": SlotRequest(0xFFF),
    "past the user range 0x1400": SlotRequest(0x1400),
    "past the user range 0x1401": SlotRequest(0x1401),
    "0xFFFFFFFE": SlotRequest(0xFFFFFFFE),
    "opcode 2^32": SlotRequest(1 << 32),
    "opcode -1": SlotRequest(-1),
    "opcode 1.5": SlotRequest(1.5),  # type: ignore[arg-type]
    "opcode '1'": SlotRequest("1"),  # type: ignore[arg-type]
    "tenant 1's opcode from tenant 0": SlotRequest(USER_OPCODE_BASE + 16, tenant=0),
    "tenant 0's opcode from tenant 1": SlotRequest(USER_OPCODE_BASE + 15, tenant=1),
    "tenant -1": SlotRequest(BuiltinOpcode.NOP, tenant=-1),
    "tenant = tenant count": SlotRequest(BuiltinOpcode.NOP, tenant=LAYOUT.tenants),
    "tenant 0.5": SlotRequest(BuiltinOpcode.NOP, tenant=0.5),  # type: ignore[arg-type]
    "13 arguments": SlotRequest(BuiltinOpcode.NOP, (0,) * 13),
    "argument -1": SlotRequest(BuiltinOpcode.NOP, (-1,)),
    "argument 2^32": SlotRequest(BuiltinOpcode.NOP, (0, 1 << 32)),
    "argument 1.0": SlotRequest(BuiltinOpcode.NOP, (1.0,)),  # type: ignore[arg-type]
    "argument None": SlotRequest(BuiltinOpcode.NOP, (None,)),  # type: ignore[arg-type]
    "priority 5": SlotRequest(BuiltinOpcode.NOP, priority=5),  # type: ignore[arg-type]
    "priority -1": SlotRequest(BuiltinOpcode.NOP, priority=-1),  # type: ignore[arg-type]
}


@pytest.mark.parametrize("request_", INVALID_REQUESTS.values(), ids=INVALID_REQUESTS.keys())
def test_an_invalid_request_is_refused_before_any_word_is_written(image, request_):
    fill_slot(image, 1, SlotState.EMPTY)
    before = image.copy()
    with pytest.raises(ProtocolError) as raised:
        publish(image, 1, request_)
    assert raised.value.fix  # every protocol error says how to fix it
    assert np.array_equal(image, before)


VALID_REQUESTS = {
    "every built-in": [SlotRequest(op) for op in BuiltinOpcode],
    "SHUTDOWN is all ones": [SlotRequest(0xFFFFFFFF)],
    "tenant 0's window edges": [SlotRequest(USER_OPCODE_BASE), SlotRequest(USER_OPCODE_BASE + 15)],
    "tenant 1's window edges": [SlotRequest(USER_OPCODE_BASE + 16, tenant=1), SlotRequest(0x101F, tenant=1)],
    "12 arguments at both u32 edges": [SlotRequest(BuiltinOpcode.NOP, (0, MASK32) * 6)],
    "numpy arguments": [SlotRequest(BuiltinOpcode.NOP, (np.uint32(7), np.int64(MASK32)))],
    "every priority": [SlotRequest(BuiltinOpcode.NOP, priority=p) for p in Priority],
}


@pytest.mark.parametrize("requests", VALID_REQUESTS.values(), ids=VALID_REQUESTS.keys())
def test_requests_at_the_edges_of_the_rules_are_published(image, requests):
    for request in requests:
        publish(image, 0, request)
        view = read_slot(image, LAYOUT, 0)
        assert (view.state, view.opcode, view.tenant) == (SlotState.PUBLISHED, request.opcode, request.tenant)
        assert view.args[: len(request.args)] == tuple(int(a) for a in request.args)
        image[LAYOUT.slot(0)] = SlotState.EMPTY


# ================================================================ words_from_bytes


@pytest.mark.parametrize("length", [1, 2, 3, 5, 6, 7, 65])
def test_words_from_bytes_rejects_a_partial_word(length):
    with pytest.raises(ProtocolError, match="whole number"):
        words_from_bytes(bytes(length))


@pytest.mark.parametrize("words", [0, 15, 17])
def test_words_from_bytes_rejects_a_truncated_or_overlong_buffer(words):
    with pytest.raises(ProtocolError, match="exactly 16"):
        words_from_bytes(bytes(4 * words), expected_words=16)


def test_words_from_bytes_counts_bytes_not_items_of_a_typed_buffer():
    typed = memoryview(np.arange(4, dtype=np.uint32))  # 16 bytes, 4 items
    with pytest.raises(ProtocolError):
        words_from_bytes(typed, expected_words=1)
    assert words_from_bytes(typed, expected_words=4).tolist() == [0, 1, 2, 3]


def test_words_from_bytes_reads_little_endian_words():
    words = words_from_bytes(bytearray(b"\x01\x00\x00\x00\xff\xff\xff\xff"), expected_words=2)
    assert words.tolist() == [1, MASK32]
    assert words.dtype == np.dtype("<u4")
    assert words_from_bytes(b"").tolist() == []


# ================================================================ packed slots


def test_packed_slot_carries_one_to_seven_ops():
    with pytest.raises(ProtocolError, match=r"1\.\.7"):
        encode_packed([])
    seven = [(BuiltinOpcode.NOP, ())] * MAX_PACKED_OPS
    words = encode_packed(seven)
    assert len(words) == 6  # 1 + 3 x 7 = 22 metadata bytes -> 6 words, no arguments
    assert decode_packed(words + (0,) * 6) == [(0, ())] * 7
    with pytest.raises(ProtocolError, match=r"1\.\.7"):
        encode_packed([(BuiltinOpcode.NOP, ())] * 8)


@pytest.mark.parametrize(
    ("ops", "fits"),
    [
        ([(BuiltinOpcode.NOP, (0,) * 11)], True),  # 1 metadata word + 11
        ([(BuiltinOpcode.NOP, (0,) * 12)], False),
        ([(BuiltinOpcode.STORE_U32, (1, 2))] * 2 + [(BuiltinOpcode.NOP, (0,) * 5)], True),  # 3 + 9
        ([(BuiltinOpcode.STORE_U32, (1, 2))] * 2 + [(BuiltinOpcode.NOP, (0,) * 6)], False),  # 3 + 10
        ([(BuiltinOpcode.STORE_U32, (1, 2))] * 4 + [(BuiltinOpcode.NOP, ())], True),  # 4 + 8
        ([(BuiltinOpcode.STORE_U32, (1, 2))] * 5, False),  # 4 + 10
        ([(BuiltinOpcode.NOP, (0,) * 300)], False),  # more argument words than a u8 offset can name
    ],
    ids=["1 op 11", "1 op 12", "3 ops 9", "3 ops 10", "5 ops 8", "5 ops 10", "1 op 300"],
)
def test_packed_ops_must_fit_the_twelve_argument_words(ops, fits):
    metadata_words = (1 + 3 * len(ops) + 3) // 4
    needed = metadata_words + sum(len(args) for _, args in ops)
    assert fits == (needed <= ARGS_PER_SLOT)
    if fits:
        words = encode_packed(ops)
        assert len(words) == needed
        assert decode_packed(words + (0,) * (ARGS_PER_SLOT - needed)) == [(int(op), args) for op, args in ops]
    else:
        with pytest.raises(ProtocolError, match="a slot has"):
            encode_packed(ops)


NOT_PACKABLE = [
    BuiltinOpcode.DFA_STEP,
    BuiltinOpcode.BATCH_FENCE,
    BuiltinOpcode.LOAD_MISS,
    BuiltinOpcode.PACKED_SLOT,
    BuiltinOpcode.RUN_PROGRAM,
    BuiltinOpcode.SHUTDOWN,
    USER_OPCODE_BASE,
    0xC,
]


@pytest.mark.parametrize("opcode", NOT_PACKABLE, ids=[f"{op:#x}" for op in NOT_PACKABLE])
def test_ops_that_wait_nest_or_run_programs_cannot_be_packed(opcode):
    with pytest.raises(ProtocolError, match="cannot be packed"):
        encode_packed([(BuiltinOpcode.NOP, ()), (opcode, ())])


@pytest.mark.parametrize("bad", [-1, 1 << 32])
def test_packed_arguments_must_be_u32(bad):
    with pytest.raises(ProtocolError, match="u32"):
        encode_packed([(BuiltinOpcode.STORE_U32, (0, bad))])


packed_ops = st.lists(
    st.tuples(st.sampled_from(sorted(PACKABLE)), st.lists(st.integers(0, MASK32), max_size=4).map(tuple)),
    min_size=1,
    max_size=MAX_PACKED_OPS,
)


@settings(max_examples=300, deadline=None)
@given(packed_ops)
def test_packed_slots_round_trip_or_are_refused_whole(ops):
    try:
        words = encode_packed(ops)
    except ProtocolError:
        metadata_words = (1 + 3 * len(ops) + 3) // 4
        assert metadata_words + sum(len(args) for _, args in ops) > ARGS_PER_SLOT
        return
    padded = words + (0,) * (ARGS_PER_SLOT - len(words))
    assert decode_packed(padded) == [(int(op), args) for op, args in ops]
    SlotRequest(BuiltinOpcode.PACKED_SLOT, words).validate(LAYOUT)


def packed_words(metadata: bytes, *arguments: int) -> tuple[int, ...]:
    raw = metadata + bytes(-len(metadata) % 4)
    words = tuple(np.frombuffer(raw, dtype="<u4").tolist()) + arguments
    return words + (0,) * (ARGS_PER_SLOT - len(words))


MALFORMED_PACKED = {
    "count 0": packed_words(bytes([0])),
    "count 8": packed_words(bytes([8]) + bytes([0, 6, 0]) * 8),
    "count 255": packed_words(bytes([255, 0, 1, 0])),
    "unpackable opcode": packed_words(bytes([1, BuiltinOpcode.DFA_STEP, 1, 0])),
    "opcode 0xFF": packed_words(bytes([1, 0xFF, 1, 0])),
    "arguments inside the metadata": packed_words(bytes([1, 1, 0, 2])),
    "arguments inside the second metadata word": packed_words(bytes([2, 1, 1, 2, 0, 2, 0])),
    "arguments past the slot": packed_words(bytes([1, 1, 11, 2])),
    "offset 255": packed_words(bytes([1, 1, 255, 1])),
    "length 255": packed_words(bytes([1, 1, 1, 255])),
}


@pytest.mark.parametrize("words", MALFORMED_PACKED.values(), ids=MALFORMED_PACKED.keys())
def test_malformed_packed_metadata_is_rejected_by_the_decoder_and_faults_on_the_device(image, words):
    with pytest.raises(ProtocolError):
        decode_packed(words)
    context = DeviceContext(image, LAYOUT, _Lock(), {})
    before = image.copy()
    with pytest.raises(SlotFaultRaised) as raised:
        run_packed_slot(context, words)
    assert raised.value.code == SlotFault.BAD_PACKED
    assert np.array_equal(image, before)  # nothing ran


@pytest.mark.parametrize("length", [0, 11, 13])
def test_decode_packed_needs_exactly_twelve_words(length):
    with pytest.raises(ProtocolError, match="12 argument words"):
        decode_packed((0x00000101,) + (0,) * (length - 1) if length else ())


def test_a_faulting_packed_op_ends_the_slot_but_earlier_ops_took_effect(image):
    words = encode_packed([(BuiltinOpcode.STORE_U32, (2, 77)), (BuiltinOpcode.STORE_U32, (LAYOUT.observables, 1))])
    context = DeviceContext(image, LAYOUT, _Lock(), {})
    with pytest.raises(SlotFaultRaised) as raised:
        run_packed_slot(context, words + (0,) * (ARGS_PER_SLOT - len(words)))
    assert (raised.value.code, raised.value.detail) == (SlotFault.BAD_ARGUMENT, LAYOUT.observables)
    assert image[LAYOUT.observable_base + 2] == 77


def test_packed_results_are_the_last_ops_and_missing_arguments_read_as_zero(image):
    words = encode_packed([(BuiltinOpcode.ATOMIC_ADD, (3, 5)), (BuiltinOpcode.ATOMIC_ADD, (3,))])
    context = DeviceContext(image, LAYOUT, _Lock(), {})
    assert run_packed_slot(context, words + (0,) * (ARGS_PER_SLOT - len(words))) == (5,)
    assert image[LAYOUT.observable_base + 3] == 5


# ================================================================ counters


@pytest.mark.parametrize(
    ("before", "after", "delta"),
    [(0, 0, 0), (5, 5, 0), (MASK32, 0, 1), (MASK32 - 2, 3, 6), (0, MASK32, MASK32), (1, 0, MASK32)],
)
def test_counter_delta_is_modulo_two_to_the_32(before, after, delta):
    assert counter_delta(before, after) == delta


@given(st.integers(0, MASK32), st.integers(0, MASK32))
def test_counter_delta_recovers_any_increment_below_two_to_the_32(start, increments):
    assert counter_delta(start, (start + increments) & MASK32) == increments


class _Lock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def make_device(image: np.ndarray, registry: Registry | None = None, on_complete=None) -> CpuDevice:
    """A CPU device whose worker loop never starts: the steps of its state machine are called
    directly through the four helpers below (the only code here that knows its private names)."""
    return CpuDevice(image, LAYOUT, registry or Registry(), workers=0, on_complete=on_complete or (lambda: None))


def scan(device: CpuDevice) -> list[int]:
    """One scan of the ring's status words: the slots the device would try to claim, in order."""
    return device._scan()


def claim(device: CpuDevice, slot: int) -> bool:
    return device._claim_many([slot]) == [slot]


def claim_hinted(device: CpuDevice, slots: list[int]) -> list[int]:
    """One claim attempt on hinted slots (stale or duplicated ones included): the slots claimed."""
    return device._claim_many(slots)


def run_claimed(device: CpuDevice, slot: int) -> None:
    """Run a CLAIMED slot and complete it (results, counters, then DONE/FAULT)."""
    context = DeviceContext(device.image, LAYOUT, device.lock, device.registry.dfas)
    base = LAYOUT.slot(slot)
    device._complete_many([device._run_one(context, slot, device.image[base : base + SLOT_WORDS].tolist())])


def complete(device: CpuDevice, slot: int, opcode: int, results: tuple[int, ...], fault: bool) -> None:
    device._complete_many([(slot, opcode, [*results, *[0] * (4 - len(results))], fault)])


def test_device_counters_wrap_at_two_to_the_32_when_a_slot_completes(image):
    image[ControlWord.DONE_COUNT] = MASK32
    image[ControlWord.FAULT_COUNT] = MASK32
    image[LAYOUT.metrics + metric_index(BuiltinOpcode.NOP)] = MASK32
    device = make_device(image)
    fill_slot(image, 0, SlotState.CLAIMED, opcode=BuiltinOpcode.NOP)
    complete(device, 0, BuiltinOpcode.NOP, (), fault=False)
    assert image[ControlWord.DONE_COUNT] == 0
    assert image[LAYOUT.metrics + metric_index(BuiltinOpcode.NOP)] == 0
    assert image[ControlWord.FAULT_COUNT] == MASK32  # DONE does not count as a fault
    fill_slot(image, 1, SlotState.CLAIMED, opcode=BuiltinOpcode.NOP)
    complete(device, 1, BuiltinOpcode.NOP, (SlotFault.BAD_ARGUMENT, 0, 0, 9), fault=True)
    assert (image[ControlWord.DONE_COUNT], image[ControlWord.FAULT_COUNT]) == (1, 0)
    assert read_slot(image, LAYOUT, 1).results == (SlotFault.BAD_ARGUMENT, 0, 0, 9)


def test_claim_count_wraps_at_two_to_the_32(image):
    image[ControlWord.CLAIM_COUNT] = MASK32
    publish(image, 0, SlotRequest(BuiltinOpcode.NOP))
    assert claim(make_device(image), 0)
    assert image[ControlWord.CLAIM_COUNT] == 0


def test_epoch_and_observable_arithmetic_wrap_at_two_to_the_32(image):
    context = DeviceContext(image, LAYOUT, _Lock(), {})
    image[ControlWord.EPOCH] = MASK32
    assert SIMPLE_BODIES[BuiltinOpcode.BATCH_FENCE](context, (3, 0xABC) + (0,) * 10) == (0,)
    assert (image[ControlWord.EPOCH], image[ControlWord.LAST_FENCE_TAG]) == (0, 0xABC)
    image[LAYOUT.observable_base + 1] = MASK32
    assert SIMPLE_BODIES[BuiltinOpcode.ATOMIC_ADD](context, (1, 2) + (0,) * 10) == (MASK32,)
    assert image[LAYOUT.observable_base + 1] == 1


def test_heartbeat_wraps_at_two_to_the_32(image):
    image[ControlWord.HEARTBEAT] = MASK32
    assert scan(make_device(image)) == []  # an idle pass over the ring
    assert image[ControlWord.HEARTBEAT] == 0


def test_completion_writes_counters_and_results_before_the_status(image):
    recording = RecordingImage(image)
    device = make_device(recording)
    fill_slot(recording, 2, SlotState.CLAIMED, opcode=BuiltinOpcode.ATOMIC_ADD)
    recording.stores.clear()
    complete(device, 2, BuiltinOpcode.ATOMIC_ADD, (41,), fault=False)
    base = LAYOUT.slot(2)
    assert recording.stores[-1] == words(base, base + 1)
    assert recording.stores[-2] == words(base + SlotWord.RESULT0, base + SLOT_WORDS)
    assert any(ControlWord.DONE_COUNT in touched for touched in recording.stores[:-2])
    assert image[LAYOUT.metrics + metric_index(BuiltinOpcode.ATOMIC_ADD)] == 1  # (np.add.at: not recorded)
    assert read_slot(image, LAYOUT, 2).results == (41, 0, 0, 0)
    assert read_slot(image, LAYOUT, 2).args[:8] == tuple(range(100, 108))  # arguments 0..7 survive


# ================================================================ claim rules on the device


@pytest.fixture
def two_tenants(image) -> np.ndarray:
    image[LAYOUT.tenant_masks + 0] = 0  # tenant 0 paused
    return image


def test_a_paused_tenants_slot_is_not_claimed_and_stays_published(two_tenants):
    image = two_tenants
    publish(image, 0, SlotRequest(BuiltinOpcode.NOP, tenant=0))
    before = image.copy()
    assert not claim(make_device(image), 0)
    assert np.array_equal(image, before)
    assert read_slot(image, LAYOUT, 0).state == SlotState.PUBLISHED


def test_the_ring_scan_skips_a_paused_tenants_slot_instead_of_stopping_at_it(two_tenants):
    image = two_tenants
    publish(image, 0, SlotRequest(BuiltinOpcode.NOP, tenant=0))
    publish(image, 6, SlotRequest(BuiltinOpcode.NOP, tenant=1))
    device = make_device(image)
    assert scan(device) == [6]
    assert claim(device, 6)
    assert scan(device) == []  # only the paused slot is left: wait, do not spin on it
    image[LAYOUT.tenant_masks + 0] = MASK32  # resumed
    assert scan(device) == [0]


@pytest.mark.parametrize("tenant", [LAYOUT.tenants, 63, 64, MASK32])
def test_a_tenant_id_past_the_mask_table_is_claimed_and_faults_bad_tenant(image, tenant):
    fill_slot(image, 4, SlotState.PUBLISHED, opcode=BuiltinOpcode.STORE_U32, tenant=tenant)
    device = make_device(image)
    assert claim(device, 4)
    run_claimed(device, 4)
    view = read_slot(image, LAYOUT, 4)
    assert view.state == SlotState.FAULT
    assert view.results == (SlotFault.BAD_TENANT, 0, 0, tenant)


@pytest.mark.parametrize("state", [SlotState.PUBLISHED, SlotState.YIELD, SlotState.REQUEUE])
def test_published_yielded_and_requeued_slots_are_claimable(image, state):
    fill_slot(image, 1, state)
    assert claim(make_device(image), 1)
    assert read_slot(image, LAYOUT, 1).state == SlotState.CLAIMED
    assert image[ControlWord.CLAIM_COUNT] == 1


@pytest.mark.parametrize(
    "state", [SlotState.EMPTY, SlotState.CLAIMED, SlotState.DONE, SlotState.WAIT_IO, SlotState.FAULT]
)
def test_slots_in_other_states_are_not_claimable(image, state):
    fill_slot(image, 1, state)
    before = image.copy()
    assert not claim(make_device(image), 1)
    assert np.array_equal(image, before)


@pytest.mark.parametrize("opcode", [0xC, 0xFFF, 0x1400, 0xFFFFFFFE, USER_OPCODE_BASE])
def test_an_opcode_the_device_cannot_run_faults_bad_opcode(image, opcode):
    fill_slot(image, 2, SlotState.CLAIMED, opcode=opcode)
    device = make_device(image)
    run_claimed(device, 2)
    assert read_slot(image, LAYOUT, 2).results == (SlotFault.BAD_OPCODE, 0, 0, opcode)
    metered = metric_index(opcode)
    assert int(image[LAYOUT.metrics : LAYOUT.metrics + 1040].sum()) == (1 if metered >= 0 else 0)


def special_registers_program() -> Program:
    """Every lane emits (input byte 0, OWN_LO, OWN_HI, REGION_LEN, FILE_OFFSET_LO/HI, CHUNK_INDEX,
    LANE_COUNT): what the device made of each RUN_PROGRAM argument word."""
    names = ("OWN_LO", "OWN_HI", "REGION_LEN", "FILE_OFFSET_LO", "FILE_OFFSET_HI", "CHUNK_INDEX", "LANE_COUNT")
    code = [Instruction(isa.Op.LDI8, d=0, a=0)]
    code += [Instruction(isa.Op.SREG, d=i + 1, imm=isa.SpecialRegister[name]) for i, name in enumerate(names)]
    code += [Instruction(isa.Op.EMIT, a=0), Instruction(isa.Op.EXIT)]
    return Program(name="echo_run_args", registers=8, emit_words=8, lanes=1, code=tuple(code))


def run_args(registry: Registry, program: int | None) -> tuple[int, ...]:
    context = registry.add_context(fuel=None, emit_capacity=16)
    region = registry.add_region(bytes(range(200)))
    words = {
        RunArg.PROGRAM: program or 0,
        RunArg.CONTEXT: context,
        RunArg.REGION: region,
        RunArg.OFFSET_LO: 10,
        RunArg.OFFSET_HI: 0,
        RunArg.LENGTH: 50,
        RunArg.OWN_LO: 5,
        RunArg.OWN_HI: 45,
        RunArg.FILE_OFFSET_LO: 0x1234,
        RunArg.FILE_OFFSET_HI: 7,
        RunArg.CHUNK_INDEX: 99,
        RunArg.LANES: 3,
    }
    args = tuple(words[arg] for arg in RunArg)
    return args if program is not None else args[1:]  # a user opcode's slot has no PROGRAM word


@pytest.mark.parametrize("how", ["RUN_PROGRAM", "user opcode"])
def test_run_program_and_user_opcodes_read_their_arguments_at_the_runarg_positions(image, how):
    registry = Registry()
    program = registry.add_program(special_registers_program())
    if how == "RUN_PROGRAM":
        opcode, args = BuiltinOpcode.RUN_PROGRAM, run_args(registry, program)
    else:
        opcode, args = USER_OPCODE_BASE + 16 + 3, run_args(registry, None)
        registry.bind_opcode(opcode, program, tenant=1)
    publish(image, 0, SlotRequest(opcode, args, tenant=1))
    device = make_device(image, registry)
    assert claim(device, 0)
    run_claimed(device, 0)
    view = read_slot(image, LAYOUT, 0)
    assert view.state == SlotState.DONE
    records, dropped, instructions_lo, instructions_hi = view.results
    assert (records, dropped, instructions_hi) == (3, 0, 0)
    assert instructions_lo == 3 * len(special_registers_program().code)
    context = registry.contexts[args[RunArg.CONTEXT - (0 if how == "RUN_PROGRAM" else 1)]]
    assert context.result.records.tolist() == [[10, 5, 45, 50, 0x1234, 7, 99, 3]] * 3


def test_run_program_with_unregistered_handles_faults_bad_handle(image):
    fill_slot(image, 2, SlotState.CLAIMED, opcode=BuiltinOpcode.RUN_PROGRAM)
    image[LAYOUT.slot(2) + SlotWord.ARG0 : LAYOUT.slot(2) + SLOT_WORDS] = 0  # handle 0 is never valid
    device = make_device(image)
    run_claimed(device, 2)
    assert read_slot(image, LAYOUT, 2).results == (SlotFault.BAD_HANDLE, 0, 0, 0)


# ================================================================ built-in bodies at their bounds


def run_body(image: np.ndarray, opcode: int, *args: int, dfas: dict | None = None) -> tuple[int, ...]:
    context = DeviceContext(image, LAYOUT, _Lock(), dfas or {})
    return SIMPLE_BODIES[opcode](context, tuple(args) + (0,) * (ARGS_PER_SLOT - len(args)))


OUT_OF_RANGE_BODIES = {
    "STORE_U32 at N": (BuiltinOpcode.STORE_U32, (LAYOUT.observables, 1), LAYOUT.observables),
    "STORE_U32 at 2^32-1": (BuiltinOpcode.STORE_U32, (MASK32, 1), MASK32),
    "ATOMIC_ADD at N": (BuiltinOpcode.ATOMIC_ADD, (LAYOUT.observables, 1), LAYOUT.observables),
    "LOAD_U32 from N": (BuiltinOpcode.LOAD_U32, (LAYOUT.observables, 0), LAYOUT.observables),
    "LOAD_U32 to N": (BuiltinOpcode.LOAD_U32, (0, LAYOUT.observables), LAYOUT.observables),
    "COMPARE_SWAP at N": (BuiltinOpcode.COMPARE_SWAP, (LAYOUT.observables, 0, 1), LAYOUT.observables),
    "MEMCPY source past N": (BuiltinOpcode.MEMCPY, (LAYOUT.observables - 1, 0, 2), LAYOUT.observables - 1),
    "MEMCPY destination past N": (BuiltinOpcode.MEMCPY, (0, 1, LAYOUT.observables), 1),
    "MEMCPY count 2^32-1": (BuiltinOpcode.MEMCPY, (1, 0, MASK32), 1),
}


@pytest.mark.parametrize("case", OUT_OF_RANGE_BODIES.values(), ids=OUT_OF_RANGE_BODIES.keys())
def test_builtins_never_touch_words_outside_the_observables(image, case):
    opcode, args, detail = case
    before = image.copy()
    with pytest.raises(SlotFaultRaised) as raised:
        run_body(image, opcode, *args)
    assert (raised.value.code, raised.value.detail) == (SlotFault.BAD_ARGUMENT, detail)
    assert np.array_equal(image, before)


def test_builtins_reach_the_last_observable_and_memcpy_is_overlap_safe(image):
    last = LAYOUT.observables - 1
    assert run_body(image, BuiltinOpcode.STORE_U32, last, 9) == ()
    assert run_body(image, BuiltinOpcode.LOAD_U32, last, 0) == (9,)
    assert run_body(image, BuiltinOpcode.COMPARE_SWAP, last, 8, 1) == (9,)  # expected differs: unchanged
    assert run_body(image, BuiltinOpcode.COMPARE_SWAP, last, 9, 1) == (9,)
    assert image[LAYOUT.observable_base + last] == 1
    observables = image[LAYOUT.observable_base : LAYOUT.observable_base + LAYOUT.observables]
    observables[:4] = [1, 2, 3, 4]
    assert run_body(image, BuiltinOpcode.MEMCPY, 0, 1, 3) == (3,)
    assert observables[:4].tolist() == [1, 1, 2, 3]
    assert run_body(image, BuiltinOpcode.MEMCPY, 1, 0, 3) == (3,)
    assert observables[:4].tolist() == [1, 2, 3, 3]
    assert run_body(image, BuiltinOpcode.MEMCPY, LAYOUT.observables, 0, 0) == (0,)  # empty copy at the end


def test_printf_reports_whether_its_record_was_written(image):
    results = [run_body(image, BuiltinOpcode.PRINTF, 7, i, 0) for i in range(LAYOUT.debug_records + 2)]
    assert results == [(1,)] * LAYOUT.debug_records + [(0,), (0,)]
    assert debuglog.dropped(image, LAYOUT) == 2


def test_shutdown_opcode_stores_one_in_the_shutdown_word(image):
    assert run_body(image, BuiltinOpcode.SHUTDOWN) == ()
    assert image[ControlWord.SHUTDOWN] == 1


# ---------------------------------------------------------------- DFA_STEP


def dfa_args(handle: int, state: int, data: bytes) -> tuple[int, ...]:
    padded = data + bytes(DFA_STEP_MAX_BYTES - len(data))
    return (handle, state, len(data), *np.frombuffer(padded, dtype="<u4").tolist())


def positions_where_a_pattern_ends(patterns: list[bytes], data: bytes) -> int:
    return sum(any(data[: end + 1].endswith(p) for p in patterns) for end in range(len(data)))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.lists(st.sampled_from(b"abc"), min_size=1, max_size=4).map(bytes), min_size=1, max_size=4),
    st.lists(st.sampled_from(b"abcd"), max_size=120).map(bytes),
    st.integers(1, DFA_STEP_MAX_BYTES),
)
def test_dfa_step_chained_over_chunks_counts_what_a_brute_force_walk_counts(patterns, data, chunk):
    image = new_image(LAYOUT)
    registry = Registry()
    handle = registry.add_dfa(compile_patterns(patterns))
    state, matches = 0, 0
    for start in range(0, len(data), chunk):
        args = dfa_args(handle, state, data[start : start + chunk])
        state, found = run_body(image, BuiltinOpcode.DFA_STEP, *args, dfas=registry.dfas)
        matches += found
    assert matches == positions_where_a_pattern_ends(patterns, data)
    table = registry.dfas[handle]
    walked = 0
    for byte in data:
        walked = int(table[walked, byte]) & 0x7FFFFFFF
    assert state == walked


def test_dfa_step_faults_on_a_bad_handle_count_or_state(image):
    registry = Registry()
    handle = registry.add_dfa(compile_patterns([b"ab"]))
    states = len(registry.dfas[handle])
    cases = [
        (dfa_args(handle + 1, 0, b"ab"), SlotFault.BAD_HANDLE, handle + 1),
        (dfa_args(0, 0, b"ab"), SlotFault.BAD_HANDLE, 0),
        ((handle, 0, DFA_STEP_MAX_BYTES + 1) + (0,) * 9, SlotFault.BAD_ARGUMENT, DFA_STEP_MAX_BYTES + 1),
        ((handle, 0, MASK32) + (0,) * 9, SlotFault.BAD_ARGUMENT, MASK32),
        (dfa_args(handle, states, b"ab"), SlotFault.BAD_ARGUMENT, states),
        (dfa_args(handle, MASK32, b"ab"), SlotFault.BAD_ARGUMENT, MASK32),
    ]
    for args, code, detail in cases:
        with pytest.raises(SlotFaultRaised) as raised:
            run_body(image, BuiltinOpcode.DFA_STEP, *args, dfas=registry.dfas)
        assert (raised.value.code, raised.value.detail) == (code, detail)


def test_dfa_step_of_zero_bytes_returns_the_state_unchanged(image):
    registry = Registry()
    handle = registry.add_dfa(compile_patterns([b"abc"]))
    assert run_body(image, BuiltinOpcode.DFA_STEP, *dfa_args(handle, 2, b""), dfas=registry.dfas) == (2, 0)
    full = run_body(image, BuiltinOpcode.DFA_STEP, *dfa_args(handle, 0, b"abc" * 12), dfas=registry.dfas)
    assert full[1] == 12


# ================================================================ debug log


def append(image: np.ndarray, n: int, first: int = 0) -> list[bool]:
    return [debuglog.append_record(image, LAYOUT, 0x100 + i, i, ~i & MASK32, 3, 1) for i in range(first, first + n)]


def write_cursor(image: np.ndarray) -> int:
    return int(image[LAYOUT.debug_log + DebugWord.WRITE_CURSOR])


def test_a_full_log_drops_and_counts_records_and_its_cursor_stops_at_capacity(image):
    capacity = LAYOUT.debug_records
    assert append(image, capacity) == [True] * capacity
    records_before = image[LAYOUT.debug_log : LAYOUT.io_queue].copy()
    assert append(image, 100) == [False] * 100
    assert write_cursor(image) == capacity
    assert debuglog.dropped(image, LAYOUT) == 100
    after = image[LAYOUT.debug_log : LAYOUT.io_queue]
    assert np.array_equal(after[DebugWord.HEADER_WORDS :], records_before[DebugWord.HEADER_WORDS :])  # untouched
    assert [r.a for r in debuglog.decode(image, LAYOUT)] == list(range(capacity))


def test_draining_frees_space_and_returns_records_in_order(image):
    append(image, 3)
    records = debuglog.drain(image, LAYOUT)
    assert [(r.sequence, r.format_id, r.a, r.b, r.slot, r.tenant) for r in records] == [
        (i, 0x100 + i, i, ~i & MASK32, 3, 1) for i in range(3)
    ]
    assert image[ControlWord.DEBUG_READ_CURSOR] == 3
    assert debuglog.drain(image, LAYOUT) == []
    assert append(image, LAYOUT.debug_records, first=3) == [True] * LAYOUT.debug_records
    assert append(image, 1) == [False]
    assert [r.sequence for r in debuglog.drain(image, LAYOUT)] == [3, 4, 5, 6]


def test_the_log_keeps_working_when_its_cursors_wrap_at_two_to_the_32(image):
    start = MASK32 - 1
    image[LAYOUT.debug_log + DebugWord.WRITE_CURSOR] = start
    image[ControlWord.DEBUG_READ_CURSOR] = start
    image[LAYOUT.debug_log + DebugWord.DROPPED] = MASK32
    assert append(image, 5) == [True] * 4 + [False]
    assert debuglog.dropped(image, LAYOUT) == 0  # DROPPED wraps too
    assert write_cursor(image) == 2
    assert [r.sequence for r in debuglog.decode(image, LAYOUT)] == [start, MASK32, 0, 1]
    assert [r.a for r in debuglog.drain(image, LAYOUT)] == [0, 1, 2, 3]
    assert image[ControlWord.DEBUG_READ_CURSOR] == 2


def test_a_record_is_reserved_first_and_its_sequence_is_written_last(image):
    recording = RecordingImage(image)
    debuglog.append_record(recording, LAYOUT, 1, 2, 3, 4, 5)
    record = LAYOUT.debug_log + DebugWord.HEADER_WORDS
    assert recording.stores[0] == words(LAYOUT.debug_log, LAYOUT.debug_log + 1)  # the write cursor
    assert recording.stores[-1] == words(record, record + 1)  # the sequence word
    assert image[record] == 1


@pytest.mark.parametrize(("write", "read"), [(5, 0), (0, 1), (MASK32, 0), (3, MASK32 - 1)])
def test_inconsistent_cursors_are_rejected_by_decode_and_drain(image, write, read):
    image[LAYOUT.debug_log + DebugWord.WRITE_CURSOR] = write
    image[ControlWord.DEBUG_READ_CURSOR] = read
    for reader in (debuglog.decode, debuglog.drain):
        with pytest.raises(ProtocolError, match="inconsistent"):
            reader(image, LAYOUT)
    assert image[ControlWord.DEBUG_READ_CURSOR] == read


def test_strict_decode_rejects_a_record_whose_sequence_does_not_match(image):
    append(image, 3)
    image[LAYOUT.debug_log + DebugWord.HEADER_WORDS + DEBUG_RECORD_WORDS] = 77  # record 1's sequence
    with pytest.raises(ProtocolError, match="sequence 77, expected 2"):
        debuglog.decode(image, LAYOUT)


def test_lenient_drain_stops_at_a_reserved_but_unwritten_record(image):
    append(image, 1)
    image[LAYOUT.debug_log + DebugWord.WRITE_CURSOR] = 2  # a device thread reserved record 1 ...
    with pytest.raises(ProtocolError):
        debuglog.decode(image, LAYOUT)
    assert [r.sequence for r in debuglog.drain(image, LAYOUT)] == [0]
    assert image[ControlWord.DEBUG_READ_CURSOR] == 1  # ... so the host stops before it
    record = LAYOUT.debug_log + DebugWord.HEADER_WORDS + DEBUG_RECORD_WORDS
    image[record + 1 : record + 6] = [9, 8, 7, 6, 5]
    image[record] = 2  # ... and finishes it, sequence last
    assert [(r.sequence, r.format_id) for r in debuglog.drain(image, LAYOUT)] == [(1, 9)]


# ================================================================ IO queue


def entry_words(image: np.ndarray, entry: int) -> list[int]:
    base = LAYOUT.io_queue + entry * 8
    return image[base : base + 8].tolist()


def test_posting_until_the_queue_is_full_returns_minus_one_and_writes_nothing(image):
    assert ioqueue.post_request(image, LAYOUT, 1, 0, 4, 0) == 0
    assert ioqueue.post_request(image, LAYOUT, 2, (1 << 40) + 5, 8, 1) == 1
    before = image.copy()
    assert ioqueue.post_request(image, LAYOUT, 3, 0, 4, 0) == -1
    assert np.array_equal(image, before)
    assert entry_words(image, 1) == [IoState.PUBLISHED, IoOp.READ, 2, 5, 1 << 8, 8, 1, 0]


def test_a_request_is_reserved_first_and_published_last(image):
    recording = RecordingImage(image)
    entry = ioqueue.post_request(recording, LAYOUT, 1, 0, 4, 0)
    status = LAYOUT.io_queue + entry * 8 + IoWord.STATUS
    assert recording.stores[0] == words(status, status + 1)
    assert recording.stores[-1] == words(status, status + 1)
    assert entry_words(image, entry)[IoWord.STATUS] == IoState.PUBLISHED
    assert len(recording.stores_inside(LAYOUT.io_queue + entry * 8, 8)) == len(recording.stores)


def test_claiming_is_idempotent_and_reads_the_64_bit_offset(image):
    ioqueue.post_request(image, LAYOUT, 2, (1 << 40) + 5, 8, 1)
    requests = ioqueue.claim_requests(image, LAYOUT)
    assert requests == [ioqueue.IoRequest(0, IoOp.READ, 2, (1 << 40) + 5, 8, 1)]
    assert entry_words(image, 0)[IoWord.STATUS] == IoState.CLAIMED
    before = image.copy()
    assert ioqueue.claim_requests(image, LAYOUT) == []  # a second poll never services it twice
    assert np.array_equal(image, before)


@pytest.mark.parametrize("state", [IoState.EMPTY, IoState.PUBLISHED, IoState.RESERVED, IoState.OK, IoState.ERROR])
def test_only_a_claimed_request_can_be_answered(image, state):
    image[LAYOUT.io_queue + IoWord.STATUS] = state
    before = image.copy()
    with pytest.raises(ProtocolError, match="not CLAIMED"):
        ioqueue.complete(image, LAYOUT, 0, ok=True, result=4)
    assert np.array_equal(image, before)


@pytest.mark.parametrize("entry", [-1, LAYOUT.io_entries, 1 << 32])
def test_an_entry_outside_the_queue_is_rejected(image, entry):
    with pytest.raises(ProtocolError, match="out of range"):
        ioqueue.complete(image, LAYOUT, entry, ok=True, result=0)
    with pytest.raises(ProtocolError, match="out of range"):
        ioqueue.take_answer(image, LAYOUT, entry)


@pytest.mark.parametrize(("ok", "result"), [(True, 12), (False, IoError.READ_FAILED), (False, MASK32)])
def test_an_answer_writes_the_result_then_the_status_and_the_device_frees_the_entry(image, ok, result):
    entry = ioqueue.post_request(image, LAYOUT, 1, 0, 12, 0)
    assert ioqueue.take_answer(image, LAYOUT, entry) is None  # not answered: nothing changes
    ioqueue.claim_requests(image, LAYOUT)
    assert ioqueue.take_answer(image, LAYOUT, entry) is None
    recording = RecordingImage(image)
    ioqueue.complete(recording, LAYOUT, entry, ok=ok, result=result)
    status = LAYOUT.io_queue + entry * 8
    assert recording.stores == [words(status + IoWord.RESULT, status + 8), words(status, status + 1)]
    assert entry_words(image, entry)[IoWord.STATUS] == (IoState.OK if ok else IoState.ERROR)
    assert ioqueue.take_answer(image, LAYOUT, entry) == (ok, result)
    assert entry_words(image, entry)[IoWord.STATUS] == IoState.EMPTY
    assert ioqueue.post_request(image, LAYOUT, 1, 0, 4, 0) == entry  # reusable


@pytest.mark.parametrize(("op", "nbytes"), [(IoOp.READ, 0), (0, 4), (2, 4), (MASK32, 4)])
def test_a_malformed_request_is_answered_error_malformed_at_once(image, op, nbytes):
    entry = ioqueue.post_request(image, LAYOUT, 1, 0, 4, 0)
    base = LAYOUT.io_queue + entry * 8
    image[base + IoWord.OP] = op
    image[base + IoWord.BYTES] = nbytes
    assert ioqueue.claim_requests(image, LAYOUT) == []
    assert ioqueue.take_answer(image, LAYOUT, entry) == (False, IoError.MALFORMED)


def test_strict_decode_reports_requests_and_skips_empty_and_reserved_entries(image):
    assert ioqueue.decode(image, LAYOUT) == []
    ioqueue.post_request(image, LAYOUT, 4, 8, 16, 2)
    image[LAYOUT.io_queue + 8 + IoWord.STATUS] = IoState.RESERVED  # entry 1 is being filled
    assert ioqueue.decode(image, LAYOUT) == [(0, IoState.PUBLISHED, ioqueue.IoRequest(0, IoOp.READ, 4, 8, 16, 2))]


@pytest.mark.parametrize("state", [4, 5, 0x12, MASK32])
def test_strict_decode_rejects_an_unknown_entry_state(image, state):
    image[LAYOUT.io_queue + 8 + IoWord.STATUS] = state
    with pytest.raises(ProtocolError, match="not an IO state"):
        ioqueue.decode(image, LAYOUT)
    assert ioqueue.claim_requests(image, LAYOUT) == []  # the host never services what it cannot read


@pytest.mark.parametrize("op", [0, 2, MASK32])
def test_strict_decode_rejects_an_unknown_op(image, op):
    ioqueue.post_request(image, LAYOUT, 4, 8, 16, 2)
    image[LAYOUT.io_queue + IoWord.OP] = op
    with pytest.raises(ProtocolError, match="not an IO op"):
        ioqueue.decode(image, LAYOUT)


# ---------------------------------------------------------------- LOAD_MISS end to end, host answering inline


def run_load_miss(image: np.ndarray, args: tuple[int, ...], answer) -> tuple[list[int], np.ndarray]:
    """Run a LOAD_MISS slot on the device; ``answer(request)`` plays the host when the device
    signals (on_complete), so the whole exchange happens on this thread."""
    states: list[int] = []

    def host() -> None:  # the device calls it when it waits on IO and when it completes the slot
        states.append(read_slot(image, LAYOUT, 0).state)
        for request in ioqueue.claim_requests(image, LAYOUT):
            ok, result = answer(request)
            ioqueue.complete(image, LAYOUT, request.entry, ok, result)

    publish(image, 0, SlotRequest(BuiltinOpcode.LOAD_MISS, args))
    device = make_device(image, on_complete=host)
    assert claim(device, 0)
    run_claimed(device, 0)
    return states, image[LAYOUT.observable_base : LAYOUT.observable_base + LAYOUT.observables]


def test_load_miss_asks_the_host_waits_in_wait_io_and_completes_with_the_bytes_loaded(image):
    def answer(request: ioqueue.IoRequest) -> tuple[bool, int]:
        assert (request.resource, request.offset, request.nbytes, request.destination) == (7, (2 << 32) | 3, 6, 4)
        base = LAYOUT.observable_base + request.destination
        image[base : base + 2] = np.frombuffer(b"abcdef\x00\x00", dtype="<u4")
        return True, request.nbytes

    states, observables = run_load_miss(image, (7, 3, 2, 6, 4), answer)
    assert states[0] == SlotState.WAIT_IO
    view = read_slot(image, LAYOUT, 0)
    assert (view.state, view.results) == (SlotState.DONE, (6, 0, 0, 0))
    assert observables[4:6].tobytes() == b"abcdef\x00\x00"
    assert entry_words(image, 0)[IoWord.STATUS] == IoState.EMPTY  # the device freed the entry


def test_a_load_miss_answered_error_faults_io_error_with_the_hosts_code(image):
    run_load_miss(image, (7, 0, 0, 4, 0), lambda request: (False, IoError.UNKNOWN_RESOURCE))
    view = read_slot(image, LAYOUT, 0)
    assert (view.state, view.results) == (SlotState.FAULT, (SlotFault.IO_ERROR, 0, 0, IoError.UNKNOWN_RESOURCE))
    assert entry_words(image, 0)[IoWord.STATUS] == IoState.EMPTY


@pytest.mark.parametrize(
    "args",
    [
        (7, 0, 0, 0, 0),  # zero bytes: the seed's defect
        (7, 0, 0, 4 * LAYOUT.observables + 1, 0),  # one byte past the observables
        (7, 0, 0, 4, LAYOUT.observables),  # destination past the observables
        (7, 0, 0, MASK32, 0),
    ],
    ids=["zero bytes", "too many bytes", "destination past the end", "2^32-1 bytes"],
)
def test_a_load_miss_that_cannot_fit_faults_before_asking_the_host(image, args):
    states, _ = run_load_miss(image, args, lambda request: pytest.fail("the host must not be asked"))
    assert states == [SlotState.FAULT]  # never WAIT_IO
    view = read_slot(image, LAYOUT, 0)
    assert (view.state, view.results) == (SlotState.FAULT, (SlotFault.BAD_ARGUMENT, 0, 0, args[3]))
    assert ioqueue.decode(image, LAYOUT) == []


def test_a_load_miss_that_finds_the_queue_full_at_shutdown_is_cancelled(image):
    for entry in range(LAYOUT.io_entries):
        image[LAYOUT.io_queue + entry * 8 + IoWord.STATUS] = IoState.CLAIMED
    image[ControlWord.SHUTDOWN] = 1
    run_load_miss(image, (7, 0, 0, 4, 0), lambda request: pytest.fail("nothing to claim"))
    assert read_slot(image, LAYOUT, 0).results == (SlotFault.CANCELLED, 0, 0, 0)


# ================================================================ doorbell

TAIL, HEAD = int(ControlWord.DOORBELL_TAIL), int(ControlWord.DOORBELL_HEAD)


def doorbell_entries(image: np.ndarray) -> list[int]:
    """The slot index each entry names (an entry never written reads as 0)."""
    region = image[LAYOUT.doorbell : LAYOUT.doorbell + LAYOUT.doorbells]
    return [doorbell_entry_slot(entry) for entry in region.tolist()]


def entry_slot(image: np.ndarray, position: int) -> int:
    return doorbell_entry_slot(int(image[LAYOUT.doorbell + position % LAYOUT.doorbells]))


def set_doorbell(image: np.ndarray, head: int, tail: int) -> None:
    image[HEAD], image[TAIL] = head & MASK32, tail & MASK32


def test_ringing_writes_the_entries_first_and_the_tail_last(image):
    before = image.copy()
    recording = RecordingImage(image)
    assert ring_doorbell(recording, LAYOUT, [5, 2, 7]) == 3
    region = range(LAYOUT.doorbell, LAYOUT.doorbell + LAYOUT.doorbells)
    assert recording.stores[-1] == (TAIL,)  # the tail, last and once
    assert recording.stores[:-1] and all(word in region for store in recording.stores[:-1] for word in store)
    assert doorbell_entries(image) == [5, 2, 7, 0]
    assert (image[TAIL], image[HEAD]) == (3, 0)  # the head is the device's: never written by the host
    changed = np.flatnonzero(image != before).tolist()
    assert changed == [TAIL, LAYOUT.doorbell, LAYOUT.doorbell + 1, LAYOUT.doorbell + 2]


def test_ringing_no_slots_writes_nothing(image):
    recording = RecordingImage(image)
    assert ring_doorbell(recording, LAYOUT, []) == 0
    assert recording.stores == []


@pytest.mark.parametrize("pending", [1, 2, 3])
@pytest.mark.parametrize("head", [0, 10, MASK32 - 1])
def test_a_nearly_full_doorbell_takes_the_first_slots_that_fit_and_returns_the_count(image, head, pending):
    set_doorbell(image, head, head + pending)
    room = LAYOUT.doorbells - pending
    offered = [100, 101, 102, 103, 104]
    assert ring_doorbell(image, LAYOUT, offered) == room
    assert image[TAIL] == (head + pending + room) & MASK32 == (head + LAYOUT.doorbells) & MASK32
    assert image[HEAD] == head
    for k, slot in enumerate(offered[:room]):
        assert entry_slot(image, head + pending + k) == slot
    assert not set(offered[room:]) & set(doorbell_entries(image))  # dropped: left to the scan


@pytest.mark.parametrize(("head", "tail"), [(0, 4), (9, 13), (MASK32 - 1, 2), (MASK32, 3), (MASK32 - 4, MASK32)])
def test_a_full_doorbell_writes_nothing_not_even_the_tail(image, head, tail):
    set_doorbell(image, head, tail)
    assert (tail - head) & MASK32 == LAYOUT.doorbells
    before = image.copy()
    recording = RecordingImage(image)
    assert ring_doorbell(recording, LAYOUT, [1, 2]) == 0
    assert recording.stores == []
    assert np.array_equal(image, before)


def test_positions_wrap_around_the_region(image):
    set_doorbell(image, 2, 2)
    assert ring_doorbell(image, LAYOUT, [11, 12, 13]) == 3  # positions 2, 3, 4 = entries 2, 3, 0
    assert doorbell_entries(image) == [13, 0, 11, 12]
    assert image[TAIL] == 5
    image[HEAD] = 5  # the device consumed all three
    assert ring_doorbell(image, LAYOUT, [14, 15, 16, 17]) == 4  # positions 5 .. 8 = entries 1, 2, 3, 0
    assert doorbell_entries(image) == [17, 14, 15, 16]
    assert image[TAIL] == 9


def test_the_u32_tail_wraps_at_two_to_the_32(image):
    # the example of docs/PROTOCOL.md 4.7: two pending, room for two of three slots
    set_doorbell(image, MASK32 - 2, MASK32)
    assert ring_doorbell(image, LAYOUT, [5, 6, 7]) == 2
    assert entry_slot(image, MASK32) == 5  # position 2^32 - 1: entry 3
    assert entry_slot(image, 0) == 6  # position 0: entry 0
    assert image[TAIL] == 1
    assert 7 not in doorbell_entries(image)
    image[HEAD] = 1  # consumed across the wrap
    assert ring_doorbell(image, LAYOUT, [7]) == 1
    assert (entry_slot(image, 1), image[TAIL]) == (7, 2)


def test_a_consumer_moving_the_head_frees_room(image):
    assert ring_doorbell(image, LAYOUT, [1, 2, 3, 4]) == 4
    assert ring_doorbell(image, LAYOUT, [5]) == 0  # full
    image[HEAD] = 2  # the device took entries 0 and 1
    assert ring_doorbell(image, LAYOUT, [5, 6, 7]) == 2
    assert doorbell_entries(image) == [5, 6, 3, 4]  # the pending entries 2 and 3 are untouched
    assert image[TAIL] == 6
    assert ring_doorbell(image, LAYOUT, [7]) == 0
    image[HEAD] = 6
    assert ring_doorbell(image, LAYOUT, [7]) == 1
    assert (doorbell_entries(image)[2], image[TAIL]) == (7, 7)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, MASK32),
    st.lists(st.tuples(st.booleans(), st.integers(0, 2 * LAYOUT.doorbells)), max_size=40),
)
def test_the_doorbell_never_overwrites_a_pending_entry_and_loses_no_hint_it_accepted(start, steps):
    """A model run: the host rings, a device consumes any number; from any u32 start."""
    image = new_image(LAYOUT)
    set_doorbell(image, start, start)
    pending: list[int] = []  # the hints accepted and not yet consumed, oldest first
    next_slot = 0
    for ring, n in steps:
        head, tail = int(image[HEAD]), int(image[TAIL])
        if ring:
            offered = [(next_slot + k) % LAYOUT.slots for k in range(n)]
            next_slot += n
            written = ring_doorbell(image, LAYOUT, offered)
            assert written == min(n, LAYOUT.doorbells - len(pending))
            pending += offered[:written]
        else:
            taken = min(n, (tail - head) & MASK32)
            got = [int(image[LAYOUT.doorbell + (head + k) % LAYOUT.doorbells]) for k in range(taken)]
            # what a device polling the entries checks: each one carries its own position's tag
            assert got == [doorbell_entry(head + k, slot, LAYOUT.doorbells) for k, slot in enumerate(pending[:taken])]
            del pending[:taken]
            image[HEAD] = (head + taken) & MASK32
        assert (int(image[TAIL]) - int(image[HEAD])) & MASK32 == len(pending) <= LAYOUT.doorbells
        head, tail = int(image[HEAD]), int(image[TAIL])
        assert [entry_slot(image, head + k) for k in range(len(pending))] == pending
        # the next position is not written yet: whatever its word holds (zero, or the previous lap's
        # entry) never carries that position's tag, so a polling device stops there
        unwritten = int(image[LAYOUT.doorbell + tail % LAYOUT.doorbells])
        assert all(unwritten != doorbell_entry(tail, slot, LAYOUT.doorbells) for slot in range(LAYOUT.slots))


def test_the_cpu_device_consumes_the_doorbell_and_claims_a_duplicated_hint_once(image):
    publish(image, 3, SlotRequest(BuiltinOpcode.NOP))
    publish(image, 5, SlotRequest(BuiltinOpcode.NOP))
    assert ring_doorbell(image, LAYOUT, [3, 5, 3]) == 3  # slot 3 hinted twice
    device = make_device(image)
    assert claim_hinted(device, [3, 5, 3]) == [3, 5]
    assert image[HEAD] == image[TAIL] == 3
    assert image[ControlWord.CLAIM_COUNT] == 2
    assert ring_doorbell(image, LAYOUT, [3]) == 1  # a stale hint: slot 3 is CLAIMED now
    assert claim_hinted(device, [3]) == []
    assert image[HEAD] == image[TAIL] == 4  # consumed anyway
    assert read_slot(image, LAYOUT, 3).state == SlotState.CLAIMED
    assert image[ControlWord.CLAIM_COUNT] == 2


def test_a_hint_dropped_by_a_full_doorbell_is_found_by_the_scan(image):
    set_doorbell(image, 7, 7 + LAYOUT.doorbells)  # full: the device has consumed nothing
    publish(image, 6, SlotRequest(BuiltinOpcode.NOP))
    assert ring_doorbell(image, LAYOUT, [6]) == 0
    device = make_device(image)
    assert scan(device) == [6]  # the periodic scan: delayed, never lost
    assert claim(device, 6)


def test_a_hinted_slot_of_a_paused_tenant_stays_published_and_the_scan_finds_it_later(two_tenants):
    image = two_tenants
    publish(image, 1, SlotRequest(BuiltinOpcode.NOP, tenant=0))
    assert ring_doorbell(image, LAYOUT, [1]) == 1
    device = make_device(image)
    assert claim_hinted(device, [1]) == []
    assert image[HEAD] == image[TAIL] == 1  # the hint is consumed ...
    assert read_slot(image, LAYOUT, 1).state == SlotState.PUBLISHED  # ... the slot is not
    image[LAYOUT.tenant_masks + 0] = MASK32  # resumed
    assert scan(device) == [1]


@pytest.mark.parametrize("capacity", [1, 4, 4096, 1 << 16])
@pytest.mark.parametrize("position", [0, 1, 4095, 4096, 1 << 20, MASK32 - 4096, MASK32])
def test_a_doorbell_entry_names_its_slot_and_differs_from_the_previous_lap_and_from_zero(capacity, position):
    for slot in (0, 1, LAYOUT.slots - 1, (1 << 20) - 1):
        entry = doorbell_entry(position, slot, capacity)
        assert doorbell_entry_slot(entry) == slot and 0 < entry <= MASK32
        previous_lap = doorbell_entry((position - capacity) & MASK32, slot, capacity)
        assert entry != previous_lap  # a stale entry of the same word never passes for this position's


@pytest.mark.parametrize("count", [0, 1, 3, 4096, 5000])
def test_hint_positions_count_up_from_the_tail_and_stop_where_the_doorbell_is_full(count):
    """doorbell_positions' steps come from a shared counting array (no np.arange per
    publication), grown for a publication longer than any before: the same positions."""
    from vyre_runtime.protocol import codec

    layout = Layout(slots=8192, tenants=2, observables=16, debug_records=4, io_entries=2, doorbells=8192)
    image = new_image(layout)
    image[int(ControlWord.DOORBELL_HEAD)], image[int(ControlWord.DOORBELL_TAIL)] = MASK32 - 1, MASK32 - 1
    positions, rung = codec.doorbell_positions(image, layout, count)
    assert rung == min(count, 8192)
    expected = [(MASK32 - 1 + min(k, rung)) & MASK32 for k in range(count)]
    assert positions.tolist() == expected
    assert codec._counting(3).tolist() == [0, 1, 2] and not codec._counting(3).flags.writeable


@pytest.mark.parametrize(("head", "pending"), [(0, 0), (0, 2), (MASK32 - 1, 1), (MASK32 - 2, 0), (7, 4)])
@pytest.mark.parametrize("slots", [[3], [5, 0, 7], [1, 6, 2, 4, 0]])
def test_a_small_run_batch_on_memoryviews_writes_what_the_vectorized_publication_writes(head, pending, slots):
    """Megakernel._publish_runs writes a stream's batch with codec.write_slots_fields and the
    DoorbellRinger (memoryview stores): the same words as write_uniform_slots, doorbell_positions
    and ring_doorbell, a full doorbell and a wrapping tail included."""
    from vyre_runtime.protocol import codec

    args = [tuple(range(10 * k, 10 * k + 12)) for k in range(len(slots))]
    vectorized, words = new_image(LAYOUT), new_image(LAYOUT)
    for image in (vectorized, words):
        set_doorbell(image, head, head + pending)
    hints, rung = codec.doorbell_positions(vectorized, LAYOUT, len(slots))
    codec.write_uniform_slots(vectorized, LAYOUT, np.asarray(slots), 0x10, 1, 2, np.asarray(args, np.uint32), hints)
    ring_doorbell(vectorized, LAYOUT, slots[:rung])
    ringer = codec.DoorbellRinger(words, LAYOUT)
    position, rung_words = ringer.positions(len(slots))
    assert rung_words == rung
    codec.write_slots_fields(codec.ring_words(words, LAYOUT), slots, 0x10, 1, 2, args, position, rung_words)
    ringer.ring_many(slots[:rung_words], position)
    assert np.flatnonzero(words != vectorized).tolist() == []


def test_a_small_run_batch_with_a_busy_slot_writes_nothing():
    from vyre_runtime.protocol import codec

    image = new_image(LAYOUT)
    ring = codec.ring_words(image, LAYOUT)
    ring[4 * SLOT_WORDS] = int(SlotState.PUBLISHED)  # slot 4 is someone else's
    before = image.copy()
    with pytest.raises(ProtocolError):
        codec.write_slots_fields(ring, [1, 4, 2], 0x10, 0, 1, [(1,), (2,), (3,)], 0, 3)
    assert (image == before).all()
