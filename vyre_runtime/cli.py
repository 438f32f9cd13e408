"""The `vyre` command: assemble, disassemble, verify and run VIR0 programs over files.

Every user-caused failure prints one line, `vyre: error: WHAT (fix: HOW)`, and exits 2; a run
whose chunks faulted prints its results and the faults, and exits 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from vyre_runtime.errors import InputError, VyreError
from vyre_runtime.megakernel import Megakernel
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


def command_run(args: argparse.Namespace) -> int:
    from vyre_runtime import cli_run

    return cli_run.command_run(args, load_program_file)


def _reason(error: Exception) -> str:
    return error.one_line() if isinstance(error, VyreError) else f"{type(error).__name__}: {error}"


def command_doctor(args: argparse.Namespace) -> int:
    """What this machine can run: one line per check, "ok", "missing" or "failed: reason"."""
    import platform
    import time

    from vyre_runtime.protocol.opcodes import BuiltinOpcode

    failed = False

    def line(check: str, status: str, detail: str = "") -> None:
        nonlocal failed
        failed = failed or status == "failed"
        print(f"{check:<20} {status}" + (f": {detail}" if detail else ""))

    def round_trip(backend: str) -> str:
        started = time.perf_counter()
        with Megakernel(backend=backend, slots=64) as megakernel:
            opened = time.perf_counter() - started
            begun = time.perf_counter()
            outcome = megakernel.publish(BuiltinOpcode.NOP).result(timeout=10)
            if not outcome.ok:
                raise VyreError(f"NOP ended {outcome.fault.describe()}")
            shape = ""
            if backend == "cuda":
                shape = f", grid {megakernel.device.grid} x {megakernel.device.block} threads"
            return f"started in {opened:.2f} s, NOP in {(time.perf_counter() - begun) * 1e3:.2f} ms{shape}"

    line("python", "ok", platform.python_version())
    line("numpy", "ok", np.__version__)
    try:
        line("cpu backend", "ok", round_trip("cpu"))
    except Exception as error:  # the doctor reports every failure as a line, never a traceback
        line("cpu backend", "failed", _reason(error))
    _doctor_ingest(line)
    try:
        import cuda.bindings
    except ImportError:
        line("cuda-bindings", "missing", "install vyre-runtime[cuda] for the CUDA backend")
        return EXIT_FAULTS if failed else EXIT_OK
    line("cuda-bindings", "ok", cuda.bindings.__version__)
    from vyre_runtime.backends.cuda import build, driver

    info = None
    try:
        info = driver.device_info(0)
    except VyreError as error:
        line("gpu", "missing", error.message)
    else:
        mapped = "yes" if info.can_map_host_memory else "NO (the ring cannot live in host memory)"
        detail = (
            f"{info.name}, {info.sm_count} SMs, compute capability {info.compute_capability[0]}."
            f"{info.compute_capability[1]} ({info.arch}), driver CUDA {info.driver_version_text}, "
            f"mapped host memory {mapped}"
        )
        line("gpu", "ok" if info.can_map_host_memory else "failed", detail)
    try:
        version = ".".join(map(str, build.nvrtc_version()))
    except VyreError as error:
        line("nvrtc", "missing", error.message)
        return EXIT_FAULTS if failed else EXIT_OK
    line("nvrtc", "ok", version)
    arch = info.arch if info is not None else build.DEFAULT_ARCH
    try:
        built = build.build_megakernel(arch)
        how = "from the cache" if built.cached else f"compiled in {built.seconds:.2f} s"
        line(f"megakernel {arch}", "ok", f"{len(built.cubin)} bytes, {how}")
    except VyreError as error:
        line(f"megakernel {arch}", "failed", error.message)
        return EXIT_FAULTS
    if info is None or not info.can_map_host_memory:
        line("megakernel start", "missing", "no usable GPU")
        return EXIT_FAULTS if failed else EXIT_OK
    try:
        line("megakernel start", "ok", round_trip("cuda"))
    except Exception as error:
        line("megakernel start", "failed", _reason(error))
    return EXIT_FAULTS if failed else EXIT_OK


def _ingest_defaults(probe: dict) -> str:
    """What `vyre run` reads with by default: the stream's read shape, the io-wq worker cap, the
    arena's pages, and which optional ring set-up flags this kernel has (unused by default)."""
    from vyre_runtime import hostmem
    from vyre_runtime.ingest import reader
    from vyre_runtime.ingest.stream import StreamOptions

    options = StreamOptions()
    cap = reader.DEFAULT_IOWQ_WORKERS
    caps_work = probe.get("iowq_max_workers") is True
    workers = (
        "the kernel's io-wq caps"
        if cap == reader.KERNEL_CAPS or not caps_work
        else f"io-wq workers capped at {cap} of {reader.usable_cpus()} CPUs"
    )
    flags = ", ".join(probe.get("setup_flags") or []) or "none"
    return (
        f"READ_FIXED + IOSQE_ASYNC, {options.read_size >> 20} MiB reads, {options.queue_depth} in flight per ring, "
        f"{workers}; arena on huge pages: THP {hostmem.thp_mode()}; kernel set-up flags available: {flags}"
    )


