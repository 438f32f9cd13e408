"""File -> "consumed by the megakernel" GB/s, next to what a user would pick instead.

    python bench/ingest.py [--backend auto|cpu|cuda] [--size 4GiB] [--dir DIR] [--cold]

One generated file of random bytes on DIR (default: bench/data, on the root file system; tmpfs has
no O_DIRECT), read warm (page cache) and, with --cold, after dropping the page cache (root only),
O_DIRECT. Rows, all in one run over the same file:
- raw io_uring: READ_FIXED into the arena, IOSQE_ASYNC, no consumer (the reading ceiling);
- vyre stream: the pipeline (io_uring -> arena -> RUN_PROGRAM per chunk), "consumed" = a program
  read every byte and its result matched NumPy's: examples/checksum.vasm (word loads) and
  examples/histogram.vasm (the hist range intrinsic: warp-cooperative 16-byte loads on a GPU).
  A consumer is NAME[+jit][+separate]: +jit compiles it first (StreamOptions.jit), +separate runs
  it unfused (fuse=False: it reads the arena over PCIe in place, no device staging);
- readinto + cuMemcpyHtoD: a plain loop into a pinned buffer and an async copy to device memory
  (double-buffered), what a user writes by hand (CUDA only);
- KvikIO CuFile.pread into device memory, 16 threads, 4 MiB tasks (CUDA only, if kvikio imports).
--arenas 16MiBx96,32MiBx8,... measures the raw io_uring and vyre stream rows once per arena shape
(chunk size x chunks; the arena's size decides whether the reads stay in the CPU's cache), in one
megakernel, rows named by the shape. Writes bench/results/ingest-<backend>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from provenance import git_commit, machine  # noqa: E402

from vyre_runtime import hostmem  # noqa: E402
from vyre_runtime.backends.selection import cuda_unavailable_reason  # noqa: E402
from vyre_runtime.chunking import parse_size  # noqa: E402
from vyre_runtime.cli import load_program_file  # noqa: E402
from vyre_runtime.ingest import reader as ingest_reader  # noqa: E402
from vyre_runtime.ingest.arena import Arena  # noqa: E402
from vyre_runtime.ingest.reader import open_reader  # noqa: E402
from vyre_runtime.ingest.stream import StreamOptions, StreamPipeline  # noqa: E402
from vyre_runtime.megakernel import Megakernel  # noqa: E402

GB = 1e9


def make_file(path: Path, size: int) -> tuple[int, np.ndarray]:
    """Random bytes (written in 64 MiB pieces; a file of that size already there is kept);
    returns the reference checksum and byte histogram, computed from the bytes."""
    rng = np.random.default_rng(7)
    checksum = 0
    histogram = np.zeros(256, dtype=np.uint64)
    piece = 64 << 20
    keep = path.exists() and path.stat().st_size == size
    with open(path, "rb" if keep else "wb") as handle:
        for start in range(0, size, piece):
            wanted = min(piece, size - start)
            data = np.frombuffer(handle.read(wanted) if keep else rng.bytes(wanted), dtype=np.uint8)
            checksum = (checksum + place_sum(data, start)) & 0xFFFFFFFF
            histogram += np.bincount(data, minlength=256).astype(np.uint64)
            if not keep:
                handle.write(data.tobytes())
    return checksum, histogram


def place_sum(data: np.ndarray, start: int) -> int:
    """The checksum program's definition over ``data`` at file offset ``start`` (mod 2^32)."""
    if start % 4 == 0 and len(data) % 4 == 0:  # whole little-endian words: their plain sum
        return int(data.view("<u4").sum(dtype=np.uint64) & 0xFFFFFFFF)
    shifts = ((np.arange(start, start + len(data)) % 4) * 8).astype(np.uint64)
    return int((data.astype(np.uint64) << shifts).sum() & 0xFFFFFFFF)


def drop_caches(path: Path) -> bool:
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        fd = os.open(path, os.O_RDONLY)  # the next best thing: advise this file out
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
        return False


def warm(path: Path) -> None:
    with open(path, "rb", buffering=0) as handle:
        buffer = bytearray(64 << 20)
        while handle.readinto(buffer):
            pass


