"""Which code a benchmark measured: the commit every bench writes into its JSON results."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMIT_ENV = "VYRE_BENCH_COMMIT"  # names the commit of a tree exported without .git (git archive)


def git_commit() -> str:
    """The short hash of HEAD; outside a git checkout (an exported tree) $VYRE_BENCH_COMMIT, else "unknown"."""
    named = os.environ.get(COMMIT_ENV, "").strip()
    try:
        completed = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
        )
    except OSError:
        return named or "unknown"
    return completed.stdout.strip() or named or "unknown"
