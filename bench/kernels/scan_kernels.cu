// Hand-written CUDA kernels for the byte-scan examples (examples/*.vasm): the baseline that
// bench/scan.py measures the interpreting megakernel against. Each kernel does what its example
// does, over the whole data set in one launch, and leaves per-chunk results in the layout the
// example's outputs have, so the bench compares every chunk of both bit for bit:
//   scan_line_count     out[chunk]             '\n' bytes owned by the chunk   (line_count.vasm)
//   scan_histogram      out[chunk * 256 + b]   owned bytes of value b          (histogram.vasm)
//   scan_literal        out[chunk], records    starts of the literal, (lo, hi) (literal_search.vasm)
//   scan_fnv1a_blocks   records[block]         (offset lo, hi, FNV-1a) / 4 KiB (fnv1a_blocks.vasm)
//   scan_xxh32_blocks   records[block]         (offset lo, hi, xxHash32)       (xxh32_blocks.vasm)
//   scan_dfa_count      out[chunk]             pattern ends owned by the chunk (dfa_count.vasm)
//   scan_checksum       out[2 chunk], [+1]     sum of LE u32 words, owned bytes (checksum.vasm)
//   scan_filter_compact out[chunk], records    kept word indices, per chunk    (filter_compact.vasm)
// A chunk owns [chunk * a.chunk, (chunk + 1) * a.chunk); a match belongs to the chunk holding its
// anchor (the literal's first byte, the pattern's last byte), as in the examples.
// Compiled by bench/scan.py with vyre_runtime.backends.cuda.build.compile_source (NVRTC, the
// vyre prelude and vyre_abi.h for VIR0_DFA_ACCEPT_BIT); CI compiles it (tests/test_device_buffers.py).
// Every kernel runs with SCAN_BLOCK threads per block; spans are multiples of 16 bytes and the
// data pointer is 16-byte aligned (the host checks both), so uint4 loads are aligned.

#include "vyre_abi.h"

#define SCAN_BLOCK 256
#define FULL_MASK 0xffffffffu
#define FNV_PRIME 16777619u
#define FNV_BASIS 0x811c9dc5u

// The one kernel parameter (bench/scan.py: SCAN_ARGS has the same fields and offsets).
struct ScanArgs {
    const uint8_t* data;       // the bytes scanned
    uint64_t total;            // how many
    uint64_t span;             // bytes per block (count, histogram, literal) or per thread (blocks, DFA)
    uint64_t chunk;            // bytes per chunk
    uint32_t* out;             // per-chunk outputs
    uint32_t* records;         // emitted records
    uint32_t* record_count;    // records emitted (may exceed the capacity: those are dropped)
    const uint8_t* table;      // the literal's bytes, or the DFA's transitions (states x 256 u32)
    uint32_t table_length;     // the literal's length (1..16), or the DFA's state count
    uint32_t record_capacity;  // records that fit
};

__device__ __forceinline__ uint64_t min_u64(uint64_t a, uint64_t b) { return a < b ? a : b; }

__device__ __forceinline__ uint4 load16(const uint8_t* p) { return __ldg((const uint4*)p); }

// The sum over the block, valid in thread 0.
__device__ __forceinline__ uint32_t block_sum(uint32_t value) {
    __shared__ uint32_t partial[SCAN_BLOCK / 32];
    value = __reduce_add_sync(FULL_MASK, value);
    if ((threadIdx.x & 31u) == 0) partial[threadIdx.x >> 5] = value;
    __syncthreads();
    uint32_t total = 0;
    if (threadIdx.x < 32) {
        total = threadIdx.x < SCAN_BLOCK / 32 ? partial[threadIdx.x] : 0u;
        total = __reduce_add_sync(FULL_MASK, total);
    }
    return total;
}

// ------------------------------------------------------------------ line count

