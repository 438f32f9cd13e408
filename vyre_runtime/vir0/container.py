"""The VIR0 binary container: encode a Program to canonical bytes, decode bytes back.

Layout (docs/VIR0.md, "Container"), all little-endian:

    header  (48 bytes): magic "VIR0", version u16, flags u16, section_count u16, reserved u16,
                        body_length u32, BLAKE3-256 digest of the body (32 bytes)
    body:   section table (section_count x {kind u16, reserved u16, offset u32, length u32},
            offsets from the body start), then each section, in ascending kind order, each
            starting at the next 4-byte boundary (zero padding), no bytes after the last one.

The encoding is canonical: one program has exactly one byte string, and the decoder rejects
every other arrangement (padding, order, optional sections present but empty), so the BLAKE3
digest identifies a program. Every limit is checked before the decoder allocates.
"""

from __future__ import annotations

import struct
from enum import IntEnum

import blake3

from vyre_runtime.errors import DecodeError
from vyre_runtime.vir0 import isa
from vyre_runtime.vir0.program import Binding, Program, Table, decode_code, encode_code

MAGIC = b"VIR0"
VERSION = 1
HEADER = struct.Struct("<4sHHHHI32s")
SECTION_ENTRY = struct.Struct("<HHII")
INFO = struct.Struct("<HHIII")
BINDING_ENTRY = struct.Struct("<BBHII")
U32 = struct.Struct("<I")
TABLE_INDEX_ENTRY = struct.Struct("<II")


class SectionKind(IntEnum):
    INFO = 1  # registers, emit record words, overlap, default fuel, default lanes
    CODE = 2  # instructions, 8 bytes each
    TABLES = 3  # read-only tables (optional; present iff the program has tables)
    BINDINGS = 4  # output buffer declarations (optional; present iff it has bindings)
    NAMES = 5  # program name, then table names, then binding names


REQUIRED_SECTIONS = (SectionKind.INFO, SectionKind.CODE, SectionKind.NAMES)


def _align4(n: int) -> int:
    return (n + 3) & ~3


def program_digest(blob: bytes) -> bytes:
    """BLAKE3-256 digest stored in a container's header (the digest of its body)."""
    return blake3.blake3(blob[HEADER.size :]).digest()


# ---------------------------------------------------------------- encode


def _encode_info(program: Program) -> bytes:
    return INFO.pack(program.registers, program.emit_words, program.overlap, program.fuel, program.lanes)


def _encode_tables(tables: tuple[Table, ...]) -> bytes:
    index_size = U32.size + TABLE_INDEX_ENTRY.size * len(tables)
    parts = [U32.pack(len(tables))]
    data = bytearray()
    for table in tables:
        offset = index_size + len(data)
        parts.append(TABLE_INDEX_ENTRY.pack(offset, len(table.data)))
        data += table.data
        data += bytes(_align4(len(data)) - len(data))
    return b"".join(parts) + bytes(data)


def _encode_bindings(bindings: tuple[Binding, ...]) -> bytes:
    entries = [BINDING_ENTRY.pack(int(b.scope), int(b.combine), 0, b.words, b.init & 0xFFFFFFFF) for b in bindings]
    return U32.pack(len(bindings)) + b"".join(entries)


def _encode_names(program: Program) -> bytes:
    names = [program.name, *(t.name for t in program.tables), *(b.name for b in program.bindings)]
    out = bytearray(U32.pack(len(names)))
    for name in names:
        raw = name.encode("utf-8")
        out += U32.pack(len(raw)) + raw
        out += bytes(_align4(len(out)) - len(out))
    return bytes(out)


def encode(program: Program) -> bytes:
    """The canonical container bytes of ``program`` (not verified; see ``verify``)."""
    sections: list[tuple[SectionKind, bytes]] = [
        (SectionKind.INFO, _encode_info(program)),
        (SectionKind.CODE, encode_code(program.code)),
    ]
    if program.tables:
        sections.append((SectionKind.TABLES, _encode_tables(program.tables)))
    if program.bindings:
        sections.append((SectionKind.BINDINGS, _encode_bindings(program.bindings)))
    sections.append((SectionKind.NAMES, _encode_names(program)))

    offset = SECTION_ENTRY.size * len(sections)
    table = bytearray()
    payload = bytearray()
    for kind, data in sections:
        offset = _align4(offset)
        payload += bytes(offset - SECTION_ENTRY.size * len(sections) - len(payload))
        table += SECTION_ENTRY.pack(int(kind), 0, offset, len(data))
        payload += data
        offset += len(data)
    body = bytes(table + payload)
    header = HEADER.pack(MAGIC, VERSION, 0, len(sections), 0, len(body), blake3.blake3(body).digest())
    blob = header + body
    if len(blob) > isa.MAX_PROGRAM_BYTES:
        raise DecodeError(
            f"program encodes to {len(blob)} bytes, over the {isa.MAX_PROGRAM_BYTES}-byte limit",
            "shrink its tables or code",
        )
    return blob


# ---------------------------------------------------------------- decode


