"""The stream's host cost per chunk run, without a GPU: runs/s and where the host's time goes.

    python bench/stream_host.py [--chunk-size 64KiB] [--size 256MiB] [--programs 1] [--fuse/--no-fuse]
        [--chunks 96] [--latency-us 20] [--repeat 3] [--profile] [--top 25]

The CUDA backend's host code runs as it does on a GPU (record tables, run staging, the ring in
host-mapped memory, the stream's reads through io_uring); only what needs the driver is replaced,
and only here, in the bench: memory is "pinned" by taking its host address as its device address,
and the resident kernel is a C thread (compiled with cc on first use) that claims every PUBLISHED
slot, writes each run's context record as a run would (instructions, path), marks the slot DONE
and counts it, then sleeps ``--latency-us``. That thread never takes the GIL, as a GPU would not,
so what bounds runs/s is the host path itself: plan, read, submit (stage + publish), reap (run
result + release), merge.

Prints runs/s (the best of ``--repeat`` runs over a warmed arena and page cache), the per-stage
split of the stream thread's time (perf_counter around the pipeline's steps; nested stages are
indented and included in their parent), and with ``--profile`` a cProfile table of one run.
Compare runs/s only within one machine: the numbers are host CPU time.
"""

from __future__ import annotations

import argparse
import cProfile
import ctypes
import functools
import os
import pstats
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vyre_runtime.backends import selection  # noqa: E402
from vyre_runtime.backends.cuda import abi, driver  # noqa: E402
from vyre_runtime.backends.cuda import arena as staging_arena  # noqa: E402
from vyre_runtime.backends.cuda import device as cuda_device  # noqa: E402
from vyre_runtime.chunking import parse_size  # noqa: E402
from vyre_runtime.cli import load_program_file  # noqa: E402
from vyre_runtime.hostmem import anonymous  # noqa: E402
from vyre_runtime.ingest.stream import StreamOptions, StreamPipeline  # noqa: E402
from vyre_runtime.megakernel import Megakernel  # noqa: E402
from vyre_runtime.protocol.layout import ControlWord, DeviceState, SlotWord  # noqa: E402
from vyre_runtime.protocol.opcodes import BuiltinOpcode  # noqa: E402

# ---------------------------------------------------------------------- the stand-in device

DEVICE_SOURCE = r"""
#include <stdint.h>
#include <pthread.h>
#include <time.h>

typedef struct {
    uint32_t *image; uint32_t ring, slots, slot_words, done_count, doorbell_tail, doorbell_head;
    uint8_t *contexts; uint32_t context_cap, context_size;
    uint8_t *fused; uint32_t fused_cap, fused_size;
    uint8_t *fused_runs; uint32_t fused_run_cap, fused_run_size, fr_count, fr_contexts;
    uint32_t ctx_instructions, ctx_path, ctx_emitted, run_opcode, latency_ns;
    uint32_t ctx_capacity, ctx_records, records_per_run, record_words;
    volatile int stop; uint64_t completed, passes;
} Dev;

static pthread_t thread;

static void finish_context(Dev *d, uint32_t context, uint32_t length) {
    uint8_t *record = d->contexts + (uint64_t)(context % d->context_cap) * d->context_size;
    if (*(uint32_t *)record != context) return;
    /* records_per_run records of record_words words, written out of order as a GPU's lanes
       append them: word 0 ascends with the record's place in a sorted run, the rest is noise */
    uint32_t capacity = *(uint32_t *)(record + d->ctx_capacity), emitted = d->records_per_run;
    uint32_t *records = *(uint32_t **)(record + d->ctx_records);
    uint32_t kept = emitted < capacity ? emitted : capacity;
    for (uint32_t i = 0; records && i < kept; i++) {
        uint32_t place = (uint32_t)(((uint64_t)i * 2654435761u) % kept);
        for (uint32_t w = 0; w < d->record_words; w++)
            records[(uint64_t)i * d->record_words + w] = w == 0 ? place << 12 : place * 2246822519u + w;
    }
    *(uint32_t *)(record + d->ctx_emitted) = emitted;
    *(uint64_t *)(record + d->ctx_instructions) = 1 + length / 4;  /* a word per lane step */
    *(uint32_t *)(record + d->ctx_path) = 1;  /* interpreted */
}

static void *serve(void *arg) {
    Dev *d = arg;
    struct timespec pause = {0, d->latency_ns};
    while (!d->stop) {
        for (uint32_t slot = 0; slot < d->slots; slot++) {
            uint32_t *words = d->image + d->ring + (uint64_t)slot * d->slot_words;
            if (__atomic_load_n(&words[0], __ATOMIC_ACQUIRE) != 1) continue;  /* PUBLISHED */
            if (words[1] == d->run_opcode) {
                uint32_t handle = words[4], context = words[5], length = words[9];
                uint8_t *group = d->fused + (uint64_t)(handle % d->fused_cap) * d->fused_size;
                uint8_t *run = d->fused_runs + (uint64_t)(context % d->fused_run_cap) * d->fused_run_size;
                if (*(uint32_t *)group == handle && *(uint32_t *)run == context) {
                    uint32_t count = *(uint32_t *)(run + d->fr_count);
                    for (uint32_t m = 0; m < count && m < 8; m++)
                        finish_context(d, ((uint32_t *)(run + d->fr_contexts))[m], length);
                } else {
                    finish_context(d, context, length);
                }
            }
            for (int r = 12; r < 16; r++) words[r] = 0;
            __atomic_store_n(&words[0], 3, __ATOMIC_RELEASE);  /* DONE */
            __atomic_fetch_add(&d->image[d->done_count], 1, __ATOMIC_RELAXED);
            d->completed++;
        }
        d->image[d->doorbell_head] = __atomic_load_n(&d->image[d->doorbell_tail], __ATOMIC_ACQUIRE);
        d->passes++;
        nanosleep(&pause, 0);
    }
    return 0;
}

int device_start(Dev *d) { return pthread_create(&thread, 0, serve, d); }
int device_stop(Dev *d) { d->stop = 1; return pthread_join(thread, 0); }
"""


