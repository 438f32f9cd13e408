"""What one decoded instruction becomes: a step function over a set of lanes.

Every non-control instruction is turned, once per program (see ``prepared.py``), into a closure
``step(machine, lanes)`` that applies the instruction to the given lanes. ``lanes`` is either
``slice(0, N)`` (every lane of the run is live and executes: views, no index arrays) or a sorted
1-D ``intp`` array of lane ids. Handlers keep that order: the lowest faulting lane and the emit
order both rely on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from vyre_runtime.vir0.isa import OpInfo

if TYPE_CHECKING:
    from vyre_runtime.backends.cpu.dfa_walk import DfaTable
    from vyre_runtime.backends.cpu.machine import Machine

Lanes = slice | np.ndarray
Step = Callable[["Machine", Lanes], None]


@dataclass(frozen=True)
class StepContext:
    """One instruction with everything a handler factory may bake into its closure."""

    pc: int
    info: OpInfo
    is_imm: bool
    d: int
    a: int
    b: int
    imm: int
    emit_words: int
    tables: tuple[np.ndarray, ...]  # read-only uint8 views of the program's tables
    table_bytes: tuple[bytes, ...]  # the same tables as bytes (literals for findl)
    dfa_tables: dict[int, DfaTable]  # table index -> prepared DFA, for dfa/dfae tables only
    binding_words: tuple[int, ...]


Factory = Callable[[StepContext], Step]