extern "C" __global__ void __launch_bounds__(SCAN_BLOCK) scan_line_count(ScanArgs a) {
    uint64_t start = (uint64_t)blockIdx.x * a.span;
    if (start >= a.total) return;
    uint64_t end = min_u64(start + a.span, a.total);
    uint64_t vector_end = start + ((end - start) & ~15ull);
    uint32_t bits = 0;  // 8 per newline (__vcmpeq4 sets a whole byte)
    for (uint64_t p = start + threadIdx.x * 16ull; p < vector_end; p += SCAN_BLOCK * 16ull) {
        uint4 v = load16(a.data + p);
        bits += __popc(__vcmpeq4(v.x, 0x0a0a0a0au)) + __popc(__vcmpeq4(v.y, 0x0a0a0a0au)) +
                __popc(__vcmpeq4(v.z, 0x0a0a0a0au)) + __popc(__vcmpeq4(v.w, 0x0a0a0a0au));
    }
    uint32_t count = bits >> 3;
    for (uint64_t p = vector_end + threadIdx.x; p < end; p += SCAN_BLOCK) count += a.data[p] == 10u;
    uint32_t total = block_sum(count);
    if (threadIdx.x == 0 && total) atomicAdd(&a.out[start / a.chunk], total);
}

// ------------------------------------------------------------------ byte histogram

extern "C" __global__ void __launch_bounds__(SCAN_BLOCK) scan_histogram(ScanArgs a) {
    __shared__ uint32_t counts[SCAN_BLOCK / 32][256];  // one histogram per warp: fewer collisions
    for (uint32_t i = threadIdx.x; i < (SCAN_BLOCK / 32) * 256; i += SCAN_BLOCK) (&counts[0][0])[i] = 0;
    __syncthreads();
    uint64_t start = (uint64_t)blockIdx.x * a.span;
    if (start >= a.total) return;  // uniform across the block
    uint64_t end = min_u64(start + a.span, a.total);
    uint64_t vector_end = start + ((end - start) & ~15ull);
    uint32_t* mine = counts[threadIdx.x >> 5];
    for (uint64_t p = start + threadIdx.x * 16ull; p < vector_end; p += SCAN_BLOCK * 16ull) {
        uint4 v = load16(a.data + p);
        uint32_t words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int w = 0; w < 4; w++) {
#pragma unroll
            for (int k = 0; k < 4; k++) atomicAdd(&mine[(words[w] >> (8 * k)) & 255u], 1u);
        }
    }
    for (uint64_t p = vector_end + threadIdx.x; p < end; p += SCAN_BLOCK) atomicAdd(&mine[a.data[p]], 1u);
    __syncthreads();
    uint32_t* out = a.out + (start / a.chunk) * 256u;
    for (uint32_t b = threadIdx.x; b < 256u; b += SCAN_BLOCK) {
        uint32_t sum = 0;
#pragma unroll
        for (int w = 0; w < SCAN_BLOCK / 32; w++) sum += counts[w][b];
        if (sum) atomicAdd(&out[b], sum);
    }
}

// ------------------------------------------------------------------ literal search

// One bit per byte of `v` equal to `repeated`'s bytes: bit k for byte k (little-endian).
__device__ __forceinline__ uint32_t byte_mask(uint4 v, uint32_t repeated) {
    uint32_t words[4] = {__vcmpeq4(v.x, repeated), __vcmpeq4(v.y, repeated), __vcmpeq4(v.z, repeated),
                         __vcmpeq4(v.w, repeated)};
    uint32_t mask = 0;
#pragma unroll
    for (int w = 0; w < 4; w++) {
        uint32_t m = words[w];
        mask |= (((m >> 7) & 1u) | ((m >> 14) & 2u) | ((m >> 21) & 4u) | ((m >> 28) & 8u)) << (4 * w);
    }
    return mask;
}

__device__ __forceinline__ void literal_at(const ScanArgs& a, const uint8_t* needle, uint64_t p) {
    uint32_t n = a.table_length;
    if (p + n > a.total) return;
    for (uint32_t j = 1; j < n; j++)
        if (a.data[p + j] != needle[j]) return;
    uint32_t index = atomicAdd(a.record_count, 1u);
    if (index < a.record_capacity) {
        a.records[2ull * index] = (uint32_t)p;
        a.records[2ull * index + 1] = (uint32_t)(p >> 32);
    }
    atomicAdd(&a.out[p / a.chunk], 1u);
}

