"""Word layout of the memory shared by host and device: control, metrics, observables, ring,
debug log and IO queue, all in one array of little-endian u32 words.

Every position is defined here once; the CPU backend indexes with these names and the CUDA
header is generated from them (docs/PROTOCOL.md is the prose for the same numbers).
Ownership (who may write a word) is the "no concurrent read-modify-write across PCIe" rule:
device-owned words are only ever read by the host, except where noted as host-initialised.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from functools import cached_property

import blake3

from vyre_runtime.errors import ProtocolError
from vyre_runtime.protocol.opcodes import (
    BUILTIN_LIMIT,
    MAX_PACKED_OPS,
    MAX_TENANTS,
    METRIC_WORDS,
    PACKABLE,
    TENANT_WINDOW,
    USER_METRIC_BASE,
    USER_OPCODE_BASE,
    USER_OPCODE_COUNT,
    BuiltinOpcode,
)

SLOT_WORDS = 16
ARGS_PER_SLOT = 12
RESULT_WORDS = 4  # results overwrite the last four argument words when a slot completes
CONTROL_HEADER_WORDS = 64
MAX_SLOTS = 1 << 20
MAX_OBSERVABLES = 1 << 20
MAX_DEBUG_RECORDS = 1 << 16
MAX_IO_ENTRIES = 1024
MAX_DOORBELLS = 1 << 16
# A doorbell entry holds a slot index in its low DOORBELL_SLOT_BITS bits (every index < MAX_SLOTS
# fits) and, above them, the tag of the lap that wrote it: DOORBELL_TAG_FLAG | (lap &
# DOORBELL_LAP_MASK), lap = position // DOORBELL_CAPACITY. A device polls the entries themselves
# (no DOORBELL_TAIL round trip first): an entry not yet written in this lap still holds the previous
# lap's tag, or zero, and never passes for a new one (docs/PROTOCOL.md, The doorbell).
DOORBELL_SLOT_BITS = 20
DOORBELL_TAG_FLAG = 0x800
DOORBELL_LAP_MASK = 0x7FF
# A slot's PRIORITY word holds the priority in its low PRIORITY_BITS bits and, above them, the
# publication's hint position mod 2^24 (HINT_MASK): the doorbell position of its entry, or the tail
# it found if the doorbell had no room. The one claimer tells by it which publication it claimed,
# so that a later entry can be trusted without a status read (docs/PROTOCOL.md, Hint positions).
PRIORITY_BITS = 8
HINT_MASK = 0xFFFFFF
# Watched channels (docs/PROTOCOL.md, Watched channels): a CUDA device keeps loads of a few channel
# slots in flight all the time, so that a call is seen one PCIe read after it lands instead of a
# doorbell poll, a wait and a second read later. ControlWord.WATCH .. + WATCH_WORDS - 1 name the
# watched slots: WATCH_VALID | tenant << WATCH_TENANT_SHIFT | slot index (0: unused). A watched
# publication sets PRIORITY_WATCHED in its PRIORITY word; its hint bits then carry the channel's
# call sequence, echoed in ARG3, so one read of the slot's first 32 bytes proves them one call's.
WATCH_WORDS = 8
WATCH_VALID = 1 << 31
WATCH_TENANT_SHIFT = DOORBELL_SLOT_BITS
WATCH_TENANT_MASK = 0x3F  # MAX_TENANTS - 1
PRIORITY_WATCHED = 0x80


class SlotWord(IntEnum):
    STATUS = 0  # written last by whoever hands the slot over (status-last publication)
    OPCODE = 1
    TENANT = 2
    PRIORITY = 3
    ARG0 = 4  # ARG0 .. ARG0 + 11
    RESULT0 = 12  # RESULT0 .. RESULT0 + 3 = ARG8 .. ARG11, valid once status is DONE or FAULT


class SlotState(IntEnum):
    EMPTY = 0  # host may write
    PUBLISHED = 1  # host handed it over; device may claim
    CLAIMED = 2  # a device worker owns it
    DONE = 3  # results valid; host reaps, then writes EMPTY
    WAIT_IO = 4  # device worker waits on an IO-queue answer (LOAD_MISS)
    YIELD = 5  # device handed it back to be claimed again later (same payload)
    REQUEUE = 6  # device could not run it yet (e.g. program not resident); claim again
    FAULT = 7  # results hold fault code, pc, lane, detail; host reaps, then writes EMPTY


SCHEDULABLE = frozenset({SlotState.PUBLISHED, SlotState.YIELD, SlotState.REQUEUE})
IN_FLIGHT = frozenset({SlotState.PUBLISHED, SlotState.CLAIMED, SlotState.WAIT_IO, SlotState.YIELD, SlotState.REQUEUE})


class Priority(IntEnum):
    CRITICAL = 0
    HIGH = 1
    NORMAL = 2
    LOW = 3
    BACKGROUND = 4


class SlotFault(IntEnum):
    """FAULT result0. 1..6 are VIR0 program faults (vir0.isa.FaultCode); the rest are the slot's."""

    OOB_INPUT = 1
    OOB_TABLE = 2
    OOB_OUTPUT = 3
    FUEL_EXHAUSTED = 4
    TRAP = 5
    BAD_INSTRUCTION = 6
    BAD_OPCODE = 16  # not a built-in, not a bound user opcode
    BAD_TENANT = 17  # tenant id past the tenant-mask table
    BAD_ARGUMENT = 18  # an argument out of range (observable index, count, byte count)
    BAD_HANDLE = 19  # program, context, DFA or region handle not registered
    IO_ERROR = 20  # the host answered a LOAD_MISS with ERROR; detail = the host's error code
    BAD_PACKED = 21  # malformed PACKED_SLOT metadata
    CANCELLED = 22  # the runtime shut down before running it
    INTERNAL = 23  # the backend itself failed on this slot (a bug: please report it); others continue


