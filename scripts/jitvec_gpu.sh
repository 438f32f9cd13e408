#!/usr/bin/env bash
# jit_wide.py on the GPU in one session (< 450 s; a fresh machine builds every variant cold):
# the JIT differential tests of the speculative trips (wide and aligned reads, the loop loads,
# every example), then bench/jit.py with the wide reads on (every example) and off (checksum:
# the A/B baseline, $VYRE_JIT_WIDE_LOADS=0). Compare JIT/hand ratios within one bench run only.
# Logs under $OUT: machine.txt, jitvec-tests.txt, jit-bench-on.txt/.json, jit-bench-off.txt/.json.
#   OUT=$OUT bash scripts/jitvec_gpu.sh
set -u
source "$(dirname "$0")/gpu_env.sh"  # OUT, wheels, PYTHONPATH, VYRE_CACHE_DIR
{ nvidia-smi; git rev-parse --short HEAD 2>/dev/null; echo "commit ${VYRE_BENCH_COMMIT:-?}"; } > "$OUT/machine.txt" 2>&1
timeout 130 python3 -m pytest -q -m gpu tests/test_cuda_jit.py \
  -k "wide_trip_loads or loop_loads or examples_run" > "$OUT/jitvec-tests.txt" 2>&1
echo "jitvec tests exit $?" >> "$OUT/jitvec-tests.txt"
BENCH="--total-mib 128 --chunk-kib 8192 --lanes 256,1024 --runs 944 --interpreted-runs 16 --no-mapped"
VYRE_JIT_WIDE_LOADS=1 timeout 190 python3 bench/jit.py $BENCH --output "$OUT/jit-bench-on.json" \
  > "$OUT/jit-bench-on.txt" 2>&1
echo "jit bench (wide reads on) exit $?" >> "$OUT/jit-bench-on.txt"
VYRE_JIT_WIDE_LOADS=0 timeout 115 python3 bench/jit.py $BENCH --programs checksum --cold-builds 1 --hits 5 \
  --output "$OUT/jit-bench-off.json" > "$OUT/jit-bench-off.txt" 2>&1
echo "jit bench (wide reads off) exit $?" >> "$OUT/jit-bench-off.txt"
grep -h -i "checksum\|exit" "$OUT"/jit-bench-*.txt "$OUT/jitvec-tests.txt" | tail -20
