#!/usr/bin/env bash
# The streamed range intrinsics (fnv, xxh32, dfa: STREAM_VECS vectors ahead; hist's shared-memory
# atomics) on the GPU in one command (< 420 s on a fresh machine: NVRTC builds cold): the range
# intrinsic GPU tests (random ranges, and the edge ranges interpreted and JIT'd), the JIT'd examples
# against the CPU, then bench/jit.py for the programs these intrinsics run (JIT/hand ratios: compare
# within this run only). Logs under $OUT; summary.txt has each step's exit and the ratio lines.
#   OUT=$OUT timeout 430 bash scripts/hashwide_gpu.sh
# Knobs: HASHWIDE_BUDGET_S (410: later steps are skipped past it); HASHWIDE_DEFINES (e.g.
# "STREAM_VECS=8u" or "STREAM_PREFETCH_VECS=0u": passed as $VYRE_MEGAKERNEL_DEFINES to every step).
set -u
. "$(dirname "$0")/gpu_env.sh"
budget=${HASHWIDE_BUDGET_S:-410}
began=$SECONDS
if [ -n "${HASHWIDE_DEFINES:-}" ]; then export VYRE_MEGAKERNEL_DEFINES=$HASHWIDE_DEFINES; fi

{ nvidia-smi; python3 -c 'import cuda.bindings, numpy; print("cuda-bindings", cuda.bindings.__version__, "numpy", numpy.__version__)'; } > "$OUT/machine.txt" 2>&1
echo "commit ${VYRE_BENCH_COMMIT:-unknown}, defines '${VYRE_MEGAKERNEL_DEFINES:-}'" > "$OUT/summary.txt"

# correctness first: random ranges (interpreted), the edge ranges (interpreted and JIT'd), the examples JIT'd
VYRE_RANGE_BUDGET_S=45 step range-tests 150 python3 -m pytest -q -m gpu tests/test_cuda_range_intrinsics.py
step jit-examples 90 python3 -m pytest -q -m gpu tests/test_cuda_jit.py -k examples_run
# the programs whose intrinsics changed (fnv1a_blocks: fnv; xxh32_blocks: xxh32; histogram: hist;
# dfa_count: dfa), 8 MiB device-resident chunks as in the earlier JIT rows
step jit-bench 170 python3 bench/jit.py --programs fnv1a_blocks,xxh32_blocks,histogram,dfa_count \
  --total-mib 128 --chunk-kib 8192 --lanes 256,1024 --runs 944 --interpreted-runs 16 --no-mapped \
  --cold-builds 1 --hits 5 --output "$OUT/jit-bench.json"
grep -h -E "passed|failed|error" "$OUT/range-tests.txt" "$OUT/jit-examples.txt" | tail -4 >> "$OUT/summary.txt"
grep -h -i -E "fnv1a|xxh32|histogram|dfa_count|mismatch" "$OUT/jit-bench.txt" | tail -12 >> "$OUT/summary.txt"
cat "$OUT/summary.txt"
