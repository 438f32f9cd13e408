"""Where the host's time goes while a stream runs: cProfile of StreamPipeline.run, plus how many
chunks were running at each turn of the pipeline loop (is the device or the host the bottleneck?).

    python bench/ingest_profile.py FILE [--backend auto|cpu|cuda] [--program histogram]
        [--chunk-size 16MiB] [--chunks 48] [--read-size 4MiB] [--lanes 256] [--top 20]

The arena and rings are set up by a first, unprofiled run (as a user streaming many files pays
that once). Prints GB/s, the mean and max of chunks in flight, the top functions by own time,
and the Megakernel's stats.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vyre_runtime.chunking import parse_size  # noqa: E402
from vyre_runtime.cli import load_program_file  # noqa: E402
from vyre_runtime.ingest.stream import StreamOptions, StreamPipeline  # noqa: E402
from vyre_runtime.megakernel import Megakernel  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file")
    parser.add_argument("--backend", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--program", default="histogram", help="examples/NAME.vasm")
    parser.add_argument("--chunk-size", default="16MiB")
    parser.add_argument("--chunks", type=int, default=48)
    parser.add_argument("--read-size", default="4MiB")
    parser.add_argument("--lanes", type=int)
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    program = load_program_file(str(ROOT / "examples" / f"{args.program}.vasm"))
    options = StreamOptions(
        chunk_size=parse_size(args.chunk_size),
        chunks=args.chunks,
        read_size=parse_size(args.read_size),
        queue_depth=64,
        lanes=args.lanes,
    )
    with Megakernel(backend=args.backend) as megakernel, StreamPipeline([program], megakernel, options) as pipeline:
        pipeline.run([args.file])  # set-up (pinning, registration) outside the profile
        in_flight: list[int] = []
        reap_runs = pipeline._reap_runs

        def counting_reap() -> bool:
            in_flight.append(len(pipeline._running))
            return reap_runs()

        pipeline._reap_runs = counting_reap  # type: ignore[method-assign]
        profile = cProfile.Profile()
        started = time.perf_counter()
        profile.enable()
        [result] = pipeline.run([args.file])
        profile.disable()
        seconds = time.perf_counter() - started
        print(
            f"{megakernel.backend}: {result.size / seconds / 1e9:.2f} GB/s, {result.chunks} chunks, "
            f"chunks running per loop turn: mean {np.mean(in_flight):.1f}, max {max(in_flight)} "
            f"of {pipeline.options.chunks} slots, {len(in_flight)} turns"
        )
        pstats.Stats(profile).sort_stats("tottime").print_stats(args.top)
        print(megakernel.stats())
    return 0 if result.error is None and not result.faults else 1


if __name__ == "__main__":
    sys.exit(main())
