"""RUN_PROGRAM byte-scan throughput on CUDA: the resident megakernel interpreting the byte-scan
examples over device-resident 1 MiB chunks, next to hand-written CUDA kernels doing the same.

    python bench/scan.py [--total-mib 256] [--chunk-mib 1] [--lanes 64,128,256,512,1024] [--programs a,b]

Data: --total-mib of generated text (bench/scan_reference.py), in one DeviceBuffer. For each
example (line_count, histogram, literal_search, fnv1a_blocks, xxh32_blocks, dfa_count):
  interpreted, device    RUN_PROGRAM slots over the chunks (slices of the DeviceBuffer: the kernel
                         reads device memory, nothing is staged), published while the tenant is
                         paused and released at once; GB/s of owned bytes from the release to
                         the last completion (DONE_COUNT): the device's rate. One row
                         per lane count; the best is reported.
  interpreted, submit    the same with the best lane count, submitted one by one with a window of
                         --in-flight outstanding: what a Python caller sees end to end.
  interpreted, mapped    the device rate over pinned host-mapped memory (zero-copy over PCIe), on
                         a subset: the first --mapped-chunks chunks, one run per worker block
                         (--mapped-runs), enough to keep PCIe busy without minutes of byte loads.
  hand-written           bench/kernels/scan_kernels.cu: one launch per pass over all the data,
                         timed with CUDA events, over device memory and over the mapped copy.
ratio = interpreted device / hand-written device (the issue asks for >= 0.25).

Every interpreted run is checked against the hand-written kernel's result for its chunk, and the
hand-written results of a sample of chunks against NumPy; a mismatch is reported and the exit
status is 1. Every measurement also checks exactly-once: the device claimed and completed each
published run once (CLAIM_COUNT, DONE_COUNT), and nothing completed that was not published
(Stats.stray_completions). No phase leaves runs in flight for the next: on any error the runs
published so far are waited for first, and runs still in flight after DRAIN_TIMEOUT_S end the
interpreted measurements (the Megakernel is then shut down with cancel=True). The hand-written
kernels run first: loading a module waits for a resident kernel.
Writes bench/results/scan-cuda.json. Without a usable GPU it says so and exits 2. `--backend cpu`
runs the interpreted measurements on the CPU backend (slow: pass a small --total-mib) to check
the harness anywhere; its numbers are not the benchmark.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import threading
import time
from collections import deque
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from provenance import git_commit, gpu_name, machine  # noqa: E402
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
from vyre_runtime.errors import DispatchError  # noqa: E402
from vyre_runtime.megakernel import Megakernel  # noqa: E402
from vyre_runtime.protocol.layout import ControlWord  # noqa: E402

MASK32 = 0xFFFFFFFF
RESULT_TIMEOUT_S = 20.0  # one measurement's runs (2048 x 1 MiB take ~10-30 ms on an H100)
DRAIN_TIMEOUT_S = 20.0  # after an error: the runs published so far must finish within this
SHUTDOWN_TIMEOUT_S = 20.0
COUNTER_SETTLE_S = 1.0  # device counters land just after the status words they count
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
    parser.add_argument("--mapped-chunks", type=int, default=32, help="host-mapped runs read the first N chunks")
    parser.add_argument("--mapped-runs", type=int, help="host-mapped runs (default: one per worker block)")
    parser.add_argument("--hand-passes", type=int, default=20, help="timed passes of each hand-written kernel")
    parser.add_argument("--budget-s", type=float, default=75.0, help="stop trying lane counts after this")
    parser.add_argument("--output", type=Path, help="JSON path (default bench/results/scan-<backend>.json)")
    parser.add_argument(
        "--jit", action="store_true", help="also JIT each program (Megakernel.jit) and measure it at its best lanes"
    )
    parser.add_argument(
        "--phases",
        action="store_true",
        help="build the kernel with VYRE_STAGE_STAMPS and split each device-rate row into worker-block phases",
    )
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


class StuckError(RuntimeError):
    """Runs still in flight after DRAIN_TIMEOUT_S: every later measurement would count them, so
    the interpreted phase stops (and shuts the Megakernel down with cancel=True)."""


def drain(mk: Megakernel, futures: list, what: str) -> None:
    """Wait for every run published so far (a fault or an error counts as finished)."""
    if not mk.wait(futures, timeout=DRAIN_TIMEOUT_S):
        left = sum(not future.done() for future in futures)
        raise StuckError(f"{what}: {left} of {len(futures)} runs still in flight after {DRAIN_TIMEOUT_S:.0f} s")


def counters(mk: Megakernel) -> tuple[int, int]:
    return int(mk.image[ControlWord.CLAIM_COUNT]), int(mk.image[ControlWord.DONE_COUNT])


def check_exactly_once(mk: Megakernel, before: tuple[int, int], runs: int, strays: int, what: str) -> None:
    """The device claimed and completed each of ``runs`` publications once, and completed
    nothing it was not given (the bug this bench once hit: stale work-queue entries re-run)."""
    settle = time.monotonic() + COUNTER_SETTLE_S
    while True:
        claims, done = ((now - then) & MASK32 for now, then in zip(counters(mk), before))
        if (claims, done) == (runs, runs) or time.monotonic() > settle:
            break
        time.sleep(0.001)
    new_strays = mk.stats().stray_completions - strays
    if (claims, done, new_strays) != (runs, runs, 0):
        raise RuntimeError(
            f"{what}: exactly-once violated: {runs} runs published, the device claimed {claims} and "
            f"completed {done}; {new_strays} completions of slots nobody published"
        )


# megakernel.cu, RUN_PHASE(k): where worker blocks spend their time (VYRE_STAGE_STAMPS builds)
RUN_PHASES = (
    "waiting for an entry",
    "checks + records",
    "bindings in",
    "program",
    "outputs out + context",
    "results",
    "result stores",
    "release fence",
    "status",
    "counters",
)
PHASE_GLOBAL = "vyre_run_phase_ns"


def read_phases(mk: Megakernel) -> np.ndarray:
    """The kernel's phase sums (ns, then the slots served), copied from device memory."""
    from vyre_runtime.backends.cuda import driver

    device = mk.device
    pointer, nbytes = device._module.global_address(PHASE_GLOBAL)
    raw = driver.download(device._side_stream, pointer, nbytes, 10.0)
    return np.frombuffer(raw, dtype=np.uint64).astype(np.int64)


