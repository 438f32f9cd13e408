"""The raw read rate, warm page cache -> registered host memory, with no consumer: which io_uring
set-up (or the preadv fallback) reads fastest, every configuration in one process over one file.

    python bench/uring_rate.py [--size 4GiB] [--dir DIR] [--repeat 3] [--arena 512MiB]
        [--only REGEX] [--budget-s 120]

A configuration: the reader (io_uring or preadv), the destination memory (shared: the shmem
``mmap.mmap(-1, n)`` bench/ingest.py's raw row reads into; private: private anonymous; thp: private
on 2 MiB pages, vyre_runtime.hostmem; cuda / cuda+thp: the same pinned and device-mapped with
cuMemHostRegister, as the stream's arena), read size and depth (reads in flight per ring),
IOSQE_ASYNC, the io-wq worker cap (IORING_REGISTER_IOWQ_MAX_WORKERS, bound work; "-" = the kernel's
min(SQ entries, 4 x CPUs)), rings (each driven by its own thread, reads handed out from one shared
counter), setup flags, SQPOLL, READ_FIXED or plain READ; preadv: worker threads.
Each configuration reads the whole file ``repeat`` times (the best and the median are printed);
the io-wq workers ("iou-wrk" threads) alive are sampled during its first run (the peak is printed).
Writes bench/results/uring-rate.json after every configuration: a run cut short keeps its rows.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from provenance import git_commit, machine  # noqa: E402

from vyre_runtime import hostmem  # noqa: E402
from vyre_runtime.chunking import parse_size  # noqa: E402
from vyre_runtime.ingest.fallback import PreadvReader  # noqa: E402
from vyre_runtime.ingest.reader import KERNEL_CAPS, IoUringReader, Reader  # noqa: E402
from vyre_runtime.ingest.uring import probe_features  # noqa: E402
from vyre_runtime.ingest.uring_abi import MAX_BUFFER_BYTES, SetupFlag  # noqa: E402

GB = 1e9
MiB = 1 << 20
FLAGS = {
    "-": 0,
    "coop": SetupFlag.COOP_TASKRUN,
    "single": SetupFlag.SINGLE_ISSUER,
    "defer": SetupFlag.SINGLE_ISSUER | SetupFlag.DEFER_TASKRUN,
    "coop+single": SetupFlag.COOP_TASKRUN | SetupFlag.SINGLE_ISSUER,
}


@dataclass(frozen=True)
class Config:
    reader: str = "io_uring"  # or "preadv"
    memory: str = "thp"  # shared | private | thp | cuda | cuda+thp
    read_size: int = 4 * MiB
    depth: int = 128  # reads in flight per ring (preadv: in all)
    force_async: bool = True
    iowq: int | None = None  # io-wq worker cap of each ring's thread; None: the kernel's caps
    rings: int = 1  # io_uring: rings, one thread each; preadv: worker threads
    flags: str = "-"
    sqpoll: bool = False
    fixed: bool = True  # READ_FIXED into registered buffers (else plain READ)
    bound_only: bool = False  # cap only io-wq's bound workers (the reader caps both)

    def label(self) -> str:
        size = f"{self.read_size // MiB}MiB@{self.depth}"
        if self.reader == "preadv":
            return f"preadv {self.memory} {size} workers={self.rings}"
        parts = [
            "uring",
            self.memory,
            size,
            "async" if self.force_async else "inline",
            f"wq={self.iowq if self.iowq is not None else '-'}",
            f"rings={self.rings}",
            f"flags={self.flags}",
        ]
        parts += ["sqpoll"] if self.sqpoll else []
        parts += [] if self.fixed else ["READ"]
        parts += ["bound-only"] if self.bound_only else []
        return " ".join(parts)


def focus(base: Config, cpus: int) -> list[Config]:
    """The few configurations that matter, for comparing destination sizes (--arena A,B,...)."""
    return [
        replace(base, iowq=None),
        replace(base, iowq=cpus),
        replace(base, iowq=max(1, cpus - 1)),
        replace(base, iowq=max(1, cpus - 2)),
        replace(base, iowq=cpus, read_size=8 * MiB),
        replace(base, iowq=cpus, flags="single"),
        replace(base, iowq=cpus, memory="cuda+thp"),
        replace(base, iowq=cpus, memory="cuda"),
        replace(base, iowq=cpus, memory="private"),
        Config("preadv", "thp", 4 * MiB, 64, rings=cpus),
        Config("preadv", "thp", 16 * MiB, 64, rings=cpus),
        replace(base, iowq=None),
    ]


def sweep(base: Config, cpus: int) -> list[Config]:
    """The configurations, grouped by the question each group answers (module docstring)."""
    old = replace(base, memory="shared", iowq=None)  # what bench/ingest.py's raw row measured so far
    configs = [old, replace(old, memory="cuda")]
    # destination memory
    configs += [replace(base, memory=m) for m in ("private", "thp", "cuda", "cuda+thp")]
    configs += [replace(base, memory=m, iowq=cpus) for m in ("private", "cuda", "cuda+thp")]
    # io-wq worker caps, 4 MiB reads at depth 128
    configs += [replace(base, iowq=n) for n in (4, 8, 12, max(1, cpus - 2), cpus, 24, 32, 64)]
    configs += [replace(base, iowq=n, bound_only=True) for n in (4, cpus)]
    # read size and depth, kernel cap and one worker per CPU
    for iowq in (None, cpus):
        configs += [
            replace(base, read_size=r * MiB, depth=d, iowq=iowq)
            for r, d in ((1, 128), (1, 256), (2, 128), (4, 32), (4, 64), (4, 256), (8, 64), (8, 128), (16, 32))
        ]
    # inline reads (no IOSQE_ASYNC): the submitting threads copy, one ring each
    configs += [replace(base, force_async=False, rings=n, depth=4) for n in (1, 4, 8, 12, cpus)]
    configs += [replace(base, force_async=False, rings=cpus, depth=d) for d in (1, 16)]
    # several rings (threads), each with its own io-wq
    for rings in (2, 4):
        configs += [replace(base, rings=rings, depth=128 // rings, iowq=iowq) for iowq in (None, cpus // rings)]
    # setup flags, SQPOLL, plain READ
    configs += [replace(base, iowq=cpus, flags=name) for name in FLAGS if name != "-"]
    configs += [replace(base, iowq=cpus, sqpoll=True), replace(base, sqpoll=True)]
    configs += [replace(base, fixed=False), replace(base, fixed=False, iowq=cpus)]
    # the preadv fallback: worker threads, each os.preadv straight into the memory
    for memory in ("thp", "private", "cuda"):
        configs += [Config("preadv", memory, 4 * MiB, 64, rings=n) for n in (8, 12, cpus, 32)]
    configs += [Config("preadv", "thp", r * MiB, 64, rings=cpus) for r in (1, 16)]
    configs += [old, replace(base, iowq=cpus)]  # drift check: the first rows again, last
    return configs


# ---- memory --------------------------------------------------------------------------------


class Memories:
    """One destination region per kind, made on first use and kept (pinning is slow)."""

    def __init__(self, nbytes: int, cuda: bool) -> None:
        self.nbytes = nbytes
        if cuda:  # the context first, so no kind's set-up time includes it
            from vyre_runtime.backends.cuda import driver

            driver.Context(0).enter()
        self.regions: dict[str, np.ndarray] = {}
        self.setup_s: dict[str, float] = {}
        self._pinned: list[int] = []

    def get(self, kind: str) -> np.ndarray:
        if kind not in self.regions:
            started = time.perf_counter()
            self.regions[kind] = self._make(kind)
            self.setup_s[kind] = time.perf_counter() - started
        return self.regions[kind]

    def _make(self, kind: str) -> np.ndarray:
        import mmap

        if kind == "shared":
            return np.frombuffer(mmap.mmap(-1, self.nbytes), dtype=np.uint8)
        if kind in ("private", "cuda"):
            array = hostmem.anonymous(self.nbytes, huge_pages=False)
        elif kind in ("thp", "cuda+thp"):
            array = hostmem.anonymous(self.nbytes, huge_pages=True)
        else:
            raise SystemExit(f"unknown memory kind {kind!r}")
        if kind.startswith("cuda"):
            from vyre_runtime.backends.cuda import driver

            flags = driver.cu.CU_MEMHOSTREGISTER_DEVICEMAP | driver.cu.CU_MEMHOSTREGISTER_PORTABLE
            pointer = array.ctypes.data
            driver.check(driver.cu.cuMemHostRegister(pointer, array.nbytes, flags), "cuMemHostRegister")
            self._pinned.append(pointer)
        else:
            array[:: mmap.PAGESIZE] = 0  # fault it in now (cuMemHostRegister does it for the cuda kinds)
        return array

    def close(self) -> None:
        if self._pinned:
            from vyre_runtime.backends.cuda import driver

            for pointer in self._pinned:
                driver.check(driver.cu.cuMemHostUnregister(pointer), "cuMemHostUnregister")


def cuda_usable() -> str | None:
    try:
        from vyre_runtime.backends.selection import cuda_unavailable_reason

        return cuda_unavailable_reason()
    except Exception as error:  # reported; the CPU kinds still run
        return f"{type(error).__name__}: {error}"


# ---- one configuration ---------------------------------------------------------------------


def open_one(config: Config, depth: int) -> Reader:
    if config.reader == "preadv":
        return PreadvReader(depth, workers=config.rings)
    reader = IoUringReader(
        depth,
        sqpoll=config.sqpoll,
        force_async=config.force_async,
        iowq_workers=KERNEL_CAPS if config.bound_only or config.iowq is None else config.iowq,
        setup_flags=FLAGS[config.flags],
    )
    if config.bound_only and config.iowq is not None:
        reader.ring.register_iowq_max_workers(config.iowq, 0)
    return reader


class Shared:
    """What the ring threads of one configuration share: the next read's index, per run."""

    def __init__(self) -> None:
        self.counter = itertools.count()


