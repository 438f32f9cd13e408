"""The shared-image layout is a wire contract: every word position, limit and digest is pinned.

A CUDA device is compiled from these numbers (docs/PROTOCOL.md). Changing one on purpose means
changing the pinned value here, regenerating the document
(``python -m vyre_runtime.protocol.docgen --write``) and updating PINNED_LAYOUT_DIGEST.
"""

from __future__ import annotations

import re
from dataclasses import replace
from enum import IntEnum
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vyre_runtime.errors import ProtocolError
from vyre_runtime.protocol import layout as layout_module
from vyre_runtime.protocol import opcodes
from vyre_runtime.protocol.codec import check_image, new_image
from vyre_runtime.protocol.layout import (
    ARGS_PER_SLOT,
    CONTROL_HEADER_WORDS,
    DEBUG_RECORD_WORDS,
    IO_ENTRY_WORDS,
    MAX_DEBUG_RECORDS,
    MAX_DOORBELLS,
    MAX_IO_ENTRIES,
    MAX_OBSERVABLES,
    MAX_SLOTS,
    PRIORITY_OFFSET_WORDS,
    RESULT_WORDS,
    SLOT_WORDS,
    ControlWord,
    DebugWord,
    DeviceState,
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
    layout_digest,
)
from vyre_runtime.protocol.opcodes import (
    MAX_TENANTS,
    METRIC_WORDS,
    USER_METRIC_BASE,
    USER_OPCODE_BASE,
    USER_OPCODE_COUNT,
    BuiltinOpcode,
    metric_index,
    tenant_window,
)
from vyre_runtime.vir0.isa import FaultCode

# Update only together with docs/PROTOCOL.md and the CUDA header: a device built from the old
# constants must not load against a host built from the new ones.
PINNED_LAYOUT_DIGEST = 0x9D180B3A


def members(enum: type[IntEnum]) -> dict[str, int]:
    return {member.name: int(member) for member in enum}


# ---------------------------------------------------------------- pinned word positions


def test_slot_words_are_pinned():
    assert members(SlotWord) == {"STATUS": 0, "OPCODE": 1, "TENANT": 2, "PRIORITY": 3, "ARG0": 4, "RESULT0": 12}
    assert (SLOT_WORDS, ARGS_PER_SLOT, RESULT_WORDS) == (16, 12, 4)


def test_results_overwrite_exactly_the_last_four_arguments():
    assert SlotWord.ARG0 + ARGS_PER_SLOT == SLOT_WORDS
    assert SlotWord.RESULT0 == SlotWord.ARG0 + 8
    assert SlotWord.RESULT0 + RESULT_WORDS == SLOT_WORDS


def test_slot_states_are_pinned():
    assert members(SlotState) == {
        "EMPTY": 0,
        "PUBLISHED": 1,
        "CLAIMED": 2,
        "DONE": 3,
        "WAIT_IO": 4,
        "YIELD": 5,
        "REQUEUE": 6,
        "FAULT": 7,
    }
    assert {int(s) for s in layout_module.SCHEDULABLE} == {1, 5, 6}
    assert {int(s) for s in layout_module.IN_FLIGHT} == {1, 2, 4, 5, 6}


def test_control_words_are_pinned():
    assert members(ControlWord) == {
        "SHUTDOWN": 0,
        "DONE_COUNT": 1,
        "FAULT_COUNT": 2,
        "CLAIM_COUNT": 3,
        "EPOCH": 4,
        "LAST_FENCE_TAG": 5,
        "HEARTBEAT": 6,
        "DEVICE_STATE": 7,
        "LAYOUT_DIGEST": 8,
        "SLOT_COUNT": 9,
        "TENANT_COUNT": 10,
        "OBSERVABLE_COUNT": 11,
        "DEBUG_CAPACITY": 12,
        "IO_ENTRIES": 13,
        "DEBUG_READ_CURSOR": 14,
        "PAUSE": 15,
        "PRIORITY_OFFSETS": 16,
        "DOORBELL_TAIL": 22,
        "DOORBELL_HEAD": 23,
        "DOORBELL_CAPACITY": 24,
        "WATCH": 32,
    }
    assert (CONTROL_HEADER_WORDS, PRIORITY_OFFSET_WORDS) == (64, 6)


