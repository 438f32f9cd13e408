"""`vyre run PROGRAM... FILE|DIR...`: stream inputs through one or more programs (ingest/stream.py).

Programs are the leading arguments that name programs (`.vasm` / `.vir0`), or every `-p`;
the rest are inputs: files, directories (walked, sorted), `-` for stdin, pipes. Every input is
read once and every program runs over each chunk of it. Human output by default, `--json` for
machines; a progress bar on a terminal (stderr), quiet otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence

import numpy as np

from vyre_runtime.chunking import parse_size
from vyre_runtime.errors import InputError
from vyre_runtime.ingest.reader import READER_KINDS
from vyre_runtime.ingest.results import FileResult, ProgramResult
from vyre_runtime.ingest.stream import DEFAULT_CHUNK_SIZE, StreamOptions, StreamPipeline, StreamStats
from vyre_runtime.megakernel import Megakernel
from vyre_runtime.vir0 import container
from vyre_runtime.vir0.program import Program

EXIT_OK, EXIT_FAULTS = 0, 1
PREVIEW_ENTRIES = 16
PROGRAM_SUFFIXES = (".vasm", ".vir0")


def add_run_parser(commands: argparse._SubParsersAction, handler: Callable[[argparse.Namespace], int]) -> None:
    run = commands.add_parser(
        "run",
        help="stream files through programs, chunk by chunk",
        description="Leading .vasm/.vir0 arguments are the programs (or give each with -p); the rest are "
        "inputs: files, directories, - for stdin. Each input is read once for all programs.",
    )
    run.add_argument("arguments", nargs="+", metavar="PROGRAM|INPUT")
    run.add_argument("-p", "--program", action="append", default=[], help="a program (repeatable)")
    run.add_argument("--json", action="store_true", help="print machine-readable results")
    run.add_argument("--backend", default="auto", choices=["auto", "cpu", "cuda"], help="where programs run")
    run.add_argument("--workers", type=int, help="CPU backend worker threads (default: up to 4)")
    run.add_argument("--chunk-size", default=f"{DEFAULT_CHUNK_SIZE >> 20}MiB", help="bytes each chunk owns")
    run.add_argument(
        "--chunks",
        type=int,
        help="arena chunk slots, chunks in flight (default: 96 on CUDA, 8 on CPU; fewer for small inputs)",
    )
    run.add_argument(
        "--chunks-per-slot", type=int, default=1, help="consecutive chunks read into one arena slot (one run each)"
    )
    run.add_argument(
        "--read-size", default=f"{StreamOptions.read_size >> 20}MiB", help="bytes per read (several reads fill a chunk)"
    )
    run.add_argument("--queue-depth", type=int, default=StreamOptions.queue_depth, help="reads in flight per ring")
    run.add_argument("--rings", type=int, default=1, help="io_uring instances")
    run.add_argument("--reader", default="auto", choices=READER_KINDS, help="io_uring, the preadv fallback, or auto")
    run.add_argument("--direct", action="store_true", help="O_DIRECT reads (bypass the page cache)")
    run.add_argument("--sqpoll", action="store_true", help="io_uring SQPOLL (a kernel thread submits)")
    run.add_argument("--lanes", type=int, help="lanes per chunk (default: each program's .lanes)")
    run.add_argument("--fuel", type=int, help="instruction budget per lane (default: each program's .fuel)")
    run.add_argument("--emit-capacity", type=int, default=65536, help="records kept per chunk")
    fuse = run.add_mutually_exclusive_group()
    fuse.add_argument(
        "--fuse",
        dest="fuse",
        action="store_true",
        default=None,
        help="one fused slot runs all programs over a chunk: one pass over PCIe into device staging (default: on CUDA)",
    )
    fuse.add_argument("--no-fuse", dest="fuse", action="store_false", help="one slot per program and chunk")
    run.add_argument(
        "--jit",
        action="store_true",
        help="compile the programs to native GPU code first (CUDA; a one-off NVRTC build, cached on disk)",
    )
    run.add_argument("--max-records", type=int, default=10, help="records to print (human output)")
    progress = run.add_mutually_exclusive_group()
    progress.add_argument("--progress", dest="progress", action="store_true", default=None, help="show a progress bar")
    progress.add_argument("--no-progress", dest="progress", action="store_false", help="never show a progress bar")
    run.set_defaults(handler=handler)


def split_arguments(arguments: Sequence[str], explicit: Sequence[str]) -> tuple[list[str], list[str]]:
    """(program paths, input paths): -p programs, else the leading program-named arguments (at
    least the first argument, so `vyre run prog.vasm other.vasm` reads other.vasm as data)."""
    if explicit:
        return list(explicit), list(arguments)
    count = 1
    while count < len(arguments) - 1 and arguments[count].endswith(PROGRAM_SUFFIXES):
        count += 1
    programs, inputs = list(arguments[:count]), list(arguments[count:])
    if not inputs:
        raise InputError("no input files given", "name files or directories after the program(s), or - for stdin")
    return programs, inputs


def expand_inputs(paths: Sequence[str]) -> list[str]:
    """Directories become their files (recursively, sorted); anything else is kept as given."""
    expanded: list[str] = []
    for path in paths:
        if path != "-" and os.path.isdir(path):
            for root, directories, files in os.walk(path):
                directories.sort()
                expanded.extend(os.path.join(root, name) for name in sorted(files))
        else:
            expanded.append(path)
    return expanded


def command_run(args: argparse.Namespace, load_program: Callable[[str], Program]) -> int:
    program_paths, input_paths = split_arguments(args.arguments, args.program)
    programs = [load_program(path) for path in program_paths]
    inputs = expand_inputs(input_paths)
    if not inputs:
        raise InputError(f"no files in {', '.join(input_paths)}", "name files, or directories that hold files")
    options = StreamOptions(
        chunk_size=parse_size(args.chunk_size),
        chunks=args.chunks,
        chunks_per_slot=args.chunks_per_slot,
        read_size=parse_size(args.read_size),
        queue_depth=args.queue_depth,
        rings=args.rings,
        reader=args.reader,
        direct=args.direct,
        sqpoll=args.sqpoll,
        lanes=args.lanes,
        fuel=args.fuel,
        emit_capacity=args.emit_capacity,
        fuse=args.fuse,
        jit=args.jit,
    )
    show_progress = args.progress if args.progress is not None else (sys.stderr.isatty() and not args.json)
    with (
        Megakernel(backend=args.backend, workers=args.workers) as megakernel,
        StreamPipeline(programs, megakernel, options) as pipeline,
        _ProgressBar(show_progress) as progress,
    ):
        pipeline.progress = progress
        results = pipeline.run(inputs)
    stats = pipeline.stats
    if args.json:
        json.dump(_json_document(programs, results, stats, megakernel.backend), sys.stdout)
        sys.stdout.write("\n")
    else:
        for result in results:
            _print_file(programs, result, args.max_records)
        _print_summary(results, stats, megakernel.backend)
    for result in results:
        if result.error is not None:
            print(f"vyre: error: {result.error.one_line()}", file=sys.stderr)
    return EXIT_FAULTS if any(r.error is not None or r.faults for r in results) else EXIT_OK


class _ProgressBar:
    """A rich progress bar on stderr (bytes, GB/s, ETA) when asked for; otherwise a no-op."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._bar = self._task = None

    def __enter__(self) -> Callable[[int, int], None] | None:
        if not self.enabled:
            return None
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

        self._bar = Progress(
            BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn(), console=Console(stderr=True)
        )
        self._bar.start()
        self._task = self._bar.add_task("read", total=None)
        return self._update

    def _update(self, done: int, total: int) -> None:
        assert self._bar is not None
        self._bar.update(self._task, completed=done, total=max(total, done) or None)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


