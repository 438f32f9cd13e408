"""What a user would do without a resident megakernel, measured through cuda-bindings.

- launch + synchronize: cuLaunchKernel of an empty kernel, then cuStreamSynchronize (latency)
- async launches: back-to-back cuLaunchKernel, one synchronize at the end (throughput)
- graph replay + synchronize: a captured 1-node graph (latency)
- 100-node graph: a captured graph of 100 tiny kernels, replayed (throughput, kernels/s)
- ping-pong floor: no launch at all. One resident GPU thread polls a word of host-mapped memory
  and writes an ack the host polls (a Python loop, and the same loop compiled): what a round trip
  between a host thread and a resident kernel costs on this machine, the floor a channel call
  sits on (../shared/design/MEASURED-H100.md measured 4.6 us with a Python loop)

Used by bench/dispatch.py --backend cuda; runnable alone on a GPU machine.
"""

from __future__ import annotations

import ctypes
import time

import numpy as np

EMPTY_KERNEL = b'extern "C" __global__ void empty_kernel(unsigned int* p) { if (p && threadIdx.x == 1024) p[0] = 1; }'
# words[0]: the host's ping; words[16] (the next 64-byte line): the kernel's ack; STOP ends it
PING_KERNEL = b"""extern "C" __global__ void ping_kernel(volatile unsigned int* words) {
    unsigned int last = 0;
    while (true) {
        unsigned int seen = words[0];
        if (seen != last) { last = seen; words[16] = seen; if (seen == 0xffffffffu) return; }
    }
}"""
PING_STOP = 0xFFFFFFFF
ACK_WORD = 16
# the host loop compiled: n round trips, each one's ns into out[]
PING_C = r"""
#include <stdint.h>
#include <time.h>
static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}
int ping_loop(volatile uint32_t* words, uint32_t first, int n, int64_t* out) {
    for (int i = 0; i < n; i++) {
        uint32_t v = first + (uint32_t)i;
        int64_t t0 = now_ns();
        __atomic_store_n(&words[0], v, __ATOMIC_RELEASE);
        int64_t spins = 0;
        while (__atomic_load_n(&words[16], __ATOMIC_ACQUIRE) != v) {
            if (++spins > 2000000000LL) return -1;
            __builtin_ia32_pause();
        }
        out[i] = now_ns() - t0;
    }
    return 0;
}
"""


def _check(result: tuple, what: str) -> object:
    """cuda-bindings calls return (error, *values): raise on error, return the value(s)."""
    error, *values = result
    if int(error) != 0:
        raise RuntimeError(f"{what} failed: {error}")
    return values[0] if len(values) == 1 else tuple(values)


def _percentiles(samples_ns: list[int]) -> dict[str, float]:
    values = np.asarray(samples_ns, dtype=np.float64) / 1000.0
    p50, p99 = np.percentile(values, [50, 99])
    return {"p50_us": float(p50), "p99_us": float(p99), "per_s": float(1e6 / values.mean())}


def _compiled_ping_loop():
    """PING_C built with the system C compiler (None without one): the host side of the floor
    with no interpreter in it, as a compiled channel call has none."""
    import shutil
    import subprocess
    import tempfile

    compiler = shutil.which("cc") or shutil.which("gcc")
    if not compiler:
        return None
    scratch = tempfile.mkdtemp(prefix="vyre-ping-")
    source, library = f"{scratch}/ping.c", f"{scratch}/ping.so"
    with open(source, "w") as handle:
        handle.write(PING_C)
    try:
        subprocess.run([compiler, "-O2", "-shared", "-fPIC", "-o", library, source], check=True, timeout=60)
        function = ctypes.CDLL(library).ping_loop
    except (OSError, subprocess.SubprocessError):
        return None
    function.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_void_p]
    function.restype = ctypes.c_int
    return function


def ping_pong(driver, nvrtc_compile, round_trips: int) -> dict[str, dict]:
    """The floor: host-mapped ping, one resident polling GPU thread, host-polled ack."""
    function = nvrtc_compile(PING_KERNEL, b"ping_kernel")
    flags = driver.CU_MEMHOSTALLOC_DEVICEMAP | driver.CU_MEMHOSTALLOC_PORTABLE
    host = _check(driver.cuMemHostAlloc(4096, flags), "cuMemHostAlloc")
    ctypes.memset(host, 0, 4096)
    device = _check(driver.cuMemHostGetDevicePointer(host, 0), "cuMemHostGetDevicePointer")
    stream = _check(driver.cuStreamCreate(driver.CUstream_flags.CU_STREAM_NON_BLOCKING), "cuStreamCreate")
    argument = ctypes.c_uint64(int(device))
    params = (ctypes.c_void_p * 1)(ctypes.addressof(argument))
    _check(driver.cuLaunchKernel(function, 1, 1, 1, 1, 1, 1, 0, stream, ctypes.addressof(params), 0), "launch")
    words = memoryview((ctypes.c_uint32 * 32).from_address(host)).cast("B").cast("I")
    rows: dict[str, dict] = {}
    value = 0
    try:
        samples = []
        for i in range(200 + round_trips):
            value += 1
            started = time.perf_counter_ns()
            words[0] = value
            for _ in range(100_000_000):  # bounded (seconds): a kernel that never answers raises
                if words[ACK_WORD] == value:
                    break
            else:
                raise RuntimeError("ping kernel does not answer")
            if i >= 200:
                samples.append(time.perf_counter_ns() - started)
        rows["floor: ping-pong, resident thread (Python loop)"] = _percentiles(samples)
        loop = _compiled_ping_loop()
        if loop is not None:
            out = (ctypes.c_int64 * (200 + round_trips))()
            if loop(host, value + 1, 200 + round_trips, out) == 0:
                rows["floor: ping-pong, resident thread (C loop)"] = _percentiles(list(out)[200:])
            value += 200 + round_trips
    finally:
        words[0] = PING_STOP
        _check(driver.cuStreamSynchronize(stream), "cuStreamSynchronize")
        _check(driver.cuStreamDestroy(stream), "cuStreamDestroy")
        _check(driver.cuMemFreeHost(host), "cuMemFreeHost")
    return rows


