"""RUN_PROGRAM byte-scan throughput on CUDA: the resident megakernel interpreting the byte-scan
examples over device-resident 1 MiB chunks, next to hand-written CUDA kernels doing the same.

    python bench/scan.py [--total-mib 256] [--chunk-mib 1] [--lanes 64,128,256,512,1024] [--programs a,b]

Data: --total-mib of generated text (bench/scan_reference.py), in one DeviceBuffer. For each
example (line_count, histogram, literal_search, fnv1a_blocks, xxh32_blocks, dfa_count):
  interpreted, device    RUN_PROGRAM slots over the chunks (slices of the DeviceBuffer: the kernel
                         reads device memory, nothing is staged), published while the tenant is
                         paused and released at once; GB/s of owned bytes from the first claim to
                         the last completion (CLAIM_COUNT / DONE_COUNT): the device's rate. One row
                         per lane count; the best is reported.
  interpreted, submit    the same with the best lane count, submitted one by one with a window of
                         --in-flight outstanding: what a Python caller sees end to end.
  interpreted, mapped    the device rate over the same bytes in pinned host-mapped memory
                         (zero-copy over PCIe).
  hand-written           bench/kernels/scan_kernels.cu: one launch per pass over all the data,
                         timed with CUDA events, over device memory and over the mapped copy.
ratio = interpreted device / hand-written device (the issue asks for >= 0.25).

Every interpreted run is checked against the hand-written kernel's result for its chunk, and the
hand-written results of a sample of chunks against NumPy; a mismatch is reported and the exit
status is 1. The hand-written kernels run first: loading a module waits for a resident kernel.
Writes bench/results/scan-cuda.json. Without a usable GPU it says so and exits 2. `--backend cpu`
runs the interpreted measurements on the CPU backend (slow: pass a small --total-mib) to check
the harness anywhere; its numbers are not the benchmark.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from scan_reference import (  # noqa: E402
    SCANS,
    ChunkExpectation,
    Scan,
    expectation_mismatch,
    generate,
    load_program,
    numpy_expectation,
    run_mismatch,
    sample_chunks,
)

from vyre_runtime.backends.selection import cuda_unavailable_reason  # noqa: E402
from vyre_runtime.chunking import ChunkPlan, plan_chunks  # noqa: E402
from vyre_runtime.megakernel import Megakernel  # noqa: E402
from vyre_runtime.protocol.layout import ControlWord  # noqa: E402

MASK32 = 0xFFFFFFFF
RESULT_TIMEOUT_S = 60.0
ALLOCATE_DEADLINE_S = 30.0
LANE_ORDER = (256, 64, 1024, 128, 512)  # measured first to last while the time allowance lasts
EMIT_CAPACITY = {"literal": 1024, "blocks": 0}  # literal: ~120 matches per MiB; blocks: from the chunk size


def within_deadline(seconds: float, what: str, call):
    """call() in a helper thread; if it has not returned after ``seconds`` the driver is stuck (a
    call waiting for the resident kernel, which never ends): say so and leave at once."""
    outcome: list = []

    def run() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as error:
            outcome.append((False, error))

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    if not outcome:
        print(f"scan: {what} did not return within {seconds:.0f} s while the megakernel is resident; giving up")
        sys.stdout.flush()
        os._exit(3)
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


def git_commit() -> str:
    completed = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return completed.stdout.strip() or "unknown"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--total-mib", type=int, default=256, help="generated data (default 256 MiB)")
    parser.add_argument("--chunk-mib", type=int, default=1, help="bytes per RUN_PROGRAM (default 1 MiB)")
    parser.add_argument("--lanes", default=",".join(map(str, LANE_ORDER)), help="lane counts to try")
    parser.add_argument("--programs", default=",".join(s.name for s in SCANS), help="examples to run")
    parser.add_argument("--slots", type=int, default=4096, help="ring slots")
    parser.add_argument("--runs", type=int, help="runs per device-rate measurement (default: 4 x the grid)")
    parser.add_argument("--in-flight", type=int, help="submit-loop window (default: 2 x the grid)")
    parser.add_argument("--hand-passes", type=int, default=20, help="timed passes of each hand-written kernel")
    parser.add_argument("--budget-s", type=float, default=75.0, help="stop trying lane counts after this")
    parser.add_argument("--output", type=Path, help="JSON path (default bench/results/scan-<backend>.json)")
    args = parser.parse_args(argv)
    args.lanes = [int(x) for x in args.lanes.split(",") if x]
    names = {s.name for s in SCANS}
    unknown = [p for p in args.programs.split(",") if p not in names]
    if unknown:
        parser.error(f"unknown programs {unknown}; choose from {sorted(names)}")
    args.scans = [s for s in SCANS if s.name in args.programs.split(",")]
    return args


# ---------------------------------------------------------------------- interpreted runs


def submit_chunk(mk: Megakernel, handle: int, region, plan: ChunkPlan, lanes: int, emit_capacity: int):
    return mk.submit(
        handle,
        region,
        lanes=lanes,
        emit_capacity=emit_capacity,
        own_lo=plan.own_lo,
        own_hi=plan.own_hi,
        file_offset=plan.region_start,
        chunk_index=plan.index,
        timeout=RESULT_TIMEOUT_S,
    )


def device_rate(mk: Megakernel, handle: int, regions: list, plans: list[ChunkPlan], lanes: int, runs: int, emit: int):
    """Publish ``runs`` slots while tenant 0 is paused, release them at once, and time the device
    from its first claim to its last completion. Returns (GB/s, seconds, [(plan, result)])."""
    image = mk.image
    futures = []
    mk.set_tenant_enabled(0, False)
    try:
        for i in range(runs):
            plan = plans[i % len(plans)]
            futures.append((plan, submit_chunk(mk, handle, regions[plan.index], plan, lanes, emit)))
        claims, done = int(image[ControlWord.CLAIM_COUNT]), int(image[ControlWord.DONE_COUNT])
    finally:
        mk.set_tenant_enabled(0, True)
    deadline = time.monotonic() + RESULT_TIMEOUT_S
    while (int(image[ControlWord.CLAIM_COUNT]) - claims) & MASK32 == 0:
        if time.monotonic() > deadline:
            raise TimeoutError("the device claimed nothing within the deadline")
    started = time.perf_counter()
    while (int(image[ControlWord.DONE_COUNT]) - done) & MASK32 < runs:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{runs} runs did not complete within {RESULT_TIMEOUT_S:.0f} s")
    seconds = time.perf_counter() - started
    results = [(plan, future.result(RESULT_TIMEOUT_S)) for plan, future in futures]
    owned = sum(plan.own_hi - plan.own_lo for plan, _ in results)
    return owned / seconds / 1e9, seconds, results


def submit_loop(mk: Megakernel, handle: int, regions: list, plans: list[ChunkPlan], lanes: int, emit: int, window: int):
    """Every chunk once, submitted one by one with ``window`` outstanding: (GB/s, seconds, results)."""
    started = time.perf_counter()
    pending: deque = deque()
    results = []
    for plan in plans:
        if len(pending) >= window:
            done_plan, future = pending.popleft()
            results.append((done_plan, future.result(RESULT_TIMEOUT_S)))
        pending.append((plan, submit_chunk(mk, handle, regions[plan.index], plan, lanes, emit)))
    results += [(plan, future.result(RESULT_TIMEOUT_S)) for plan, future in pending]
    seconds = time.perf_counter() - started
    return sum(p.own_hi - p.own_lo for p in plans) / seconds / 1e9, seconds, results


def first_mismatch(scan: Scan, results, expected: dict[int, ChunkExpectation]) -> str | None:
    for plan, run in results:
        problem = run_mismatch(scan, plan, run, expected[plan.index])
        if problem:
            return problem
    return None


# ---------------------------------------------------------------------- the benchmark


def measure_scan(mk, scan: Scan, args, regions, mapped_regions, expected, allowance_s: float) -> dict:
    program = load_program(scan)
    plans = list(plan_chunks(args.total, args.chunk, program.overlap))
    handle = mk.register_program(program)
    emit = EMIT_CAPACITY.get(scan.kind, 0) or (args.chunk // 4096 + 1 if scan.kind == "blocks" else 0)
    grid = getattr(mk.device, "grid", 8)
    runs = args.runs or len(plans) * max(1, math.ceil(4 * grid / len(plans)))
    runs = min(runs, args.slots // 2)  # all of them wait in the ring at once (the tenant is paused)
    window = args.in_flight or max(8, 2 * grid)
    row: dict = {"declared_lanes": program.lanes, "runs": runs, "lanes": {}, "errors": []}
    started = time.monotonic()
    order = [program.lanes] + [n for n in args.lanes if n != program.lanes]
    for lanes in order:
        if row["lanes"] and time.monotonic() - started > allowance_s:
            row["lanes"][str(lanes)] = {"skipped": "time allowance used up"}
            continue
        rate, seconds, results = device_rate(mk, handle, regions[program.overlap], plans, lanes, runs, emit)
        problem = first_mismatch(scan, results, expected)
        row["lanes"][str(lanes)] = {"gb_per_s": rate, "seconds": seconds, "verified": problem is None}
        if problem:
            row["errors"].append(f"lanes {lanes}: {problem}")
        verdict = "" if problem is None else f"  MISMATCH: {problem}"
        print(f"  {scan.name:<16} lanes {lanes:>5}: {rate:8.2f} GB/s  ({runs} runs, {seconds * 1e3:.1f} ms){verdict}")
    measured = {int(k): v["gb_per_s"] for k, v in row["lanes"].items() if "gb_per_s" in v}
    best = max(measured, key=measured.get)
    row["best_lanes"], row["interpreted_device_gb_s"] = best, measured[best]
    rate, seconds, results = submit_loop(mk, handle, regions[program.overlap], plans, best, emit, window)
    row["interpreted_submit_loop_gb_s"], row["submit_window"] = rate, window
    problem = first_mismatch(scan, results, expected)
    if problem:
        row["errors"].append(f"submit loop: {problem}")
    if mapped_regions is not None:
        rate, seconds, results = device_rate(mk, handle, mapped_regions[program.overlap], plans, best, runs, emit)
        row["interpreted_mapped_gb_s"] = rate
        problem = first_mismatch(scan, results, expected)
        if problem:
            row["errors"].append(f"host-mapped: {problem}")
    mk.unregister_program(handle)
    return row


def slices(source, total: int, chunk: int, overlaps: set[int]) -> dict[int, list]:
    """Per overlap: the region of every chunk, by chunk index (DeviceBuffer slices or array views)."""

    def region(plan: ChunkPlan):
        if hasattr(source, "slice"):
            return source.slice(plan.region_start, plan.region_length)
        return source[plan.region_start : plan.region_end]

    return {overlap: [region(plan) for plan in plan_chunks(total, chunk, overlap)] for overlap in overlaps}


def handwritten_phase(args, data: np.ndarray, mapped, rows: dict) -> dict[str, dict[int, ChunkExpectation]]:
    """Run, time and read back every hand-written kernel (before any megakernel is resident)."""
    from scan_handwritten import HandWritten

    from vyre_runtime.backends.cuda import driver

    info = driver.device_info(0)
    driver.Context(0)  # the primary context, current in this thread (released at process exit)
    device_data = driver.DeviceMemory(args.total)
    expected: dict[str, dict[int, ChunkExpectation]] = {}
    try:
        hand = HandWritten(info.arch, args.total, args.chunk)
    except BaseException:
        device_data.free()
        raise
    try:
        driver.upload(hand.stream, device_data.pointer, data, 60.0)
        for scan in args.scans:
            program = load_program(scan)
            timing, results = hand.run(scan, program, device_data.pointer, args.hand_passes)
            mapped_timing, mapped_results = hand.run(
                scan, program, mapped.device_pointer, max(2, args.hand_passes // 8)
            )
            row = rows[scan.name]
            row["handwritten_device_gb_s"], row["handwritten_mapped_gb_s"] = timing.gb_per_s, mapped_timing.gb_per_s
            plans = {p.index: p for p in plan_chunks(args.total, args.chunk, program.overlap)}
            for index in sample_chunks(len(plans)):
                want = numpy_expectation(scan, program, data, plans[index])
                for source, got in (("device", results), ("mapped", mapped_results)):
                    problem = expectation_mismatch(scan, plans[index], got[index], want)
                    if problem:
                        row["errors"].append(f"hand-written ({source}): {problem}")
                        break
            expected[scan.name] = results
            rates = f"{timing.gb_per_s:8.1f} GB/s device, {mapped_timing.gb_per_s:6.1f} GB/s host-mapped"
            print(f"  {scan.name:<16} hand-written: {rates}", flush=True)
    finally:
        hand.close()
        device_data.free()
    return expected


def numpy_phase(args, data: np.ndarray, rows: dict) -> dict[str, dict[int, ChunkExpectation]]:
    """--backend cpu: every chunk's expectation from NumPy (no hand-written kernels)."""
    expected = {}
    for scan in args.scans:
        program = load_program(scan)
        expected[scan.name] = {
            plan.index: numpy_expectation(scan, program, data, plan)
            for plan in plan_chunks(args.total, args.chunk, program.overlap)
        }
        rows[scan.name]["handwritten_device_gb_s"] = rows[scan.name]["handwritten_mapped_gb_s"] = None
    return expected


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.total, args.chunk = args.total_mib << 20, args.chunk_mib << 20
    if args.backend == "cuda":
        reason = cuda_unavailable_reason()
        if reason is not None:
            print(f"scan: no usable CUDA GPU here ({reason}); this benchmark needs one. Nothing was measured.")
            return 2
    began = time.monotonic()
    print(f"generating {args.total_mib} MiB of text ...", flush=True)
    data = generate(args.total)
    rows: dict[str, dict] = {scan.name: {"errors": []} for scan in args.scans}
    mapped = None
    if args.backend == "cuda":
        from vyre_runtime.backends.cuda import driver

        driver.Context(0)
        mapped = driver.MappedMemory(args.total)  # pinned + mapped: the zero-copy comparison
        mapped.array[: args.total] = data
        print("hand-written kernels:", flush=True)
        try:
            expected = handwritten_phase(args, data, mapped, rows)
        except Exception as error:  # measure the interpreter anyway, checked against NumPy
            failed(rows, f"hand-written kernels: {type(error).__name__}: {error}")
            expected = numpy_phase(args, data, rows)
    else:
        expected = numpy_phase(args, data, rows)
    geometry: dict = {"grid": None, "block": None}
    staged, stopped = 0, False
    try:
        staged, geometry = interpreted_phase(args, data, mapped, rows, expected, began)
        stopped = True
    except Exception as error:  # a megakernel that did not start, or did not stop
        failed(rows, f"megakernel: {type(error).__name__}: {error}")
    if mapped is not None and stopped:
        mapped.unregister()  # the megakernel has exited (unpinning waits for running kernels)
    failures = report(args, rows, geometry, staged, time.monotonic() - began)
    return 1 if failures else 0