class _Dev(ctypes.Structure):
    _fields_ = [
        ("image", ctypes.c_void_p),
        *[(name, ctypes.c_uint32) for name in ("ring", "slots", "slot_words", "done_count", "tail", "head")],
        ("contexts", ctypes.c_void_p),
        ("context_cap", ctypes.c_uint32),
        ("context_size", ctypes.c_uint32),
        ("fused", ctypes.c_void_p),
        ("fused_cap", ctypes.c_uint32),
        ("fused_size", ctypes.c_uint32),
        ("fused_runs", ctypes.c_void_p),
        *[(name, ctypes.c_uint32) for name in ("fused_run_cap", "fused_run_size", "fr_count", "fr_contexts")],
        *[(name, ctypes.c_uint32) for name in ("instructions", "path", "emitted", "run_opcode", "latency_ns")],
        *[(name, ctypes.c_uint32) for name in ("capacity", "records", "records_per_run", "record_words")],
        ("stop", ctypes.c_int),
        ("completed", ctypes.c_uint64),
        ("passes", ctypes.c_uint64),
    ]


@functools.cache
def _device_library() -> ctypes.CDLL:
    build = Path(tempfile.gettempdir()) / f"vyre-stream-host-{os.getuid()}"
    build.mkdir(exist_ok=True)
    source, library = build / "device.c", build / "device.so"
    if not library.exists() or source.read_text() != DEVICE_SOURCE:
        source.write_text(DEVICE_SOURCE)
        subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-pthread", "-o", str(library), str(source)], check=True)
    return ctypes.CDLL(str(library))


