"""The build cache: a cold NVRTC compile of the megakernel against memory and disk cache hits.

    python bench/cache.py [--arch sm_90] [--cold 3] [--hits 200]

Rows: cold compile (NVRTC, cache bypassed); build_megakernel answered from memory and from disk
(end to end: header generation, key hashing and lookup, what a starting Device pays); the bare
BuildCache.get from memory and from disk (a fresh instance per read: open, read, verify the
BLAKE3 footer). No GPU needed. Uses a temporary cache directory; writes bench/results/cache.json.
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

from vyre_runtime import cache  # noqa: E402
from vyre_runtime.backends.cuda import build  # noqa: E402


def timed(count: int, action: Callable[[], object], before: Callable[[], object] = lambda: None) -> dict[str, float]:
    """Milliseconds of ``action`` (``before`` runs untimed ahead of each call)."""
    samples = []
    for _ in range(count):
        before()
        started = time.perf_counter()
        action()
        samples.append((time.perf_counter() - started) * 1e3)
    values = np.asarray(samples)
    return {"p50_ms": float(np.median(values)), "min_ms": float(values.min()), "runs": count}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default=build.DEFAULT_ARCH)
    parser.add_argument("--cold", type=int, default=3, help="cold compiles to time")
    parser.add_argument("--hits", type=int, default=200, help="cache hits to time per row")
    parser.add_argument("--output", default=str(ROOT / "bench" / "results" / "cache.json"))
    args = parser.parse_args()
    rows: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        os.environ[cache.CACHE_ENV] = folder
        rows["cold compile (NVRTC, no cache)"] = timed(
            args.cold, lambda: build.build_megakernel(args.arch, use_cache=False)
        )
        built = build.build_megakernel(args.arch)  # stores the entry
        assert not built.cached
        store = cache.default_cache()

        def cached_build() -> None:
            assert build.build_megakernel(args.arch).cached

        rows["build_megakernel, memory hit"] = timed(args.hits, cached_build)
        rows["build_megakernel, disk hit"] = timed(args.hits, cached_build, before=store.forget_memory)
        rows["BuildCache.get, memory hit"] = timed(args.hits, lambda: store.get(build.CACHE_KIND, built.key))

        def fresh_get() -> None:
            assert cache.BuildCache(folder).get(build.CACHE_KIND, built.key)[2] == "disk"

        rows["BuildCache.get, disk hit (fresh instance)"] = timed(args.hits, fresh_get)
        entry_bytes = store.entry_path(build.CACHE_KIND, built.key).stat().st_size
        stats = store.stats().as_dict()
    cold = rows["cold compile (NVRTC, no cache)"]["p50_ms"]
    for row in rows.values():
        row["speedup_vs_cold"] = cold / row["p50_ms"]
    version = ".".join(map(str, build.nvrtc_version()))
    print(f"megakernel {args.arch}: cubin {len(built.cubin):,} bytes, entry {entry_bytes:,} bytes, NVRTC {version}")
    print(f"{'case':<44}{'p50 ms':>11}{'min ms':>11}{'runs':>7}{'x cold':>10}")
    for name, row in rows.items():
        print(f"{name:<44}{row['p50_ms']:>11.3f}{row['min_ms']:>11.3f}{row['runs']:>7}{row['speedup_vs_cold']:>10,.0f}")
    document = {
        "bench": "cache",
        "date": time.strftime("%Y-%m-%d"),
        "commit": git_commit(),
        "machine": machine(),
        "arch": args.arch,
        "nvrtc": version,
        "cubin_bytes": len(built.cubin),
        "entry_bytes": entry_bytes,
        "rows": rows,
        "cache_stats": stats,
    }
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