def test_control_words_do_not_overlap_and_fit_the_control_header():
    used: list[int] = []
    for word in ControlWord:
        span = PRIORITY_OFFSET_WORDS if word == ControlWord.PRIORITY_OFFSETS else 1
        used += range(word, word + span)
    assert len(used) == len(set(used))
    assert max(used) < CONTROL_HEADER_WORDS


def test_debug_words_are_pinned():
    assert members(DebugWord) == {"WRITE_CURSOR": 0, "DROPPED": 1, "HEADER_WORDS": 4}
    assert DEBUG_RECORD_WORDS == 8


def test_io_words_states_ops_and_errors_are_pinned():
    assert members(IoWord) == {
        "STATUS": 0,
        "OP": 1,
        "RESOURCE": 2,
        "OFFSET_LO": 3,
        "OFFSET_HI": 4,
        "BYTES": 5,
        "DESTINATION": 6,
        "RESULT": 7,
    }
    assert IO_ENTRY_WORDS == 8 == len(IoWord)
    assert members(IoState) == {"EMPTY": 0, "PUBLISHED": 1, "CLAIMED": 2, "RESERVED": 3, "OK": 0x10, "ERROR": 0x11}
    assert members(IoOp) == {"READ": 1}
    assert members(IoError) == {
        "UNKNOWN_RESOURCE": 1,
        "OUT_OF_RANGE": 2,
        "READ_FAILED": 3,
        "MALFORMED": 4,
        "SHUTTING_DOWN": 5,
    }


def test_priorities_device_states_and_faults_are_pinned():
    assert members(Priority) == {"CRITICAL": 0, "HIGH": 1, "NORMAL": 2, "LOW": 3, "BACKGROUND": 4}
    assert members(DeviceState) == {"NOT_STARTED": 0, "SERVING": 1, "EXITED": 2, "REFUSED": 3}
    assert members(SlotFault) == {
        "OOB_INPUT": 1,
        "OOB_TABLE": 2,
        "OOB_OUTPUT": 3,
        "FUEL_EXHAUSTED": 4,
        "TRAP": 5,
        "BAD_INSTRUCTION": 6,
        "BAD_OPCODE": 16,
        "BAD_TENANT": 17,
        "BAD_ARGUMENT": 18,
        "BAD_HANDLE": 19,
        "IO_ERROR": 20,
        "BAD_PACKED": 21,
        "CANCELLED": 22,
        "INTERNAL": 23,
    }


def test_run_program_arguments_are_pinned_and_fill_the_slot():
    assert members(RunArg) == {
        "PROGRAM": 0,
        "CONTEXT": 1,
        "REGION": 2,
        "OFFSET_LO": 3,
        "OFFSET_HI": 4,
        "LENGTH": 5,
        "OWN_LO": 6,
        "OWN_HI": 7,
        "FILE_OFFSET_LO": 8,
        "FILE_OFFSET_HI": 9,
        "CHUNK_INDEX": 10,
        "LANES": 11,
    }
    assert len(RunArg) == ARGS_PER_SLOT


def test_slot_faults_one_to_six_are_the_vir0_fault_codes():
    for code in FaultCode:
        if code != FaultCode.NONE:
            assert SlotFault(int(code)).name == code.name


