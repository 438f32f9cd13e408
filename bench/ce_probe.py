"""Probe of a different ingest shape: io_uring into a SMALL pinned ring, the copy engine moves each
landed chunk into device memory, and the chunk is read again as soon as its copy is done.

Why (BENCHMARKS.md, session 4): the stream keeps a chunk pinned until the megakernel's run over it
finishes; one worker block pulls a 16 MiB chunk over PCIe in ~4.6 ms, so ~100 chunks (1.5 GiB)
must be in flight and the arena never stays in the L3. Reads into a 32-64 MiB destination ran ~50%
faster (bench/uring_rate.py). Handing the PCIe transfer to a copy engine (no SM time, ~50 GB/s)
frees each chunk within a copy's time, so a ring of a few chunks could stay hot. This probe
measures that ceiling next to KvikIO in one process, with the resident megakernel running, so the
next step (the stream staging chunks with the copy engine) is chosen on numbers.

    python bench/ce_probe.py [--size 4GiB] [--dir DIR] [--rings 4x16MiB,8x16MiB,16x16MiB,16x4MiB]

Rows (GB/s over one warm file; the bytes are not consumed, so nothing is verified here):
- raw io_uring into each ring shape (reads only);
- io_uring + copy engine into device memory for each ring shape, copies on one stream and
  alternating over two (two copy engines);
- the copy engine alone, ring -> device, looping (its ceiling with the kernel resident);
- KvikIO pread (16 threads, 4 MiB) into device memory, before the megakernel starts.
Writes bench/results/ce-probe.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from ingest import GB, kvikio_pread, make_file, warm  # noqa: E402
from provenance import git_commit, machine  # noqa: E402

from vyre_runtime.chunking import parse_size  # noqa: E402
from vyre_runtime.ingest.reader import open_reader  # noqa: E402
from vyre_runtime.megakernel import Megakernel  # noqa: E402

DEVICE_SLOTS_BYTES = 1 << 30  # device memory the copies land in, round robin


def parse_ring(text: str) -> tuple[int, int]:
    count, _, chunk = text.partition("x")
    return int(count), parse_size(chunk)


class Ring:
    """``count`` chunks of ``chunk`` bytes in one pinned, io_uring-registered block."""

    def __init__(self, driver, memory, count: int, chunk: int) -> None:
        self.driver, self.memory, self.count, self.chunk = driver, memory, count, chunk
        cu = driver.cu
        flags = cu.CUevent_flags.CU_EVENT_DISABLE_TIMING
        self.events = [driver.check(cu.cuEventCreate(flags), "cuEventCreate") for _ in range(count)]

    def address(self, index: int) -> int:
        return self.memory.host_pointer + index * self.chunk

    def copy_done(self, index: int) -> bool:
        result = self.driver.cu.cuEventQuery(self.events[index])[0]
        if result == self.driver.cu.CUresult.CUDA_ERROR_NOT_READY:
            return False
        self.driver.check((result,), "cuEventQuery")
        return True


def pipeline(
    path: Path, ring: Ring, device_pointer: int, streams: list, read_size: int, depth: int, copy: bool
) -> float:
    """GB/s of the file through the ring: reads of a chunk, then (``copy``) its copy-engine copy;
    a chunk is read again once its copy is done (without ``copy``: once its reads are)."""
    driver = ring.driver
    cu = driver.cu
    fd = os.open(path, os.O_RDONLY)
    size = os.fstat(fd).st_size
    reader = open_reader("io_uring", depth)
    try:
        reader.register_buffers([(ring.address(index), ring.chunk) for index in range(ring.count)])
        handle = reader.add_file(fd)
        free = list(range(ring.count))
        pending = [0] * ring.count  # reads in flight per chunk
        landed = [0] * ring.count  # bytes landed per chunk
        copying: list[int] = []
        offset = done = copies = 0
        started = time.perf_counter()
        while done < size:
            while free and offset < size and reader.in_flight + ring.chunk // read_size <= depth:
                index = free.pop()
                length = min(ring.chunk, size - offset)
                for piece in range(0, length, read_size):
                    got = min(read_size, length - piece)
                    user_data = index << 16 | pending[index]  # unique while in flight
                    reader.prep_read(handle, ring.address(index) + piece, got, offset + piece, user_data, index)
                    pending[index] += 1
                landed[index] = 0
                offset += length
            reader.submit()
            for index in list(copying):
                if ring.copy_done(index):
                    copying.remove(index)
                    free.append(index)
            wait = 0 if copying else 1
            for completion in reader.wait(wait, timeout=5.0) if reader.in_flight else []:
                if completion.result < 0:
                    raise OSError(-completion.result, os.strerror(-completion.result))
                index = completion.user_data >> 16
                pending[index] -= 1
                landed[index] += completion.result
                if pending[index]:
                    continue
                done += landed[index]
                if not copy:
                    free.append(index)
                    continue
                target = device_pointer + (copies * ring.chunk) % DEVICE_SLOTS_BYTES
                stream = streams[copies % len(streams)]  # several streams: several copy engines
                driver.check(
                    cu.cuMemcpyHtoDAsync(target, ring.address(index), landed[index], stream.handle),
                    "cuMemcpyHtoDAsync",
                )
                driver.check(cu.cuEventRecord(ring.events[index], stream.handle), "cuEventRecord")
                copies += 1
                copying.append(index)
        for stream in streams if copy else []:
            stream.wait(60.0, "the copies")
        return size / (time.perf_counter() - started) / GB
    finally:
        reader.close()
        os.close(fd)


def copy_engine_alone(ring: Ring, device_pointer: int, stream, total: int) -> float:
    cu = ring.driver.cu
    started = time.perf_counter()
    for copied in range(0, total, ring.chunk):
        index = (copied // ring.chunk) % ring.count
        target = device_pointer + copied % DEVICE_SLOTS_BYTES
        ring.driver.check(cu.cuMemcpyHtoDAsync(target, ring.address(index), ring.chunk, stream.handle), "copy")
    stream.wait(60.0, "the copies")
    return total / (time.perf_counter() - started) / GB


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="4GiB")
    parser.add_argument("--dir", default=str(ROOT / "bench" / "data"))
    parser.add_argument("--rings", default="4x16MiB,16x16MiB,16x4MiB,32x4MiB,96x16MiB")
    parser.add_argument("--read-size", default="4MiB")
    parser.add_argument("--depth", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    from vyre_runtime.backends.cuda import driver

    size, read_size = parse_size(args.size), parse_size(args.read_size)
    path = Path(args.dir) / f"ingest-{size}.bin"
    Path(args.dir).mkdir(parents=True, exist_ok=True)
    make_file(path, size)
    warm(path)
    rows: dict[str, float | str] = {}
    outcomes = [kvikio_pread(path) for _ in range(args.repeat)]
    numbers = [o for o in outcomes if isinstance(o, float)]
    rows["KvikIO pread 16 threads 4 MiB"] = max(numbers) if numbers else str(outcomes[0])
    driver.Context(0).enter()  # every allocation before the megakernel: freeing waits for it
    shapes = [parse_ring(text) for text in args.rings.split(",")]
    rings = [Ring(driver, driver.MappedMemory(count * chunk), count, chunk) for count, chunk in shapes]
    device = driver.DeviceMemory(DEVICE_SLOTS_BYTES)
    streams = [driver.Stream() for _ in range(2)]
    print(f"KvikIO pread 16 threads 4 MiB: {rows['KvikIO pread 16 threads 4 MiB']}", flush=True)
    with Megakernel(backend="cuda", slots=256):  # resident and polling while the copies run
        for ring in rings:
            name = f"{ring.count}x{ring.chunk >> 20}MiB"
            measured = {
                f"raw io_uring, ring {name}": ([], False),
                f"io_uring + copy engine (1 stream), ring {name}": (streams[:1], True),
                f"io_uring + copy engine (2 streams), ring {name}": (streams, True),
            }
            for row, (using, copy) in measured.items():
                rows[row] = max(
                    pipeline(path, ring, device.pointer, using, read_size, args.depth, copy) for _ in range(args.repeat)
                )
                print(f"{row}: {rows[row]:.2f} GB/s", flush=True)
        ring = rings[0]
        rows[f"copy engine alone, ring {ring.count}x{ring.chunk >> 20}MiB"] = copy_engine_alone(
            ring, device.pointer, streams[0], size
        )
    print(f"\n{'row':<48}{'GB/s':>8}")
    for name, value in rows.items():
        print(f"{name:<48}{value:>8.2f}" if isinstance(value, float) else f"{name:<48}  {value}")
    out = ROOT / "bench" / "results" / "ce-probe.json"
    out.parent.mkdir(exist_ok=True)
    document = {"bench": "ce-probe", "machine": machine(), "commit": git_commit(), "rows": rows}
    out.write_text(json.dumps(document, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