def phase_report(before: np.ndarray, after: np.ndarray, seconds: float, grid: int) -> str:
    """Per slot served: microseconds of a block in each phase; and the share of the grid's time."""
    delta = after - before
    served = max(int(delta[-1]), 1)  # the last word counts the slots served
    busy = delta[1 : len(RUN_PHASES)].sum()
    parts = [f"{name} {delta[k] / served / 1e3:.1f}" for k, name in enumerate(RUN_PHASES)]
    share = busy / max(seconds * 1e9 * grid, 1.0)
    return f"    phases, us per slot ({served} slots; blocks busy {share:.0%} of grid time): " + ", ".join(parts)


def device_rate(mk: Megakernel, handle: int, regions: list, plans: list[ChunkPlan], lanes: int, runs: int, emit: int):
    """Publish ``runs`` slots while tenant 0 is paused, release them at once, and time the device
    from the release to its last completion (DONE_COUNT; the device copies it at once when idle).
    Returns (GB/s, seconds, [(plan, result)]).
    On any error the runs published so far are waited for before it propagates."""
    image = mk.image
    futures: list = []
    strays = mk.stats().stray_completions
    before = counters(mk)
    try:
        mk.set_tenant_enabled(0, False)
        try:
            for i in range(runs):
                plan = plans[i % len(plans)]
                futures.append((plan, submit_chunk(mk, handle, regions[plan.index], plan, lanes, emit)))
            _, done = counters(mk)
        finally:
            mk.set_tenant_enabled(0, True)
            # from the release, not from CLAIM_COUNT's first move: the device copies its counters
            # into the image only every few busy passes (the counters live in device memory), so
            # a start taken from CLAIM_COUNT came late and overstated the rate several times
            started = time.perf_counter()
        deadline = time.monotonic() + RESULT_TIMEOUT_S
        while (int(image[ControlWord.DONE_COUNT]) - done) & MASK32 < runs:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{runs} runs did not complete within {RESULT_TIMEOUT_S:.0f} s")
        seconds = time.perf_counter() - started
        results = [(plan, future.result(RESULT_TIMEOUT_S)) for plan, future in futures]
    except BaseException:
        drain(mk, [future for _, future in futures], "device rate")  # never leave runs in flight
        raise
    check_exactly_once(mk, before, runs, strays, "device rate")
    owned = sum(plan.own_hi - plan.own_lo for plan, _ in results)
    return owned / seconds / 1e9, seconds, results


def submit_loop(mk: Megakernel, handle: int, regions: list, plans: list[ChunkPlan], lanes: int, emit: int, window: int):
    """Every chunk once, submitted one by one with ``window`` outstanding: (GB/s, seconds, results)."""
    strays = mk.stats().stray_completions
    before = counters(mk)
    started = time.perf_counter()
    pending: deque = deque()
    results = []
    try:
        for plan in plans:
            if len(pending) >= window:
                done_plan, future = pending.popleft()
                results.append((done_plan, future.result(RESULT_TIMEOUT_S)))
            pending.append((plan, submit_chunk(mk, handle, regions[plan.index], plan, lanes, emit)))
        while pending:
            plan, future = pending[0]
            results.append((plan, future.result(RESULT_TIMEOUT_S)))
            pending.popleft()
    except BaseException:
        drain(mk, [future for _, future in pending], "submit loop")
        raise
    seconds = time.perf_counter() - started
    check_exactly_once(mk, before, len(plans), strays, "submit loop")
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
    try:
        return _measure_scan(mk, scan, args, program, plans, handle, regions, mapped_regions, expected, allowance_s)
    finally:  # refused while runs are in flight: only after a StuckError, which ends the phase anyway
        with contextlib.suppress(DispatchError):
            mk.unregister_program(handle)