def _fail(message: str) -> DecodeError:
    return DecodeError(f"malformed VIR0 program: {message}")


def _read_sections(blob: bytes) -> dict[SectionKind, bytes]:
    if len(blob) > isa.MAX_PROGRAM_BYTES:
        raise _fail(f"{len(blob)} bytes is over the {isa.MAX_PROGRAM_BYTES}-byte limit")
    if len(blob) < HEADER.size:
        raise _fail(f"{len(blob)} bytes is shorter than the {HEADER.size}-byte header")
    magic, version, flags, count, reserved, body_length, digest = HEADER.unpack_from(blob)
    if magic != MAGIC:
        raise _fail(f"magic is {magic!r}, expected {MAGIC!r} (is this a VIR0 program?)")
    if version != VERSION:
        raise _fail(f"version {version} is not supported (this runtime reads version {VERSION})")
    if flags != 0 or reserved != 0:
        raise _fail(f"reserved header bits are set (flags={flags:#x}, reserved={reserved:#x})")
    if body_length != len(blob) - HEADER.size:
        raise _fail(f"header says the body is {body_length} bytes, the blob holds {len(blob) - HEADER.size}")
    if not len(REQUIRED_SECTIONS) <= count <= len(SectionKind):
        raise _fail(f"{count} sections; a program has {len(REQUIRED_SECTIONS)} to {len(SectionKind)}")
    body = memoryview(blob)[HEADER.size :]
    if blake3.blake3(body).digest() != digest:
        raise _fail("BLAKE3 digest does not match the body (corrupted or edited)")
    table_size = SECTION_ENTRY.size * count
    if table_size > len(body):
        raise _fail("section table runs past the end of the blob")
    sections: dict[SectionKind, bytes] = {}
    expected_offset = table_size
    previous_kind = 0
    for i in range(count):
        kind_number, entry_reserved, offset, length = SECTION_ENTRY.unpack_from(body, i * SECTION_ENTRY.size)
        if kind_number not in SectionKind.__members__.values() or kind_number <= previous_kind:
            raise _fail(f"section {i} has kind {kind_number}; kinds must be known and ascending")
        if entry_reserved != 0:
            raise _fail(f"section {i} has a non-zero reserved field")
        padded = _align4(expected_offset)
        if offset != padded:
            raise _fail(f"section {i} starts at {offset}, the canonical offset is {padded}")
        if any(body[expected_offset:padded]):
            raise _fail(f"non-zero padding before section {i}")
        if offset + length > len(body):
            raise _fail(f"section {i} runs past the end of the blob")
        kind = SectionKind(kind_number)
        sections[kind] = bytes(body[offset : offset + length])
        expected_offset = offset + length
        previous_kind = kind_number
    if expected_offset != len(body):
        raise _fail(f"{len(body) - expected_offset} trailing bytes after the last section")
    for kind in REQUIRED_SECTIONS:
        if kind not in sections:
            raise _fail(f"the {kind.name} section is missing")
    return sections


def _decode_info(data: bytes) -> tuple[int, int, int, int, int]:
    if len(data) != INFO.size:
        raise _fail(f"INFO section is {len(data)} bytes, expected {INFO.size}")
    registers, emit_words, overlap, fuel, lanes = INFO.unpack(data)
    if not 1 <= registers <= isa.MAX_REGISTERS:
        raise _fail(f"{registers} registers; allowed 1..{isa.MAX_REGISTERS}")
    if emit_words > isa.MAX_EMIT_WORDS:
        raise _fail(f"emit records of {emit_words} words; at most {isa.MAX_EMIT_WORDS}")
    if overlap > isa.MAX_OVERLAP:
        raise _fail(f"overlap {overlap} bytes; at most {isa.MAX_OVERLAP}")
    if fuel == 0:
        raise _fail("default fuel is 0; a program needs at least 1 instruction of fuel")
    if not 1 <= lanes <= isa.MAX_LANES:
        raise _fail(f"default lane count {lanes}; allowed 1..{isa.MAX_LANES}")
    return registers, emit_words, overlap, fuel, lanes


def _decode_tables(data: bytes, names: list[str]) -> tuple[Table, ...]:
    if len(data) < U32.size:
        raise _fail("TABLES section is truncated")
    (count,) = U32.unpack_from(data)
    if not 1 <= count <= isa.MAX_TABLES:
        raise _fail(f"{count} tables; allowed 1..{isa.MAX_TABLES} (omit the section when there are none)")
    index_size = U32.size + TABLE_INDEX_ENTRY.size * count
    if index_size > len(data):
        raise _fail("TABLES index runs past its section")
    tables = []
    expected = index_size
    total = 0
    for i in range(count):
        offset, length = TABLE_INDEX_ENTRY.unpack_from(data, U32.size + i * TABLE_INDEX_ENTRY.size)
        if offset != expected or offset + length > len(data):
            raise _fail(f"table {i} at offset {offset}, length {length} is not canonical or out of bounds")
        total += length
        if total > isa.MAX_TABLE_BYTES_TOTAL:
            raise _fail(f"tables hold more than {isa.MAX_TABLE_BYTES_TOTAL} bytes")
        end = offset + length
        padded = _align4(end)
        if padded > len(data) or any(data[end:padded]):
            raise _fail(f"bad padding after table {i}")
        tables.append(Table(names[i], data[offset:end]))
        expected = padded
    if expected != len(data):
        raise _fail("trailing bytes in the TABLES section")
    return tuple(tables)


