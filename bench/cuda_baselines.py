"""What a user would do without a resident megakernel, measured through cuda-bindings.

- launch + synchronize: cuLaunchKernel of an empty kernel, then cuStreamSynchronize (latency)
- async launches: back-to-back cuLaunchKernel, one synchronize at the end (throughput)
- graph replay + synchronize: a captured 1-node graph (latency)
- 100-node graph: a captured graph of 100 tiny kernels, replayed (throughput, kernels/s)

Used by bench/dispatch.py --backend cuda; runnable alone on a GPU machine.
"""

from __future__ import annotations

import ctypes
import time

import numpy as np

EMPTY_KERNEL = b'extern "C" __global__ void empty_kernel(unsigned int* p) { if (p && threadIdx.x == 1024) p[0] = 1; }'


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
    program = _check(nvrtc.nvrtcCreateProgram(EMPTY_KERNEL, b"empty.cu", 0, [], []), "nvrtcCreateProgram")
    options = [f"--gpu-architecture=sm_{major}{minor}".encode()]
    _check(nvrtc.nvrtcCompileProgram(program, len(options), options), "nvrtcCompileProgram")
    size = _check(nvrtc.nvrtcGetCUBINSize(program), "nvrtcGetCUBINSize")
    cubin = bytearray(size)  # a fresh buffer: NVRTC writes into it
    _check(nvrtc.nvrtcGetCUBIN(program, cubin), "nvrtcGetCUBIN")
    module = _check(driver.cuModuleLoadData(bytes(cubin)), "cuModuleLoadData")
    function = _check(driver.cuModuleGetFunction(module, b"empty_kernel"), "cuModuleGetFunction")
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
    _check(driver.cuModuleUnload(module), "cuModuleUnload")
    return rows


if __name__ == "__main__":
    for name, row in measure().items():
        print(name, {k: round(v, 2) for k, v in row.items()})
