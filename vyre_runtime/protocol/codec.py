"""Strict views of the shared image: words from bytes, slots, control words, packed slots.

Every reader that takes bytes rejects a misaligned or truncated buffer with ProtocolError; the
host never trusts a payload before the status word says it may (status-last publication).
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vyre_runtime.errors import ProtocolError
from vyre_runtime.protocol.layout import (
    ARGS_PER_SLOT,
    CONTROL_HEADER_WORDS,
    DOORBELL_LAP_MASK,
    DOORBELL_SLOT_BITS,
    DOORBELL_TAG_FLAG,
    HINT_MASK,
    IN_FLIGHT,
    PRIORITY_BITS,
    PRIORITY_WATCHED,
    RESULT_WORDS,
    SLOT_WORDS,
    ControlWord,
    Layout,
    Priority,
    SlotState,
    SlotWord,
    layout_digest,
)
from vyre_runtime.protocol.opcodes import MAX_PACKED_OPS, PACKABLE, BuiltinOpcode, validate_publish_opcode

_SLOT_STATES = frozenset(int(state) for state in SlotState)
_EMPTY, _PUBLISHED = int(SlotState.EMPTY), int(SlotState.PUBLISHED)
_ZERO_PAYLOAD = bytes(4 * (SLOT_WORDS - 1))
_PRIORITIES = frozenset(int(priority) for priority in Priority)
# 0, 1, 2, ... as int64, sliced by _counting: a publication's doorbell steps without np.arange,
# which measured hundreds of microseconds of wall time per call in a stream (its fill lets other
# Python threads take the GIL, and the publisher waits to get it back, holding the doorbell lock)
_COUNTING = np.arange(4096, dtype=np.int64)
_COUNTING.flags.writeable = False


def words_from_bytes(buffer: bytes | bytearray | memoryview, expected_words: int | None = None) -> np.ndarray:
    """A u32 view of ``buffer``; rejects lengths that are not whole words or not the expected size."""
    length = memoryview(buffer).nbytes  # len() of a typed memoryview counts items, not bytes
    if length % 4:
        raise ProtocolError(f"buffer of {length} bytes is not a whole number of 32-bit words")
    if expected_words is not None and length != expected_words * 4:
        raise ProtocolError(f"buffer of {length // 4} words; this layout needs exactly {expected_words}")
    return np.frombuffer(buffer, dtype="<u4")


def new_image(layout: Layout) -> np.ndarray:
    """A fresh shared image: zeroed, geometry and digest written, every tenant enabled."""
    return init_image(np.zeros(layout.total_words, dtype=np.uint32), layout)


def init_image(image: np.ndarray, layout: Layout) -> np.ndarray:
    """Initialise ``image`` (e.g. host-mapped memory a backend allocated) in place, as new_image."""
    image[:] = 0
    image[ControlWord.LAYOUT_DIGEST] = layout_digest()
    image[ControlWord.SLOT_COUNT] = layout.slots
    image[ControlWord.TENANT_COUNT] = layout.tenants
    image[ControlWord.OBSERVABLE_COUNT] = layout.observables
    image[ControlWord.DEBUG_CAPACITY] = layout.debug_records
    image[ControlWord.IO_ENTRIES] = layout.io_entries
    image[ControlWord.DOORBELL_CAPACITY] = layout.doorbells
    offsets = layout.priority_offsets()
    image[ControlWord.PRIORITY_OFFSETS : ControlWord.PRIORITY_OFFSETS + len(offsets)] = offsets
    image[layout.tenant_masks : layout.tenant_masks + layout.tenants] = 0xFFFFFFFF
    return image


def check_image(image: np.ndarray, layout: Layout) -> None:
    """Refuse an image whose size, digest or geometry words disagree with ``layout``."""
    shape_ok = isinstance(image, np.ndarray) and image.dtype == np.uint32 and image.ndim == 1
    if not shape_ok or len(image) != layout.total_words:
        raise ProtocolError(f"shared image must be {layout.total_words} u32 words for this layout")
    if int(image[ControlWord.LAYOUT_DIGEST]) != layout_digest():
        raise ProtocolError("layout digest mismatch: host and device were built from different protocol constants")
    geometry = {
        ControlWord.SLOT_COUNT: layout.slots,
        ControlWord.TENANT_COUNT: layout.tenants,
        ControlWord.OBSERVABLE_COUNT: layout.observables,
        ControlWord.DEBUG_CAPACITY: layout.debug_records,
        ControlWord.IO_ENTRIES: layout.io_entries,
        ControlWord.DOORBELL_CAPACITY: layout.doorbells,
    }
    for word, value in geometry.items():
        if int(image[word]) != value:
            raise ProtocolError(f"control word {word.name} is {int(image[word])}, the layout says {value}")


@dataclass(frozen=True)
class SlotRequest:
    """What the host asks a slot to do; validated in full before any word is written."""

    opcode: int
    args: tuple[int, ...] = ()
    tenant: int = 0
    priority: Priority = Priority.NORMAL

    def validate(self, layout: Layout) -> None:
        validate_publish_opcode(self.opcode, self.tenant, layout.tenants)
        if len(self.args) > ARGS_PER_SLOT:
            raise ProtocolError(f"{len(self.args)} arguments; a slot carries at most {ARGS_PER_SLOT}")
        for arg in self.args:
            if not isinstance(arg, (int, np.integer)) or not 0 <= int(arg) <= 0xFFFFFFFF:
                raise ProtocolError(f"argument {arg!r} is not a u32")
        if self.priority not in _PRIORITIES:
            raise ProtocolError(f"priority {self.priority!r} is not one of {[p.name for p in Priority]}")


def ring_view(image: np.ndarray, layout: Layout) -> np.ndarray:
    """The ring as a (slots, 16) view of the image: one row per slot, columns are SlotWord."""
    return image[layout.ring : layout.ring + layout.slots * SLOT_WORDS].reshape(layout.slots, SLOT_WORDS)


def _refuse_busy(index: int, state: int) -> ProtocolError:
    name = SlotState(state).name if state in _SLOT_STATES else f"unknown ({state})"
    what = "in flight" if state in IN_FLIGHT else "holding unreaped results"
    return ProtocolError(
        f"slot {index} is {name} ({what}); republishing it would lose work",
        "wait for the slot to complete and be reaped, or publish into an EMPTY slot",
    )


def priority_word(priority: int, hint: int) -> int:
    """The PRIORITY word: the priority, and the publication's hint position mod 2^24 above it."""
    return priority | (hint & HINT_MASK) << PRIORITY_BITS