def _preview(values: np.ndarray) -> str:
    if len(values) == 1:
        return str(int(values[0]))
    if len(values) <= PREVIEW_ENTRIES:
        return "[" + ", ".join(str(int(v)) for v in values) + "]"
    nonzero = np.flatnonzero(values)
    shown = " ".join(f"[{i}]={int(values[i])}" for i in nonzero[:PREVIEW_ENTRIES])
    more = f" ... (+{len(nonzero) - PREVIEW_ENTRIES} more, --json for all)" if len(nonzero) > PREVIEW_ENTRIES else ""
    return f"{len(values)} words, {len(nonzero)} non-zero: {shown}{more}"


def _print_file(programs: Sequence[Program], result: FileResult, max_records: int) -> None:
    rate = result.size / result.seconds / 1e6 if result.seconds > 0 else 0.0
    status = "FAILED" if result.error is not None else f"{result.seconds:.3f} s ({rate:.1f} MB/s)"
    note = f" [{result.note}]" if result.note else ""
    print(f"{result.path}: {result.size} bytes, {result.chunks} chunks, {status}{note}")
    if result.error is not None:
        print(f"  error: {result.error.one_line()}")
    for program, program_result in zip(programs, result.programs):
        _print_program(program, program_result, max_records)


def _print_program(program: Program, result: ProgramResult, max_records: int) -> None:
    native = f" (native code on {result.jit_chunks} chunks)" if result.jit_chunks else ""
    print(f"  {program.name}:{native}")
    for name, value in result.outputs.items():
        if isinstance(value, list):
            print(f"    {name}: {len(value)} chunks")
            for index, chunk_value in enumerate(value[:max_records]):
                print(f"      chunk {index}: {_preview(chunk_value)}")
        else:
            print(f"    {name} = {_preview(value)}")
    if program.emit_words:
        print(f"    records: {len(result.records)} (dropped {result.dropped})")
        for record in result.records[:max_records]:
            print("      " + " ".join(str(int(word)) for word in record))
        if len(result.records) > max_records:
            print(f"      ... {len(result.records) - max_records} more (--max-records N or --json)")
    for fault in result.faults:
        print(f"    FAULT {fault.describe()}")


