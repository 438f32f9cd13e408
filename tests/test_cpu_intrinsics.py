"""CPU interpreter: coarse intrinsics over input ranges, against plain-Python references.

Lane i runs the intrinsic over [start[i], start[i] + length[i]) taken from tables, so one run
checks many ranges: empty ones, ranges touching the region end, ragged lengths (the backend
vectorizes across lanes and finishes stragglers per lane; both paths are exercised).
"""

from __future__ import annotations

import numpy as np
import pytest
from cpu_harness import (
    MASK,
    dfa_table,
    dfa_walk,
    op,
    per_lane_program,
    random_dfa,
    run,
)
from references import fnv1a32 as fnv1a
from references import xxh32

from vyre_runtime.backends.cpu import dfa_walk as dfa_walk_module
from vyre_runtime.vir0.isa import DFA_ACCEPT_BIT, NO_MATCH, FaultCode
from vyre_runtime.vir0.program import Binding

COVERS = frozenset({"countb", "findb", "findl", "fnv", "xxh32", "hist", "dfa", "dfae"})

RNG = np.random.default_rng(2024)
DATA = RNG.choice(np.frombuffer(b"ab\ncx", dtype=np.uint8), size=6000).tobytes()


def random_ranges(lanes: int, size: int, longest: int) -> tuple[list[int], list[int]]:
    lengths = RNG.integers(0, longest + 1, lanes)
    lengths[: max(1, lanes // 8)] = 0  # some empty ranges
    starts = [int(RNG.integers(0, size - length + 1)) for length in lengths]
    starts[-1], lengths[-1] = size - int(lengths[-1]), lengths[-1]  # one touching the region end
    return starts, [int(n) for n in lengths]


def range_program(body: list, starts: list[int], lengths: list[int], extra: list[int] | None = None, **kwargs):
    columns = [starts, lengths] + ([extra] if extra is not None else [])
    return per_lane_program(body, columns, kwargs.pop("out_words", len(starts)), **kwargs)


RANGE_SHAPES = [(5, 40), (48, 200), (100, 30)]  # (lanes, longest range): scalar, vector, many short


# ---------------------------------------------------------------- countb / findb / findl


@pytest.mark.parametrize(("lanes", "longest"), RANGE_SHAPES)
def test_countb_counts_the_byte_in_each_range(lanes: int, longest: int) -> None:
    starts, lengths = random_ranges(lanes, len(DATA), longest)
    body = [op("countb", d=5, a=2, b=3, imm=ord("\n")), op("sto", d=5, a=0, b=0)]
    result = run(range_program(body, starts, lengths), DATA, lanes=lanes)
    assert result.outputs["out"].tolist() == [
        DATA[s : s + n].count(b"\n") for s, n in zip(starts, lengths, strict=True)
    ]


@pytest.mark.parametrize(("lanes", "longest"), RANGE_SHAPES)
def test_findb_gives_the_region_offset_of_the_first_byte_or_no_match(lanes: int, longest: int) -> None:
    starts, lengths = random_ranges(lanes, len(DATA), longest)
    body = [op("findb", d=5, a=2, b=3, imm=ord("x")), op("sto", d=5, a=0, b=0)]
    result = run(range_program(body, starts, lengths), DATA, lanes=lanes)
    expected = []
    for s, n in zip(starts, lengths, strict=True):
        found = DATA[s : s + n].find(b"x")
        expected.append(NO_MATCH if found < 0 else s + found)
    assert result.outputs["out"].tolist() == expected
    assert NO_MATCH in expected and any(e != NO_MATCH for e in expected)


def test_findb_of_an_empty_range_is_no_match() -> None:
    body = [op("findb", d=5, a=2, b=3, imm=ord("a")), op("sto", d=5, a=0, b=0)]
    assert run(range_program(body, [0, 3], [0, 0]), b"aaa", lanes=2).outputs["out"].tolist() == [NO_MATCH] * 2


def run_findl(data: bytes, literal: bytes, starts: list[int], lengths: list[int]) -> list[int]:
    body = [op("findl", d=5, a=2, b=3, imm=2), op("sto", d=5, a=0, b=0)]
    prog = range_program(body, starts, lengths, extra_tables={"literal": literal})
    return run(prog, data, lanes=len(starts)).outputs["out"].tolist()


def test_findl_finds_literals_that_touch_the_range_edges_but_not_ones_crossing_them() -> None:
    data = b"..abc..abc"
    #            start at the literal, end right after it, end one byte short, start one byte late
    starts, lengths = [2, 0, 0, 3, 7, 0], [3, 5, 4, 7, 3, 10]
    assert run_findl(data, b"abc", starts, lengths) == [2, 2, NO_MATCH, 7, 7, 2]


def test_findl_with_a_literal_longer_than_the_range_is_no_match() -> None:
    assert run_findl(b"abcabc", b"abcabcabc", [0, 0], [6, 0]) == [NO_MATCH, NO_MATCH]


@pytest.mark.parametrize(("lanes", "longest"), RANGE_SHAPES)
def test_findl_matches_bytes_find_on_random_ranges(lanes: int, longest: int) -> None:
    starts, lengths = random_ranges(lanes, len(DATA), longest)
    expected = []
    for s, n in zip(starts, lengths, strict=True):
        found = DATA.find(b"ab\n", s, s + n)
        expected.append(NO_MATCH if found < 0 else found)
    assert run_findl(DATA, b"ab\n", starts, lengths) == expected


# ---------------------------------------------------------------- fnv / xxh32


@pytest.mark.parametrize(("lanes", "longest"), [*RANGE_SHAPES, (40, 3000)])
def test_fnv_matches_reference_from_the_seed_in_d(lanes: int, longest: int) -> None:
    starts, lengths = random_ranges(lanes, len(DATA), longest)
    seeds = [0x811C9DC5 if i % 2 else int(RNG.integers(0, 2**32)) for i in range(lanes)]
    body = [op("fnv", d=4, a=2, b=3), op("sto", d=4, a=0, b=0)]
    result = run(range_program(body, starts, lengths, seeds), DATA, lanes=lanes)
    expected = [fnv1a(DATA[s : s + n], h) for s, n, h in zip(starts, lengths, seeds, strict=True)]
    assert result.outputs["out"].tolist() == expected


def run_xxh32(data: bytes, starts: list[int], lengths: list[int], seeds: list[int]) -> list[int]:
    body = [op("xxh32", d=4, a=2, b=3), op("sto", d=4, a=0, b=0)]
    return run(range_program(body, starts, lengths, seeds), data, lanes=len(starts)).outputs["out"].tolist()


def test_xxh32_known_vectors() -> None:
    assert run_xxh32(b"abc", [0, 0, 0], [0, 1, 3], [0, 0, 0]) == [0x02CC5D05, 0x550D7456, 0x32D153FF]


def test_xxh32_reference_model_agrees_with_known_vectors() -> None:
    assert [xxh32(b"", 0), xxh32(b"a", 0), xxh32(b"abc", 0)] == [0x02CC5D05, 0x550D7456, 0x32D153FF]


def test_xxh32_every_length_0_to_40_with_several_seeds() -> None:
    data = RNG.integers(0, 256, 64, dtype=np.uint8).tobytes()
    cases = [
        (start, length, seed) for length in range(41) for start, seed in ((0, 0), (3, 1), (7, MASK), (1, 0x9E3779B1))
    ]
    starts, lengths, seeds = ([c[k] for c in cases] for k in range(3))
    expected = [xxh32(data[s : s + n], seed) for s, n, seed in cases]
    assert run_xxh32(data, starts, lengths, seeds) == expected


@pytest.mark.parametrize(("lanes", "longest"), [*RANGE_SHAPES, (40, 2000), (3, 1000)])
def test_xxh32_matches_reference_on_random_ranges(lanes: int, longest: int) -> None:
    data = RNG.integers(0, 256, 6000, dtype=np.uint8).tobytes()
    starts, lengths = random_ranges(lanes, len(data), longest)
    seeds = [int(s) for s in RNG.integers(0, 2**32, lanes)]
    expected = [xxh32(data[s : s + n], seed) for s, n, seed in zip(starts, lengths, seeds, strict=True)]
    assert run_xxh32(data, starts, lengths, seeds) == expected


# ---------------------------------------------------------------- hist


def run_hist(data: bytes, starts: list[int], lengths: list[int], bases: list[int], words: int = 600, init: int = 0):
    body = [op("hist", d=4, a=2, b=3, imm=1)]
    hist = Binding("hist", words, init=init)
    return run(range_program(body, starts, lengths, bases, extra_bindings=[hist]), data, lanes=len(starts))


def reference_hist(
    data: bytes, starts: list[int], lengths: list[int], bases: list[int], words: int, init: int
) -> list[int]:
    counts = [init] * words
    for s, n, base in zip(starts, lengths, bases, strict=True):
        for byte in data[s : s + n]:
            counts[base + byte] = (counts[base + byte] + 1) & MASK
    return counts


def test_hist_adds_byte_counts_at_each_lanes_base() -> None:
    data = RNG.integers(0, 256, 3000, dtype=np.uint8).tobytes()
    starts, lengths = random_ranges(60, len(data), 200)
    bases = [int(b) for b in RNG.choice([0, 3, 344], size=60)]
    result = run_hist(data, starts, lengths, bases)
    assert result.outputs["hist"].tolist() == reference_hist(data, starts, lengths, bases, 600, 0)


def test_hist_counts_adjacent_and_overlapping_ranges_once_per_lane() -> None:
    data = RNG.integers(0, 256, 200_002, dtype=np.uint8).tobytes()
    # adjacent ranges (merged into one long count, odd start and odd length), and overlaps
    starts = [1, 70_001, 140_001, 1, 150_000, 199_999]
    lengths = [70_000, 70_000, 60_001, 10, 50_001, 2]
    result = run_hist(data, starts, lengths, [0] * 6, words=256, init=MASK - 5)
    assert result.outputs["hist"].tolist() == reference_hist(data, starts, lengths, [0] * 6, 256, MASK - 5)


def test_hist_base_past_the_binding_faults_oob_output_with_the_base() -> None:
    result = run_hist(b"abc", [0, 0], [3, 3], [0, 345], words=600)
    assert result.fault is not None
    assert (result.fault.code, result.fault.lane, result.fault.detail) == (FaultCode.OOB_OUTPUT, 1, 345)
    assert sum(result.outputs["hist"].tolist()) == 3  # lane 0 counted, lane 1 had no effect


# ---------------------------------------------------------------- dfa / dfae


def run_dfa(data: bytes, transitions, starts, lengths, states, emits: bool = False, emit_words: int = 2, **kwargs):
    name = "dfae" if emits else "dfa"
    body = [op(name, d=4, a=2, b=3, imm=3), op("shl", d=6, a=0, imm=1, immediate=True)]
    body += [op("sto", d=4, a=6, b=0), op("sto", d=5, a=6, b=0, imm=1)]
    prog = range_program(
        body,
        starts,
        lengths,
        states,
        out_words=2 * len(starts),
        extra_tables={"dfa": dfa_table(transitions)},
        emit_words=emit_words if emits else 0,
    )
    return run(prog, data, lanes=len(starts), **kwargs)


@pytest.fixture(params=["byte_steps", "pair_steps"])
def dfa_step_width(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Counting walks over large ranges go two bytes per step; force that path on small ones too."""
    if request.param == "pair_steps":
        monkeypatch.setattr(dfa_walk_module, "PAIR_MIN_BYTES", 0)
    return request.param


@pytest.mark.parametrize(
    ("lanes", "longest", "states"), [(5, 300, 3), (50, 400, 7), (40, 2500, 2), (100, 20, 30), (64, 301, 33)]
)
def test_dfa_end_state_and_match_count_match_a_table_walk(
    lanes: int, longest: int, states: int, dfa_step_width: str
) -> None:
    transitions = random_dfa(RNG, states)
    starts, lengths = random_ranges(lanes, len(DATA), longest)
    start_states = [int(s) for s in RNG.integers(0, states, lanes)]
    words = run_dfa(DATA, transitions, starts, lengths, start_states).outputs["out"].reshape(-1, 2).tolist()
    for lane, (s, n, state) in enumerate(zip(starts, lengths, start_states, strict=True)):
        end, count, _ = dfa_walk(transitions, DATA[s : s + n], s, state)
        assert words[lane] == [end, count], f"lane {lane}: range {s}+{n} from state {state}"


@pytest.mark.parametrize("emit_words", [1, 2, 4])
def test_dfae_emits_offset_and_state_per_match_padded_to_emit_words(emit_words: int) -> None:
    transitions = random_dfa(RNG, 4, accept_rate=0.2)
    starts, lengths = random_ranges(40, len(DATA), 300)
    result = run_dfa(DATA, transitions, starts, lengths, [0] * 40, emits=True, emit_words=emit_words)
    expected = []
    for s, n in zip(starts, lengths, strict=True):
        expected += [
            [offset, state, 0, 0][:emit_words] for offset, state in dfa_walk(transitions, DATA[s : s + n], s, 0)[2]
        ]
    assert result.records.tolist() == expected and result.dropped == 0
    words = result.outputs["out"].reshape(-1, 2)
    assert int(words[:, 1].sum()) == len(expected)


def test_dfae_past_capacity_keeps_the_first_records_and_counts_the_rest() -> None:
    accept_all = [[DFA_ACCEPT_BIT] * 256]  # one state, every byte is a match
    starts, lengths = [0, 100, 5000], [3000, 4000, 1000]
    result = run_dfa(DATA, accept_all, starts, lengths, [0, 0, 0], emits=True, emit_capacity=10)
    assert result.records[:, 0].tolist() == list(range(10))
    assert result.dropped == 8000 - 10
    assert result.outputs["out"].reshape(-1, 2)[:, 1].tolist() == lengths
    no_room = run_dfa(DATA, accept_all, starts, lengths, [0, 0, 0], emits=True, emit_capacity=0)
    assert no_room.records.shape == (0, 2) and no_room.dropped == 8000


def test_dfa_start_state_past_the_table_faults_oob_table_with_the_state() -> None:
    transitions = random_dfa(RNG, 3)
    result = run_dfa(DATA, transitions, [0, 0, 0], [10, 10, 10], [0, 3, 7], emits=True)
    assert result.fault is not None
    assert (result.fault.code, result.fault.lane, result.fault.detail) == (FaultCode.OOB_TABLE, 1, 3)
    assert all(record[0] < 10 for record in result.records.tolist())  # only lane 0's matches
    alone = run_dfa(DATA, transitions, [0], [10], [5], emits=True)
    assert alone.fault is not None and alone.fault.detail == 5 and len(alone.records) == 0


# ---------------------------------------------------------------- range bounds, shared by all


RANGE_BODIES = {
    "countb": [op("countb", d=4, a=2, b=3, imm=1)],
    "findb": [op("findb", d=4, a=2, b=3, imm=1)],
    "findl": [op("findl", d=4, a=2, b=3, imm=2)],
    "fnv": [op("fnv", d=4, a=2, b=3)],
    "xxh32": [op("xxh32", d=4, a=2, b=3)],
    "hist": [op("li", d=4, imm=0), op("hist", d=4, a=2, b=3, imm=1)],
    "dfa": [op("li", d=4, imm=0), op("dfa", d=4, a=2, b=3, imm=3)],
    "dfae": [op("li", d=4, imm=0), op("dfae", d=4, a=2, b=3, imm=3)],
}


@pytest.mark.parametrize("name", sorted(RANGE_BODIES))
@pytest.mark.parametrize(("start", "length"), [(5, 6), (11, 0), (0xFFFFFFF0, 0x20), (0, MASK)])
def test_range_leaving_the_region_faults_oob_input_with_the_start(name: str, start: int, length: int) -> None:
    body = RANGE_BODIES[name]
    tables = {"lit": b"a", "dfa": dfa_table([[0] * 256])}
    bindings = [Binding("hist", 256)]
    prog = range_program(body, [0, start], [10, length], extra_tables=tables, extra_bindings=bindings, emit_words=1)
    result = run(prog, b"0123456789", lanes=2)
    assert result.fault is not None
    pc = 2 + 2 + len(body) - 1  # prologue, two loads, then the body
    assert (result.fault.code, result.fault.pc, result.fault.lane, result.fault.detail) == (
        FaultCode.OOB_INPUT,
        pc,
        1,
        start,
    )


def test_range_ending_exactly_at_the_region_end_is_valid() -> None:
    body = [op("countb", d=5, a=2, b=3, imm=ord("9")), op("sto", d=5, a=0, b=0)]
    result = run(range_program(body, [0, 10, 9], [10, 0, 1]), b"0123456789", lanes=3)
    assert result.fault is None and result.outputs["out"].tolist() == [1, 0, 1]


def test_input_range_is_checked_before_the_intrinsics_own_operand() -> None:
    prog = range_program([op("hist", d=4, a=2, b=3, imm=1)], [50], [1], [9999], extra_bindings=[Binding("hist", 256)])
    fault = run(prog, b"abc").fault
    assert fault is not None and (fault.code, fault.detail) == (FaultCode.OOB_INPUT, 50)


# ---------------------------------------------------------------- evenly split regions (the common layout)


def even_split(lanes: int, size: int) -> tuple[list[int], list[int]]:
    """Lane i owns [i * slice, (i + 1) * slice) clipped to the region, as the examples split work."""
    per = -(-size // lanes)
    starts = [min(i * per, size) for i in range(lanes)]
    return starts, [min(per, size - s) for s in starts]


@pytest.mark.parametrize(("lanes", "size"), [(64, 64 * 150 + 37), (40, 40 * 97), (33, 5000), (64, 64 * 40)])
def test_range_intrinsics_over_an_evenly_split_region(lanes: int, size: int, dfa_step_width: str) -> None:
    data = RNG.choice(np.frombuffer(b"abc\n\x00\xff", dtype=np.uint8), size=size).tobytes()
    starts, lengths = even_split(lanes, size)
    seeds = [int(s) for s in RNG.integers(0, 2**32, lanes)]
    assert run_xxh32(data, starts, lengths, seeds) == [
        xxh32(data[s : s + n], h) for s, n, h in zip(starts, lengths, seeds, strict=True)
    ]
    body = [op("fnv", d=4, a=2, b=3), op("sto", d=4, a=0, b=0)]
    fnv_result = run(range_program(body, starts, lengths, seeds), data, lanes=lanes).outputs["out"].tolist()
    assert fnv_result == [fnv1a(data[s : s + n], h) for s, n, h in zip(starts, lengths, seeds, strict=True)]
    transitions = random_dfa(RNG, 5, accept_rate=0.1)
    result = run_dfa(data, transitions, starts, lengths, [1] * lanes, emits=True)
    expected_records = []
    for lane, (s, n) in enumerate(zip(starts, lengths, strict=True)):
        end, count, matches = dfa_walk(transitions, data[s : s + n], s, 1)
        assert result.outputs["out"].reshape(-1, 2)[lane].tolist() == [end, count]
        expected_records += [list(match) for match in matches]
    assert result.records.tolist() == expected_records
    counted = run_dfa(data, transitions, starts, lengths, [1] * lanes).outputs["out"]
    assert counted.tolist() == result.outputs["out"].tolist()


def test_lanes_sharing_one_range_all_see_the_same_bytes() -> None:
    starts, lengths = [100] * 40, [3000] * 40
    seeds = list(range(40))
    expected = [fnv1a(DATA[100:3100], h) for h in seeds]
    body = [op("fnv", d=4, a=2, b=3), op("sto", d=4, a=0, b=0)]
    assert run(range_program(body, starts, lengths, seeds), DATA, lanes=40).outputs["out"].tolist() == expected


def test_dfae_capacity_pruning_over_many_lanes_keeps_lane_order() -> None:
    accept_all = [[DFA_ACCEPT_BIT] * 256]
    starts, lengths = even_split(48, len(DATA))
    result = run_dfa(DATA, accept_all, starts, lengths, [0] * 48, emits=True, emit_capacity=300)
    expected = [offset for s, n in zip(starts, lengths, strict=True) for offset in range(s, s + n)][:300]
    assert result.records[:, 0].tolist() == expected
    assert result.dropped == len(DATA) - 300


@pytest.mark.parametrize("lanes", [4, 33, 100])
def test_xxh32_of_many_lanes_sharing_a_range_near_the_region_end(lanes: int) -> None:
    data = bytes(range(40))
    expected = [xxh32(data[3:40], 0)] * lanes
    assert run_xxh32(data, [3] * lanes, [37] * lanes, [0] * lanes) == expected
