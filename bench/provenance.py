"""Which code and machine a benchmark measured: what every bench writes into its JSON results."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMIT_ENV = "VYRE_BENCH_COMMIT"  # names the commit of a tree exported without .git (git archive)


def git_commit() -> str:
    """$VYRE_BENCH_COMMIT when set (a copied tree whose .git may be stale: the GPU machine's copy
    kept an older HEAD than the tree it ran), else the short hash of HEAD, else "unknown"."""
    named = os.environ.get(COMMIT_ENV, "").strip()
    if named:
        return named
    try:
        completed = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
        )
    except OSError:
        return named or "unknown"
    return completed.stdout.strip() or named or "unknown"


def machine() -> str:
    """Host name, architecture, CPU count and Python version."""
    return f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus, python {platform.python_version()}"


def gpu_name() -> str:
    """The name of GPU 0 (call only where the CUDA backend runs)."""
    from vyre_runtime.backends.cuda import driver

    return driver.device_info(0).name
