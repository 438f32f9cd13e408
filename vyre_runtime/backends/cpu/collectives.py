"""Lane-group collectives: ballot, shfl, radd, psum over the participants of a step.

The participants of a group are the lanes of that group executing this instruction in this step
(docs/VIR0.md §8.9); the scheduler hands a step exactly those lanes, sorted, so a
group's participants are a contiguous run of the lane array.
"""

from __future__ import annotations

import numpy as np

from vyre_runtime.backends.cpu.machine import Machine
from vyre_runtime.backends.cpu.step import Factory, Lanes, Step, StepContext
from vyre_runtime.vir0.isa import GROUP_SIZE, Op

U32 = np.uint32
U64 = np.uint64
GROUP_SHIFT = GROUP_SIZE.bit_length() - 1


class GroupRuns:
    """The runs of consecutive participants that share a group.

    (When every lane participates, groups are simply rows of a (groups, 32) reshape; padding
    lanes never run, so their registers stay 0 and add nothing to a sum or a ballot.)
    """

    def __init__(self, lanes: np.ndarray) -> None:
        group = lanes >> GROUP_SHIFT
        first = np.empty(len(lanes), dtype=bool)
        first[:1] = True
        np.not_equal(group[1:], group[:-1], out=first[1:])
        self.starts = np.flatnonzero(first)
        self.run_of = np.cumsum(first) - 1  # per participant: the index of its run

    def totals(self, values: np.ndarray) -> np.ndarray:
        """Per participant: the uint64 sum of ``values`` over its group's participants."""
        return np.add.reduceat(values, self.starts)[self.run_of]


LANE_BITS = np.uint64(1) << np.arange(GROUP_SIZE, dtype=U64)


def by_group(m: Machine, register: int) -> np.ndarray:
    """Register ``register`` of every lane (padding included) as uint64 rows of one group each."""
    return m.regs[register].reshape(m.groups, GROUP_SIZE).astype(U64)


def _ballot(ctx: StepContext) -> Step:
    d, a = ctx.d, ctx.a

    def step(m: Machine, lanes: Lanes) -> None:
        if isinstance(lanes, slice):
            masks = ((by_group(m, a) != 0) * LANE_BITS).sum(axis=1).astype(U32)
            m.regs[d, lanes] = np.repeat(masks, GROUP_SIZE)[lanes]
            return
        bits = (m.regs[a, lanes] != 0).astype(U64) << (lanes & (GROUP_SIZE - 1)).astype(U64)
        m.regs[d, lanes] = GroupRuns(lanes).totals(bits).astype(U32)  # distinct bits: sum == or

    return step


def _radd(ctx: StepContext) -> Step:
    d, a = ctx.d, ctx.a

    def step(m: Machine, lanes: Lanes) -> None:
        if isinstance(lanes, slice):
            total = np.repeat(by_group(m, a).sum(axis=1), GROUP_SIZE)[lanes]
        else:
            total = GroupRuns(lanes).totals(m.regs[a, lanes].astype(U64))
        m.regs[d, lanes] = (total & U64(0xFFFFFFFF)).astype(U32)

    return step


def _psum(ctx: StepContext) -> Step:
    d, a = ctx.d, ctx.a

    def step(m: Machine, lanes: Lanes) -> None:
        if isinstance(lanes, slice):
            values = by_group(m, a)
            exclusive = (np.cumsum(values, axis=1) - values).reshape(-1)[lanes]
            m.regs[d, lanes] = (exclusive & U64(0xFFFFFFFF)).astype(U32)
            return
        runs = GroupRuns(lanes)
        values = m.regs[a, lanes].astype(U64)
        inclusive = np.cumsum(values)
        before_run = (inclusive - values)[runs.starts]  # the running sum where each group starts
        exclusive = inclusive - values - before_run[runs.run_of]
        m.regs[d, lanes] = (exclusive & U64(0xFFFFFFFF)).astype(U32)

    return step


def _shfl(ctx: StepContext) -> Step:
    d, a, b = ctx.d, ctx.a, ctx.b

    def step(m: Machine, lanes: Lanes) -> None:
        index = m.index(lanes)
        values = m.regs[a, lanes]
        source = (index & ~(GROUP_SIZE - 1)) | (m.regs[b, lanes] & U32(GROUP_SIZE - 1)).astype(np.intp)
        participating = np.zeros(m.padded, dtype=bool)
        participating[index] = True
        by_lane = np.zeros(m.padded, dtype=U32)
        by_lane[index] = values
        m.regs[d, lanes] = np.where(participating[source], by_lane[source], values)

    return step


HANDLERS: dict[int, Factory] = {Op.BALLOT: _ballot, Op.SHFL: _shfl, Op.RADD: _radd, Op.PSUM: _psum}
