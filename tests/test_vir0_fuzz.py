"""Decoder fuzzing: `load` of any bytes either returns a Program or raises VyreError.

Volume comes from a seeded random.Random (no hypothesis) so a run is reproducible and fast:
over 100,000 blobs in a few seconds on one core. Most mutants are re-sealed (body length and
BLAKE3 digest recomputed) because the digest would otherwise reject nearly all of them before
the section, table, name and instruction decoders or the verifier ever see them.

Every blob that loads must also be canonical (``encode(load(blob)) == blob``): the container
promises exactly one byte string per program.
"""

from __future__ import annotations

import random
import struct
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable

import blake3
import pytest
from strategies import random_program

from vyre_runtime.errors import VyreError
from vyre_runtime.vir0 import isa
from vyre_runtime.vir0.asm import assemble, disassemble
from vyre_runtime.vir0.container import HEADER, SECTION_ENTRY, SectionKind, decode, encode
from vyre_runtime.vir0.program import Instruction, Program, Table
from vyre_runtime.vir0.verify import load

SEED = 20260
MIN_BLOBS = 100_000
INTERESTING_U32 = (0, 1, 2, 3, 4, 8, 0xFF, 0x100, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF)
Mutator = Callable[[random.Random, bytearray], None]


def _seal(body: bytes, blob_header: bytes) -> bytes:
    """``body`` behind ``blob_header`` with the body length and digest made correct."""
    header = bytearray(blob_header[: HEADER.size].ljust(HEADER.size, b"\0"))
    struct.pack_into("<I", header, 12, len(body))
    header[16:48] = blake3.blake3(body).digest()
    return bytes(header) + body


class _Outcomes:
    """Counts results per category; any exception outside VyreError fails with a reproduction."""

    def __init__(self) -> None:
        self.loaded: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.loaded_samples: list[bytes] = []

    @property
    def total(self) -> int:
        return sum(self.loaded.values()) + sum(self.rejected.values())

    def check(self, category: str, blob: bytes) -> None:
        try:
            program = load(blob)
        except VyreError:
            self.rejected[category] += 1
            return
        except Exception as error:  # the property under test: nothing else may escape
            pytest.fail(f"{category}: load raised {type(error).__name__}: {error}\nblob: {blob.hex()}")
        if encode(program) != blob:
            pytest.fail(f"{category}: a non-canonical blob loaded\nblob: {blob.hex()}")
        self.loaded[category] += 1
        if len(self.loaded_samples) < 300 and random.Random(len(blob)).random() < 0.05:
            self.loaded_samples.append(blob)


# ---------------------------------------------------------------- seeds


# Small, but with every rule a mutated field can break: a DFA table (2 states) used by dfa and
# dfae, an emit record, an empty table next to a literal, a histogram binding.
FEATURES_SOURCE = """
.program features
.registers 6
.emit 2
.table empty hex
.table lit "ab"
.dfa d "a"
.binding h 256
.binding g 1 global
    dfa r0, r1, r2, d
    dfae r2, r1, r2, d
    findl r3, r1, r2, lit
    ldt8 r3, r1, empty, 0
    hist r1, r2, r3, h
    atmax r1, r2, r3, g
    emit r4
    exit
"""


def _seed_blobs(rng: random.Random) -> list[bytes]:
    """Valid programs of every shape, shortest first."""
    programs = [random_program(rng, max_instructions=rng.choice((2, 6, 24))) for _ in range(36)]
    programs.append(Program("bare", (Instruction(isa.Op.EXIT),)))
    programs.append(Program("one_table", (Instruction(isa.Op.EXIT),), tables=(Table("t", b"abcde"),)))
    return sorted({encode(program) for program in programs} | {assemble(FEATURES_SOURCE)}, key=len)


# ---------------------------------------------------------------- mutations of a body


def _position(rng: random.Random, body: bytearray) -> int:
    # Half the edits land in the first 160 bytes: section table, INFO, CODE, table index.
    limit = len(body) if rng.random() < 0.5 else min(len(body), 160)
    return rng.randrange(max(limit, 1))


