"""The scheduler: steps lanes through a prepared program under the VIR0 scheduling rule.

Rule (docs/VIR0.md §7.3): per group of 32 lanes, the live lanes at
the group's smallest pc execute that instruction together. Two modes implement it:

- uniform: every live lane is at one pc (the common case: no divergence, or reconverged). One
  vectorized step over all of them, ``slice`` lanes when none has stopped; fuel is charged
  lazily (a counter, folded into the per-lane array only when the cheapest lane could run dry,
  a lane stops, or the lanes diverge), so a step costs one Python call and the NumPy work.
- divergent: per step, find each group's minimum pc, then run each distinct pc once for its
  participants (across all groups at that pc). Back to uniform as soon as all pcs agree.

Fuel: before an instruction a lane with fuel 0 faults FUEL_EXHAUSTED (pc = that instruction),
otherwise it pays 1. A faulting instruction has been paid for.
"""

from __future__ import annotations

import numpy as np

from vyre_runtime.backends.cpu.machine import DEAD_PC, Machine
from vyre_runtime.backends.cpu.prepared import Kind, PreparedProgram
from vyre_runtime.backends.cpu.step import Lanes
from vyre_runtime.vir0.isa import GROUP_SIZE, FaultCode


class Scheduler:
    def __init__(self, prepared: PreparedProgram, machine: Machine) -> None:
        self.kinds = prepared.kinds
        self.steps = prepared.steps
        self.operands = prepared.operands
        self.m = machine

    def run(self) -> None:
        pc: int | None = 0
        while pc is not None and self.m.live_count:
            diverged = self._run_uniform(pc)
            pc = self._run_divergent() if diverged else None

    # ------------------------------------------------------------ uniform mode

    def _run_uniform(self, pc: int) -> bool:
        """Run all live lanes (sharing ``pc``) until they finish (False) or diverge (True)."""
        m = self.m
        kinds, steps, operands, emits = self.kinds, self.steps, self.operands, m.emits
        lanes: Lanes = m.live_lanes()
        budget = int(m.fuel[lanes].min())  # steps every lane here can still pay for
        spent = 0  # steps executed since the fuel array was last charged
        while True:
            if spent == budget:
                m.fuel[lanes] -= spent
                spent = 0
                dry = m.index(lanes)[m.fuel[lanes] == 0]
                if len(dry):
                    m.fault_lanes(dry, FaultCode.FUEL_EXHAUSTED, pc, 0)
                    m.dirty = False
                    if not m.live_count:
                        return False
                    lanes = m.live_lanes()
                budget = int(m.fuel[lanes].min())
            spent += 1
            kind = kinds[pc]
            if kind is Kind.STEP:
                steps[pc](m, lanes)  # type: ignore[misc]
                if emits.has_staged:
                    emits.end_step()
                if m.dirty:  # some lanes faulted: they paid for this step too
                    m.dirty = False
                    m.fuel[lanes] -= spent
                    spent = 0
                    if not m.live_count:
                        return False
                    lanes = m.live_lanes()
                    budget = int(m.fuel[lanes].min())
                pc += 1
            elif kind is Kind.JMP:
                pc = operands[pc][1]
            elif kind is Kind.NOP:
                pc += 1
            elif kind is Kind.JZ or kind is Kind.JNZ:
                register, target = operands[pc]
                taken = m.regs[register, lanes] != 0
                if kind is Kind.JZ:
                    taken = ~taken
                how_many = int(np.count_nonzero(taken))
                if how_many == len(taken):
                    pc = target
                elif how_many == 0:
                    pc += 1
                else:
                    m.fuel[lanes] -= spent
                    m.pcs[lanes] = np.where(taken, target, pc + 1)
                    return True
            else:
                m.fuel[lanes] -= spent
                self._stop(kind, pc, m.index(lanes))
                return False

    def _stop(self, kind: Kind, pc: int, lanes: np.ndarray) -> None:
        if kind is Kind.EXIT:
            self.m.exit_lanes(lanes)
        else:
            self.m.fault_lanes(lanes, FaultCode.TRAP, pc, self.operands[pc][1])
            self.m.dirty = False

    # ------------------------------------------------------------ divergent mode

    def _run_divergent(self) -> int | None:
        """Step by the group rule until every live lane shares a pc (returned) or none is live."""
        m = self.m
        by_group = m.pcs.reshape(m.groups, GROUP_SIZE)
        while True:
            group_min = by_group.min(axis=1, keepdims=True)
            participants = np.flatnonzero((by_group == group_min) & (group_min != DEAD_PC))
            pcs = m.pcs[participants]
            lowest = int(pcs.min())
            if lowest == pcs.max():
                self._execute(lowest, participants)
            else:
                # pcs are small integers: counting finds the distinct ones faster than np.unique
                for pc in np.flatnonzero(np.bincount(pcs - lowest)).tolist():
                    self._execute(pc + lowest, participants[pcs == pc + lowest])
            if m.emits.has_staged:
                m.emits.end_step()
            if not m.live_count:
                return None
            first = m.pcs.min()
            if np.count_nonzero(m.pcs == first) == m.live_count:
                return int(first)

    def _execute(self, pc: int, lanes: np.ndarray) -> None:
        """Run the instruction at ``pc`` for ``lanes`` (sorted lane ids, all at ``pc``)."""
        m = self.m
        fuel = m.fuel[lanes]
        dry = fuel == 0
        if dry.any():
            m.fault_lanes(lanes[dry], FaultCode.FUEL_EXHAUSTED, pc, 0)
            m.dirty = False
            lanes = lanes[~dry]
            if not len(lanes):
                return
        m.fuel[lanes] -= 1
        kind = self.kinds[pc]
        if kind is Kind.STEP:
            self.steps[pc](m, lanes)  # type: ignore[misc]
            if m.dirty:
                m.dirty = False
                lanes = lanes[m.live[lanes]]
            m.pcs[lanes] = pc + 1
        elif kind is Kind.NOP:
            m.pcs[lanes] = pc + 1
        elif kind is Kind.JMP:
            m.pcs[lanes] = self.operands[pc][1]
        elif kind is Kind.JZ or kind is Kind.JNZ:
            register, target = self.operands[pc]
            taken = (m.regs[register, lanes] != 0) == (kind is Kind.JNZ)
            m.pcs[lanes] = np.where(taken, target, pc + 1)
        else:
            self._stop(kind, pc, lanes)
