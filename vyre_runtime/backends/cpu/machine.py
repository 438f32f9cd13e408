"""The state of one run: registers, per-lane pc / fuel / liveness, input, bindings, hit buffer.

Lanes are padded to a whole number of groups of 32 so the scheduler can reshape per-lane arrays
to (groups, 32); padding lanes are dead from the start and never execute or participate.
"""

from __future__ import annotations

import numpy as np

from vyre_runtime.backends.cpu.emit import EmitBuffer
from vyre_runtime.backends.cpu.results import Fault, InputData
from vyre_runtime.backends.cpu.step import Lanes
from vyre_runtime.vir0.isa import GROUP_SIZE, FaultCode

DEAD_PC = np.int64(1) << 62  # pc of a lane that exited or faulted: above every real pc


class Machine:
    """Mutable per-run state shared by the scheduler and every step function."""

    def __init__(
        self,
        *,
        registers: int,
        lanes: int,
        fuel: int,
        data: InputData,
        input_array: np.ndarray,
        special: dict[int, int],
        bindings: list[np.ndarray],
        emits: EmitBuffer,
    ) -> None:
        groups = -(-lanes // GROUP_SIZE)
        padded = groups * GROUP_SIZE
        self.lanes = lanes
        self.groups = groups
        self.padded = padded
        self.regs = np.zeros((registers, padded), dtype=np.uint32)
        self.live = np.zeros(padded, dtype=bool)
        self.live[:lanes] = True
        self.live_count = lanes
        self.pcs = np.full(padded, DEAD_PC, dtype=np.int64)
        self.pcs[:lanes] = 0
        self.fuel = np.zeros(padded, dtype=np.int64)
        self.fuel[:lanes] = fuel
        self.lane_ids = np.arange(padded, dtype=np.uint32)
        self.all_lanes = np.arange(lanes, dtype=np.intp)
        self.input = input_array
        self.region_len = len(input_array)
        self.special = special  # SpecialRegister -> value, for the lane-independent ones
        self.bindings = bindings
        self.emits = emits
        self.fault: Fault | None = None
        self.dirty = False  # set when a step faulted some of its lanes
        self._data = data
        self._region_bytes: bytes | bytearray | None = None

    @property
    def region_bytes(self) -> bytes | bytearray:
        """The input as an object with C-speed ``count``/``find`` (converted once per run, lazily)."""
        if self._region_bytes is None:
            data = self._data
            self._region_bytes = data if isinstance(data, bytes | bytearray) else self.input.tobytes()
        return self._region_bytes

    def index(self, lanes: Lanes) -> np.ndarray:
        """``lanes`` as a sorted lane-id array (the all-lanes slice becomes 0..N-1)."""
        return self.all_lanes if isinstance(lanes, slice) else lanes

    def fault_lanes(self, lanes: np.ndarray, code: FaultCode, pc: int, detail: np.ndarray | int) -> None:
        """Stop ``lanes`` (sorted, non-empty) with a fault; keep the lowest faulting lane's fault."""
        first = int(lanes[0])
        if self.fault is None or first < self.fault.lane:
            first_detail = int(detail[0]) if isinstance(detail, np.ndarray) else int(detail)
            self.fault = Fault(FaultCode(code), pc, first, first_detail)
        self._stop(lanes)
        self.dirty = True

    def fault_where(self, lanes: Lanes, ok: np.ndarray, code: FaultCode, pc: int, detail: np.ndarray) -> np.ndarray:
        """Fault the lanes where ``ok`` is false (detail aligned with lanes); return the others."""
        index = self.index(lanes)
        bad = ~ok
        self.fault_lanes(index[bad], code, pc, detail[bad])
        return index[ok]

    def exit_lanes(self, lanes: np.ndarray) -> None:
        """End ``lanes`` normally (``exit``)."""
        self._stop(lanes)

    def _stop(self, lanes: np.ndarray) -> None:
        self.live[lanes] = False
        self.pcs[lanes] = DEAD_PC
        self.live_count -= len(lanes)

    def live_lanes(self) -> Lanes:
        """The live lanes, as a slice when all lanes are live (the fast path)."""
        if self.live_count == self.lanes:
            return slice(0, self.lanes)
        return np.flatnonzero(self.live)
