"""Watched channel.call latency for kernel tuning knobs, one Megakernel per knob set, one process.

    python bench/channel_knobs.py [--calls 3000] "WATCH_POLLERS=1u" "WATCH_POLLERS=4u" ...

Each argument is a $VYRE_MEGAKERNEL_DEFINES value ("" for the defaults); rows: NOP and ATOMIC_ADD
calls through the compiled host call, NOP through the Python one (docs/PROTOCOL.md, Watched channels).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vyre_runtime import channel_native
from vyre_runtime.backends.cuda.build import DEFINES_ENV
from vyre_runtime.megakernel import Megakernel
from vyre_runtime.protocol.opcodes import BuiltinOpcode


def p50_p99(mk: Megakernel, calls: int, opcode: int, args: tuple[int, ...], native: str) -> str:
    os.environ[channel_native.NATIVE_ENV] = native
    samples = []
    with mk.channel() as channel:
        for i in range(200 + calls):
            started = time.perf_counter_ns()
            channel.call(opcode, args)
            if i >= 200:
                samples.append(time.perf_counter_ns() - started)
    p50, p99 = np.percentile(np.asarray(samples) / 1000, [50, 99])
    return f"p50 {p50:6.2f} us  p99 {p99:6.2f} us"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("defines", nargs="*", default=[""])
    args = parser.parse_args()
    for defines in args.defines:
        os.environ[DEFINES_ENV] = defines
        with Megakernel(backend="cuda", slots=1024) as mk:
            rows = {
                "NOP, compiled call": p50_p99(mk, args.calls, BuiltinOpcode.NOP, (), "1"),
                "ATOMIC_ADD, compiled call": p50_p99(mk, args.calls, BuiltinOpcode.ATOMIC_ADD, (0, 1), "1"),
                "NOP, Python call": p50_p99(mk, args.calls, BuiltinOpcode.NOP, (), "0"),
            }
        for name, row in rows.items():
            print(f"[{defines or 'defaults'}] {name:<28}{row}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