def _doctor_ingest(line: Callable[..., None]) -> None:
    """io_uring (and what of it works here) and GPUDirect Storage, for the streaming ingest."""
    from vyre_runtime.ingest.uring import probe_features

    try:
        probe = probe_features()
    except Exception as error:  # the doctor reports, never raises
        line("io_uring", "failed", _reason(error))
        return
    if not probe.get("available"):
        line("io_uring", "missing", f"{probe.get('reason')}; `vyre run` reads with the preadv fallback")
    else:

        def yes(key: str) -> str:
            return "yes" if probe.get(key) else "no"

        memlock = probe.get("memlock_limit")
        # probe_features reports RLIM_INFINITY as the word "unlimited", a finite limit in bytes
        limit = f"{memlock >> 20} MiB" if isinstance(memlock, int) and memlock >= 0 else "unlimited"
        line(
            "io_uring",
            "ok",
            f"kernel {probe.get('kernel')}, READ_FIXED {yes('read_fixed')}, registered buffers "
            f"{yes('registered_buffers')}, SQPOLL {yes('sqpoll')}, EXT_ARG waits {yes('ext_arg')}, "
            f"memlock limit {limit}",
        )
        line("ingest reads", "ok", _ingest_defaults(probe))
    nvidia_fs = Path("/proc/driver/nvidia-fs/stats")
    if nvidia_fs.exists():
        line("gpudirect storage", "ok", "nvidia-fs is loaded (cuFile could DMA from NVMe to the GPU)")
    else:
        line("gpudirect storage", "missing", "nvidia-fs is not loaded: reads land in pinned host memory (zero-copy)")


def command_cache(args: argparse.Namespace) -> int:
    """`vyre cache stats|clear|path`: the build cache's disk store (vyre_runtime/cache.py)."""
    from vyre_runtime import cache

    try:
        root = cache.cache_root()
    except RuntimeError:
        raise InputError("no cache directory: the home directory is unknown", f"set ${cache.CACHE_ENV}") from None
    store = cache.BuildCache(root)
    if args.cache_command == "path":
        print(root)
    elif args.cache_command == "clear":
        if args.kind is not None and not cache.KIND.match(args.kind):
            raise InputError(f"{args.kind!r} is not a cache kind", "name a kind that `vyre cache stats` lists")
        removed, size = store.clear(args.kind)
        print(f"removed {removed} files ({size:,} bytes) from {root}" + (f" (kind {args.kind})" if args.kind else ""))
    else:
        usage = store.disk_usage()
        if args.json:
            kinds = {kind: {"entries": u.entries, "bytes": u.bytes} for kind, u in usage.items()}
            total = {"entries": sum(u.entries for u in usage.values()), "bytes": sum(u.bytes for u in usage.values())}
            json.dump({"root": str(root), "kinds": kinds, **total}, sys.stdout)
            sys.stdout.write("\n")
            return EXIT_OK
        print(f"cache root: {root}" + ("" if root.is_dir() else " (not created yet)"))
        print(f"{'kind':<12}{'entries':>10}{'bytes':>16}")
        for kind, u in usage.items():
            print(f"{kind:<12}{u.entries:>10}{u.bytes:>16,}")
        print(f"{'total':<12}{sum(u.entries for u in usage.values()):>10}{sum(u.bytes for u in usage.values()):>16,}")
    return EXIT_OK


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

    from vyre_runtime.cli_run import add_run_parser

    add_run_parser(commands, command_run)

    doctor_parser = commands.add_parser("doctor", help="check the backends, the GPU and the kernel build")
    doctor_parser.set_defaults(handler=command_doctor)

    cache_parser = commands.add_parser("cache", help="inspect or clear the build cache (compiled kernels)")
    cache_commands = cache_parser.add_subparsers(dest="cache_command", required=True)
    stats_parser = cache_commands.add_parser("stats", help="entries and bytes on disk, per kind")
    stats_parser.add_argument("--json", action="store_true", help="print machine-readable statistics")
    clear_parser = cache_commands.add_parser("clear", help="remove cached entries")
    clear_parser.add_argument("--kind", help="remove only this kind (e.g. cubin)")
    cache_commands.add_parser("path", help="print the cache's root directory")
    cache_parser.set_defaults(handler=command_cache)
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
