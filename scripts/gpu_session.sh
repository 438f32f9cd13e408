#!/usr/bin/env bash
# One complete GPU-machine session (the H100 of the device tool): install the carried wheels,
# report the machine, run the GPU tests, then the CUDA benchmarks. Logs land under $OUT.
#   bash scripts/gpu_session.sh [tests|soak|memcheck|bench|jit|jitbench|sweep|ingest|all]
# (jitbench, not part of all: bench/jit.py, every example interpreted vs JIT vs hand-written)
set -u
what=${1:-all}
source "$(dirname "$0")/gpu_env.sh"  # OUT, wheels, PYTHONPATH, VYRE_CACHE_DIR
{ nvidia-smi; python3 -c 'import cuda.bindings, numpy; print("cuda-bindings", cuda.bindings.__version__, "numpy", numpy.__version__)'; } > "$OUT/machine.txt" 2>&1
timeout 120 python3 -m vyre_runtime.cli doctor > "$OUT/doctor.txt" 2>&1
if [ "$what" = tests ] || [ "$what" = all ]; then
  timeout 540 python3 -m pytest -q -m gpu tests/test_cuda_backend.py tests/test_differential.py \
    tests/test_device_buffers.py tests/test_cuda_range_intrinsics.py tests/test_cuda_relaunch.py \
    tests/test_cuda_jit.py tests/test_cuda_fused.py tests/test_cuda_channel_watch.py \
    tests/test_cuda_lanesplit.py > "$OUT/gpu-tests.txt" 2>&1
  echo "gpu tests exit $?" >> "$OUT/gpu-tests.txt"
fi
if [ "$what" = soak ]; then
  VYRE_DIFFERENTIAL_SEEDS=3000 timeout 300 python3 -m pytest -q -m gpu tests/test_cuda_backend.py -k random > "$OUT/soak.txt" 2>&1
  echo "soak exit $?" >> "$OUT/soak.txt"
fi
if [ "$what" = memcheck ]; then
  # One process per test: a test whose kernel outlives its shutdown deadline under the sanitizer
  # cannot take the next tests down with it. A small grid: hundreds of polling blocks crawl there.
  # (the burst stress test grows mapped staging after the launch, which the sanitizer cannot see,
  # and runs for minutes under it: it is left to the plain GPU run)
  python3 -m pytest -q --collect-only -m gpu tests/test_cuda_backend.py tests/test_device_buffers.py \
    -k "${MEMCHECK_SELECT:-not bursts}" 2>/dev/null | grep '::' > "$OUT/memcheck-ids.txt"
  began=$SECONDS
  while read -r id; do
    if [ $((SECONDS - began)) -gt ${MEMCHECK_BUDGET_S:-520} ]; then echo "SKIPPED (time) $id" >> "$OUT/memcheck.txt"; continue; fi
    VYRE_CUDA_MAX_BLOCKS=4 VYRE_DIFFERENTIAL_SEEDS=40 VYRE_GPU_SHUTDOWN_S=60 timeout 150 \
      compute-sanitizer --tool memcheck --report-api-errors no --print-limit 20 \
      python3 -m pytest -q -p no:cacheprovider "$id" > "$OUT/memcheck-one.txt" 2>&1
    rc=$?
    summary=$(grep -h "ERROR SUMMARY" "$OUT/memcheck-one.txt" | tail -1)
    echo "rc=$rc ${summary:-no summary} $id" >> "$OUT/memcheck.txt"
    if [ $rc -ne 0 ] || ! grep -q "ERROR SUMMARY: 0 errors" "$OUT/memcheck-one.txt"; then
      { echo "=== $id"; tail -60 "$OUT/memcheck-one.txt"; } >> "$OUT/memcheck-failures.txt"
    fi
  done < "$OUT/memcheck-ids.txt"
fi
if [ "$what" = bench ] || [ "$what" = all ]; then
  timeout 120 python3 bench/roundtrip_breakdown.py --backend cuda > "$OUT/breakdown.txt" 2>&1
  timeout 300 python3 bench/dispatch.py --backend cuda > "$OUT/dispatch-cuda.txt" 2>&1
  cp bench/results/dispatch-cuda.json "$OUT/" 2>/dev/null
  timeout 240 python3 bench/scan.py > "$OUT/scan-cuda.txt" 2>&1
  echo "scan exit $?" >> "$OUT/scan-cuda.txt"
  cp bench/results/scan-cuda.json "$OUT/" 2>/dev/null
fi
if [ "$what" = jit ] || [ "$what" = all ]; then
  timeout 300 python3 bench/scan.py --jit ${SCAN_ARGS:-} > "$OUT/scan-jit.txt" 2>&1
  echo "scan --jit exit $?" >> "$OUT/scan-jit.txt"
  cp bench/results/scan-cuda.json "$OUT/scan-jit.json" 2>/dev/null
fi
if [ "$what" = sweep ]; then
  # Where the time of 1 MiB runs goes: device time against the number of runs and the chunk size
  # (constant in runs: a floor of the measurement; linear in runs, not in size: a per-run cost)
  for chunk in 1 4; do
    for runs in 256 512 1024 2048; do
      timeout 60 python3 bench/scan.py --programs line_count --lanes 256 --chunk-mib $chunk --runs $runs \
        --budget-s 5 --mapped-chunks 1 2>&1 | grep "lanes   256:" | sed "s/^/chunk ${chunk} MiB, runs ${runs}: /" >> "$OUT/sweep.txt"
    done
  done
fi
if [ "$what" = jitbench ]; then
  timeout ${JITBENCH_TIMEOUT_S:-300} python3 bench/jit.py ${JITBENCH_ARGS:-} > "$OUT/jit-bench.txt" 2>&1
  echo "jit bench exit $?" >> "$OUT/jit-bench.txt"
  cp bench/results/jit-cuda.json "$OUT/" 2>/dev/null
fi
if [ "$what" = ingest ] || [ "$what" = all ]; then
  timeout 60 python3 -m pytest -q tests/test_ingest_uring.py tests/test_ingest_reader.py > "$OUT/ingest-tests.txt" 2>&1
  echo "ingest tests exit $?" >> "$OUT/ingest-tests.txt"
  timeout 420 python3 bench/ingest.py --backend cuda --size ${INGEST_SIZE:-4GiB} --cold --dir /tmp/vyre-bench \
    ${INGEST_ARGS:-} > "$OUT/ingest-cuda.txt" 2>&1
  echo "ingest bench exit $?" >> "$OUT/ingest-cuda.txt"
  cp bench/results/ingest-cuda.json "$OUT/" 2>/dev/null
  mkdir -p /tmp/vyre-run && head -c ${RUN_SIZE:-268435456} /tmp/vyre-bench/ingest-*.bin > /tmp/vyre-run/data.bin
  cp README.md docs/*.md /tmp/vyre-run/
  timeout 120 python3 -m vyre_runtime.cli run examples/line_count.vasm examples/histogram.vasm \
    examples/literal_search.vasm examples/checksum.vasm /tmp/vyre-run --backend cuda --lanes 256 \
    > "$OUT/vyre-run-cuda.txt" 2>&1
  echo "vyre run exit $?" >> "$OUT/vyre-run-cuda.txt"
fi
tail -n 30 "$OUT"/*.txt
