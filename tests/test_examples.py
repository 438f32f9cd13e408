"""Every example program matches a plain-Python reference over real files, across chunk edges."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from references import fnv1a32, literal_offsets, pattern_end_positions, xxh32

from vyre_runtime.cli import load_program_file
from vyre_runtime.ingest.stream import StreamOptions, run_file
from vyre_runtime.megakernel import Megakernel

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DFA_PATTERNS = [b"error", b"warning", b"fatal", b"panic"]


@pytest.fixture(scope="module")
def megakernel():
    with Megakernel(backend="cpu", slots=64) as mk:
        yield mk


def program(name: str):
    return load_program_file(str(EXAMPLES / name))


def text_with_needles(seed: int, size: int, needles: list[bytes], chunk_size: int) -> bytes:
    """Random text salted with needles, including at offset 0, the very end and across chunk edges."""
    rng = random.Random(seed)
    data = bytearray(rng.choice(b"abcdefghijklmnopqrstuvwxyz \n\nerwy") for _ in range(size))
    spots = [0, size - 1]
    spots += [edge - shift for edge in range(chunk_size, size, chunk_size) for shift in (0, 1, 2, 3)]
    spots += [rng.randrange(size) for _ in range(size // 200)]
    for spot in spots:
        needle = rng.choice(needles)
        start = max(0, min(spot, size - len(needle)))
        data[start : start + len(needle)] = needle
    return bytes(data)


@pytest.fixture(params=[(997, None), (4096, 7), (1 << 20, None)], ids=["chunk997", "chunk4096-lanes7", "onechunk"])
def options(request) -> StreamOptions:
    chunk_size, lanes = request.param
    return StreamOptions(chunk_size=chunk_size, lanes=lanes)


def write(tmp_path: Path, data: bytes) -> str:
    path = tmp_path / "input.bin"
    path.write_bytes(data)
    return str(path)


def test_line_count_matches_newline_count(tmp_path, options, megakernel):
    data = text_with_needles(1, 20_000, [b"\n", b"\n\n"], options.chunk_size)
    result = run_file(program("line_count.vasm"), write(tmp_path, data), options, megakernel)
    assert not result.faults
    assert int(result.outputs["lines"][0]) == data.count(b"\n")


def test_histogram_matches_bincount(tmp_path, options, megakernel):
    data = bytes(random.Random(2).randbytes(30_000))
    result = run_file(program("histogram.vasm"), write(tmp_path, data), options, megakernel)
    expected = np.bincount(np.frombuffer(data, dtype=np.uint8), minlength=256)
    np.testing.assert_array_equal(result.outputs["histogram"], expected)


def test_literal_search_emits_every_offset_once(tmp_path, options, megakernel):
    data = text_with_needles(3, 20_000, [b"vyre", b"vyrevyre", b"vyr"], options.chunk_size)
    result = run_file(program("literal_search.vasm"), write(tmp_path, data), options, megakernel)
    expected = literal_offsets(data, b"vyre")
    offsets = sorted(int(lo) | int(hi) << 32 for lo, hi in result.records)
    assert offsets == expected
    assert 0 in offsets and len(data) - 4 in offsets
    assert int(result.outputs["matches"][0]) == len(expected)
    assert result.dropped == 0


def test_dfa_count_counts_positions_where_a_pattern_ends(tmp_path, options, megakernel):
    data = text_with_needles(4, 12_000, [*DFA_PATTERNS, b"errorr", b"panicerror"], options.chunk_size)
    result = run_file(program("dfa_count.vasm"), write(tmp_path, data), options, megakernel)
    assert int(result.outputs["matches"][0]) == len(pattern_end_positions(data, DFA_PATTERNS))


@pytest.mark.parametrize(("name", "hash_function"), [("fnv1a_blocks.vasm", fnv1a32), ("xxh32_blocks.vasm", xxh32)])
def test_block_hashes_match_reference(tmp_path, options, name, hash_function, megakernel):
    data = bytes(random.Random(5).randbytes(3 * 4096 + 1234))
    result = run_file(program(name), write(tmp_path, data), options, megakernel)
    expected = []
    for chunk_start in range(0, len(data), options.chunk_size):
        chunk_end = min(len(data), chunk_start + options.chunk_size)
        for block in range(chunk_start, chunk_end, 4096):
            expected.append((block, hash_function(data[block : min(block + 4096, chunk_end)])))
    got = sorted((int(lo) | int(hi) << 32, int(h)) for lo, hi, h in result.records)
    assert got == expected


def test_filter_compact_keeps_exactly_the_large_words(tmp_path, megakernel):
    rng = np.random.default_rng(6)
    words = rng.integers(0, 2**32, size=50_001, dtype=np.uint64).astype(np.uint32)
    data = words.tobytes() + b"\xff\xff"  # a trailing partial word is ignored
    for chunk_size, lanes in [(4000, None), (1 << 20, 64), (4096, 33)]:
        result = run_file(
            program("filter_compact.vasm"),
            write(tmp_path, data),
            StreamOptions(chunk_size=chunk_size, lanes=lanes),
            megakernel,
        )
        kept = np.concatenate(result.outputs["kept"])
        kept = np.sort(kept[kept != 0xFFFFFFFF])
        expected = np.flatnonzero(words >= 0xF0000000)
        np.testing.assert_array_equal(kept, expected)
        assert int(result.outputs["count"][0]) == len(expected)


def checksum_reference(data: bytes) -> int:
    values = np.frombuffer(data, np.uint8).astype(np.uint64)
    shifts = ((np.arange(len(values)) % 4) * 8).astype(np.uint64)
    return int((values << shifts).sum() & 0xFFFFFFFF)


@pytest.mark.parametrize("size", [0, 1, 3, 4097, 20_011])
def test_checksum_sums_every_byte_in_its_place_whatever_the_chunking(tmp_path, options, megakernel, size):
    data = random.Random(size).randbytes(size)
    result = run_file(program("checksum.vasm"), write(tmp_path, data), options, megakernel)
    assert not result.faults
    assert int(result.outputs["sum"][0]) == checksum_reference(data)
    assert int(result.outputs["bytes"][0]) == size