def _flip_bits(rng: random.Random, body: bytearray) -> None:
    for _ in range(rng.randint(1, 4)):
        if body:
            body[_position(rng, body)] ^= 1 << rng.randrange(8)


def _set_byte(rng: random.Random, body: bytearray) -> None:
    if body:
        body[_position(rng, body)] = rng.choice((0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)))


def _set_word(rng: random.Random, body: bytearray) -> None:
    if len(body) >= 4:
        at = min(_position(rng, body) & ~3, len(body) - 4)
        value = rng.choice((*INTERESTING_U32, len(body), len(body) + 4, rng.getrandbits(32)))
        struct.pack_into("<I", body, at, value)


def _set_half(rng: random.Random, body: bytearray) -> None:
    if len(body) >= 2:
        at = min(_position(rng, body) & ~1, len(body) - 2)
        struct.pack_into("<H", body, at, rng.choice((0, 1, 5, 6, 0x7F, 0x80, 0xFFFF, rng.getrandbits(16))))


def _insert(rng: random.Random, body: bytearray) -> None:
    at = _position(rng, body) if body else 0
    body[at:at] = rng.choice((bytes(rng.choice((1, 4, 8))), rng.randbytes(rng.randint(1, 12))))


def _delete(rng: random.Random, body: bytearray) -> None:
    if body:
        at = _position(rng, body)
        del body[at : at + rng.choice((1, 2, 4, 8, rng.randint(1, 32)))]


def _duplicate(rng: random.Random, body: bytearray) -> None:
    if body:
        at = _position(rng, body)
        chunk = body[at : at + rng.choice((4, 8, 12, 16))]
        body[at:at] = chunk


def _swap_words(rng: random.Random, body: bytearray) -> None:
    if len(body) >= 8:
        i, j = (min(_position(rng, body) & ~3, len(body) - 4) for _ in range(2))
        body[i : i + 4], body[j : j + 4] = body[j : j + 4], body[i : i + 4]


def _truncate(rng: random.Random, body: bytearray) -> None:
    del body[rng.randrange(len(body) + 1) :]


MUTATORS: tuple[Mutator, ...] = (
    _flip_bits,
    _set_byte,
    _set_word,
    _set_half,
    _insert,
    _delete,
    _duplicate,
    _swap_words,
    _truncate,
)


def _mutant_body(rng: random.Random, blob: bytes) -> bytearray:
    body = bytearray(blob[HEADER.size :])
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        rng.choice(MUTATORS)(rng, body)
    return body


def _mutate_instruction(rng: random.Random, blob: bytes) -> bytes:
    """A decoded program with one instruction field replaced: exercises the verifier."""
    program = decode(blob)
    code = list(program.code)
    pc = rng.randrange(len(code))
    fields = list(code[pc])
    which = rng.randrange(5)
    if which == 0:
        fields[0] = rng.choice((rng.randrange(256), rng.choice(isa.OPCODES).code | rng.choice((0, isa.IMM_FORM))))
    elif which < 4:
        fields[which] = rng.choice((0, 1, rng.randrange(256), program.registers, program.registers - 1, 255))
    else:
        fields[4] = rng.choice((*INTERESTING_U32, len(code), len(code) - 1, rng.getrandbits(32)))
    code[pc] = Instruction(*fields)
    mutated = Program(
        program.name,
        tuple(code),
        program.registers,
        program.emit_words,
        program.overlap,
        program.fuel,
        program.lanes,
        program.tables,
        program.bindings,
    )
    return encode(mutated)


