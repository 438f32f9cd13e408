"""Aligned and wide input loads for the JIT's speculative loop trips (jit._fast_loop).

A speculative step runs a loop's trips straight, ignoring its branches, so every register is a
known function of the registers at the step's start (the *entry*). Following the few ops that
keep an address affine (`add`/`sub` of an immediate, `add` of an entry register, `mov`), each
input load's address becomes ``entry[base] + offset + times * entry[step]`` (mod 2^32). That is
the proof the brief asks of an induction: it holds exactly for the straight-line trips, whatever
the loop's shape, because it is computed from the very instructions the trips run.

With it, one warp vote at the step's start tests alignment once for all trips:
- loads of one *class* (same base and step register) whose offsets differ by multiples of their
  sizes are aligned together when the class's first address is, and the step register is a
  multiple of the alignment (2^32 is a multiple of it, so wrapping keeps it). Such a load reads
  its word plainly (megakernel.cu `jit_read`): no funnel shift, no second word, and no predicated
  load (the same vote proved its bytes inside the region: `address < jit_stop(len, size)`);
- loads of one class and one trip-count multiple whose bytes make one contiguous span (each
  trip's word right after the last: an address advancing by its load's size) are fetched before
  the trips as a few 16/8/4-byte pieces, and each trip's value is extracted from them. All or
  none stays exact: the span is the union of its loads' bytes, so it lies in the region exactly
  when every one of them does (a span that would wrap 2^32 is dropped: the stepped path runs it).
A vote that fails runs today's trips (jit.jit_load per load), so faults, fuel and results never
depend on the plan, only the instruction count of the trips does.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from vyre_runtime.errors import BackendError
from vyre_runtime.vir0 import isa
from vyre_runtime.vir0.program import Instruction, Program

# A/B runs: $VYRE_JIT_WIDE_LOADS=0 keeps every trip load on jit_load (today's path); unset or
# "1": aligned and wide loads where proven. It changes the generated text, so the cache key.
WIDE_LOADS_ENV = "VYRE_JIT_WIDE_LOADS"
# The widest span read as pieces: 8 trips of a word loop are 32 bytes; wider spans would only
# hold more registers live.
MAX_SPAN_BYTES = 64
_PIECES = (16, 8, 4, 2, 1)
_PIECE_TYPES = {16: "uint4", 8: "uint2", 4: "uint32_t", 2: "uint16_t", 1: "uint8_t"}
_INPUT_LOADS = {isa.Op.LDI8: 1, isa.Op.LDI16: 2, isa.Op.LDI32: 4}
_MASK = 0xFFFFFFFF
_WRITES = {isa.Role.REG_WRITE: 1, isa.Role.REG_READ_WRITE: 1, isa.Role.PAIR_WRITE: 2, isa.Role.PAIR_READ_WRITE: 2}


def enabled() -> bool:
    word = os.environ.get(WIDE_LOADS_ENV, "1")
    if word not in ("0", "1"):
        raise BackendError(f"${WIDE_LOADS_ENV} is {word!r}", "set it to 0 (off) or 1 (on), or unset it")
    return word == "1"


@dataclass(frozen=True)
class Affine:
    """``entry[base] + offset + times * entry[step]`` mod 2^32 (entry: the step's start)."""

    base: int
    offset: int = 0
    step: int | None = None
    times: int = 0

    def shifted(self, by: int) -> Affine:
        return Affine(self.base, (self.offset + by) & _MASK, self.step, self.times)

    @property
    def plain(self) -> bool:  # the entry value of one register
        return self.offset == 0 and self.step is None


@dataclass(frozen=True)
class TripLoad:
    """An input load of the straight trips: trip, pc, size and its address (None: not affine)."""

    trip: int
    pc: int
    size: int
    dest: int
    address: Affine | None


def _written(instruction: Instruction) -> list[int]:
    decoded = isa.decode_opcode(instruction.op)
    if decoded is None:  # verified code has none; say "everything may change"
        return list(range(isa.MAX_REGISTERS))
    roles = isa.effective_roles(*decoded)
    out = []
    for register, role in zip((instruction.d, instruction.a, instruction.b), roles[:3]):
        out += [register + i for i in range(_WRITES.get(role, 0))]
    return out


def _result(instruction: Instruction, state: list[Affine | None]) -> Affine | None:
    """The affine form of what ``instruction`` writes to d, or None."""
    op, imm_form = instruction.op & ~isa.IMM_FORM, bool(instruction.op & isa.IMM_FORM)
    a = state[instruction.a]
    if op == isa.Op.MOV:
        return a
    if a is not None and imm_form and op in (isa.Op.ADD, isa.Op.SUB):
        return a.shifted(instruction.imm if op == isa.Op.ADD else -instruction.imm)
    if op == isa.Op.ADD and not imm_form:
        b = state[instruction.b]
        for x, y in ((a, b), (b, a)):
            if x is not None and y is not None and y.plain and x.step in (None, y.base):
                return Affine(x.base, x.offset, y.base, x.times + 1)
    return None


def trip_loads(program: Program, pcs: Sequence[int], trips: int) -> list[TripLoad]:
    """Every input load of ``trips`` straight runs of ``pcs`` (one trip's instructions in order)."""
    state: list[Affine | None] = [Affine(r) for r in range(isa.MAX_REGISTERS)]
    loads = []
    for trip in range(trips):
        for pc in pcs:
            instruction = program.code[pc]
            size = _INPUT_LOADS.get(instruction.op)
            if size is not None:
                base = state[instruction.a]
                address = None if base is None else base.shifted(instruction.imm)
                loads.append(TripLoad(trip, pc, size, instruction.d, address))
                state[instruction.d] = None
                continue
            value = _result(instruction, state)  # None for every op but mov, add, sub
            for register in _written(instruction):
                if register < isa.MAX_REGISTERS:
                    state[register] = None
            if value is not None:
                state[instruction.d] = value
    return loads


def _at(load: TripLoad) -> Affine:
    if load.address is None:  # the planner only takes affine loads
        raise AssertionError(f"load at {load.pc} has no affine address")
    return load.address


@dataclass
class _Span:
    """Loads of one class and trip multiple whose bytes are one contiguous span."""

    start: int  # its first byte's offset (the class's Affine.offset)
    width: int
    loads: list[TripLoad]

    def pieces(self) -> list[tuple[int, int]]:
        """(offset in the span, size): each piece aligned to its size from the span's start."""
        out, at = [], 0
        while at < self.width:
            size = next(p for p in _PIECES if p <= self.width - at and at % p == 0)
            out.append((at, size))
            at += size
        return out

    @property
    def align(self) -> int:
        return max(size for _, size in self.pieces())


def _relative(offset: int, anchor: int) -> int:
    """offset - anchor as a signed 32-bit distance."""
    delta = (offset - anchor) & _MASK
    return delta - (1 << 32) if delta >= 1 << 31 else delta


def _spans(loads: list[TripLoad]) -> list[_Span]:
    """Contiguous spans of loads that share base, step and times (their offsets near each other)."""
    anchor = _at(loads[0]).offset
    spans: list[_Span] = []
    for load in sorted(loads, key=lambda load: _relative(_at(load).offset, anchor)):
        at = _relative(_at(load).offset, anchor)
        last = spans[-1] if spans else None
        if last is not None and at <= _relative(last.start, anchor) + last.width:
            last.width = max(last.width, at + load.size - _relative(last.start, anchor))
            last.loads.append(load)
        else:
            spans.append(_Span(_at(load).offset, load.size, [load]))
    return spans


def _extract(span: _Span, load: TripLoad, name: str) -> str | None:
    """C for ``load``'s value out of ``span``'s pieces (named name_<offset>), or None when its
    bytes do not sit inside one 32-bit word of one piece."""
    at = _relative(_at(load).offset, span.start)
    for start, size in span.pieces():
        if start <= at < start + size:
            inside = at - start
            if inside % 4 + load.size > 4 or inside + load.size > size:
                return None
            piece = f"{name}_{start}"
            word = f"{piece}.{'xyzw'[inside // 4]}" if size >= 8 else f"(uint32_t){piece}"
            shift = 8 * (inside % 4)
            value = f"({word} >> {shift}u)" if shift else word
            return value if load.size == 4 else f"({value} & {(1 << 8 * load.size) - 1:#x}u)"
    return None


@dataclass(frozen=True)
class _Unit:
    """What the aligned copy reads as one: a span's pieces, or one load (span None)."""

    address: Affine
    align: int
    loads: tuple[TripLoad, ...]
    span: _Span | None = None


@dataclass
class Plan:
    """How the aligned copy of a speculative step reads its input loads."""

    addresses: list[str] = field(default_factory=list)  # before the vote: each unit's address over L
    test: list[str] = field(default_factory=list)  # the vote: all aligned and inside the region
    prelude: list[str] = field(default_factory=list)  # the aligned copy: the spans' pieces first
    lines: dict[tuple[int, int], str] = field(default_factory=dict)  # (trip, pc) -> its load's line
    widths: set[int] = field(default_factory=set)  # the jit_stop<width> constants the test names

    @property
    def useful(self) -> bool:
        return bool(self.lines)


def _form(address: Affine) -> str:
    """C for an Affine address over L (the step's entry registers)."""
    text = f"L.r[{address.base}] + {address.offset:#x}u"
    return text + (f" + {address.times}u * L.r[{address.step}]" if address.times else "")


def _units(members: list[TripLoad]) -> list[_Unit]:
    """A class's loads as spans where their bytes are contiguous and extractable, else singly."""
    units = []
    for times in dict.fromkeys(_at(load).times for load in members):
        for span in _spans([load for load in members if _at(load).times == times]):
            address = Affine(_at(span.loads[0]).base, span.start, _at(span.loads[0]).step, times)
            wide = len(span.loads) > 1 and span.width <= MAX_SPAN_BYTES and span.align > 1
            if wide and all(_extract(span, load, "x") for load in span.loads):
                units.append(_Unit(address, span.align, tuple(span.loads), span))
            else:
                units += [_Unit(_at(load), load.size, (load,)) for load in span.loads]
    return units


def _classes(loads: list[TripLoad]) -> dict[tuple[int, int | None], list[TripLoad]]:
    """Loads by (base, step register): a load with no step term (times 0: a loop's first trip)
    joins its base's first class that has one, so one test covers the trips of an induction."""
    classes: dict[tuple[int, int | None], list[TripLoad]] = {}
    steps: dict[int, int] = {}  # base -> the step register of its first class with one
    for load in loads:
        step = _at(load).step
        if step is not None:
            steps.setdefault(_at(load).base, step)
    for load in loads:
        address = _at(load)
        step = address.step if address.times else steps.get(address.base)
        classes.setdefault((address.base, step), []).append(load)
    return classes


def plan(program: Program, pcs: Sequence[int], trips: int) -> Plan:
    """The aligned copy's loads for ``trips`` trips of ``pcs``: spans as pieces, the other
    affine loads one plain read each, unproven loads as today (no line: jit_load).

    The vote that picks the copy tests every planned address (aligned, and its bytes inside the
    region) before the trips, from the entry registers: the copy's reads then need no bound,
    select or predicate, and its planned loads cannot fault, so they leave `kept` alone. A lane
    with an address outside fails the vote and today's copy runs, which drops the trips."""
    result = Plan()
    classes = _classes([load for load in trip_loads(program, pcs, trips) if load.address is not None])
    for (_, step), members in classes.items():
        units = _units(members)
        anchor = max(units, key=lambda unit: unit.align)
        # a unit whose offset is not a multiple of its alignment away from the anchor's stays on
        # jit_load: one test of the anchor's address then proves every other unit aligned
        units = [unit for unit in units if _relative(unit.address.offset, anchor.address.offset) % unit.align == 0]
        if anchor.align > 1:
            result.test.append(f"((jit_in_low + {_form(anchor.address)}) & {anchor.align - 1}u) == 0u")
            if step is not None and any(unit.address.times != anchor.address.times for unit in units):
                result.test.append(f"(L.r[{step}] & {anchor.align - 1}u) == 0u")
        for unit in units:
            name = f"jw{len(result.addresses)}"
            width = unit.span.width if unit.span else unit.loads[0].size
            result.widths.add(width)
            result.addresses.append(f"const uint32_t {name} = {_form(unit.address)};  // {width} bytes")
            result.test.append(f"{name} < jit_stop{width}")
            if unit.span is None:
                (load,) = unit.loads
                line = f"T.r[{load.dest}] = jit_read<{load.size}u>(jit_in + {name});  // {load.pc}: aligned"
                result.lines[(load.trip, load.pc)] = line
                continue
            kinds = _PIECE_TYPES
            result.prelude += [
                f"const {kinds[size]} {name}_{start} = *(const {kinds[size]}*)(jit_in + {name} + {start}u);"
                for start, size in unit.span.pieces()
            ]
            for load in unit.loads:
                result.lines[(load.trip, load.pc)] = (
                    f"T.r[{load.dest}] = {_extract(unit.span, load, name)};  // {load.pc}"
                )
    return result


__all__ = ["MAX_SPAN_BYTES", "WIDE_LOADS_ENV", "Affine", "Plan", "TripLoad", "enabled", "plan", "trip_loads"]