def drive(reader: Reader, handle: int, shared: Shared, slots: list[tuple[int, int]], config: Config, size: int) -> int:
    """Read the file's pieces handed out by ``shared.counter`` until none is left; bytes read."""
    reads = -(-size // config.read_size)
    lengths: dict[int, int] = {}
    issued = done = 0
    exhausted = False
    while True:
        while not exhausted and reader.in_flight < config.depth:
            index = next(shared.counter)
            if index >= reads:
                exhausted = True
                break
            address, buffer = slots[issued % len(slots)]
            offset = index * config.read_size
            lengths[index] = min(config.read_size, size - offset)
            reader.prep_read(handle, address, lengths[index], offset, index, buffer if config.fixed else -1)
            issued += 1
        if reader.in_flight == 0:
            return done
        for completion in reader.wait(1, timeout=30.0):
            if completion.result != lengths.pop(completion.user_data):
                raise OSError(f"read {completion.user_data} returned {completion.result}")
            done += completion.result


def measure(config: Config, region: np.ndarray, path: Path, repeat: int) -> dict:
    """``repeat`` whole-file reads with ``config``; GB/s of each, the io-wq workers seen, set-up s."""
    size = path.stat().st_size
    threads = 1 if config.reader == "preadv" else config.rings
    base = region.ctypes.data
    starts = range(0, region.nbytes, MAX_BUFFER_BYTES)
    buffers = [(base + start, min(MAX_BUFFER_BYTES, region.nbytes - start)) for start in starts]
    pieces = range(0, region.nbytes - config.read_size + 1, config.read_size)
    all_slots = [(base + start, start // MAX_BUFFER_BYTES) for start in pieces]
    ready, start, end, counted = (threading.Barrier(threads + 1) for _ in range(4))  # counted: close after all
    shared = Shared()
    errors: list[BaseException] = []
    setup: list[float] = []
    finished = [0.0] * threads
    lock, all_done, remaining = threading.Lock(), threading.Event(), [threads]

    def ring_thread(k: int) -> None:
        began = time.perf_counter()
        fd = os.open(path, os.O_RDONLY)
        reader = None
        try:
            reader = open_one(config, config.depth)
            reader.register_buffers(buffers)
            handle = reader.add_file(fd)
            setup.append(time.perf_counter() - began)
            ready.wait()
            for _ in range(repeat):
                start.wait()
                drive(reader, handle, shared, all_slots[k::threads], config, size)
                finished[k] = time.perf_counter()  # here: the main thread may wake late (the GIL)
                with lock:
                    remaining[0] -= 1
                    if remaining[0] == 0:
                        all_done.set()
                end.wait()
            counted.wait()
            reader.remove_file(handle)
        except threading.BrokenBarrierError:
            pass
        except BaseException as error:  # handed to the main thread
            errors.append(error)
            for barrier in (ready, start, end, counted):
                barrier.abort()
        finally:
            if reader is not None:
                reader.close()
            os.close(fd)

    settle = time.monotonic() + 2.0  # io-wq workers of the last configuration's threads exit on their own time
    while count_threads("iou-wrk") and time.monotonic() < settle:
        time.sleep(0.01)
    workers = [threading.Thread(target=ring_thread, args=(k,), daemon=True) for k in range(threads)]
    for worker in workers:
        worker.start()
    rates = []
    iou_workers = 0
    try:
        ready.wait()
        for run in range(repeat):
            shared.counter = itertools.count()
            remaining[0] = threads
            all_done.clear()
            began = time.perf_counter()  # before the release: the ring threads may run first
            start.wait()
            while not all_done.wait(0.02 if run == 0 else None):  # io-wq workers alive, sampled in run 1
                iou_workers = max(iou_workers, count_threads("iou-wrk"))
            end.wait()
            rates.append(size / (max(finished) - began) / GB)
        counted.wait()
    except threading.BrokenBarrierError:
        iou_workers = -1
    for worker in workers:
        worker.join(60)
    if errors:
        return {"error": f"{type(errors[0]).__name__}: {errors[0]}"}
    return {
        "best": max(rates),
        "median": statistics.median(rates),
        "runs": [round(r, 2) for r in rates],
        "iou_wrk": iou_workers,
        "setup_s": round(max(setup), 3),
    }


def count_threads(prefix: str) -> int:
    count = 0
    for task in Path("/proc/self/task").iterdir():
        with contextlib.suppress(OSError):  # a thread that just ended
            count += (task / "comm").read_text().startswith(prefix)
    return count


# ---- the file and the machine --------------------------------------------------------------


def make_file(path: Path, size: int) -> None:
    """``size`` bytes (a random 64 MiB block, each copy stamped with its index), on disk and cached."""
    if path.exists() and path.stat().st_size == size:
        return
    block = np.random.default_rng(7).integers(0, 256, 64 * MiB, dtype=np.uint8)
    with open(path, "wb") as handle:
        for index, start in enumerate(range(0, size, block.nbytes)):
            block[:8] = np.frombuffer(index.to_bytes(8, "little"), dtype=np.uint8)
            handle.write(block[: min(block.nbytes, size - start)].tobytes())
        handle.flush()
        os.fsync(handle.fileno())


def warm(path: Path) -> float:
    began = time.perf_counter()
    with open(path, "rb", buffering=0) as handle:
        buffer = bytearray(64 * MiB)
        while handle.readinto(buffer):
            pass
    return path.stat().st_size / (time.perf_counter() - began) / GB


def host_report() -> dict:
    report: dict = {"kernel": platform.release(), "cpus": os.cpu_count(), "thp": hostmem.thp_mode()}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        wanted = re.compile(r"(Model name|NUMA|Socket|Thread|Core|L3)")
        report["lscpu"] = [line for line in lscpu.splitlines() if wanted.match(line)]
    except (OSError, subprocess.TimeoutExpired) as error:
        report["lscpu"] = str(error)
    probe = probe_features()
    report["io_uring"] = {k: probe.get(k) for k in ("available", "reason", "memlock_limit", "sqpoll")}
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="4GiB")
    parser.add_argument("--dir", default=str(ROOT / "bench" / "data"))
    parser.add_argument(
        "--arena", default="512MiB", help="destination bytes, or several (comma-separated): each runs the set"
    )
    parser.add_argument("--set", default="full", choices=["full", "focus"], help="the sweep, or its key rows")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", help="measure only configurations whose label matches this regex")
    parser.add_argument("--budget-s", type=float, default=0.0, help="stop starting configurations after this")
    parser.add_argument("--list", action="store_true", help="print the configurations and exit")
    args = parser.parse_args()
    cpus = os.cpu_count() or 1
    configs = (sweep if args.set == "full" else focus)(Config(), cpus)
    if args.only:
        configs = [c for c in configs if re.search(args.only, c.label())]
    no_cuda = cuda_usable()
    if no_cuda is not None:
        print(f"CUDA unavailable ({no_cuda}): skipping the cuda memory kinds")
        configs = [c for c in configs if not c.memory.startswith("cuda")]
    if args.list:
        print("\n".join(c.label() for c in configs))
        return 0
    size = parse_size(args.size)
    directory = Path(args.dir)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"uring-rate-{size}.bin"
    began = time.perf_counter()
    make_file(path, size)
    print(f"file {path} ({size / GB:.2f} GB) ready in {time.perf_counter() - began:.1f} s")
    print(f"warm-up read (Python readinto, 64 MiB): {warm(path):.2f} GB/s")
    host = host_report()
    print(json.dumps(host, indent=1))
    out = ROOT / "bench" / "results" / "uring-rate.json"
    out.parent.mkdir(exist_ok=True)
    arenas = [parse_size(text) for text in args.arena.split(",")]
    document = {
        "bench": "uring_rate",
        "machine": machine(),
        "commit": git_commit(),
        "host": host,
        "size": size,
        "arenas": arenas,
        "repeat": args.repeat,
        "memory_setup_s": {},
        "rows": [],
    }
    sweep_began = time.perf_counter()
    for arena in arenas:
        print(f"\narena {arena / MiB:.0f} MiB\n{'configuration':<66}{'best':>7}{'median':>8}  iou-wrk  setup_s")
        memories = Memories(arena, cuda=no_cuda is None and any(c.memory.startswith("cuda") for c in configs))
        try:
            for config in configs:
                if args.budget_s and time.perf_counter() - sweep_began > args.budget_s:
                    print(f"budget of {args.budget_s} s spent")
                    break
                row = measure(config, memories.get(config.memory), path, args.repeat)
                document["rows"].append({"label": config.label(), "arena": arena, **asdict(config), **row})
                if "error" in row:
                    print(f"{config.label():<66}  error: {row['error']}", flush=True)
                else:
                    rates = f"{row['best']:7.2f}{row['median']:8.2f}"
                    print(f"{config.label():<66}{rates}  {row['iou_wrk']:7d}  {row['setup_s']:.3f}", flush=True)
                document["memory_setup_s"][arena] = {k: round(v, 3) for k, v in memories.setup_s.items()}
                document["anon_huge_page_bytes"] = hostmem.anon_huge_page_bytes()
                out.write_text(json.dumps(document, indent=1))
        finally:
            memories.close()
        print(f"memory set-up s: {document['memory_setup_s'].get(arena)}")
    measured = [r for r in document["rows"] if "best" in r]
    if measured:
        print("\nfastest:")
        for r in sorted(measured, key=lambda r: -r["best"])[:10]:
            print(f"  {r['arena'] // MiB:>5} MiB {r['label']:<66}{r['best']:7.2f}{r['median']:8.2f}")
    print(f"wrote {out}")
    return 0 if all("error" not in r for r in document["rows"]) else 1


if __name__ == "__main__":
    sys.exit(main())
