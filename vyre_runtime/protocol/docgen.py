"""Generate the numeric blocks of docs/PROTOCOL.md (word positions, states, opcodes, faults,
limits, the layout digest, the worked examples) from the protocol constants.

docs/PROTOCOL.md never carries a hand-typed word offset, enum value or limit: each block between
``<!-- BEGIN GENERATED name: ... -->`` and ``<!-- END GENERATED name -->`` is printed here from
``layout.py``, ``opcodes.py`` and ``codec.py``, and tests/test_protocol_docs_in_sync.py fails as
soon as the document and the code disagree.

    python -m vyre_runtime.protocol.docgen            print every generated block
    python -m vyre_runtime.protocol.docgen --write    rewrite the generated blocks of docs/PROTOCOL.md
    python -m vyre_runtime.protocol.docgen --check    exit 1 if docs/PROTOCOL.md is out of date

Numbers come from the code; the prose of each enum member lives in the dictionaries below, and a
member without a description stops the generator, so a new state, word or fault code cannot
reach the document undescribed. Region formulas are Python expressions, evaluated here for the
worked example and by the tests for many geometries, so the printed formulas cannot drift.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from enum import IntEnum
from pathlib import Path
from typing import NamedTuple

from vyre_runtime import docblocks
from vyre_runtime.docblocks import add_mode_arguments, markdown_table, write_or_check
from vyre_runtime.protocol import layout, opcodes
from vyre_runtime.protocol.codec import SlotRequest, encode_packed, new_image, ring_doorbell, write_slot
from vyre_runtime.protocol.layout import (
    ARGS_PER_SLOT,
    DEBUG_RECORD_WORDS,
    IO_ENTRY_WORDS,
    PRIORITY_OFFSET_WORDS,
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
from vyre_runtime.protocol.opcodes import BuiltinOpcode

DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "PROTOCOL.md"
REGENERATE_COMMAND = "python -m vyre_runtime.protocol.docgen --write"
DFA_STEP_FIRST_BYTE_ARG = 3
DFA_STEP_MAX_BYTES = 4 * (ARGS_PER_SLOT - DFA_STEP_FIRST_BYTE_ARG)  # = builtins.DFA_STEP_MAX_BYTES


def begin_marker(name: str) -> str:
    return f"<!-- BEGIN GENERATED {name}: {REGENERATE_COMMAND} -->"


def end_marker(name: str) -> str:
    return f"<!-- END GENERATED {name} -->"


# ---------------------------------------------------------------- region formulas (executable)


class Formula(NamedTuple):
    region: str
    start_name: str  # the Layout property holding the region's first word
    first: str  # Python expression of the first word
    words: str  # Python expression of the word count


FORMULAS: tuple[Formula, ...] = (
    Formula("control", "control", "0", "CONTROL_HEADER_WORDS"),
    Formula("tenant_masks", "tenant_masks", "CONTROL_HEADER_WORDS", "tenants"),
    Formula("metrics", "metrics", "tenant_masks + tenants", "METRIC_WORDS"),
    Formula("observables", "observable_base", "metrics + METRIC_WORDS", "observables"),
    Formula("ring", "ring", "align16(observable_base + observables)", "slots * SLOT_WORDS"),
    Formula(
        "debug_log", "debug_log", "ring + slots * SLOT_WORDS", "DEBUG_HEADER_WORDS + debug_records * DEBUG_RECORD_WORDS"
    ),
    Formula(
        "io_queue",
        "io_queue",
        "debug_log + DEBUG_HEADER_WORDS + debug_records * DEBUG_RECORD_WORDS",
        "io_entries * IO_ENTRY_WORDS",
    ),
    Formula("doorbell", "doorbell", "io_queue + io_entries * IO_ENTRY_WORDS", "doorbells"),
)
TOTAL_FORMULA = "doorbell + doorbells"

ADDRESS_FORMULAS: tuple[tuple[str, str], ...] = (
    ("tenant mask of tenant `t`", "tenant_masks + t"),
    ("metric counter `i`", "metrics + i"),
    ("observable word `i`", "observable_base + i"),
    ("word `w` of slot `i`", "ring + i * SLOT_WORDS + w"),
    (
        "debug record at position `p` (any u32)",
        "debug_log + DEBUG_HEADER_WORDS + (p % debug_records) * DEBUG_RECORD_WORDS",
    ),
    ("word `w` of IO entry `e`", "io_queue + e * IO_ENTRY_WORDS + w"),
    ("doorbell entry at position `p` (any u32)", "doorbell + p % doorbells"),
)


def align16(word: int) -> int:
    """The smallest multiple of 16 that is >= ``word``."""
    return (word + 15) & ~15


def formula_environment(geometry: Layout) -> dict[str, object]:
    """Names a formula may use: the geometry, the constants, align16 and earlier region starts."""
    env: dict[str, object] = {
        "slots": geometry.slots,
        "tenants": geometry.tenants,
        "observables": geometry.observables,
        "debug_records": geometry.debug_records,
        "io_entries": geometry.io_entries,
        "doorbells": geometry.doorbells,
        "align16": align16,
        "CONTROL_HEADER_WORDS": layout.CONTROL_HEADER_WORDS,
        "METRIC_WORDS": opcodes.METRIC_WORDS,
        "SLOT_WORDS": SLOT_WORDS,
        "DEBUG_HEADER_WORDS": int(DebugWord.HEADER_WORDS),
        "DEBUG_RECORD_WORDS": DEBUG_RECORD_WORDS,
        "IO_ENTRY_WORDS": IO_ENTRY_WORDS,
    }
    for formula in FORMULAS:
        env[formula.start_name] = eval(formula.first, {"__builtins__": {}}, env)  # our own expressions, no builtins
    return env


def evaluate(expression: str, env: dict[str, object], **names: int) -> int:
    return int(eval(expression, {"__builtins__": {}}, {**env, **names}))  # our own expressions, no builtins


# ---------------------------------------------------------------- descriptions (prose only)

SLOT_WORDS_DOC: dict[SlotWord, tuple[str, str, str]] = {  # words, written by, meaning
    SlotWord.STATUS: (
        "0",
        "see the state table",
        "the slot's `SlotState`; written last by whoever hands the slot over",
    ),
    SlotWord.OPCODE: ("1", "host, while EMPTY", "what to run: a built-in, a user opcode, or SHUTDOWN"),
    SlotWord.TENANT: (
        "2",
        "host, while EMPTY",
        "tenant id: indexes the tenant-mask table once checked `< TENANT_COUNT`",
    ),
    SlotWord.PRIORITY: (
        "3",
        "host, while EMPTY",
        "bits 0..7: the `Priority` asked for (informational: the slot's partition orders service); "
        "bits 8..31: the publication's hint position mod 2^24 (4.8)",
    ),
    SlotWord.ARG0: ("4 .. 15", "host, while EMPTY", "`ARG0 .. ARG11`: the opcode's arguments; unused ones are 0"),
    SlotWord.RESULT0: (
        "12 .. 15",
        "device, before DONE/FAULT",
        "`RESULT0 .. RESULT3` overwrite `ARG8 .. ARG11`: results, or the fault",
    ),
}

SLOT_STATES_DOC: dict[SlotState, tuple[str, str]] = {  # written by, meaning
    SlotState.EMPTY: ("host (reaping)", "free: only the host writes any word of an EMPTY slot"),
    SlotState.PUBLISHED: ("host", "payload complete; any device worker may claim it"),
    SlotState.CLAIMED: ("device (CAS)", "exactly one device worker owns the slot and runs it"),
    SlotState.DONE: ("device", "`RESULT0 .. 3` valid; the host copies them out, then writes EMPTY"),
    SlotState.WAIT_IO: ("device", "the owning worker waits for its IO-queue answer (LOAD_MISS); still owned"),
    SlotState.YIELD: ("device", "handed back unfinished, payload intact; claimable again"),
    SlotState.REQUEUE: ("device", "could not run yet (e.g. program not resident), payload intact; claimable again"),
    SlotState.FAULT: ("device", "`RESULT0 .. 3` = code, pc, lane, detail; the host copies them out, then writes EMPTY"),
}

PRIORITY_DOC: dict[Priority, str] = {
    Priority.CRITICAL: "served first",
    Priority.HIGH: "served before NORMAL; counts toward the starvation rule with CRITICAL",
    Priority.NORMAL: "the default; its partition takes the remainder of `slots / 5`",
    Priority.LOW: "served after NORMAL",
    Priority.BACKGROUND: "served last",
}

CONTROL_DOC: dict[ControlWord, tuple[str, str]] = {  # owner, meaning
    ControlWord.SHUTDOWN: (
        "host stores 1; the SHUTDOWN opcode stores 1",
        "non-zero: claim nothing more, finish the slot held, exit",
    ),
    ControlWord.DONE_COUNT: ("device", "slots completed (DONE or FAULT); wraps at 2^32"),
    ControlWord.FAULT_COUNT: ("device", "slots that ended FAULT; wraps"),
    ControlWord.CLAIM_COUNT: ("device", "successful claims (a YIELD/REQUEUE slot claimed again counts again); wraps"),
    ControlWord.EPOCH: ("device", "BATCH_FENCE slots run; wraps"),
    ControlWord.LAST_FENCE_TAG: ("device", "`ARG1` of the latest BATCH_FENCE"),
    ControlWord.HEARTBEAT: ("device", "advanced by every idle poll pass; wraps (see Liveness)"),
    ControlWord.DEVICE_STATE: ("device", "a `DeviceState`"),
    ControlWord.LAYOUT_DIGEST: (
        "host-initialised",
        "`layout_digest()` of the host's constants; the device refuses a mismatch",
    ),
    ControlWord.SLOT_COUNT: ("host-initialised", "`Layout.slots`"),
    ControlWord.TENANT_COUNT: ("host-initialised", "`Layout.tenants`: entries in the tenant-mask table"),
    ControlWord.OBSERVABLE_COUNT: ("host-initialised", "`Layout.observables`"),
    ControlWord.DEBUG_CAPACITY: ("host-initialised", "`Layout.debug_records` (a power of two)"),
    ControlWord.IO_ENTRIES: ("host-initialised", "`Layout.io_entries`"),
    ControlWord.DEBUG_READ_CURSOR: (
        "host",
        "debug records at positions below it are consumed; the device only reads it",
    ),
    ControlWord.PAUSE: (
        "host stores 1; stores 0 only while no device runs",
        "non-zero: claim nothing more, finish every claimed slot, exit; the ring stays resumable "
        "(see Pause and relaunch)",
    ),
    ControlWord.PRIORITY_OFFSETS: (
        "host-initialised",
        "first slot of each priority partition, CRITICAL .. BACKGROUND, then SLOT_COUNT",
    ),
    ControlWord.DOORBELL_TAIL: (
        "host",
        "doorbell entries written so far (u32, wraps); stored after the entries it covers (see The doorbell)",
    ),
    ControlWord.DOORBELL_HEAD: (
        "device",
        "doorbell entries consumed so far (u32, wraps); the host only reads it",
    ),
    ControlWord.DOORBELL_CAPACITY: ("host-initialised", "`Layout.doorbells` (a power of two)"),
    ControlWord.WATCH: (
        "host",
        "`WATCH_WORDS` words: `WATCH_VALID | tenant << WATCH_TENANT_SHIFT | slot` of each watched channel "
        "slot, 0 = unused (see Watched channels)",
    ),
}

DEVICE_STATE_DOC: dict[DeviceState, str] = {
    DeviceState.NOT_STARTED: "the image is fresh (the host zeroed it), or the host reset the word for a relaunch",
    DeviceState.SERVING: "the device checked digest and geometry and is polling the ring",
    DeviceState.EXITED: "every worker has left its loop after SHUTDOWN or PAUSE; no device thread touches the image",
    DeviceState.REFUSED: "the device found a layout digest or geometry it was not built for and never served",
}


class BuiltinDoc(NamedTuple):
    args: str
    results: str
    faults: str
    effect: str


BUILTIN_DOC: dict[BuiltinOpcode, BuiltinDoc] = {
    BuiltinOpcode.NOP: BuiltinDoc("—", "—", "—", "nothing; completes DONE (a ring round trip)"),
    BuiltinOpcode.STORE_U32: BuiltinDoc("0 index, 1 value", "—", "BAD_ARGUMENT(index)", "`obs[index] = value`"),
    BuiltinOpcode.ATOMIC_ADD: BuiltinDoc(
        "0 index, 1 value", "0 old", "BAD_ARGUMENT(index)", "`obs[index] += value` mod 2^32, atomically"
    ),
    BuiltinOpcode.LOAD_U32: BuiltinDoc(
        "0 source, 1 destination", "0 value", "BAD_ARGUMENT(source, checked first, or destination)",
        "`obs[destination] = obs[source]`",
    ),
    BuiltinOpcode.COMPARE_SWAP: BuiltinDoc(
        "0 index, 1 expected, 2 desired", "0 old", "BAD_ARGUMENT(index)",
        "atomically: if `obs[index] == expected` then `obs[index] = desired`",
    ),
    BuiltinOpcode.MEMCPY: BuiltinDoc(
        "0 source, 1 destination, 2 count", "0 count", "BAD_ARGUMENT(source, checked first, or destination)",
        "copies `count` words as if through a temporary (overlap-safe); count 0 copies nothing",
    ),
    BuiltinOpcode.DFA_STEP: BuiltinDoc(
        f"0 DFA handle, 1 state, 2 n, {DFA_STEP_FIRST_BYTE_ARG} .. {ARGS_PER_SLOT - 1} the bytes",
        "0 state after, 1 matches", "BAD_HANDLE(handle), BAD_ARGUMENT(n, then state)",
        f"walks `n <= {DFA_STEP_MAX_BYTES}` bytes through a registered DFA table (see DFA_STEP)",
    ),
    BuiltinOpcode.BATCH_FENCE: BuiltinDoc(
        "0 item count (informational), 1 tag", "0 new EPOCH", "—",
        "`EPOCH += 1`, `LAST_FENCE_TAG = tag`; orders nothing (see BATCH_FENCE)",
    ),
    BuiltinOpcode.PRINTF: BuiltinDoc(
        "0 format id, 1 a, 2 b", "0 written (1) or dropped (0)", "—",
        "appends one debug-log record (format id, a, b, slot index, tenant)",
    ),
    BuiltinOpcode.LOAD_MISS: BuiltinDoc(
        "0 resource, 1 offset lo, 2 offset hi, 3 bytes, 4 destination", "0 bytes loaded",
        "BAD_ARGUMENT(bytes), IO_ERROR(host's IoError), CANCELLED",
        "asks the host to load `bytes` of a resource into `obs[destination ..]` through the IO queue",
    ),
    BuiltinOpcode.PACKED_SLOT: BuiltinDoc(
        "metadata, then the ops' arguments (see Packed slots)", "the last op's", "BAD_PACKED, or the failing op's",
        "runs 1 .. 7 packable built-ins in order",
    ),
    BuiltinOpcode.RUN_PROGRAM: BuiltinDoc(
        "the `RunArg` words", "0 records, 1 dropped, 2/3 instructions lo/hi",
        "BAD_HANDLE, BAD_ARGUMENT, VIR0 faults 1 .. 6", "runs a registered VIR0 program over a data region",
    ),
    BuiltinOpcode.SHUTDOWN: BuiltinDoc(
        "—", "—", "—", "stores 1 into control word SHUTDOWN; completes DONE; every worker then exits"
    ),
}  # fmt: skip

FAULT_DOC: dict[SlotFault, tuple[str, str]] = {  # cause, detail
    SlotFault.OOB_INPUT: ("VIR0: input access outside the region", "see docs/VIR0.md (pc, lane are the program's)"),
    SlotFault.OOB_TABLE: ("VIR0: table access outside a table, or a bad DFA state", "see docs/VIR0.md"),
    SlotFault.OOB_OUTPUT: ("VIR0: binding word outside its binding", "see docs/VIR0.md"),
    SlotFault.FUEL_EXHAUSTED: ("VIR0: a lane ran out of fuel", "0"),
    SlotFault.TRAP: ("VIR0: a lane executed `trap`", "the trap's immediate"),
    SlotFault.BAD_INSTRUCTION: ("VIR0: undecodable instruction", "the opcode byte"),
    SlotFault.BAD_OPCODE: ("not a built-in, not a bound user opcode, or a reserved number", "the opcode"),
    SlotFault.BAD_TENANT: ("tenant id `>= TENANT_COUNT` (the mask table is never read past its end)", "the tenant id"),
    SlotFault.BAD_ARGUMENT: ("an argument out of range (observable index or count, byte count, state, lanes, "
                             "region range)", "the offending argument word"),
    SlotFault.BAD_HANDLE: ("program, context, region or DFA handle not registered (0 is never valid)", "the handle"),
    SlotFault.IO_ERROR: ("the host answered the slot's LOAD_MISS with ERROR", "the host's `IoError`"),
    SlotFault.BAD_PACKED: ("malformed PACKED_SLOT metadata (nothing ran)", "0"),
    SlotFault.CANCELLED: ("shutdown before the slot could finish (LOAD_MISS left unanswered)", "0"),
    SlotFault.INTERNAL: ("the backend itself failed on this slot (a bug); other slots continue", "0"),
}  # fmt: skip

RUN_ARG_DOC: dict[RunArg, str] = {
    RunArg.PROGRAM: "program handle (`register_program`)",
    RunArg.CONTEXT: "run-context handle: fuel and emit capacity in, the run's outputs out",
    RunArg.REGION: "data-region handle: the bytes",
    RunArg.OFFSET_LO: "first byte of the region the run reads, bits 0..31",
    RunArg.OFFSET_HI: "... bits 32..63",
    RunArg.LENGTH: "bytes the run reads (`REGION_LEN`); `offset + length <= region size`",
    RunArg.OWN_LO: "owned range start; `OWN_LO <= OWN_HI <= LENGTH`",
    RunArg.OWN_HI: "owned range end",
    RunArg.FILE_OFFSET_LO: "file offset of the run's byte 0, bits 0..31 (`FILE_OFFSET_LO`)",
    RunArg.FILE_OFFSET_HI: "... bits 32..63",
    RunArg.CHUNK_INDEX: "chunk index (`CHUNK_INDEX`)",
    RunArg.LANES: "lane count; 0 = the program's default",
}

DEBUG_WORD_DOC: dict[DebugWord, tuple[str, str]] = {
    DebugWord.WRITE_CURSOR: ("device", "records reserved so far (u32, wraps); advances only while there is room"),
    DebugWord.DROPPED: ("device", "records refused because the log was full; wraps"),
    DebugWord.HEADER_WORDS: ("—", "header size: words 2 .. 3 are reserved (zero); records start here"),
}
DEBUG_RECORD_DOC: tuple[str, ...] = (
    "sequence: position + 1 mod 2^32, written last",
    "format id (`ARG0`)",
    "a (`ARG1`)",
    "b (`ARG2`)",
    "slot index of the PRINTF",
    "tenant of the PRINTF",
    "reserved: 0",
    "reserved: 0",
)

IO_WORD_DOC: dict[IoWord, tuple[str, str]] = {
    IoWord.STATUS: ("see the state table", "the entry's `IoState`, written last"),
    IoWord.OP: ("device, while RESERVED", "`IoOp`"),
    IoWord.RESOURCE: ("device, while RESERVED", "resource id (`ARG0` of the LOAD_MISS)"),
    IoWord.OFFSET_LO: ("device, while RESERVED", "byte offset in the resource, bits 0..31"),
    IoWord.OFFSET_HI: ("device, while RESERVED", "... bits 32..63"),
    IoWord.BYTES: ("device, while RESERVED", "bytes requested, > 0"),
    IoWord.DESTINATION: ("device, while RESERVED", "first observable word to fill"),
    IoWord.RESULT: ("device writes 0; host, while CLAIMED", "OK: bytes loaded; ERROR: an `IoError`"),
}

IO_STATE_DOC: dict[IoState, tuple[str, str]] = {
    IoState.EMPTY: ("device (taking an answer)", "free: only device threads touch an EMPTY entry"),
    IoState.PUBLISHED: ("device", "request complete; the host may claim it"),
    IoState.CLAIMED: ("host", "the host took it (a second poll never services it twice) and owes an answer"),
    IoState.RESERVED: ("device (CAS from EMPTY)", "one device thread owns it and is filling it; the host ignores it"),
    IoState.OK: ("host", "loaded: `RESULT` = bytes, destination words written"),
    IoState.ERROR: ("host", "not loaded: `RESULT` = an `IoError`"),
}

IO_OP_DOC: dict[IoOp, str] = {IoOp.READ: "copy `BYTES` bytes at `OFFSET` of `RESOURCE` into the observables"}

IO_ERROR_DOC: dict[IoError, str] = {
    IoError.UNKNOWN_RESOURCE: "no resource registered under that id",
    IoError.OUT_OF_RANGE: "offset/bytes past the resource, or the destination past the observables",
    IoError.READ_FAILED: "the host's loader failed",
    IoError.MALFORMED: "unknown op or zero bytes (answered at claim time)",
    IoError.SHUTTING_DOWN: "the host is shutting down and will not load it",
}


class Constant(NamedTuple):
    name: str
    value: int
    meaning: str


def constants() -> tuple[Constant, ...]:
    return (
        Constant("SLOT_WORDS", SLOT_WORDS, "words per slot (64 bytes)"),
        Constant("ARGS_PER_SLOT", ARGS_PER_SLOT, "argument words per slot"),
        Constant("RESULT_WORDS", layout.RESULT_WORDS, "result words, overwriting the last argument words"),
        Constant("CONTROL_HEADER_WORDS", layout.CONTROL_HEADER_WORDS, "words of the control region"),
        Constant("PRIORITY_OFFSET_WORDS", PRIORITY_OFFSET_WORDS, "partition starts, then the slot count"),
        Constant("METRIC_WORDS", opcodes.METRIC_WORDS, "metric counters"),
        Constant("DEBUG_HEADER_WORDS", int(DebugWord.HEADER_WORDS), "words before the first debug record"),
        Constant("DEBUG_RECORD_WORDS", DEBUG_RECORD_WORDS, "words per debug record"),
        Constant("IO_ENTRY_WORDS", IO_ENTRY_WORDS, "words per IO-queue entry"),
        Constant("MAX_SLOTS", layout.MAX_SLOTS, "`Layout.slots` range 1 .. this"),
        Constant("MAX_TENANTS", opcodes.MAX_TENANTS, "`Layout.tenants` range 1 .. this"),
        Constant("MAX_OBSERVABLES", layout.MAX_OBSERVABLES, "`Layout.observables` range 1 .. this"),
        Constant("MAX_DEBUG_RECORDS", layout.MAX_DEBUG_RECORDS, "`Layout.debug_records` range 1 .. this, power of 2"),
        Constant("MAX_IO_ENTRIES", layout.MAX_IO_ENTRIES, "`Layout.io_entries` range 1 .. this"),
        Constant("MAX_DOORBELLS", layout.MAX_DOORBELLS, "`Layout.doorbells` range 1 .. this, power of 2"),
        Constant("DOORBELL_SLOT_BITS", layout.DOORBELL_SLOT_BITS, "low bits of a doorbell entry: the slot index"),
        Constant("DOORBELL_TAG_FLAG", layout.DOORBELL_TAG_FLAG, "set in the tag of every written doorbell entry"),
        Constant("DOORBELL_LAP_MASK", layout.DOORBELL_LAP_MASK, "lap bits of a doorbell entry's tag"),
        Constant("PRIORITY_BITS", layout.PRIORITY_BITS, "low bits of the PRIORITY word: the priority"),
        Constant("HINT_MASK", layout.HINT_MASK, "the hint position mod 2^24, above PRIORITY_BITS"),
        Constant("WATCH_WORDS", layout.WATCH_WORDS, "control words naming watched channel slots"),
        Constant("WATCH_VALID", layout.WATCH_VALID, "set in every used WATCH word"),
        Constant("WATCH_TENANT_SHIFT", layout.WATCH_TENANT_SHIFT, "a WATCH word's tenant bits start here"),
        Constant("WATCH_TENANT_MASK", layout.WATCH_TENANT_MASK, "a WATCH word's tenant bits"),
        Constant("PRIORITY_WATCHED", layout.PRIORITY_WATCHED, "PRIORITY bit of a watched channel's call"),
        Constant("BUILTIN_LIMIT", opcodes.BUILTIN_LIMIT, "opcodes below this are built-ins or reserved for them"),
        Constant("USER_OPCODE_BASE", opcodes.USER_OPCODE_BASE, "first user opcode"),
        Constant("USER_OPCODE_COUNT", opcodes.USER_OPCODE_COUNT, "user opcodes"),
        Constant("TENANT_WINDOW", opcodes.TENANT_WINDOW, "user opcodes per tenant"),
        Constant("USER_METRIC_BASE", opcodes.USER_METRIC_BASE, "metric index of the first user opcode"),
        Constant("MAX_PACKED_OPS", opcodes.MAX_PACKED_OPS, "ops per PACKED_SLOT"),
        Constant("MAX_FUSED_MEMBERS", opcodes.MAX_FUSED_MEMBERS, "programs per fused group (RUN_PROGRAM)"),
        Constant("DFA_STEP_MAX_BYTES", DFA_STEP_MAX_BYTES, "bytes per DFA_STEP slot"),
    )  # fmt: skip


# ---------------------------------------------------------------- markdown helpers


def _described(mapping: dict, enum: type[IntEnum]) -> None:
    missing = [member.name for member in enum if member not in mapping]
    if missing:
        raise RuntimeError(f"vyre_runtime/protocol/docgen.py has no description of {enum.__name__} {missing}; add one")


def _hex(value: int) -> str:
    return f"`{value:#010x}`" if value > 0xFFFF else f"`{value:#x}`"


def _dec_hex(value: int) -> str:
    return f"{value} (`{value:#x}`)" if value >= 16 else str(value)


# ---------------------------------------------------------------- blocks


def regions_markdown() -> str:
    default = Layout()
    env = formula_environment(default)
    rows = []
    for formula in FORMULAS:
        first, words = evaluate(formula.first, env), evaluate(formula.words, env)
        rows.append((f"`{formula.region}`", f"`{formula.first}`", f"`{formula.words}`", str(first), str(words),
                     f"`{4 * first:#07x}`"))  # fmt: skip
    total = evaluate(TOTAL_FORMULA, env)
    rows.append(("end (`total_words`)", f"`{TOTAL_FORMULA}`", "—", str(total), "—", f"`{4 * total:#07x}`"))
    header = ("region", "first word", "words", "first word in `Layout()`", "words in `Layout()`", "byte offset")
    geometry = ", ".join(f"{name}={getattr(default, name)}" for name in ("slots", "tenants", "observables",
                                                                          "debug_records", "io_entries",
                                                                          "doorbells"))  # fmt: skip
    addresses = markdown_table(
        ("word", "formula", "example in `Layout()`"),
        [
            (what, f"`{expression}`", str(evaluate(expression, env, t=0, i=5, w=SlotWord.ARG0, p=300, e=1)))
            for what, expression in ADDRESS_FORMULAS
        ],
    )
    return (
        f"`align16(x) = (x + 15) & ~15`. The worked example is the default geometry `Layout()` ({geometry}): "
        f"{total} words, {4 * total} bytes.\n\n"
        + markdown_table(header, rows)
        + "\nAddressing inside the regions (examples: `t = 0`, `i = 5`, `w = ARG0`, `p = 300`, `e = 1`):\n\n"
        + addresses
    )


def constants_markdown() -> str:
    rows = [(f"`{c.name}`", _dec_hex(c.value), c.meaning) for c in constants()]
    return markdown_table(("constant", "value", "meaning"), rows)


def _enum_rows(enum: type[IntEnum], doc: dict, columns: int) -> list[tuple[str, ...]]:
    _described(doc, enum)
    rows = []
    for member in enum:
        text = doc[member]
        cells = (text,) if isinstance(text, str) else tuple(text)
        assert len(cells) == columns
        rows.append((str(int(member)), f"`{member.name}`", *cells))
    return rows


def slot_markdown() -> str:
    _described(SLOT_WORDS_DOC, SlotWord)
    words = markdown_table(
        ("word", "name", "written by", "meaning"),
        [(f"{SLOT_WORDS_DOC[w][0]}", f"`{w.name}`", *SLOT_WORDS_DOC[w][1:]) for w in SlotWord],
    )
    states = markdown_table(("value", "state", "written by", "meaning"), _enum_rows(SlotState, SLOT_STATES_DOC, 2))
    schedulable = ", ".join(s.name for s in sorted(layout.SCHEDULABLE))
    in_flight = ", ".join(s.name for s in sorted(layout.IN_FLIGHT))
    return (
        words
        + "\n"
        + states
        + f"\nSchedulable (claimable) states: {schedulable}. In flight (the host may not write the slot): "
        f"{in_flight}.\n"
    )


def priorities_markdown() -> str:
    _described(PRIORITY_DOC, Priority)
    offsets = Layout().priority_offsets()
    rows = [(str(int(p)), f"`{p.name}`", f"{offsets[p]} .. {offsets[p + 1] - 1}", PRIORITY_DOC[p]) for p in Priority]
    return markdown_table(("value", "priority", "partition in `Layout()`", "service"), rows)


def control_markdown() -> str:
    _described(CONTROL_DOC, ControlWord)
    rows = []
    used: set[int] = set()
    for word in ControlWord:
        span = {ControlWord.PRIORITY_OFFSETS: PRIORITY_OFFSET_WORDS, ControlWord.WATCH: layout.WATCH_WORDS}.get(word, 1)
        used |= set(range(word, word + span))
        where = f"{int(word)} .. {int(word) + span - 1}" if span > 1 else str(int(word))
        rows.append((where, f"`{word.name}`", *CONTROL_DOC[word]))
    free = sorted(set(range(layout.CONTROL_HEADER_WORDS)) - used)
    runs: list[str] = []
    for word in free:
        if runs and int(runs[-1].split(" .. ")[-1]) == word - 1:
            runs[-1] = f"{runs[-1].split(' .. ')[0]} .. {word}"
        else:
            runs.append(str(word))
    rows.append((", ".join(runs), "reserved", "nobody", "zero; a device must not depend on them"))
    states = markdown_table(("value", "DeviceState", "meaning"), _enum_rows(DeviceState, DEVICE_STATE_DOC, 1))
    return markdown_table(("word", "name", "written by", "meaning"), rows) + "\n" + states


def opcode_space_markdown() -> str:
    base, count, window = opcodes.USER_OPCODE_BASE, opcodes.USER_OPCODE_COUNT, opcodes.TENANT_WINDOW
    builtins = [int(op) for op in BuiltinOpcode if op != BuiltinOpcode.SHUTDOWN]
    rows = [
        (f"{_hex(min(builtins))} .. {_hex(max(builtins))}", "built-ins (below)", "published by any tenant"),
        (f"{_hex(max(builtins) + 1)} .. {_hex(opcodes.BUILTIN_LIMIT - 1)}", "reserved for future built-ins",
         "rejected by the host; FAULT BAD_OPCODE on a device"),
        (f"{_hex(base)} .. {_hex(base + count - 1)}", "user opcodes, each bound to a program",
         f"tenant `t` owns `{base:#x} + {window} t .. + {window - 1}`; unbound: FAULT BAD_OPCODE"),
        (f"{_hex(base + count)} .. {_hex(0xFFFFFFFE)}", "not assigned", "rejected by the host; FAULT BAD_OPCODE"),
        (_hex(int(BuiltinOpcode.SHUTDOWN)), "SHUTDOWN", "all ones, so a zeroed slot can never mean shutdown"),
    ]  # fmt: skip
    return markdown_table(("opcodes", "what", "rule"), rows)


def builtins_markdown() -> str:
    _described(BUILTIN_DOC, BuiltinOpcode)
    rows = []
    for op in BuiltinOpcode:
        doc = BUILTIN_DOC[op]
        packable = "yes" if op in opcodes.PACKABLE else "no"
        rows.append((_hex(int(op)), f"`{op.name}`", doc.args, doc.results, doc.faults, packable, doc.effect))
    header = ("opcode", "name", "argument words", "result words", "faults (detail)", "packable", "effect")
    return markdown_table(header, rows)


def run_args_markdown() -> str:
    _described(RUN_ARG_DOC, RunArg)
    rows = [
        (f"`ARG{int(a)}`", "—" if a == RunArg.PROGRAM else f"`ARG{int(a) - 1}`", f"`{a.name}`", RUN_ARG_DOC[a])
        for a in RunArg
    ]
    return markdown_table(("RUN_PROGRAM", "user opcode", "name", "meaning"), rows)


def faults_markdown() -> str:
    rows = _enum_rows(SlotFault, FAULT_DOC, 2)
    return markdown_table(("code", "name", "cause", "detail (`RESULT3`)"), rows)


def metrics_markdown() -> str:
    rows = [(str(opcodes.metric_index(op)), f"`{op.name}` ({_hex(int(op))})") for op in BuiltinOpcode]
    last_builtin = max(opcodes.metric_index(op) for op in BuiltinOpcode)
    if last_builtin + 1 < opcodes.USER_METRIC_BASE:
        rows.append((f"{last_builtin + 1} .. {opcodes.USER_METRIC_BASE - 1}", "reserved (zero)"))
    base, count = opcodes.USER_OPCODE_BASE, opcodes.USER_OPCODE_COUNT
    rows.append(
        (
            f"{opcodes.USER_METRIC_BASE} .. {opcodes.METRIC_WORDS - 1}",
            f"user opcode `{base:#x} + (index - {opcodes.USER_METRIC_BASE})` "
            f"({_hex(base)} .. {_hex(base + count - 1)})",
        )
    )
    return markdown_table(("metric index", "counts completions (DONE or FAULT) of"), rows)


def debug_log_markdown() -> str:
    _described(DEBUG_WORD_DOC, DebugWord)
    header = markdown_table(
        ("word", "name", "written by", "meaning"),
        [(str(int(w)), f"`{w.name}`", *DEBUG_WORD_DOC[w]) for w in DebugWord],
    )
    assert len(DEBUG_RECORD_DOC) == DEBUG_RECORD_WORDS
    record = markdown_table(("record word", "content"), [(str(i), text) for i, text in enumerate(DEBUG_RECORD_DOC)])
    return "Header, at `debug_log`:\n\n" + header + "\nEach record (written by the device):\n\n" + record


def io_queue_markdown() -> str:
    _described(IO_WORD_DOC, IoWord)
    words = markdown_table(
        ("word", "name", "written by", "meaning"), [(str(int(w)), f"`{w.name}`", *IO_WORD_DOC[w]) for w in IoWord]
    )
    states = markdown_table(("value", "IoState", "written by", "meaning"), _enum_rows(IoState, IO_STATE_DOC, 2))
    ops = markdown_table(("value", "IoOp", "meaning"), _enum_rows(IoOp, IO_OP_DOC, 1))
    errors = markdown_table(("value", "IoError", "meaning"), _enum_rows(IoError, IO_ERROR_DOC, 1))
    return words + "\n" + states + "\n" + ops + "\n" + errors


def digest_markdown() -> str:
    enums = "`, `".join(
        e.__name__
        for e in (BuiltinOpcode, SlotWord, SlotState, Priority, SlotFault, ControlWord, DeviceState, RunArg,
                  DebugWord, IoWord, IoState, IoOp, IoError)
    )  # fmt: skip
    return (
        f"Current value: **`{layout_digest():#010x}`** (`vyre_runtime.protocol.layout.layout_digest()`).\n\n"
        "Input, as little-endian u32 words hashed with BLAKE3 (the digest is the first 4 bytes of the hash, "
        "little-endian): `SLOT_WORDS, ARGS_PER_SLOT, RESULT_WORDS, CONTROL_HEADER_WORDS, DEBUG_RECORD_WORDS, "
        "IO_ENTRY_WORDS, METRIC_WORDS, MAX_TENANTS, PRIORITY_OFFSET_WORDS, BUILTIN_LIMIT, USER_OPCODE_BASE, "
        "USER_OPCODE_COUNT, TENANT_WINDOW, USER_METRIC_BASE, MAX_PACKED_OPS`, the packable opcodes in "
        "increasing order, `DOORBELL_SLOT_BITS, DOORBELL_TAG_FLAG, DOORBELL_LAP_MASK, PRIORITY_BITS, HINT_MASK, "
        "WATCH_WORDS, WATCH_VALID, WATCH_TENANT_SHIFT, WATCH_TENANT_MASK, PRIORITY_WATCHED`, then for each member "
        f"of `{enums}` (in that order, members in definition order) "
        "the length of its name and its value.\n"
    )


def example_markdown() -> str:
    geometry = Layout()
    image = new_image(geometry)
    index = geometry.partition_offsets[Priority.HIGH] + 3
    request = SlotRequest(BuiltinOpcode.ATOMIC_ADD, (7, 5), tenant=0, priority=Priority.HIGH)
    request.validate(geometry)
    write_slot(image, geometry, index, request)
    before_doorbell = image.copy()
    rung = ring_doorbell(image, geometry, [index])
    assert rung == 1
    base = geometry.slot(index)
    names = ["STATUS", "OPCODE", "TENANT", "PRIORITY", *(f"ARG{i}" for i in range(ARGS_PER_SLOT))]
    published = image[base : base + SLOT_WORDS].tolist()
    done = list(published)
    done[SlotWord.RESULT0 : SlotWord.RESULT0 + layout.RESULT_WORDS] = [41, 0, 0, 0]
    done[SlotWord.STATUS] = SlotState.DONE
    rows = []
    for word in range(SLOT_WORDS):
        name = names[word]
        if word >= SlotWord.RESULT0:
            name += f" = RESULT{word - SlotWord.RESULT0}"
        rows.append((str(base + word), f"`{4 * (base + word):#07x}`", name, _hex(published[word]), _hex(done[word])))
    slot = markdown_table(("word", "byte offset", "slot word", "published", "after DONE"), rows)
    changed = [int(w) for w in (image != before_doorbell).nonzero()[0]]
    entry, tail = geometry.doorbell, int(ControlWord.DOORBELL_TAIL)
    assert changed == [tail, entry], changed  # ring_doorbell touched exactly the entry and the tail
    doorbell_rows = [
        ("1", str(entry), f"`{4 * entry:#07x}`", "doorbell entry at position `p = 0` (`doorbell + p % doorbells`): "
         f"slot {index}, tag `DOORBELL_TAG_FLAG | 0` (lap 0)", _hex(int(image[entry]))),
        ("2", str(tail), f"`{4 * tail:#07x}`", "`DOORBELL_TAIL` (after the store fence)", str(int(image[tail]))),
    ]  # fmt: skip
    doorbell = markdown_table(("store", "word", "byte offset", "what", "value"), doorbell_rows)
    ops = [(BuiltinOpcode.STORE_U32, (3, 0xAB)), (BuiltinOpcode.NOP, ()), (BuiltinOpcode.ATOMIC_ADD, (3, 1))]
    packed = encode_packed(ops)
    metadata_words = (1 + 3 * len(ops) + 3) // 4
    raw = b"".join(word.to_bytes(4, "little") for word in packed[:metadata_words])
    packed_rows = [(f"`ARG{i}`", _hex(word), "metadata" if i < metadata_words else "argument") for i, word in
                   enumerate(packed)]  # fmt: skip
    op_text = ", ".join(f"{BuiltinOpcode(op).name}{tuple(args)}" for op, args in ops)
    return (
        f"**A slot.** The host publishes `SlotRequest(ATOMIC_ADD, (7, 5), priority=HIGH)` into slot {index} "
        f"of `Layout()` (in the HIGH partition, which starts at slot {geometry.partition_offsets[Priority.HIGH]}); "
        f"its words start at word `ring + {index} * {SLOT_WORDS}` = {base}. The host writes words {base + 1} .. "
        f"{base + SLOT_WORDS - 1}, then (after its store fence) word {base} = PUBLISHED. Say `obs[7]` held 41: "
        f"a device worker claims the slot (STATUS becomes CLAIMED), adds 5, writes RESULT0 = 41 (`0x29`) and "
        f"zeros, fences, then writes DONE. The host copies the results, then writes EMPTY.\n\n"
        + slot
        + f"\n**Its doorbell hint.** Right after the status store the host rings the doorbell "
        f"(`codec.ring_doorbell`) of the fresh image (`DOORBELL_TAIL = DOORBELL_HEAD = 0`, "
        f"`DOORBELL_CAPACITY = {geometry.doorbells}`): one entry, then the tail.\n\n"
        + doorbell
        + f"\nA device polling the entry at its head (position 0) reads `{int(image[entry]):#010x}`: the tag "
        f"of lap 0 (`{int(image[entry]) >> layout.DOORBELL_SLOT_BITS:#x}`), so the entry is new; it claims slot "
        f"{index} (status, tenant check, CAS) as usual, then stores `DOORBELL_HEAD = 1`.\n"
        + f"\n**A packed slot.** `encode_packed([{op_text}])`: metadata bytes `{raw.hex(' ')}` (count "
        f"{len(ops)}, then `(opcode, first argument word, argument count)` per op, zero padded to "
        f"{metadata_words} words), then the arguments:\n\n" + markdown_table(("word", "value", "part"), packed_rows)
    )


class GeneratedBlock(NamedTuple):
    name: str
    render: Callable[[], str]


BLOCKS: tuple[GeneratedBlock, ...] = (
    GeneratedBlock("regions", regions_markdown),
    GeneratedBlock("constants", constants_markdown),
    GeneratedBlock("control", control_markdown),
    GeneratedBlock("slot", slot_markdown),
    GeneratedBlock("priorities", priorities_markdown),
    GeneratedBlock("opcode-space", opcode_space_markdown),
    GeneratedBlock("builtins", builtins_markdown),
    GeneratedBlock("run-args", run_args_markdown),
    GeneratedBlock("metrics", metrics_markdown),
    GeneratedBlock("debug-log", debug_log_markdown),
    GeneratedBlock("io-queue", io_queue_markdown),
    GeneratedBlock("faults", faults_markdown),
    GeneratedBlock("digest", digest_markdown),
    GeneratedBlock("example", example_markdown),
)


# ---------------------------------------------------------------- splicing blocks into the document


def extract_block(text: str, name: str) -> str:
    """The text between the markers of block ``name`` (markers excluded)."""
    return docblocks.extract_block(text, begin_marker(name), end_marker(name))


def replace_block(text: str, name: str, content: str) -> str:
    return docblocks.replace_block(text, begin_marker(name), end_marker(name), content)


def render_document(text: str) -> str:
    """``text`` with every generated block brought up to date."""
    for block in BLOCKS:
        text = replace_block(text, block.name, block.render())
    return text


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vyre_runtime.protocol.docgen",
        description="Print (or rewrite in place) the generated blocks of docs/PROTOCOL.md.",
    )
    add_mode_arguments(parser, DOC_PATH)
    args = parser.parse_args(argv)
    if not (args.write or args.check):
        for block in BLOCKS:
            sys.stdout.write(f"{begin_marker(block.name)}\n{block.render()}{end_marker(block.name)}\n\n")
        return 0
    return write_or_check(args, render_document, REGENERATE_COMMAND)


if __name__ == "__main__":
    sys.exit(main())
