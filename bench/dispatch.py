"""Dispatch cost through the ring: single-slot round trip and batched throughput.

    python bench/dispatch.py --backend cpu [--round-trips 3000] [--batched 200000]

Rows: NOP round trip (publish, then wait on the future, which reaps it); a tiny
VIR0 program through RUN_PROGRAM; the same program called directly (no ring: the CPU analogue
of launching a kernel per task, the baseline); batched NOP throughput. Writes
bench/results/dispatch-<backend>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from provenance import git_commit, machine  # noqa: E402

from vyre_runtime.megakernel import Megakernel  # noqa: E402
from vyre_runtime.protocol.codec import SlotRequest  # noqa: E402
from vyre_runtime.protocol.opcodes import BuiltinOpcode  # noqa: E402
from vyre_runtime.vir0 import isa  # noqa: E402
from vyre_runtime.vir0.program import Binding, Instruction, Program  # noqa: E402

TINY = Program(
    name="tiny",
    registers=2,
    lanes=32,
    bindings=(Binding("n", 1),),
    code=(
        Instruction(isa.Op.LI, d=0, imm=1),
        Instruction(isa.Op.ATADD, d=1, a=1, b=0, imm=0),
        Instruction(isa.Op.EXIT),
    ),
)


def percentiles(samples_ns: list[int]) -> dict[str, float]:
    values = np.asarray(samples_ns, dtype=np.float64) / 1000.0
    p50, p99 = np.percentile(values, [50, 99])
    return {"p50_us": float(p50), "p99_us": float(p99), "per_s": float(1e6 / values.mean())}


def round_trips(mk: Megakernel, count: int) -> dict[str, float]:
    samples = []
    for _ in range(count):
        started = time.perf_counter_ns()
        mk.publish(BuiltinOpcode.NOP).result(10)
        samples.append(time.perf_counter_ns() - started)
    return percentiles(samples)


def channel_round_trips(mk: Megakernel, count: int, watch: str = "1", native: str = "1") -> dict[str, float]:
    """channel.call NOPs; watch="0" takes the doorbell path, native="0" the Python call (same run)."""
    saved = {name: os.environ.get(name) for name in ("VYRE_CHANNEL_WATCH", "VYRE_CHANNEL_NATIVE")}
    os.environ["VYRE_CHANNEL_WATCH"], os.environ["VYRE_CHANNEL_NATIVE"] = watch, native
    try:
        channel = mk.channel()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    samples = []
    with channel:
        for _ in range(200):
            channel.call(BuiltinOpcode.NOP)
        for _ in range(count):
            started = time.perf_counter_ns()
            channel.call(BuiltinOpcode.NOP)
            samples.append(time.perf_counter_ns() - started)
    return percentiles(samples)


def program_round_trips(mk: Megakernel, count: int) -> dict[str, float]:
    handle = mk.register_program(TINY)
    data = b"x" * 64
    samples = []
    for _ in range(count):
        started = time.perf_counter_ns()
        mk.submit(handle, data).result(10)
        samples.append(time.perf_counter_ns() - started)
    return percentiles(samples)


def direct_calls(count: int) -> dict[str, float]:
    """Baseline: the interpreter called per task, no ring, no workers."""
    from vyre_runtime.backends.cpu import Region, run_program

    region = Region(data=b"x" * 64)
    samples = []
    for _ in range(count):
        started = time.perf_counter_ns()
        run_program(TINY, region)
        samples.append(time.perf_counter_ns() - started)
    return percentiles(samples)


def batched(mk: Megakernel, total: int, batch_size: int = 63) -> dict[str, float]:
    """mk.batch: a Future per slot, a BATCH_FENCE per batch."""
    requests = [SlotRequest(BuiltinOpcode.NOP)] * batch_size
    started = time.perf_counter()
    futures = []
    sent = 0
    while sent < total:
        futures += mk.batch(requests)
        sent += batch_size
        if len(futures) > 8 * mk.layout.slots:  # keep memory flat: settle what is done
            futures = [f for f in futures if not f.done()]
    assert mk.wait(timeout=300)
    seconds = time.perf_counter() - started
    return {"slots_per_s": sent / seconds, "slots": sent, "batch": batch_size}


def bulk(mk: Megakernel, total: int) -> dict[str, float]:
    """mk.publish_bulk: vectorized publication, completions counted per ticket."""
    started = time.perf_counter()
    ticket = mk.publish_bulk(BuiltinOpcode.NOP, count=total)
    assert ticket.wait(timeout=300) and ticket.faulted == 0
    return {"slots_per_s": total / (time.perf_counter() - started), "slots": total}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="cpu", choices=["cpu", "cuda", "auto"])
    parser.add_argument("--round-trips", type=int, default=3000)
    parser.add_argument("--batched", type=int, default=200_000)
    parser.add_argument("--bulk", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int)
    args = parser.parse_args()
    rows: dict[str, dict[str, float]] = {}
    with Megakernel(backend=args.backend, slots=4096, workers=args.workers) as mk:
        backend = mk.backend
        round_trips(mk, 200)  # warm up threads and caches
        rows["nop round trip (future.result)"] = round_trips(mk, args.round_trips)
        rows["nop round trip (channel.call)"] = channel_round_trips(mk, args.round_trips)
        if backend == "cuda":  # the same call by the other paths, same run (docs/PROTOCOL.md, Watched channels)
            rows["channel.call, watched, Python call"] = channel_round_trips(mk, args.round_trips, native="0")
            rows["channel.call, doorbell path (unwatched)"] = channel_round_trips(mk, args.round_trips, watch="0")
            rows["channel.call again (watched, compiled)"] = channel_round_trips(mk, args.round_trips)
        rows["RUN_PROGRAM tiny, round trip"] = program_round_trips(mk, args.round_trips)
        rows["batched nop (63 + fence)"] = batched(mk, args.batched)
        rows["bulk nop (publish_bulk)"] = bulk(mk, args.bulk)
    rows["baseline: direct call per task (CPU interpreter)"] = direct_calls(args.round_trips)
    if backend == "cuda":
        from cuda_baselines import measure

        rows.update(measure(args.round_trips))
    print(f"backend: {backend}")
    print(f"{'case':<48}{'p50 us':>10}{'p99 us':>10}{'per second':>14}")
    for name, row in rows.items():
        per_second = row.get("per_s", row.get("slots_per_s", 0.0))
        p50 = f"{row['p50_us']:.1f}" if "p50_us" in row else "-"
        p99 = f"{row['p99_us']:.1f}" if "p99_us" in row else "-"
        print(f"{name:<48}{p50:>10}{p99:>10}{per_second:>14,.0f}")
    document = {
        "bench": "dispatch",
        "backend": backend,
        "date": time.strftime("%Y-%m-%d"),
        "commit": git_commit(),
        "machine": machine(),
        "rows": rows,
    }
    output = ROOT / "bench" / "results" / f"dispatch-{backend}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(document, indent=2))
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
