"""Fused runs: N programs over streamed data in one pass vs one program vs N separate runs.

    python bench/fused.py [--backend cuda] [--size 1GiB] [--chunk 16MiB] [--lanes 256] [--repeats 3]
                          [--stream-size 2GiB]

Region rows: `--size` bytes in host-mapped memory (`Megakernel.host_memory`, pinned and
device-mapped: what the stream's arena is), cut into `--chunk` regions, every chunk submitted at
once, timed until the last result:
- one program (examples/histogram.vasm) over every chunk: the baseline;
- the four programs (histogram, line_count, literal_search, xxh32_blocks) as four separate
  RUN_PROGRAM slots per chunk: each reads the chunk over PCIe;
- the four as one fused group, one slot per chunk: the chunk crosses PCIe once into device
  staging, the members read that copy;
- the same fused group, and each program alone, over a device-resident copy (DeviceBuffer):
  the ceiling when nothing crosses PCIe, and what each member's own work costs.
Stream rows (`--stream-size` > 0): a warm file of that size through StreamPipeline (io_uring ->
arena -> runs) with the one program, the four unfused and the four fused.
Fused and separate results are checked equal. Writes bench/results/fused-<backend>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from provenance import git_commit, machine  # noqa: E402

from vyre_runtime.chunking import parse_size  # noqa: E402
from vyre_runtime.cli import load_program_file  # noqa: E402
from vyre_runtime.ingest.stream import StreamOptions, StreamPipeline  # noqa: E402
from vyre_runtime.megakernel import Megakernel  # noqa: E402

GB = 1e9
PROGRAMS = "histogram,line_count,literal_search,xxh32_blocks"  # examples/*.vasm; the first is the baseline
EMIT_CAPACITY = 8192  # xxh32_blocks emits one record per 4 KiB block: 4096 per 16 MiB chunk


def make_data(size: int) -> np.ndarray:
    """Random bytes with newlines and needles, so every program has something to find."""
    rng = np.random.default_rng(11)
    data = rng.integers(0, 256, size, dtype=np.uint8)
    data[rng.integers(0, size, size // 64)] = ord("\n")
    for spot in rng.integers(0, size - 4, size // 4096):
        data[spot : spot + 4] = np.frombuffer(b"vyre", dtype=np.uint8)
    return data


def submit_all(mk: Megakernel, handles: list[int], regions: list, lanes: int) -> list:
    """Every handle over every region at once; returns the results in (region, handle) order."""
    futures = [
        mk.submit(handle, region, lanes=lanes, emit_capacity=EMIT_CAPACITY) for region in regions for handle in handles
    ]
    return [future.result(120) for future in futures]


def timed(mk: Megakernel, handles: list[int], regions: list, lanes: int, repeats: int) -> tuple[float, list]:
    """Best seconds of ``repeats`` passes (after one warm-up pass that also yields the results)."""
    results = submit_all(mk, handles, regions, lanes)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        submit_all(mk, handles, regions, lanes)
        best = min(best, time.perf_counter() - started)
    return best, results


def same_results(fused: list, separate: list, members: int) -> bool:
    """Each chunk's fused member outcomes equal the separate runs' (outputs, records, faults)."""
    for chunk, outcomes in enumerate(fused):
        for member, outcome in enumerate(outcomes):
            other = separate[chunk * members + member]
            if outcome.fault != other.fault or outcome.instructions != other.instructions:
                return False
            if any(not np.array_equal(outcome.outputs[k], other.outputs[k]) for k in outcome.outputs):
                return False
            if sorted(map(tuple, outcome.records.tolist())) != sorted(map(tuple, other.records.tolist())):
                return False
    return True


def region_rows(mk: Megakernel, programs: list, args: argparse.Namespace) -> dict:
    size, chunk = args.size, args.chunk
    memory = mk.host_memory(size)
    memory[:] = make_data(size)
    host_regions = [memory[start : start + chunk] for start in range(0, size, chunk)]
    device = mk.device_buffer(size)
    device.upload(memory)
    device_regions = [device.slice(start, min(chunk, size - start)) for start in range(0, size, chunk)]
    handles = [mk.register_program(program) for program in programs]
    group = mk.register_fused(handles)
    rows: dict = {}
    cases = (
        ("host: 1 program", [handles[0]], host_regions),
        (f"host: {len(handles)} programs, separate runs", handles, host_regions),
        (f"host: {len(handles)} programs, fused", [group], host_regions),
        (f"device: {len(handles)} programs, fused", [group], device_regions),
        *((f"device: {program.name} alone", [handle], device_regions) for program, handle in zip(programs, handles)),
    )
    results = {}
    for name, which, regions in cases:
        seconds, results[name] = timed(mk, which, regions, args.lanes, args.repeats)
        rows[name] = {"seconds": seconds, "GB/s": size / seconds / GB}
        print(f"{name:40s} {seconds * 1e3:9.2f} ms  {size / seconds / GB:7.2f} GB/s", flush=True)
    fused_name, separate_name = cases[2][0], cases[1][0]
    rows["fused equals separate"] = same_results(results[fused_name], results[separate_name], len(handles))
    rows["fused / 1 program (host)"] = rows[fused_name]["seconds"] / rows[cases[0][0]]["seconds"]
    rows["separate / 1 program (host)"] = rows[separate_name]["seconds"] / rows[cases[0][0]]["seconds"]
    print(f"fused equals separate: {rows['fused equals separate']}")
    print(f"fused / 1 program: {rows['fused / 1 program (host)']:.2f}x")
    print(f"separate / 1 program: {rows['separate / 1 program (host)']:.2f}x", flush=True)
    return rows


def stream_rows(mk: Megakernel, programs: list, args: argparse.Namespace) -> dict:
    path = Path(args.dir) / "fused-stream.bin"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        piece = make_data(64 << 20).tobytes()
        for start in range(0, args.stream_size, len(piece)):
            handle.write(piece[: min(len(piece), args.stream_size - start)])
    with open(path, "rb") as handle:  # warm: the page cache holds it, reads are not the bound
        while handle.read(64 << 20):
            pass
    rows: dict = {}
    options = StreamOptions(
        chunk_size=args.chunk, chunks=args.stream_chunks, lanes=args.lanes, emit_capacity=EMIT_CAPACITY
    )
    for name, chosen, fuse in (
        ("stream: 1 program", programs[:1], False),
        (f"stream: {len(programs)} programs, separate runs", programs, False),
        (f"stream: {len(programs)} programs, fused", programs, True),
    ):
        best, where = float("inf"), {}
        with StreamPipeline(chosen, mk, replace(options, fuse=fuse)) as pipeline:
            for _ in range(args.repeats):
                cpu = time.process_time()
                [result] = pipeline.run([str(path)])
                cpu = time.process_time() - cpu
                assert result.error is None and not result.faults, result.error
                stats = pipeline.stats
                if stats.seconds < best:  # where the best pass waited: slots reading / running, host CPU
                    best = stats.seconds
                    where = {
                        "slots_reading": stats.reading_slot_seconds / stats.seconds,
                        "slots_running": stats.running_slot_seconds / stats.seconds,
                        "process_cpu_per_second": cpu / stats.seconds,
                        "runs": stats.runs,
                    }
        rows[name] = {"seconds": best, "GB/s": args.stream_size / best / GB, **where}
        print(
            f"{name:40s} {best * 1e3:9.2f} ms  {args.stream_size / best / GB:7.2f} GB/s  (slots reading "
            f"{where['slots_reading']:.1f}, running {where['slots_running']:.1f}; host CPU "
            f"{where['process_cpu_per_second']:.2f} cores; {where['runs']} runs)",
            flush=True,
        )
    one = rows["stream: 1 program"]["seconds"]
    rows["fused / 1 program (stream)"] = rows[f"stream: {len(programs)} programs, fused"]["seconds"] / one
    print(f"stream fused / 1 program: {rows['fused / 1 program (stream)']:.2f}x", flush=True)
    os.unlink(path)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--programs", default=PROGRAMS, help="comma-separated examples/ names (the first: baseline)")
    parser.add_argument("--size", default="1GiB")
    parser.add_argument("--chunk", default="16MiB")
    parser.add_argument("--lanes", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--stream-size", default="2GiB", help="0: no stream rows")
    parser.add_argument("--stream-chunks", type=int, default=64)
    parser.add_argument("--dir", default=str(ROOT / "bench" / "data"))
    args = parser.parse_args()
    args.size, args.chunk = parse_size(args.size), parse_size(args.chunk)
    args.stream_size = 0 if args.stream_size == "0" else parse_size(args.stream_size)
    names = args.programs.split(",")
    programs = [load_program_file(str(ROOT / "examples" / f"{name}.vasm")) for name in names]
    report: dict = {
        "bench": "fused",
        "backend": args.backend,
        "commit": git_commit(),
        "machine": machine(),
        "size": args.size,
        "chunk": args.chunk,
        "lanes": args.lanes,
        "programs": names,
    }
    with Megakernel(backend=args.backend, slots=1024) as mk:
        report["device"] = getattr(getattr(mk.device, "info", None), "name", args.backend)
        report["regions"] = region_rows(mk, programs, args)
        if args.stream_size:
            report["stream"] = stream_rows(mk, programs, args)
    out = ROOT / "bench" / "results" / f"fused-{args.backend}-{len(names)}x-{args.chunk >> 20}MiB-{names[-1]}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