def raw_uring(path: Path, arena: Arena, read_size: int, depth: int, direct: bool) -> float:
    """GB/s of READ_FIXED into the arena's chunks round robin, nothing consuming the bytes."""
    flags = os.O_RDONLY | (os.O_DIRECT if direct else 0)
    fd = os.open(path, flags)
    size = os.fstat(fd).st_size
    reader = open_reader("io_uring", depth)
    try:
        reader.register_buffers(arena.buffers())
        handle = reader.add_file(fd)
        read_size = min(read_size, arena.chunk_bytes)  # a small arena's chunk takes one read
        slots = arena.count * (arena.chunk_bytes // read_size)
        started = time.perf_counter()
        offset = done = issued = 0
        while done < size:
            while offset < size and reader.in_flight < depth:
                where = issued % slots
                chunk, within = divmod(where * read_size, arena.chunk_bytes)
                address = arena.chunk_address(chunk) + within
                reader.prep_read(handle, address, read_size, offset, issued, arena.buffer_index(chunk))
                offset += read_size
                issued += 1
            reader.submit()
            for completion in reader.wait(1, timeout=5.0):
                if completion.result < 0:
                    raise OSError(-completion.result, os.strerror(-completion.result))
                done += completion.result
        seconds = time.perf_counter() - started
        reader.remove_file(handle)
        return size / seconds / GB
    finally:
        reader.close()
        os.close(fd)


def vyre_stream(pipeline: StreamPipeline, path: Path, consumer: str, expected: dict) -> dict:
    """``pipeline`` (whose program, the consumer — checksum: interpreted word loads; histogram: the
    hist range intrinsic, warp-cooperative on the GPU — reads every byte) over ``path``, verified."""
    [result] = pipeline.run([str(path)])
    if result.error is not None:
        raise result.error
    outputs = result.programs[0].outputs
    if consumer == "checksum":
        ok = int(outputs["sum"][0]) == expected["checksum"]
    else:
        ok = np.array_equal(outputs["histogram"].astype(np.uint64), expected["histogram"] & 0xFFFFFFFF)
    stats = pipeline.stats
    return {
        "gbps": result.size / stats.seconds / GB,
        "verified": ok,
        "host_bytes_copied": stats.host_bytes_copied,
        "reader": stats.reader,
        "faults": len(result.faults),
        "slots_reading": round(stats.reading_slot_seconds / stats.seconds, 1),  # mean slots in each state
        "slots_running": round(stats.running_slot_seconds / stats.seconds, 1),
    }


def consumer_options(spec: str, options: StreamOptions) -> tuple[str, StreamOptions]:
    """NAME[+jit][+separate] -> the program's name and the stream options it runs with."""
    name, *flags = spec.split("+")
    unknown = set(flags) - {"jit", "separate"}
    if unknown:
        raise SystemExit(f"unknown consumer flag(s) {sorted(unknown)} in {spec!r}; known: jit, separate")
    return name, replace(options, jit=options.jit or "jit" in flags, fuse=False if "separate" in flags else None)


def readinto_memcpy(path: Path, chunk: int = 16 << 20) -> float:
    """readinto a pinned buffer, cuMemcpyHtoDAsync to device memory, two buffers in turn."""
    from vyre_runtime.backends.cuda import driver

    cu = driver.cu
    driver.Context(0).enter()  # before any allocation: the megakernel is not up yet
    pinned = [driver.MappedMemory(chunk) for _ in range(2)]
    device = driver.DeviceMemory(2 * chunk)
    stream = driver.Stream()
    events = [None, None]
    try:
        size = path.stat().st_size
        started = time.perf_counter()
        with open(path, "rb", buffering=0) as handle:
            index = 0
            while True:
                if events[index] is not None:
                    driver.check(cu.cuEventSynchronize(events[index]), "cuEventSynchronize")
                got = handle.readinto(memoryview(pinned[index].array))
                if not got:
                    break
                target = device.pointer + index * chunk
                driver.check(
                    cu.cuMemcpyHtoDAsync(target, pinned[index].host_pointer, got, stream.handle), "cuMemcpyHtoDAsync"
                )
                if events[index] is None:
                    events[index] = driver.check(cu.cuEventCreate(0), "cuEventCreate")
                driver.check(cu.cuEventRecord(events[index], stream.handle), "cuEventRecord")
                index ^= 1
        stream.wait(60.0, "the copies")
        return size / (time.perf_counter() - started) / GB
    finally:
        for memory in pinned:
            memory.unregister()
        device.free()


def kvikio_pread(path: Path, threads: int = 16, task: int = 4 << 20) -> float | str:
    try:
        import cupy
        import kvikio
        import kvikio.defaults
    except Exception as error:  # not installed here: reported, not fatal
        return f"unavailable: {type(error).__name__}: {error}"
    kvikio.defaults.set({"num_threads": threads, "task_size": task})
    size = path.stat().st_size
    target = cupy.empty(size, dtype=cupy.uint8)
    with kvikio.CuFile(str(path), "r") as handle:
        started = time.perf_counter()
        handle.pread(target).get()  # waits for its own reads and copies (never a device-wide sync)
        seconds = time.perf_counter() - started
    del target
    return size / seconds / GB


def arena_shapes(spec: str | None, chunk_size: int, chunks: int) -> list[tuple[int, int]]:
    """--arenas "16MiBx96,32MiBx8" as (chunk size, chunks) pairs; none given: the one shape."""
    if not spec:
        return [(chunk_size, chunks)]
    shapes = []
    for item in spec.split(","):
        size_text, _, count_text = item.strip().rpartition("x")
        if not size_text or not count_text.isdigit() or int(count_text) < 1:
            raise SystemExit(f"--arenas: {item!r} is not CHUNKxCOUNT (e.g. 16MiBx96)")
        shapes.append((parse_size(size_text), int(count_text)))
    return shapes


def shape_label(shape: tuple[int, int], shapes: list[tuple[int, int]]) -> str:
    """A row's arena shape, named only when several are swept."""
    if len(shapes) == 1:
        return ""
    return f" [{shape[0] >> 20} MiB x {shape[1]} = {shape[0] * shape[1] >> 20} MiB]"


def best(measure, args: argparse.Namespace) -> float:
    return max(measure() for _ in range(args.repeat))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--size", default="1GiB")
    parser.add_argument("--dir", default=str(ROOT / "bench" / "data"))
    parser.add_argument("--chunk-size", default="16MiB")
    parser.add_argument("--chunks", type=int, default=96)
    parser.add_argument(
        "--arenas",
        help="arena shapes to sweep, CHUNKxCOUNT[,...] (e.g. 16MiBx96,32MiBx8); default: --chunk-size x --chunks",
    )
    parser.add_argument("--chunks-per-slot", type=int, default=1)
    parser.add_argument("--read-size", default="4MiB")
    parser.add_argument("--depth", type=int, default=128)
    parser.add_argument("--lanes", type=int, default=256, help="consumer lanes (0: the program's)")
    parser.add_argument(
        "--consumers",
        default="checksum,histogram,checksum+jit",
        help="programs that consume the stream: examples/NAME.vasm, NAME[+jit][+separate] (module docstring)",
    )
    parser.add_argument("--cold", action="store_true", help="also measure after dropping the page cache (O_DIRECT)")
    parser.add_argument("--repeat", type=int, default=2, help="warm runs of each row (the best is kept)")
    parser.add_argument(
        "--sqpoll",
        action="store_true",
        help="the stream's rings submit through a kernel SQ thread (StreamOptions.sqpoll): the stream thread"
        " then pays no io_uring_enter per batch of reads (the raw rows are unchanged)",
    )
    parser.add_argument("--jit", action="store_true", help="JIT the consumers first (StreamOptions.jit; CUDA)")
    parser.add_argument(
        "--iowq", type=int, help="io-wq worker cap of the readers (0: the kernel's); default: DEFAULT_IOWQ_WORKERS"
    )
    args = parser.parse_args()
    if args.iowq is not None:
        ingest_reader.DEFAULT_IOWQ_WORKERS = args.iowq  # read when a reader opens

    size, chunk_size, read_size = parse_size(args.size), parse_size(args.chunk_size), parse_size(args.read_size)
    directory = Path(args.dir)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"ingest-{size}.bin"
    started = time.perf_counter()
    checksum, histogram = make_file(path, size)
    expected = {"checksum": checksum, "histogram": histogram}
    consumers = args.consumers.split(",")
    print(f"wrote {path} ({size / GB:.2f} GB) in {time.perf_counter() - started:.1f} s")
    rows: dict[str, dict] = {}
    options = StreamOptions(
        chunk_size=chunk_size,
        chunks=args.chunks,
        chunks_per_slot=args.chunks_per_slot,
        read_size=read_size,
        queue_depth=args.depth,
        lanes=args.lanes or None,
        jit=args.jit,
        sqpoll=args.sqpoll,
    )
    cuda = args.backend == "cuda" or (args.backend == "auto" and cuda_unavailable_reason() is None)
    # plain memory for the raw reads (io_uring pins registered pages itself), on huge pages as
    # MappedMemory's (bench/uring_rate.py measures the kinds)
    shapes = arena_shapes(args.arenas, chunk_size, args.chunks)
    arenas = {shape: Arena(shape[0], shape[1], hostmem.anonymous) for shape in shapes}
    arena = arenas[shapes[0]]
    warm(path)
    for shape, shape_arena in arenas.items():
        rows[f"raw io_uring, warm{shape_label(shape, shapes)}"] = {
            "gbps": best(lambda a=shape_arena: raw_uring(path, a, read_size, args.depth, False), args)
        }
    if cuda:  # before the megakernel starts: freeing their memory would wait for a resident kernel
        rows["readinto + cuMemcpyHtoD, warm"] = {"gbps": best(lambda: readinto_memcpy(path), args)}
        outcomes = [kvikio_pread(path) for _ in range(args.repeat)]
        numbers = [o for o in outcomes if isinstance(o, float)]
        rows["KvikIO pread 16 threads 4 MiB, warm"] = {"gbps": max(numbers)} if numbers else {"note": outcomes[0]}
    with Megakernel(backend=args.backend, slots=1024) as megakernel:
        backend = megakernel.backend
        for shape in shapes:
            shaped = replace(options, chunk_size=shape[0], chunks=shape[1])
            for consumer in consumers:
                name, consumer_run = consumer_options(consumer, shaped)
                program = load_program_file(str(ROOT / "examples" / f"{name}.vasm"))
                # one pipeline per consumer, run `repeat` times: pinning and registering the arena
                # is paid once, as by a user streaming many files (the first run includes it)
                with StreamPipeline([program], megakernel, consumer_run) as pipeline:
                    runs = [vyre_stream(pipeline, path, name, expected) for _ in range(args.repeat)]
                best_run = max(runs, key=lambda r: r["gbps"])
                rows[f"vyre stream ({consumer}), warm{shape_label(shape, shapes)}"] = {
                    **best_run,
                    "first": runs[0]["gbps"],
                }
        if args.cold:
            dropped = drop_caches(path)
            rows["raw io_uring O_DIRECT, cold"] = {
                "gbps": raw_uring(path, arena, read_size, args.depth, True),
                "caches_dropped": dropped,
            }
            cold = StreamOptions(**{**options.__dict__, "direct": True})
            for consumer in consumers:
                name, consumer_run = consumer_options(consumer, cold)
                program = load_program_file(str(ROOT / "examples" / f"{name}.vasm"))
                with StreamPipeline([program], megakernel, consumer_run) as pipeline:
                    drop_caches(path)
                    rows[f"vyre stream O_DIRECT ({consumer}), cold"] = {
                        **vyre_stream(pipeline, path, name, expected),
                        "caches_dropped": dropped,
                    }
    print(f"\n{'row':<52}{'GB/s':>8}  notes")
    for name, row in rows.items():
        gbps = f"{row['gbps']:.2f}" if "gbps" in row else "-"
        notes = ", ".join(f"{k}={v}" for k, v in row.items() if k != "gbps")
        print(f"{name:<52}{gbps:>8}  {notes}")
    document = {
        "bench": "ingest",
        "backend": backend,
        "machine": machine(),
        "commit": git_commit(),
        "size": size,
        "chunk_size": chunk_size,
        "chunks": args.chunks,
        "arenas": [list(shape) for shape in shapes],
        "read_size": read_size,
        "depth": args.depth,
        "iowq_workers": ingest_reader.DEFAULT_IOWQ_WORKERS,
        "rows": rows,
    }
    out = ROOT / "bench" / "results" / f"ingest-{backend}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(document, indent=2))
    print(f"wrote {out}")
    return 0 if all(row.get("verified", True) for row in rows.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