extern "C" __global__ void __launch_bounds__(SCAN_BLOCK) scan_literal(ScanArgs a) {
    __shared__ uint8_t needle[16];
    if (threadIdx.x < a.table_length && threadIdx.x < 16) needle[threadIdx.x] = a.table[threadIdx.x];
    __syncthreads();
    uint64_t start = (uint64_t)blockIdx.x * a.span;
    if (start >= a.total || a.table_length == 0) return;
    uint64_t end = min_u64(start + a.span, a.total);
    uint64_t vector_end = start + ((end - start) & ~15ull);
    uint32_t first = needle[0] * 0x01010101u;
    for (uint64_t p = start + threadIdx.x * 16ull; p < vector_end; p += SCAN_BLOCK * 16ull) {
        uint32_t candidates = byte_mask(load16(a.data + p), first);  // most 16-byte words have none
        while (candidates) {
            uint32_t k = __ffs(candidates) - 1;
            candidates &= candidates - 1;
            literal_at(a, needle, p + k);
        }
    }
    for (uint64_t p = vector_end + threadIdx.x; p < end; p += SCAN_BLOCK)
        if (a.data[p] == needle[0]) literal_at(a, needle, p);
}

// ------------------------------------------------------------------ 4 KiB block hashes

__device__ __forceinline__ uint32_t fnv_word(uint32_t h, uint32_t w) {
    h = (h ^ (w & 255u)) * FNV_PRIME;
    h = (h ^ ((w >> 8) & 255u)) * FNV_PRIME;
    h = (h ^ ((w >> 16) & 255u)) * FNV_PRIME;
    return (h ^ (w >> 24)) * FNV_PRIME;
}

__device__ __forceinline__ void block_record(const ScanArgs& a, uint64_t block, uint64_t start, uint32_t hash) {
    uint32_t* record = a.records + 3ull * block;
    record[0] = (uint32_t)start;
    record[1] = (uint32_t)(start >> 32);
    record[2] = hash;
}

// One thread per block of a.span (4096) bytes; the record of block i is records[3i .. 3i + 3).
extern "C" __global__ void __launch_bounds__(SCAN_BLOCK) scan_fnv1a_blocks(ScanArgs a) {
    uint64_t block = (uint64_t)blockIdx.x * SCAN_BLOCK + threadIdx.x;
    uint64_t start = block * a.span;
    if (start >= a.total) return;
    uint32_t length = (uint32_t)min_u64(a.span, a.total - start);
    const uint8_t* p = a.data + start;
    uint32_t h = FNV_BASIS, i = 0;
    for (; i + 64 <= length; i += 64) {  // four loads in flight, then the serial hash
        uint4 v[4];
#pragma unroll
        for (int k = 0; k < 4; k++) v[k] = load16(p + i + 16 * k);
#pragma unroll
        for (int k = 0; k < 4; k++) h = fnv_word(fnv_word(fnv_word(fnv_word(h, v[k].x), v[k].y), v[k].z), v[k].w);
    }
    for (; i < length; i++) h = (h ^ p[i]) * FNV_PRIME;
    block_record(a, block, start, h);
}

__device__ __forceinline__ uint32_t rotl32(uint32_t x, uint32_t r) { return (x << r) | (x >> ((32u - r) & 31u)); }

