"""The `vyre` command: assemble, disassemble, verify and run VIR0 programs over files.

Every user-caused failure prints one line, `vyre: error: WHAT (fix: HOW)`, and exits 2; a run
whose chunks faulted prints its results and the faults, and exits 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vyre_runtime.chunking import parse_size
from vyre_runtime.errors import InputError, VyreError
from vyre_runtime.megakernel import Megakernel
from vyre_runtime.runner import DEFAULT_CHUNK_SIZE, FileResult, RunOptions, run_files
from vyre_runtime.vir0 import container
from vyre_runtime.vir0.program import Program

EXIT_OK, EXIT_FAULTS, EXIT_ERROR = 0, 1, 2
PREVIEW_ENTRIES = 16


def _read_bytes(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except IsADirectoryError:
        raise InputError(f"{path} is a directory, not a file", "name a file") from None
    except OSError as error:
        raise InputError(f"cannot read {path}: {error.strerror}", "check the path and its permissions") from error


def load_program_file(path: str) -> Program:
    """A program from a container (.vir0, detected by magic) or assembly text (anything else)."""
    from vyre_runtime.vir0 import asm
    from vyre_runtime.vir0.verify import load

    raw = _read_bytes(path)
    if raw.startswith(container.MAGIC):
        return load(raw)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(
            f"{path} is neither a VIR0 container nor UTF-8 assembly text",
            "pass a .vasm source or a .vir0 file made by `vyre asm`",
        ) from None
    return asm.assemble_program(text, source_name=path)


def _write_output(path: str | None, data: bytes | str) -> None:
    if path is None or path == "-":
        if isinstance(data, bytes):
            sys.stdout.buffer.write(data)
        else:
            sys.stdout.write(data)
        return
    try:
        Path(path).write_bytes(data if isinstance(data, bytes) else data.encode())
    except OSError as error:
        raise InputError(f"cannot write {path}: {error.strerror}", "choose a writable output path") from error


def command_asm(args: argparse.Namespace) -> int:
    from vyre_runtime.vir0 import asm

    source = _read_bytes(args.source).decode("utf-8", errors="replace")
    blob = asm.assemble(source, source_name=args.source)
    output = args.output or str(Path(args.source).with_suffix(".vir0"))
    _write_output(output, blob)
    if output != "-":
        print(f"wrote {output}: {len(blob)} bytes, blake3 {container.program_digest(blob).hex()[:16]}")
    return EXIT_OK


def command_disasm(args: argparse.Namespace) -> int:
    from vyre_runtime.vir0 import asm

    _write_output(args.output, asm.disassemble(_read_bytes(args.program)))
    return EXIT_OK


def command_verify(args: argparse.Namespace) -> int:
    program = load_program_file(args.program)
    blob = container.encode(program)
    print(
        f"ok: {program.name}: {len(program.code)} instructions, {program.registers} registers, "
        f"{len(program.tables)} tables, {len(program.bindings)} bindings, emit {program.emit_words} words, "
        f"overlap {program.overlap}, blake3 {container.program_digest(blob).hex()[:16]}"
    )
    return EXIT_OK


def _preview(values: np.ndarray) -> str:
    if len(values) == 1:
        return str(int(values[0]))
    if len(values) <= PREVIEW_ENTRIES:
        return "[" + ", ".join(str(int(v)) for v in values) + "]"
    nonzero = np.flatnonzero(values)
    shown = " ".join(f"[{i}]={int(values[i])}" for i in nonzero[:PREVIEW_ENTRIES])
    more = f" ... (+{len(nonzero) - PREVIEW_ENTRIES} more, --json for all)" if len(nonzero) > PREVIEW_ENTRIES else ""
    return f"{len(values)} words, {len(nonzero)} non-zero: {shown}{more}"


def _print_human(program: Program, result: FileResult, max_records: int, backend: str) -> None:
    rate = result.size / result.seconds / 1e6 if result.seconds > 0 else 0.0
    print(
        f"{program.name} over {result.path}: {result.size} bytes, {result.chunks} chunks, "
        f"{backend} backend, {result.seconds:.3f} s ({rate:.1f} MB/s)"
    )
    for name, value in result.outputs.items():
        if isinstance(value, list):
            print(f"  {name}: {len(value)} chunks")
            for index, chunk_value in enumerate(value[:max_records]):
                print(f"    chunk {index}: {_preview(chunk_value)}")
        else:
            print(f"  {name} = {_preview(value)}")
    if program.emit_words:
        print(f"  records: {len(result.records)} (dropped {result.dropped})")
        for record in result.records[:max_records]:
            print("    " + " ".join(str(int(word)) for word in record))
        if len(result.records) > max_records:
            print(f"    ... {len(result.records) - max_records} more (--max-records N or --json)")
    for fault in result.faults:
        print(f"  FAULT {fault.describe()}")


def _json_result(result: FileResult) -> dict:
    def plain(value: np.ndarray | list[np.ndarray]) -> list:
        return [v.tolist() for v in value] if isinstance(value, list) else value.tolist()

    return {
        "path": result.path,
        "size": result.size,
        "chunks": result.chunks,
        "seconds": result.seconds,
        "outputs": {name: plain(value) for name, value in result.outputs.items()},
        "records": result.records.tolist(),
        "record_chunks": result.record_chunks.tolist(),
        "dropped": result.dropped,
        "instructions": result.instructions,
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


def command_run(args: argparse.Namespace) -> int:
    program = load_program_file(args.program)
    options = RunOptions(
        chunk_size=parse_size(args.chunk_size),
        lanes=args.lanes,
        fuel=args.fuel,
        emit_capacity=args.emit_capacity,
    )
    with Megakernel(backend=args.backend, workers=args.workers) as megakernel:
        results = run_files(program, args.files, options, megakernel)
    if args.json:
        digest = container.program_digest(container.encode(program)).hex()
        document = {"program": program.name, "blake3": digest, "backend": megakernel.backend}
        document["files"] = [_json_result(r) for r in results]
        json.dump(document, sys.stdout, indent=None)
        sys.stdout.write("\n")
    else:
        for result in results:
            _print_human(program, result, args.max_records, megakernel.backend)
    return EXIT_FAULTS if any(r.faults for r in results) else EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vyre", description="Run VIR0 programs over byte streams.")
    commands = parser.add_subparsers(dest="command", required=True)

    asm_parser = commands.add_parser("asm", help="assemble .vasm text into a .vir0 container")
    asm_parser.add_argument("source")
    asm_parser.add_argument("-o", "--output", help="output path (default: SOURCE with .vir0; - for stdout)")
    asm_parser.set_defaults(handler=command_asm)

    disasm_parser = commands.add_parser("disasm", help="print a .vir0 container as assembly text")
    disasm_parser.add_argument("program")
    disasm_parser.add_argument("-o", "--output", help="output path (default: stdout)")
    disasm_parser.set_defaults(handler=command_disasm)

    verify_parser = commands.add_parser("verify", help="decode and statically verify a program")
    verify_parser.add_argument("program")
    verify_parser.set_defaults(handler=command_verify)

    run_parser = commands.add_parser("run", help="run a program over files, chunk by chunk")
    run_parser.add_argument("program", help=".vasm source or .vir0 container")
    run_parser.add_argument("files", nargs="+", metavar="FILE")
    run_parser.add_argument("--json", action="store_true", help="print machine-readable results")
    run_parser.add_argument("--backend", default="auto", choices=["auto", "cpu", "cuda"], help="where programs run")
    run_parser.add_argument("--workers", type=int, help="CPU backend worker threads (default: up to 4)")
    run_parser.add_argument("--chunk-size", default=f"{DEFAULT_CHUNK_SIZE >> 20}MiB", help="bytes per chunk")
    run_parser.add_argument("--lanes", type=int, help="lanes per chunk (default: the program's .lanes)")
    run_parser.add_argument("--fuel", type=int, help="instruction budget per lane (default: the program's .fuel)")
    run_parser.add_argument("--emit-capacity", type=int, default=65536, help="records kept per chunk")
    run_parser.add_argument("--max-records", type=int, default=10, help="records to print (human output)")
    run_parser.set_defaults(handler=command_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except VyreError as error:
        print(f"vyre: error: {error.one_line()}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("vyre: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