def test_builtin_opcodes_and_opcode_space_are_pinned():
    assert members(BuiltinOpcode) == {
        "NOP": 0,
        "STORE_U32": 1,
        "ATOMIC_ADD": 2,
        "LOAD_U32": 3,
        "COMPARE_SWAP": 4,
        "MEMCPY": 5,
        "DFA_STEP": 6,
        "BATCH_FENCE": 7,
        "PRINTF": 8,
        "LOAD_MISS": 9,
        "PACKED_SLOT": 10,
        "RUN_PROGRAM": 11,
        "SHUTDOWN": 0xFFFFFFFF,
    }
    assert (opcodes.BUILTIN_LIMIT, USER_OPCODE_BASE, USER_OPCODE_COUNT) == (0x1000, 0x1000, 0x400)
    assert (opcodes.TENANT_WINDOW, MAX_TENANTS, opcodes.MAX_PACKED_OPS) == (16, 64, 7)
    assert {int(op) for op in opcodes.PACKABLE} == {0, 1, 2, 3, 4, 5, 8}


def test_tenant_windows_partition_the_user_opcodes():
    covered = [opcode for tenant in range(MAX_TENANTS) for opcode in tenant_window(tenant)]
    assert covered == list(range(USER_OPCODE_BASE, USER_OPCODE_BASE + USER_OPCODE_COUNT))
    assert tenant_window(1) == range(0x1010, 0x1020)


def test_metric_indices_are_pinned():
    assert [metric_index(op) for op in BuiltinOpcode] == [*range(12), 12]
    assert (USER_METRIC_BASE, METRIC_WORDS) == (16, 1040)
    assert metric_index(USER_OPCODE_BASE) == 16
    assert metric_index(USER_OPCODE_BASE + USER_OPCODE_COUNT - 1) == METRIC_WORDS - 1
    for unmetered in (0xC, 0xFFF, USER_OPCODE_BASE + USER_OPCODE_COUNT, 0xFFFFFFFE):
        assert metric_index(unmetered) == -1


# ---------------------------------------------------------------- regions


def test_default_layout_regions_are_pinned():
    assert Layout() == Layout(slots=1024, tenants=1, observables=256, debug_records=256, io_entries=64, doorbells=4096)
    assert Layout().regions() == [
        ("control", 0, 64),
        ("tenant_masks", 64, 1),
        ("metrics", 65, 1040),
        ("observables", 1105, 256),
        ("ring", 1376, 16384),
        ("debug_log", 17760, 2052),
        ("io_queue", 19812, 512),
        ("doorbell", 20324, 4096),
    ]
    assert Layout().total_words == 24420
    assert Layout().priority_offsets() == [0, 204, 408, 616, 820, 1024]


layouts = st.builds(
    Layout,
    slots=st.integers(1, MAX_SLOTS),
    tenants=st.integers(1, MAX_TENANTS),
    observables=st.integers(1, MAX_OBSERVABLES),
    debug_records=st.integers(0, 16).map(lambda exponent: 1 << exponent),
    io_entries=st.integers(1, MAX_IO_ENTRIES),
    doorbells=st.integers(0, 16).map(lambda exponent: 1 << exponent),
)


@settings(max_examples=300, deadline=None)
@given(layouts)
def test_regions_are_in_order_and_never_overlap(layout):
    regions = layout.regions()
    assert [name for name, _, _ in regions] == [
        "control",
        "tenant_masks",
        "metrics",
        "observables",
        "ring",
        "debug_log",
        "io_queue",
        "doorbell",
    ]
    assert regions[0][1] == 0
    for (_, first, count), (name, next_first, _) in pairwise(regions):
        end = first + count
        assert end <= next_first
        gap = next_first - end
        assert gap == 0 or (name == "ring" and gap < 16)  # only the ring is padded, to 16 words
    _, last_first, last_count = regions[-1]
    assert layout.total_words == last_first + last_count
    assert layout.tenant_masks == CONTROL_HEADER_WORDS
    assert regions[4][2] == layout.slots * SLOT_WORDS
    assert regions[5][2] == DebugWord.HEADER_WORDS + layout.debug_records * DEBUG_RECORD_WORDS
    assert regions[6][2] == layout.io_entries * IO_ENTRY_WORDS
    assert regions[7] == ("doorbell", layout.doorbell, layout.doorbells)
    assert layout.doorbell == layout.io_queue + layout.io_entries * IO_ENTRY_WORDS  # right after the IO queue
    assert layout.total_words == layout.doorbell + layout.doorbells  # and the doorbell ends the image
    assert layout.doorbell % 4 == 0  # 16-byte aligned, like the IO entries


