"""The public records of a CPU run: the input region, a lane fault, and the run's result."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vyre_runtime.vir0.isa import FaultCode

InputData = bytes | bytearray | memoryview | np.ndarray


@dataclass(frozen=True)
class Region:
    """The bytes a run reads and the part of them it is responsible for.

    ``own_lo .. own_hi`` is the owned byte range (``own_hi=None`` means the whole region): a
    streaming chunk carries overlap context on each side, and programs count only matches whose
    anchor lies in the owned range, so each match is attributed to exactly one chunk.
    """

    data: InputData
    own_lo: int = 0
    own_hi: int | None = None
    file_offset: int = 0  # file offset of region byte 0 (u64)
    chunk_index: int = 0


_WHAT = {
    FaultCode.OOB_INPUT: ("read outside the input region", "address or range start"),
    FaultCode.OOB_TABLE: ("read outside a table (or used a DFA state past its state count)", "offset or state"),
    FaultCode.OOB_OUTPUT: ("accessed a binding word past the end of the binding", "word index"),
    FaultCode.FUEL_EXHAUSTED: ("ran out of fuel (its instruction budget)", "detail"),
    FaultCode.TRAP: ("executed trap", "user code"),
    FaultCode.BAD_INSTRUCTION: ("reached an undecodable instruction", "detail"),
}


@dataclass(frozen=True)
class Fault:
    """The fault of the lowest faulting lane of a run."""

    code: FaultCode
    pc: int
    lane: int
    detail: int

    def describe(self) -> str:
        """One human sentence, e.g. for the CLI or a test failure message."""
        what, detail_name = _WHAT.get(self.code, ("faulted", "detail"))
        return (
            f"lane {self.lane} {what} at instruction {self.pc} "
            f"({self.code.name}, {detail_name} {self.detail} = {self.detail:#x})"
        )


@dataclass
class RunResult:
    """Everything a run produced. On a fault the outputs so far are kept for diagnosis."""

    outputs: dict[str, np.ndarray]  # every binding by name, uint32 (global ones are the caller's arrays)
    records: np.ndarray  # (records, emit_words) uint32, in emit order (step, then lane id)
    dropped: int  # records that did not fit in the emit capacity
    fault: Fault | None
    lanes: int
    instructions: int  # lane-instructions executed (= fuel consumed over all lanes)
    path: str = "interpreted"  # how the backend ran it: "interpreted", or "jit" (CUDA, native code)

    @property
    def ok(self) -> bool:
        return self.fault is None