def _decode_bindings(data: bytes, names: list[str]) -> tuple[Binding, ...]:
    if len(data) < U32.size:
        raise _fail("BINDINGS section is truncated")
    (count,) = U32.unpack_from(data)
    if not 1 <= count <= isa.MAX_BINDINGS:
        raise _fail(f"{count} bindings; allowed 1..{isa.MAX_BINDINGS} (omit the section when there are none)")
    if len(data) != U32.size + BINDING_ENTRY.size * count:
        raise _fail("BINDINGS section size does not match its count")
    bindings = []
    for i in range(count):
        scope, combine, reserved, words, init = BINDING_ENTRY.unpack_from(data, U32.size + i * BINDING_ENTRY.size)
        if scope not in isa.Scope.__members__.values() or combine not in isa.Combine.__members__.values():
            raise _fail(f"binding {i} has unknown scope {scope} or combine {combine}")
        if reserved != 0:
            raise _fail(f"binding {i} has a non-zero reserved field")
        if not 1 <= words <= isa.MAX_BINDING_WORDS:
            raise _fail(f"binding {i} has {words} words; allowed 1..{isa.MAX_BINDING_WORDS}")
        bindings.append(Binding(names[i], words, isa.Scope(scope), isa.Combine(combine), init))
    return tuple(bindings)


def _decode_names(data: bytes, expected_count_limit: int) -> list[str]:
    if len(data) < U32.size:
        raise _fail("NAMES section is truncated")
    (count,) = U32.unpack_from(data)
    if count > expected_count_limit:
        raise _fail(f"{count} names; this program can have at most {expected_count_limit}")
    names = []
    position = U32.size
    for i in range(count):
        if position + U32.size > len(data):
            raise _fail(f"name {i} is truncated")
        (length,) = U32.unpack_from(data, position)
        position += U32.size
        if length > isa.MAX_NAME_BYTES or position + length > len(data):
            raise _fail(f"name {i} is {length} bytes; at most {isa.MAX_NAME_BYTES}, inside the section")
        raw = data[position : position + length]
        try:
            names.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise _fail(f"name {i} is not UTF-8") from None
        end = position + length
        position = _align4(end)
        if position > len(data) or any(data[end:position]):
            raise _fail(f"bad padding after name {i}")
    if position != len(data):
        raise _fail("trailing bytes in the NAMES section")
    return names


def decode(blob: bytes) -> Program:
    """Parse container bytes into a Program. Raises DecodeError; does not run the verifier."""
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise DecodeError(f"expected bytes, got {type(blob).__name__}", "pass the program's bytes")
    blob = bytes(blob)
    sections = _read_sections(blob)
    registers, emit_words, overlap, fuel, lanes = _decode_info(sections[SectionKind.INFO])
    code_bytes = sections[SectionKind.CODE]
    if len(code_bytes) % isa.INSTRUCTION_BYTES:
        raise _fail(f"CODE section is {len(code_bytes)} bytes, not a multiple of {isa.INSTRUCTION_BYTES}")
    if not 1 <= len(code_bytes) // isa.INSTRUCTION_BYTES <= isa.MAX_CODE_INSTRUCTIONS:
        raise _fail(f"code must have 1..{isa.MAX_CODE_INSTRUCTIONS} instructions")
    table_count = _peek_count(sections.get(SectionKind.TABLES))
    binding_count = _peek_count(sections.get(SectionKind.BINDINGS))
    names = _decode_names(sections[SectionKind.NAMES], 1 + isa.MAX_TABLES + isa.MAX_BINDINGS)
    if len(names) != 1 + table_count + binding_count:
        raise _fail(f"{len(names)} names for 1 program, {table_count} tables and {binding_count} bindings")
    tables: tuple[Table, ...] = ()
    if SectionKind.TABLES in sections:
        tables = _decode_tables(sections[SectionKind.TABLES], names[1 : 1 + table_count])
    bindings: tuple[Binding, ...] = ()
    if SectionKind.BINDINGS in sections:
        bindings = _decode_bindings(sections[SectionKind.BINDINGS], names[1 + table_count :])
    return Program(
        name=names[0],
        code=decode_code(code_bytes),
        registers=registers,
        emit_words=emit_words,
        overlap=overlap,
        fuel=fuel,
        lanes=lanes,
        tables=tables,
        bindings=bindings,
    )


def _peek_count(data: bytes | None) -> int:
    if data is None:
        return 0
    if len(data) < U32.size:
        raise _fail("a TABLES or BINDINGS section is truncated")
    (count,) = U32.unpack_from(data)
    if count > max(isa.MAX_TABLES, isa.MAX_BINDINGS):
        raise _fail(f"section count {count} is over its limit")
    return count