@settings(max_examples=300, deadline=None)
@given(layouts, st.data())
def test_every_slot_starts_on_a_64_byte_boundary_inside_the_ring(layout, data):
    index = data.draw(st.integers(0, layout.slots - 1))
    assert layout.ring % 16 == 0
    assert layout.slot(index) % 16 == 0
    assert layout.slot(index) == layout.ring + index * SLOT_WORDS
    assert layout.slot(index) + SLOT_WORDS <= layout.debug_log


@settings(max_examples=200, deadline=None)
@given(layouts)
def test_slot_index_outside_the_ring_is_rejected(layout):
    for index in (-1, layout.slots, layout.slots + 1, -layout.slots):
        with pytest.raises(ProtocolError, match="out of range"):
            layout.slot(index)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, MAX_SLOTS))
def test_priority_partitions_cover_the_ring_in_order(slots):
    offsets = Layout(slots=slots).priority_offsets()
    assert len(offsets) == PRIORITY_OFFSET_WORDS
    assert offsets[0] == 0 and offsets[-1] == slots
    assert offsets == sorted(offsets)
    sizes = [b - a for a, b in pairwise(offsets)]
    assert sizes[Priority.NORMAL] == max(sizes)  # the remainder goes to NORMAL


# ---------------------------------------------------------------- limits

LIMITS = {
    "slots": MAX_SLOTS,
    "tenants": MAX_TENANTS,
    "observables": MAX_OBSERVABLES,
    "debug_records": MAX_DEBUG_RECORDS,
    "io_entries": MAX_IO_ENTRIES,
    "doorbells": MAX_DOORBELLS,
}


@pytest.mark.parametrize("name", LIMITS)
def test_each_layout_parameter_accepts_one_and_its_maximum(name):
    assert getattr(Layout(**{name: 1}), name) == 1
    assert getattr(Layout(**{name: LIMITS[name]}), name) == LIMITS[name]


@pytest.mark.parametrize("name", LIMITS)
@pytest.mark.parametrize("bad", [0, -1, "max+1", 1.0, "4", None])
def test_each_layout_parameter_rejects_zero_negative_over_the_limit_and_non_integers(name, bad):
    value = LIMITS[name] + 1 if bad == "max+1" else bad
    with pytest.raises(ProtocolError, match=name):
        Layout(**{name: value})


@pytest.mark.parametrize("records", [3, 6, 100, MAX_DEBUG_RECORDS - 1])
def test_debug_capacity_must_be_a_power_of_two(records):
    with pytest.raises(ProtocolError, match="power of two"):
        Layout(debug_records=records)


@pytest.mark.parametrize("doorbells", [3, 6, 100, 4095, MAX_DOORBELLS - 1])
def test_doorbell_capacity_must_be_a_power_of_two(doorbells):
    # an entry lives at position mod capacity: continuous across the u32 wrap only for a power of two
    with pytest.raises(ProtocolError, match=rf"doorbells={doorbells} must be a power of two"):
        Layout(doorbells=doorbells)


@pytest.mark.parametrize("doorbells", [0, -4, MAX_DOORBELLS + 1, MAX_DOORBELLS * 2, 4.0, "4096", None])
def test_doorbell_capacity_outside_one_to_the_maximum_is_rejected(doorbells):
    with pytest.raises(ProtocolError, match=re.escape(f"doorbells={doorbells!r} is out of range 1..{MAX_DOORBELLS}")):
        Layout(doorbells=doorbells)


