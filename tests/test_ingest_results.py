"""merge(): a file's records in canonical order (by chunk, then by words) whatever order the
chunks arrived in and whatever order each backend emitted them in; the reference is a plain
lexsort per chunk."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from vyre_runtime.chunking import ChunkPlan
from vyre_runtime.host_service import RunOutcome, SlotFaultInfo
from vyre_runtime.ingest.results import ChunkOutcome, canonical_order, merge
from vyre_runtime.protocol.layout import SlotFault
from vyre_runtime.vir0.builder import ProgramBuilder


def _program(emit_words: int):
    builder = ProgramBuilder("emitter", registers=4, lanes=32, emit_words=emit_words)
    builder.exit()
    return builder.build()


def _reference(parts: dict[int, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    records = [part[np.lexsort(part.T[::-1])] for _, part in sorted(parts.items()) if len(part)]
    chunks = [np.full(len(part), index, dtype=np.uint32) for index, part in sorted(parts.items()) if len(part)]
    return np.concatenate(records), np.concatenate(chunks)


def _outcome(index: int, records: np.ndarray, fault: SlotFaultInfo | None = None) -> ChunkOutcome:
    plan = ChunkPlan(index, index * 64, index * 64 + 64, index * 64, index * 64 + 64)
    return ChunkOutcome(plan, RunOutcome({}, records, 0, 1, fault, "interpreted"))


@st.composite
def _chunk_records(draw: st.DrawFn) -> tuple[int, dict[int, np.ndarray]]:
    words = draw(st.sampled_from([1, 2, 3, 4, 5]))
    # per word, few distinct values (ties: in the first key within a part and across parts,
    # the later words deciding) or any u32 (the top bit set included)
    small = st.integers(0, 3)
    wide = st.one_of(st.integers(0, 2**32 - 1), st.sampled_from([0, 2**31, 2**32 - 1]))
    columns = [draw(st.sampled_from([small, wide])) for _ in range(words)]
    row = st.tuples(*columns).map(list)
    parts = {}
    for index in draw(st.lists(st.integers(0, 40), max_size=8, unique=True)):  # 0, 1 or many parts
        rows = draw(st.lists(row, max_size=40))  # parts of 0, 1, 2, ... records
        part = np.array(rows, dtype=np.uint32).reshape(len(rows), words)
        order = draw(st.sampled_from(["as drawn", "sorted", "sorted but one swap", "reversed"]))
        if order != "as drawn":  # as the CPU backend often emits (sorted), or nearly so
            part = part[np.lexsort(part.T[::-1])]
        if order == "sorted but one swap" and len(part) > 1:
            at = draw(st.integers(0, len(part) - 2))
            part[[at, at + 1]] = part[[at + 1, at]]
        elif order == "reversed":
            part = part[::-1].copy()
        parts[index] = part
    return words, parts


@settings(max_examples=500, deadline=None)
@given(_chunk_records())
def test_merge_orders_records_as_a_lexsort_per_chunk(case: tuple[int, dict[int, np.ndarray]]) -> None:
    words, parts = case
    outcomes = {index: _outcome(index, part) for index, part in parts.items()}
    originals = {index: part.copy() for index, part in parts.items()}
    result = merge(_program(words), outcomes, {})
    if not any(len(part) for part in parts.values()):
        assert result.records.shape == (0, words) and len(result.record_chunks) == 0
        return
    records, chunks = _reference(parts)
    assert result.records.dtype == np.uint32 and result.record_chunks.dtype == np.uint32
    np.testing.assert_array_equal(result.records, records)
    np.testing.assert_array_equal(result.record_chunks, chunks)
    for index, part in parts.items():  # the outcomes' arrays are not reordered in place
        np.testing.assert_array_equal(part, originals[index])


@given(st.lists(st.lists(st.integers(0, 2**32 - 1), min_size=3, max_size=3), max_size=60))
def test_canonical_order_is_a_lexsort(rows: list[list[int]]) -> None:
    records = np.array(rows, dtype=np.uint32).reshape(len(rows), 3)
    np.testing.assert_array_equal(canonical_order(records), records[np.lexsort(records.T[::-1])])


def test_merge_leaves_out_faulted_chunks_records() -> None:
    fault = SlotFaultInfo(SlotFault.INTERNAL, 0, 0, 0)
    outcomes = {
        0: _outcome(0, np.array([[5, 0], [1, 0]], dtype=np.uint32)),
        1: _outcome(1, np.array([[9, 9]], dtype=np.uint32), fault),
        2: _outcome(2, np.array([[3, 1], [3, 0]], dtype=np.uint32)),
    }
    result = merge(_program(2), outcomes, {})
    np.testing.assert_array_equal(result.records, [[1, 0], [5, 0], [3, 0], [3, 1]])
    np.testing.assert_array_equal(result.record_chunks, [0, 0, 2, 2])
    assert [f.chunk.index for f in result.faults] == [1]