def failed(rows: dict, message: str) -> None:
    print(f"  FAILED: {message}", flush=True)
    for row in rows.values():
        row["errors"].append(message)


def interpreted_phase(args, data: np.ndarray, mapped, rows: dict, expected: dict, began: float) -> tuple[int, dict]:
    """Every example on the megakernel; returns (bytes staged, the kernel's grid and block)."""
    overlaps = {load_program(scan).overlap for scan in args.scans}
    print("interpreted (megakernel):", flush=True)
    with Megakernel(backend=args.backend, slots=args.slots) as mk:
        buffer = within_deadline(
            ALLOCATE_DEADLINE_S, "device_buffer (cuMemAlloc)", lambda: mk.device_buffer(args.total)
        )
        buffer.upload(data)
        regions = slices(buffer, args.total, args.chunk, overlaps)
        mapped_regions = None if mapped is None else slices(mapped.array, args.total, args.chunk, overlaps)
        copied = getattr(mk.device, "host_bytes_copied", 0)
        geometry = {"grid": getattr(mk.device, "grid", None), "block": getattr(mk.device, "block", None)}
        for position, scan in enumerate(args.scans):
            left = max(1.0, args.budget_s - (time.monotonic() - began))
            allowance = left / (len(args.scans) - position) * 0.6  # the rest: submit loop, mapped
            row = rows[scan.name]
            errors = row["errors"]  # the hand-written phase's, if any
            try:
                row.update(measure_scan(mk, scan, args, regions, mapped_regions, expected[scan.name], allowance))
            except Exception as error:  # report it and go on with the next example
                row["errors"] = [f"{type(error).__name__}: {error}"]
                print(f"  {scan.name:<16} FAILED: {type(error).__name__}: {error}", flush=True)
            row["errors"] = errors + row["errors"]
        staged = getattr(mk.device, "host_bytes_copied", 0) - copied
        buffer.free()
    return staged, geometry


