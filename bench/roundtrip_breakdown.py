"""Where a single-slot round trip spends its time: host publish, device turnaround, host reap.

python bench/roundtrip_breakdown.py --backend cuda [--count 2000] [--stages] [--profile] [--stand-in]

--stages (CUDA) builds the kernel with VYRE_STAGE_STAMPS: it stamps %globaltimer at each step of a
channel call's slot on the device (megakernel.cu, "stage stamps"), and the device part of the
round trip is split into those steps (the channel's slot is watched: the watcher's steps, from
the issue of the read that saw the call; the time from the host's publication to that read's
arrival is not on the device's clock). --profile prints cProfile tables of the host side of
future-based round trips (publish().result(), submit().result()) and of a bulk publication.
--stand-in runs the CUDA backend's host code against stream_host.py's driverless stand-in device
(a C thread that completes every published slot; no GPU): the host parts of the rows are the
CUDA host path's, the device turnaround is the stand-in's (its --latency-us pause per pass).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # dispatch.py's TINY program

from dispatch import TINY

from vyre_runtime.megakernel import Megakernel
from vyre_runtime.protocol.layout import SlotState
from vyre_runtime.protocol.opcodes import BuiltinOpcode

STAMP_WORD = 48  # megakernel.cu: the reserved control words a VYRE_STAGE_STAMPS build writes
STAGES = (  # a channel's slot is watched: the stamps are the watcher's (megakernel.cu, watch_poll)
    "poller read in flight (issue -> data)",
    "checks + claim (epoch CAS)",
    "serve start",
    "run the built-in",
    "result store (none while all zero)",
    "DONE store (NOP: no release fence)",
    "counters after DONE",
)


IN_FLIGHT = (int(SlotState.PUBLISHED), int(SlotState.CLAIMED))
PASS_WORD = 56  # megakernel.cu: dispatcher passes that found entries, their ns, the entries, scans


def profiled(label: str, work: Callable[[], None], lines: int = 14) -> float:
    """Run ``work`` under cProfile (the calling thread's host time), print the top functions by
    own time, and return the seconds it took (profiling included)."""
    profile = cProfile.Profile()
    started = time.perf_counter()
    profile.enable()
    work()
    profile.disable()
    seconds = time.perf_counter() - started
    print(f"--- profile: {label} ({seconds * 1000:.1f} ms under the profiler)")
    pstats.Stats(profile).sort_stats("tottime").print_stats(lines)
    return seconds


def bulk_once(mk: Megakernel, count: int) -> None:
    ticket = mk.publish_bulk(BuiltinOpcode.NOP, count=count)
    assert ticket.wait(timeout=120) and ticket.faulted == 0


def host_profiles(mk: Megakernel, count: int) -> None:
    """Where the host's time goes (plain build): future-based round trips and a bulk publication."""
    handle = mk.register_program(TINY)
    data = b"x" * 64

    def nops() -> None:
        for _ in range(count):
            mk.publish(BuiltinOpcode.NOP).result(5)

    def runs() -> None:
        for _ in range(count):
            mk.submit(handle, data).result(5)

    profiled(f"{count} x publish(NOP).result()", nops)
    profiled(f"{count} x submit(tiny).result()", runs)
    seconds = profiled("publish_bulk of 300000 NOPs + ticket.wait()", lambda: bulk_once(mk, 300_000))
    print(f"bulk under the profiler: {300_000 / seconds:,.0f} slots/s")


def bulk_passes(mk: Megakernel, count: int) -> str:
    """A publish_bulk of tiny NOPs, and what the dispatcher's busy passes did meanwhile."""
    before = mk.image[PASS_WORD : PASS_WORD + 4].astype(np.int64)
    # where the host's time goes meanwhile (the publisher's thread)
    seconds = profiled(f"publish_bulk of {count} NOPs", lambda: bulk_once(mk, count), 12)
    passes, nanoseconds, entries, scans = ((mk.image[PASS_WORD : PASS_WORD + 4] - before) & 0xFFFFFFFF).tolist()
    return (
        f"bulk {count} NOPs: {count / seconds:,.0f} slots/s; dispatcher: {passes} passes with entries, "
        f"{nanoseconds / max(passes, 1) / 1000:.2f} us and {entries / max(passes, 1):.1f} entries per pass, "
        f"busy {nanoseconds / 1e9 / seconds:.0%} of the time, {scans} scans"
    )


def stage_samples(mk: Megakernel, count: int) -> list[list[int]]:
    """Per channel call, the device's stamp differences (ns) between consecutive stages."""
    samples = []
    stamps = mk.image[STAMP_WORD : STAMP_WORD + len(STAGES) + 1]
    with mk.channel() as channel:
        for i in range(count + 200):
            last = int(stamps[-1])
            channel.call(BuiltinOpcode.NOP)
            for _ in range(100_000):  # the last stamp lands just after DONE
                if int(stamps[-1]) != last:
                    break
            if i >= 200:
                values = stamps.astype(np.int64)
                samples.append([int((values[k + 1] - values[k]) & 0xFFFFFFFF) for k in range(len(STAGES))])
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", default="cuda")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--slots", type=int, default=4096)
    parser.add_argument("--stages", action="store_true", help="split the device time (CUDA; a stamping build)")
    parser.add_argument("--profile", action="store_true", help="cProfile the host side of futures and bulk")
    parser.add_argument("--stand-in", action="store_true", help="the CUDA host path, a C thread as the device")
    parser.add_argument("--latency-us", type=float, default=1.0, help="the stand-in device's pause per pass")
    args = parser.parse_args()
    if args.stand_in:
        from stream_host import install_stand_in

        install_stand_in(args.latency_us)
        args.backend = "cuda"
    if args.stages:
        defines = os.environ.get("VYRE_MEGAKERNEL_DEFINES", "")
        os.environ["VYRE_MEGAKERNEL_DEFINES"] = f"{defines} VYRE_STAGE_STAMPS".strip()
    stages: list[list[int]] = []
    publish, device, reap, total = [], [], [], []
    # the calling thread's CPU time of the host parts (a busy neighbour stretches the wall
    # clock, not the work): publish / submit, and reap + resolve
    cpu_rows: dict[str, list[int]] = {"publish": [], "reap+resolve": [], "submit (tiny run)": [], "reap+run result": []}
    cpu = time.thread_time_ns
    round_trips: dict[str, list[int]] = {}
    jit = "off" if args.stand_in else "auto"  # (the stand-in compiles nothing)
    with Megakernel(backend=args.backend, slots=args.slots, jit=jit) as mk:
        status = mk.service.status_column
        for i in range(args.count + 200):
            c0, t0 = cpu(), time.perf_counter_ns()
            future = mk.publish(BuiltinOpcode.NOP)
            t1, c1 = time.perf_counter_ns(), cpu()
            slot = future.slot
            while status[slot] in IN_FLIGHT:  # DONE, or EMPTY if the service thread reaped it first
                pass
            c2, t2 = cpu(), time.perf_counter_ns()
            future.result(5)
            t3, c3 = time.perf_counter_ns(), cpu()
            if i >= 200:
                publish.append(t1 - t0)
                device.append(t2 - t1)
                reap.append(t3 - t2)
                total.append(t3 - t0)
                cpu_rows["publish"].append(c1 - c0)
                cpu_rows["reap+resolve"].append(c3 - c2)
        handle = mk.register_program(TINY)
        run_parts: list[list[int]] = [[], [], [], []]  # submit, device, reap + result, total
        for i in range(args.count + 200):
            c0, t0 = cpu(), time.perf_counter_ns()
            future = mk.submit(handle, b"x" * 64)
            t1, c1 = time.perf_counter_ns(), cpu()
            slot = future.slot
            while status[slot] in IN_FLIGHT:
                pass
            c2, t2 = cpu(), time.perf_counter_ns()
            future.result(5)
            t3, c3 = time.perf_counter_ns(), cpu()
            if i >= 200:
                for part, value in zip(run_parts, (t1 - t0, t2 - t1, t3 - t2, t3 - t0)):
                    part.append(value)
                cpu_rows["submit (tiny run)"].append(c1 - c0)
                cpu_rows["reap+run result"].append(c3 - c2)
        # the plain round trips as a user writes them (no status watching in between: on the
        # CPU backend that spin holds the GIL the device's workers need)
        for name, call in (
            ("publish().result()", lambda: mk.publish(BuiltinOpcode.NOP).result(5)),
            ("submit().result()", lambda: mk.submit(handle, b"x" * 64).result(5)),
        ):
            walls, cpus = [], []
            for i in range(args.count + 200):
                c0, t0 = cpu(), time.perf_counter_ns()
                call()
                t1, c1 = time.perf_counter_ns(), cpu()
                if i >= 200:
                    walls.append(t1 - t0)
                    cpus.append(c1 - c0)
            round_trips[name] = walls
            cpu_rows[name] = cpus
        channel_samples = []
        with mk.channel() as channel:
            for i in range(args.count + 200):
                t0 = time.perf_counter_ns()
                channel.call(BuiltinOpcode.NOP)
                if i >= 200:
                    channel_samples.append(time.perf_counter_ns() - t0)
        if args.stages:
            stages = stage_samples(mk, args.count)
            print(bulk_passes(mk, 300_000))
        if args.profile:
            host_profiles(mk, args.count)
    rows = [("publish", publish), ("device turnaround", device), ("reap+resolve", reap), ("total", total)]
    rows.append(("channel.call total", channel_samples))
    names = ("submit (tiny run)", "device turnaround", "reap+run result", "submit total")
    rows += list(zip(names, run_parts))
    rows += list(round_trips.items())
    for name, samples in rows:
        values = np.asarray(samples) / 1000
        print(f"{name:<20} p50 {np.percentile(values, 50):8.2f} us   p99 {np.percentile(values, 99):8.2f} us")
    for name, samples in cpu_rows.items():
        values = np.asarray(samples) / 1000
        p50, mean = np.percentile(values, 50), values.mean()
        print(f"{'cpu ' + name:<20} p50 {p50:8.2f} us   mean {mean:8.2f} us (thread CPU)")
    if stages:
        table = np.asarray(stages, dtype=np.float64) / 1000
        print("device stages of a channel.call NOP (%globaltimer; mean and p50 over the calls):")
        for k, name in enumerate(STAGES):
            print(f"  {name:<40} mean {table[:, k].mean():7.2f} us   p50 {np.percentile(table[:, k], 50):7.2f} us")
        total = table.sum(axis=1)
        name = "poll start -> counters (sum)"
        print(f"  {name:<40} mean {total.mean():7.2f} us   p50 {np.percentile(total, 50):7.2f} us")


if __name__ == "__main__":
    main()
