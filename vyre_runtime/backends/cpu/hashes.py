"""FNV-1a-32 and xxHash32 of many lanes' byte ranges at once.

Both hashes are sequential along a lane, so they run across lanes (``lane_ranges``): one NumPy
operation advances every active lane by a byte (FNV) or a 16-byte stripe (xxHash32). When only
a few lanes are still active, a per-lane Python loop is cheaper than a NumPy call per row, so
the remaining bytes finish there (same arithmetic, written out once for a single lane).
"""

from __future__ import annotations

import struct

import numpy as np

from vyre_runtime.backends.cpu.alu import rotl
from vyre_runtime.backends.cpu.lane_ranges import LaneRanges
from vyre_runtime.backends.cpu.memory import gather_le

U32 = np.uint32
MASK = 0xFFFFFFFF
FNV_PRIME = 16777619
PRIME1, PRIME2, PRIME3, PRIME4, PRIME5 = 0x9E3779B1, 0x85EBCA77, 0xC2B2AE3D, 0x27D4EB2F, 0x165667B1
FNV_VECTOR_MIN_LANES = 32  # below this, one NumPy call per byte costs more than a Python loop per lane
XXH_VECTOR_MIN_LANES = 4
STRIPE = 16


def fnv1a_one(data: bytes, h: int) -> int:
    for byte in data:
        h = ((h ^ byte) * FNV_PRIME) & MASK
    return h


def fnv1a(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """Per lane: h = seed; for each byte of the range: h = (h ^ byte) * FNV_PRIME mod 2^32."""
    ranges = LaneRanges(data, starts, lengths)
    h = seeds[ranges.order].astype(U32)
    prime = U32(FNV_PRIME)
    row = 0
    count = ranges.active(row)
    while count >= FNV_VECTOR_MIN_LANES:
        rows = ranges.block_rows(row, count)
        block, active = ranges.rows(row, rows, count)
        for i in range(rows):
            width = count if active is None else int(active[i])
            lanes = h[:width]
            np.bitwise_xor(lanes, block[i, :width], out=lanes)
            np.multiply(lanes, prime, out=lanes)
        row += rows
        count = ranges.active(row)
    for j in range(count):
        first = int(ranges.starts[j]) + row
        last = int(ranges.starts[j] + ranges.lengths[j])
        h[j] = fnv1a_one(data[first:last].tobytes(), int(h[j]))
    result = np.empty_like(h)
    result[ranges.order] = h
    return result


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (32 - r))) & MASK


def _round(acc: int, word: int) -> int:
    return (_rotl((acc + word * PRIME2) & MASK, 13) * PRIME1) & MASK


def xxh32_stripes_one(data: bytes, accumulators: list[int]) -> list[int]:
    """Advance one lane's four accumulators over whole 16-byte stripes of ``data``."""
    v1, v2, v3, v4 = accumulators
    for w1, w2, w3, w4 in struct.iter_unpack("<4I", data):
        v1, v2, v3, v4 = _round(v1, w1), _round(v2, w2), _round(v3, w3), _round(v4, w4)
    return [v1, v2, v3, v4]


def _vector_round(acc: np.ndarray, words: np.ndarray) -> None:
    acc += words * U32(PRIME2)
    acc[...] = rotl(acc, 13)
    acc *= U32(PRIME1)


def xxh32(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """Per lane: the reference xxHash32 of the range with seed ``seed`` (little-endian reads)."""
    ranges = LaneRanges(data, starts, lengths)
    seed = seeds[ranges.order].astype(U32)
    length = ranges.lengths
    stripes = length // STRIPE
    acc = np.stack([seed + U32(PRIME1) + U32(PRIME2), seed + U32(PRIME2), seed.copy(), seed - U32(PRIME1)], axis=1)
    negated_stripes = -stripes  # ascending, like LaneRanges' lengths
    stripe = 0
    count = int(np.searchsorted(negated_stripes, 0, side="left"))
    while count >= XXH_VECTOR_MIN_LANES:
        rows = ranges.block_rows(stripe * STRIPE, count) // STRIPE
        rows = max(1, min(rows, int(stripes[0]) - stripe))
        window = ranges.window(count, stripe * STRIPE, rows * STRIPE)
        words = np.ascontiguousarray(window.view("<u4").reshape(count, rows, 4).transpose(1, 0, 2))
        active = np.searchsorted(negated_stripes, -np.arange(stripe, stripe + rows), side="left")
        for i in range(rows):
            width = int(active[i])
            _vector_round(acc[:width], words[i, :width])
        stripe += rows
        count = int(np.searchsorted(negated_stripes, -stripe, side="left"))
    for j in range(count):
        first = int(ranges.starts[j]) + stripe * STRIPE
        last = int(ranges.starts[j]) + int(stripes[j]) * STRIPE
        acc[j] = xxh32_stripes_one(data[first:last].tobytes(), [int(v) for v in acc[j]])

    converged = rotl(acc[:, 0], 1) + rotl(acc[:, 1], 7) + rotl(acc[:, 2], 12) + rotl(acc[:, 3], 18)
    h = np.where(length >= STRIPE, converged, seed + U32(PRIME5))
    h += (length & MASK).astype(U32)
    tail = ranges.starts + stripes * STRIPE
    remaining = length - stripes * STRIPE
    for word in range(3):
        has = np.flatnonzero(remaining >= 4 * (word + 1))
        if len(has):
            value = gather_le(data, tail[has] + 4 * word, 4)
            h[has] = rotl(h[has] + value * U32(PRIME3), 17) * U32(PRIME4)
    byte_tail = tail + (remaining // 4) * 4
    for byte in range(3):
        has = np.flatnonzero(remaining % 4 > byte)
        if len(has):
            value = data[byte_tail[has] + byte].astype(U32)
            h[has] = rotl(h[has] + value * U32(PRIME5), 11) * U32(PRIME1)
    h ^= h >> U32(15)
    h *= U32(PRIME2)
    h ^= h >> U32(13)
    h *= U32(PRIME3)
    h ^= h >> U32(16)
    result = np.empty_like(h)
    result[ranges.order] = h
    return result
