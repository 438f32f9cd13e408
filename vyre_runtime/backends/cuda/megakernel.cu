// vyre persistent megakernel: a resident VIR0 interpreter serving the slot ring.
//
// Launched once per start, and again by a relaunch over the same ring after it exited (SHUTDOWN
// ends it for good; PAUSE ends it for a relaunch: docs/PROTOCOL.md, 6.5).
// Block 0 is the dispatcher: its first warp polls the doorbell (and now and then
// scans the ring) in host-mapped memory, claims schedulable slots (it is the only claimer, so it
// records a claim in device memory, vyre_owned: the host never writes a PUBLISHED slot; a fresh
// doorbell entry's slot is read without a status read, docs/PROTOCOL.md 4.8), runs the tiny
// built-ins in its own lanes and pushes the other slots onto a work queue in device memory.
// Every other block is a worker: it pops a slot,
// stores CLAIMED, runs it (a built-in, or a VIR0 program with its threads as lanes), writes the
// results, fences, releases the claim and publishes DONE or FAULT last.
// Semantics: docs/VIR0.md (bit-exact with the CPU backend) and docs/PROTOCOL.md.
// Every protocol and ISA number comes from the generated vyre_abi.h.
// Atomics on the image (host-mapped memory) are device-scope: only GPU threads ever
// read-modify-write those words (the host only reads them), and the H100 has no host-native
// atomics, so system-scope atomics there are invalid (compute-sanitizer flags them).

// The fixed-width integer types and offsetof come from the prelude build.py pre-includes
// (NVRTC has no system headers).
#include "vyre_abi.h"

#define VYRE_BLOCK_THREADS 256
#define QUEUE_CAPACITY 4096u        // claimed slots waiting for a worker block
#define QUEUE_ENTRY_WORDS 20u       // slot index, sequence, 2 spare, then the slot's 16 words
#define STAGE_WORDS 8192u           // run-scope outputs up to this size live in shared memory
#define STAGED_IN_PLACE 0u          // RunShared.staged: run outputs used where the host put them
#define STAGED_SHARED 1u            // ... in the block's shared stage
#define STAGED_DEVICE 2u            // ... in the block's device-memory scratch (Params.run_scratch)
#define MAX_TABLES 64u
#define FULL_MASK 0xffffffffu
#define NO_LANE 0xffffffffu
#define IO_SHUTDOWN_GRACE_CYCLES (2000000000ull)
#define DISPATCH_SLEEP_CAP_NS 256u  // idle back-off ceiling of the dispatcher
#define COUNTER_COPY_PASSES 16u     // busy dispatcher passes between copies of the counters
#define WORKER_SLEEP_CAP_NS 512u    // idle back-off ceiling of a worker (it polls device memory)
#ifndef WORKER_HOT_POLLS  // tuning knob: polls without any sleep after a block served a slot
#define WORKER_HOT_POLLS 4096u      // ~1 ms: a block that just worked takes the next slot at once
#endif
#define HIST_BINS 256u              // words a hist adds into (HISTOGRAM_WORDS of docs/VIR0.md)
#define WARP_SCAN_MIN_BYTES 64u     // countb/findb/findl/hist ranges this long are scanned by the whole warp
#ifndef SCAN_ROUND_VECS  // tuning knob ($VYRE_MEGAKERNEL_DEFINES=SCAN_ROUND_VECS=8u): more bytes in flight per warp
#define SCAN_ROUND_VECS 2u          // 16-byte vectors each thread loads per round of a warp scan
#endif
#define HIST_PRIVATE_MIN_BYTES 1024u  // a warp counts a range this long in shared memory first
#ifndef STAGE_COPY_VECS  // tuning knob like SCAN_ROUND_VECS
#define STAGE_COPY_VECS 8u          // 16-byte loads in flight per thread while a fused run copies its input
#endif
#ifndef STAGE_PIECE_VECS  // tuning knob: the share of a staged copy one block takes at a time
#define STAGE_PIECE_VECS 16384u     // 256 KiB: a 4 MiB chunk is 16 pieces, copied by up to 16 blocks at once
#endif
#ifndef HELP_FUSED_MEMBERS  // tuning knob (A/B): 0 runs a fused run's members in its own block, in turn
#define HELP_FUSED_MEMBERS 1u
#endif
#ifndef LANE_SPLIT  // A/B knob: 0 runs every run's lanes in the block that serves its slot
#define LANE_SPLIT 1u
#endif
#ifndef LANE_SPLIT_MIN_BATCHES  // tuning knob: a run of fewer lane batches (blockDim.x lanes each) stays in one block
#define LANE_SPLIT_MIN_BATCHES 2u
#endif
#ifndef LANE_SPLIT_MIN_BYTES  // tuning knob: a run over fewer bytes stays in one block (posting it costs microseconds)
#define LANE_SPLIT_MIN_BYTES 65536u
#endif
#define LANE_SPLIT_PIECES 64u       // a split run's pieces at most: each keeps its lowest fault until the owner reads it
#define HELP_JOBS 64u               // staged copies open for help at once (one bit each in a 64-bit mask)
#define HELP_KEEP_READY 8u          // the workers holding the next tickets do not help: they serve the next slots
#define NO_JOB 0xffffffffu

extern "C" __device__ uint32_t vyre_isa_digest = VYRE_ISA_DIGEST;
extern "C" __device__ uint32_t vyre_layout_digest = VYRE_LAYOUT_DIGEST;
extern "C" __device__ uint32_t vyre_block_threads = VYRE_BLOCK_THREADS;

// The help board (docs/PROTOCOL.md, Staging): one worker block copying a host-mapped run into
// device staging is bound by PCIe latency (~3.6 GB/s: a 16 MiB chunk took ~4.6 ms, so a stream
// had to keep ~100 chunks in flight, and its arena fell out of the CPU's L3). So the block that
// runs a large staged copy (the owner) posts it here as a job of STAGE_PIECE_VECS-vector pieces,
// and worker blocks waiting for their ticket take pieces while they wait; the owner takes pieces
// too and then waits until every piece taken is copied. A job's `claim` word is its generation
// (high half: odd while open, even while closed, so an add that lands on a closed or reused job
// is told apart) and its next piece (low half), taken with one fetch-and-add (help_take).
// A job is a copy (its pieces: STAGE_PIECE_VECS vectors each) or, once a fused run's copy is
// complete, the run's members (its pieces: one member each, run by whichever block takes it),
// or a run's lanes (its pieces: whole lane batches, run by whichever block takes it: LaneJob).
#define HELP_COPY 0u
#define HELP_MEMBERS 1u
#define HELP_LANES 2u
struct HelpJob {
    unsigned long long claim;  // generation << 32 | next piece; only the owner changes the generation
    uint32_t kind, pieces;     // HELP_COPY, HELP_MEMBERS or HELP_LANES; pieces to take
    uint32_t done;             // pieces helpers finished (the owner counts its own)
    uint32_t faulted;          // HELP_MEMBERS: bit m set by the helper whose member m faulted
    unsigned long long instructions;  // HELP_MEMBERS: the helpers' members' lane-instructions; HELP_LANES: all pieces'
    // HELP_COPY
    const uint4* from;         // host-mapped source, from the 16-byte boundary (copy_input)
    uint4* to;                 // device staging
    uint32_t vecs, length;     // 16-byte vectors to copy; HELP_MEMBERS: the run's length
    // HELP_MEMBERS: what run_fused_slot resolved (check_fused) and the run's bytes
    const unsigned char* input;
    const Program* programs[MAX_FUSED_MEMBERS];
    Context* contexts[MAX_FUSED_MEMBERS];
    uint32_t lanes[MAX_FUSED_MEMBERS];
    uint32_t args[ARGS_PER_SLOT];
};
struct HelpBoard {
    unsigned long long busy;   // bit j: job j has an owner
    unsigned long long open;   // bit j: job j may have pieces nobody took yet (a hint: claim decides)
    HelpJob jobs[HELP_JOBS];
};

// Dispatcher -> worker queue, in device memory. The host zeroes it before every launch; the last
// block to exit zeroes it too.
struct __align__(16) QueueState {  // entries are read and written with 16-byte accesses
    // A ticket queue: a worker takes the next position with one atomicAdd on `head` (it may run
    // ahead of `tail`: the worker then waits for its own entry) instead of a CAS loop that every
    // idle block retries on one word: with hundreds of blocks that loop handed out one slot per
    // ~2.7 us (1 MiB runs and 4 MiB runs took the same time: 370k slots/s, whatever their size).
    uint32_t head;       // the next ticket (workers atomicAdd it)
    uint32_t tail;       // one past the last position the dispatcher published
    uint32_t shutdown;   // the dispatcher saw SHUTDOWN or PAUSE and published its last entry: drain, exit
    uint32_t exited;     // blocks that have returned
    // entry of position q (at q % QUEUE_CAPACITY): word 0 the slot index, word 1 its sequence
    // q + 1 (stored last: the entry is position q's only while it holds q + 1), word 2 the first
    // position the entry may hold next (its reader stores q - q % QUEUE_CAPACITY + QUEUE_CAPACITY
    // once it copied the entry; 0 at launch: free for lap 0), words 4..19 a copy of the slot's 16
    // words taken at claim time, so a worker reads its work from device memory instead of another
    // PCIe round trip. All positions are mod 2^32 (QUEUE_CAPACITY divides 2^32).
    uint32_t entries[QUEUE_CAPACITY][QUEUE_ENTRY_WORDS];
    HelpBoard help;      // staged copies idle workers help with (zeroed with the queue: no job open)
};
extern "C" {
__device__ QueueState vyre_queue;
}

// The device-owned counters (DONE_COUNT, FAULT_COUNT, CLAIM_COUNT, the metrics), counted in
// device memory and copied into the image by the dispatcher whenever DONE_COUNT or CLAIM_COUNT
// moved, and by the last block out. An atomic on a host-mapped word is a PCIe round trip that
// every block serialises on (the H100 has no host-native atomics): counting there capped bulk
// throughput. The image words keep one writer (the dispatcher) and plain stores.
#define COUNTER_METRICS (USER_METRIC_BASE + USER_OPCODE_COUNT)
#define DIRTY_WORDS ((COUNTER_METRICS + 31u) / 32u)
struct DeviceCounters {
    uint32_t done, fault, claim;       // absolute values, seeded from the image at start
    uint32_t metrics[COUNTER_METRICS];
    uint32_t dirty[DIRTY_WORDS];       // bit m: metric m moved since the dispatcher last copied it
};
__device__ DeviceCounters vyre_counters;

// 1 while the dispatcher has claimed slot i and its worker has not stored DONE or FAULT yet.
// The dispatcher claims in device memory and the worker that takes the slot stores CLAIMED in
// the image: a CLAIMED store by the dispatcher would have to reach host memory before the
// hand-off (a worker's DONE must never be overtaken by it), a PCIe write drained on the claim
// path of every slot. Until the worker's CLAIMED lands the slot still reads PUBLISHED, so the
// dispatcher checks this word before it reads a status (docs/PROTOCOL.md, Claiming).
__device__ uint32_t vyre_owned[1u << DOORBELL_SLOT_BITS];

// The hint position (docs/PROTOCOL.md, Hint positions) of the publication of slot i that this
// launch claimed last, valid while vyre_known[i] is 1 (0 at launch: what an earlier launch
// claimed is not known). Written and read by the dispatcher warp only.
__device__ uint32_t vyre_claimed_hint[1u << DOORBELL_SLOT_BITS];
__device__ uint32_t vyre_known[1u << DOORBELL_SLOT_BITS];

// ------------------------------------------------------------------ stage stamps (diagnostics)

// With $VYRE_MEGAKERNEL_DEFINES=VYRE_STAGE_STAMPS the kernel stamps %globaltimer (ns) at each step
// of a slot's way into control words STAMP_WORD + k, for `bench/roundtrip_breakdown.py --stages`
// (one slot in flight at a time). Those words are reserved (docs/PROTOCOL.md, section 6): a normal
// build never writes them; this build is a measuring instrument, not a device.
#ifdef VYRE_STAGE_STAMPS
#define STAMP_WORD 48u
__device__ __forceinline__ uint32_t global_ns() {
    uint64_t t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return (uint32_t)t;
}
#define STAMP(p, k, t) (*(volatile uint32_t*)((uint32_t*)(p).image + STAMP_WORD + (k)) = (t))
#define PASS_WORD 56u  // then: dispatcher passes that found entries, their ns, the entries found, scans
// Where a worker block's time goes, summed over every block and slot (ns): RUN_PHASE(k) adds the
// time since thread 0's previous mark to phase k. `bench/scan.py --phases` reads the sums before
// and after a measurement (RunPhase in bench/scan.py names them).
#define RUN_PHASES 12u  // the last word counts the slots served
__device__ unsigned long long vyre_run_phase_ns[RUN_PHASES];
__shared__ unsigned long long vyre_phase_since;
__device__ __forceinline__ unsigned long long global_ns64() {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}
#define RUN_PHASE_START() \
    do { if (threadIdx.x == 0) vyre_phase_since = global_ns64(); } while (0)
#define RUN_PHASE(k)                                                           \
    do {                                                                       \
        if (threadIdx.x == 0) {                                                \
            unsigned long long now_ = global_ns64();                           \
            atomicAdd(&vyre_run_phase_ns[k], now_ - vyre_phase_since);         \
            vyre_phase_since = now_;                                           \
        }                                                                      \
    } while (0)
#else
#define STAMP(p, k, t) ((void)0)
#define RUN_PHASE_START() ((void)0)
#define RUN_PHASE(k) ((void)0)
#endif

// ------------------------------------------------------------------ memory ordering helpers