def _payload(requests: list[SlotRequest], hints: list[int]) -> np.ndarray:
    """Words 1..15 of each slot: opcode, tenant, priority word, arguments zero-filled (no stale args)."""
    payload = np.zeros((len(requests), SLOT_WORDS - 1), dtype=np.uint32)
    for row, (request, hint) in enumerate(zip(requests, hints)):
        payload[row, 0] = request.opcode
        payload[row, 1] = request.tenant
        payload[row, 2] = priority_word(request.priority, hint)
        payload[row, 3 : 3 + len(request.args)] = request.args
    return payload


def write_slot(image: np.ndarray, layout: Layout, index: int, request: SlotRequest, hint: int = 0) -> None:
    """Publish ``request`` into slot ``index``: payload first, status last (docs/PROTOCOL.md).

    The caller has validated ``request``. A slot still in flight is refused; a DONE or FAULT
    slot must be reaped (read, then set EMPTY) by its owner first. ``hint`` is the publication's
    hint position (`doorbell_positions`); a host that rings the doorbell MUST pass it.
    """
    base = layout.slot(index)
    state = int(image[base + SlotWord.STATUS])
    if state != SlotState.EMPTY:
        raise _refuse_busy(index, state)
    words = [request.opcode, request.tenant, priority_word(request.priority, hint), *request.args]
    image[base + 1 : base + 1 + len(words)] = words
    if 1 + len(words) < SLOT_WORDS:
        image[base + 1 + len(words) : base + SLOT_WORDS] = 0  # no stale arguments
    # status-last: on the CPU backend the GIL orders these stores; the CUDA backend adds a
    # store fence here for weakly ordered hosts (docs/PROTOCOL.md, "Publication").
    image[base + SlotWord.STATUS] = SlotState.PUBLISHED


def write_slot_words(words: memoryview, index: int, request: SlotRequest, hint: int) -> None:
    """`write_slot` on a memoryview of the ring (`ring_words`): the same words in the same
    order (payload, then status), for the one-slot publication of a future's latency path
    (a memoryview store costs ~40 ns, a NumPy element store ~100 and a slice store ~300)."""
    write_slot_fields(words, index, request.opcode, request.tenant, request.priority, request.args, hint)