def measure(round_trips: int = 3000, async_launches: int = 20000, graph_replays: int = 300) -> dict[str, dict]:
    from cuda.bindings import driver, nvrtc

    _check(driver.cuInit(0), "cuInit")
    device = _check(driver.cuDeviceGet(0), "cuDeviceGet")
    context = _check(driver.cuDevicePrimaryCtxRetain(device), "cuDevicePrimaryCtxRetain")
    _check(driver.cuCtxSetCurrent(context), "cuCtxSetCurrent")
    major = _check(
        driver.cuDeviceGetAttribute(driver.CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, device),
        "cc",
    )
    minor = _check(
        driver.cuDeviceGetAttribute(driver.CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, device),
        "cc",
    )
    modules = []

    def compile_kernel(source: bytes, name: bytes):
        program = _check(nvrtc.nvrtcCreateProgram(source, name + b".cu", 0, [], []), "nvrtcCreateProgram")
        options = [f"--gpu-architecture=sm_{major}{minor}".encode()]
        _check(nvrtc.nvrtcCompileProgram(program, len(options), options), "nvrtcCompileProgram")
        size = _check(nvrtc.nvrtcGetCUBINSize(program), "nvrtcGetCUBINSize")
        cubin = bytearray(size)  # a fresh buffer: NVRTC writes into it
        _check(nvrtc.nvrtcGetCUBIN(program, cubin), "nvrtcGetCUBIN")
        modules.append(_check(driver.cuModuleLoadData(bytes(cubin)), "cuModuleLoadData"))
        return _check(driver.cuModuleGetFunction(modules[-1], name), "cuModuleGetFunction")

    function = compile_kernel(EMPTY_KERNEL, b"empty_kernel")
    stream = _check(driver.cuStreamCreate(driver.CUstream_flags.CU_STREAM_NON_BLOCKING), "cuStreamCreate")
    argument = ctypes.c_uint64(0)
    params = (ctypes.c_void_p * 1)(ctypes.addressof(argument))

    def launch() -> None:
        _check(
            driver.cuLaunchKernel(function, 1, 1, 1, 32, 1, 1, 0, stream, ctypes.addressof(params), 0),
            "launch",
        )

    def sync() -> None:
        _check(driver.cuStreamSynchronize(stream), "cuStreamSynchronize")

    rows: dict[str, dict] = {}
    for _ in range(200):
        launch()
        sync()
    samples = []
    for _ in range(round_trips):
        started = time.perf_counter_ns()
        launch()
        sync()
        samples.append(time.perf_counter_ns() - started)
    rows["baseline: launch + synchronize"] = _percentiles(samples)

    started = time.perf_counter()
    for _ in range(async_launches):
        launch()
    sync()
    rows["baseline: async launches"] = {"slots_per_s": async_launches / (time.perf_counter() - started)}

    def capture(nodes: int):
        _check(
            driver.cuStreamBeginCapture(stream, driver.CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_GLOBAL),
            "cuStreamBeginCapture",
        )
        for _ in range(nodes):
            launch()
        graph = _check(driver.cuStreamEndCapture(stream), "cuStreamEndCapture")
        return _check(driver.cuGraphInstantiate(graph, 0), "cuGraphInstantiate")

    one = capture(1)
    samples = []
    for _ in range(200):
        _check(driver.cuGraphLaunch(one, stream), "cuGraphLaunch")
        sync()
    for _ in range(round_trips):
        started = time.perf_counter_ns()
        _check(driver.cuGraphLaunch(one, stream), "cuGraphLaunch")
        sync()
        samples.append(time.perf_counter_ns() - started)
    rows["baseline: 1-node graph + synchronize"] = _percentiles(samples)

    hundred = capture(100)
    _check(driver.cuGraphLaunch(hundred, stream), "cuGraphLaunch")
    sync()
    started = time.perf_counter()
    for _ in range(graph_replays):
        _check(driver.cuGraphLaunch(hundred, stream), "cuGraphLaunch")
    sync()
    rows["baseline: 100-node graph replay"] = {"slots_per_s": 100 * graph_replays / (time.perf_counter() - started)}
    _check(driver.cuStreamDestroy(stream), "cuStreamDestroy")
    rows.update(ping_pong(driver, compile_kernel, round_trips))
    for module in modules:
        _check(driver.cuModuleUnload(module), "cuModuleUnload")
    return rows


if __name__ == "__main__":
    for name, row in measure().items():
        print(name, {k: round(v, 2) for k, v in row.items()})
