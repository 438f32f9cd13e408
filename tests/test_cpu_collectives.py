"""CPU interpreter: the scheduling rule and lane-group collectives under divergence.

Rule: per group of 32 lanes, the live lanes at the group's smallest pc execute together; they
are the participants of a collective. So lanes that branch to a higher pc wait, lanes looping
back run first, and a collective only sees the lanes of its group at the same step.
"""

from __future__ import annotations

from cpu_harness import MASK, op, out, program, run

from vyre_runtime.vir0.isa import FaultCode, SpecialRegister
from vyre_runtime.vir0.program import Binding

COVERS = frozenset({"ballot", "shfl", "radd", "psum"})

LANE = op("sreg", d=0, imm=SpecialRegister.LANE_ID)
COLLECTIVES = 4  # results stored per lane: ballot, radd, psum, shfl


def collect(value: int, source: int) -> list:
    """ballot/radd/psum/shfl of r[value] (shfl source lane r[source]) into out[4 * lane + k]; exit."""
    return [
        op("li", d=9, imm=1),
        op("ballot", d=10, a=9),
        op("radd", d=11, a=value),
        op("psum", d=12, a=value),
        op("shfl", d=13, a=value, b=source),
        op("shl", d=14, a=0, imm=2, immediate=True),
        op("sto", d=10, a=14, b=0, imm=0),
        op("sto", d=11, a=14, b=0, imm=1),
        op("sto", d=12, a=14, b=0, imm=2),
        op("sto", d=13, a=14, b=0, imm=3),
        op("exit"),
    ]