def write_slot_fields(
    words: memoryview, index: int, opcode: int, tenant: int, priority: int, args: Sequence[int], hint: int
) -> None:
    """`write_slot_words` of a validated request given as its fields (a run's slot: no
    SlotRequest is built per run)."""
    base = index * SLOT_WORDS
    state = words[base]
    if state != _EMPTY:
        raise _refuse_busy(index, state)
    words[base + 1 : base + SLOT_WORDS] = _slot_payload(opcode, tenant, priority, args, hint)  # payload first ...
    words[base] = _PUBLISHED  # ... status last


def _slot_payload(opcode: int, tenant: int, priority: int, args: Sequence[int], hint: int) -> array:
    """A slot's words after its status (opcode, tenant, priority with the hint, the arguments)."""
    payload = array("I", _ZERO_PAYLOAD)
    payload[0] = opcode
    payload[1] = tenant
    payload[2] = priority | (hint & HINT_MASK) << PRIORITY_BITS
    payload[3 : 3 + len(args)] = array("I", args)
    return payload


def write_slots_fields(
    words: memoryview,
    indices: Sequence[int],
    opcode: int,
    tenant: int,
    priority: int,
    args: Sequence[Sequence[int]],
    position: int,
    rung: int,
) -> None:
    """`write_uniform_slots` on a memoryview of the ring (`ring_words`), for a small batch (a
    stream's runs): every slot is checked EMPTY before any is written, then the payloads, then
    the statuses. Slot k's hint position is ``position + min(k, rung)`` (`doorbell_positions`:
    DoorbellRinger.positions). NumPy's fancy indexing over the ring released the GIL and gave
    it to another thread mid-publication, with the doorbell lock held (~0.4 ms per batch in
    bench/stream_host.py); memoryview stores hold it."""
    for index in indices:
        state = words[index * SLOT_WORDS]
        if state != _EMPTY:
            raise _refuse_busy(index, state)
    for k, (index, row) in enumerate(zip(indices, args)):
        base = index * SLOT_WORDS
        hint = position + min(k, rung)
        words[base + 1 : base + SLOT_WORDS] = _slot_payload(opcode, tenant, priority, row, hint)  # payloads first ...
    for index in indices:
        words[index * SLOT_WORDS] = _PUBLISHED  # ... statuses last


def ring_words(image: np.ndarray, layout: Layout) -> memoryview:
    """The ring as flat u32 words on a memoryview: slot i's words start at i * SLOT_WORDS."""
    return memoryview(image)[layout.ring : layout.ring + layout.slots * SLOT_WORDS]


def write_slots(
    image: np.ndarray,
    layout: Layout,
    indices: list[int],
    requests: list[SlotRequest],
    hints: Sequence[int] | None = None,
) -> None:
    """Publish validated requests into EMPTY slots: every payload first, then every status.
    ``hints``: each publication's hint position (`doorbell_positions`; zeros when left out)."""
    hints = [0] * len(requests) if hints is None else [int(hint) for hint in hints]
    if len(indices) == 1 and len(requests) == 1:  # the common submit: scalar stores, no fancy indexing
        index = int(indices[0])
        if not 0 <= index < layout.slots:
            raise ProtocolError(f"slot indices must lie in 0..{layout.slots - 1}")
        write_slot(image, layout, index, requests[0], hints[0])
        return
    ring = ring_view(image, layout)
    rows = np.asarray(indices, dtype=np.int64)
    if len(rows) != len(requests):
        raise ProtocolError(f"{len(rows)} slot indices for {len(requests)} requests")
    if len(np.unique(rows)) != len(rows):
        raise ProtocolError("a slot index appears twice in one publication; one request would be lost")
    if len(rows) and (rows.min() < 0 or rows.max() >= layout.slots):
        raise ProtocolError(f"slot indices must lie in 0..{layout.slots - 1}")
    states = ring[rows, SlotWord.STATUS]
    busy = np.flatnonzero(states != SlotState.EMPTY)
    if len(busy):
        raise _refuse_busy(int(rows[busy[0]]), int(states[busy[0]]))
    ring[rows, 1:] = _payload(requests, hints)
    ring[rows, SlotWord.STATUS] = SlotState.PUBLISHED  # status last, as in write_slot


