"""The stream's GB/s over one warm file for several pipeline shapes, in one process (one
Megakernel): which of chunk size, slots, read size and queue depth bounds the end-to-end rate.

    python bench/ingest_sweep.py [--size 4GiB] [--dir DIR] [--consumer checksum+jit]
        [--config 16MiB*96/4MiB@64 ...] [--repeat 2]

A config is CHUNK*SLOTS[:PER_SLOT]/READ@DEPTH[xRINGS] (PER_SLOT: chunks read into one arena slot,
each its own RUN_PROGRAM, so one slot's bytes are worked on by several blocks). Prints, per
config, the best GB/s of `repeat` runs (verified against NumPy) and the mean slots reading and
running (StreamStats): many slots running and few reading = the device bounds the rate; the
reverse = the reads do.
"""

from __future__ import annotations

import argparse
import cProfile
import itertools
import pstats
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ingest import GB, consumer_options, make_file, vyre_stream, warm  # noqa: E402

from vyre_runtime.chunking import parse_size  # noqa: E402
from vyre_runtime.cli import load_program_file  # noqa: E402
from vyre_runtime.ingest import reader  # noqa: E402
from vyre_runtime.ingest.stream import StreamOptions, StreamPipeline  # noqa: E402
from vyre_runtime.megakernel import Megakernel  # noqa: E402

CONFIG = re.compile(
    r"(?P<chunk>\w+)\*(?P<slots>\d+)(:(?P<per_slot>\d+))?/(?P<read>\w+)@(?P<depth>\d+)(x(?P<rings>\d+))?$"
)
DEFAULT_CONFIGS = ["16MiB*96/4MiB@64", "8MiB*192/4MiB@64", "32MiB*48/4MiB@64", "16MiB*96/16MiB@32"]


def parse_config(text: str, lanes: int | None) -> StreamOptions:
    match = CONFIG.match(text)
    if match is None:
        raise SystemExit(f"config {text!r} is not CHUNK*SLOTS[:PER_SLOT]/READ@DEPTH[xRINGS]")
    return StreamOptions(
        chunk_size=parse_size(match["chunk"]),
        chunks=int(match["slots"]),
        chunks_per_slot=int(match["per_slot"] or 1),
        read_size=parse_size(match["read"]),
        queue_depth=int(match["depth"]),
        rings=int(match["rings"] or 1),
        lanes=lanes,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--size", default="4GiB")
    parser.add_argument("--dir", default=str(ROOT / "bench" / "data"))
    parser.add_argument("--consumer", default="checksum+jit", help="NAME[+jit][+separate] (bench/ingest.py)")
    parser.add_argument(
        "--config", action="append", help=f"CHUNK*SLOTS[:PER_SLOT]/READ@DEPTH[xRINGS]; default {DEFAULT_CONFIGS}"
    )
    parser.add_argument("--lanes", type=int, default=256)
    parser.add_argument(
        "--iowq",
        default="",
        help="io-wq worker caps to run every config with, comma-separated (0: the kernel's caps; it stays "
        "in force for later caps of 0, so list it first); default: the reader's DEFAULT_IOWQ_WORKERS",
    )
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument(
        "--profile",
        action="store_true",
        help="profile one more run of each config (the stream thread) and print its top functions",
    )
    args = parser.parse_args()
    size = parse_size(args.size)
    path = Path(args.dir) / f"ingest-{size}.bin"
    path.parent.mkdir(parents=True, exist_ok=True)
    checksum, histogram = make_file(path, size)
    expected = {"checksum": checksum, "histogram": histogram}
    warm(path)
    ok = True
    caps = [int(cap) for cap in args.iowq.split(",")] if args.iowq else [reader.DEFAULT_IOWQ_WORKERS]
    with Megakernel(backend=args.backend, slots=1024) as megakernel:
        for text, cap in itertools.product(args.config or DEFAULT_CONFIGS, caps):
            reader.DEFAULT_IOWQ_WORKERS = cap  # read when the pipeline opens its rings
            name, options = consumer_options(args.consumer, parse_config(text, args.lanes or None))
            program = load_program_file(str(ROOT / "examples" / f"{name}.vasm"))
            with StreamPipeline([program], megakernel, options) as pipeline:
                runs = [vyre_stream(pipeline, path, name, expected) for _ in range(args.repeat)]
                if args.profile:  # the stream loop runs in this thread: where its time goes
                    profile = cProfile.Profile()
                    profile.enable()
                    profiled = vyre_stream(pipeline, path, name, expected)
                    profile.disable()
                    print(f"profiled run: {profiled['gbps']:.2f} GB/s (the profiler slows the stream thread)")
                    pstats.Stats(profile).sort_stats("tottime").print_stats(20)
            best = max(runs, key=lambda r: r["gbps"])
            ok &= all(r["verified"] for r in runs)
            print(
                f"{args.consumer} {text:<22} iowq {cap:>2} {best['gbps']:6.2f} GB/s (runs: "
                f"{', '.join(format(r['gbps'], '.2f') for r in runs)}) slots reading {best['slots_reading']}, "
                f"running {best['slots_running']}, verified {all(r['verified'] for r in runs)}",
                flush=True,
            )
    print(f"file {path} ({size / GB:.2f} GB)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