class ControlWord(IntEnum):
    SHUTDOWN = 0  # host writes 1 (device SHUTDOWN opcode also stores 1): workers exit, for good
    DONE_COUNT = 1  # device: slots completed (DONE or FAULT), wraps at 2^32
    FAULT_COUNT = 2  # device: slots that ended FAULT
    CLAIM_COUNT = 3  # device: successful claims
    EPOCH = 4  # device: BATCH_FENCE count
    LAST_FENCE_TAG = 5  # device: tag of the latest BATCH_FENCE
    HEARTBEAT = 6  # device: advances while workers poll; a frozen heartbeat means a wedged device
    DEVICE_STATE = 7  # device: a DeviceState
    LAYOUT_DIGEST = 8  # host-initialised: 32 bits of the layout digest; the device refuses a mismatch
    SLOT_COUNT = 9  # host-initialised geometry, read by the device
    TENANT_COUNT = 10
    OBSERVABLE_COUNT = 11
    DEBUG_CAPACITY = 12
    IO_ENTRIES = 13
    DEBUG_READ_CURSOR = 14  # host-owned: debug records below it are consumed
    # host-owned: 1 = stop for a relaunch: the device finishes what it claimed, leaves the rest
    # PUBLISHED and exits; the host stores 0 again only while no device runs (PROTOCOL.md, 6.5)
    PAUSE = 15
    PRIORITY_OFFSETS = 16  # host-owned, 6 words: first slot of each priority partition, then SLOT_COUNT
    DOORBELL_TAIL = 22  # host-owned: doorbell entries written so far (wraps at 2^32)
    DOORBELL_HEAD = 23  # device-owned: doorbell entries consumed so far
    DOORBELL_CAPACITY = 24  # host-initialised geometry
    WATCH = 32  # host-owned, WATCH_WORDS words: the channel slots the device watches (0: unused)


PRIORITY_OFFSET_WORDS = len(Priority) + 1