@pytest.mark.parametrize("exponent", range(17))
def test_every_power_of_two_doorbell_capacity_up_to_the_maximum_is_accepted(exponent):
    layout = Layout(doorbells=1 << exponent)
    assert layout.regions()[-1] == ("doorbell", layout.doorbell, 1 << exponent)
    assert layout.total_words == Layout(doorbells=1).total_words + (1 << exponent) - 1


def test_limits_are_pinned():
    assert LIMITS == {
        "slots": 1 << 20,
        "tenants": 64,
        "observables": 1 << 20,
        "debug_records": 1 << 16,
        "io_entries": 1024,
        "doorbells": 1 << 16,
    }
    assert MAX_DEBUG_RECORDS & (MAX_DEBUG_RECORDS - 1) == 0
    assert MAX_DOORBELLS & (MAX_DOORBELLS - 1) == 0


def test_largest_layout_still_addresses_with_32_bit_word_offsets():
    largest = Layout(**LIMITS)
    assert largest.total_words * 4 < 1 << 32  # byte offsets of every word fit a u32


# ---------------------------------------------------------------- layout digest


def test_layout_digest_is_stable_and_pinned():
    assert layout_digest() == layout_digest()
    assert layout_digest() == PINNED_LAYOUT_DIGEST, (
        f"the layout digest is now {layout_digest():#010x}: if you changed a protocol constant on purpose, "
        "set PINNED_LAYOUT_DIGEST to it and run `python -m vyre_runtime.protocol.docgen --write`"
    )


# Geometry limits are host-side validation: the device reads the geometry from control words.
HOST_ONLY_CONSTANTS = {"MAX_SLOTS", "MAX_OBSERVABLES", "MAX_DEBUG_RECORDS", "MAX_IO_ENTRIES", "MAX_DOORBELLS"}


def wire_constants() -> list[str]:
    """Every public int constant the layout module sees (its own and those it imports)."""
    return sorted(
        name
        for name, value in vars(layout_module).items()
        if name.isupper() and type(value) is int and name not in HOST_ONLY_CONSTANTS
    )


def wire_enums() -> list[str]:
    return sorted(
        name
        for name, value in vars(layout_module).items()
        if isinstance(value, type) and issubclass(value, IntEnum) and value is not IntEnum
    )


def test_the_digest_covers_the_opcode_space_constants():
    # every opcodes.py constant a device enforces is visible (and therefore hashed) in layout.py
    for name in ("BUILTIN_LIMIT", "USER_OPCODE_BASE", "USER_OPCODE_COUNT", "TENANT_WINDOW", "MAX_PACKED_OPS"):
        assert name in wire_constants()


@pytest.mark.parametrize("name", wire_constants())
def test_changing_any_wire_constant_changes_the_digest(monkeypatch, name):
    before = layout_digest()
    monkeypatch.setattr(layout_module, name, getattr(layout_module, name) + 1)
    assert layout_digest() != before


@pytest.mark.parametrize("name", wire_enums())
def test_changing_any_wire_enum_changes_the_digest(monkeypatch, name):
    enum = getattr(layout_module, name)
    before = layout_digest()
    values = {member.name: int(member) for member in enum}
    first, unused = next(iter(values)), min(set(range(64)) - set(values.values()))
    renumbered = IntEnum(name, {**values, first: unused})
    monkeypatch.setattr(layout_module, name, renumbered)
    assert layout_digest() != before
    extended = IntEnum(name, {**values, "ADDED": unused})
    monkeypatch.setattr(layout_module, name, extended)
    assert layout_digest() != before


def test_changing_the_packable_set_changes_the_digest(monkeypatch):
    before = layout_digest()
    monkeypatch.setattr(layout_module, "PACKABLE", opcodes.PACKABLE - {BuiltinOpcode.PRINTF})
    assert layout_digest() != before