def write_uniform_slots(
    image: np.ndarray,
    layout: Layout,
    indices: np.ndarray,
    opcode: int,
    tenant: int,
    priority: int,
    args: np.ndarray,
    hints: np.ndarray | None = None,
) -> None:
    """Publish one validated opcode into many EMPTY slots, one argument row each (vectorized);
    ``hints``: each publication's hint position (`doorbell_positions`; zeros when left out)."""
    ring = ring_view(image, layout)
    rows = np.asarray(indices, dtype=np.int64)
    states = ring[rows, SlotWord.STATUS]
    busy = np.flatnonzero(states != SlotState.EMPTY)
    if len(busy):
        raise _refuse_busy(int(rows[busy[0]]), int(states[busy[0]]))
    payload = np.zeros((len(rows), SLOT_WORDS - 1), dtype=np.uint32)
    payload[:, 0] = opcode
    payload[:, 1] = tenant
    payload[:, 2] = priority if hints is None else priority | (np.asarray(hints) & HINT_MASK) << PRIORITY_BITS
    payload[:, 3 : 3 + args.shape[1]] = args
    ring[rows, 1:] = payload
    ring[rows, SlotWord.STATUS] = SlotState.PUBLISHED  # status last


@dataclass(frozen=True)
class SlotView:
    index: int
    state: SlotState
    opcode: int
    tenant: int
    priority: int
    args: tuple[int, ...]
    hint: int = 0  # the hint position mod 2^24 (the PRIORITY word's high bits)

    @property
    def results(self) -> tuple[int, ...]:
        return self.args[ARGS_PER_SLOT - RESULT_WORDS :]


def read_slot(image: np.ndarray, layout: Layout, index: int) -> SlotView:
    base = layout.slot(index)
    words = image[base : base + SLOT_WORDS].tolist()
    state = words[SlotWord.STATUS]
    if state not in _SLOT_STATES:
        raise ProtocolError(f"slot {index} has status {state}, which is not a slot state (corrupted ring)")
    # the priority asked for; PRIORITY_WATCHED marks a watched channel's call (its hint: the call's sequence)
    priority, hint = words[3] & ((1 << PRIORITY_BITS) - 1) & ~PRIORITY_WATCHED, words[3] >> PRIORITY_BITS
    return SlotView(index, SlotState(state), words[1], words[2], priority, tuple(words[SlotWord.ARG0 :]), hint)


def encode_packed(ops: list[tuple[int, tuple[int, ...]]]) -> tuple[int, ...]:
    """Arguments of a PACKED_SLOT carrying ``ops`` [(builtin opcode, args)], run in order.

    Layout of the 12 argument words: byte 0 = op count n (1..7); then n x (opcode u8,
    first argument word u8, argument count u8); metadata padded to whole words; then the
    arguments. Every op's argument words lie inside the slot.
    """
    if not 1 <= len(ops) <= MAX_PACKED_OPS:
        raise ProtocolError(f"a packed slot carries 1..{MAX_PACKED_OPS} ops, not {len(ops)}")
    metadata_bytes = 1 + 3 * len(ops)
    metadata_words = (metadata_bytes + 3) // 4
    metadata = bytearray([len(ops)])
    arg_words: list[int] = []
    for opcode, args in ops:
        if opcode not in PACKABLE:
            raise ProtocolError(
                f"opcode {opcode:#x} cannot be packed; packable: {sorted(op.name for op in PACKABLE)}",
                "publish it in its own slot",
            )
        if metadata_words + len(arg_words) + len(args) > ARGS_PER_SLOT:  # checked first: offsets are u8
            raise ProtocolError(
                f"packed ops need {metadata_words} metadata + {len(arg_words) + len(args)}+ argument words; "
                f"a slot has {ARGS_PER_SLOT}",
                "split the ops over several slots",
            )
        metadata += bytes([opcode, metadata_words + len(arg_words), len(args)])
        arg_words += [int(a) for a in args]
    metadata += bytes(metadata_words * 4 - len(metadata))
    words = list(np.frombuffer(bytes(metadata), dtype="<u4").tolist()) + arg_words
    for word in words:
        if not 0 <= word <= 0xFFFFFFFF:
            raise ProtocolError(f"packed argument {word} is not a u32")
    return tuple(words)