class RunArg(IntEnum):
    """Argument words of a RUN_PROGRAM slot. A user opcode's slot carries the same list without
    PROGRAM (its binding names the program): user argument word = RunArg - 1."""

    PROGRAM = 0  # program handle
    CONTEXT = 1  # run-context handle (fuel, emit capacity; receives the run's outputs)
    REGION = 2  # data-region handle
    OFFSET_LO = 3  # first byte of the region the run reads (u64 with OFFSET_HI)
    OFFSET_HI = 4
    LENGTH = 5  # bytes the run reads (REGION_LEN)
    OWN_LO = 6  # owned byte range [OWN_LO, OWN_HI) inside those bytes
    OWN_HI = 7
    FILE_OFFSET_LO = 8  # file offset of the run's byte 0 (u64 with FILE_OFFSET_HI)
    FILE_OFFSET_HI = 9
    CHUNK_INDEX = 10
    LANES = 11  # 0: the program's default lane count


class DeviceState(IntEnum):
    """ControlWord.DEVICE_STATE, written by the device only."""

    NOT_STARTED = 0
    SERVING = 1
    EXITED = 2
    REFUSED = 3  # the device found a layout digest or geometry it was not built for, and never served


class DebugWord(IntEnum):
    """Debug-log header; records of DEBUG_RECORD_WORDS follow it."""

    WRITE_CURSOR = 0  # device: records reserved so far (only advances while there is room)
    DROPPED = 1  # device: records refused because the log was full
    HEADER_WORDS = 4


DEBUG_RECORD_WORDS = 8  # sequence (index + 1, written last), format id, a, b, slot, tenant, 0, 0


class IoWord(IntEnum):
    STATUS = 0  # IoState; device writes PUBLISHED and EMPTY, host writes CLAIMED, OK and ERROR
    OP = 1  # IoOp
    RESOURCE = 2
    OFFSET_LO = 3
    OFFSET_HI = 4
    BYTES = 5  # requested bytes (> 0)
    DESTINATION = 6  # first observable word to fill
    RESULT = 7  # host: bytes loaded (OK) or an error code (ERROR)


IO_ENTRY_WORDS = 8


class IoState(IntEnum):
    EMPTY = 0
    PUBLISHED = 1  # device asks
    CLAIMED = 2  # host took it (so a re-poll never services it twice)
    RESERVED = 3  # a device thread took the entry (CAS among device threads) and is filling it
    OK = 0x10
    ERROR = 0x11


class IoOp(IntEnum):
    READ = 1


class IoError(IntEnum):
    """RESULT of an ERROR answer; it reaches the slot as FAULT(IO_ERROR) detail."""

    UNKNOWN_RESOURCE = 1
    OUT_OF_RANGE = 2  # offset/bytes past the resource, or past the destination observables
    READ_FAILED = 3  # the loader raised
    MALFORMED = 4  # the request itself is malformed
    SHUTTING_DOWN = 5


