"""CPU interpreter throughput: every example over a 64 MiB file, next to plain NumPy.

Each row runs an example program through `vyre run`'s path (pread chunks -> Megakernel ring ->
CPU interpreter -> merge) and a plain NumPy implementation of the same computation in the same
process: "numpy MB/s" reads the same file (np.fromfile) and computes, the same work as vyre;
"numpy in-mem" computes on data already in memory (an upper bound). Checks they agree. Prints a
table; writes bench/results/cpu_interp.json.

    python bench/cpu_interp.py [--size 64MiB] [--repeat 3] [--only line_count,histogram]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from provenance import git_commit, machine  # noqa: E402

from vyre_runtime.chunking import parse_size  # noqa: E402
from vyre_runtime.cli import load_program_file  # noqa: E402
from vyre_runtime.ingest.stream import StreamOptions, run_file  # noqa: E402
from vyre_runtime.megakernel import Megakernel  # noqa: E402
from vyre_runtime.vir0.dfa import compile_patterns  # noqa: E402

FNV_PRIME = np.uint32(16777619)
BLOCK = 4096
DFA_PATTERNS = [b"error", b"warning", b"fatal", b"panic"]


def make_text(size: int, seed: int = 7) -> np.ndarray:
    """Log-like text: lowercase words, spaces, newlines, and the patterns the examples look for."""
    rng = np.random.default_rng(seed)
    alphabet = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz      \n", dtype=np.uint8)
    data = alphabet[rng.integers(0, len(alphabet), size=size)]
    for needle in [b"vyre", *DFA_PATTERNS]:
        spots = rng.integers(0, size - len(needle), size=size // 20_000)
        for k, byte in enumerate(needle):
            data[spots + k] = byte
    return data


# ------------------------------------------------------------------ NumPy baselines


def numpy_line_count(data: np.ndarray) -> int:
    return int(np.count_nonzero(data == 10))


def numpy_histogram(data: np.ndarray) -> np.ndarray:
    return np.bincount(data, minlength=256)


def numpy_literal_search(data: np.ndarray, literal: bytes = b"vyre") -> np.ndarray:
    n = len(data) - len(literal) + 1
    hits = data[:n] == literal[0]
    for k in range(1, len(literal)):
        hits &= data[k : k + n] == literal[k]
    return np.flatnonzero(hits)


def numpy_dfa_count(data: np.ndarray, segments: int = 4096) -> int:
    """The same automaton walked over `segments` slices at once (one gather per byte position)."""
    blob = compile_patterns(DFA_PATTERNS)
    table = np.frombuffer(blob, dtype="<u4", offset=4).reshape(-1, 256)
    flat = table.reshape(-1)
    seg = -(-len(data) // segments)
    padded = np.zeros(seg * segments + 16, dtype=np.uint8)
    padded[16 : 16 + len(data)] = data
    states = np.zeros(segments, dtype=np.uint32)
    starts = np.arange(segments, dtype=np.int64) * seg + 16
    count = 0
    valid_end = 16 + len(data)
    for i in range(-15, seg):  # 15 warm-up bytes per segment, not counted
        positions = starts + i
        transitions = flat[(states.astype(np.int64) << 8) + padded[positions]]
        states = transitions & 0x7FFFFFFF
        if i >= 0:
            accept = (transitions >> 31).astype(bool) & (positions < valid_end) & (positions >= 16)
            count += int(np.count_nonzero(accept))
    return count


def numpy_fnv_blocks(data: np.ndarray) -> np.ndarray:
    full = len(data) // BLOCK
    blocks = data[: full * BLOCK].reshape(full, BLOCK)
    h = np.full(full, 0x811C9DC5, dtype=np.uint32)
    for i in range(BLOCK):
        h ^= blocks[:, i]
        h *= FNV_PRIME
    return h


def numpy_xxh32_blocks(data: np.ndarray) -> np.ndarray:
    p1, p2, p3 = (np.uint32(p) for p in (0x9E3779B1, 0x85EBCA77, 0xC2B2AE3D))
    full = len(data) // BLOCK
    words = data[: full * BLOCK].view("<u4").reshape(full, BLOCK // 4)

    def rotl(x: np.ndarray, r: int) -> np.ndarray:
        return (x << np.uint32(r)) | (x >> np.uint32(32 - r))

    seeds = [(int(p1) + int(p2)) & 0xFFFFFFFF, int(p2), 0, (-int(p1)) & 0xFFFFFFFF]
    acc = [np.full(full, v, dtype=np.uint32) for v in seeds]
    for stripe in range(BLOCK // 16):
        for k in range(4):
            acc[k] = rotl(acc[k] + words[:, 4 * stripe + k] * p2, 13) * p1
    h = rotl(acc[0], 1) + rotl(acc[1], 7) + rotl(acc[2], 12) + rotl(acc[3], 18) + np.uint32(BLOCK)
    h ^= h >> np.uint32(15)
    h *= p2
    h ^= h >> np.uint32(13)
    h *= p3
    h ^= h >> np.uint32(16)
    return h


def numpy_filter_compact(data: np.ndarray) -> np.ndarray:
    words = data[: len(data) // 4 * 4].view("<u4")
    return np.flatnonzero(words >= 0xF0000000)


# ------------------------------------------------------------------ harness


def best_of(repeat: int, work: Callable[[], object]) -> tuple[float, object]:
    best, value = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        value = work()
        best = min(best, time.perf_counter() - started)
    return best, value


def check(name: str, vyre_result, numpy_value) -> bool:
    outputs = vyre_result.outputs
    if name == "line_count":
        return int(outputs["lines"][0]) == numpy_value
    if name == "histogram":
        return bool(np.array_equal(outputs["histogram"], numpy_value))
    if name == "literal_search":
        return int(outputs["matches"][0]) == len(numpy_value)
    if name == "dfa_count":
        return int(outputs["matches"][0]) == numpy_value
    if name in ("fnv1a_blocks", "xxh32_blocks"):
        got = vyre_result.records[np.argsort(vyre_result.records[:, 0], kind="stable")][:, 2]
        return bool(np.array_equal(got[: len(numpy_value)], numpy_value))
    if name == "filter_compact":
        return int(outputs["count"][0]) == len(numpy_value)
    return False


CASES: dict[str, tuple[str, Callable[[np.ndarray], object], bool]] = {
    # name: (example file, numpy baseline, is a byte scan)
    "line_count": ("line_count.vasm", numpy_line_count, True),
    "histogram": ("histogram.vasm", numpy_histogram, True),
    "literal_search": ("literal_search.vasm", numpy_literal_search, True),
    "dfa_count": ("dfa_count.vasm", numpy_dfa_count, True),
    "fnv1a_blocks": ("fnv1a_blocks.vasm", numpy_fnv_blocks, False),
    "xxh32_blocks": ("xxh32_blocks.vasm", numpy_xxh32_blocks, False),
    "filter_compact": ("filter_compact.vasm", numpy_filter_compact, False),  # runs on random words
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="64MiB")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--chunk-size", default="16MiB")
    parser.add_argument("--only", default="", help="comma-separated case names")
    parser.add_argument("--workers", type=int, default=1, help="CPU backend workers (1: the one-core number)")
    parser.add_argument("--output", default=str(ROOT / "bench" / "results" / "cpu_interp.json"))
    args = parser.parse_args()
    size = parse_size(args.size)
    options = StreamOptions(chunk_size=parse_size(args.chunk_size))
    text = make_text(size)
    selected = [c for c in CASES if not args.only or c in args.only.split(",")]
    rows = []
    megakernel = Megakernel(backend="cpu", slots=64, workers=args.workers)
    with megakernel, tempfile.TemporaryDirectory() as folder:
        text_path = os.path.join(folder, "text.bin")
        text.tofile(text_path)
        print(f"{'program':<16}{'vyre MB/s':>11}{'numpy MB/s':>12}{'numpy/vyre':>12}{'numpy in-mem':>14}  agree")
        random_path = os.path.join(folder, "random.bin")
        random_words = np.random.default_rng(8).integers(0, 256, size=size, dtype=np.uint8)
        random_words.tofile(random_path)
        for name in selected:
            example, baseline, byte_scan = CASES[name]
            # text has no word >= 0xF0000000: the filter would keep nothing, so it reads random bytes
            path = random_path if name == "filter_compact" else text_path
            data = random_words if name == "filter_compact" else text
            program = load_program_file(str(ROOT / "examples" / example))
            vyre_seconds, vyre_result = best_of(
                args.repeat, lambda p=program, f=path: run_file(p, f, options, megakernel)
            )
            numpy_seconds, numpy_value = best_of(
                args.repeat, lambda b=baseline, f=path: b(np.fromfile(f, dtype=np.uint8))
            )
            memory_seconds, _ = best_of(args.repeat, lambda b=baseline, d=data: b(d))
            agree = check(name, vyre_result, numpy_value)
            row = {
                "program": name,
                "byte_scan": byte_scan,
                "bytes": size,
                "vyre_mb_s": size / vyre_seconds / 1e6,
                "numpy_mb_s": size / numpy_seconds / 1e6,
                "numpy_in_memory_mb_s": size / memory_seconds / 1e6,
                "numpy_over_vyre": vyre_seconds / numpy_seconds,
                "agree": agree,
            }
            rows.append(row)
            print(
                f"{name:<16}{row['vyre_mb_s']:>11.1f}{row['numpy_mb_s']:>12.1f}"
                f"{row['numpy_over_vyre']:>11.2f}x{row['numpy_in_memory_mb_s']:>14.1f}  {'yes' if agree else 'NO'}"
            )
    document = {
        "bench": "cpu_interp",
        "date": time.strftime("%Y-%m-%d"),
        "commit": git_commit(),
        "machine": machine(),
        "numpy": np.__version__,
        "chunk_size": options.chunk_size,
        "workers": args.workers,
        "rows": rows,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(document, indent=2))
    print(f"wrote {args.output}")
    return 0 if all(r["agree"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