def decode_packed(args: tuple[int, ...]) -> list[tuple[int, tuple[int, ...]]]:
    """Inverse of encode_packed; raises ProtocolError on malformed metadata (device: BAD_PACKED)."""
    if len(args) != ARGS_PER_SLOT:
        raise ProtocolError(f"a packed slot has {ARGS_PER_SLOT} argument words, got {len(args)}")
    raw = np.asarray(args, dtype="<u4").tobytes()
    count = raw[0]
    if not 1 <= count <= MAX_PACKED_OPS:
        raise ProtocolError(f"packed op count {count} is outside 1..{MAX_PACKED_OPS}")
    metadata_words = (1 + 3 * count + 3) // 4
    ops = []
    for i in range(count):
        opcode, first, length = raw[1 + 3 * i : 4 + 3 * i]
        if opcode not in PACKABLE:
            raise ProtocolError(f"packed op {i} has opcode {opcode:#x}, which cannot be packed")
        if first < metadata_words or first + length > ARGS_PER_SLOT:
            raise ProtocolError(f"packed op {i} reads argument words {first}..{first + length - 1}, outside the slot")
        ops.append((int(opcode), tuple(args[first : first + length])))
    return ops


def _counting(count: int) -> np.ndarray:
    """0 .. count-1 as a read-only int64 view (a slice of one array, grown when too short)."""
    global _COUNTING
    counting = _COUNTING
    if count > len(counting):  # (rare: a publication of more slots than any before)
        counting = np.arange(max(count, 2 * len(counting)), dtype=np.int64)
        counting.flags.writeable = False
        _COUNTING = counting
    return counting[:count]


def doorbell_positions(image: np.ndarray, layout: Layout, count: int) -> tuple[np.ndarray, int]:
    """The hint positions of the next ``count`` publications, and how many of them get an entry.

    The first ``n`` (those the doorbell has room for) get the positions their entries will take,
    DOORBELL_TAIL + k; the rest the tail after those, DOORBELL_TAIL + n (docs/PROTOCOL.md, Hint
    positions). The caller holds the doorbell lock from here until it has rung exactly the first
    ``n`` slots (`ring_doorbell(image, layout, slots[:n])`), and writes the hints into the slots
    before their status stores.
    """
    tail = int(image[_DOORBELL_TAIL])
    room = layout.doorbells - ((tail - int(image[_DOORBELL_HEAD])) & 0xFFFFFFFF)
    written = max(0, min(room, count))
    steps = np.minimum(_counting(count), written)
    return (tail + steps) & 0xFFFFFFFF, written