extern "C" __global__ void __launch_bounds__(SCAN_BLOCK) scan_xxh32_blocks(ScanArgs a) {
    const uint32_t P1 = 0x9E3779B1u, P2 = 0x85EBCA77u, P3 = 0xC2B2AE3Du, P4 = 0x27D4EB2Fu, P5 = 0x165667B1u;
    uint64_t block = (uint64_t)blockIdx.x * SCAN_BLOCK + threadIdx.x;
    uint64_t start = block * a.span;
    if (start >= a.total) return;
    uint32_t n = (uint32_t)min_u64(a.span, a.total - start);
    const uint8_t* p = a.data + start;
    uint32_t i = 0, h;
    if (n >= 16) {  // seed 0
        uint32_t v1 = P1 + P2, v2 = P2, v3 = 0, v4 = 0u - P1;
        for (; i + 64 <= n; i += 64) {
            uint4 s[4];
#pragma unroll
            for (int k = 0; k < 4; k++) s[k] = load16(p + i + 16 * k);
#pragma unroll
            for (int k = 0; k < 4; k++) {
                v1 = rotl32(v1 + s[k].x * P2, 13) * P1;
                v2 = rotl32(v2 + s[k].y * P2, 13) * P1;
                v3 = rotl32(v3 + s[k].z * P2, 13) * P1;
                v4 = rotl32(v4 + s[k].w * P2, 13) * P1;
            }
        }
        for (; i + 16 <= n; i += 16) {
            uint4 s = load16(p + i);
            v1 = rotl32(v1 + s.x * P2, 13) * P1;
            v2 = rotl32(v2 + s.y * P2, 13) * P1;
            v3 = rotl32(v3 + s.z * P2, 13) * P1;
            v4 = rotl32(v4 + s.w * P2, 13) * P1;
        }
        h = rotl32(v1, 1) + rotl32(v2, 7) + rotl32(v3, 12) + rotl32(v4, 18);
    } else {
        h = P5;
    }
    h += n;
    for (; i + 4 <= n; i += 4) {
        uint32_t w = p[i] | (p[i + 1] << 8) | (p[i + 2] << 16) | ((uint32_t)p[i + 3] << 24);
        h = rotl32(h + w * P3, 17) * P4;
    }
    for (; i < n; i++) h = rotl32(h + p[i] * P5, 11) * P1;
    h ^= h >> 15;
    h *= P2;
    h ^= h >> 13;
    h *= P3;
    h ^= h >> 16;
    block_record(a, block, start, h);
}

// ------------------------------------------------------------------ multi-pattern DFA count

// One thread per a.span bytes; the transition table (states x 256 u32, accept bit on) lives in
// dynamic shared memory. Like the example, each thread first walks the up to 15 bytes before its
// slice without counting, so a match ending in the slice but starting before it is seen
// (patterns of at most 16 bytes).
extern "C" __global__ void __launch_bounds__(SCAN_BLOCK) scan_dfa_count(ScanArgs a) {
    extern __shared__ uint32_t transitions[];
    const uint32_t* table = (const uint32_t*)a.table;
    for (uint32_t i = threadIdx.x; i < a.table_length * 256u; i += SCAN_BLOCK) transitions[i] = table[i];
    __syncthreads();
    uint64_t start = ((uint64_t)blockIdx.x * SCAN_BLOCK + threadIdx.x) * a.span;
    if (start >= a.total) return;
    uint64_t end = min_u64(start + a.span, a.total);
    uint32_t state = 0, count = 0;
    for (uint64_t p = start - (start < 15 ? start : 15); p < start; p++)
        state = transitions[state * 256u + a.data[p]] & ~VIR0_DFA_ACCEPT_BIT;
    uint64_t vector_end = start + ((end - start) & ~15ull);
    for (uint64_t p = start; p < vector_end; p += 16) {
        uint4 v = load16(a.data + p);
        uint32_t words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int w = 0; w < 4; w++) {
#pragma unroll
            for (int k = 0; k < 4; k++) {
                uint32_t t = transitions[state * 256u + ((words[w] >> (8 * k)) & 255u)];
                state = t & ~VIR0_DFA_ACCEPT_BIT;
                count += (t & VIR0_DFA_ACCEPT_BIT) != 0;
            }
        }
    }
    for (uint64_t p = vector_end; p < end; p++) {
        uint32_t t = transitions[state * 256u + a.data[p]];
        state = t & ~VIR0_DFA_ACCEPT_BIT;
        count += (t & VIR0_DFA_ACCEPT_BIT) != 0;
    }
    if (count) atomicAdd(&a.out[start / a.chunk], count);
}

