"""The IO request queue: the device asks the host to load a resource (LOAD_MISS).

    device: reserves an EMPTY entry (EMPTY -> RESERVED), writes the request, status PUBLISHED (last)
    host:   PUBLISHED -> CLAIMED (so a second poll never services it twice), loads the bytes,
            writes RESULT, then status OK, or ERROR with an error code in RESULT
    device: sees OK or ERROR, reads RESULT, writes EMPTY; ERROR ends the slot as FAULT(IO_ERROR)

Each side only writes an entry while the other side is waiting on it, so there is never a
concurrent read-modify-write of one word across the bus. The host answers every request it
claims, ERROR included (and on shutdown), so the device never spins forever.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vyre_runtime.errors import ProtocolError
from vyre_runtime.protocol.layout import IO_ENTRY_WORDS, IoError, IoOp, IoState, IoWord, Layout


@dataclass(frozen=True)
class IoRequest:
    entry: int
    op: int
    resource: int
    offset: int
    nbytes: int
    destination: int


def _entry_base(layout: Layout, entry: int) -> int:
    if not 0 <= entry < layout.io_entries:
        raise ProtocolError(f"IO entry {entry} is out of range 0..{layout.io_entries - 1}")
    return layout.io_queue + entry * IO_ENTRY_WORDS


def post_request(image: np.ndarray, layout: Layout, resource: int, offset: int, nbytes: int, destination: int) -> int:
    """Device side (caller holds the claim lock): the entry used, or -1 when every entry is busy."""
    states = image[layout.io_queue + IoWord.STATUS : layout.doorbell : IO_ENTRY_WORDS]
    free = np.flatnonzero(states == IoState.EMPTY)
    if len(free) == 0:
        return -1
    entry = int(free[0])
    base = _entry_base(layout, entry)
    # the sequence a GPU thread follows: reserve (its CAS from EMPTY), fill, publish last
    image[base + IoWord.STATUS] = IoState.RESERVED
    image[base + IoWord.OP] = IoOp.READ
    image[base + IoWord.RESOURCE] = resource
    image[base + IoWord.OFFSET_LO] = offset & 0xFFFFFFFF
    image[base + IoWord.OFFSET_HI] = offset >> 32
    image[base + IoWord.BYTES] = nbytes
    image[base + IoWord.DESTINATION] = destination
    image[base + IoWord.RESULT] = 0
    image[base + IoWord.STATUS] = IoState.PUBLISHED  # status last
    return entry


def take_answer(image: np.ndarray, layout: Layout, entry: int) -> tuple[bool, int] | None:
    """Device side: (ok, result) once the host answered, and the entry is EMPTY again; else None."""
    base = _entry_base(layout, entry)
    state = int(image[base + IoWord.STATUS])
    if state not in (IoState.OK, IoState.ERROR):
        return None
    result = int(image[base + IoWord.RESULT])
    image[base + IoWord.STATUS] = IoState.EMPTY
    return state == IoState.OK, result


def claim_requests(image: np.ndarray, layout: Layout) -> list[IoRequest]:
    """Host side: claim every PUBLISHED entry. A malformed one is answered ERROR at once."""
    claimed = []
    states = image[layout.io_queue + IoWord.STATUS : layout.doorbell : IO_ENTRY_WORDS]
    for entry in np.flatnonzero(states == IoState.PUBLISHED).tolist():
        base = _entry_base(layout, entry)
        image[base + IoWord.STATUS] = IoState.CLAIMED
        request = IoRequest(
            entry=entry,
            op=int(image[base + IoWord.OP]),
            resource=int(image[base + IoWord.RESOURCE]),
            offset=int(image[base + IoWord.OFFSET_LO]) | int(image[base + IoWord.OFFSET_HI]) << 32,
            nbytes=int(image[base + IoWord.BYTES]),
            destination=int(image[base + IoWord.DESTINATION]),
        )
        if request.op != IoOp.READ or request.nbytes == 0:
            complete(image, layout, entry, ok=False, result=IoError.MALFORMED)
            continue
        claimed.append(request)
    return claimed


def complete(image: np.ndarray, layout: Layout, entry: int, ok: bool, result: int) -> None:
    """Host side: answer a CLAIMED entry; answering anything else is a protocol error."""
    base = _entry_base(layout, entry)
    state = int(image[base + IoWord.STATUS])
    if state != IoState.CLAIMED:
        raise ProtocolError(f"IO entry {entry} is in state {state}, not CLAIMED; only a claimed request is answered")
    image[base + IoWord.RESULT] = result & 0xFFFFFFFF
    image[base + IoWord.STATUS] = IoState.OK if ok else IoState.ERROR  # status last


def decode(image: np.ndarray, layout: Layout) -> list[tuple[int, IoState, IoRequest]]:
    """Strict read-only decode of every non-EMPTY entry; rejects unknown states and ops."""
    entries = []
    for entry in range(layout.io_entries):
        base = _entry_base(layout, entry)
        words = image[base : base + IO_ENTRY_WORDS].tolist()
        state = words[IoWord.STATUS]
        if state not in IoState.__members__.values():
            raise ProtocolError(f"IO entry {entry} has status {state:#x}, which is not an IO state")
        if state in (IoState.EMPTY, IoState.RESERVED):  # a reserved entry's words are not published yet
            continue
        if words[IoWord.OP] not in IoOp.__members__.values():
            raise ProtocolError(f"IO entry {entry} has op {words[IoWord.OP]}, which is not an IO op")
        request = IoRequest(
            entry,
            words[IoWord.OP],
            words[IoWord.RESOURCE],
            words[IoWord.OFFSET_LO] | words[IoWord.OFFSET_HI] << 32,
            words[IoWord.BYTES],
            words[IoWord.DESTINATION],
        )
        entries.append((entry, IoState(state), request))
    return entries
