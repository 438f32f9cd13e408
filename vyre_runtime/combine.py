"""Merge a program's per-run outputs across the chunks of a stream, by each binding's rule."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vyre_runtime.vir0.isa import Combine, Scope
from vyre_runtime.vir0.program import Binding

_ELEMENTWISE = {
    Combine.SUM: np.add,  # uint32 addition wraps, as the spec's SUM requires
    Combine.MIN: np.minimum,
    Combine.MAX: np.maximum,
    Combine.OR: np.bitwise_or,
    Combine.AND: np.bitwise_and,
    Combine.XOR: np.bitwise_xor,
}


@dataclass
class CombinedBinding:
    """The merged value of one binding: an array, or one array per chunk for CONCAT."""

    binding: Binding
    value: np.ndarray | None = None
    per_chunk: list[np.ndarray] = field(default_factory=list)

    def add(self, chunk_value: np.ndarray) -> None:
        if self.binding.combine == Combine.CONCAT:
            self.per_chunk.append(chunk_value.copy())
        elif self.value is None:
            self.value = chunk_value.copy()
        else:
            _ELEMENTWISE[self.binding.combine](self.value, chunk_value, out=self.value)

    def result(self) -> np.ndarray | list[np.ndarray]:
        if self.binding.combine == Combine.CONCAT:
            return self.per_chunk
        if self.value is None:  # no chunk ran: the binding's initial contents
            return np.full(self.binding.words, self.binding.init, dtype=np.uint32)
        return self.value


def new_accumulators(bindings: tuple[Binding, ...]) -> dict[str, CombinedBinding]:
    """One accumulator per RUN binding; GLOBAL bindings persist in one buffer instead."""
    return {b.name: CombinedBinding(b) for b in bindings if b.scope == Scope.RUN}