def ring_doorbell(image: np.ndarray, layout: Layout, slots: list[int] | np.ndarray) -> int:
    """Host side: hint that ``slots`` were just published, so a device need not scan the ring.

    Entries (`doorbell_entry`: the slot, tagged with its position's lap) go at DOORBELL_TAIL
    (host-owned), then the tail moves (entries first, tail last). When the device has not
    consumed enough entries (DOORBELL_HEAD) the rest are left out: a hint is an optimisation, the
    device's periodic scan of the status words still finds every slot. Returns how many hints
    were written. The caller serialises host threads.
    """
    tail = int(image[_DOORBELL_TAIL])
    head = int(image[_DOORBELL_HEAD])
    capacity = layout.doorbells
    room = capacity - ((tail - head) & 0xFFFFFFFF)
    count = max(0, min(room, len(slots)))
    if count == 1:  # the latency path: scalar stores
        image[layout.doorbell + tail % capacity] = doorbell_entry(tail, slots[0], capacity)
        image[_DOORBELL_TAIL] = (tail + 1) & 0xFFFFFFFF
    elif count:
        positions = (tail + _counting(count)) & 0xFFFFFFFF
        laps = (positions // capacity) & DOORBELL_LAP_MASK
        entries = np.asarray(slots[:count], dtype=np.int64) | ((DOORBELL_TAG_FLAG | laps) << DOORBELL_SLOT_BITS)
        image[layout.doorbell + positions % capacity] = entries
        image[_DOORBELL_TAIL] = (tail + count) & 0xFFFFFFFF
    return count


class DoorbellRinger:
    """`ring_doorbell` for one slot, on memoryviews of the image: the channel's latency path.

    A NumPy element store costs ~70 ns and a slice store ~300 ns; a memoryview's ~40 ns, so one
    hint costs a few hundred nanoseconds instead of microseconds. Same words, same order (the
    entry, then the tail), same rule when the doorbell is full. The caller serialises host threads.
    """

    def __init__(self, image: np.ndarray, layout: Layout) -> None:
        words = memoryview(image)
        self._control = words[:CONTROL_HEADER_WORDS]
        self._entries = words[layout.doorbell : layout.doorbell + layout.doorbells]
        self._capacity = layout.doorbells
        self._lap_shift = layout.doorbells.bit_length() - 1  # a power of two

    def position(self) -> tuple[int, bool]:
        """`doorbell_positions` for one publication: its hint position, and whether it gets an entry."""
        tail = self._control[_DOORBELL_TAIL]
        return tail, (tail - self._control[_DOORBELL_HEAD]) & 0xFFFFFFFF < self._capacity

    def positions(self, count: int) -> tuple[int, int]:
        """`doorbell_positions` as (tail, rung): publication k of ``count`` takes hint position
        tail + min(k, rung) (a u32), and the first ``rung`` get entries (ring_many)."""
        tail = self._control[_DOORBELL_TAIL]
        room = self._capacity - ((tail - self._control[_DOORBELL_HEAD]) & 0xFFFFFFFF)
        return tail, max(0, min(room, count))

    def ring_many(self, slots: Sequence[int], position: int) -> None:
        """`ring_doorbell` of ``slots`` (the first ``rung`` of a batch: positions() found room
        for them) from hint position ``position``: every entry, then the tail."""
        if not slots:
            return
        entries, mask, shift = self._entries, self._capacity - 1, self._lap_shift
        for k, slot in enumerate(slots):
            at = (position + k) & 0xFFFFFFFF
            entries[at & mask] = slot | (DOORBELL_TAG_FLAG | ((at >> shift) & DOORBELL_LAP_MASK)) << DOORBELL_SLOT_BITS
        self._control[_DOORBELL_TAIL] = (position + len(slots)) & 0xFFFFFFFF  # entries first, tail last

    def ring_one(self, slot: int, position: int) -> None:
        """Hint that ``slot`` was just published, at ``position`` (from position(), which found room)."""
        tag = DOORBELL_TAG_FLAG | ((position >> self._lap_shift) & DOORBELL_LAP_MASK)
        self._entries[position & (self._capacity - 1)] = slot | tag << DOORBELL_SLOT_BITS
        self._control[_DOORBELL_TAIL] = (position + 1) & 0xFFFFFFFF  # entry first, tail last


def doorbell_entry(position: int, slot: int, capacity: int) -> int:
    """The word the host stores at doorbell position ``position`` (a u32) for ``slot``: the slot
    index in the low DOORBELL_SLOT_BITS bits, the tag of the position's lap above them."""
    lap = ((position & 0xFFFFFFFF) // capacity) & DOORBELL_LAP_MASK
    return slot | (DOORBELL_TAG_FLAG | lap) << DOORBELL_SLOT_BITS


def doorbell_entry_slot(entry: int) -> int:
    """The slot index a doorbell entry names (its tag bits removed)."""
    return entry & ((1 << DOORBELL_SLOT_BITS) - 1)


# plain ints for ring_doorbell, which runs on every publication (an enum lookup costs ~1 us)
_DOORBELL_TAIL, _DOORBELL_HEAD = int(ControlWord.DOORBELL_TAIL), int(ControlWord.DOORBELL_HEAD)


def counter_delta(before: int, after: int) -> int:
    """Increments between two reads of a wrapping u32 counter (fewer than 2^32 in between)."""
    return (after - before) & 0xFFFFFFFF


__all__ = [
    "MAX_PACKED_OPS",
    "BuiltinOpcode",
    "DoorbellRinger",
    "SlotRequest",
    "SlotView",
    "check_image",
    "counter_delta",
    "decode_packed",
    "doorbell_entry",
    "doorbell_entry_slot",
    "doorbell_positions",
    "encode_packed",
    "init_image",
    "new_image",
    "priority_word",
    "read_slot",
    "ring_doorbell",
    "ring_view",
    "ring_words",
    "words_from_bytes",
    "write_slot",
    "write_slot_words",
    "write_slots",
    "write_uniform_slots",
]