@dataclass(frozen=True)
class Layout:
    """Geometry of one shared-memory image; every region's word offset derives from it."""

    slots: int = 1024
    tenants: int = 1
    observables: int = 256
    debug_records: int = 256
    io_entries: int = 64
    doorbells: int = 4096  # hint entries: "slot N was just published" (a power of two)

    def __post_init__(self) -> None:
        for name, value, limit in (
            ("slots", self.slots, MAX_SLOTS),
            ("tenants", self.tenants, MAX_TENANTS),
            ("observables", self.observables, MAX_OBSERVABLES),
            ("debug_records", self.debug_records, MAX_DEBUG_RECORDS),
            ("io_entries", self.io_entries, MAX_IO_ENTRIES),
            ("doorbells", self.doorbells, MAX_DOORBELLS),
        ):
            if not isinstance(value, int) or not 1 <= value <= limit:
                raise ProtocolError(f"layout {name}={value!r} is out of range 1..{limit}")
        if self.debug_records & (self.debug_records - 1):
            # record position = cursor % capacity must stay continuous when the u32 cursor wraps
            raise ProtocolError(f"layout debug_records={self.debug_records} must be a power of two")
        if self.doorbells & (self.doorbells - 1):
            raise ProtocolError(f"layout doorbells={self.doorbells} must be a power of two")

    @cached_property  # offsets are read on every slot: compute once
    def tenant_masks(self) -> int:
        return CONTROL_HEADER_WORDS

    @cached_property
    def metrics(self) -> int:
        return self.tenant_masks + self.tenants

    @cached_property
    def observable_base(self) -> int:
        return self.metrics + METRIC_WORDS

    @cached_property
    def ring(self) -> int:
        return _align16(self.observable_base + self.observables)  # slots on 64-byte boundaries

    @cached_property
    def debug_log(self) -> int:
        return self.ring + self.slots * SLOT_WORDS

    @cached_property
    def io_queue(self) -> int:
        return self.debug_log + DebugWord.HEADER_WORDS + self.debug_records * DEBUG_RECORD_WORDS

    @cached_property
    def doorbell(self) -> int:
        return self.io_queue + self.io_entries * IO_ENTRY_WORDS

    @cached_property
    def total_words(self) -> int:
        return self.doorbell + self.doorbells

    def slot(self, index: int) -> int:
        """Word offset of slot ``index``; bounds-checked."""
        if not 0 <= index < self.slots:
            raise ProtocolError(f"slot index {index} is out of range: this ring has slots 0..{self.slots - 1}")
        return self.ring + index * SLOT_WORDS

    def regions(self) -> list[tuple[str, int, int]]:
        """(name, first word, word count) of every region, in address order."""
        return [
            ("control", 0, CONTROL_HEADER_WORDS),
            ("tenant_masks", self.tenant_masks, self.tenants),
            ("metrics", self.metrics, METRIC_WORDS),
            ("observables", self.observable_base, self.observables),
            ("ring", self.ring, self.slots * SLOT_WORDS),
            ("debug_log", self.debug_log, DebugWord.HEADER_WORDS + self.debug_records * DEBUG_RECORD_WORDS),
            ("io_queue", self.io_queue, self.io_entries * IO_ENTRY_WORDS),
            ("doorbell", self.doorbell, self.doorbells),
        ]

    @cached_property
    def partition_offsets(self) -> tuple[int, ...]:
        return tuple(self.priority_offsets())

    def priority_offsets(self) -> list[int]:
        """Default partitions: an equal share of slots per priority, the remainder to NORMAL."""
        share, remainder = divmod(self.slots, len(Priority))
        sizes = [share] * len(Priority)
        sizes[Priority.NORMAL] += remainder
        offsets, start = [], 0
        for size in sizes:
            offsets.append(start)
            start += size
        return [*offsets, self.slots]


def _align16(word: int) -> int:
    return (word + 15) & ~15


def layout_digest() -> int:
    """32-bit digest of every layout constant: a device built from other constants cannot load."""
    parts = [SLOT_WORDS, ARGS_PER_SLOT, RESULT_WORDS, CONTROL_HEADER_WORDS, DEBUG_RECORD_WORDS, IO_ENTRY_WORDS]
    parts += [METRIC_WORDS, MAX_TENANTS, PRIORITY_OFFSET_WORDS]
    # the opcode space and packed-slot rules a device enforces are part of the contract too
    parts += [BUILTIN_LIMIT, USER_OPCODE_BASE, USER_OPCODE_COUNT, TENANT_WINDOW, USER_METRIC_BASE, MAX_PACKED_OPS]
    parts += sorted(int(opcode) for opcode in PACKABLE)
    parts += [DOORBELL_SLOT_BITS, DOORBELL_TAG_FLAG, DOORBELL_LAP_MASK]  # the doorbell entry format
    parts += [PRIORITY_BITS, HINT_MASK]  # the PRIORITY word's hint position
    parts += [WATCH_WORDS, WATCH_VALID, WATCH_TENANT_SHIFT, WATCH_TENANT_MASK, PRIORITY_WATCHED]  # watched channels
    enums = (BuiltinOpcode, SlotWord, SlotState, Priority, SlotFault, ControlWord, DeviceState, RunArg, DebugWord)
    for enum in (*enums, IoWord, IoState, IoOp, IoError):
        parts += [value for member in enum for value in (len(member.name), int(member))]
    digest = blake3.blake3(struct.pack(f"<{len(parts)}I", *parts)).digest()
    return int.from_bytes(digest[:4], "little")