def _measure_scan(mk, scan: Scan, args, program, plans, handle, regions, mapped_regions, expected, allowance_s):
    emit = EMIT_CAPACITY.get(scan.kind, 0) or (args.chunk // 4096 + 1 if scan.kind == "blocks" else 0)
    grid = getattr(mk.device, "grid", None) or 8
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
        phases_before = read_phases(mk) if args.phases else None
        rate, seconds, results = device_rate(mk, handle, regions[program.overlap], plans, lanes, runs, emit)
        problem = first_mismatch(scan, results, expected)
        row["lanes"][str(lanes)] = {"gb_per_s": rate, "seconds": seconds, "verified": problem is None}
        if problem:
            row["errors"].append(f"lanes {lanes}: {problem}")
        verdict = "" if problem is None else f"  MISMATCH: {problem}"
        print(f"  {scan.name:<16} lanes {lanes:>5}: {rate:8.2f} GB/s  ({runs} runs, {seconds * 1e3:.1f} ms){verdict}")
        if phases_before is not None:
            print(phase_report(phases_before, read_phases(mk), seconds, grid), flush=True)
    measured = {int(k): v["gb_per_s"] for k, v in row["lanes"].items() if "gb_per_s" in v}
    best = max(measured, key=measured.get)
    row["best_lanes"], row["interpreted_device_gb_s"] = best, measured[best]
    rate, seconds, results = submit_loop(mk, handle, regions[program.overlap], plans, best, emit, window)
    row["interpreted_submit_loop_gb_s"], row["submit_window"] = rate, window
    problem = first_mismatch(scan, results, expected)
    if problem:
        row["errors"].append(f"submit loop: {problem}")
    verdict = "" if problem is None else f"  MISMATCH: {problem}"
    print(f"  {scan.name:<16} submit loop: {rate:8.2f} GB/s  ({len(plans)} runs, window {window}){verdict}")
    if args.jit:
        jit_row(mk, scan, row, handle, regions[program.overlap], plans, best, runs, emit, expected)
    if mapped_regions is not None:
        # PCIe-bound and slow (byte loads over PCIe): a subset, one run per worker block
        subset = plans[: max(1, args.mapped_chunks)]
        mapped_runs = args.mapped_runs or min(runs, max(len(subset), grid - 1))
        rate, seconds, results = device_rate(
            mk, handle, mapped_regions[program.overlap], subset, best, mapped_runs, emit
        )
        row["interpreted_mapped_gb_s"], row["mapped_runs"], row["mapped_chunks"] = rate, mapped_runs, len(subset)
        problem = first_mismatch(scan, results, expected)
        if problem:
            row["errors"].append(f"host-mapped: {problem}")
        verdict = "" if problem is None else f"  MISMATCH: {problem}"
        print(
            f"  {scan.name:<16} host-mapped: {rate:8.2f} GB/s  ({mapped_runs} runs over {len(subset)} chunks, "
            f"{seconds * 1e3:.1f} ms){verdict}",
            flush=True,
        )
    return row


def jit_row(mk, scan: Scan, row: dict, handle: int, regions, plans, lanes: int, runs: int, emit: int, expected) -> None:
    """JIT the program (a hot swap to a variant holding it), then its device rate at ``lanes``."""
    started = time.perf_counter()
    mk.jit(handle, timeout=300)
    row["jit_swap_seconds"] = time.perf_counter() - started  # NVRTC (or a cache hit) + pause + relaunch
    rate, _, results = device_rate(mk, handle, regions, plans, lanes, runs, emit)
    row["jit_device_gb_s"] = rate
    problem = first_mismatch(scan, results, expected)
    if problem:
        row["errors"].append(f"jit: {problem}")
    paths = mk.stats().programs[handle]
    verdict = "" if problem is None else f"  MISMATCH: {problem}"
    print(
        f"  {scan.name:<16} JIT lanes {lanes:>5}: {rate:8.2f} GB/s  (swap {row['jit_swap_seconds']:.2f} s, "
        f"{paths.runs_jit} native runs){verdict}",
        flush=True,
    )


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
    if args.phases:  # before any build: the stamped kernel is a different cubin
        defines = os.environ.get("VYRE_MEGAKERNEL_DEFINES", "")
        os.environ["VYRE_MEGAKERNEL_DEFINES"] = f"{defines} VYRE_STAGE_STAMPS".strip()
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
        staged, geometry = interpreted_phase(args, data, mapped, rows, expected, began, geometry)
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


def interpreted_phase(
    args, data: np.ndarray, mapped, rows: dict, expected: dict, began: float, geometry: dict
) -> tuple[int, dict]:
    """Every example on the megakernel; returns (bytes staged, the kernel's grid and block)."""
    overlaps = {load_program(scan).overlap for scan in args.scans}
    print("interpreted (megakernel):", flush=True)
    mk = Megakernel(backend=args.backend, slots=args.slots, jit="request" if args.jit else "off")
    clean = False
    try:
        geometry.update(grid=getattr(mk.device, "grid", None), block=getattr(mk.device, "block", None))
        buffer = within_deadline(
            ALLOCATE_DEADLINE_S, "device_buffer (cuMemAlloc)", lambda: mk.device_buffer(args.total)
        )
        buffer.upload(data)
        regions = slices(buffer, args.total, args.chunk, overlaps)
        mapped_regions = None if mapped is None else slices(mapped.array, args.total, args.chunk, overlaps)
        copied = getattr(mk.device, "host_bytes_copied", 0)
        stuck = None
        for position, scan in enumerate(args.scans):
            row = rows[scan.name]
            if stuck is not None:
                row["errors"].append(f"not measured: {stuck}")
                continue
            left = max(1.0, args.budget_s - (time.monotonic() - began))
            allowance = left / (len(args.scans) - position) * 0.6  # the rest: submit loop, mapped
            errors = row["errors"]  # the hand-written phase's, if any
            try:
                row.update(measure_scan(mk, scan, args, regions, mapped_regions, expected[scan.name], allowance))
            except Exception as error:  # report it and go on with the next example (runs drained)
                row["errors"] = [f"{type(error).__name__}: {error}"]
                print(f"  {scan.name:<16} FAILED: {type(error).__name__}: {error}", flush=True)
                if isinstance(error, StuckError):
                    stuck = error
            row["errors"] = errors + row["errors"]
        staged = getattr(mk.device, "host_bytes_copied", 0) - copied
        stats = mk.stats()
        geometry["stray_completions"] = stats.stray_completions
        if stats.stray_completions:
            failed(rows, f"{stats.stray_completions} completions of slots the host never published (device bug)")
        if stats.in_flight:
            failed(rows, f"{stats.in_flight} runs still in flight at the end")
        clean = stuck is None and not stats.in_flight
        buffer.free()
    finally:
        # runs stuck in flight are cancelled, not waited on; a kernel that outlives the deadline
        # raises (main reports it and keeps the mapped memory pinned)
        mk.shutdown(timeout=SHUTDOWN_TIMEOUT_S, cancel=not clean)
    return staged, geometry


def report(args, rows: dict, geometry: dict, staged: int, seconds: float) -> int:
    for row in rows.values():
        hand, interpreted = row.get("handwritten_device_gb_s"), row.get("interpreted_device_gb_s")
        row["ratio_interpreted_to_handwritten"] = interpreted / hand if hand and interpreted else None
        native = row.get("jit_device_gb_s")
        row["ratio_jit_to_handwritten"] = native / hand if hand and native else None
        row["verified"] = not row["errors"]
    columns = [("lanes", 6), ("interp dev", 12), ("submit loop", 13), ("interp mapped", 15)]
    columns += [("hand dev", 11), ("hand mapped", 13), ("ratio", 8), ("jit dev", 10), ("jit ratio", 10)]
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
            cell(row.get("jit_device_gb_s"), 10),
            cell(row.get("ratio_jit_to_handwritten"), 10, 3),
        ]
        verdict = "yes" if row["verified"] else "NO"
        print(f"{name:<16}{row.get('best_lanes', '-'):>6}" + "".join(cells) + f"  {verdict}")
        for error in row["errors"][:3]:
            print(f"    {error}")
    mapped = {row["mapped_runs"]: row["mapped_chunks"] for row in rows.values() if "mapped_runs" in row}
    for runs, chunks in mapped.items():
        print(f"note: interp mapped = {runs} runs over the first {chunks} chunks (host-mapped reads are PCIe-bound)")
    if staged:
        print(f"note: {staged} bytes were staged (copied) during the interpreted runs; expected 0 (zero-copy)")
    document = {
        "bench": "scan",
        "backend": args.backend,
        "date": time.strftime("%Y-%m-%d"),
        "commit": git_commit(),
        "machine": machine(),
        "gpu": gpu_name() if args.backend == "cuda" else None,
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


if __name__ == "__main__":
    sys.exit(main())
