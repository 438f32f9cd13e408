"""The CUDA build without a GPU: the generated header pins every device record's layout, NVRTC
accepts it, and the megakernel compiles to a cubin (CI runs this on every change)."""

from __future__ import annotations

import re

import pytest

from vyre_runtime.backends.cuda import abi, build, header
from vyre_runtime.errors import BackendError


def _nvrtc_unavailable() -> str | None:
    try:
        build.nvrtc_version()
    except BackendError as error:
        return error.message
    return None


needs_nvrtc = pytest.mark.skipif(
    _nvrtc_unavailable() is not None,
    reason=f"NVRTC is not importable here ({_nvrtc_unavailable()}); install vyre-runtime[cuda]",
)

PROBE = """#include "vyre_abi.h"
extern "C" __device__ uint32_t vyre_isa_digest = VYRE_ISA_DIGEST;
extern "C" __global__ void vyre_megakernel(Params params) { ((uint32_t*)params.image)[0] = params.slots; }
"""


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(build.CACHE_ENV, str(tmp_path / "cache"))


def test_header_declares_every_record_with_its_size_and_offsets_asserted() -> None:
    text = header.generate()
    assert text.startswith("// GENERATED")
    for name, dtype in abi.RECORDS.items():
        assert f"struct {name} {{" in text
        assert f"static_assert(sizeof({name}) == {dtype.itemsize}," in text
        for field, (_, offset) in dtype.fields.items():
            assert f"static_assert(offsetof({name}, {field}) == {offset}," in text, f"{name}.{field}"


def test_header_carries_the_digests_the_host_checks() -> None:
    text = header.generate()
    from vyre_runtime.protocol.layout import layout_digest

    assert re.search(rf"#define VYRE_ISA_DIGEST {header.isa_digest():#010x}u", text)
    assert re.search(rf"#define VYRE_LAYOUT_DIGEST {layout_digest():#010x}u", text)


@needs_nvrtc
def test_nvrtc_accepts_the_header_so_every_static_assert_holds_on_the_device_compiler() -> None:
    result = build.compile_source(PROBE, "sm_90", symbols=("vyre_megakernel", "vyre_isa_digest"), use_cache=False)
    assert result.cubin.startswith(b"\x7fELF")
    assert result.names == {"vyre_megakernel": "vyre_megakernel", "vyre_isa_digest": "vyre_isa_digest"}


@needs_nvrtc
def test_a_second_build_comes_from_the_cache_and_a_changed_source_does_not() -> None:
    first = build.compile_source(PROBE, "sm_90")
    again = build.compile_source(PROBE, "sm_90")
    changed = build.compile_source(PROBE + "\n// changed\n", "sm_90")
    assert not first.cached and again.cached and not changed.cached
    assert again.cubin == first.cubin and again.key == first.key != changed.key


@needs_nvrtc
def test_a_compile_error_raises_backend_error_with_the_nvrtc_log() -> None:
    with pytest.raises(BackendError, match=r"megakernel\.cu\(3\): error") as caught:
        build.compile_source(PROBE.replace("params.slots;", "params.no_such_field;"), "sm_90", use_cache=False)
    assert "no_such_field" in caught.value.message


@needs_nvrtc
def test_an_architecture_nvrtc_cannot_target_is_refused_with_the_supported_list() -> None:
    with pytest.raises(BackendError, match="supports sm_"):
        build.compile_source(PROBE, "sm_1")
    with pytest.raises(BackendError, match="sm_XY"):
        build.compile_source(PROBE, "hopper")


@needs_nvrtc
@pytest.mark.skipif(not build.KERNEL_SOURCE.exists(), reason="megakernel.cu is not written yet")
def test_the_megakernel_compiles_for_sm_90_and_exports_what_the_host_looks_up() -> None:
    result = build.build_megakernel("sm_90", use_cache=False)
    assert result.cubin.startswith(b"\x7fELF") and len(result.cubin) > 10_000
    assert result.log == "", f"NVRTC warned:\n{result.log}"  # the kernel compiles clean
    assert set(result.names) == set(build.MEGAKERNEL_SYMBOLS)
    assert build.compile_megakernel("sm_90") == result.cubin  # the public entry point, cached


@needs_nvrtc
def test_the_megakernel_compiles_clean_with_lane_split_off(monkeypatch) -> None:
    """LANE_SPLIT=0u, the A/B build scripts/lanesplit_gpu.sh runs: every run's lanes in one block
    (the default build, split on, is compiled above and by every JIT variant)."""
    monkeypatch.setenv(build.DEFINES_ENV, "LANE_SPLIT=0u")
    result = build.build_megakernel("sm_90", use_cache=False)
    assert result.log == "", f"NVRTC warned:\n{result.log}"
    assert set(result.names) == set(build.MEGAKERNEL_SYMBOLS)


def test_the_lane_split_knobs_the_gpu_tests_set_are_the_kernels() -> None:
    """tests/test_cuda_lanesplit.py and scripts/lanesplit_gpu.sh set these by name: a rename
    would silently leave them unset (an unknown -D is no error)."""
    source = build.KERNEL_SOURCE.read_text()
    for knob in ("LANE_SPLIT", "LANE_SPLIT_MIN_BATCHES", "LANE_SPLIT_MIN_BYTES"):
        assert f"#ifndef {knob} " in source, knob
    assert "__device__ unsigned long long vyre_lane_split_stats[2];" in source


@needs_nvrtc
@pytest.mark.skipif(not build.KERNEL_SOURCE.exists(), reason="megakernel.cu is not written yet")
def test_the_build_command_prints_size_and_log(capsys) -> None:
    assert build.main(["--arch", "sm_90"]) == 0
    out = capsys.readouterr().out
    assert "sm_90 cubin" in out and "bytes" in out and "log:" in out


@needs_nvrtc
def test_building_leaves_the_interpreters_shared_bytes_alone() -> None:
    """NVRTC writes its (often one-byte) log into a buffer; that buffer must not be a shared
    one-byte bytes object, or every b" " in the process would silently become b"\\0"."""
    build.compile_source(PROBE, "sm_90", use_cache=False)
    assert bytes([32])[0] == 32 and " ".encode("ascii")[0] == 32  # the shared b" " still holds a space


def test_tuning_defines_reach_nvrtc_and_the_cache_key_and_junk_is_refused(monkeypatch):
    source, header_text = 'extern "C" __global__ void k() {}', header.generate()
    plain = build.cache_key(source, header_text, "sm_90", ("k",))
    monkeypatch.setenv(build.DEFINES_ENV, "SCAN_ROUND_VECS=8u")
    assert "-DSCAN_ROUND_VECS=8u" in build.compile_options()
    assert build.cache_key(source, header_text, "sm_90", ("k",)) != plain
    monkeypatch.setenv(build.DEFINES_ENV, "X=1; rm -rf /")
    with pytest.raises(BackendError, match="NAME=VALUE"):
        build.compile_options()
