"""Plain-Python references the examples and intrinsics are checked against (slow, obvious code)."""

from __future__ import annotations

MASK32 = 0xFFFFFFFF
FNV_OFFSET_BASIS = 0x811C9DC5
FNV_PRIME = 16777619
XXH_PRIME1, XXH_PRIME2, XXH_PRIME3 = 0x9E3779B1, 0x85EBCA77, 0xC2B2AE3D
XXH_PRIME4, XXH_PRIME5 = 0x27D4EB2F, 0x165667B1


def fnv1a32(data: bytes, basis: int = FNV_OFFSET_BASIS) -> int:
    h = basis
    for byte in data:
        h = ((h ^ byte) * FNV_PRIME) & MASK32
    return h


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (32 - r))) & MASK32


def _round(acc: int, word: int) -> int:
    return (_rotl((acc + word * XXH_PRIME2) & MASK32, 13) * XXH_PRIME1) & MASK32


def xxh32(data: bytes, seed: int = 0) -> int:
    n = len(data)
    i = 0
    if n >= 16:
        v = [
            (seed + XXH_PRIME1 + XXH_PRIME2) & MASK32,
            (seed + XXH_PRIME2) & MASK32,
            seed & MASK32,
            (seed - XXH_PRIME1) & MASK32,
        ]
        while i + 16 <= n:
            for k in range(4):
                v[k] = _round(v[k], int.from_bytes(data[i + 4 * k : i + 4 * k + 4], "little"))
            i += 16
        h = (_rotl(v[0], 1) + _rotl(v[1], 7) + _rotl(v[2], 12) + _rotl(v[3], 18)) & MASK32
    else:
        h = (seed + XXH_PRIME5) & MASK32
    h = (h + n) & MASK32
    while i + 4 <= n:
        h = (h + int.from_bytes(data[i : i + 4], "little") * XXH_PRIME3) & MASK32
        h = (_rotl(h, 17) * XXH_PRIME4) & MASK32
        i += 4
    while i < n:
        h = (h + data[i] * XXH_PRIME5) & MASK32
        h = (_rotl(h, 11) * XXH_PRIME1) & MASK32
        i += 1
    h ^= h >> 15
    h = (h * XXH_PRIME2) & MASK32
    h ^= h >> 13
    h = (h * XXH_PRIME3) & MASK32
    h ^= h >> 16
    return h


def literal_offsets(data: bytes, literal: bytes) -> list[int]:
    """Start offsets of every (possibly overlapping) occurrence."""
    found = []
    position = data.find(literal)
    while position != -1:
        found.append(position)
        position = data.find(literal, position + 1)
    return found


def pattern_end_positions(data: bytes, patterns: list[bytes]) -> list[int]:
    """Offsets p where at least one pattern ends (its last byte is data[p])."""
    return [p for p in range(len(data)) if any(data.endswith(pattern, 0, p + 1) for pattern in patterns)]