def expected_collectives(
    participants: list[int], values: dict[int, int], source: dict[int, int]
) -> dict[int, list[int]]:
    rows = {}
    for lane in participants:
        group = [p for p in participants if p // 32 == lane // 32]
        ballot = sum(1 << (p % 32) for p in group)
        total = sum(values[p] for p in group) & MASK
        prefix = sum(values[p] for p in group if p < lane) & MASK
        src = (lane // 32) * 32 + source[lane] % 32
        shuffled = values[src] if src in group else values[lane]
        rows[lane] = [ballot, total, prefix, shuffled]
    return rows


def test_collectives_over_converged_lanes_with_a_partial_last_group() -> None:
    lanes = 45
    code = [LANE, op("mul", d=3, a=0, imm=0x10000001, immediate=True), op("add", d=4, a=0, imm=5, immediate=True)]
    code += collect(value=3, source=4)
    result = run(program(code, bindings=[out(4 * lanes)]), lanes=lanes)
    rows = result.outputs["out"].reshape(lanes, COLLECTIVES).tolist()
    values = {lane: (lane * 0x10000001) & MASK for lane in range(lanes)}
    expected = expected_collectives(list(range(lanes)), values, {lane: lane + 5 for lane in range(lanes)})
    assert {lane: rows[lane] for lane in range(lanes)} == expected  # lanes 32..44: source 37..49 may be missing


def test_lanes_that_branch_away_are_not_participants() -> None:
    # odd lanes jump to a higher pc and wait; even lanes run the collectives alone, then the odd
    # lanes run their own copy (participants: odd lanes only)
    lanes = 64
    even_path = collect(value=3, source=4)
    code = [LANE, op("and", d=1, a=0, imm=1, immediate=True), op("add", d=3, a=0, imm=1, immediate=True)]
    code += [op("xor", d=4, a=0, imm=1, immediate=True), op("jnz", a=1, imm=5 + len(even_path))]
    code += even_path + collect(value=3, source=4)
    result = run(program(code, bindings=[out(4 * lanes)]), lanes=lanes)
    rows = result.outputs["out"].reshape(lanes, COLLECTIVES).tolist()
    values = {lane: lane + 1 for lane in range(lanes)}
    neighbour = {lane: lane ^ 1 for lane in range(lanes)}  # always on the other path: own value
    expected = expected_collectives(list(range(0, lanes, 2)), values, neighbour)
    expected |= expected_collectives(list(range(1, lanes, 2)), values, neighbour)
    assert {lane: rows[lane] for lane in range(lanes)} == expected
    assert rows[0][0] == 0x55555555 and rows[1][0] == 0xAAAAAAAA
    assert rows[2][3] == 3  # lane 2 asked lane 3 (not a participant): its own value


def test_paths_rejoin_before_a_collective_at_a_higher_pc() -> None:
    lanes = 40
    code = [
        LANE,
        op("and", d=1, a=0, imm=1, immediate=True),
        op("jnz", a=1, imm=5),
        op("nop"),  # even lanes: a longer path
        op("nop"),
        op("nop"),  # pc 5: odd lanes join here
        op("li", d=3, imm=1),
    ]
    code += collect(value=3, source=0)
    rows = run(program(code, bindings=[out(4 * lanes)]), lanes=lanes).outputs["out"].reshape(lanes, 4).tolist()
    assert [row[1] for row in rows] == [32] * 32 + [8] * 8  # radd saw every lane of the group


def test_loops_with_different_trip_counts_follow_the_smallest_pc_rule() -> None:
    # lane L loops L % 4 + 1 times; in iteration k the participants of radd are the lanes of the
    # group still looping (trips > k): finished lanes wait at the higher pc after the loop
    lanes = 48
    code = [
        LANE,
        op("and", d=1, a=0, imm=3, immediate=True),
        op("add", d=1, a=1, imm=1, immediate=True),  # trips
        op("li", d=2, imm=0),  # k
        op("li", d=5, imm=1),
        op("radd", d=3, a=5),  # pc 5: loop head
        op("shl", d=6, a=0, imm=2, immediate=True),
        op("add", d=6, a=6, b=2),
        op("sto", d=3, a=6, b=0),
        op("add", d=2, a=2, imm=1, immediate=True),
        op("ltu", d=7, a=2, b=1),
        op("jnz", a=7, imm=5),
        op("radd", d=8, a=5),  # after the loop: everyone in the group again
        op("sto", d=8, a=0, b=1),
        op("exit"),
    ]
    prog = program(code, bindings=[out(4 * lanes, init=MASK), Binding("after", lanes)])
    result = run(prog, lanes=lanes)
    per_iteration = result.outputs["out"].reshape(lanes, 4).tolist()
    for lane in range(lanes):
        group = [p for p in range(lanes) if p // 32 == lane // 32]
        trips = lane % 4 + 1
        expected = [sum(1 for p in group if p % 4 + 1 > k) if k < trips else MASK for k in range(4)]
        assert per_iteration[lane] == expected, f"lane {lane}"
    assert result.outputs["after"].tolist() == [32] * 32 + [16] * 16


def test_divergence_in_one_group_does_not_split_another_groups_participants() -> None:
    lanes = 64
    code = [
        LANE,
        op("ltu", d=1, a=0, imm=32, immediate=True),
        op("and", d=2, a=0, imm=1, immediate=True),
        op("and", d=1, a=1, b=2),  # odd lanes of group 0
        op("li", d=3, imm=1),
        op("jnz", a=1, imm=9),
        op("radd", d=4, a=3),  # pc 6: even lanes of group 0, all of group 1
        op("sto", d=4, a=0, b=0),
        op("exit"),
        op("radd", d=4, a=3),  # pc 9: odd lanes of group 0
        op("sto", d=4, a=0, b=0),
        op("exit"),
    ]
    totals = run(program(code, bindings=[out(lanes)]), lanes=lanes).outputs["out"].tolist()
    assert totals == [16] * 32 + [32] * 32


def test_shfl_reads_every_source_before_writing() -> None:
    lanes = 32
    code = [LANE, op("mul", d=3, a=0, imm=3, immediate=True), op("add", d=4, a=0, imm=1, immediate=True)]
    code += [op("shfl", d=3, a=3, b=4), op("sto", d=3, a=0, b=0), op("exit")]  # d == a: a rotation
    result = run(program(code, bindings=[out(lanes)]), lanes=lanes)
    assert result.outputs["out"].tolist() == [3 * ((lane + 1) % 32) for lane in range(lanes)]


def test_radd_and_psum_wrap_modulo_2_pow_32() -> None:
    lanes = 4
    code = [LANE, op("li", d=3, imm=0xC0000000), op("radd", d=4, a=3), op("psum", d=5, a=3)]
    code += [op("shl", d=6, a=0, imm=1, immediate=True), op("sto", d=4, a=6, b=0), op("sto", d=5, a=6, b=0, imm=1)]
    result = run(program([*code, op("exit")], bindings=[out(2 * lanes)]), lanes=lanes)
    assert result.outputs["out"].reshape(lanes, 2).tolist() == [
        [0, 0],
        [0, 0xC0000000],
        [0, 0x80000000],
        [0, 0x40000000],
    ]


def test_groups_at_different_pcs_step_together_and_emit_in_lane_order() -> None:
    # after the branch group 1 is at pc 3 and group 0 at pc 5: one scheduler step runs both pcs
    # (each is its group's smallest), and the step's records are appended in lane order
    lanes = 64
    code = [
        LANE,
        op("ltu", d=1, a=0, imm=32, immediate=True),
        op("jnz", a=1, imm=5),
        op("emit", a=0),  # pc 3: group 1
        op("exit"),
        op("emit", a=0),  # pc 5: group 0
        op("exit"),
    ]
    result = run(program(code, emit_words=1), lanes=lanes)
    assert result.records[:, 0].tolist() == list(range(lanes))


def test_a_fault_while_diverged_stops_only_that_lane() -> None:
    lanes = 8
    code = [
        LANE,
        op("and", d=1, a=0, imm=1, immediate=True),
        op("jz", a=1, imm=5),
        op("ldi8", d=2, a=0, imm=100),  # odd lanes: past the 10-byte region
        op("exit"),
        op("li", d=2, imm=1),  # pc 5: even lanes
        op("sto", d=2, a=0, b=0),
        op("exit"),
    ]
    result = run(program(code, bindings=[out(lanes)]), b"0123456789", lanes=lanes)
    assert result.outputs["out"].tolist() == [1, 0] * 4
    assert result.fault is not None and (result.fault.lane, result.fault.pc, result.fault.detail) == (1, 3, 101)


def test_lanes_that_spent_more_fuel_before_reconverging_run_dry_first() -> None:
    lanes, fuel = 6, 40
    code = [
        LANE,
        op("and", d=1, a=0, imm=1, immediate=True),
        op("jz", a=1, imm=5),
        op("nop"),  # odd lanes: two extra instructions
        op("nop"),
        op("li", d=2, imm=0),  # pc 5: everyone reconverges here
        op("add", d=2, a=2, imm=1, immediate=True),  # pc 6: loop until fuel runs out
        op("sto", d=2, a=0, b=0),
        op("jmp", imm=6),
    ]
    result = run(program(code, bindings=[out(lanes)]), lanes=lanes, fuel=fuel)
    before_loop = {0: 4, 1: 6}  # even: sreg and jz li; odd: + 2 nops
    # in the loop (add, sto, jmp) a lane with budget b completes (b + 1) // 3 stores
    expected = [(fuel - before_loop[lane % 2] + 1) // 3 for lane in range(lanes)]
    assert result.outputs["out"].tolist() == expected
    assert result.fault is not None and result.fault.code == FaultCode.FUEL_EXHAUSTED and result.fault.lane == 0
    assert result.instructions == fuel * lanes


def test_program_may_end_while_lanes_are_diverged() -> None:
    code = [LANE, op("and", d=1, a=0, imm=1, immediate=True), op("jz", a=1, imm=4), op("exit"), op("nop"), op("exit")]
    result = run(program(code), lanes=40)
    assert result.fault is None and result.instructions == 40 * 4 + 20