# ---------------------------------------------------------------- new_image / check_image


def test_new_image_writes_digest_geometry_partitions_and_enables_every_tenant():
    layout = Layout(slots=10, tenants=3, observables=5, debug_records=4, io_entries=2, doorbells=8)
    image = new_image(layout)
    assert image.dtype == np.uint32 and image.shape == (layout.total_words,)
    expected = np.zeros(layout.total_words, dtype=np.uint32)
    expected[ControlWord.LAYOUT_DIGEST] = layout_digest()
    expected[ControlWord.SLOT_COUNT : ControlWord.IO_ENTRIES + 1] = [10, 3, 5, 4, 2]
    expected[ControlWord.DOORBELL_CAPACITY] = 8  # DOORBELL_TAIL, DOORBELL_HEAD and the entries start at 0
    expected[ControlWord.PRIORITY_OFFSETS : ControlWord.PRIORITY_OFFSETS + 6] = [0, 2, 4, 6, 8, 10]
    expected[layout.tenant_masks : layout.tenant_masks + 3] = 0xFFFFFFFF
    assert np.array_equal(image, expected)
    check_image(image, layout)


@pytest.fixture
def small() -> tuple[Layout, np.ndarray]:
    layout = Layout(slots=10, tenants=3, observables=5, debug_records=4, io_entries=2, doorbells=8)
    return layout, new_image(layout)


@pytest.mark.parametrize("delta", [-1, 1])
def test_check_image_rejects_a_wrong_size(small, delta):
    layout, image = small
    resized = np.zeros(layout.total_words + delta, dtype=np.uint32)
    n = min(len(resized), len(image))
    resized[:n] = image[:n]
    with pytest.raises(ProtocolError, match="u32 words"):
        check_image(resized, layout)


@pytest.mark.parametrize(
    "convert",
    [
        lambda image: image.astype(np.int64),
        lambda image: image.astype(">u4"),
        lambda image: image.reshape(1, -1),
        lambda image: image.tolist(),
        lambda image: image.tobytes(),
    ],
    ids=["int64", "big-endian", "two-dimensional", "list", "bytes"],
)
def test_check_image_rejects_anything_but_a_flat_native_u32_array(small, convert):
    layout, image = small
    with pytest.raises(ProtocolError):
        check_image(convert(image), layout)


def test_check_image_rejects_a_wrong_digest(small):
    layout, image = small
    image[ControlWord.LAYOUT_DIGEST] ^= 1
    with pytest.raises(ProtocolError, match="digest"):
        check_image(image, layout)


@pytest.mark.parametrize(
    "word",
    [
        ControlWord.SLOT_COUNT,
        ControlWord.TENANT_COUNT,
        ControlWord.OBSERVABLE_COUNT,
        ControlWord.DEBUG_CAPACITY,
        ControlWord.IO_ENTRIES,
        ControlWord.DOORBELL_CAPACITY,
    ],
)
def test_check_image_rejects_geometry_that_disagrees_with_the_layout(small, word):
    layout, image = small
    image[word] += 1
    with pytest.raises(ProtocolError, match=word.name):
        check_image(image, layout)


@pytest.mark.parametrize(("name", "value"), [("slots", 11), ("doorbells", 16), ("doorbells", 4)])
def test_an_image_is_only_valid_for_its_own_layout(small, name, value):
    layout, image = small
    other = replace(layout, **{name: value})
    with pytest.raises(ProtocolError):
        check_image(image, other)


def test_check_image_accepts_a_doorbell_in_use(small):
    layout, image = small  # the tail, the head and the entries are live words, not geometry
    image[ControlWord.DOORBELL_TAIL] = 0xFFFFFFFF
    image[ControlWord.DOORBELL_HEAD] = 0xFFFFFFFB
    image[layout.doorbell : layout.total_words] = np.arange(layout.doorbells)
    check_image(image, layout)