__device__ __forceinline__ uint32_t load_acquire(const uint32_t* p) {
    uint32_t v;
    asm volatile("ld.acquire.sys.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}
__device__ __forceinline__ uint4 load_acquire4(const void* p) {  // one 16-byte read (one snapshot, 4.9), acquire
    uint4 v;
    asm volatile("ld.acquire.sys.global.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p) : "memory");
    return v;
}
__device__ __forceinline__ void store_release(uint32_t* p, uint32_t v) {
    asm volatile("st.release.sys.global.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}
__device__ __forceinline__ void fence_release_sys() {  // this thread's (and, cumulatively, its block's) stores first
    asm volatile("fence.acq_rel.sys;" ::: "memory");
}
__device__ __forceinline__ uint32_t load_acquire_gpu(const uint32_t* p) {  // device memory, GPU threads only
    uint32_t v;
    asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}
__device__ __forceinline__ uint32_t load_volatile(const uint32_t* p) { return *(const volatile uint32_t*)p; }
__device__ __forceinline__ uint4 load_volatile4(const void* p) {  // one 16-byte read, never cached
    uint4 v;
    asm volatile("ld.volatile.global.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p) : "memory");
    return v;
}
__device__ __forceinline__ void store_volatile(uint32_t* p, uint32_t v) { *(volatile uint32_t*)p = v; }
__device__ __forceinline__ void store_volatile4(void* p, uint4 v) {  // one 16-byte write
    asm volatile("st.volatile.global.v4.u32 [%0], {%1, %2, %3, %4};"
                 ::"l"(p), "r"(v.x), "r"(v.y), "r"(v.z), "r"(v.w) : "memory");
}

// ------------------------------------------------------------------ per-run state (one block)

struct RunShared {
    const unsigned char* input;
    uint64_t region_len;
    uint32_t own_lo, own_hi, file_lo, file_hi, chunk, lanes, fuel, emit_capacity, emit_words;
    uint32_t instructions_total, registers;
    uint32_t jit_id;                    // the program's native function in this module, 0: interpret
    uint32_t path;                      // PATH_* the run took (written to its context)
    const uint2* code;
    uint32_t emitted, dropped;          // the hit buffer's counters of a run in one block
    // where emit counts: &emitted (then dropped follows it), or a split run's pair in device
    // memory (LaneJob.counts), which every block running its lanes shares
    uint32_t* counts;
    uint32_t split;                     // the run's lanes are run by several blocks (run_split)
    uint32_t* records;
    uint32_t fault_lane, fault_code, fault_pc, fault_detail;
    uint64_t instructions;
    uint32_t table_count, binding_count;
    const unsigned char* table_ptr[MAX_TABLES];
    uint32_t table_len[MAX_TABLES];
    uint32_t table_states[MAX_TABLES];
    uint32_t* bind_ptr[VIR0_MAX_BINDINGS];   // generic: shared staging or global memory
    uint32_t bind_words[VIR0_MAX_BINDINGS];
    uint32_t* bind_home[VIR0_MAX_BINDINGS];  // where a staged run binding is written back
    uint32_t bind_init[VIR0_MAX_BINDINGS];   // its init value: what the host filled the home with
    uint32_t staged;                         // STAGED_*: where the run outputs live during the run
    // this worker block's device-memory scratch (set once per launch): run outputs too large for
    // the shared stage live here instead of in host-mapped memory (an atomic there is a PCIe trip)
    uint32_t* scratch;
    uint32_t scratch_words;
    // HIST_BINS words per warp of the stage that no binding uses, or null: where a warp counts
    // a long hist range before adding the counts to a binding in global memory
    uint32_t* hist_scratch;
};

struct Lane {
    uint32_t r[VIR0_MAX_REGISTERS];
    uint32_t pc, fuel, id;
    bool live;
    // the lowest-lane fault this thread saw (its lanes are processed in increasing order)
    uint32_t fault_lane, fault_code, fault_pc, fault_detail;
    uint64_t instructions;
};

__device__ __forceinline__ void lane_fault(Lane& L, uint32_t code, uint32_t detail) {
    if (L.fault_lane == NO_LANE) {
        L.fault_lane = L.id;
        L.fault_code = code;
        L.fault_pc = L.pc;
        L.fault_detail = detail;
    }
    L.live = false;
}

// ------------------------------------------------------------------ f32 helpers (docs/VIR0.md §8.4)

__device__ __forceinline__ uint32_t canon(float f) {
    uint32_t b = __float_as_uint(f);
    return (f != f) ? VIR0_CANONICAL_NAN : b;
}
__device__ __forceinline__ bool is_nan_bits(uint32_t b) { return (b & 0x7f800000u) == 0x7f800000u && (b & 0x7fffffu); }
__device__ __forceinline__ uint32_t fminmax(uint32_t a, uint32_t b, bool want_min) {
    bool an = is_nan_bits(a), bn = is_nan_bits(b);
    if (an && bn) return VIR0_CANONICAL_NAN;
    if (an) return b;
    if (bn) return a;
    float fa = __uint_as_float(a), fb = __uint_as_float(b);
    if (fa == fb) return want_min ? (a | b) : (a & b);  // only +0/-0 differ in bits: -0 < +0
    if (want_min) return fa < fb ? a : b;
    return fa > fb ? a : b;
}

// ------------------------------------------------------------------ little-endian loads

// The GPU is little-endian, so one aligned load of a word equals the bytes assembled in order;
// alignment is that of the absolute address (a region may start at any byte).
__device__ __forceinline__ uint32_t load_le(const unsigned char* q, uint32_t size) {
    uint64_t at = (uint64_t)q;
    if (size == 4 && (at & 3u) == 0) return *(const uint32_t*)q;
    if (size == 2 && (at & 1u) == 0) return *(const uint16_t*)q;
    uint32_t v = q[0];
    if (size > 1) v |= (uint32_t)q[1] << 8;
    if (size > 2) v |= ((uint32_t)q[2] << 16) | ((uint32_t)q[3] << 24);
    return v;
}

// q[0 .. 16) as four little-endian words, with the widest loads q's alignment allows.
__device__ __forceinline__ uint4 load16(const unsigned char* q) {
    uint64_t at = (uint64_t)q;
    if ((at & 15u) == 0) return *(const uint4*)q;
    if ((at & 7u) == 0) {
        uint2 lo = ((const uint2*)q)[0], hi = ((const uint2*)q)[1];
        return make_uint4(lo.x, lo.y, hi.x, hi.y);
    }
    return make_uint4(load_le(q, 4), load_le(q + 4, 4), load_le(q + 8, 4), load_le(q + 12, 4));
}

// ------------------------------------------------------------------ hashes

// a funnel shift of x with itself: one SHF (the shift pair and OR took three); r < 32 here
__device__ __forceinline__ uint32_t rotl32(uint32_t x, uint32_t r) { return __funnelshift_l(x, x, r); }

// ------------------------------------------------------------------ emit

__device__ __forceinline__ void emit_record(RunShared& S, const uint32_t* words) {
    uint32_t index = atomicAdd(&S.counts[0], 1u);
    if (index < S.emit_capacity) {
        uint32_t* out = S.records + (uint64_t)index * S.emit_words;
        // a constant trip count: in a JIT'd program `words` is a constant register index, so the
        // register file stays in registers (a runtime bound would force it into local memory)
#pragma unroll
        for (uint32_t k = 0; k < VIR0_MAX_EMIT_WORDS; k++)
            if (k < S.emit_words) out[k] = words[k];
    } else {
        atomicAdd(&S.counts[1], 1u);
    }
}

// dfae's record [i, state, 0, ...] cut to emit_words (docs/VIR0.md §8.10).
__device__ __forceinline__ void emit_match(RunShared& S, uint32_t i, uint32_t state) {
    uint32_t record[VIR0_MAX_EMIT_WORDS];
    for (uint32_t k = 0; k < VIR0_MAX_EMIT_WORDS; k++) record[k] = 0;
    record[0] = i;
    if (S.emit_words > 1) record[1] = state;
    emit_record(S, record);
}

// ------------------------------------------------------------------ the interpreter step

__device__ __forceinline__ bool range_ok(RunShared& S, Lane& L, uint32_t start, uint32_t len) {
    if ((uint64_t)start + len > S.region_len) {
        lane_fault(L, FAULT_OOB_INPUT, start);
        return false;
    }
    return true;
}

__device__ __forceinline__ bool input_load(RunShared& S, Lane& L, uint32_t address, uint32_t size, uint32_t& out) {
    if ((uint64_t)address + size > S.region_len) {
        lane_fault(L, FAULT_OOB_INPUT, address);
        return false;
    }
    out = load_le(S.input + address, size);
    return true;
}

__device__ __forceinline__ bool table_load(RunShared& S, Lane& L, uint32_t t, uint32_t address, uint32_t size,
                                           uint32_t& out) {
    if ((uint64_t)address + size > S.table_len[t]) {
        lane_fault(L, FAULT_OOB_TABLE, address);
        return false;
    }
    out = load_le(S.table_ptr[t] + address, size);
    return true;
}

__device__ __forceinline__ uint32_t* binding_word(RunShared& S, Lane& L, uint32_t binding, uint32_t index) {
    if (index >= S.bind_words[binding]) {
        lane_fault(L, FAULT_OOB_OUTPUT, index);
        return nullptr;
    }
    return S.bind_ptr[binding] + index;
}

__device__ __forceinline__ uint32_t special(RunShared& S, Lane& L, uint32_t which) {
    switch (which) {
        case SR_LANE_ID: return L.id;
        case SR_LANE_COUNT: return S.lanes;
        case SR_GROUP_LANE: return L.id & 31u;
        case SR_GROUP_ID: return L.id >> 5;
        case SR_REGION_LEN: return (uint32_t)S.region_len;
        case SR_OWN_LO: return S.own_lo;
        case SR_OWN_HI: return S.own_hi;
        case SR_FILE_OFFSET_LO: return S.file_lo;
        case SR_FILE_OFFSET_HI: return S.file_hi;
        case SR_CHUNK_INDEX: return S.chunk;
        case SR_EMIT_CAPACITY: return S.emit_capacity;
    }
    return 0;
}

__device__ __forceinline__ uint32_t int_binary(uint32_t op, uint32_t a, uint32_t b) {
    int32_t sa = (int32_t)a, sb = (int32_t)b;
    switch (op) {
        case OP_ADD: return a + b;
        case OP_SUB: return a - b;
        case OP_MUL: return a * b;
        case OP_MULHU: return __umulhi(a, b);
        case OP_MULHS: return (uint32_t)__mulhi(sa, sb);
        case OP_DIVU: return b == 0 ? 0xffffffffu : a / b;
        case OP_DIVS:
            if (b == 0) return 0xffffffffu;
            if (a == 0x80000000u && b == 0xffffffffu) return 0x80000000u;
            return (uint32_t)(sa / sb);
        case OP_REMU: return b == 0 ? a : a % b;
        case OP_REMS:
            if (b == 0) return a;
            if (a == 0x80000000u && b == 0xffffffffu) return 0;
            return (uint32_t)(sa % sb);
        case OP_AND: return a & b;
        case OP_OR: return a | b;
        case OP_XOR: return a ^ b;
        case OP_SHL: return b >= 32 ? 0u : a << b;
        case OP_SHR: return b >= 32 ? 0u : a >> b;
        case OP_SAR: return b >= 32 ? (sa < 0 ? 0xffffffffu : 0u) : (uint32_t)(sa >> b);
        case OP_ROTL: return rotl32(a, b & 31u);
        case OP_ROTR: return __funnelshift_r(a, a, b & 31u);
        case OP_MINU: return a < b ? a : b;
        case OP_MINS: return sa < sb ? a : b;
        case OP_MAXU: return a > b ? a : b;
        case OP_MAXS: return sa > sb ? a : b;
        case OP_EQ: return a == b;
        case OP_NE: return a != b;
        case OP_LTU: return a < b;
        case OP_LTS: return sa < sb;
        case OP_LEU: return a <= b;
        case OP_LES: return sa <= sb;
        case OP_GTU: return a > b;
        case OP_GTS: return sa > sb;
        case OP_GEU: return a >= b;
        case OP_GES: return sa >= sb;
    }
    return 0;
}

__device__ __forceinline__ uint32_t float_binary(uint32_t op, uint32_t a, uint32_t b) {
    float fa = __uint_as_float(a), fb = __uint_as_float(b);
    switch (op) {
        case OP_FADD: return canon(__fadd_rn(fa, fb));
        case OP_FSUB: return canon(__fsub_rn(fa, fb));
        case OP_FMUL: return canon(__fmul_rn(fa, fb));
        case OP_FDIV: return canon(__fdiv_rn(fa, fb));
        case OP_FMIN: return fminmax(a, b, true);
        case OP_FMAX: return fminmax(a, b, false);
        case OP_FLT: return fa < fb;
        case OP_FLE: return fa <= fb;
        case OP_FEQ: return fa == fb;
    }
    return 0;
}

__device__ __forceinline__ uint32_t unary(uint32_t op, uint32_t a) {
    float fa = __uint_as_float(a);
    switch (op) {
        case OP_NOT: return ~a;
        case OP_NEG: return 0u - a;
        case OP_POPCNT: return __popc(a);
        case OP_CLZ: return __clz(a);
        case OP_CTZ: return a ? (uint32_t)(__ffs(a) - 1) : 32u;
        case OP_BSWAP: return __byte_perm(a, 0, 0x0123);
        case OP_FSQRT: return canon(__fsqrt_rn(fa));
        case OP_FNEG: return a ^ 0x80000000u;
        case OP_FABS: return a & 0x7fffffffu;
        case OP_ITOF: return __float_as_uint(__int2float_rn((int32_t)a));
        case OP_UTOF: return __float_as_uint(__uint2float_rn(a));
        case OP_FTOI: return (uint32_t)__float2int_rz(fa);   // saturating; NaN -> 0 (PTX cvt.rzi)
        case OP_FTOU: return __float2uint_rz(fa);             // saturating; NaN, negatives -> 0
    }
    return 0;
}

__device__ __forceinline__ uint32_t atomic_op(uint32_t op, uint32_t* w, uint32_t value, uint32_t compare) {
    switch (op) {
        case OP_ATADD: return atomicAdd(w, value);
        case OP_ATMIN: return atomicMin(w, value);
        case OP_ATMAX: return atomicMax(w, value);
        case OP_ATAND: return atomicAnd(w, value);
        case OP_ATOR: return atomicOr(w, value);
        case OP_ATXOR: return atomicXor(w, value);
        case OP_ATXCHG: return atomicExch(w, value);
        case OP_ATCAS: return atomicCAS(w, compare, value);
    }
    return 0;
}

// ------------------------------------------------------------------ range scans (docs/VIR0.md §8.10)
//
// A lane's range is the bytes p[0 .. n) with p = input + start. The region pointer may start at
// any byte, so a range splits by *absolute* address into a head (the bytes before the first
// 16-aligned address, < 16), a body of whole aligned 16-byte vectors, and a tail (< 16 bytes).
// Only bytes of the range are ever read (compute-sanitizer clean even at the end of a buffer).
//
// countb, findb, findl and hist are warp-cooperative: the warp's participants with a long range
// are taken one after another, and for each, all 32 threads read the range together (thread t
// takes vectors t, t + 32, ...: every load instruction of the warp reads 512 contiguous bytes)
// and combine their shares with a warp reduction. fnv, xxh32 and dfa are sequential within a
// range, so each lane keeps its own range but streams it 16 bytes per load (stream_feed).

struct Split {
    uint32_t head;      // bytes before the body
    uint32_t vecs;      // aligned 16-byte vectors of the body
    uint32_t body_end;  // head + 16 * vecs: the tail is [body_end, n)
};

__device__ __forceinline__ Split split_range(const unsigned char* p, uint32_t n) {
    Split x;
    x.head = (uint32_t)(0ull - (uint64_t)p) & 15u;  // distance to the next multiple of 16
    if (x.head > n) x.head = n;
    x.vecs = (n - x.head) >> 4;
    x.body_end = x.head + (x.vecs << 4);
    return x;
}

#define NOT_A_BYTE 0x100u  // an edge value no byte equals: this thread has no edge byte

// The up to 30 bytes outside the body, one per thread: threads 0-15 take head byte `lane`,
// threads 16-31 tail byte `lane - 16`. False when this thread has none.
__device__ __forceinline__ bool edge_byte(const Split& x, uint32_t n, uint32_t lane, uint32_t& offset) {
    if (lane < 16u) {
        offset = lane;
        return lane < x.head;
    }
    offset = x.body_end + (lane - 16u);
    return lane - 16u < n - x.body_end;  // (body_end + lane - 16 < n could wrap)
}

// Bit 7 of each byte of w that equals the byte of `pattern` (the byte repeated 4 times), all other
// bits 0. Per byte b of x = w ^ pattern: (b & 0x7f) + 0x7f <= 0xfe never carries into the next
// byte and has bit 7 set iff b & 0x7f != 0; or-ing b adds b's own bit 7; so bit 7 ends clear iff
// b == 0. Exact (no false positives, unlike the classic "has zero byte" test).
__device__ __forceinline__ uint32_t match_bits(uint32_t w, uint32_t pattern) {
    uint32_t x = w ^ pattern;
    return ~(((x & 0x7f7f7f7fu) + 0x7f7f7f7fu) | x) & 0x80808080u;
}

__device__ __forceinline__ uint32_t count16(uint4 q, uint32_t pattern) {
    return __popc(match_bits(q.x, pattern)) + __popc(match_bits(q.y, pattern)) + __popc(match_bits(q.z, pattern)) +
           __popc(match_bits(q.w, pattern));
}

// match_bits' bits 7, 15, 23, 31 as bits 0-3. (m >> 7) has bits only at 0, 8, 16, 24; times
// 1 + 2^7 + 2^14 + 2^21 its partial products land on 16 distinct bit positions (no carries), and
// those at 21, 22, 23, 24 come from bits 0, 8, 16, 24 in that order.
__device__ __forceinline__ uint32_t nibble(uint32_t m) { return (((m >> 7) * 0x00204081u) >> 21) & 0xfu; }

// Bit i set iff byte i of q (bytes in address order) equals the pattern's byte.
__device__ __forceinline__ uint32_t mask16(uint4 q, uint32_t pattern) {
    return nibble(match_bits(q.x, pattern)) | (nibble(match_bits(q.y, pattern)) << 4) |
           (nibble(match_bits(q.z, pattern)) << 8) | (nibble(match_bits(q.w, pattern)) << 12);
}

// Vectors first + 32 k (k < SCAN_ROUND_VECS) of the body, those that exist, loaded together so
// their requests are in flight at once; the others are zero (callers skip them).
__device__ __forceinline__ void load_round(const uint4* body, uint32_t vecs, uint32_t first, uint4 (&q)[SCAN_ROUND_VECS]) {
#pragma unroll
    for (uint32_t k = 0; k < SCAN_ROUND_VECS; k++) q[k] = first + 32u * k < vecs ? body[first + 32u * k] : make_uint4(0, 0, 0, 0);
}

// A round of a find: the byte-match masks of this thread's vectors first + 32 k (0 past the
// body), so the loaded data dies at once.
__device__ __forceinline__ void mask_round(const uint4* body, uint32_t vecs, uint32_t first, uint32_t pattern,
                                           uint32_t (&mask)[SCAN_ROUND_VECS]) {
    uint4 q[SCAN_ROUND_VECS];
    load_round(body, vecs, first, q);
#pragma unroll
    for (uint32_t k = 0; k < SCAN_ROUND_VECS; k++) mask[k] = first + 32u * k < vecs ? mask16(q[k], pattern) : 0u;
}

// countb by the whole warp over one range: each thread counts its share; the sum is the count.
// Every thread of the warp calls it with the same p, n, byte (byte < 256).
__device__ uint32_t warp_count_byte(const unsigned char* p, uint32_t n, uint32_t byte) {
    uint32_t lane = threadIdx.x & 31u, offset, count = 0;
    Split x = split_range(p, n);
    // the edge byte is loaded now and compared after the body: its read is in flight with the
    // first round's instead of costing a memory latency of its own (a range is often 1-4 rounds)
    uint32_t edge = edge_byte(x, n, lane, offset) ? (uint32_t)p[offset] : NOT_A_BYTE;
    const uint4* body = (const uint4*)(p + x.head);
    uint32_t pattern = byte * 0x01010101u;
    for (uint32_t first = lane; first < x.vecs; first += 32u * SCAN_ROUND_VECS) {
        uint4 q[SCAN_ROUND_VECS];
        load_round(body, x.vecs, first, q);
#pragma unroll
        for (uint32_t k = 0; k < SCAN_ROUND_VECS; k++)
            if (first + 32u * k < x.vecs) count += count16(q[k], pattern);
    }
    count += edge == byte;
    return __reduce_add_sync(FULL_MASK, count);  // <= n: no wrap
}

// findb by the whole warp: the first offset in [0, n) of `byte`, or VIR0_NO_MATCH. The head is
// decided first (its offsets precede all others), then the body round by round (every offset of
// a round precedes every offset of the next, and the tail), each round's first match being the
// minimum over the threads of each thread's first match; the tail last.
__device__ uint32_t warp_find_byte(const unsigned char* p, uint32_t n, uint32_t byte) {
    uint32_t lane = threadIdx.x & 31u, offset, found = VIR0_NO_MATCH;
    Split x = split_range(p, n);
    if (edge_byte(x, n, lane, offset) && p[offset] == byte) found = offset;
    found = __reduce_min_sync(FULL_MASK, found);  // the first head match, else the first tail match
    if (found < x.head) return found;
    const uint4* body = (const uint4*)(p + x.head);
    uint32_t pattern = byte * 0x01010101u;
    for (uint32_t round = 0; round < x.vecs; round += 32u * SCAN_ROUND_VECS) {  // warp-uniform
        uint32_t mask[SCAN_ROUND_VECS];
        mask_round(body, x.vecs, round + lane, pattern, mask);
        uint32_t mine = VIR0_NO_MATCH;  // this thread's first match: the highest k first, the lowest kept
#pragma unroll
        for (uint32_t k = SCAN_ROUND_VECS; k-- > 0;)
            if (mask[k]) mine = x.head + 16u * (round + lane + 32u * k) + (__ffs(mask[k]) - 1);
        mine = __reduce_min_sync(FULL_MASK, mine);
        if (mine != VIR0_NO_MATCH) return mine;
    }
    return found;  // no body match: the first tail match, or VIR0_NO_MATCH
}

__device__ __forceinline__ bool literal_at(const unsigned char* q, const unsigned char* lit, uint32_t len) {
    for (uint32_t k = 0; k < len; k++)
        if (q[k] != lit[k]) return false;
    return true;
}

// The first offset o <= last among `mask`'s candidates (bit i: the byte at offset at + i equals
// the literal's first byte), in address order, each checked against the whole literal in memory.
__device__ __forceinline__ uint32_t literal16(uint32_t mask, const unsigned char* p, uint32_t at, uint32_t last,
                                              const unsigned char* lit, uint32_t len) {
    for (; mask; mask &= mask - 1) {
        uint32_t offset = at + (__ffs(mask) - 1);
        if (offset > last) return VIR0_NO_MATCH;  // every later candidate starts later still
        if (literal_at(p + offset, lit, len)) return offset;
    }
    return VIR0_NO_MATCH;
}

// findl by the whole warp: the first offset o <= n - len with p[o .. o+len) == lit, or
// VIR0_NO_MATCH (1 <= len <= n). Candidates are found as for findb (the literal's first byte)
// and in the same order: head, body rounds, tail.
__device__ uint32_t warp_find_literal(const unsigned char* p, uint32_t n, const unsigned char* lit, uint32_t len) {
    uint32_t lane = threadIdx.x & 31u, offset, found = VIR0_NO_MATCH, last = n - len;
    uint32_t first_byte = lit[0];
    Split x = split_range(p, n);
    if (edge_byte(x, n, lane, offset) && offset <= last && p[offset] == first_byte && literal_at(p + offset, lit, len))
        found = offset;
    found = __reduce_min_sync(FULL_MASK, found);
    if (found < x.head) return found;
    const uint4* body = (const uint4*)(p + x.head);
    uint32_t pattern = first_byte * 0x01010101u;
    for (uint32_t round = 0; round < x.vecs; round += 32u * SCAN_ROUND_VECS) {  // warp-uniform
        uint32_t mask[SCAN_ROUND_VECS];
        mask_round(body, x.vecs, round + lane, pattern, mask);
        uint32_t mine = VIR0_NO_MATCH;
        for (uint32_t k = 0; k < SCAN_ROUND_VECS && mine == VIR0_NO_MATCH; k++)
            mine = literal16(mask[k], p, x.head + 16u * (round + lane + 32u * k), last, lit, len);
        mine = __reduce_min_sync(FULL_MASK, mine);
        if (mine != VIR0_NO_MATCH) return mine;
    }
    return found;
}

// bins[b] += 1 for each byte b of w. Bins is a generic pointer (a binding's words: global or the
// shared stage), so these are generic atomics.
__device__ __forceinline__ void hist_word(uint32_t* bins, uint32_t w) {
    atomicAdd(&bins[w & 0xffu], 1u);
    atomicAdd(&bins[(w >> 8) & 0xffu], 1u);
    atomicAdd(&bins[(w >> 16) & 0xffu], 1u);
    atomicAdd(&bins[w >> 24], 1u);
}

// The same on a warp's private bins at shared-window address `bins`: shared-memory atomics
// (ATOMS), which the compiler cannot emit for a pointer it does not know is shared; the generic
// ones (ATOM) it emitted took the shared-memory path the slow way (histogram ran at 0.56x the
// hand-written kernel, whose bins are a __shared__ array).
__device__ __forceinline__ void hist_add_shared(uint32_t bins, uint32_t b) {
    asm volatile("red.shared.add.u32 [%0], 1;" ::"r"(bins + 4u * b) : "memory");
}
__device__ __forceinline__ void hist_word_shared(uint32_t bins, uint32_t w) {
    hist_add_shared(bins, w & 0xffu);
    hist_add_shared(bins, (w >> 8) & 0xffu);
    hist_add_shared(bins, (w >> 16) & 0xffu);
    hist_add_shared(bins, w >> 24);
}

// The body's vectors of one hist range, the warp's share of them by this thread: first, first +
// 32, ... in rounds of SCAN_ROUND_VECS loaded together. AddWord counts one word's bytes.
template <typename AddWord>
__device__ __forceinline__ void hist_body(const uint4* body, uint32_t vecs, uint32_t lane, AddWord& add_word) {
    for (uint32_t first = lane; first < vecs; first += 32u * SCAN_ROUND_VECS) {
        uint4 q[SCAN_ROUND_VECS];
        load_round(body, vecs, first, q);
#pragma unroll
        for (uint32_t k = 0; k < SCAN_ROUND_VECS; k++) {
            if (first + 32u * k < vecs) {
                add_word(q[k].x);
                add_word(q[k].y);
                add_word(q[k].z);
                add_word(q[k].w);
            }
        }
    }
}

// hist by the whole warp: words[byte] += 1 for every byte of p[0 .. n), as atomic adds (they
// commute, so the final words are those of the lane's own byte loop). A long range is first
// counted in `scratch` (this warp's HIST_BINS shared words, or null), then each nonzero count is
// added with one atomic: the same sums, far fewer atomics on the words. Also when the words are
// in shared memory (a staged run output): there every warp of the block would add into the same
// 256 words, contending for them (histogram ran at 0.5x a kernel with one histogram per warp).
__device__ void warp_histogram(const unsigned char* p, uint32_t n, uint32_t* words, uint32_t* scratch) {
    uint32_t lane = threadIdx.x & 31u, offset;
    bool private_bins = scratch != nullptr && n >= HIST_PRIVATE_MIN_BYTES;  // warp-uniform
    if (private_bins) {
        for (uint32_t k = lane; k < HIST_BINS; k += 32u) scratch[k] = 0;
        __syncwarp();
    }
    Split x = split_range(p, n);
    uint32_t edge = edge_byte(x, n, lane, offset) ? (uint32_t)p[offset] : NOT_A_BYTE;  // counted last (see warp_count_byte)
    const uint4* body = (const uint4*)(p + x.head);
    if (private_bins) {
        uint32_t bins = (uint32_t)__cvta_generic_to_shared(scratch);
        auto add_word = [&](uint32_t w) { hist_word_shared(bins, w); };
        hist_body(body, x.vecs, lane, add_word);
        if (edge != NOT_A_BYTE) hist_add_shared(bins, edge);
        __syncwarp();  // every count is in; thread t reads (and next time zeroes) bins t, t + 32, ...
        for (uint32_t k = lane; k < HIST_BINS; k += 32u) {
            uint32_t count = scratch[k];
            if (count) atomicAdd(&words[k], count);
        }
    } else {
        auto add_word = [&](uint32_t w) { hist_word(words, w); };
        hist_body(body, x.vecs, lane, add_word);
        if (edge != NOT_A_BYTE) atomicAdd(&words[edge], 1u);
    }
    // The owning lane's later accesses to these words (ldo, sto, atomics) follow its hist in its
    // program order (docs/VIR0.md §8.7) although other threads made the increments.
    __syncwarp();
}

// countb, findb, findl, hist for one lane alone: the byte loop (short ranges, and operands the warp
// scans do not take). Returns r[d]'s new value (hist writes no register).
__device__ uint32_t scan_alone(RunShared& S, uint32_t op, uint32_t start, uint32_t len, uint32_t base, uint32_t imm) {
    const unsigned char* p = S.input;
    uint32_t end = start + len;  // <= region_len: checked
    switch (op) {
        case OP_COUNTB: {
            uint32_t count = 0;
            for (uint32_t i = start; i < end; i++) count += p[i] == imm;
            return count;
        }
        case OP_FINDB:
            for (uint32_t i = start; i < end; i++)
                if (p[i] == imm) return i;
            return VIR0_NO_MATCH;
        case OP_FINDL: {
            const unsigned char* lit = S.table_ptr[imm];
            uint32_t n = S.table_len[imm];
            if (n <= len)
                for (uint32_t q = start; q <= end - n; q++)  // (q + n <= end could wrap)
                    if (literal_at(p + q, lit, n)) return q;
            return VIR0_NO_MATCH;
        }
        case OP_HIST: {
            uint32_t* words = S.bind_ptr[imm] + base;
            for (uint32_t i = start; i < end; i++) atomicAdd(&words[p[i]], 1u);
            return 0;
        }
    }
    return 0;
}

// countb, findb, findl, hist: one step, reached by every thread of the warp (op is warp-uniform).
// Each participant first checks its own operands exactly as alone (docs/VIR0.md §8.10: the range,
// then hist's base); one that fails faults, writes nothing, and takes no further part. A
// participant with a short range scans it alone; then the long ranges are scanned by the whole
// warp one after another (each thread of the warp helps, participant or not; none but the owner
// writes its registers), and the owner takes the result.
// Not inlined: one shared copy serves every instruction that scans (the interpreter's cases and
// each JIT'd one), and it takes and returns values, never the Lane, so a JIT'd program's
// registers stay registers. Returns (r[d]'s new value, fault code or 0, fault detail, 0); a
// non-participant's return is ignored.
__device__ __noinline__ uint4 scan_step(RunShared& S, bool part, uint32_t op, uint32_t start, uint32_t len,
                                        uint32_t base, uint32_t imm) {
    uint4 outcome = make_uint4(0u, 0u, 0u, 0u);
    bool go = part;
    if (go && (uint64_t)start + len > S.region_len) {
        outcome.y = FAULT_OOB_INPUT; outcome.z = start;
        go = false;
    }
    if (go && op == OP_HIST && (uint64_t)base + HIST_BINS > S.bind_words[imm]) {
        outcome.y = FAULT_OOB_OUTPUT; outcome.z = base;
        go = false;
    }
    uint32_t lit_len = op == OP_FINDL ? S.table_len[imm] : 0u;
    bool together = go && len >= WARP_SCAN_MIN_BYTES;
    if (op == OP_COUNTB || op == OP_FINDB) together = together && imm < 256u;  // a BYTE operand (verified)
    if (op == OP_FINDL) together = together && lit_len >= 1u && lit_len <= len;  // a literal that fits
    uint32_t result = 0;
    if (go && !together) result = scan_alone(S, op, start, len, base, imm);
    uint32_t lane = threadIdx.x & 31u;
    uint32_t* scratch = S.hist_scratch ? S.hist_scratch + (threadIdx.x >> 5) * HIST_BINS : nullptr;
    for (uint32_t todo = __ballot_sync(FULL_MASK, together); todo; todo &= todo - 1) {
        uint32_t owner = __ffs(todo) - 1;
        uint32_t s = __shfl_sync(FULL_MASK, start, owner), n = __shfl_sync(FULL_MASK, len, owner);
        const unsigned char* p = S.input + s;
        uint32_t found = 0;
        switch (op) {
            case OP_COUNTB: found = warp_count_byte(p, n, imm); break;
            case OP_FINDB: found = warp_find_byte(p, n, imm); break;
            case OP_FINDL: found = warp_find_literal(p, n, S.table_ptr[imm], lit_len); break;
            case OP_HIST: warp_histogram(p, n, S.bind_ptr[imm] + __shfl_sync(FULL_MASK, base, owner), scratch); break;
        }
        if ((op == OP_FINDB || op == OP_FINDL) && found != VIR0_NO_MATCH) found += s;  // a region offset
        if (lane == owner) result = found;
    }
    outcome.x = result;
    return outcome;
}

// fnv, xxh32, dfa: sequential within a range, so each lane reads its own. A lane is one serial
// chain (fnv: an xor and a multiply per byte), so its rate is the bytes it has in flight over the
// memory latency: with one 16-byte vector loaded ahead a lane waited a latency per 16 bytes
// (fnv1a_blocks ran at 0.47x the hand-written kernel, which loads 64 bytes at a time). So the body
// is streamed STREAM_VECS vectors ahead, and the up to 30 bytes outside it are loaded together
// with the first vectors, not one latency per byte.
#ifndef STREAM_VECS  // tuning knob ($VYRE_MEGAKERNEL_DEFINES=STREAM_VECS=8u): vectors a lane keeps in flight
#define STREAM_VECS 4u
#endif
#ifndef STREAM_PREFETCH_VECS  // tuning knob: each round asks L2 for the vector this far on (0: off)
#define STREAM_PREFETCH_VECS 32u    // 512 bytes: with the loads' 256-byte L2 fetches, DRAM reads run well ahead
#endif

// One aligned 16-byte vector of the input region (global memory: device or host-mapped). The
// L2::256B hint has L2 fetch the 256-byte block around it, so the lane's next vectors, which
// follow, are L2 hits rather than DRAM latencies. A hint: the value is that of a plain load.
__device__ __forceinline__ uint4 stream_load(const uint4* q) {
    uint4 v;
    asm("ld.global.L2::256B.v4.u32 {%0, %1, %2, %3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(q));
    return v;
}

// p[0 .. len), len < 16, as four little-endian words (byte i in word i / 4; the rest 0). Every
// byte load is issued before any is used (unrolled, predicated): one memory latency in all.
__device__ __forceinline__ uint32_t stream_byte(const unsigned char* q) {
    uint32_t v;
    asm("ld.global.u8 %0, [%1];" : "=r"(v) : "l"(q));
    return v;
}
__device__ __forceinline__ uint4 load_short(const unsigned char* p, uint32_t len) {
    uint32_t w[4] = {0u, 0u, 0u, 0u};
#pragma unroll
    for (uint32_t i = 0; i < 15u; i++) {
        uint32_t byte = i < len ? stream_byte(p + i) : 0u;
        w[i >> 2] |= byte << (8u * (i & 3u));
    }
    return make_uint4(w[0], w[1], w[2], w[3]);
}

// The first `len` bytes of load_short's words to `byte`, in order (a loop: `byte` may be large).
template <typename Byte>
__device__ __forceinline__ void feed_short(uint4 w, uint32_t len, Byte& byte) {
#pragma unroll 1
    for (uint32_t i = 0; i < len; i++) {
        byte(w.x & 0xffu);
        w.x = __funnelshift_r(w.x, w.y, 8);
        w.y = __funnelshift_r(w.y, w.z, 8);
        w.z = __funnelshift_r(w.z, w.w, 8);
        w.w >>= 8;
    }
}

// The vectors body[0 .. vecs) to `vec` in order, STREAM_VECS in flight: a ring of registers whose
// slot k is reloaded with the vector STREAM_VECS on as soon as it is fed. The first vectors are
// loaded by stream_start, so the caller's edge bytes load together with them.
// Depth: the ring's slots (STREAM_VECS; dfa, whose `vec` is large and whose steps are slow
// table reads, takes 2: `vec` is inlined Depth times).
template <uint32_t Depth>
struct Stream {
    uint4 q[Depth];
};

template <uint32_t Depth>
__device__ __forceinline__ void stream_start(Stream<Depth>& s, const uint4* body, uint32_t vecs) {
#pragma unroll
    for (uint32_t k = 0; k < Depth; k++) s.q[k] = k < vecs ? stream_load(body + k) : make_uint4(0, 0, 0, 0);
}

template <uint32_t Depth, typename Vec>
__device__ __forceinline__ void stream_feed(Stream<Depth>& s, const uint4* body, uint32_t vecs, Vec& vec) {
    uint32_t v = 0;
    for (; vecs - v >= Depth; v += Depth) {  // whole rounds: slot k holds vector v + k
        if (STREAM_PREFETCH_VECS != 0 && vecs - v > STREAM_PREFETCH_VECS)  // a hint, inside the range only
            asm volatile("prefetch.global.L2 [%0];" ::"l"(body + v + STREAM_PREFETCH_VECS));
#pragma unroll
        for (uint32_t k = 0; k < Depth; k++) {
            uint4 q = s.q[k];
            // past the body, the last vector again (inside the range, never fed): no predicate,
            // so no copy of the slot's old value
            s.q[k] = stream_load(body + min(v + Depth + k, vecs - 1u));
            vec(q);
        }
    }
#pragma unroll 1
    for (; v < vecs; v++) {  // the last < Depth vectors, all loaded: feed slot 0, move the rest down
        vec(s.q[0]);
#pragma unroll
        for (uint32_t k = 0; k + 1 < Depth; k++) s.q[k] = s.q[k + 1];
    }
}

// p[0 .. n) in address order: the head's bytes to `byte`, the body's aligned vectors to `vec`,
// the tail's bytes to `byte`. Only bytes of the range are read.
template <uint32_t Depth, typename Byte, typename Vec>
__device__ __forceinline__ void feed_range(const unsigned char* p, uint32_t n, Byte& byte, Vec& vec) {
    Split x = split_range(p, n);
    const uint4* body = (const uint4*)(p + x.head);
    Stream<Depth> s;
    stream_start(s, body, x.vecs);
    uint4 head = load_short(p, x.head), tail = load_short(p + x.body_end, n - x.body_end);
    feed_short(head, x.head, byte);
    stream_feed(s, body, x.vecs, vec);
    feed_short(tail, n - x.body_end, byte);
}

// A vector's 16 bytes to `byte` in order: word q.x, then the next ones move down (4 inlined
// steps, not 16: `byte` may be large, dfa's emits).
template <typename Byte>
__device__ __forceinline__ void feed_vector_bytes(uint4 q, Byte& byte) {
#pragma unroll 1
    for (uint32_t k = 0; k < 4; k++) {
        byte(q.x & 0xffu);
        byte((q.x >> 8) & 0xffu);
        byte((q.x >> 16) & 0xffu);
        byte(q.x >> 24);
        q.x = q.y;
        q.y = q.z;
        q.z = q.w;
    }
}

#define FNV_PRIME 16777619u

__device__ __forceinline__ uint32_t fnv_word(uint32_t h, uint32_t w) {
    h = (h ^ (w & 0xffu)) * FNV_PRIME;
    h = (h ^ ((w >> 8) & 0xffu)) * FNV_PRIME;
    h = (h ^ ((w >> 16) & 0xffu)) * FNV_PRIME;
    return (h ^ (w >> 24)) * FNV_PRIME;
}

// fnv and dfa over a checked range: not inlined, one copy for every instruction (see scan_step).
// fnv's vectors are fully unrolled (16 steps of 2 instructions on the chain, the byte
// extractions off it).
__device__ __noinline__ uint32_t fnv_range(const unsigned char* p, uint32_t n, uint32_t h) {
    auto byte = [&](uint32_t b) { h = (h ^ b) * FNV_PRIME; };
    auto vec = [&](uint4 q) { h = fnv_word(fnv_word(fnv_word(fnv_word(h, q.x), q.y), q.z), q.w); };
    feed_range<STREAM_VECS>(p, n, byte, vec);
    return h;
}

#define XXH_P1 0x9E3779B1u
#define XXH_P2 0x85EBCA77u
#define XXH_P3 0xC2B2AE3Du
#define XXH_P4 0x27D4EB2Fu
#define XXH_P5 0x165667B1u

// xxHash32's accumulators v1..v4 after one 16-byte stripe (words in address order).
__device__ __forceinline__ void xxh32_stripe(uint4& v, uint4 w) {
    v.x = rotl32(v.x + w.x * XXH_P2, 13) * XXH_P1;
    v.y = rotl32(v.y + w.y * XXH_P2, 13) * XXH_P1;
    v.z = rotl32(v.z + w.z * XXH_P2, 13) * XXH_P1;
    v.w = rotl32(v.w + w.w * XXH_P2, 13) * XXH_P1;
}

// xxHash32 (docs/VIR0.md §10.2) of p[0 .. n). Stripes start at p, so where p is 16-aligned they
// are the body's vectors, streamed STREAM_VECS ahead; elsewhere each stripe is read with the
// widest loads its alignment allows (load16), one stripe ahead. The last < 16 bytes are loaded
// together (load_short). The same bytes, so the same words either way.
__device__ __noinline__ uint32_t xxh32_range(const unsigned char* p, uint32_t n, uint32_t seed) {
    uint32_t i = 0, h;
    if (n >= 16) {
        uint4 v = make_uint4(seed + XXH_P1 + XXH_P2, seed + XXH_P2, seed, seed - XXH_P1);
        uint32_t stripes = n >> 4;
        if (((uint64_t)p & 15u) == 0) {
            const uint4* body = (const uint4*)p;
            Stream<STREAM_VECS> s;
            stream_start(s, body, stripes);
            auto stripe = [&](uint4 w) { xxh32_stripe(v, w); };
            stream_feed(s, body, stripes, stripe);
        } else {
            uint4 next = load16(p);  // one stripe ahead: its load is in flight while this one mixes
            for (uint32_t k = 0; k < stripes; k++) {
                uint4 w = next;
                if (k + 1 < stripes) next = load16(p + 16u * (k + 1));
                xxh32_stripe(v, w);
            }
        }
        i = stripes << 4;
        h = rotl32(v.x, 1) + rotl32(v.y, 7) + rotl32(v.z, 12) + rotl32(v.w, 18);
    } else {
        h = seed + XXH_P5;
    }
    h += n;
    uint32_t rest = n - i;  // < 16
    uint4 w = load_short(p + i, rest);
    if (rest >= 4) h = rotl32(h + w.x * XXH_P3, 17) * XXH_P4;
    if (rest >= 8) h = rotl32(h + w.y * XXH_P3, 17) * XXH_P4;
    if (rest >= 12) h = rotl32(h + w.z * XXH_P3, 17) * XXH_P4;
    uint32_t last = rest >= 12 ? w.w : rest >= 8 ? w.z : rest >= 4 ? w.y : w.x;  // the < 4 bytes after the words
#pragma unroll 1
    for (uint32_t k = 0; k < (rest & 3u); k++, last >>= 8) h = rotl32(h + (last & 0xffu) * XXH_P5, 11) * XXH_P1;
    h ^= h >> 15;
    h *= XXH_P2;
    h ^= h >> 13;
    h *= XXH_P3;
    h ^= h >> 16;
    return h;
}

// Returns (final state, accepting transitions); dfae also emits [offset, state] per accept.
__device__ __noinline__ uint2 dfa_range(RunShared& S, uint32_t start, uint32_t len, uint32_t state, uint32_t table,
                                       bool emits) {
    const uint32_t* t = (const uint32_t*)(S.table_ptr[table] + 4);
    uint32_t count = 0;
    uint32_t i = start;  // the region offset of the byte being fed
    auto step = [&](uint32_t byte) {
        uint32_t transition = t[state * 256u + byte];
        state = transition & 0x7fffffffu;
        if (transition & VIR0_DFA_ACCEPT_BIT) {
            count++;
            if (emits) emit_match(S, i, state);
        }
        i++;
    };
    auto vec = [&](uint4 q) { feed_vector_bytes(q, step); };
    feed_range<2>(S.input + start, len, step, vec);
    return make_uint2(state, count);
}

// One scheduler step of a warp: instruction byte OPB (opcode | VIR0_IMM_FORM) with operands
// d, a, b, imm, for the participating lanes. `OPB` is a template argument, so only its own case
// below is compiled into each instantiation (`if constexpr`): the interpreter's execute() switches
// over every valid byte once, and a JIT'd program (jit.py) calls exec_op<byte> with constant
// operands, so each of its instructions compiles to just that instruction's code (fast to
// build; its register indices constant: the register file stays in registers).
// The op is warp-uniform, so collectives are reached by every thread of the warp.
template <uint32_t OPB>
__device__ __forceinline__ void exec_op(RunShared& S, Lane& L, bool part, uint32_t participants, uint32_t d,
                                        uint32_t a, uint32_t b, uint32_t imm) {
    constexpr uint32_t op = OPB & ~VIR0_IMM_FORM;
    constexpr bool imm_form = (OPB & VIR0_IMM_FORM) != 0;
    uint32_t next = L.pc + 1;
    uint32_t* r = L.r;

    // collectives first: every thread of the warp takes part in the shuffle / vote
    if constexpr (op == OP_BALLOT) {
        uint32_t mask = __ballot_sync(FULL_MASK, part && r[a] != 0);
        if (part) { r[d] = mask; L.pc = next; }
        return;
    } else if constexpr (op == OP_SHFL) {
        uint32_t source = r[b] & 31u;
        uint32_t value = __shfl_sync(FULL_MASK, r[a], source);
        if (part) { r[d] = ((participants >> source) & 1u) ? value : r[a]; L.pc = next; }
        return;
    } else if constexpr (op == OP_RADD) {
        uint32_t sum = __reduce_add_sync(FULL_MASK, part ? r[a] : 0u);
        if (part) { r[d] = sum; L.pc = next; }
        return;
    } else if constexpr (op == OP_PSUM) {
        uint32_t own = part ? r[a] : 0u, scan = own;
        uint32_t lane = threadIdx.x & 31u;
        for (uint32_t offset = 1; offset < 32; offset <<= 1) {
            uint32_t up = __shfl_up_sync(FULL_MASK, scan, offset);
            if (lane >= offset) scan += up;
        }
        if (part) { r[d] = scan - own; L.pc = next; }
        return;
    } else if constexpr (op == OP_COUNTB || op == OP_FINDB || op == OP_FINDL || op == OP_HIST) {  // the whole warp scans
        uint4 outcome = scan_step(S, part, op, r[a], r[b], r[d], imm);
        if (part) {
            if (outcome.y) {
                lane_fault(L, outcome.y, outcome.z);
            } else {
                if (op != OP_HIST) r[d] = outcome.x;
                L.pc = next;
            }
        }
        return;
    } else {
        if (!part) return;
        if constexpr (op >= OP_ADD && op <= OP_GES) {
            r[d] = int_binary(op, r[a], imm_form ? imm : r[b]);
        } else if constexpr (op >= OP_FADD && op <= OP_FEQ) {
            r[d] = float_binary(op, r[a], imm_form ? imm : r[b]);
        } else if constexpr ((op >= OP_NOT && op <= OP_BSWAP) || (op >= OP_FSQRT && op <= OP_FTOU)) {
            r[d] = unary(op, r[a]);
        } else if constexpr (op == OP_NOP) {
        } else if constexpr (op == OP_EXIT) {
            L.live = false;
            return;
        } else if constexpr (op == OP_TRAP) {
            lane_fault(L, FAULT_TRAP, imm);
            return;
        } else if constexpr (op == OP_JMP) {
            next = imm;
        } else if constexpr (op == OP_JZ) {
            if (r[a] == 0) next = imm;
        } else if constexpr (op == OP_JNZ) {
            if (r[a] != 0) next = imm;
        } else if constexpr (op == OP_MOV) {
            r[d] = r[a];
        } else if constexpr (op == OP_LI) {
            r[d] = imm;
        } else if constexpr (op == OP_SREG) {
            r[d] = special(S, L, imm);
        } else if constexpr (op == OP_SEL) {
            uint32_t c = r[imm];
            r[d] = c ? r[a] : r[b];
        } else if constexpr (op == OP_ADD64 || op == OP_SUB64 || op == OP_MUL64) {
            uint64_t x = r[a] | ((uint64_t)r[a + 1] << 32), y = r[b] | ((uint64_t)r[b + 1] << 32);
            uint64_t z = op == OP_ADD64 ? x + y : op == OP_SUB64 ? x - y : x * y;
            r[d] = (uint32_t)z; r[d + 1] = (uint32_t)(z >> 32);
        } else if constexpr (op == OP_SHL64 || op == OP_SHR64) {
            uint64_t x = r[a] | ((uint64_t)r[a + 1] << 32);
            uint32_t sh = r[b];
            uint64_t z = sh >= 64 ? 0ull : (op == OP_SHL64 ? x << sh : x >> sh);
            r[d] = (uint32_t)z; r[d + 1] = (uint32_t)(z >> 32);
        } else if constexpr (op == OP_LTU64 || op == OP_EQ64) {
            uint64_t x = r[a] | ((uint64_t)r[a + 1] << 32), y = r[b] | ((uint64_t)r[b + 1] << 32);
            r[d] = op == OP_LTU64 ? (x < y) : (x == y);
        } else if constexpr (op == OP_MULWU) {
            uint64_t z = (uint64_t)r[a] * r[b];
            r[d] = (uint32_t)z; r[d + 1] = (uint32_t)(z >> 32);
        } else if constexpr (op == OP_LDI8 || op == OP_LDI16 || op == OP_LDI32) {
            uint32_t v, size = op == OP_LDI8 ? 1 : op == OP_LDI16 ? 2 : 4;
            if (!input_load(S, L, r[a] + imm, size, v)) return;
            r[d] = v;
        } else if constexpr (op == OP_LDT8 || op == OP_LDT16 || op == OP_LDT32) {
            uint32_t v, size = op == OP_LDT8 ? 1 : op == OP_LDT16 ? 2 : 4;
            if (!table_load(S, L, b, r[a] + imm, size, v)) return;
            r[d] = v;
        } else if constexpr (op == OP_LDO) {
            uint32_t* w = binding_word(S, L, b, r[a] + imm);
            if (!w) return;
            r[d] = *(volatile uint32_t*)w;
        } else if constexpr (op == OP_STO) {
            uint32_t* w = binding_word(S, L, b, r[a] + imm);
            if (!w) return;
            *(volatile uint32_t*)w = r[d];
        } else if constexpr (op == OP_BLEN) {
            r[d] = S.bind_words[b];
        } else if constexpr (op == OP_TLEN) {
            r[d] = S.table_len[b];
        } else if constexpr (op == OP_ATADD || op == OP_ATMIN || op == OP_ATMAX || op == OP_ATAND || op == OP_ATOR ||
                             op == OP_ATXOR || op == OP_ATXCHG || op == OP_ATCAS) {
            uint32_t* w = binding_word(S, L, imm, r[a]);
            if (!w) return;
            r[d] = atomic_op(op, w, r[b], r[d]);
        } else if constexpr (op == OP_EMIT) {
            emit_record(S, &r[a]);
        } else if constexpr (op == OP_FNV) {
            uint32_t start = r[a], len = r[b];
            if (!range_ok(S, L, start, len)) return;
            r[d] = fnv_range(S.input + start, len, r[d]);
        } else if constexpr (op == OP_XXH32) {
            uint32_t start = r[a], len = r[b];
            if (!range_ok(S, L, start, len)) return;
            r[d] = xxh32_range(S.input + start, len, r[d]);
        } else if constexpr (op == OP_DFA || op == OP_DFAE) {
            uint32_t start = r[a], len = r[b], state = r[d];
            if (!range_ok(S, L, start, len)) return;
            if (state >= S.table_states[imm]) { lane_fault(L, FAULT_OOB_TABLE, state); return; }
            uint2 walked = dfa_range(S, start, len, state, imm, op == OP_DFAE);
            r[d] = walked.x;
            r[d + 1] = walked.y;
        } else {
            static_assert(op != op, "an opcode of the ISA has no case in exec_op");
        }
        L.pc = next;
    }
}

// The interpreter's step: decode, then the one case of its opcode byte (VIR0_OPCODE_BYTES, the
// generated list of every valid byte). A byte the ISA does not define faults (verified code has none).
__device__ __forceinline__ void execute(RunShared& S, Lane& L, bool part, uint32_t participants, uint2 ins) {
    uint32_t d = (ins.x >> 8) & 0xffu, a = (ins.x >> 16) & 0xffu, b = ins.x >> 24, imm = ins.y;
    switch (ins.x & 0xffu) {
#define VYRE_EXEC_CASE(byte) \
    case byte: exec_op<byte>(S, L, part, participants, d, a, b, imm); return;
        VIR0_OPCODE_BYTES(VYRE_EXEC_CASE)
#undef VYRE_EXEC_CASE
    }
    if (part) lane_fault(L, FAULT_BAD_INSTRUCTION, ins.x & 0xffu);
}

// Run lanes of one batch: each thread is one lane; each warp is one lane group.
__device__ void run_batch(RunShared& S, Lane& L) {
    for (uint32_t i = 0; i < S.registers; i++) L.r[i] = 0;
    L.pc = 0;
    L.fuel = S.fuel;
    while (true) {
        uint32_t my_pc = L.live ? L.pc : 0xffffffffu;
        uint32_t pc = __reduce_min_sync(FULL_MASK, my_pc);
        if (pc == 0xffffffffu) break;
        bool part = L.live && L.pc == pc;
        if (part && L.fuel == 0) {  // out of fuel: the lane faults and is not a participant
            lane_fault(L, FAULT_FUEL_EXHAUSTED, 0);
            part = false;
        }
        uint32_t participants = __ballot_sync(FULL_MASK, part);
        if (participants == 0) continue;
        if (part) {
            L.fuel--;
            L.instructions++;
        }
        uint2 ins = S.code[pc];
        execute(S, L, part, participants, ins);
    }
}

// A JIT'd input load inside a loop (jit.py) first asks L2 for the bytes the same load will read
// JIT_PREFETCH_STRIDES iterations on if the lane keeps its last stride (`last`: the address it
// loaded last time). A lane's loop has one 4-byte load in flight per iteration, too few to cover
// HBM latency (checksum ran at 0.22 of a kernel with 16-byte loads); the prefetch is only a
// hint, never an architectural read: nothing changes but timing, and only bytes inside the
// region are named (a stride leading out of it prefetches nothing).
#ifndef JIT_PREFETCH_STRIDES  // tuning knob ($VYRE_MEGAKERNEL_DEFINES=JIT_PREFETCH_STRIDES=0 turns it off)
#define JIT_PREFETCH_STRIDES 4
#endif
__device__ __forceinline__ void jit_prefetch(const RunShared& S, const Lane& L, uint32_t address, uint32_t size,
                                             uint32_t& last) {
    if (JIT_PREFETCH_STRIDES == 0 || !L.live) return;
    int64_t ahead = (int64_t)address + (int64_t)JIT_PREFETCH_STRIDES * (int32_t)(address - last);
    last = address;
    if (ahead >= 0 && (uint64_t)ahead + size <= S.region_len)
        asm volatile("prefetch.global.L2 [%0];" ::"l"(S.input + ahead));
}

// A load of a speculative loop trip (jit.py _fast_loop): the SIZE bytes at `base + address`
// when they lie in [0, len), as input_load/table_load read them (little-endian), else 0 and
// `kept` false: the trip is dropped and the stepped path, which faults, runs it instead. No
// branch, so the trips' loads are all in flight together: a misaligned word is the funnel shift
// of the aligned words holding its bytes (both hold an in-range byte, so both are in the
// region's pages), the second read only when the bytes cross into it.
template <uint32_t SIZE>
__device__ __forceinline__ uint32_t jit_load(const unsigned char* base, uint64_t len, uint32_t address, bool& kept) {
    bool in = len >= SIZE && (uint64_t)address <= len - SIZE;
    kept = kept && in;
    uint32_t value = 0;
    if constexpr (SIZE == 1) {
        if (in) value = base[address];
    } else {
        const unsigned char* q = base + address;
        uint32_t shift = (uint32_t)(uint64_t)q & 3u;
        const uint32_t* word = (const uint32_t*)(q - shift);
        uint32_t lo = 0, hi = 0;
        if (in) lo = word[0];
        if (in && shift + SIZE > 4u) hi = word[1];
        value = __funnelshift_r(lo, hi, 8u * shift);
        if constexpr (SIZE == 2) value &= 0xffffu;
    }
    return value;
}

// The aligned reads of a speculative step (jit_wide.py). One warp vote before the trips proves
// every planned address aligned and inside the region: `address < jit_stop(len, width)` means the
// `width` bytes at `address` lie in [0, min(len, 2^32)), so a span never wraps 2^32 (capped at
// 2^32 - 1: the last address of a 4 GiB region then fails the vote, and today's exact path runs).
// The reads then need no bound, select or predicate: all are in flight together.
__device__ __forceinline__ uint32_t jit_stop(uint64_t len, uint32_t width) {
    uint64_t end = len < (1ull << 32) ? len : (1ull << 32);
    if (end < width) return 0u;
    uint64_t stop = end - width + 1u;
    return stop > 0xffffffffull ? 0xffffffffu : (uint32_t)stop;
}

template <uint32_t SIZE>
__device__ __forceinline__ uint32_t jit_read(const unsigned char* p) {
    if constexpr (SIZE == 1) return *p;
    else if constexpr (SIZE == 2) return *(const uint16_t*)p;
    else return *(const uint32_t*)p;
}

// JIT'd programs (vyre_runtime/backends/cuda/jit.py): a variant of this kernel compiled with
// VYRE_JIT includes the generated vyre_jit.h, whose jit_run_batch(S, L) runs one batch of the
// program S.jit_id names natively (the same scheduler and execute(), so the same semantics) and
// returns false for an id this module does not hold; the plain kernel holds none.
#ifdef VYRE_JIT
#include "vyre_jit.h"
#else
__device__ __forceinline__ bool jit_run_batch(RunShared& S, Lane& L) { return false; }
#endif

// All threads: the lanes of batches [first, end) of the run (batch b: lanes b * blockDim.x + t,
// thread t one lane, each warp one whole lane group: a batch never splits a group). The block's
// lowest faulting lane (the lowest over every call since thread 0 last reset S.fault_lane) and
// its fault go into S (docs/VIR0.md §7.5); its lane-instructions are added to S.instructions.
__device__ void run_batches(RunShared& S, uint32_t first, uint32_t end) {
    Lane L;
    L.fault_lane = NO_LANE;
    L.instructions = 0;
    // S.jit_id is block-uniform, so every thread takes the same path
    bool native = S.jit_id != 0;
    for (uint32_t batch = first; batch < end; batch++) {
        L.id = batch * blockDim.x + threadIdx.x;
        L.live = L.id < S.lanes;
        if (!native || !jit_run_batch(S, L)) {
            native = false;
            run_batch(S, L);
        }
    }
    if (threadIdx.x == 0) S.path = native ? PATH_JIT : PATH_INTERPRETED;
    // the run's fault is the lowest faulting lane's (docs/VIR0.md §7.5)
    if (L.fault_lane != NO_LANE) atomicMin(&S.fault_lane, L.fault_lane);
    atomicAdd((unsigned long long*)&S.instructions, (unsigned long long)L.instructions);
    __syncthreads();
    if (L.fault_lane != NO_LANE && L.fault_lane == S.fault_lane) {
        S.fault_code = L.fault_code;
        S.fault_pc = L.fault_pc;
        S.fault_detail = L.fault_detail;
    }
    __syncthreads();
}

// All threads: a run split over several blocks (below, with the help board); false when the
// board had no free job: then nothing ran.
__device__ bool run_split(RunShared& S, uint32_t batches);

// All threads: every lane of the run set up in S, in this block alone or, for a run load_run
// marked (S.split), with the blocks that take its lane batches off the help board.
__device__ void run_program(RunShared& S) {
    uint32_t batches = (S.lanes + blockDim.x - 1) / blockDim.x;
    if (LANE_SPLIT && S.split && run_split(S, batches)) return;
    run_batches(S, 0u, batches);
}

// ------------------------------------------------------------------ slot execution

struct __align__(16) SlotShared {  // words[] is filled with 16-byte stores
    uint32_t words[SLOT_WORDS];
    uint32_t results[RESULT_WORDS];
    uint32_t fault;   // SlotFault code, 0 = none
    uint32_t index;
};

__device__ __forceinline__ uint32_t* observable(const Params& p, uint32_t first, uint32_t count, SlotShared& T) {
    if ((uint64_t)first + count > p.observable_count) {
        T.fault = SF_BAD_ARGUMENT;
        T.results[3] = first;
        return nullptr;
    }
    return (uint32_t*)p.image + p.observables + first;
}

// Built-ins run on thread 0 of the block. Returns false when the slot faulted (T.fault set).
__device__ bool run_builtin(const Params& p, uint32_t op, const uint32_t* args, SlotShared& T);

__device__ bool builtin_simple(const Params& p, uint32_t op, const uint32_t* args, SlotShared& T) {
    uint32_t* image = (uint32_t*)p.image;
    switch (op) {
        case BI_NOP: return true;
        case BI_STORE_U32: { uint32_t* w = observable(p, args[0], 1, T); if (!w) return false; store_volatile(w, args[1]); return true; }
        case BI_ATOMIC_ADD: { uint32_t* w = observable(p, args[0], 1, T); if (!w) return false; T.results[0] = atomicAdd(w, args[1]); return true; }
        case BI_LOAD_U32: {
            uint32_t* s = observable(p, args[0], 1, T); if (!s) return false;
            uint32_t* d = observable(p, args[1], 1, T); if (!d) return false;
            uint32_t v = load_volatile(s); store_volatile(d, v); T.results[0] = v; return true;
        }
        case BI_COMPARE_SWAP: { uint32_t* w = observable(p, args[0], 1, T); if (!w) return false; T.results[0] = atomicCAS(w, args[1], args[2]); return true; }
        case BI_MEMCPY: {
            uint32_t* s = observable(p, args[0], args[2], T); if (!s) return false;
            uint32_t* d = observable(p, args[1], args[2], T); if (!d) return false;
            if (d < s) { for (uint32_t i = 0; i < args[2]; i++) store_volatile(d + i, load_volatile(s + i)); }
            else { for (uint32_t i = args[2]; i > 0; i--) store_volatile(d + i - 1, load_volatile(s + i - 1)); }
            T.results[0] = args[2];
            return true;
        }
        case BI_DFA_STEP: {
            const Dfa* dfa = ((const Dfa*)p.dfas) + (args[0] % p.dfa_capacity);
            if (args[0] == 0 || load_volatile(&dfa->handle) != args[0]) { T.fault = SF_BAD_HANDLE; T.results[3] = args[0]; return false; }
            uint32_t state = args[1], n = args[2];
            if (n > 36) { T.fault = SF_BAD_ARGUMENT; T.results[3] = n; return false; }
            if (state >= dfa->states) { T.fault = SF_BAD_ARGUMENT; T.results[3] = state; return false; }
            const uint32_t* t = (const uint32_t*)dfa->transitions;
            uint32_t matches = 0;
            for (uint32_t i = 0; i < n; i++) {
                uint32_t byte = (args[3 + i / 4] >> (8 * (i % 4))) & 0xffu;
                uint32_t transition = t[state * 256u + byte];
                state = transition & 0x7fffffffu;
                matches += transition >> 31;
            }
            T.results[0] = state; T.results[1] = matches;
            return true;
        }
        case BI_BATCH_FENCE:
            T.results[0] = atomicAdd(&image[CW_EPOCH], 1u) + 1u;
            store_volatile(&image[CW_LAST_FENCE_TAG], args[1]);
            return true;
        case BI_PRINTF: {
            uint32_t* header = image + p.debug_log;
            T.results[0] = 0;
            while (true) {  // reserve a record with CAS among device threads; never past capacity
                uint32_t write = load_volatile(&header[DW_WRITE_CURSOR]);
                uint32_t read = load_volatile(&image[CW_DEBUG_READ_CURSOR]);
                if (write - read >= p.debug_capacity) { atomicAdd(&header[DW_DROPPED], 1u); return true; }
                if (atomicCAS(&header[DW_WRITE_CURSOR], write, write + 1u) == write) {
                    uint32_t* rec = header + DW_HEADER_WORDS + (write % p.debug_capacity) * DEBUG_RECORD_WORDS;
                    rec[1] = args[0]; rec[2] = args[1]; rec[3] = args[2]; rec[4] = T.index;
                    rec[5] = T.words[SW_TENANT]; rec[6] = 0; rec[7] = 0;
                    __threadfence_system();
                    store_release(&rec[0], write + 1u);  // sequence last: the record is complete
                    T.results[0] = 1;
                    return true;
                }
            }
        }
        case BI_SHUTDOWN:
            // the control word only: the dispatcher reads it, publishes nothing more and alone tells
            // the workers to leave. Setting the queue's flag here raced it: a slot queued after
            // the workers had left was stuck CLAIMED for good (docs/PROTOCOL.md, 5.2)
            store_release(&image[CW_SHUTDOWN], 1u);
            return true;
    }
    T.fault = SF_BAD_OPCODE;
    T.results[3] = op;
    return false;
}

__device__ bool builtin_packed(const Params& p, const uint32_t* args, SlotShared& T) {
    const unsigned char* meta = (const unsigned char*)args;
    uint32_t count = meta[0];
    if (count < 1 || count > MAX_PACKED_OPS) { T.fault = SF_BAD_PACKED; return false; }
    uint32_t metadata_words = (1 + 3 * count + 3) / 4;
    for (uint32_t i = 0; i < count; i++) {  // validate everything before running anything
        uint32_t op = meta[1 + 3 * i], first = meta[2 + 3 * i], length = meta[3 + 3 * i];
        if (!((PACKABLE_MASK >> op) & 1u) || op >= 32 || first < metadata_words || first + length > ARGS_PER_SLOT) {
            T.fault = SF_BAD_PACKED;
            return false;
        }
    }
    for (uint32_t i = 0; i < count; i++) {
        uint32_t op = meta[1 + 3 * i], first = meta[2 + 3 * i], length = meta[3 + 3 * i];
        uint32_t inner[ARGS_PER_SLOT];
        for (uint32_t k = 0; k < ARGS_PER_SLOT; k++) inner[k] = k < length ? args[first + k] : 0u;
        for (uint32_t k = 0; k < RESULT_WORDS; k++) T.results[k] = 0;
        if (!builtin_simple(p, op, inner, T)) return false;
    }
    return true;
}

__device__ bool builtin_load_miss(const Params& p, const uint32_t* args, SlotShared& T) {
    uint32_t* image = (uint32_t*)p.image;
    uint32_t resource = args[0], nbytes = args[3], destination = args[4];
    if (nbytes == 0 || (uint64_t)destination + (nbytes + 3) / 4 > p.observable_count) {
        T.fault = SF_BAD_ARGUMENT; T.results[3] = nbytes; return false;
    }
    uint32_t* entry = nullptr;
    while (entry == nullptr) {  // take an EMPTY entry among device threads
        for (uint32_t e = 0; e < p.io_entries && entry == nullptr; e++) {
            uint32_t* candidate = image + p.io_queue + e * IO_ENTRY_WORDS;
            if (load_volatile(&candidate[IW_STATUS]) == IS_EMPTY &&
                atomicCAS(&candidate[IW_STATUS], IS_EMPTY, IS_RESERVED) == IS_EMPTY) entry = candidate;
        }
        if (entry == nullptr) {
            // SHUTDOWN itself, not the queue's flag (which PAUSE raises too): across a pause the
            // host keeps answering IO, and a relaunch must not cost a LOAD_MISS its answer
            if (load_volatile(&image[CW_SHUTDOWN])) { T.fault = SF_CANCELLED; return false; }
            __nanosleep(1000);
        }
    }
    entry[IW_OP] = IO_OP_READ; entry[IW_RESOURCE] = resource; entry[IW_OFFSET_LO] = args[1];
    entry[IW_OFFSET_HI] = args[2]; entry[IW_BYTES] = nbytes; entry[IW_DESTINATION] = destination; entry[IW_RESULT] = 0;
    __threadfence_system();
    store_release(&entry[IW_STATUS], IS_PUBLISHED);
    store_release(&image[p.ring + T.index * SLOT_WORDS + SW_STATUS], ST_WAIT_IO);
    long long shutdown_seen = 0;
    uint32_t state;
    while (true) {  // the host answers every claimed request, ERROR included
        state = load_acquire(&entry[IW_STATUS]);
        if (state == IS_OK || state == IS_ERROR) break;
        if (load_volatile(&image[CW_SHUTDOWN])) {  // SHUTDOWN, not PAUSE (see above)
            if (!shutdown_seen) shutdown_seen = clock64();
            else if (clock64() - shutdown_seen > (long long)IO_SHUTDOWN_GRACE_CYCLES) { T.fault = SF_CANCELLED; return false; }
        }
        __nanosleep(2000);
    }
    uint32_t result = load_volatile(&entry[IW_RESULT]);
    store_release(&entry[IW_STATUS], IS_EMPTY);
    if (state == IS_ERROR) { T.fault = SF_IO_ERROR; T.results[3] = result; return false; }
    T.results[0] = result;
    return true;
}

__device__ bool run_builtin(const Params& p, uint32_t op, const uint32_t* args, SlotShared& T) {
    if (op == BI_PACKED_SLOT) return builtin_packed(p, args, T);
    if (op == BI_LOAD_MISS) return builtin_load_miss(p, args, T);
    return builtin_simple(p, op, args, T);
}

// ------------------------------------------------------------------ a run's records

__device__ __forceinline__ uint2 load_volatile2(const void* p) {  // one 8-byte read, never cached
    uint2 v;
    asm volatile("ld.volatile.global.v2.u32 {%0, %1}, [%2];" : "=r"(v.x), "=r"(v.y) : "l"(p) : "memory");
    return v;
}

// Shared-memory copies of the records a run reads. The tables of records are host-mapped: thread
// 0 following their fields one after another paid a PCIe round trip (2-4 us under load) for each
// dependent read; warp 0 copies all three records with every 8-byte read in flight at once.
struct __align__(8) RunRecords {
    Program program;
    Context context;  // its settings (fuel, emit capacity, records, outputs); results go to the real one
    Region region;
};
constexpr uint32_t RECORD_WORDS8 = (sizeof(Program) + sizeof(Context) + sizeof(Region)) / 8u;
static_assert(sizeof(Program) % 8 == 0 && sizeof(Context) % 8 == 0 && sizeof(Region) % 8 == 0, "8-byte records");
static_assert(offsetof(RunRecords, context) == sizeof(Program), "RunRecords is the three records back to back");
static_assert(offsetof(RunRecords, region) == sizeof(Program) + sizeof(Context), "RunRecords is packed");

// Warp 0 (all 32 threads): R = *program, *context and, unless null, *region. The caller syncs.
__device__ void fetch_records(const Program* program, const Context* context, const Region* region, RunRecords& R) {
    constexpr uint32_t P = sizeof(Program) / 8u, C = sizeof(Context) / 8u;
    constexpr uint32_t PER_LANE = (RECORD_WORDS8 + 31u) / 32u;
    uint32_t lane = threadIdx.x & 31u;
    uint32_t words = region ? RECORD_WORDS8 : P + C;
    uint2 v[PER_LANE];
#pragma unroll
    for (uint32_t k = 0; k < PER_LANE; k++) {  // every read issued before any is used
        uint32_t i = lane + 32u * k;
        const uint2* source = i < P ? (const uint2*)program + i
                              : i < P + C ? (const uint2*)context + (i - P)
                                          : (const uint2*)region + (i - P - C);
        v[k] = i < words ? load_volatile2(source) : make_uint2(0u, 0u);
    }
#pragma unroll
    for (uint32_t k = 0; k < PER_LANE; k++) {
        uint32_t i = lane + 32u * k;
        if (i < words) ((uint2*)&R)[i] = v[k];
    }
}

// Thread 0: the run state of `program` with `context` over `length` bytes at `input`, with the
// slot's own range, file offset and chunk index, on `lanes` lanes.
__device__ void load_run(RunShared& S, const Program* program, const Context* context, const unsigned char* input,
                         uint32_t length, const uint32_t* args, uint32_t lanes, uint32_t* stage) {
    S.input = input;
    S.region_len = length;
    S.own_lo = args[RA_OWN_LO]; S.own_hi = args[RA_OWN_HI];
    S.file_lo = args[RA_FILE_OFFSET_LO]; S.file_hi = args[RA_FILE_OFFSET_HI];
    S.chunk = args[RA_CHUNK_INDEX]; S.lanes = lanes;
    S.fuel = context->fuel ? context->fuel : program->fuel;
    S.emit_capacity = context->emit_capacity; S.emit_words = program->emit_words;
    S.records = (uint32_t*)context->records;
    S.registers = program->registers;
    S.jit_id = program->jit_id;
    S.code = (const uint2*)program->code;
    S.table_count = program->table_count; S.binding_count = program->binding_count;
    S.emitted = 0; S.dropped = 0; S.fault_lane = NO_LANE; S.instructions = 0;
    S.counts = &S.emitted;
    uint32_t run_words = 0, scratch_words = 0;  // the scratch keeps each binding 16-byte aligned
    for (uint32_t i = 0; i < S.binding_count; i++)
        if (program->bindings[i].scope == SCOPE_RUN) {
            run_words += program->bindings[i].words;
            scratch_words += (program->bindings[i].words + 3u) & ~3u;
        }
    // A run of several lane batches over enough bytes may be split over blocks (run_split). Its
    // outputs must then be where every block's lanes reach them, never in this block's shared
    // stage: in its device scratch (atomics in L2), else where the host put them.
    uint32_t batches = (lanes + blockDim.x - 1u) / blockDim.x;
    S.split = LANE_SPLIT && batches >= LANE_SPLIT_MIN_BATCHES && length >= LANE_SPLIT_MIN_BYTES;
    S.staged = !S.split && run_words <= STAGE_WORDS ? STAGED_SHARED
               : scratch_words <= S.scratch_words ? STAGED_DEVICE : STAGED_IN_PLACE;
    uint32_t used = S.staged == STAGED_SHARED ? run_words : 0u;  // the stage's words after these are free
    S.hist_scratch = STAGE_WORDS - used >= HIST_BINS * (blockDim.x / 32u) ? stage + used : nullptr;
}

__device__ __forceinline__ uint32_t kept_records(const RunShared& S) {
    return S.emitted < S.emit_capacity ? S.emitted : S.emit_capacity;
}

// All threads: a staged run's outputs start as the host's buffers do. The host fills every RUN
// binding's buffer with the binding's init value (CudaDevice._stage_context) and nothing else
// writes it before the run, so the stage is filled from the PROGRAM record's init instead of
// being read over PCIe. The device scratch is 16-byte aligned per binding: filled by vectors.
__device__ void stage_outputs_in(RunShared& S) {
    for (uint32_t i = 0; i < S.binding_count; i++) {
        if (!S.bind_home[i]) continue;
        uint32_t init = S.bind_init[i], words = S.bind_words[i], w = threadIdx.x;
        if (S.staged == STAGED_DEVICE) {
            uint4 fill = make_uint4(init, init, init, init);
            for (; w < words / 4u; w += blockDim.x) ((uint4*)S.bind_ptr[i])[w] = fill;
            w = words / 4u * 4u + threadIdx.x;
        }
        for (; w < words; w += blockDim.x) S.bind_ptr[i][w] = init;
    }
}

// All threads: a staged run's outputs back to the host's buffers, which still hold the init
// value everywhere: only the words that differ from it are written (posted stores, coalesced
// where the changed words are adjacent; complete_slot's fence orders them before DONE).
// Volatile reads: a split run's words were written by other blocks (in L2), and this block's
// L1 may still hold lines of its scratch from an earlier run's stage-out.
__device__ void stage_outputs_out(RunShared& S) {
    for (uint32_t i = 0; i < S.binding_count; i++) {
        if (!S.bind_home[i]) continue;
        uint32_t init = S.bind_init[i], words = S.bind_words[i];
        uint32_t *from = S.bind_ptr[i], *home = S.bind_home[i];
        for (uint32_t w = threadIdx.x; w < words; w += blockDim.x) {
            uint32_t v = *(const volatile uint32_t*)&from[w];
            if (v != init) home[w] = v;
        }
    }
}

// All threads: a run set up by load_run, from its tables and bindings to the result fields of
// its context (the host reads them after the slot completes).
__device__ void run_loaded(RunShared& S, const RunRecords& R, Context* context, uint32_t* stage) {
    const Program* program = &R.program;
    // tables and bindings, one thread each
    if (threadIdx.x < S.table_count) {
        const Table* t = ((const Table*)program->tables) + threadIdx.x;
        S.table_ptr[threadIdx.x] = (const unsigned char*)t->pointer;
        S.table_len[threadIdx.x] = t->length;
        S.table_states[threadIdx.x] = t->dfa_states;
    }
    if (threadIdx.x == 0) {
        uint32_t offset = 0;
        for (uint32_t i = 0; i < S.binding_count; i++) {
            const Binding& binding = program->bindings[i];
            S.bind_words[i] = binding.words;
            S.bind_init[i] = binding.init;
            if (binding.scope == SCOPE_GLOBAL) {
                S.bind_ptr[i] = (uint32_t*)binding.global_pointer;
                S.bind_home[i] = nullptr;
            } else {
                S.bind_home[i] = (uint32_t*)R.context.outputs[i];
                if (S.staged == STAGED_SHARED) {
                    S.bind_ptr[i] = stage + offset;
                    offset += binding.words;
                } else if (S.staged == STAGED_DEVICE) {
                    S.bind_ptr[i] = S.scratch + offset;
                    offset += (binding.words + 3u) & ~3u;
                } else {
                    S.bind_ptr[i] = S.bind_home[i];
                }
            }
        }
    }
    __syncthreads();
    if (S.staged != STAGED_IN_PLACE) {
        stage_outputs_in(S);
        __syncthreads();
    }
    RUN_PHASE(2);  // tables, bindings, run outputs staged in
    run_program(S);
    RUN_PHASE(3);  // the program
    if (S.staged != STAGED_IN_PLACE) stage_outputs_out(S);
    __syncthreads();
    if (threadIdx.x == 0) {
        context->emitted = kept_records(S);
        context->dropped = S.dropped;
        context->instructions = S.instructions;
        context->lanes = S.lanes;
        context->path = S.path;
        context->fault_code = S.fault_code;
        context->fault_pc = S.fault_pc;
        context->fault_detail = S.fault_detail;
        context->fault_lane = S.fault_lane;
    }
    RUN_PHASE(4);  // run outputs staged out, the context's result fields
}

// ------------------------------------------------------------------ fused runs

// What thread 0 resolved of a fused run, for the whole block (device or shared memory only: the
// records themselves are host-mapped, and every thread reading them would cross PCIe).
struct FusedShared {
    uint32_t count;
    const Program* programs[MAX_FUSED_MEMBERS];
    Context* contexts[MAX_FUSED_MEMBERS];
    uint32_t lanes[MAX_FUSED_MEMBERS];
    const unsigned char* source;  // the run's bytes where they lie
    unsigned char* staging;       // device memory to copy them into first, or null: read in place
};

// The fused-group record `handle` would name, or null when there are none; it is that group's
// only if it holds `handle`: a program handle never matches (one handle counter serves every
// kind, so the two tables never hold the same handle).
__device__ __forceinline__ const Fused* fused_slot(const Params& p, uint32_t handle) {
    if (handle == 0 || p.fused_capacity == 0) return nullptr;
    return ((const Fused*)p.fused) + (handle % p.fused_capacity);
}

__device__ __forceinline__ bool slot_fault(SlotShared& T, uint32_t code, uint32_t detail) {
    T.fault = code;
    T.results[3] = detail;
    return false;
}

// Thread 0: every check of a fused RUN_PROGRAM, in the CPU backend's order (handles: the fused
// run, the region, then each member's program and context; then the byte range and the lanes),
// before any member runs. Fills F; false when the slot faulted.
__device__ bool check_fused(const Params& p, const Fused* group, const uint32_t* args, SlotShared& T, FusedShared& F) {
    uint32_t run_handle = args[RA_CONTEXT], region_handle = args[RA_REGION];
    const FusedRun* run = ((const FusedRun*)p.fused_runs) + (run_handle % p.fused_run_capacity);
    const Region* region = ((const Region*)p.regions) + (region_handle % p.region_capacity);
    uint32_t count = group->count;
    if (run_handle == 0 || load_volatile(&run->handle) != run_handle || run->count != count || count > MAX_FUSED_MEMBERS)
        return slot_fault(T, SF_BAD_HANDLE, run_handle);
    if (region_handle == 0 || load_volatile(&region->handle) != region_handle)
        return slot_fault(T, SF_BAD_HANDLE, region_handle);
    F.count = count;
    for (uint32_t m = 0; m < count; m++) {
        uint32_t program_handle = group->members[m], context_handle = run->contexts[m];
        const Program* program = ((const Program*)p.programs) + (program_handle % p.program_capacity);
        Context* context = ((Context*)p.contexts) + (context_handle % p.context_capacity);
        if (program_handle == 0 || load_volatile(&program->handle) != program_handle)
            return slot_fault(T, SF_BAD_HANDLE, program_handle);
        if (context_handle == 0 || load_volatile(&context->handle) != context_handle)
            return slot_fault(T, SF_BAD_HANDLE, context_handle);
        F.programs[m] = program;
        F.contexts[m] = context;
        F.lanes[m] = run->lanes[m];
    }
    uint64_t offset = args[RA_OFFSET_LO] | ((uint64_t)args[RA_OFFSET_HI] << 32);
    uint32_t length = args[RA_LENGTH];
    if (offset + length > region->length || args[RA_OWN_LO] > args[RA_OWN_HI] || args[RA_OWN_HI] > length)
        return slot_fault(T, SF_BAD_ARGUMENT, args[RA_OFFSET_LO]);
    if (args[RA_LANES] != 0) return slot_fault(T, SF_BAD_ARGUMENT, args[RA_LANES]);  // lanes are per member
    for (uint32_t m = 0; m < count; m++) {
        if (F.lanes[m] > (1u << 20)) return slot_fault(T, SF_BAD_ARGUMENT, F.lanes[m]);
        if (F.lanes[m] == 0) F.lanes[m] = F.programs[m]->lanes;
    }
    F.source = (const unsigned char*)region->pointer + offset;
    // the copy keeps the source's offset within 16 bytes and rounds its end up to 16 (copy_input)
    uint64_t needed = ((uint64_t)F.source & 15u) + length + 15u;
    F.staging = run->staging && run->staging_bytes >= needed ? (unsigned char*)run->staging : nullptr;
    return true;
}

// All threads: vectors [first, end) of `from` into `to`, with aligned 16-byte loads,
// STAGE_COPY_VECS of them in flight per thread: one block's copy is bound by PCIe latency, so
// many loads must be outstanding together.
__device__ void copy_vectors(const uint4* from, uint4* to, uint32_t first, uint32_t end) {
    for (uint32_t base = first; base < end; base += blockDim.x * STAGE_COPY_VECS) {
        uint4 v[STAGE_COPY_VECS];
#pragma unroll
        for (uint32_t k = 0; k < STAGE_COPY_VECS; k++) {
            uint32_t i = base + k * blockDim.x + threadIdx.x;
            if (i < end) v[k] = from[i];
        }
#pragma unroll
        for (uint32_t k = 0; k < STAGE_COPY_VECS; k++) {
            uint32_t i = base + k * blockDim.x + threadIdx.x;
            if (i < end) to[i] = v[k];
        }
    }
}

// All threads: piece `piece` of a copy of `vecs` vectors.
__device__ __forceinline__ void copy_piece(const uint4* from, uint4* to, uint32_t vecs, uint32_t piece) {
    uint32_t first = piece * STAGE_PIECE_VECS;
    copy_vectors(from, to, first, vecs - first < STAGE_PIECE_VECS ? vecs : first + STAGE_PIECE_VECS);
}

// Thread 0 of an owner: a free job of the help board, reserved (its `busy` bit), or NO_JOB when
// the board is full (the owner then works alone). The caller fills its fields, then opens it.
__device__ uint32_t help_reserve() {
    HelpBoard& board = vyre_queue.help;
    for (uint32_t tries = 0; tries < 4u; tries++) {
        unsigned long long busy = *(volatile unsigned long long*)&board.busy;
        if (busy == ~0ull) return NO_JOB;
        uint32_t j = (uint32_t)(__ffsll((long long)~busy) - 1);
        unsigned long long bit = 1ull << j;
        if (!(atomicOr(&board.busy, bit) & bit)) {
            // the job's field stores (the caller's) after the reservation, so after the previous
            // owner's close: a helper that reads one of them and then the claim word sees the
            // generation moved on (help_take's check)
            __threadfence();
            return j;
        }  // else another owner took it first
    }
    return NO_JOB;
}

// Thread 0 of the owner: job j, its fields written while it was closed, opened: the generation
// turns odd (a helper that takes a piece of it reads the fields after its add: HelpBoard).
__device__ void help_open(uint32_t j, uint32_t kind, uint32_t pieces) {
    HelpBoard& board = vyre_queue.help;
    HelpJob& job = board.jobs[j];
    job.kind = kind; job.pieces = pieces; job.done = 0u; job.faulted = 0u; job.instructions = 0ull;
    unsigned long long generation = (*(volatile unsigned long long*)&job.claim >> 32) + 1ull;  // odd: open
    __threadfence();  // the fields before the generation that makes them takeable
    atomicExch(&job.claim, generation << 32);
    atomicOr(&board.open, 1ull << j);
}

// Thread 0 of the owner: the next piece of its own job j for itself, or NO_JOB when all are taken.
__device__ __forceinline__ uint32_t help_next(uint32_t j, uint32_t pieces) {
    uint32_t piece = (uint32_t)atomicAdd(&vyre_queue.help.jobs[j].claim, 1ull);  // never carries: pieces < 2^32
    // the last piece: nothing left to take. Left set until help_wait, the bit sent every
    // waiting worker's poll to a fruitless add on the claim word while this block ran its last
    // piece (a whole member, for a member job): a storm on one word, and adds without bound
    // in its low half, which carry into the generation after 2^32 of them
    if (piece + 1u == pieces) atomicAnd(&vyre_queue.help.open, ~(1ull << j));
    return piece < pieces ? piece : NO_JOB;
}

// All threads of an owner: pieces of its own job j taken one after another and run by the whole
// block with `run(piece)` until none is left; returns how many it ran (thread 0's count).
template <typename Run>
__device__ uint32_t take_own_pieces(uint32_t j, uint32_t pieces, Run&& run) {
    __shared__ uint32_t s_piece;
    uint32_t mine = 0;
    while (true) {
        if (threadIdx.x == 0) s_piece = help_next(j, pieces);
        __syncthreads();
        uint32_t piece = s_piece;
        if (piece == NO_JOB) return mine;
        run(piece);
        mine++;
        __syncthreads();  // everyone read s_piece before thread 0 writes the next
    }
}

// Thread 0 of the owner, once every piece is taken (`mine` of them by its own block): waits until
// the helpers' pieces are done. Helpers finish in bounded time (a copy waits on nothing; a member
// or a lane batch runs to its fuel limit at most). The job's fields stay readable until
// help_release.
__device__ void help_wait(uint32_t j, uint32_t pieces, uint32_t mine) {
    HelpBoard& board = vyre_queue.help;
    HelpJob& job = board.jobs[j];
    atomicAnd(&board.open, ~(1ull << j));
    uint32_t sleep_ns = 32;
    while (load_acquire_gpu(&job.done) + mine < pieces) {
        __nanosleep(sleep_ns);
        sleep_ns = sleep_ns * 2 < WORKER_SLEEP_CAP_NS ? sleep_ns * 2 : WORKER_SLEEP_CAP_NS;
    }
    __threadfence();  // the helpers' stores are visible to this block's reads after its next barrier
}

// Thread 0 of the owner, after help_wait: job j closed (the generation turns even: an add that
// lands later takes nothing) and freed.
__device__ void help_release(uint32_t j) {
    HelpBoard& board = vyre_queue.help;
    HelpJob& job = board.jobs[j];
    unsigned long long claim = *(volatile unsigned long long*)&job.claim;
    atomicExch(&job.claim, ((claim >> 32) + 1ull) << 32);  // even: closed, a late add takes nothing
    __threadfence();  // closed before another owner may take the job
    atomicAnd(&board.busy, ~(1ull << j));
}

// Thread 0 of the owner: help_wait, then a member job's helpers' fault bits and lane-instructions
// added into `faulted` and `instructions`, then help_release.
__device__ void help_close(uint32_t j, uint32_t pieces, uint32_t mine, uint32_t& faulted,
                           unsigned long long& instructions) {
    HelpJob& job = vyre_queue.help.jobs[j];
    help_wait(j, pieces, mine);
    faulted |= *(volatile uint32_t*)&job.faulted;
    instructions += *(volatile unsigned long long*)&job.instructions;
    help_release(j);
}

// Thread 0 of a worker waiting for its ticket: takes a piece of an open job unless it holds one of
// the next tickets (it serves the next slot instead). One fetch-and-add on the job's claim word,
// never a CAS loop (hundreds of waiting blocks retrying a CAS on one word hand out one success per
// microseconds: the ticket queue's lesson). The old value says what was taken: a piece of the
// generation it names if that is odd (open) and the piece exists; an add that took nothing (a
// closed job, every piece gone) only moves the low half, which the next opening resets. The
// job's fields are read after the add: its owner wrote them before opening this generation and
// cannot close it (nor rewrite them) before this piece is counted done.
struct HelpPiece {
    uint32_t kind, piece, job;
    const uint4* from;  // HELP_COPY
    uint4* to;
    uint32_t vecs;
    const unsigned char* input;  // HELP_MEMBERS: member `piece` of a fused run (HELP_LANES: lane batches `piece`)
    uint32_t length, lanes;
    const Program* program;
    Context* context;
    uint32_t args[ARGS_PER_SLOT];
};
__device__ bool help_take(uint32_t ticket, HelpPiece& out) {
    HelpBoard& board = vyre_queue.help;
    unsigned long long open = *(volatile unsigned long long*)&board.open;
    if (open == 0ull || (int32_t)(ticket - load_volatile(&vyre_queue.tail)) < (int32_t)HELP_KEEP_READY) return false;
    uint32_t start = blockIdx.x % HELP_JOBS;  // blocks spread over the open jobs
    unsigned long long rotated = start ? (open >> start) | (open << (64u - start)) : open;
    uint32_t j = (start + (uint32_t)(__ffsll((long long)rotated) - 1)) % HELP_JOBS;
    HelpJob& job = board.jobs[j];
    unsigned long long claim = atomicAdd(&job.claim, 1ull);
    if (!((claim >> 32) & 1ull)) return false;  // closed: nothing taken
    __threadfence();  // the fields after the add that proved them this generation's
    uint32_t piece = (uint32_t)claim, pieces = load_volatile(&job.pieces);
    if (piece >= pieces) return false;  // every piece was gone: the bit is cleared soon
    out.kind = load_volatile(&job.kind);
    out.piece = piece;
    out.job = j;
    if (out.kind == HELP_LANES) {
        // its run state is in vyre_lane_jobs[j]: help_lanes reads it only after the check below
        // proved this piece taken, so the owner cannot release the job (nor a new owner rewrite
        // it) before the piece is counted done
    } else if (out.kind == HELP_COPY) {
        out.from = *(const uint4* volatile*)&job.from;
        out.to = *(uint4* volatile*)&job.to;
        out.vecs = load_volatile(&job.vecs);
    } else {
        // Until the check below these reads may mix generations: a newer job's piece count (a
        // copy's, a lane job's: more than MAX_FUSED_MEMBERS) with this kind. A real member piece
        // is below MAX_FUSED_MEMBERS, so a larger one took nothing (and must not index past the
        // member arrays: the last job's lie at the end of the queue state).
        if (piece >= MAX_FUSED_MEMBERS) return false;
        out.input = *(const unsigned char* volatile*)&job.input;
        out.length = load_volatile(&job.length);
        out.lanes = load_volatile(&job.lanes[piece]);
        out.program = *(const Program* volatile*)&job.programs[piece];
        out.context = *(Context* volatile*)&job.contexts[piece];
        for (uint32_t k = 0; k < ARGS_PER_SLOT; k++) out.args[k] = load_volatile(&job.args[k]);
    }
    // An add that took nothing (every piece of generation g gone) pins nothing: the owner may
    // close g, and a new owner reopen the job, between the add and the reads above, which then
    // read the new generation's pieces (and fields) and could believe a piece the claim word
    // hands out again (its copy counted twice: the owner reads staging still being written).
    // A piece really taken keeps the generation until it is counted done, so the generation
    // still read after the fields proves them g's (help_reserve's fence orders a new owner's
    // stores after the close).
    __threadfence();
    if ((*(volatile unsigned long long*)&job.claim >> 32) != (claim >> 32)) return false;
    if (piece + 1u == pieces) atomicAnd(&board.open, ~(1ull << j));  // the last piece: nothing left to take
    return true;
}

// ------------------------------------------------------------------ lane split

// One block runs a run's lanes one batch (blockDim.x lanes) after another, ~8 warps in flight:
// a histogram ran at ~5 GB/s per block on device-resident data, so a 16 MiB chunk kept its block
// for milliseconds and a stream needed ~100 chunks in flight. A run of several batches over
// enough bytes (load_run: S.split) is posted as a job of lane pieces (whole batches, so never
// part of a lane group: groups are warps, and their collectives stay inside one block); waiting
// workers take pieces with the help board's fetch-and-add, the owner takes them too, then waits
// for all (help_wait). What makes the split invisible (docs/VIR0.md §7; docs/PROTOCOL.md, Lane split):
// - every block runs its lanes with the owner's run state (LaneJob.run: code, tables, bindings,
//   fuel, lane count), so each lane computes what it would in the owner's block;
// - the run's outputs are in device memory (the owner's scratch) or in place, never in a shared
//   stage; other words are the same pointers (global bindings, the hit buffer);
// - emit counts into one pair in device memory (LaneJob.counts): capacity and dropped as one block;
// - each piece stores its lowest faulting lane and that lane's fault; the owner takes the lowest
//   over all pieces (each lane is in exactly one piece, so the minimum is exact, whatever the
//   order pieces ran in); lane-instructions are added into the job.
struct LaneJob {
    RunShared run;        // the owner's run state as load_run and run_loaded set it up
    uint32_t counts[2];   // the run's emitted and dropped records (RunShared.counts in every block)
    uint32_t batches, per_piece;  // the run's lane batches; batches per piece (the last may have fewer)
    uint32_t path;        // PATH_* a piece's block took (the same in every block: one module)
    uint4 faults[LANE_SPLIT_PIECES];  // piece p: its lowest faulting lane (NO_LANE: none), code, pc, detail
};
__device__ LaneJob vyre_lane_jobs[HELP_JOBS];  // job j of the help board, while it is a HELP_LANES job
// runs split, pieces run by helpers: what the GPU tests read to see splitting happen (never reset)
extern "C" {
__device__ unsigned long long vyre_lane_split_stats[2];
}

// All threads: lane piece `piece` of split job j with the run state in S; thread 0 stores the
// piece's lowest fault and adds its lane-instructions and path to the job.
__device__ void run_lane_piece(RunShared& S, uint32_t j, uint32_t piece) {
    LaneJob& lanes = vyre_lane_jobs[j];
    uint32_t per = load_volatile(&lanes.per_piece), batches = load_volatile(&lanes.batches);
    if (threadIdx.x == 0) { S.fault_lane = NO_LANE; S.instructions = 0; }
    __syncthreads();
    uint32_t first = piece * per;
    run_batches(S, first, batches - first < per ? batches : first + per);  // ends with a barrier
    if (threadIdx.x == 0) {
        store_volatile4(&lanes.faults[piece], make_uint4(S.fault_lane, S.fault_code, S.fault_pc, S.fault_detail));
        atomicAdd(&vyre_queue.help.jobs[j].instructions, (unsigned long long)S.instructions);
        store_volatile(&lanes.path, S.path);
    }
}

// All threads of a helper: the run state of split job h.job into this block's S (its own device
// scratch and shared stage kept), lane piece h.piece run, then (thread 0) counted done. Lanes may
// write host memory (records, outputs in place): a system-scope release orders those stores
// before the count, so before the owner's DONE (complete_slot) reaches the host.
__device__ void help_lanes(const HelpPiece& h, RunShared& S, uint32_t* stage) {
    LaneJob& lanes = vyre_lane_jobs[h.job];
    uint32_t* scratch = S.scratch;  // (every thread reads them before the copy overwrites them)
    uint32_t scratch_words = S.scratch_words;
    __syncthreads();
    constexpr uint32_t RUN_WORDS = sizeof(RunShared) / 4u;
    static_assert(sizeof(RunShared) % 4u == 0, "RunShared is copied by words");
    for (uint32_t w = threadIdx.x; w < RUN_WORDS; w += blockDim.x)
        ((uint32_t*)&S)[w] = load_volatile((const uint32_t*)&lanes.run + w);
    __syncthreads();
    if (threadIdx.x == 0) {
        S.scratch = scratch;
        S.scratch_words = scratch_words;
        // the owner's points into its own stage (a split run's outputs are never there: all of it is free)
        if (S.hist_scratch) S.hist_scratch = stage;
    }
    __syncthreads();
    run_lane_piece(S, h.job, h.piece);
    if (threadIdx.x == 0) {
        atomicAdd(&vyre_lane_split_stats[1], 1ull);
        fence_release_sys();
        atomicAdd(&vyre_queue.help.jobs[h.job].done, 1u);
    }
}

__device__ bool run_split(RunShared& S, uint32_t batches) {
    __shared__ uint32_t s_job;
    uint32_t per = (batches + LANE_SPLIT_PIECES - 1u) / LANE_SPLIT_PIECES;
    uint32_t pieces = (batches + per - 1u) / per;
    if (threadIdx.x == 0) {
        uint32_t j = help_reserve();
        if (j != NO_JOB) {
            LaneJob& lanes = vyre_lane_jobs[j];
            lanes.counts[0] = 0u; lanes.counts[1] = 0u;
            lanes.batches = batches; lanes.per_piece = per;
            S.counts = lanes.counts;  // the copy below carries it to every block
            atomicAdd(&vyre_lane_split_stats[0], 1ull);
        }
        s_job = j;
    }
    __syncthreads();
    uint32_t j = s_job;
    if (j == NO_JOB) return false;
    LaneJob& lanes = vyre_lane_jobs[j];
    for (uint32_t w = threadIdx.x; w < sizeof(RunShared) / 4u; w += blockDim.x)
        ((uint32_t*)&lanes.run)[w] = ((const uint32_t*)&S)[w];
    __syncthreads();  // the block's stores, then thread 0's fence (help_open) orders them before the opening
    if (threadIdx.x == 0) help_open(j, HELP_LANES, pieces);
    uint32_t mine = take_own_pieces(j, pieces, [&](uint32_t piece) { run_lane_piece(S, j, piece); });
    if (threadIdx.x == 0) {
        help_wait(j, pieces, mine);
        uint4 lowest = make_uint4(NO_LANE, 0u, 0u, 0u);
        for (uint32_t piece = 0; piece < pieces; piece++) {
            uint4 fault = load_volatile4(&lanes.faults[piece]);
            if (fault.x < lowest.x) lowest = fault;
        }
        S.fault_lane = lowest.x; S.fault_code = lowest.y; S.fault_pc = lowest.z; S.fault_detail = lowest.w;
        S.emitted = load_volatile(&lanes.counts[0]);
        S.dropped = load_volatile(&lanes.counts[1]);
        S.instructions = *(volatile unsigned long long*)&vyre_queue.help.jobs[j].instructions;
        S.path = load_volatile(&lanes.path);
        S.counts = &S.emitted;
        help_release(j);
    }
    __syncthreads();
    return true;
}

// All threads: one member of a fused run over `input` (device staging or the region in place);
// thread 0 returns whether it faulted and adds its lane-instructions to `instructions`.
__device__ bool run_member(const Program* program, Context* context, uint32_t lanes, const unsigned char* input,
                           uint32_t length, const uint32_t* args, RunShared& S, RunRecords& R, uint32_t* stage,
                           unsigned long long& instructions) {
    if (threadIdx.x < 32) fetch_records(program, context, nullptr, R);
    __syncthreads();
    if (threadIdx.x == 0) load_run(S, &R.program, &R.context, input, length, args, lanes, stage);
    __syncthreads();
    run_loaded(S, R, context, stage);
    bool faulted = false;
    if (threadIdx.x == 0) {
        faulted = S.fault_lane != NO_LANE;
        instructions += S.instructions;
    }
    __syncthreads();  // S and R are the next run's only after everyone is done with this one
    return faulted;
}

// All threads of a helper: the piece taken, then (thread 0) counted done for its owner. A member's
// outputs and context fields go to host memory: a system-scope release orders them before the
// count, so before the owner's DONE (complete_slot) reaches the host.
__device__ void help_piece(const HelpPiece& h, RunShared& S, RunRecords& R, uint32_t* stage) {
    HelpJob& job = vyre_queue.help.jobs[h.job];
    if (h.kind == HELP_LANES) {
        help_lanes(h, S, stage);
        return;
    }
    if (h.kind == HELP_COPY) {
        copy_piece(h.from, h.to, h.vecs, h.piece);
        __syncthreads();  // the block's stores, then thread 0's fence orders them (cumulatively) before the count
        if (threadIdx.x == 0) {
            __threadfence();
            atomicAdd(&job.done, 1u);
        }
        return;
    }
    unsigned long long instructions = 0;
    bool faulted = run_member(h.program, h.context, h.lanes, h.input, h.length, h.args, S, R, stage, instructions);
    if (threadIdx.x == 0) {
        if (faulted) atomicOr(&job.faulted, 1u << h.piece);
        atomicAdd(&job.instructions, instructions);
        fence_release_sys();
        atomicAdd(&job.done, 1u);
    }
}

// All threads: `vecs` vectors copied by this block and whichever waiting workers help (see
// HelpBoard); when the call returns the whole copy is complete and visible to the block.
__device__ void copy_with_help(const uint4* from, uint4* to, uint32_t vecs) {
    __shared__ uint32_t s_job;
    uint32_t pieces = (vecs + STAGE_PIECE_VECS - 1u) / STAGE_PIECE_VECS;
    if (threadIdx.x == 0) {
        uint32_t j = help_reserve();
        if (j != NO_JOB) {
            HelpJob& job = vyre_queue.help.jobs[j];
            job.from = from; job.to = to; job.vecs = vecs;
            help_open(j, HELP_COPY, pieces);
        }
        s_job = j;
    }
    __syncthreads();
    uint32_t j = s_job;
    if (j == NO_JOB) {
        copy_vectors(from, to, 0u, vecs);
        __syncthreads();
        return;
    }
    uint32_t mine = take_own_pieces(j, pieces, [&](uint32_t piece) { copy_piece(from, to, vecs, piece); });
    if (threadIdx.x == 0) {
        uint32_t faulted = 0;  // (a copy job has none)
        unsigned long long instructions = 0;
        help_close(j, pieces, mine, faulted, instructions);
    }
    __syncthreads();
}

// All threads: the run's bytes in device memory. A host-mapped region is copied into `staging`
// once: by this block alone when short, with waiting workers' help when longer than a piece
// (copy_with_help). The copy starts at the source's 16-byte boundary (the bytes before it and
// after the end share the source's 16-byte blocks, so its pages), so the input keeps its
// alignment and every access is aligned.
__device__ const unsigned char* copy_input(const unsigned char* source, unsigned char* staging, uint32_t length) {
    if (staging == nullptr || length == 0) return source;
    uint32_t head = (uint32_t)((uint64_t)source & 15u);
    const uint4* from = (const uint4*)(source - head);
    uint4* to = (uint4*)staging;
    uint32_t vecs = (uint32_t)(((uint64_t)head + length + 15u) / 16u);  // (a length near 2^32 wrapped in 32 bits)
    if (vecs > STAGE_PIECE_VECS) {
        copy_with_help(from, to, vecs);
    } else {
        copy_vectors(from, to, 0u, vecs);
        __syncthreads();  // the copy is complete (and visible to the block) before a member reads it
    }
    return staging + head;
}

// A fused group's RUN_PROGRAM (docs/PROTOCOL.md, "Fused runs"): checks everything, copies a
// host-mapped region into device staging once (one pass over PCIe, with help: copy_input), then
// runs each member over the same bytes, in this block and (several members) in waiting workers'
// blocks side by side. A member's fault stays in its own context; the slot completes
// DONE with the member count, the mask of faulting members and the total lane-instructions.
__device__ void run_fused_slot(const Params& p, const Fused* group, const uint32_t* args, SlotShared& T,
                               RunShared& S, RunRecords& R, uint32_t* stage) {
    __shared__ FusedShared F;
    __shared__ bool s_ok;
    if (threadIdx.x == 0) s_ok = check_fused(p, group, args, T, F);
    __syncthreads();
    if (!s_ok) return;
    uint32_t length = args[RA_LENGTH];
    const unsigned char* input = copy_input(F.source, F.staging, length);
    // Several members: posted as a job, so waiting workers run some of them while this block runs
    // others (members share nothing but the bytes they read: docs/PROTOCOL.md, Fused runs)
    __shared__ uint32_t s_job, s_member;
    if (threadIdx.x == 0) {
        uint32_t j = F.count > 1 && HELP_FUSED_MEMBERS ? help_reserve() : NO_JOB;
        if (j != NO_JOB) {
            HelpJob& job = vyre_queue.help.jobs[j];
            job.input = input; job.length = length;
            for (uint32_t m = 0; m < F.count; m++) {
                job.programs[m] = F.programs[m]; job.contexts[m] = F.contexts[m]; job.lanes[m] = F.lanes[m];
            }
            for (uint32_t k = 0; k < ARGS_PER_SLOT; k++) job.args[k] = args[k];
            help_open(j, HELP_MEMBERS, F.count);
        }
        s_job = j;
    }
    __syncthreads();
    uint32_t j = s_job, faulted = 0, mine = 0, next = 0;  // thread 0's tallies
    unsigned long long instructions = 0;
    while (true) {
        if (threadIdx.x == 0) s_member = j == NO_JOB ? (next < F.count ? next++ : NO_JOB) : help_next(j, F.count);
        __syncthreads();
        uint32_t m = s_member;
        if (m == NO_JOB) break;
        if (run_member(F.programs[m], F.contexts[m], F.lanes[m], input, length, args, S, R, stage, instructions))
            faulted |= 1u << m;
        mine++;  // (run_member's last barrier: everyone read s_member before thread 0 writes the next)
    }
    if (threadIdx.x == 0) {
        if (j != NO_JOB) help_close(j, F.count, mine, faulted, instructions);
        T.results[0] = F.count; T.results[1] = faulted;
        T.results[2] = (uint32_t)instructions; T.results[3] = (uint32_t)(instructions >> 32);
    }
}

// RUN_PROGRAM (and user opcodes): all threads of the block. `args` = RUN_PROGRAM args from PROGRAM.
__device__ void run_program_slot(const Params& p, uint32_t program_handle, const uint32_t* args, SlotShared& T,
                                 RunShared& S, uint32_t* stage) {
    __shared__ RunRecords R;
    __shared__ Context* s_context;
    __shared__ const Fused* s_group;
    __shared__ bool s_ok;
    uint32_t context_handle = args[RA_CONTEXT], region_handle = args[RA_REGION];
    const Program* program = ((const Program*)p.programs) + (program_handle % p.program_capacity);
    Context* context = ((Context*)p.contexts) + (context_handle % p.context_capacity);
    const Region* region = ((const Region*)p.regions) + (region_handle % p.region_capacity);
    // the fused group's handle and the three records, all in flight together (a fused handle
    // never names a program, so then the records read are simply not used)
    const Fused* group = fused_slot(p, program_handle);
    uint32_t group_handle = threadIdx.x == 0 && group ? load_volatile(&group->handle) : 0u;
    if (threadIdx.x < 32) fetch_records(program, context, region, R);
    if (threadIdx.x == 0) s_group = group && group_handle == program_handle ? group : nullptr;
    __syncthreads();
    if (s_group) {
        run_fused_slot(p, s_group, args, T, S, R, stage);
        return;
    }
    if (threadIdx.x == 0) {
        s_ok = false;
        uint64_t offset = args[RA_OFFSET_LO] | ((uint64_t)args[RA_OFFSET_HI] << 32);
        uint32_t length = args[RA_LENGTH];
        if (program_handle == 0 || R.program.handle != program_handle) {
            T.fault = SF_BAD_HANDLE; T.results[3] = program_handle;
        } else if (context_handle == 0 || R.context.handle != context_handle) {
            T.fault = SF_BAD_HANDLE; T.results[3] = context_handle;
        } else if (region_handle == 0 || R.region.handle != region_handle) {
            T.fault = SF_BAD_HANDLE; T.results[3] = region_handle;
        } else if (offset + length > R.region.length || args[RA_OWN_LO] > args[RA_OWN_HI] || args[RA_OWN_HI] > length) {
            T.fault = SF_BAD_ARGUMENT; T.results[3] = args[RA_OFFSET_LO];
        } else {
            uint32_t lanes = args[RA_LANES] ? args[RA_LANES] : R.program.lanes;
            if (lanes > (1u << 20)) {
                T.fault = SF_BAD_ARGUMENT; T.results[3] = lanes;
            } else {
                s_ok = true;
                s_context = context;
                const unsigned char* input = (const unsigned char*)R.region.pointer + offset;
                load_run(S, &R.program, &R.context, input, length, args, lanes, stage);
            }
        }
    }
    __syncthreads();
    RUN_PHASE(1);  // the slot's checks and the run's records (host-mapped) read by warp 0
    if (!s_ok) return;
    run_loaded(S, R, s_context, stage);
    if (threadIdx.x == 0) {
        if (S.fault_lane != NO_LANE) {
            T.fault = S.fault_code;
            T.results[0] = S.fault_code; T.results[1] = S.fault_pc; T.results[2] = S.fault_lane; T.results[3] = S.fault_detail;
        } else {
            T.results[0] = kept_records(S); T.results[1] = S.dropped;
            T.results[2] = (uint32_t)S.instructions; T.results[3] = (uint32_t)(S.instructions >> 32);
        }
    }
}

// ------------------------------------------------------------------ completion counts

// A worker block's completions not yet added to the device counters. Adding them per slot cost
// two device-scope fences per slot, and under load a fence waits tens of microseconds; a block
// adds its counts every COUNT_BATCH slots, and at once whenever it finds no entry waiting (so
// an idle device's counters are exact) and before it exits.
#define COUNT_BATCH 16u
#define COUNT_METRICS 4u  // distinct metrics a batch holds (a block mostly serves one kind)
#define NO_METRIC 0xffffffffu

// The metric word of opcode `op`, or NO_METRIC for an opcode that has none (any u32 may reach a
// completion: a slot's opcode is the host's word).
__device__ __forceinline__ uint32_t metric_of(uint32_t op) {
    if (op >= USER_OPCODE_BASE && op < USER_OPCODE_BASE + USER_OPCODE_COUNT) return USER_METRIC_BASE + op - USER_OPCODE_BASE;
    if (op == BI_SHUTDOWN) return METRIC_SHUTDOWN;
    if (op <= BI_RUN_PROGRAM) return op;  // built-in metric index = its opcode (generated tables agree)
    return NO_METRIC;
}
struct BlockCounts {
    uint32_t done, fault, kinds;
    uint32_t metric[COUNT_METRICS], count[COUNT_METRICS];
};

// Thread 0: the batch into the device counters (docs/PROTOCOL.md, counters): each metric's count
// before its dirty bit, all of them and the fault count before DONE_COUNT, so a copier that sees
// the new DONE_COUNT finds them.
__device__ void flush_counts(BlockCounts& C) {
    if (C.done == 0) return;
    for (uint32_t k = 0; k < C.kinds; k++) atomicAdd(&vyre_counters.metrics[C.metric[k]], C.count[k]);
    if (C.kinds) {
        __threadfence();  // the counts before their dirty bits: a copier that clears a bit reads its count after
        for (uint32_t k = 0; k < C.kinds; k++) atomicOr(&vyre_counters.dirty[C.metric[k] / 32u], 1u << (C.metric[k] % 32u));
    }
    if (C.fault) atomicAdd(&vyre_counters.fault, C.fault);
    __threadfence();
    atomicAdd(&vyre_counters.done, C.done);
    C.done = 0; C.fault = 0; C.kinds = 0;
}

// Thread 0: one completion counted in the block's batch (flushed when full).
__device__ void count_completion(BlockCounts& C, uint32_t metric, bool faulted) {
    if (metric != NO_METRIC) {
        uint32_t k = 0;
        while (k < C.kinds && C.metric[k] != metric) k++;
        if (k == COUNT_METRICS) {  // a fifth kind: the batch so far first
            flush_counts(C);
            k = 0;
        }
        if (k == C.kinds) { C.metric[k] = metric; C.count[k] = 0; C.kinds++; }
        C.count[k]++;
    }
    C.fault += faulted;
    if (++C.done >= COUNT_BATCH) flush_counts(C);
}

// Fault words as the host reads them: slot faults carry code, 0, 0, detail (VIR0 faults their own).
__device__ __forceinline__ void finish_fault_words(SlotShared& T) {
    if (T.fault && T.fault > FAULT_BAD_INSTRUCTION) {
        T.results[0] = T.fault; T.results[1] = 0; T.results[2] = 0;
    }
}

__device__ void complete_slot(const Params& p, SlotShared& T, BlockCounts& C) {
    uint32_t* image = (uint32_t*)p.image;
    uint32_t* slot = image + p.ring + T.index * SLOT_WORDS;
    uint32_t op = T.words[SW_OPCODE];
    finish_fault_words(T);
    for (uint32_t k = 0; k < RESULT_WORDS; k++) slot[SW_RESULT0 + k] = T.results[k];
    STAMP(p, 5, global_ns());
    RUN_PHASE(6);  // the result stores
    // CLAIMED (stored at take) and the results, then the claim is released, then the status
    // (status last: docs/PROTOCOL.md). Once the dispatcher sees the claim released it reads
    // CLAIMED or a later status, never the PUBLISHED this slot was claimed from. A release fence
    // is all this needs (the block's stores were ordered before it by the caller's
    // __syncthreads); __threadfence_system() is a sequentially consistent fence, far slower
    // while the GPU is busy.
    fence_release_sys();
    RUN_PHASE(7);  // the fence
    store_volatile(&vyre_owned[T.index], 0u);
    store_volatile(&slot[SW_STATUS], T.fault ? ST_FAULT : ST_DONE);
    STAMP(p, 6, global_ns());
    RUN_PHASE(8);  // the claim released and the status stored
    // counters after the status, in device memory: the round trip does not wait for them; the
    // dispatcher copies them into the image (docs/PROTOCOL.md, counters)
    count_completion(C, metric_of(op), T.fault != 0);
    STAMP(p, 7, global_ns());
    RUN_PHASE(9);  // the block's counts
}

__device__ void serve_slot(const Params& p, uint32_t index, SlotShared& T, RunShared& S, uint32_t* stage,
                           BlockCounts& C) {
    if (threadIdx.x < RESULT_WORDS) T.results[threadIdx.x] = 0;
    if (threadIdx.x == 0) { T.fault = 0; T.index = index; }
    __syncthreads();
    uint32_t op = T.words[SW_OPCODE], tenant = T.words[SW_TENANT];
    const uint32_t* args = &T.words[SW_ARG0];
    if (tenant >= p.tenants) {  // bounds-checked: the seed read past its tenant-mask table
        if (threadIdx.x == 0) { T.fault = SF_BAD_TENANT; T.results[3] = tenant; }
    } else if (op == BI_RUN_PROGRAM) {
        run_program_slot(p, args[RA_PROGRAM], args, T, S, stage);
    } else if (op >= USER_OPCODE_BASE && op < USER_OPCODE_BASE + USER_OPCODE_COUNT) {
        uint32_t program = load_volatile(((const uint32_t*)p.user_programs) + (op - USER_OPCODE_BASE));
        if (program == 0) {
            if (threadIdx.x == 0) { T.fault = SF_BAD_OPCODE; T.results[3] = op; }
        } else {
            // a user opcode's arguments are RUN_PROGRAM's without the program word
            __shared__ uint32_t shifted[ARGS_PER_SLOT];
            if (threadIdx.x < ARGS_PER_SLOT) shifted[threadIdx.x] = threadIdx.x == 0 ? program : args[threadIdx.x - 1];
            __syncthreads();
            run_program_slot(p, program, shifted, T, S, stage);
        }
    } else if (threadIdx.x == 0) {
        run_builtin(p, op, args, T);
    }
    __syncthreads();
    RUN_PHASE(5);  // the slot's results
    if (threadIdx.x == 0) complete_slot(p, T, C);
#ifdef VYRE_STAGE_STAMPS
    if (threadIdx.x == 0) atomicAdd(&vyre_run_phase_ns[RUN_PHASES - 1], 1ull);  // slots served
#endif
    __syncthreads();
}

// ------------------------------------------------------------------ dispatcher (block 0, warp 0)

// Built-ins short enough to run in the dispatcher's own lane, with no hand-off to a worker: at
// most a few observable accesses (INLINE_MASK, MEMCPY up to INLINE_MEMCPY_WORDS words: both
// generated from protocol/opcodes.py INLINE). Handing a NOP to a worker block cost a queue push,
// a wake-up and a CLAIMED store, more than the NOP itself.
__device__ __forceinline__ bool runs_inline(uint32_t op, uint32_t count_word) {
    return op < 32u && ((INLINE_MASK >> op) & 1u) && (op != BI_MEMCPY || count_word <= INLINE_MEMCPY_WORDS);
}

// One lane runs a tiny built-in (runs_inline) of slot `index`, whose 16 words are given, in its own
// SlotShared `T` (local memory, filled as a worker's shared one): the dispatcher's and the
// watcher's one way to serve a slot without a worker block.
__device__ __forceinline__ void run_tiny(const Params& p, uint32_t index, uint4 head, uint4 a0, uint4 a1, uint4 a2,
                                         SlotShared& T) {
    uint4* words = (uint4*)T.words;
    words[0] = head; words[1] = a0; words[2] = a1; words[3] = a2;
    for (uint32_t k = 0; k < RESULT_WORDS; k++) T.results[k] = 0;
    T.fault = 0;
    T.index = index;
    STAMP(p, 3, global_ns());
    builtin_simple(p, head.y, &T.words[SW_ARG0], T);
    finish_fault_words(T);
    STAMP(p, 4, global_ns());
}

// Runs a claimed slot in the calling dispatcher lane and completes it: the results, then DONE
// or FAULT with one release store; returns whether it faulted (count_inline counts it). The slot
// goes PUBLISHED -> DONE without a CLAIMED store: its one claimer runs it (docs/PROTOCOL.md, One
// claimer), and the dispatcher's own later reads of the status come after this store (same warp,
// ordered by count_inline's __syncwarp), so it is never claimed twice, and nothing marks it in
// vyre_owned.
__device__ bool serve_inline(const Params& p, uint32_t index, uint4 head, uint4 a0, uint4 a1, uint4 a2) {
    SlotShared T;
    run_tiny(p, index, head, a0, a1, a2, T);
    uint32_t* slot = (uint32_t*)p.image + p.ring + index * SLOT_WORDS;
    store_volatile4(slot + SW_RESULT0, make_uint4(T.results[0], T.results[1], T.results[2], T.results[3]));
    STAMP(p, 5, global_ns());
    store_release(&slot[SW_STATUS], T.fault ? ST_FAULT : ST_DONE);  // the results before the status
    STAMP(p, 6, global_ns());
    return T.fault != 0;
}

// The counters of the slots the dispatcher's lanes just ran (`here`), added once per warp: one
// atomic per distinct opcode, fault count and DONE_COUNT instead of a fenced trio per slot. The
// dispatcher warp copies them into the image itself (or the last block out, after its fences),
// and __syncwarp orders its lanes' accesses, so the metrics land before DONE_COUNT moves without
// a fence per slot (complete_slot's fences order a worker's counts for another warp's copier).
// The watcher's warps are not the copier: they pass `release` and lane 0 fences (block scope: the
// dispatcher is in this block) before DONE_COUNT, else the dispatcher could copy a DONE_COUNT
// without the metric, and, the count unchanged after, not copy it again while idle.
__device__ void count_inline(const Params& p, bool here, uint32_t op, bool faulted, bool release = false) {
    uint32_t lane = threadIdx.x & 31u;
    uint32_t ran = __ballot_sync(FULL_MASK, here);
    uint32_t faults = __popc(__ballot_sync(FULL_MASK, here && faulted));
    // the dispatcher's opcodes are tiny built-ins, but the watcher also completes a marked
    // publication of any opcode (FAULT BAD_OPCODE): the raw opcode as an index wrote past the
    // metrics (SHUTDOWN's 0xffffffff: an illegal address that killed the kernel)
    uint32_t metric = metric_of(op);
    uint32_t counted = __ballot_sync(FULL_MASK, here && metric != NO_METRIC);
    if (here && metric != NO_METRIC) {
        uint32_t same = __match_any_sync(counted, metric);
        if ((uint32_t)(__ffs(same) - 1) == lane) {
            atomicAdd(&vyre_counters.metrics[metric], (uint32_t)__popc(same));
            // the watcher's count before its dirty bit, as flush_counts orders them: the copier
            // (the dispatcher, another warp) that clears a bit reads the count after it
            if (release) __threadfence_block();
            atomicOr(&vyre_counters.dirty[metric / 32u], 1u << (metric % 32u));
        }
    }
    __syncwarp();
    if (lane == 0) {
        if (release) __threadfence_block();  // the metrics (every lane's: the __syncwarp), then the counts
        if (faults) atomicAdd(&vyre_counters.fault, faults);
        atomicAdd(&vyre_counters.done, (uint32_t)__popc(ran));
        atomicAdd(&vyre_counters.claim, (uint32_t)__popc(ran));  // the dispatcher and the watcher both count
        STAMP(p, 7, global_ns());
    }
    __syncwarp();  // every lane's DONE store and count before any lane's next read of a status
}

// Tenant-mask words of tenants `lane` and `lane + 32`, read in parallel by the warp (<= 64 tenants).
__device__ __forceinline__ void load_masks(const Params& p, uint32_t lane, uint32_t& low, uint32_t& high) {
    const uint32_t* masks = (const uint32_t*)p.image + p.tenant_masks;
    low = lane < p.tenants ? load_volatile(masks + lane) : 0u;
    high = lane + 32 < p.tenants ? load_volatile(masks + lane + 32) : 0u;
}

// Each lane with `want` gets the 16 words of slot `index`. A lane's loads from host memory
// complete one after another (measured: a slot's four 16-byte loads from one lane took 3.4 us, a
// lone load 1.4 us), so every slot is read by four lanes, 16 bytes each, eight slots per round.
// The owners' acquires (of a doorbell entry or a status) come before the __syncwarp, and so
// before every lane's loads for them.
__device__ void load_slots(const Params& p, bool want, uint32_t index, uint4& w0, uint4& w1, uint4& w2, uint4& w3) {
    uint32_t lane = threadIdx.x & 31u;
    uint32_t wanting = __ballot_sync(FULL_MASK, want);
    __syncwarp();
    const uint4* ring = (const uint4*)((const uint32_t*)p.image + p.ring);
    for (uint32_t round = 0; round < 4; round++) {
        if (((wanting >> (8u * round)) & 0xffu) == 0) continue;  // warp-uniform
        uint32_t owner = 8u * round + lane / 4u;
        uint32_t owner_index = __shfl_sync(FULL_MASK, index, owner);
        uint4 v = make_uint4(0, 0, 0, 0);
        if ((wanting >> owner) & 1u) v = load_volatile4(ring + owner_index * (SLOT_WORDS / 4u) + lane % 4u);
#pragma unroll
        for (uint32_t chunk = 0; chunk < 4; chunk++) {  // owner o's chunk c is in lane 4 (o % 8) + c
            uint32_t source = 4u * (lane % 8u) + chunk;
            uint4 got = make_uint4(__shfl_sync(FULL_MASK, v.x, source), __shfl_sync(FULL_MASK, v.y, source),
                                   __shfl_sync(FULL_MASK, v.z, source), __shfl_sync(FULL_MASK, v.w, source));
            if (lane / 8u == round) {
                if (chunk == 0) w0 = got; else if (chunk == 1) w1 = got; else if (chunk == 2) w2 = got; else w3 = got;
            }
        }
    }
}

// The full hint position of a PRIORITY word's 24 bits: the one nearest the doorbell head `head`
// (a publication's hint lies within DOORBELL_CAPACITY <= 2^16 of it while its entry can be pending).
__device__ __forceinline__ uint32_t full_hint(uint32_t priority_word, uint32_t head) {
    uint32_t hint = priority_word >> PRIORITY_BITS;
    return head + (uint32_t)(((int32_t)((hint - head) << (32u - 24u))) >> (32u - 24u));
}

// Each lane offers one slot index (or NO_LANE); `hinted` lanes offer it from the doorbell entry
// at `position`. Claims every offered slot that is still schedulable and whose tenant is
// enabled: a tiny built-in runs at once in its lane (serve_inline), the rest are pushed onto
// the work queue in lane order. Returns false when the queue filled up. Only the dispatcher
// claims, so a claim is a plain store into device memory (the host never writes a PUBLISHED
// slot; docs/PROTOCOL.md, One claimer).
__device__ bool claim_offered(const Params& p, uint32_t index, bool hinted, uint32_t position, uint32_t head,
                              uint32_t mask_low, uint32_t mask_high, uint32_t& claimed) {
    uint32_t* image = (uint32_t*)p.image;
    uint32_t lane = threadIdx.x & 31u;
    // the same slot may be offered twice (a repeated hint): only its lowest lane goes on
    uint32_t same = __match_any_sync(FULL_MASK, index);
    bool found = index != NO_LANE && (__ffs(same) - 1) == (int)lane;
    uint4 head_words = make_uint4(0, 0, 0, 0), a0 = head_words, a1 = head_words, a2 = head_words;
    // A fresh entry names a publication newer than every one this device claimed from the slot
    // (hint positions only grow): it is unclaimed, so the slot still holds it, PUBLISHED and
    // untouched (the host rewrites a slot only after a claim), and the entry's acquire already
    // orders the reads of its words: no status read first (docs/PROTOCOL.md, Hint positions).
    bool fresh = found && hinted && load_volatile(&vyre_known[index]) &&
                 (int32_t)(position - load_volatile(&vyre_claimed_hint[index])) > 0;
    bool careful = found && !fresh;
    // a slot this device claimed and has not completed reads PUBLISHED until its worker's
    // CLAIMED lands: never claim it twice. The owner clears the word only after its CLAIMED is
    // visible (complete_slot), and the acquire orders the status read below after this one.
    // (A fresh lane needs no such check: its entry must be the publication's own, checked below.)
    if (careful && load_acquire_gpu(&vyre_owned[index])) careful = found = false;
    uint32_t state = ST_PUBLISHED;
    if (careful) {
        // The status with acquire semantics, then the payload: the host wrote the status last,
        // so a read after an acquire that sees it PUBLISHED sees the words written before it
        // (docs/PROTOCOL.md, publication). A load-acquire orders only this lane's later loads; a
        // volatile read + __threadfence_system() would also drain every store in flight (the
        // heartbeat, the doorbell head) over PCIe first.
        // The PRIORITY word comes in the same 16-byte read: a watched publication is completed
        // by the watcher, not only by this claimer, so its PUBLISHED may be gone (served, reaped,
        // the slot published again unmarked) before the payload reads below land, and those would
        // mix two publications, or claim one whose status is still being written (its later
        // PUBLISHED store could then overwrite a worker's DONE: run twice). A publication seen
        // unmarked here changes only through this claimer, so the payload reads are its own.
        uint4 first = load_acquire4(image + p.ring + index * SLOT_WORDS);
        state = first.x;
        found = (state == ST_PUBLISHED || state == ST_YIELD || state == ST_REQUEUE) && !(first.w & PRIORITY_WATCHED);
        STAMP(p, 2, global_ns());
    }
    // status (again: an unwatched schedulable status only the dispatcher changes), opcode, tenant, priority
    // word and the 12 arguments
    load_slots(p, found, index, head_words, a0, a1, a2);
    if (fresh) {
        // Only the publication's own entry may skip the status acquire and the claim check: the
        // slot's hint must be this entry's position. A repeated entry (its publication may be
        // queued, still reading PUBLISHED), or a stale one whose slot was reaped and published
        // again (words read without ordering: possibly torn), is passed over; the publication's
        // own entry, or the fallback scan, claims the slot.
        found = head_words.x == ST_PUBLISHED && (head_words.w >> PRIORITY_BITS) == (position & HINT_MASK);
        if (lane == 0) STAMP(p, 2, global_ns());
    }
    head_words.x = state;
    // a watched channel's publication is the watcher's alone (docs/PROTOCOL.md, Watched channels):
    // its hint bits are a call sequence, not a doorbell position, and nothing here records it
    found = found && !(head_words.w & PRIORITY_WATCHED);
    // the hint position of the publication claimed if this lane claims (recorded below)
    uint32_t hint = fresh ? position : full_hint(head_words.w, head);
    // a paused tenant's slot stays PUBLISHED, visible to the host, never stuck CLAIMED; an
    // out-of-range tenant is claimed, and faulted BAD_TENANT by its worker
    uint32_t tenant = found ? head_words.z : 0u;
    uint32_t low = __shfl_sync(FULL_MASK, mask_low, tenant & 31u);
    uint32_t high = __shfl_sync(FULL_MASK, mask_high, tenant & 31u);
    if (found && tenant < p.tenants) found = (tenant < 32 ? low : high) != 0;
    // tiny built-ins: claimed and run right here (RESULT0..3 overlay ARG8..11: a2 is the last 4 words)
    static_assert(SW_RESULT0 == 12 && RESULT_WORDS == 4, "the results are the slot's last 16 bytes");
    bool here = found && tenant < p.tenants && runs_inline(head_words.y, a0.z);  // a0.z is ARG2
    uint32_t inlined = __popc(__ballot_sync(FULL_MASK, here));
    if (here) {  // the dispatcher's own records: it alone reads and writes them
        store_volatile(&vyre_claimed_hint[index], hint);
        store_volatile(&vyre_known[index], 1u);
    }
    if (inlined) {
        bool faulted = here && serve_inline(p, index, head_words, a0, a1, a2);
        count_inline(p, here, head_words.y, faulted);
        found = found && !here;
        claimed += inlined;
    }
    uint32_t mask = __ballot_sync(FULL_MASK, found);
    if (mask == 0) return true;
    uint32_t tail = 0;
    if (lane == 0) tail = load_volatile(&vyre_queue.tail);  // the dispatcher is its only writer
    tail = __shfl_sync(FULL_MASK, tail, 0);
    // position tail + lane is free once the reader of its previous lap copied it out (word 2)
    uint32_t queue_position = tail + lane;
    bool free_entry = load_acquire_gpu(&vyre_queue.entries[queue_position % QUEUE_CAPACITY][2]) ==
                      queue_position - queue_position % QUEUE_CAPACITY;
    uint32_t frees = __ballot_sync(FULL_MASK, free_entry);
    uint32_t room = frees == FULL_MASK ? 32u : (uint32_t)(__ffs(~frees) - 1);  // consecutive free positions
    uint32_t offered = __popc(mask);
    uint32_t take = offered < room ? offered : room;
    uint32_t rank = __popc(mask & ((1u << lane) - 1u));
    if (found && rank < take) {
        store_volatile(&vyre_owned[index], 1u);  // claimed: the worker stores CLAIMED in the image
        store_volatile(&vyre_claimed_hint[index], hint);
        store_volatile(&vyre_known[index], 1u);
        uint32_t* words = vyre_queue.entries[(tail + rank) % QUEUE_CAPACITY];
        uint4* entry = (uint4*)words;
        head_words.x = ST_CLAIMED;
        words[0] = index;  // word 1, the sequence, still holds the previous lap's: not takeable
        entry[1] = head_words;
        entry[2] = a0;
        entry[3] = a1;
        entry[4] = a2;
        __threadfence();  // the entry's words and the claim, then its sequence (workers check it: see work())
        store_volatile(&words[1], tail + rank + 1u);
    }
    __syncwarp();
    if (lane == 0 && take) {
        __threadfence();
        store_volatile(&vyre_queue.tail, tail + take);
        STAMP(p, 3, global_ns());
        atomicAdd(&vyre_counters.claim, take);  // the watcher counts its claims too
    }
    __syncwarp();
    claimed += take;
    return take == offered;
}

// The periodic scan of every status word (docs/PROTOCOL.md, The fallback scan): each lane reads
// SCAN_BATCHES statuses at once (a PCIe round trip each, all in flight), and only batches with a
// schedulable status go through claim_offered's careful claim. Returns false when the queue filled.
#define SCAN_BATCHES 8u
__device__ bool scan_ring(const Params& p, uint32_t lane, uint32_t head, uint32_t mask_low, uint32_t mask_high,
                          uint32_t& claimed) {
    const uint32_t* image = (const uint32_t*)p.image;
    bool room = true;
    for (uint32_t base = 0; base < p.slots && room; base += 32u * SCAN_BATCHES) {
        uint32_t seen[SCAN_BATCHES];
#pragma unroll
        for (uint32_t k = 0; k < SCAN_BATCHES; k++) {
            uint32_t i = base + 32u * k + lane;
            seen[k] = i < p.slots ? load_volatile(&image[p.ring + i * SLOT_WORDS + SW_STATUS]) : (uint32_t)ST_EMPTY;
        }
#pragma unroll
        for (uint32_t k = 0; k < SCAN_BATCHES; k++) {
            uint32_t i = base + 32u * k + lane;
            bool maybe = seen[k] == ST_PUBLISHED || seen[k] == ST_YIELD || seen[k] == ST_REQUEUE;
            if (room && __ballot_sync(FULL_MASK, maybe))  // claim_offered reads the status again, carefully
                room = claim_offered(p, maybe ? i : NO_LANE, false, 0u, head, mask_low, mask_high, claimed);
        }
    }
    return room;
}

// The dispatcher warp, before its first claim (so before any completion counts): the device
// counters start from the image's words, so a device continues the counts it finds.
__device__ void seed_counters(const Params& p, uint32_t lane) {
    const uint32_t* image = (const uint32_t*)p.image;
    for (uint32_t m = lane; m < COUNTER_METRICS; m += 32) vyre_counters.metrics[m] = load_volatile(&image[p.metrics + m]);
    for (uint32_t w = lane; w < DIRTY_WORDS; w += 32) vyre_counters.dirty[w] = 0;
    if (lane == 0) {
        vyre_counters.done = load_volatile(&image[CW_DONE_COUNT]);
        vyre_counters.fault = load_volatile(&image[CW_FAULT_COUNT]);
        vyre_counters.claim = load_volatile(&image[CW_CLAIM_COUNT]);
    }
    __threadfence();
    __syncwarp();
}

// Copies the device counters into the image: the metrics whose dirty bit is set, FAULT_COUNT,
// CLAIM_COUNT, and DONE_COUNT last (release), so a host that sees DONE_COUNT move finds the
// metrics of those completions. Threads `first, first + stride, ...` share the metric words: the
// dispatcher warp (0, 32), or the last block out alone (0, 1). Thread 0 stores the control words.
// Returns the DONE_COUNT it copied.
__device__ uint32_t copy_counters(const Params& p, uint32_t first, uint32_t stride) {
    uint32_t* image = (uint32_t*)p.image;
    uint32_t done = load_volatile(&vyre_counters.done);
    __threadfence();  // a completion adds to DONE_COUNT last: what it counted before is visible now
    for (uint32_t w = first; w < DIRTY_WORDS; w += stride) {
        uint32_t bits = load_volatile(&vyre_counters.dirty[w]) ? atomicExch(&vyre_counters.dirty[w], 0u) : 0u;
        if (bits) __threadfence();  // the bits, then the counts they flag
        for (; bits; bits &= bits - 1u) {
            uint32_t m = w * 32u + (uint32_t)(__ffs(bits) - 1);
            store_volatile(&image[p.metrics + m], load_volatile(&vyre_counters.metrics[m]));
        }
    }
    if (stride > 1) __syncwarp();
    if (first == 0) {
        store_volatile(&image[CW_FAULT_COUNT], load_volatile(&vyre_counters.fault));
        store_volatile(&image[CW_CLAIM_COUNT], load_volatile(&vyre_counters.claim));
        store_release(&image[CW_DONE_COUNT], done);
    }
    return done;
}

__device__ void dispatch(const Params& p) {
    uint32_t* image = (uint32_t*)p.image;
    uint32_t lane = threadIdx.x & 31u;
    uint32_t sleep_ns = 32;
    uint32_t heartbeat = load_volatile(&image[CW_HEARTBEAT]);
    uint32_t head = load_volatile(&image[CW_DOORBELL_HEAD]);
    long long last_scan = 0;
    const long long scan_cycles = (long long)p.scan_interval_ns * 2;  // ~2 cycles per ns on an H100
    seed_counters(p, lane);
    for (uint32_t i = lane; i < p.slots; i += 32) vyre_owned[i] = vyre_known[i] = 0;  // nothing claimed yet
    __threadfence();
    __syncwarp();
    uint32_t copied_done = vyre_counters.done, copied_claim = vyre_counters.claim, busy_passes_uncopied = 0;
    const uint32_t window = p.doorbells < 32u ? p.doorbells : 32u;  // entries polled per pass
#ifdef VYRE_STAGE_STAMPS
    uint32_t busy_passes = 0, busy_ns = 0, busy_entries = 0, scans = 0;
#endif
    const uint32_t lap_shift = (uint32_t)(__ffs(p.doorbells) - 1);  // doorbells is a power of two
    uint32_t enabled_low = 0, enabled_high = 0;  // the tenant masks of the previous pass
    bool scan_due = false;
    while (true) {
#ifdef VYRE_STAGE_STAMPS
        uint32_t pass_ns = global_ns();
#endif
        // One round trip: the doorbell entries at the head, SHUTDOWN and the tenant masks, all in
        // flight at once (and two device-memory counters). An entry carrying the tag of its
        // position's lap was written for this position (docs/PROTOCOL.md, The doorbell); its
        // acquire orders this lane's reads of the slot it names after the host's stores.
        // The other words are loaded first: an acquire keeps this lane's later loads behind it,
        // so loaded after the entry they would cost a second round trip (measured: the poll took
        // 2.5 us, a lone load 1.4 us). None of them needs ordering after the entry.
        uint32_t position = head + lane;
        uint32_t mask_low, mask_high;
        load_masks(p, lane, mask_low, mask_high);
        // a tenant enabled since the last pass: its slots were passed over while it was paused
        // (their doorbell entries are gone), so the scan below runs now rather than up to
        // scan_interval_ns later. (The first pass counts every enabled tenant: a relaunch resumes
        // what the ring holds at once.)
        scan_due |= __any_sync(FULL_MASK, (mask_low && !enabled_low) || (mask_high && !enabled_high));
        enabled_low = mask_low;
        enabled_high = mask_high;
        uint32_t stop = 0, pause = 0, done = 0, claims = 0;
        if (lane == 0) {
            stop = load_volatile(&image[CW_SHUTDOWN]);
        } else if (lane == 1) {
            pause = load_volatile(&image[CW_PAUSE]);
        } else if (lane == 2) {
            done = load_volatile(&vyre_counters.done);
        } else if (lane == 3) {
            claims = load_volatile(&vyre_counters.claim);
        }
        uint32_t entry = lane < window ? load_acquire(&image[p.doorbell + (position & (p.doorbells - 1u))]) : 0u;
        uint32_t tag = DOORBELL_TAG_FLAG | ((position >> lap_shift) & DOORBELL_LAP_MASK);
        // the entries up to the first one not written yet: a later entry's read may have overtaken it
        uint32_t written = __ballot_sync(FULL_MASK, lane < window && (entry >> DOORBELL_SLOT_BITS) == tag);
        uint32_t fresh = written == FULL_MASK ? 32u : (uint32_t)(__ffs(~written) - 1);
        // SHUTDOWN (host or a SHUTDOWN slot) or PAUSE (a relaunch follows): claim nothing more;
        // what was claimed is queued and the workers drain it, the rest stays in the ring
        stop = __shfl_sync(FULL_MASK, stop, 0) | __shfl_sync(FULL_MASK, pause, 1);
        done = __shfl_sync(FULL_MASK, done, 2);
        claims = __shfl_sync(FULL_MASK, claims, 3);
        if (stop) {  // every entry published so far comes before the shutdown flag
            if (lane == 0) { __threadfence(); store_volatile(&vyre_queue.shutdown, 1u); __threadfence(); }
            return;
        }
        uint32_t claimed = 0;
        bool room = true;
        // 1. the doorbell: the slots the host just published (docs/PROTOCOL.md, Doorbell)
        if (fresh) {
            if (lane == 0) { STAMP(p, 0, pass_ns); STAMP(p, 1, global_ns()); }
            uint32_t index = lane < fresh ? entry & ((1u << DOORBELL_SLOT_BITS) - 1u) : NO_LANE;
            if (index >= p.slots) index = NO_LANE;  // a corrupted entry names no slot
            room = claim_offered(p, index, true, position, head, mask_low, mask_high, claimed);
            if (room) {  // else the whole window is offered again (a claimed slot is not schedulable then)
                head += fresh;
                if (lane == 0) store_volatile(&image[CW_DOORBELL_HEAD], head);
            }
        }
        // 2. now and then, every status word: finds slots whose hint did not fit
        long long now = clock64();
        if (room && (scan_due || now - last_scan > scan_cycles)) {
            last_scan = now;
#ifdef VYRE_STAGE_STAMPS
            scans++;
#endif
            load_masks(p, lane, mask_low, mask_high);
            room = scan_ring(p, lane, head, mask_low, mask_high, claimed);
            scan_due = !room;  // a scan the full queue cut short is finished next pass
        }
        // the image's counters, after this pass's claims: their PCIe stores drain while the
        // next pass polls, not in front of a claim. While entries keep coming, only every
        // COUNTER_COPY_PASSES passes (a copy ends in a system-scope release); at once when idle.
        busy_passes_uncopied = fresh ? busy_passes_uncopied + 1u : COUNTER_COPY_PASSES;
        if ((done != copied_done || claims != copied_claim) && busy_passes_uncopied >= COUNTER_COPY_PASSES) {
            copied_done = copy_counters(p, lane, 32);
            copied_claim = claims;
            busy_passes_uncopied = 0;
        }
#ifdef VYRE_STAGE_STAMPS
        if (lane == 0 && fresh) {
            busy_passes++; busy_ns += global_ns() - pass_ns; busy_entries += fresh;
            uint32_t* words = image + PASS_WORD;
            store_volatile(words, busy_passes); store_volatile(words + 1, busy_ns);
            store_volatile(words + 2, busy_entries); store_volatile(words + 3, scans);
        }
#endif
        if (claimed || fresh) {  // busy: look again at once (a full window may have more behind it)
            sleep_ns = 32;
        } else {  // an idle pass: the heartbeat (docs/PROTOCOL.md, Liveness), then back off
            if (lane == 0) store_volatile(&image[CW_HEARTBEAT], ++heartbeat);
            __nanosleep(sleep_ns);
            // the dispatcher polls one line of entries: it can afford to look often
            sleep_ns = sleep_ns * 2 < DISPATCH_SLEEP_CAP_NS ? sleep_ns * 2 : DISPATCH_SLEEP_CAP_NS;
        }
    }
}

// ------------------------------------------------------------------ channel watcher (block 0, warps 1 ..)

// A channel call is one thread's synchronous round trip on a slot it keeps. The doorbell path
// costs it a wait for the dispatcher's next poll, the poll's PCIe read, then a second read of the
// slot. The watcher instead reads the watched slots all the time, and the words a tiny built-in
// needs in that same read (docs/PROTOCOL.md, Watched channels). Measured on the H100 (f6f4c96,
// 80340b7): one warp's reads of host memory complete one after another (4 batches in flight in
// one warp landed ~5.7 us after their issue), and a release store waits for the reads its warp
// still has in flight (the DONE store took 2 us behind a batch, 0.67 us without). So the work is
// split by warp:
// - the control warp (warp 1) reads SHUTDOWN, PAUSE, the WATCH words and the tenant masks, over
//   and over, into shared memory: none of them is on a call's critical path;
// - WATCH_POLLERS poller warps (2 ..) each keep ONE read of the watched slots in flight (lanes
//   2k, 2k + 1: slot k's words 0..3 and 4..7, one load instruction), staggered, so a publication
//   is seen a fraction of a read's latency after it lands; the warp that sees it serves it with
//   nothing of its own in flight.
// Exactly once: a shared epoch. A poller notes it before each read; it serves what the read
// shows only if it moves the epoch from that (even) value to odd by CAS (so one warp serves per
// epoch, and reads issued while it is odd are never believed); after its DONE stores it makes
// the epoch even again. A read issued before a DONE store may still show that call PUBLISHED: it
// was noted with an older epoch, and is not believed.
#ifndef WATCH_POLLERS  // tuning knob ($VYRE_MEGAKERNEL_DEFINES=WATCH_POLLERS=2u)
#define WATCH_POLLERS 2u        // warps keeping a read of the watched slots in flight (18e59d6 on the H100,
                                // p50 / p99: 1: 7.4 / 19 us, 2: 6.8 / 8.6 us, 4: 7.2 to 9.5 / 13 to 18 us)
#endif
#define WATCH_STAGGER_NS 256u   // between the pollers' first reads: ~a PCIe read / WATCH_POLLERS
#define WATCH_IDLE_NS 2048u     // a poller's wait while no slot is watched (saves PCIe reads)
#define WATCH_CONTROL_NS 512u   // between the control warp's reads (SHUTDOWN, PAUSE, WATCH, masks)
#define WATCH_WARPS (1u + WATCH_POLLERS)
static_assert(1u + WATCH_WARPS <= VYRE_BLOCK_THREADS / 32u, "block 0 holds the dispatcher and the watcher warps");
static_assert(2u * WATCH_WORDS <= 32u, "one poller load reads every watched slot (two lanes each)");
static_assert(WATCH_WORDS <= 16u, "the control warp's lanes 16 .. hold SHUTDOWN and PAUSE");

struct WatchShared {
    uint32_t watch[WATCH_WORDS];  // the WATCH words as the control warp last read them
    uint32_t mask[WATCH_WORDS];   // the tenant mask of the tenant each names (0: none or disabled)
    uint32_t stop;                // SHUTDOWN or PAUSE seen: the pollers exit
    uint32_t epoch;               // even: reads noted with it may be believed; odd: a DONE store is under way
};

__device__ __forceinline__ void watch_barrier() {  // the watcher's warps only (the dispatcher never waits)
    asm volatile("bar.sync 1, %0;" ::"r"(WATCH_WARPS * 32u) : "memory");
}

// The control warp: SHUTDOWN, PAUSE, the WATCH words and the tenant masks they name, into `W`.
// A host that changes a WATCH word or a mask sees it adopted within a read or two (~3 us).
__device__ void watch_control(const Params& p, WatchShared& W) {
    uint32_t lane = threadIdx.x & 31u;
    const uint32_t* image = (const uint32_t*)p.image;
    while (true) {
        uint32_t word = lane < WATCH_WORDS ? load_volatile(image + CW_WATCH + lane) : 0u;
        uint32_t flag = lane == 16u ? load_volatile(image + CW_SHUTDOWN) : lane == 17u ? load_volatile(image + CW_PAUSE) : 0u;
        uint32_t mask_low, mask_high;
        load_masks(p, lane, mask_low, mask_high);
        uint32_t tenant = (word >> WATCH_TENANT_SHIFT) & WATCH_TENANT_MASK;
        uint32_t low = __shfl_sync(FULL_MASK, mask_low, tenant % 32u), high = __shfl_sync(FULL_MASK, mask_high, tenant % 32u);
        uint32_t mask = (word & WATCH_VALID) && tenant < p.tenants ? (tenant < 32u ? low : high) : 0u;
        bool stop = __any_sync(FULL_MASK, flag != 0u);
        if (lane < WATCH_WORDS) {
            // the mask first: a poller that reads the new WATCH word never pairs it with the old mask
            *(volatile uint32_t*)&W.mask[lane] = mask;
            __threadfence_block();
            *(volatile uint32_t*)&W.watch[lane] = word;
        }
        if (stop) {
            if (lane == 0) *(volatile uint32_t*)&W.stop = 1u;
            return;
        }
        __nanosleep(__any_sync(FULL_MASK, word & WATCH_VALID) ? WATCH_CONTROL_NS : WATCH_IDLE_NS);
    }
}

// Serves one watched call in this lane: the built-in, its results (skipped while all zero: the
// host zeroed RESULT0 .. 3 with ARG4 .. 11 when it published), then DONE or FAULT. A NOP touched
// no memory and stored nothing: its DONE needs no release fence (the fence is most of a DONE
// store's cost). Returns whether it faulted.
__device__ bool watch_serve(const Params& p, uint32_t index, uint4 head, uint4 args) {
    uint32_t* slot = (uint32_t*)p.image + p.ring + index * SLOT_WORDS;
    if (!runs_inline(head.y, args.z)) {  // only tiny built-ins are watched: a host that marks another opcode gets a fault
        store_volatile4(slot + SW_RESULT0, make_uint4(SF_BAD_OPCODE, 0, 0, head.y));
        store_release(&slot[SW_STATUS], ST_FAULT);
        return true;
    }
    SlotShared T;
    uint4 zero = make_uint4(0, 0, 0, 0);  // ARG4 .. 11: a watched call has at most 3 arguments
    run_tiny(p, index, head, args, zero, zero, T);
    uint4 results = make_uint4(T.results[0], T.results[1], T.results[2], T.results[3]);
    if (results.x | results.y | results.z | results.w) store_volatile4(slot + SW_RESULT0, results);
    STAMP(p, 5, global_ns());
    if (head.y == BI_NOP && !T.fault) store_volatile(&slot[SW_STATUS], ST_DONE);
    else store_release(&slot[SW_STATUS], T.fault ? ST_FAULT : ST_DONE);  // the results and effects before the status
    STAMP(p, 6, global_ns());
    return T.fault != 0;
}

// A poller warp (number `poller` of WATCH_POLLERS): one read of the watched slots in flight,
// then whatever it shows served (see above); returns once the control warp saw SHUTDOWN or PAUSE
// (nothing this warp claimed is pending then: every call it served is DONE and counted).
__device__ void watch_poll(const Params& p, WatchShared& W, uint32_t poller) {
    uint32_t lane = threadIdx.x & 31u;
    uint32_t k = lane / 2u;  // the WATCH word this lane's read serves
    const uint32_t* ring = (const uint32_t*)p.image + p.ring;
    __nanosleep(1u + poller * WATCH_STAGGER_NS);  // staggered: the reads land apart
    while (!*(volatile uint32_t*)&W.stop) {
        uint32_t epoch = *(volatile uint32_t*)&W.epoch;
        uint32_t watch = k < WATCH_WORDS ? *(volatile uint32_t*)&W.watch[k] : 0u;
        __threadfence_block();  // the epoch before the read: a read noted with it follows its DONE stores
        uint32_t index = watch & ((1u << DOORBELL_SLOT_BITS) - 1u);
        bool valid = (watch & WATCH_VALID) && index < p.slots;
        if (!__any_sync(FULL_MASK, valid)) {
            __nanosleep(WATCH_IDLE_NS);
            continue;
        }
        if (epoch & 1u) continue;  // another warp is storing DONE: a read now would prove nothing
#ifdef VYRE_STAGE_STAMPS
        uint32_t issued_ns = global_ns();
#endif
        uint4 got = valid ? load_volatile4(ring + index * SLOT_WORDS + 4u * (lane % 2u)) : make_uint4(0, 0, 0, 0);
        // words 4..7 (ARG0 .. ARG3) of this lane pair's slot, on its first lane
        uint4 args = make_uint4(__shfl_down_sync(FULL_MASK, got.x, 1), __shfl_down_sync(FULL_MASK, got.y, 1),
                                __shfl_down_sync(FULL_MASK, got.z, 1), __shfl_down_sync(FULL_MASK, got.w, 1));
#ifdef VYRE_STAGE_STAMPS
        uint32_t back_ns = global_ns();
#endif
        // PUBLISHED, marked watched, the channel's tenant (enabled), and ARG3 echoing the sequence:
        // the two 16-byte reads saw one call (the host writes ARG0..3, then the status, 3.2). The
        // WATCH word must still be the one the read was issued for (a channel closed meanwhile).
        uint32_t seq = got.w >> PRIORITY_BITS;
        bool here = valid && lane % 2u == 0u && got.x == ST_PUBLISHED && (got.w & PRIORITY_WATCHED) &&
                    got.z == ((watch >> WATCH_TENANT_SHIFT) & WATCH_TENANT_MASK) &&
                    (args.w & HINT_MASK) == seq && *(volatile uint32_t*)&W.watch[k] == watch &&
                    *(volatile uint32_t*)&W.mask[k] != 0u;
        // two WATCH words naming one slot (one closed, one opened, not yet seen): one serve of it
        uint32_t peers = __match_any_sync(FULL_MASK, here ? index : 0xffffffffu);
        here = here && (uint32_t)(__ffs(peers) - 1) == lane;
        if (!__any_sync(FULL_MASK, here)) continue;
        uint32_t won = 0;
        if (lane == 0) won = atomicCAS(&W.epoch, epoch, epoch + 1u) == epoch;
        if (!__shfl_sync(FULL_MASK, won, 0)) continue;  // another warp served first: this read is stale
        STAMP(p, 0, issued_ns);
        STAMP(p, 1, back_ns);
        STAMP(p, 2, global_ns());
        bool faulted = here && watch_serve(p, index, got, args);
        count_inline(p, here, got.y, faulted, true);  // (its __syncwarp: every lane's DONE store first)
        if (lane == 0) {
            __threadfence_block();  // the DONE stores before the epoch that lets reads be believed again
            atomicExch(&W.epoch, epoch + 2u);
        }
    }
}

__device__ void watch_channels(const Params& p, uint32_t warp) {
    __shared__ WatchShared W;
    if (threadIdx.x == 32) {  // before any poller reads it: the barrier below
        for (uint32_t k = 0; k < WATCH_WORDS; k++) { W.watch[k] = 0; W.mask[k] = 0; }
        W.stop = 0;
        W.epoch = 0;
    }
    watch_barrier();
    if (warp == 1) watch_control(p, W);
    else watch_poll(p, W, warp - 2u);
}

// ------------------------------------------------------------------ worker blocks

__device__ void work(const Params& p, SlotShared& T, RunShared& S, uint32_t* stage) {
    __shared__ uint32_t s_index;
    __shared__ uint32_t s_stop;
    __shared__ bool s_helping;
    __shared__ HelpPiece s_help;
    __shared__ RunRecords R;  // a fused member this block runs for another block's slot
    __shared__ BlockCounts C;
    if (threadIdx.x == 0) { C.done = 0; C.fault = 0; C.kinds = 0; }
    uint32_t sleep_ns = 32;
    uint32_t ticket = 0;  // thread 0's position in the queue
    bool ticketed = false;  // thread 0: it holds a position no entry was taken from yet
    // Blocks that served a slot recently poll without sleeping for a while: the next slot of a
    // busy stream (or a caller's next round trip) is taken a nanosleep sooner. Idle blocks
    // back off, so the whole grid never hammers the queue's words at once.
    uint32_t hot_polls = 0;
    while (true) {
        if (threadIdx.x == 0) {
            s_stop = 0;
            s_index = 0xffffffffu;
            s_helping = false;
            // this block's position: nobody else takes it, and its entry is this position's only
            // while word 1 holds ticket + 1 (the dispatcher stores it last, after the words). A
            // block that helped with a staged copy (help_take) keeps the position it waits on.
            if (!ticketed) {
                ticket = atomicAdd(&vyre_queue.head, 1u);
                ticketed = true;
                RUN_PHASE_START();
            }
            uint32_t* slot_words = vyre_queue.entries[ticket % QUEUE_CAPACITY];
            for (bool first = true;; first = false) {
                if (load_acquire_gpu(&slot_words[1]) == ticket + 1u) {
                    const uint4* entry = (const uint4*)slot_words;
                    uint4 e0 = load_volatile4(entry), e1 = load_volatile4(entry + 1), e2 = load_volatile4(entry + 2);
                    uint4 e3 = load_volatile4(entry + 3), e4 = load_volatile4(entry + 4);
                    __threadfence();  // the copy is complete before the entry is handed back
                    store_volatile(&slot_words[2], ticket - ticket % QUEUE_CAPACITY + QUEUE_CAPACITY);
                    STAMP(p, 4, global_ns());
                    RUN_PHASE(0);  // waiting for an entry (idle time included)
                    // the claim, visible in the image; complete_slot's fence orders it before DONE
                    store_volatile((uint32_t*)p.image + p.ring + e0.x * SLOT_WORDS + SW_STATUS, ST_CLAIMED);
                    s_index = e0.x;
                    uint4* words = (uint4*)T.words;
                    words[0] = e1; words[1] = e2; words[2] = e3; words[3] = e4;
                    sleep_ns = 32;
                    hot_polls = WORKER_HOT_POLLS;
                    ticketed = false;
                    break;
                } else if (first) {  // nothing waiting: count what this block completed before it waits
                    flush_counts(C);
                } else if (load_acquire_gpu(&vyre_queue.shutdown)) {  // told to stop: is my position ever filled?
                    // the dispatcher stored its last tail before the flag: a ticket at or past it
                    // never gets an entry (one before it does: keep waiting for it)
                    if ((int32_t)(ticket - load_volatile(&vyre_queue.tail)) >= 0) {
                        s_stop = 1;
                        break;
                    }
                    __nanosleep(32);
                } else if (help_take(ticket, s_help)) {  // a piece of a staged copy while it waits
                    s_helping = true;
                    hot_polls = WORKER_HOT_POLLS;
                    break;
                } else if (hot_polls) {
                    hot_polls--;
                } else {
                    __nanosleep(sleep_ns);
                    uint32_t cap = p.idle_sleep_ns < WORKER_SLEEP_CAP_NS ? p.idle_sleep_ns : WORKER_SLEEP_CAP_NS;
                    sleep_ns = sleep_ns * 2 < cap ? sleep_ns * 2 : cap;
                }
            }
        }
        __syncthreads();
        if (s_stop) return;  // (counted: the block found no entry at once, so it flushed)
        if (s_helping) {
            help_piece(s_help, S, R, stage);
            __syncthreads();  // s_help is thread 0's again only after every thread copied
            continue;
        }
        serve_slot(p, s_index, T, S, stage, C);
    }
}

// Blocks per SM the register budget must allow. The plain kernel names none (left alone, ptxas
// gives it 48 registers: 5 blocks per SM; an explicit minimum of 1 made it take 96, i.e. 2). A JIT
// variant's native functions keep a program's registers live and would take ~120 (2 blocks per
// SM), so a variant asks for 4 (<= 64 registers) and lets ptxas spill the rare excess.
#ifdef VYRE_MIN_BLOCKS_PER_SM
#define VYRE_LAUNCH_BOUNDS __launch_bounds__(VYRE_BLOCK_THREADS, VYRE_MIN_BLOCKS_PER_SM)
#else
#define VYRE_LAUNCH_BOUNDS __launch_bounds__(VYRE_BLOCK_THREADS)
#endif
extern "C" __global__ void VYRE_LAUNCH_BOUNDS vyre_megakernel(Params p) {
    __shared__ SlotShared T;
    __shared__ RunShared S;
    __shared__ uint32_t stage[STAGE_WORDS];
    uint32_t* image = (uint32_t*)p.image;
    bool refused = load_volatile(&image[CW_LAYOUT_DIGEST]) != VYRE_LAYOUT_DIGEST ||
                   load_volatile(&image[CW_SLOT_COUNT]) != p.slots ||
                   load_volatile(&image[CW_TENANT_COUNT]) != p.tenants ||
                   load_volatile(&image[CW_OBSERVABLE_COUNT]) != p.observable_count ||
                   load_volatile(&image[CW_DEBUG_CAPACITY]) != p.debug_capacity ||
                   load_volatile(&image[CW_IO_ENTRIES]) != p.io_entries ||
                   load_volatile(&image[CW_DOORBELL_CAPACITY]) != p.doorbells || gridDim.x < 2;
    if (refused) {
        if (blockIdx.x == 0 && threadIdx.x == 0) store_release(&image[CW_DEVICE_STATE], DS_REFUSED);
        return;
    }
    if (blockIdx.x == 0) {
        if (threadIdx.x == 0) store_release(&image[CW_DEVICE_STATE], DS_SERVING);
        if (threadIdx.x < 32) dispatch(p);
        else if (threadIdx.x < 32u * (1u + WATCH_WARPS)) watch_channels(p, threadIdx.x / 32u);
    } else {
        if (threadIdx.x == 0) {  // work() syncs the block before its first run reads these
            S.scratch_words = p.run_scratch ? p.run_scratch_words : 0u;
            S.scratch = (uint32_t*)p.run_scratch + (uint64_t)(blockIdx.x - 1) * S.scratch_words;
        }
        work(p, T, S, stage);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        __threadfence();
        if (atomicAdd(&vyre_queue.exited, 1u) == gridDim.x - 1) {  // the last block out
            copy_counters(p, 0, 1);  // every completion counted: the image's counters are exact
            vyre_queue.head = 0; vyre_queue.tail = 0; vyre_queue.shutdown = 0; vyre_queue.exited = 0;
            __threadfence_system();
            store_release(&image[CW_DEVICE_STATE], DS_EXITED);
        }
    }
}
