"""The `--write` / `--check` command shared by the generators of docs/VIR0.md and PROTOCOL.md.

A document's generated blocks sit between BEGIN/END GENERATED markers; each generator knows how
to render them, and this runs the same command line over any of them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path


def add_mode_arguments(parser: argparse.ArgumentParser, default_doc: Path) -> None:
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="rewrite every generated block of the document in place")
    mode.add_argument("--check", action="store_true", help="exit 1 if the document's generated blocks are stale")
    parser.add_argument("--doc", type=Path, default=default_doc, help=f"the document (default: {default_doc})")


def write_or_check(args: argparse.Namespace, render_document: Callable[[str], str], regenerate_command: str) -> int:
    """Apply ``render_document`` to ``args.doc``: rewrite it (--write) or report staleness (--check)."""
    try:
        text = args.doc.read_text(encoding="utf-8")
        updated = render_document(text)
    except (OSError, ValueError) as error:
        print(f"docgen: {args.doc}: {error}", file=sys.stderr)
        return 1
    if args.check:
        if updated != text:
            print(f"docgen: {args.doc} is out of date; run `{regenerate_command}`", file=sys.stderr)
            return 1
        return 0
    if updated != text:
        args.doc.write_text(updated, encoding="utf-8")
        print(f"docgen: rewrote the generated blocks of {args.doc}")
    else:
        print(f"docgen: {args.doc} is already up to date")
    return 0


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured markdown table; `|` inside a cell is escaped."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _marker_span(text: str, begin: str, end: str) -> tuple[int, int]:
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.rstrip("\r\n") == begin]
    ends = [i for i, line in enumerate(lines) if line.rstrip("\r\n") == end]
    if len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
        raise ValueError(f"expected exactly one line {begin!r} followed by one line {end!r}")
    first = sum(len(line) for line in lines[: starts[0] + 1])
    last = sum(len(line) for line in lines[: ends[0]])
    return first, last


def extract_block(text: str, begin: str, end: str) -> str:
    """The text between the marker lines ``begin`` and ``end`` (markers excluded)."""
    first, last = _marker_span(text, begin, end)
    return text[first:last]


def replace_block(text: str, begin: str, end: str, content: str) -> str:
    """``text`` with the lines between the marker lines ``begin`` and ``end`` replaced by ``content``."""
    first, last = _marker_span(text, begin, end)
    return text[:first] + content + text[last:]