def report(args, rows: dict, geometry: dict, staged: int, seconds: float) -> int:
    for row in rows.values():
        hand, interpreted = row.get("handwritten_device_gb_s"), row.get("interpreted_device_gb_s")
        row["ratio_interpreted_to_handwritten"] = interpreted / hand if hand and interpreted else None
        row["verified"] = not row["errors"]
    columns = [("lanes", 6), ("interp dev", 12), ("submit loop", 13), ("interp mapped", 15)]
    columns += [("hand dev", 11), ("hand mapped", 13), ("ratio", 8)]
    shape = f"grid {geometry['grid']} x {geometry['block']} threads"
    print(
        f"\nbackend {args.backend}, {args.total_mib} MiB in {args.chunk_mib} MiB chunks, {shape}; GB/s of owned bytes"
    )
    print(f"{'program':<16}" + "".join(f"{name:>{width}}" for name, width in columns) + "  ok")

    def cell(value, width: int, digits: int = 1) -> str:
        return f"{value:>{width}.{digits}f}" if isinstance(value, float) else f"{'-':>{width}}"

    for name, row in rows.items():
        cells = [
            cell(row.get("interpreted_device_gb_s"), 12),
            cell(row.get("interpreted_submit_loop_gb_s"), 13),
            cell(row.get("interpreted_mapped_gb_s"), 15),
            cell(row.get("handwritten_device_gb_s"), 11),
            cell(row.get("handwritten_mapped_gb_s"), 13),
            cell(row.get("ratio_interpreted_to_handwritten"), 8, 3),
        ]
        verdict = "yes" if row["verified"] else "NO"
        print(f"{name:<16}{row.get('best_lanes', '-'):>6}" + "".join(cells) + f"  {verdict}")
        for error in row["errors"][:3]:
            print(f"    {error}")
    if staged:
        print(f"note: {staged} bytes were staged (copied) during the interpreted runs; expected 0 (zero-copy)")
    document = {
        "bench": "scan",
        "backend": args.backend,
        "date": time.strftime("%Y-%m-%d"),
        "commit": git_commit(),
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus, python {platform.python_version()}",
        "gpu": _gpu_name() if args.backend == "cuda" else None,
        "total_bytes": args.total,
        "chunk_bytes": args.chunk,
        "geometry": geometry,
        "bytes_staged_during_device_runs": staged,
        "seconds": seconds,
        "rows": rows,
    }
    output = args.output or ROOT / "bench" / "results" / f"scan-{args.backend}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(document, indent=2, default=float))
    print(f"wrote {output} ({seconds:.1f} s)")
    return sum(bool(row["errors"]) for row in rows.values())


def _gpu_name() -> str:
    from vyre_runtime.backends.cuda import driver

    return driver.device_info(0).name


if __name__ == "__main__":
    sys.exit(main())
