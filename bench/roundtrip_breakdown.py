"""Where a single-slot round trip spends its time: host publish, device turnaround, host reap.

python bench/roundtrip_breakdown.py --backend cuda [--count 2000] [--stages]

--stages (CUDA) builds the kernel with VYRE_STAGE_STAMPS: it stamps %globaltimer at each step of a
channel call's slot on the device (megakernel.cu, "stage stamps"), and the device part of the
round trip is split into those steps.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vyre_runtime.megakernel import Megakernel
from vyre_runtime.protocol.layout import SlotState
from vyre_runtime.protocol.opcodes import BuiltinOpcode

STAMP_WORD = 48  # megakernel.cu: the reserved control words a VYRE_STAGE_STAMPS build writes
STAGES = (  # a NOP runs in the dispatcher's lane: stages 3-5 are its run, not a worker's
    "dispatcher poll (entries round trip)",
    "slot read (fresh entry; else status + acquire)",
    "careful path: argument read (+ queue push)",
    "run inline (worker: hand-off to a block)",
    "result stores (worker: run + results)",
    "DONE store (release)",
    "counters after DONE",
)


PASS_WORD = 56  # megakernel.cu: dispatcher passes that found entries, their ns, the entries, scans


def bulk_passes(mk: Megakernel, count: int) -> str:
    """A publish_bulk of tiny NOPs, and what the dispatcher's busy passes did meanwhile."""
    before = mk.image[PASS_WORD : PASS_WORD + 4].astype(np.int64)
    profile = cProfile.Profile()  # where the host's time goes meanwhile (the publisher's thread)
    started = time.perf_counter()
    profile.enable()
    ticket = mk.publish_bulk(BuiltinOpcode.NOP, count=count)
    assert ticket.wait(timeout=120) and ticket.faulted == 0
    profile.disable()
    seconds = time.perf_counter() - started
    pstats.Stats(profile).sort_stats("tottime").print_stats(12)
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
    args = parser.parse_args()
    if args.stages:
        defines = os.environ.get("VYRE_MEGAKERNEL_DEFINES", "")
        os.environ["VYRE_MEGAKERNEL_DEFINES"] = f"{defines} VYRE_STAGE_STAMPS".strip()
    stages: list[list[int]] = []
    publish, device, reap, total = [], [], [], []
    with Megakernel(backend=args.backend, slots=args.slots) as mk:
        status = mk.service.status_column
        for i in range(args.count + 200):
            t0 = time.perf_counter_ns()
            future = mk.publish(BuiltinOpcode.NOP)
            t1 = time.perf_counter_ns()
            slot = future.slot
            while status[slot] != SlotState.DONE:
                pass
            t2 = time.perf_counter_ns()
            future.result(5)
            t3 = time.perf_counter_ns()
            if i >= 200:
                publish.append(t1 - t0)
                device.append(t2 - t1)
                reap.append(t3 - t2)
                total.append(t3 - t0)
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
    rows = [("publish", publish), ("device turnaround", device), ("reap+resolve", reap), ("total", total)]
    rows.append(("channel.call total", channel_samples))
    for name, samples in rows:
        values = np.asarray(samples) / 1000
        print(f"{name:<20} p50 {np.percentile(values, 50):8.2f} us   p99 {np.percentile(values, 99):8.2f} us")
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