class _FakeMapped(driver.MappedMemory):
    """Host memory whose 'device address' is its host address: nothing is pinned."""

    def __init__(self, nbytes: int, huge_pages: bool = True) -> None:
        self.nbytes = max(4096, -(-nbytes // 4096) * 4096)
        self.array = anonymous(self.nbytes, huge_pages)
        self.host_pointer = self.device_pointer = self.array.ctypes.data
        self.where = "the stand-in device"
        self.registered = True  # (the device reads registered memory in place)

    def unregister(self) -> None:
        self.registered = False

    def __del__(self) -> None:
        pass  # nothing was pinned: dropping it frees it (MappedMemory's would keep it)


class _FakeDeviceMemory:
    def __init__(self, nbytes: int) -> None:
        self.nbytes = max(1, nbytes)
        self._memory = anonymous(self.nbytes, huge_pages=False)  # somewhere real, never read
        self.pointer = self._memory.ctypes.data

    def free(self) -> None:
        self.pointer = 0


class _FakeContext:
    def __init__(self, ordinal: int = 0) -> None:
        pass

    def enter(self) -> None:
        pass

    def release(self) -> None:
        pass


class _FakeStream:
    def destroy(self) -> None:
        pass


def _start(self: cuda_device.CudaDevice) -> None:
    """CudaDevice.start: the C thread takes the kernel's place."""
    layout = self.layout
    context_fields, run_fields = abi.CONTEXT.fields, abi.FUSED_RUN.fields
    dev = _Dev(
        self.image.ctypes.data, layout.ring, layout.slots, 16, int(ControlWord.DONE_COUNT),
        int(ControlWord.DOORBELL_TAIL), int(ControlWord.DOORBELL_HEAD),
        self.contexts.ctypes.data, len(self.contexts), abi.CONTEXT.itemsize,
        self.fused.ctypes.data, len(self.fused), abi.FUSED.itemsize,
        self.fused_runs.ctypes.data, len(self.fused_runs), abi.FUSED_RUN.itemsize,
        run_fields["count"][1], run_fields["contexts"][1],
        context_fields["instructions"][1], context_fields["path"][1], context_fields["emitted"][1],
        int(BuiltinOpcode.RUN_PROGRAM), _LATENCY_NS[0],
        context_fields["emit_capacity"][1], context_fields["records"][1], _RECORDS[0], _RECORDS[1],
    )  # fmt: skip
    assert SlotWord.ARG0 == 4 and SlotWord.RESULT0 == 12  # the C thread's word offsets
    self._bench_dev = dev
    self.image[ControlWord.DEVICE_STATE] = DeviceState.SERVING
    if _device_library().device_start(ctypes.byref(dev)):
        raise RuntimeError("pthread_create failed")
    self._launched = True


def _stop(self: cuda_device.CudaDevice, timeout: float) -> bool:
    self.image[ControlWord.SHUTDOWN] = 1
    dev = getattr(self, "_bench_dev", None)
    if dev is not None and not dev.stop:
        _device_library().device_stop(ctypes.byref(dev))
    return True


_LATENCY_NS = [20_000]
_RECORDS = [0, 0]  # records each run emits, words per record


def install_stand_in(latency_us: float, records: int = 0, record_words: int = 0) -> None:
    """Replace the driver calls the CUDA backend's host code makes (this process only); each
    run then emits ``records`` records of ``record_words`` words (out of order, as a GPU's)."""
    _LATENCY_NS[0] = int(latency_us * 1000)
    _RECORDS[:] = [records, record_words]
    _device_library()
    info = driver.DeviceInfo(0, "stand-in (no GPU)", 132, (9, 0), True, 13000, 80 << 30)
    driver.init = lambda: None
    driver.device_info = lambda ordinal=0: info
    driver.Context = _FakeContext
    driver.MappedMemory = staging_arena.MappedMemory = _FakeMapped
    driver.DeviceMemory = _FakeDeviceMemory
    driver.Stream = _FakeStream
    driver.upload = lambda stream, pointer, data, timeout: None
    driver.mapped_device_pointer = lambda pointer, nbytes: None
    selection.cuda_unavailable_reason = lambda: None
    cuda_device._free = lambda resource: []
    cuda_device.CudaDevice.start = _start
    cuda_device.CudaDevice.stop = _stop
    cuda_device.CudaDevice._kernel_finished = lambda self: True


# ---------------------------------------------------------------------- stage timing


class Stages:
    """Inclusive perf_counter seconds per named step of the stream thread (nesting kept)."""

    def __init__(self) -> None:
        self.seconds: dict[tuple[str, ...], float] = {}
        self.calls: dict[tuple[str, ...], int] = {}
        self._local = threading.local()  # each thread's stages nest on their own

    def wrap(self, owner: Any, attribute: str, label: str) -> None:
        original = getattr(owner, attribute)

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            path = getattr(self._local, "path", None)
            if path is None:
                path = self._local.path = [threading.current_thread().name]
            path.append(label)
            key = tuple(path)
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - started
                self.calls[key] = self.calls.get(key, 0) + 1
                path.pop()

        setattr(owner, attribute, timed)

    def report(self, total: float, runs: int) -> None:
        print(f"{'stage':46s} {'share':>7s} {'us/run':>8s} {'calls':>8s}")
        shown: set[tuple[str, ...]] = set()
        for key in sorted(self.seconds):
            if key[:1] not in shown:
                shown.add(key[:1])
                print(f"[thread {key[0]}]")
            seconds = self.seconds[key]
            label = "  " * (len(key) - 2) + key[-1]
            print(f"{label:46s} {seconds / total:7.1%} {seconds / runs * 1e6:8.1f} {self.calls[key]:8d}")


def instrument(pipeline: StreamPipeline, megakernel: Megakernel) -> Stages:
    """Time the pipeline's steps (instance attributes: this pipeline only) and the backend's
    per-run calls they make (class attributes: the bench process only)."""
    stages = Stages()
    steps = ("_plan", "_pump", "_reap_reads", "_reap_runs", "_finish", "_wait_a_little", "_launch", "_launch_ready")
    for name in steps:
        if hasattr(pipeline, name):  # (the steps of the pipeline being measured)
            stages.wrap(pipeline, name, name.lstrip("_"))
    stages.wrap(megakernel, "poll", "poll (reap)")
    service, device = megakernel.service, megakernel.device
    for owner, name in (
        (service, "_complete_tracked"),
        (service, "_resolve"),
        (service, "release_slots"),
        (device, "run_prepared"),
        (device, "run_result"),
        (service, "release_run"),
        (megakernel, "_publish_validated"),
        (megakernel, "_publish_runs"),
    ):
        if hasattr(owner, name):
            stages.wrap(owner, name, name.lstrip("_"))
    return stages


# ---------------------------------------------------------------------- driving a stream


@contextmanager
def input_file(size: int) -> Iterator[str]:
    """A file of ``size`` bytes (pseudo-random text), in the page cache once written."""
    with tempfile.NamedTemporaryFile(prefix="vyre-stream-host-", dir=os.environ.get("TMPDIR")) as handle:
        block = np.random.default_rng(7).integers(32, 127, size=1 << 20, dtype=np.uint8).tobytes()
        for _ in range(size // len(block)):
            handle.write(block)
        handle.write(block[: size % len(block)])
        handle.flush()
        yield handle.name


def thread_cpu(thread: threading.Thread) -> float:
    """CPU seconds ``thread`` has used so far."""
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))


def run_once(pipeline: StreamPipeline, path: str, profile: cProfile.Profile | None = None) -> tuple[float, int, float]:
    """One stream over ``path``: (seconds, runs, host CPU seconds of the stream and service
    threads). The CPU time is the steadier measure on a shared machine: a busy neighbour
    stretches the seconds, not the work."""
    service = pipeline.megakernel.service._thread
    cpu_before = time.thread_time() + thread_cpu(service)
    started = time.perf_counter()
    if profile is not None:
        profile.enable()
    results = pipeline.run([path])
    if profile is not None:
        profile.disable()
    seconds = time.perf_counter() - started
    cpu = time.thread_time() + thread_cpu(service) - cpu_before
    if results[0].error is not None:
        raise results[0].error
    return seconds, pipeline.stats.runs, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunk-size", default="64KiB")
    parser.add_argument("--size", default="512MiB", help="input file size")
    parser.add_argument("--programs", type=int, default=1, help="copies of --program run over each chunk")
    parser.add_argument("--program", default="histogram", help="examples/NAME.vasm[,NAME...]")
    parser.add_argument("--fuse", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--chunks", type=int, default=96)
    parser.add_argument("--read-size", default="4MiB")
    parser.add_argument("--latency-us", type=float, default=20.0, help="the stand-in device's pause per pass")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--records", type=int, default=0, help="records the stand-in's runs emit each (out of order, as a GPU's)"
    )
    parser.add_argument("--emit-capacity", type=int, default=65536, help="records per chunk and program")
    parser.add_argument("--lanes", type=int, default=None, help="lanes per run (default: the stream's)")
    parser.add_argument(
        "--real", action="store_true", help="the real CUDA device (on a GPU machine): where the stream thread waits"
    )
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    programs = [load_program_file(str(ROOT / "examples" / f"{name}.vasm")) for name in args.program.split(",")]
    if args.records and args.real:
        parser.error("--records is the stand-in's (the real device emits what the programs do)")
    if args.records and len({program.emit_words for program in programs}) != 1:
        parser.error("--records needs programs that emit records of one size (the stand-in writes that many words)")
    if not args.real:
        install_stand_in(args.latency_us, args.records, programs[0].emit_words if args.records else 0)
    options = StreamOptions(
        chunk_size=parse_size(args.chunk_size),
        chunks=args.chunks,
        read_size=parse_size(args.read_size),
        fuse=args.fuse,
        lanes=args.lanes,
        emit_capacity=args.emit_capacity,
    )
    size = parse_size(args.size)
    with (
        input_file(size) as path,
        Megakernel(backend="cuda", jit="off") as megakernel,
        StreamPipeline(programs * args.programs, megakernel, options) as pipeline,
    ):
        run_once(pipeline, path)  # arena, rings, staging and the page cache warmed outside the numbers
        measured = [run_once(pipeline, path) for _ in range(args.repeat)]
        seconds, runs, _ = min(measured)
        cpu = min(cpu for _, _, cpu in measured)
        print(
            f"chunk {args.chunk_size} x {runs} runs ({args.programs} program(s), fuse={pipeline.options.fuse}): "
            f"{runs / seconds:,.0f} runs/s, {size / seconds / 1e9:.2f} GB/s, {seconds * 1e6 / runs:.1f} us/run; "
            f"host CPU (stream + service threads) {cpu * 1e6 / runs:.1f} us/run"
        )
        if args.profile:  # before the stage timers: they would show in it
            profile = cProfile.Profile()
            run_once(pipeline, path, profile)
            pstats.Stats(profile).sort_stats("tottime").print_stats(args.top)
        stages = instrument(pipeline, megakernel)
        thread_started = time.thread_time()
        seconds, runs, _ = run_once(pipeline, path)
        busy = time.thread_time() - thread_started
        print(f"instrumented run: {runs / seconds:,.0f} runs/s; stream thread on CPU {busy / seconds:.0%} of it")
        stages.report(seconds, runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
