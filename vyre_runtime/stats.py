"""`Megakernel.stats()`: host-side counts, device counters, per-opcode metrics, latency."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vyre_runtime.protocol.layout import ControlWord, Layout
from vyre_runtime.protocol.opcodes import BUILTIN_METRIC_INDEX, METRIC_WORDS, USER_METRIC_BASE, USER_OPCODE_BASE

LATENCY_WINDOW = 200_000  # most recent round trips kept for percentiles


@dataclass(frozen=True)
class Stats:
    published: int
    completed: int
    faulted: int
    in_flight: int
    latency_us: dict[str, float]  # p50, p99, p999, max over the recent window; empty before any
    device_done: int  # DONE_COUNT as the device counted it (wraps at 2^32)
    device_faults: int
    device_claims: int
    epoch: int
    heartbeat: int
    metrics: dict[str, int] = field(default_factory=dict)  # opcode name -> executions (non-zero only)
    debug_dropped: int = 0
    # completions in slots the host had not published: a device that broke exactly-once (a bug;
    # HostService.stray_samples holds the first few slots' words)
    stray_completions: int = 0
    # registered program handle -> its JIT state and runs per path (jit_policy.ProgramPath)
    programs: dict[int, Any] = field(default_factory=dict)


def metric_names() -> list[str]:
    names = [""] * METRIC_WORDS
    for opcode, index in BUILTIN_METRIC_INDEX.items():
        names[index] = opcode.name
    for index in range(USER_METRIC_BASE, METRIC_WORDS):
        names[index] = f"user:{USER_OPCODE_BASE + index - USER_METRIC_BASE:#x}"
    return names


_NAMES = metric_names()


class LatencyWindow:
    def __init__(self) -> None:
        self._samples: deque[int] = deque(maxlen=LATENCY_WINDOW)

    def add(self, nanoseconds: int) -> None:
        self._samples.append(nanoseconds)

    def summary(self) -> dict[str, float]:
        if not self._samples:
            return {}
        values = np.fromiter(self._samples, dtype=np.int64) / 1000.0
        p50, p99, p999 = np.percentile(values, [50, 99, 99.9])
        return {"p50": float(p50), "p99": float(p99), "p999": float(p999), "max": float(values.max())}


def read_device_counters(image: np.ndarray, layout: Layout) -> dict[str, object]:
    metrics = image[layout.metrics : layout.metrics + METRIC_WORDS]
    return {
        "device_done": int(image[ControlWord.DONE_COUNT]),
        "device_faults": int(image[ControlWord.FAULT_COUNT]),
        "device_claims": int(image[ControlWord.CLAIM_COUNT]),
        "epoch": int(image[ControlWord.EPOCH]),
        "heartbeat": int(image[ControlWord.HEARTBEAT]),
        "metrics": {_NAMES[i]: int(metrics[i]) for i in np.flatnonzero(metrics)},
    }
