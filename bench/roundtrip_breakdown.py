"""Where a single-slot round trip spends its time: host publish, device turnaround, host reap.

python bench/roundtrip_breakdown.py --backend cuda [--count 2000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vyre_runtime.megakernel import Megakernel
from vyre_runtime.protocol.layout import SlotState
from vyre_runtime.protocol.opcodes import BuiltinOpcode


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", default="cuda")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--slots", type=int, default=4096)
    args = parser.parse_args()
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
    rows = [("publish", publish), ("device turnaround", device), ("reap+resolve", reap), ("total", total)]
    rows.append(("channel.call total", channel_samples))
    for name, samples in rows:
        values = np.asarray(samples) / 1000
        print(f"{name:<20} p50 {np.percentile(values, 50):8.2f} us   p99 {np.percentile(values, 99):8.2f} us")


if __name__ == "__main__":
    main()