def _print_summary(results: Sequence[FileResult], stats: StreamStats, backend: str) -> None:
    failed = sum(r.error is not None for r in results)
    reader = stats.reader + (f" (fallback: {stats.fallback_reason})" if stats.fallback_reason else "")
    print(
        f"{len(results)} inputs ({failed} failed), {stats.bytes_processed} bytes in {stats.seconds:.3f} s "
        f"({stats.gigabytes_per_second:.2f} GB/s), {backend} backend, {reader} reader, "
        f"{stats.host_bytes_copied} bytes copied by the host"
    )


def _json_document(
    programs: Sequence[Program], results: Sequence[FileResult], stats: StreamStats, backend: str
) -> dict:
    def plain(value: np.ndarray | list[np.ndarray]) -> list:
        return [v.tolist() for v in value] if isinstance(value, list) else value.tolist()

    def program_json(result: ProgramResult) -> dict:
        return {
            "program": result.program,
            "outputs": {name: plain(value) for name, value in result.outputs.items()},
            "records": result.records.tolist(),
            "record_chunks": result.record_chunks.tolist(),
            "dropped": result.dropped,
            "instructions": result.instructions,
            "jit_chunks": result.jit_chunks,
            "faults": [
                {
                    "chunk": f.chunk.index,
                    "own_start": f.chunk.own_start,
                    "own_end": f.chunk.own_end,
                    "code": f.fault.code.name,
                    "pc": f.fault.pc,
                    "lane": f.fault.lane,
                    "detail": f.fault.detail,
                    "message": f.fault.describe(),
                }
                for f in result.faults
            ],
        }

    return {
        "backend": backend,
        "programs": [{"name": p.name, "blake3": container.program_digest(container.encode(p)).hex()} for p in programs],
        "files": [
            {
                "path": r.path,
                "size": r.size,
                "chunks": r.chunks,
                "seconds": r.seconds,
                "error": None if r.error is None else r.error.one_line(),
                "note": r.note,
                "results": [program_json(p) for p in r.programs],
            }
            for r in results
        ],
        "stats": {
            "reader": stats.reader,
            "fallback_reason": stats.fallback_reason,
            "bytes_read": stats.bytes_read,
            "bytes_processed": stats.bytes_processed,
            "host_bytes_copied": stats.host_bytes_copied,
            "reads": stats.reads,
            "short_reads": stats.short_reads,
            "runs": stats.runs,
            "seconds": stats.seconds,
        },
    }