// ------------------------------------------------------------------ checksum

// The sum, over every byte b at file position p, of b << 8 * (p mod 4): the sum of the
// little-endian u32 words, since the data starts at file position 0 (aligned words need no
// rotation). A block's span lies inside one chunk (the host checks chunk % span == 0).
extern "C" __global__ void __launch_bounds__(SCAN_BLOCK) scan_checksum(ScanArgs a) {
    uint64_t start = (uint64_t)blockIdx.x * a.span;
    if (start >= a.total) return;
    uint64_t end = min_u64(start + a.span, a.total);
    uint64_t vector_end = start + ((end - start) & ~15ull);
    uint32_t sum = 0;  // wraps mod 2^32, as the example's add does
    for (uint64_t p = start + threadIdx.x * 16ull; p < vector_end; p += SCAN_BLOCK * 16ull) {
        uint4 v = load16(a.data + p);
        sum += v.x + v.y + v.z + v.w;
    }
    for (uint64_t p = vector_end + threadIdx.x; p < end; p += SCAN_BLOCK) sum += (uint32_t)a.data[p] << (8u * (p & 3u));
    uint32_t total = block_sum(sum);
    if (threadIdx.x == 0) {
        uint32_t* out = a.out + 2ull * (start / a.chunk);
        atomicAdd(&out[0], total);
        atomicAdd(&out[1], (uint32_t)(end - start));
    }
}

// ------------------------------------------------------------------ filter + compaction

// The file word index of every u32 word >= 0xF0000000, in any order (as the example: `count`
// counts every kept word, the chunk's a.record_capacity records keep the first that fit).
// Warp-aggregated: one atomic per warp and step reserves the warp's slots in its chunk's
// counter. Whole 16-byte steps only: the host makes total and span multiples of 4096 bytes.
// The step loop is the same for every thread of the block (the shuffles need whole warps).
extern "C" __global__ void __launch_bounds__(SCAN_BLOCK) scan_filter_compact(ScanArgs a) {
    uint64_t start = (uint64_t)blockIdx.x * a.span;
    if (start >= a.total) return;  // uniform across the block
    uint64_t end = min_u64(start + a.span, a.total);
    uint64_t chunk = start / a.chunk;
    uint32_t* counter = a.out + chunk;
    uint32_t* kept = a.records + chunk * a.record_capacity;
    uint32_t lane = threadIdx.x & 31u;
    for (uint64_t base = start; base < end; base += SCAN_BLOCK * 16ull) {
        uint64_t p = base + threadIdx.x * 16ull;
        uint4 v = p + 16 <= end ? load16(a.data + p) : make_uint4(0, 0, 0, 0);
        uint32_t flags = (v.x >= 0xF0000000u) | (v.y >= 0xF0000000u) << 1 | (v.z >= 0xF0000000u) << 2 |
                         (v.w >= 0xF0000000u) << 3;
        uint32_t mine = __popc(flags);
        uint32_t before = mine;  // inclusive prefix sum over the warp
#pragma unroll
        for (uint32_t d = 1; d < 32; d <<= 1) {
            uint32_t up = __shfl_up_sync(FULL_MASK, before, d);
            if (lane >= d) before += up;
        }
        uint32_t warp_total = __shfl_sync(FULL_MASK, before, 31);
        uint32_t slot = 0;
        if (lane == 31 && warp_total) slot = atomicAdd(counter, warp_total);
        slot = __shfl_sync(FULL_MASK, slot, 31) + before - mine;
        uint32_t word = (uint32_t)(p >> 2);
        while (flags) {
            uint32_t k = __ffs(flags) - 1;
            flags &= flags - 1;
            if (slot < a.record_capacity) kept[slot] = word + k;
            slot++;
        }
    }
}
