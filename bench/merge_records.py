"""The host's end-of-file record merge (ingest.results.merge) against a lexsort per chunk (how it
merged before), on synthetic chunk outcomes shaped like xxh32_blocks' (offset lo, hi, hash), for
the orders backends emit in: sorted (the CPU backend), warps (a GPU: lanes in order within a warp,
warps interleaved), shuffled. Both in one process: compare the ratio, not the milliseconds.

    python bench/merge_records.py [--chunks 256] [--records 4096]
"""

from __future__ import annotations

import argparse
import sys
import timeit
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vyre_runtime.chunking import ChunkPlan  # noqa: E402
from vyre_runtime.host_service import RunOutcome  # noqa: E402
from vyre_runtime.ingest.results import ChunkOutcome, merge  # noqa: E402
from vyre_runtime.vir0.builder import ProgramBuilder  # noqa: E402

CHUNK = 16 << 20
ORDERS = ("sorted", "warps", "shuffled")


def outcomes(chunks: int, records: int, order: str, rng: np.random.Generator) -> dict[int, ChunkOutcome]:
    result = {}
    for index in range(chunks):
        offsets = np.arange(records, dtype=np.uint64) * 4096 + index * CHUNK
        words = [offsets & 0xFFFFFFFF, offsets >> 32, rng.integers(0, 2**32, records, dtype=np.uint64)]
        part = np.stack(words, axis=1).astype(np.uint32)
        if order == "warps":
            part = part.reshape(-1, 32, 3)[rng.permutation(records // 32)].reshape(-1, 3)
        elif order == "shuffled":
            part = part[rng.permutation(records)]
        plan = ChunkPlan(index, index * CHUNK, (index + 1) * CHUNK, index * CHUNK, (index + 1) * CHUNK)
        result[index] = ChunkOutcome(plan, RunOutcome({}, part, 0, 1, None, "interpreted"))
    return result


def lexsort_per_chunk(chunks: dict[int, ChunkOutcome]) -> tuple[np.ndarray, np.ndarray]:
    parts = [chunks[i].outcome.records for i in sorted(chunks)]
    records = np.concatenate([part[np.lexsort(part.T[::-1])] for part in parts])
    indices = np.concatenate([np.full(len(chunks[i].outcome.records), i, dtype=np.uint32) for i in sorted(chunks)])
    return records, indices


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=256)
    parser.add_argument("--records", type=int, default=4096, help="per chunk (a multiple of 32)")
    args = parser.parse_args()
    builder = ProgramBuilder("xxh32_like", registers=4, lanes=32, emit_words=3)
    builder.exit()
    program = builder.build()
    rng = np.random.default_rng(3)
    for order in ORDERS:
        chunks = outcomes(args.chunks, args.records, order, rng)
        records, indices = lexsort_per_chunk(chunks)
        result = merge(program, chunks, {})
        assert np.array_equal(result.records, records) and np.array_equal(result.record_chunks, indices)
        before = min(timeit.repeat(lambda chunks=chunks: lexsort_per_chunk(chunks), number=3, repeat=3)) / 3
        after = min(timeit.repeat(lambda chunks=chunks: merge(program, chunks, {}), number=3, repeat=3)) / 3
        print(
            f"{order:9s} {args.chunks} chunks x {args.records} records: lexsort per chunk {before * 1e3:.1f} ms, "
            f"merge {after * 1e3:.1f} ms ({before / after:.1f}x)"
        )


if __name__ == "__main__":
    main()
