#!/usr/bin/env bash
# runhost2 on the GPU machine in one command (< 560 s, NVRTC builds cold): the GPU tests of the host
# paths it changed (fused run staging taken with the run's handles, regions read in place, outputs
# from a cached initial image, the memoryview ring writes and doorbells), then the host's per-call
# cost and the stream's rate. Logs under $OUT (8 files at most come back); summary.txt has the lines.
#   OUT=$OUT timeout 570 bash scripts/runhost2_gpu.sh
set -u
. "$(dirname "$0")/gpu_env.sh"
budget=${RUNHOST2_BUDGET_S:-550}
began=$SECONDS
echo "commit ${VYRE_BENCH_COMMIT:-unknown}" > "$OUT/summary.txt"
step tests 320 python3 -m pytest -q --tb=short -m gpu tests/test_cuda_fused.py tests/test_device_buffers.py \
  tests/test_cuda_backend.py tests/test_cuda_run_staging.py -k "not bursts"
step breakdown 60 python3 bench/roundtrip_breakdown.py --backend cuda --count 2000
step ingest 160 python3 bench/ingest.py --backend cuda --size 4GiB --dir /tmp/vyre-bench \
  --consumers histogram,checksum --lanes 4096 --arenas 16MiBx96,4MiBx16,1MiBx64
{
  grep -h -E "passed|failed|FAILED" "$OUT/tests.txt" | tail -6
  grep -h -E "submit|reap|publish|round trip" "$OUT/breakdown.txt" | head -20
  grep -h -E "io_uring|KvikIO|vyre stream" "$OUT/ingest.txt"
} >> "$OUT/summary.txt"
cat "$OUT/summary.txt"
