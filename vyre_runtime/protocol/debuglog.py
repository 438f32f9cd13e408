"""The PRINTF debug log: a ring of fixed records with a device-owned write cursor.

The write cursor only advances when a record fits (the device reserves with a compare-and-swap
among its own workers), so a full log drops records and counts them in DROPPED instead of
corrupting the cursor, the seed's defect. The host owns the read cursor (a control word) and
frees records by advancing it; each record's first word is its sequence number, written last,
so the host never reads a record that is reserved but not yet filled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vyre_runtime.errors import ProtocolError
from vyre_runtime.protocol.layout import DEBUG_RECORD_WORDS, ControlWord, DebugWord, Layout

MASK32 = 0xFFFFFFFF


@dataclass(frozen=True)
class DebugRecord:
    sequence: int  # 0-based position in the stream of all records ever written
    format_id: int
    a: int
    b: int
    slot: int
    tenant: int


def _record_base(layout: Layout, position: int) -> int:
    return layout.debug_log + DebugWord.HEADER_WORDS + (position % layout.debug_records) * DEBUG_RECORD_WORDS


def append_record(image: np.ndarray, layout: Layout, format_id: int, a: int, b: int, slot: int, tenant: int) -> bool:
    """Device side (the caller holds the device's claim lock). False if the record was dropped."""
    header = layout.debug_log
    write = int(image[header + DebugWord.WRITE_CURSOR])
    read = int(image[ControlWord.DEBUG_READ_CURSOR])
    if (write - read) & MASK32 >= layout.debug_records:
        image[header + DebugWord.DROPPED] = (int(image[header + DebugWord.DROPPED]) + 1) & MASK32
        return False
    image[header + DebugWord.WRITE_CURSOR] = (write + 1) & MASK32
    base = _record_base(layout, write)
    image[base + 1 : base + 6] = [format_id, a, b, slot, tenant]
    image[base + 6 : base + DEBUG_RECORD_WORDS] = 0
    image[base] = (write + 1) & MASK32  # sequence last: the record is complete
    return True


def _scan(image: np.ndarray, layout: Layout, strict: bool) -> tuple[list[DebugRecord], int]:
    header = layout.debug_log
    write = int(image[header + DebugWord.WRITE_CURSOR])
    read = int(image[ControlWord.DEBUG_READ_CURSOR])
    pending = (write - read) & MASK32
    if pending > layout.debug_records:
        raise ProtocolError(
            f"debug log cursors are inconsistent: write {write}, read {read}, capacity {layout.debug_records}",
            "the log is corrupted; recreate the runtime",
        )
    records = []
    position = read
    for _ in range(pending):
        base = _record_base(layout, position)
        sequence = int(image[base])
        if sequence != (position + 1) & MASK32:
            if strict:
                raise ProtocolError(f"debug record {position} has sequence {sequence}, expected {position + 1}")
            break  # reserved but not yet written: read it next time
        words = image[base + 1 : base + 6].tolist()
        records.append(DebugRecord(position, *words))
        position = (position + 1) & MASK32
    return records, position


def drain(image: np.ndarray, layout: Layout) -> list[DebugRecord]:
    """Host side: take every complete record and free its space."""
    records, position = _scan(image, layout, strict=False)
    image[ControlWord.DEBUG_READ_CURSOR] = position
    return records


def dropped(image: np.ndarray, layout: Layout) -> int:
    return int(image[layout.debug_log + DebugWord.DROPPED])


def decode(image: np.ndarray, layout: Layout) -> list[DebugRecord]:
    """Strict, read-only decode of a snapshot: every pending record must be complete."""
    records, _ = _scan(image, layout, strict=True)
    return records