def _replace_section(rng: random.Random, blob: bytes) -> bytes:
    """One section swapped for random or mutated bytes inside an otherwise canonical layout."""
    (count,) = struct.unpack_from("<H", blob, 8)
    body = blob[HEADER.size :]
    entries = [SECTION_ENTRY.unpack_from(body, i * SECTION_ENTRY.size) for i in range(count)]
    sections = [(kind, bytearray(body[offset : offset + length])) for kind, _, offset, length in entries]
    index = rng.randrange(count)
    kind, data = sections[index]
    if rng.random() < 0.3:
        size = rng.choice((0, 4, 8, 12, 16, 20, len(data), rng.randrange(64)))
        data = bytearray(rng.randbytes(size))
        if kind in (SectionKind.TABLES, SectionKind.BINDINGS, SectionKind.NAMES) and size >= 4 and rng.random() < 0.7:
            struct.pack_into("<I", data, 0, rng.choice((1, 2, 3, len(data) // 8)))  # plausible count
    else:
        rng.choice(MUTATORS)(rng, data)
    sections[index] = (kind, data)
    table_size = SECTION_ENTRY.size * count
    out_entries, payload = bytearray(), bytearray()
    offset = table_size
    for kind, data in sections:
        padding = (-offset) % 4
        payload += bytes(padding)
        offset += padding
        out_entries += SECTION_ENTRY.pack(kind, 0, offset, len(data))
        payload += data
        offset += len(data)
    return _seal(bytes(out_entries + payload), blob)


# ---------------------------------------------------------------- the fuzz run


def _fuzz(outcomes: _Outcomes) -> None:
    rng = random.Random(SEED)
    seeds = _seed_blobs(rng)
    # Most mutants start from small seeds so that edits hit structure rather than table data.
    small = [blob for blob in seeds if len(blob) < 2600]

    # Truncations at every length of a few programs, raw and re-sealed.
    for blob in (seeds[0], small[len(small) // 2], small[-1]):
        for length in range(len(blob)):
            outcomes.check("truncated", blob[:length])
            if length >= HEADER.size:
                outcomes.check("truncated+sealed", _seal(blob[HEADER.size : length], blob))

    plan: list[tuple[str, int, Callable[[bytes], bytes]]] = [
        ("mutated raw", 6_000, lambda blob: blob[: HEADER.size] + bytes(_mutant_body(rng, blob))),
        ("header edited", 4_000, lambda blob: _edit_header(rng, blob)),
        ("mutated+sealed", 50_000, lambda blob: _seal(bytes(_mutant_body(rng, blob)), blob)),
        ("instruction field", 14_000, lambda blob: _mutate_instruction(rng, blob)),
        ("section replaced", 14_000, lambda blob: _replace_section(rng, blob)),
        ("random bytes", 4_000, lambda _: _random_bytes(rng)),
        ("random body+header", 8_000, lambda _: _seal(rng.randbytes(rng.randrange(400)), _valid_header(rng))),
    ]
    for category, count, make in plan:
        for _ in range(count):
            outcomes.check(category, make(rng.choice(small if rng.random() < 0.8 else seeds)))


def _valid_header(rng: random.Random) -> bytes:
    return HEADER.pack(b"VIR0", 1, 0, rng.choice((3, 4, 5, rng.randrange(8))), 0, 0, bytes(32))


def _edit_header(rng: random.Random, blob: bytes) -> bytes:
    header = bytearray(blob[: HEADER.size])
    at = rng.randrange(16)  # magic, version, flags, count, reserved, body length (the digest is hit elsewhere)
    header[at] = rng.choice((0, 1, 0xFF, header[at] ^ (1 << rng.randrange(8))))
    return bytes(header) + blob[HEADER.size :]


def _random_bytes(rng: random.Random) -> bytes:
    data = rng.randbytes(rng.choice((0, 3, 47, 48, 49, 64, rng.randrange(300))))
    return b"VIR0" + data if rng.random() < 0.5 else data


def test_load_of_100k_mutated_and_random_blobs_returns_a_program_or_raises_vyre_error() -> None:
    outcomes = _Outcomes()
    started = time.perf_counter()
    _fuzz(outcomes)
    elapsed = time.perf_counter() - started
    assert outcomes.total >= MIN_BLOBS, outcomes.total
    # The deep categories must reach past the digest: some of their blobs load, some are refused.
    for category in ("mutated+sealed", "instruction field", "section replaced"):
        assert outcomes.loaded[category] > 0 and outcomes.rejected[category] > 0, category
    print(f"\nfuzzed {outcomes.total} blobs in {elapsed:.1f}s; loaded {dict(outcomes.loaded)}")
    print(f"rejected {dict(outcomes.rejected)}")


def test_mutants_that_load_survive_a_disassembly_round_trip() -> None:
    outcomes = _Outcomes()
    rng = random.Random(SEED + 1)
    seeds = _seed_blobs(rng)
    for _ in range(6000):
        blob = rng.choice(seeds)
        outcomes.check("instruction field", _mutate_instruction(rng, blob))
        outcomes.check("mutated+sealed", _seal(bytes(_mutant_body(rng, blob)), blob))
    assert outcomes.loaded_samples
    for blob in outcomes.loaded_samples:
        assert assemble(disassemble(blob)) == blob


# ---------------------------------------------------------------- memory: limits before allocation


def _bare_sections() -> dict[SectionKind, bytes]:
    blob = encode(Program("p", (Instruction(isa.Op.EXIT),)))
    body = blob[HEADER.size :]
    out = {}
    for i in range(3):
        kind, _, offset, length = SECTION_ENTRY.unpack_from(body, i * SECTION_ENTRY.size)
        out[SectionKind(kind)] = body[offset : offset + length]
    return out


def _layout(sections: dict[SectionKind, bytes], lengths: dict[SectionKind, int] | None = None) -> bytes:
    """Canonical layout, except that ``lengths`` may claim other section lengths than the data has."""
    lengths = lengths or {}
    kinds = sorted(sections)
    table_size = SECTION_ENTRY.size * len(kinds)
    entries, payload = bytearray(), bytearray()
    offset = table_size
    for kind in kinds:
        padding = (-offset) % 4
        payload += bytes(padding)
        offset += padding
        entries += SECTION_ENTRY.pack(kind, 0, offset, lengths.get(kind, len(sections[kind])))
        payload += sections[kind]
        offset += len(sections[kind])
    return _seal(bytes(entries + payload), HEADER.pack(b"VIR0", 1, 0, len(kinds), 0, 0, bytes(32)))


def _huge_claims() -> list[tuple[str, bytes]]:
    bare = _bare_sections()
    huge = 0xFFFFFFFF
    cases = []
    blob = bytearray(encode(Program("p", (Instruction(isa.Op.EXIT),))))
    struct.pack_into("<I", blob, 12, huge)
    cases.append(("body length", bytes(blob)))
    cases.append(("section length", _layout(bare, {SectionKind.NAMES: huge})))
    cases.append(("code length", _layout(bare, {SectionKind.CODE: huge - 7})))
    cases.append(("names count", _layout({**bare, SectionKind.NAMES: struct.pack("<I", huge)})))
    cases.append(("name length", _layout({**bare, SectionKind.NAMES: struct.pack("<II", 1, huge)})))
    cases.append(("tables count", _layout({**bare, SectionKind.TABLES: struct.pack("<I", huge)})))
    one_table = struct.pack("<III", 1, 12, huge)
    cases.append(("table length", _layout({**bare, SectionKind.TABLES: one_table})))
    cases.append(("bindings count", _layout({**bare, SectionKind.BINDINGS: struct.pack("<I", huge)})))
    binding = struct.pack("<I", 1) + struct.pack("<BBHII", 0, 1, 0, huge, 0)
    cases.append(("binding words", _layout({**bare, SectionKind.BINDINGS: binding})))
    # A DFA table claiming the maximum state count but holding 4 bytes: the verifier must not
    # allocate 64 Ki x 1 KiB of transitions to find out.
    dfa_claim = struct.pack("<I", isa.MAX_DFA_STATES)
    program = Program(
        "p", (Instruction(isa.Op.DFA, 0, 0, 0, 0), Instruction(isa.Op.EXIT)), tables=(Table("d", dfa_claim),)
    )
    cases.append(("dfa states", encode(program)))
    return cases


@pytest.mark.parametrize(("claim", "blob"), _huge_claims())
def test_huge_claimed_sizes_are_rejected_without_allocating_them(claim: str, blob: bytes) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(VyreError):
            load(blob)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000 + 8 * len(blob), f"{claim}: peak {peak} bytes for a {len(blob)}-byte blob"
