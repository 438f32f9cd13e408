"""Interpreted vs JIT vs hand-written CUDA for every example program (the issue's JIT performance rows).

    python bench/jit.py [--total-mib 256] [--chunk-kib 1024] [--lanes 64,256,1024] [--programs a,b]

Data: --total-mib of generated text (bench/scan_reference.py) in which one u32 word in 64 has a top
byte >= 0xF0 (what filter_compact keeps; text has none), cut into --chunk-kib chunks (at most 8 MiB:
filter_compact keeps 65536 words a run, and which ones past that is unspecified), once as a
DeviceBuffer (device-resident) and once in pinned host-mapped memory (streamed data: the device
reads it over PCIe where it lies, as it reads the io_uring ingest arena). For each example
(examples/*.vasm: the six byte scans of bench/scan.py, checksum and filter_compact):
  interp dev / mapped   the resident megakernel interpreting it: RUN_PROGRAM slots over the chunks,
                        published while the tenant is paused, timed on the device from the first
                        release to the last completion (bench/scan.py's device_rate); the best of
                        --lanes and the declared lanes. Mapped: at the best lanes, over the first
                        --mapped-chunks chunks (PCIe-bound, as in bench/scan.py).
  JIT dev / mapped      the same after Megakernel.jit of every example (one hot swap to a variant
                        holding them all), at the same lane counts; every run must report path "jit".
  hand dev / mapped     bench/kernels/scan_kernels.cu, one launch per pass over all the data
                        (bench/scan_handwritten.py), CUDA-event timed.
  JIT/hand              JIT dev / hand dev (the issue's target: >= 0.9).
  cold vs hit           jit.build_variant of all the examples: a cold build (use_cache=False, NVRTC)
                        against build-cache hits from memory and from disk (the target: a hit
                        >= 100x faster than a cold compile). Also a build of never-seen text (the
                        same variant plus a uniquely named global): NVRTC 12.9+ can answer a
                        repeated compile from its own work, which use_cache=False does not stop.
                        No GPU needed.
Fused vs separate programs is bench/fused.py's subject, not this bench's.

Checks: every interpreted and JIT run against the hand-written kernel's result for its chunk (that
result is checked against NumPy on a sample of chunks); every JIT run against the interpreted run
of the same chunk at the same lanes (outputs, records and the instruction count: the JIT runs the
interpreter's own instruction code, so all three must agree); exactly-once as in bench/scan.py.
A mismatch is reported and the exit status is 1. Without a usable GPU it says so and exits 2.

Writes bench/results/jit-<backend>.json. `--backend cpu` checks the harness anywhere (pass a small
--total-mib and --chunk-kib): the CPU backend refuses jit (the JIT columns then read "-" and the
refusal is printed), NumPy stands in for the hand-written kernels, and the build rows still run
where NVRTC is installed.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from cache import timed  # noqa: E402
from provenance import git_commit, gpu_name, machine  # noqa: E402
from scan import (  # noqa: E402
    ALLOCATE_DEADLINE_S,
    EMIT_CAPACITY,
    SHUTDOWN_TIMEOUT_S,
    StuckError,
    device_rate,
    failed,
    handwritten_phase,
    numpy_phase,
    slices,
    within_deadline,
)
from scan_reference import (  # noqa: E402
    ALL_SCANS,
    ChunkExpectation,
    Scan,
    generate,
    load_program,
    run_mismatch,
    run_records,
    run_value,
    salt_kept_words,
)

from vyre_runtime.backends.selection import cuda_unavailable_reason  # noqa: E402
from vyre_runtime.chunking import ChunkPlan, plan_chunks  # noqa: E402
from vyre_runtime.errors import VyreError  # noqa: E402
from vyre_runtime.megakernel import Megakernel  # noqa: E402
from vyre_runtime.vir0.program import Program  # noqa: E402

DEFAULT_LANES = (64, 256, 1024)  # tried with each program's declared lanes
JIT_TIMEOUT_S = 300.0  # one hot swap: NVRTC of a variant holding every example, then a relaunch
OUTPUT_BYTES_PER_MEASUREMENT = 256 << 20  # run outputs (host-mapped arena) one measurement may stage
MAX_CHUNK_KIB = 8 << 10  # x 1/64 kept words = 32768 expected per run: fits filter_compact's 65536
JIT_TARGET = 0.9  # JIT >= 90% of hand-written
CACHE_TARGET = 100.0  # a cache hit >= 100x faster than a cold compile


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--total-mib", type=int, default=256, help="generated data (default 256 MiB)")
    parser.add_argument("--chunk-kib", type=int, default=1024, help="bytes per RUN_PROGRAM (default 1 MiB)")
    parser.add_argument("--lanes", default=",".join(map(str, DEFAULT_LANES)), help="lane counts to try")
    parser.add_argument("--programs", default=",".join(s.name for s in ALL_SCANS), help="examples to run")
    parser.add_argument("--slots", type=int, default=4096, help="ring slots")
    parser.add_argument("--runs", type=int, help="runs per device-rate measurement (default: 4 x the grid)")
    parser.add_argument("--mapped-chunks", type=int, default=32, help="host-mapped runs read the first N chunks")
    parser.add_argument("--no-mapped", action="store_true", help="skip the host-mapped megakernel measurements")
    parser.add_argument(
        "--interpreted-runs",
        type=int,
        help="runs per interpreted measurement (default: as --runs; at least one per chunk, which the JIT "
        "runs are checked against): interpreting is slow, and only the JIT rate is compared",
    )
    parser.add_argument("--hand-passes", type=int, default=20, help="timed passes of each hand-written kernel")
    parser.add_argument("--cold-builds", type=int, default=1, help="cold variant builds to time (NVRTC, seconds each)")
    parser.add_argument("--hits", type=int, default=50, help="cache hits to time per row")
    parser.add_argument(
        "--emit-capacity",
        type=int,
        help="records a run may keep (default: every record the program emits; a small one drops the rest:"
        " what the records' writes to host memory cost)",
    )
    parser.add_argument("--output", type=Path, help="JSON path (default bench/results/jit-<backend>.json)")
    args = parser.parse_args(argv)
    args.lanes = [int(x) for x in args.lanes.split(",") if x]
    names = {s.name for s in ALL_SCANS}
    chosen = [p for p in args.programs.split(",") if p]
    unknown = [p for p in chosen if p not in names]
    if unknown:
        parser.error(f"unknown programs {unknown}; choose from {sorted(names)}")
    if args.total_mib < 1 or not 1 <= args.chunk_kib <= MAX_CHUNK_KIB or args.chunk_kib % 4:
        parser.error(
            f"--total-mib must be >= 1 and --chunk-kib a multiple of 4 (whole words per chunk) up to "
            f"{MAX_CHUNK_KIB} (filter_compact keeps at most 65536 words a run; past that which ones is unspecified)"
        )
    args.scans = [s for s in ALL_SCANS if s.name in chosen]
    args.total, args.chunk = args.total_mib << 20, args.chunk_kib << 10
    return args


# ---------------------------------------------------------------------- one program's measurements


@dataclass(frozen=True)
class RunSummary:
    """What a JIT run must repeat of the interpreted run of the same chunk and lanes."""

    value: np.ndarray | None
    records: np.ndarray | None
    instructions: int

    def differs_from(self, other: RunSummary) -> str | None:
        if self.instructions != other.instructions:
            return f"{other.instructions} instructions, interpreted {self.instructions}"
        for name in ("value", "records"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if (mine is None) != (theirs is None) or (mine is not None and not np.array_equal(mine, theirs)):
                return f"{name} differs from the interpreted run's"
        return None


def summarize(scan: Scan, run) -> RunSummary:
    value = run_value(scan, run) if scan.output else None
    try:
        records = run_records(scan, run)
    except ValueError:  # reported by run_mismatch; the summary just differs
        records = None
    return RunSummary(None if value is None else np.array(value), records, int(run.instructions))


@dataclass
class Target:
    """One example on the megakernel: its chunks, regions, run count and the results kept."""

    scan: Scan
    program: Program
    handle: int
    plans: list[ChunkPlan]
    regions: list
    mapped_regions: list | None
    runs: int
    interpreted_runs: int
    mapped_chunks: int
    mapped_runs: int
    emit: int
    expected: dict[int, ChunkExpectation]
    row: dict
    interpreted: dict[int, dict[int, RunSummary]] = field(default_factory=dict)  # lanes -> chunk -> run


def emit_capacity(scan: Scan, chunk: int) -> int:
    """Records a run may emit (bench/scan.py's choice; the word examples emit none)."""
    if scan.kind == "blocks":
        return chunk // 4096 + 1
    return EMIT_CAPACITY.get(scan.kind, 0)


def run_counts(args, program: Program, plans: list[ChunkPlan], grid: int) -> tuple[int, int, int]:
    """(runs per device measurement, chunks and runs per mapped measurement). Enough runs to fill
    the grid four times, all waiting in the ring at once, and no more run outputs than
    OUTPUT_BYTES_PER_MEASUREMENT (filter_compact's `kept` is 256 KiB a run, in host memory).
    Mapped: the first --mapped-chunks chunks, one run per worker block (PCIe-bound and slow)."""
    runs = args.runs or len(plans) * max(1, math.ceil(4 * grid / len(plans)))
    output_bytes = sum(binding.words * 4 for binding in program.bindings)
    runs = min(runs, args.slots // 2, max(len(plans), OUTPUT_BYTES_PER_MEASUREMENT // max(1, output_bytes)))
    mapped_chunks = max(1, min(args.mapped_chunks, len(plans)))
    return runs, mapped_chunks, min(runs, max(mapped_chunks, grid - 1))


def interpreted_runs(args, runs: int, chunks: int) -> int:
    """Runs per interpreted measurement: --interpreted-runs, but every chunk at least once (each JIT
    run is checked against the interpreted run of its chunk) and no more than the JIT's."""
    return runs if args.interpreted_runs is None else max(chunks, min(runs, args.interpreted_runs))


def lane_order(args, program: Program) -> list[int]:
    return list(dict.fromkeys([program.lanes, *args.lanes]))


def check_results(target: Target, results, lanes: int, path: str) -> str | None:
    """The first problem of ``results`` [(plan, run)]: a run that took another path than
    ``path``, a result other than the expected one, and for JIT runs a difference from the
    interpreted run of the same chunk at the same lanes."""
    reference = target.interpreted.get(lanes, {})
    for plan, run in results:
        problem = run_mismatch(target.scan, plan, run, target.expected[plan.index])
        if problem:
            return problem
        if run.path != path:
            return f"{target.scan.name} chunk {plan.index}: ran {run.path!r}, expected {path!r}"
        if path == "jit" and plan.index in reference:
            difference = reference[plan.index].differs_from(summarize(target.scan, run))
            if difference:
                return f"{target.scan.name} chunk {plan.index} at {lanes} lanes: JIT run: {difference}"
    return None


def measure(mk: Megakernel, target: Target, path: str, lanes_list: list[int]) -> int | None:
    """Device rates of ``target`` at each of ``lanes_list`` on the current path ("interpreted" or
    "jit"), then over host-mapped memory at the best; fills the row, returns the best lanes."""
    row, name = target.row, target.scan.name
    rates: dict[int, float] = {}
    runs = target.runs if path == "jit" else target.interpreted_runs
    for lanes in lanes_list:
        rate, seconds, results = device_rate(mk, target.handle, target.regions, target.plans, lanes, runs, target.emit)
        problem = check_results(target, results, lanes, path)
        if path == "interpreted":  # what the JIT's runs must repeat: the first run of each chunk
            kept = target.interpreted.setdefault(lanes, {})
            for plan, run in results:
                if plan.index not in kept:
                    kept[plan.index] = summarize(target.scan, run)
        rates[lanes] = rate
        row.setdefault(f"{path}_lanes", {})[str(lanes)] = {"gb_per_s": rate, "seconds": seconds, "ok": not problem}
        if problem:
            row["errors"].append(f"{path}, lanes {lanes}: {problem}")
        verdict = "" if problem is None else f"  MISMATCH: {problem}"
        print(f"  {name:<16} {path:<11} lanes {lanes:>5}: {rate:8.2f} GB/s  ({runs} runs){verdict}", flush=True)
    best = max(rates, key=rates.get)
    row[f"{path}_best_lanes"], row[f"{path}_device_gb_s"] = best, rates[best]
    if target.mapped_regions is not None:
        subset = target.plans[: target.mapped_chunks]
        rate, seconds, results = device_rate(
            mk, target.handle, target.mapped_regions, subset, best, target.mapped_runs, target.emit
        )
        row[f"{path}_mapped_gb_s"] = rate
        problem = check_results(target, results, best, path)
        if problem:
            row["errors"].append(f"{path}, host-mapped: {problem}")
        verdict = "" if problem is None else f"  MISMATCH: {problem}"
        print(f"  {name:<16} {path:<11} mapped {best:>4}: {rate:8.2f} GB/s  ({target.mapped_runs} runs){verdict}")
    return best


# ---------------------------------------------------------------------- the megakernel phase


def megakernel_phase(args, data: np.ndarray, mapped, rows: dict, expected: dict, report: dict) -> None:
    """Every example interpreted, then one hot swap JITs them all, then every example again."""
    print("megakernel (interpreted, then JIT):", flush=True)
    mk = Megakernel(backend=args.backend, slots=args.slots, jit="request")
    clean = False
    try:
        report["geometry"] = {"grid": getattr(mk.device, "grid", None), "block": getattr(mk.device, "block", None)}
        buffer = within_deadline(
            ALLOCATE_DEADLINE_S, "device_buffer (cuMemAlloc)", lambda: mk.device_buffer(args.total)
        )
        buffer.upload(data)
        targets = make_targets(mk, args, buffer, mapped, rows, expected)
        stuck = run_path(mk, targets, "interpreted", args)
        if stuck is None:
            report["jit"] = hot_swap(mk, targets, report)
            if report["jit"]["ok"]:
                stuck = run_path(mk, targets, "jit", args)
        stats = mk.stats()
        report["geometry"]["stray_completions"] = stats.stray_completions
        for target in targets:
            path = stats.programs.get(target.handle)
            if path is not None:
                target.row["runs_by_path"] = {"interpreted": path.runs_interpreted, "jit": path.runs_jit}
        if stats.stray_completions:
            failed(rows, f"{stats.stray_completions} completions of slots the host never published (device bug)")
        if stats.in_flight:
            failed(rows, f"{stats.in_flight} runs still in flight at the end")
        clean = stuck is None and not stats.in_flight
        buffer.free()
    finally:
        # runs stuck in flight are cancelled, not waited on (bench/scan.py does the same)
        mk.shutdown(timeout=SHUTDOWN_TIMEOUT_S, cancel=not clean)


def make_targets(mk: Megakernel, args, buffer, mapped, rows: dict, expected: dict) -> list[Target]:
    grid = getattr(mk.device, "grid", None) or 8
    overlaps = {load_program(scan).overlap for scan in args.scans}
    regions = slices(buffer, args.total, args.chunk, overlaps)
    skip_mapped = mapped is None or args.no_mapped
    mapped_regions = None if skip_mapped else slices(mapped.array, args.total, args.chunk, overlaps)
    targets = []
    for scan in args.scans:
        program = load_program(scan)
        plans = list(plan_chunks(args.total, args.chunk, program.overlap))
        runs, mapped_chunks, mapped_runs = run_counts(args, program, plans, grid)
        rows[scan.name].update(declared_lanes=program.lanes, runs=runs, mapped_runs=mapped_runs)
        rows[scan.name]["mapped_chunks"] = mapped_chunks
        targets.append(
            Target(
                scan=scan,
                program=program,
                handle=mk.register_program(program),
                plans=plans,
                regions=regions[program.overlap],
                mapped_regions=None if mapped_regions is None else mapped_regions[program.overlap],
                runs=runs,
                interpreted_runs=interpreted_runs(args, runs, len(plans)),
                mapped_chunks=mapped_chunks,
                mapped_runs=mapped_runs,
                emit=emit_capacity(scan, args.chunk) if args.emit_capacity is None else args.emit_capacity,
                expected=expected[scan.name],
                row=rows[scan.name],
            )
        )
    return targets


def run_path(mk: Megakernel, targets: list[Target], path: str, args) -> StuckError | None:
    """Measure every target on ``path``; an error ends that target's measurement (its runs were
    drained), runs stuck in flight end the phase (every later measurement would count them)."""
    for target in targets:
        if path == "jit" and "interpreted_device_gb_s" not in target.row:
            continue  # nothing to compare the JIT against
        lanes = lane_order(args, target.program)
        if path == "jit":  # the lanes the interpreter was measured at: every JIT run is compared
            lanes = [n for n in lanes if n in target.interpreted]
        try:
            measure(mk, target, path, lanes)
        except Exception as error:
            target.row["errors"].append(f"{path}: {type(error).__name__}: {error}")
            print(f"  {target.scan.name:<16} {path} FAILED: {type(error).__name__}: {error}", flush=True)
            if isinstance(error, StuckError):
                return error
    return None


def hot_swap(mk: Megakernel, targets: list[Target], report: dict) -> dict:
    """Megakernel.jit of every target at once (NVRTC, then a pause and a relaunch). The CPU
    backend refuses: that is recorded and said, not counted as a failure."""
    handles = [target.handle for target in targets]
    started = time.perf_counter()
    try:
        mk.jit(*handles, timeout=JIT_TIMEOUT_S)
    except VyreError as error:
        message = error.one_line()
        print(f"  JIT refused on the {mk.backend} backend: {message}", flush=True)
        if mk.backend == "cuda":
            failed({t.scan.name: t.row for t in targets}, f"Megakernel.jit: {message}")
        return {"ok": False, "refused": message}
    seconds = time.perf_counter() - started
    states = {t.scan.name: mk.stats().programs[t.handle].state for t in targets}
    report["geometry"]["jit_grid"] = getattr(mk.device, "grid", None)
    print(f"  hot swap to a variant of {len(handles)} programs: {seconds:.2f} s (states {set(states.values())})")
    for target in targets:
        if states[target.scan.name] != "jit":
            target.row["errors"].append(f"after Megakernel.jit the program's state is {states[target.scan.name]!r}")
    return {"ok": True, "swap_seconds": seconds, "programs": len(handles)}


# ---------------------------------------------------------------------- cold compile vs cache hit


COLD = "cold build (NVRTC, use_cache=False)"
UNSEEN = "cold build of never-seen text"


def unseen_build(programs: dict, arch: str) -> None:
    """A variant build no cache of any level can answer: the same header plus a global of a new
    name (NVRTC 12.9+ may reuse its own earlier work for text it has compiled in the process,
    which use_cache=False alone does not rule out)."""
    import uuid

    from vyre_runtime.backends.cuda import build, jit

    text, _ = jit.variant_header(programs)
    text += f"\n__device__ unsigned vyre_bench_unseen_{uuid.uuid4().hex};  // a name never compiled before\n"
    build.build_megakernel(arch, use_cache=False, extra_headers=((jit.JIT_HEADER_NAME, text),), defines=jit.JIT_DEFINES)


def build_rows(args, arch: str) -> dict:
    """jit.build_variant of every chosen example: cold (NVRTC, cache bypassed) vs cache hits."""
    from vyre_runtime import cache
    from vyre_runtime.backends.cuda import jit

    programs = {}
    for scan in args.scans:
        program = load_program(scan)
        programs[jit.code_key(program)] = program
    rows = {UNSEEN: timed(args.cold_builds, lambda: unseen_build(programs, arch))}
    rows[COLD] = timed(args.cold_builds, lambda: jit.build_variant(programs, arch, use_cache=False))
    jit.build_variant(programs, arch)  # stored now, if the hot swap did not store it already

    def hit() -> None:
        if not jit.build_variant(programs, arch).build.cached:
            raise RuntimeError("build_variant missed the cache right after storing the variant")

    rows["cache hit, memory"] = timed(args.hits, hit)
    rows["cache hit, disk"] = timed(args.hits, hit, before=cache.default_cache().forget_memory)
    for row in rows.values():
        row["speedup_vs_cold"] = rows[COLD]["p50_ms"] / row["p50_ms"]
        row["speedup_vs_unseen"] = rows[UNSEEN]["p50_ms"] / row["p50_ms"]
    return {"arch": arch, "programs": len(programs), "rows": rows}


def nvrtc_unavailable() -> str | None:
    try:
        from vyre_runtime.backends.cuda import build

        build.nvrtc_version()
    except Exception as error:  # no cuda-bindings / no NVRTC library: the rows are skipped
        return f"{type(error).__name__}: {error}"
    return None


# ---------------------------------------------------------------------- main and the report


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.backend == "cuda":
        reason = cuda_unavailable_reason()
        if reason is not None:
            print(f"jit: no usable CUDA GPU here ({reason}); this benchmark needs one. Nothing was measured.")
            return 2
    began = time.monotonic()
    print(f"generating {args.total_mib} MiB of text (1 word in 64 kept by filter_compact) ...", flush=True)
    data = salt_kept_words(generate(args.total))
    rows: dict[str, dict] = {scan.name: {"errors": []} for scan in args.scans}
    report: dict = {"geometry": {}, "jit": {"ok": False}}
    mapped, arch = None, None
    if args.backend == "cuda":
        from vyre_runtime.backends.cuda import driver

        driver.Context(0)
        arch = driver.device_info(0).arch
        mapped = driver.MappedMemory(args.total)  # pinned + mapped: the streamed-data comparison
        mapped.array[: args.total] = data
        print("hand-written kernels:", flush=True)
        try:
            expected = handwritten_phase(args, data, mapped, rows)
        except Exception as error:  # measure the megakernel anyway, checked against NumPy
            failed(rows, f"hand-written kernels: {type(error).__name__}: {error}")
            expected = numpy_phase(args, data, rows)
    else:
        expected = numpy_phase(args, data, rows)
    stopped = False
    try:
        megakernel_phase(args, data, mapped, rows, expected, report)
        stopped = True
    except Exception as error:  # a megakernel that did not start, or did not stop
        failed(rows, f"megakernel: {type(error).__name__}: {error}")
    if mapped is not None and stopped:
        mapped.unregister()  # the megakernel has exited (unpinning waits for running kernels)
    reason = nvrtc_unavailable()
    if reason is None:
        from vyre_runtime.backends.cuda import build

        print("cold build vs cache hit (jit.build_variant of the examples):", flush=True)
        report["builds"] = build_rows(args, arch or build.DEFAULT_ARCH)
    else:
        report["builds"] = {"skipped": f"NVRTC unavailable: {reason}"}
    return 1 if write_report(args, rows, report, time.monotonic() - began) else 0


def cell(value, width: int, digits: int = 2) -> str:
    return f"{value:>{width}.{digits}f}" if isinstance(value, float) else f"{'-':>{width}}"


def print_table(args, rows: dict, report: dict) -> None:
    geometry = report["geometry"]
    print(
        f"\nbackend {args.backend}, {args.total_mib} MiB in {args.chunk_kib} KiB chunks, grid {geometry.get('grid')} "
        f"x {geometry.get('block')} (JIT variant: grid {geometry.get('jit_grid', '-')}); GB/s of owned bytes"
    )
    columns = [("lanes i/j", 11), ("interp dev", 11), ("JIT dev", 10), ("hand dev", 10), ("JIT/hand", 9)]
    columns += [("interp map", 11), ("JIT map", 9), ("hand map", 9)]
    print(f"{'program':<16}" + "".join(f"{name:>{width}}" for name, width in columns) + "  verified")
    for name, row in rows.items():
        lanes = f"{row.get('interpreted_best_lanes', '-')}/{row.get('jit_best_lanes', '-')}"
        cells = [
            f"{lanes:>11}",
            cell(row.get("interpreted_device_gb_s"), 11),
            cell(row.get("jit_device_gb_s"), 10),
            cell(row.get("handwritten_device_gb_s"), 10),
            cell(row.get("ratio_jit_to_handwritten"), 9, 3),
            cell(row.get("interpreted_mapped_gb_s"), 11),
            cell(row.get("jit_mapped_gb_s"), 9),
            cell(row.get("handwritten_mapped_gb_s"), 9),
        ]
        print(f"{name:<16}" + "".join(cells) + f"  {'yes' if row['verified'] else 'NO'}")
        for error in row["errors"][:3]:
            print(f"    {error}")
    jit = report["jit"]
    if jit.get("refused"):
        print(f"JIT columns '-': {jit['refused']}")
    elif jit.get("ok"):
        print(f"hot swap (Megakernel.jit of {jit['programs']} programs, build + relaunch): {jit['swap_seconds']:.2f} s")
    builds = report["builds"]
    if "rows" in builds:
        print(f"\njit.build_variant of {builds['programs']} examples ({builds['arch']}):")
        print(f"{'case':<40}{'p50 ms':>12}{'min ms':>12}{'runs':>6}{'x cold':>10}{'x unseen':>10}")
        for case, row in builds["rows"].items():
            times = f"{row['p50_ms']:>12.3f}{row['min_ms']:>12.3f}{row['runs']:>6}"
            print(f"{case:<40}{times}{row['speedup_vs_cold']:>10,.0f}{row['speedup_vs_unseen']:>10,.0f}")
    else:
        print(f"build rows: {builds['skipped']}")
    print(f"targets: JIT/hand >= {JIT_TARGET}; a cache hit >= {CACHE_TARGET:.0f}x faster than a cold build")
    print("fused vs separate programs: bench/fused.py")


def write_report(args, rows: dict, report: dict, seconds: float) -> int:
    """Print the table, write the JSON; returns the number of rows with errors."""
    import json

    for row in rows.values():
        hand, native = row.get("handwritten_device_gb_s"), row.get("jit_device_gb_s")
        row["ratio_jit_to_handwritten"] = native / hand if hand and native else None
        interpreted = row.get("interpreted_device_gb_s")
        row["ratio_interpreted_to_handwritten"] = interpreted / hand if hand and interpreted else None
        row["verified"] = not row["errors"]
    print_table(args, rows, report)
    document = {
        "bench": "jit",
        "backend": args.backend,
        "date": time.strftime("%Y-%m-%d"),
        "commit": git_commit(),
        "machine": machine(),
        "gpu": gpu_name() if args.backend == "cuda" else None,
        "total_bytes": args.total,
        "chunk_bytes": args.chunk,
        "targets": {"jit_to_handwritten": JIT_TARGET, "cache_hit_speedup": CACHE_TARGET},
        "seconds": seconds,
        **report,
        "rows": rows,
    }
    output = args.output or ROOT / "bench" / "results" / f"jit-{args.backend}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(document, indent=2, default=float) + "\n")
    print(f"wrote {output} ({seconds:.1f} s)")
    return sum(bool(row["errors"]) for row in rows.values())


if __name__ == "__main__":
    sys.exit(main())
