"""Which code a benchmark measured: the commit every bench writes into its JSON results."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def git_commit() -> str:
    """The short hash of HEAD, or "unknown" outside a git checkout (e.g. an exported tree)."""
    try:
        completed = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
        )
    except OSError:
        return "unknown"
    return completed.stdout.strip() or "unknown"
